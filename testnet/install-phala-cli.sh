#!/usr/bin/env bash
# Installs the official Phala Cloud CLI (npm package "phala", pinned) under
# .tools/phala-cli/ so that the official-CLI rehearsal test can run it against
# the local cloud. Idempotent: does nothing when the pinned version is there.
# Prints the path of the installed `phala` executable on stdout.
set -euo pipefail

VERSION="${PHALA_CLI_VERSION:-1.1.18}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${PHALA_CLI_DIR:-$ROOT/.tools/phala-cli}"
BIN="$DEST/node_modules/.bin/phala"
STAMP="$DEST/node_modules/phala/package.json"

installed_version() {
	[ -f "$STAMP" ] || return 1
	node -e 'process.stdout.write(require(process.argv[1]).version)' "$STAMP" 2>/dev/null
}

if [ -x "$BIN" ] && [ "$(installed_version || true)" = "$VERSION" ]; then
	echo "$BIN"
	exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "install-phala-cli: npm is required (apt-get install npm)" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "install-phala-cli: node is required" >&2; exit 1; }

mkdir -p "$DEST"
# Serialise parallel runs (several test packages on a fresh machine), then
# look again: another run may have finished the install while we waited.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$DEST.lock"
	flock -w 600 9 || { echo "install-phala-cli: timed out waiting for $DEST.lock" >&2; exit 1; }
	if [ -x "$BIN" ] && [ "$(installed_version || true)" = "$VERSION" ]; then
		echo "$BIN"
		exit 0
	fi
fi
# A private package.json keeps npm from walking up into the repository.
[ -f "$DEST/package.json" ] || printf '{"name":"cvmdeploy-phala-cli","private":true}\n' >"$DEST/package.json"
npm_config_update_notifier=false npm install --prefix "$DEST" --no-audit --no-fund --no-save --loglevel=error "phala@$VERSION" >&2

if [ ! -x "$BIN" ] || [ "$(installed_version || true)" != "$VERSION" ]; then
	echo "install-phala-cli: phala@$VERSION did not install into $DEST" >&2
	exit 1
fi
echo "$BIN"

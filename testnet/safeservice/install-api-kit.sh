#!/usr/bin/env bash
# Installs the official Safe client @safe-global/api-kit 5.0.3 (with
# protocol-kit 8.0.7 and viem, exactly as apikit/package-lock.json pins
# them, integrity-checked by `npm ci`) into the git-ignored
# .tools/safe-api-kit, for the test that drives the local Safe Transaction
# Service with it. Prints the install folder on stdout; progress on stderr.
# Idempotent (skipped when the installed lockfile matches) and safe to run in
# parallel (a lock file next to the folder).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${SAFE_API_KIT_DIR:-$root/.tools/safe-api-kit}"

log() { printf 'install-api-kit: %s\n' "$*" >&2; }

current() {
	cmp -s "$here/apikit/package.json" "$dest/package.json" &&
		cmp -s "$here/apikit/package-lock.json" "$dest/package-lock.json" &&
		[ -f "$dest/node_modules/.package-lock.json" ] &&
		[ -f "$dest/node_modules/@safe-global/api-kit/package.json" ]
}

if current; then
	echo "$dest"
	exit 0
fi
for cmd in npm node; do
	command -v "$cmd" >/dev/null 2>&1 || { log "$cmd not found: install Node.js >= 20 with npm"; exit 1; }
done
mkdir -p "$dest"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$dest.lock"
	flock -w 600 9 || { log "timed out waiting for $dest.lock"; exit 1; }
	if current; then
		echo "$dest"
		exit 0
	fi
fi
log "installing @safe-global/api-kit 5.0.3 into $dest (npm ci)"
cp "$here/apikit/package.json" "$here/apikit/package-lock.json" "$dest/"
npm_config_update_notifier=false npm ci --prefix "$dest" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
got="$(node -p "require('$dest/node_modules/@safe-global/api-kit/package.json').version")"
if [ "$got" != "5.0.3" ]; then
	log "api-kit is $got in $dest, want 5.0.3"
	exit 1
fi
echo "$dest"

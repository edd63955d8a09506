#!/usr/bin/env bash
# Installs anvil (Foundry) from npm into a git-ignored folder and prints the
# absolute path of the binary on stdout; progress goes to stderr.
#
#   bash testnet/install-anvil.sh            # -> <repo>/.tools/anvil/...
#   ANVIL_INSTALL_DIR=/some/dir bash install-anvil.sh
#
# It is idempotent: when the pinned version is already installed it only
# prints the path. Parallel runs (several `go test` packages on a fresh machine)
# are serialised with a lock file next to the install folder. The Go harness
# (testnet.AnvilBinary) embeds this very file and runs it the same way.
set -euo pipefail

ANVIL_VERSION=1.7.1

log() { printf 'install-anvil: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -n ${ANVIL_INSTALL_DIR:-} ]]; then
	install_dir=$ANVIL_INSTALL_DIR
else
	# Resolve the repository from this file's location so the script works from any cwd.
	script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]:-$0}")" && pwd -P)
	install_dir=$script_dir/../.tools/anvil
fi
mkdir -p -- "$install_dir"
install_dir=$(cd -- "$install_dir" && pwd -P)

# npm publishes one package per platform; map uname to its naming.
case "$(uname -s)" in
Linux) os=linux ;;
Darwin) os=darwin ;;
*) die "unsupported OS $(uname -s): install anvil $ANVIL_VERSION yourself and set ANVIL_BIN" ;;
esac
case "$(uname -m)" in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) die "unsupported CPU $(uname -m): install anvil $ANVIL_VERSION yourself and set ANVIL_BIN" ;;
esac
package=@foundry-rs/anvil-$os-$arch
binary=$install_dir/node_modules/$package/bin/anvil

# has_version BIN: true when BIN runs and reports exactly the pinned version.
has_version() {
	local out first
	[[ -x $1 ]] || return 1
	out=$("$1" --version 2>/dev/null) || return 1
	first=${out%%$'\n'*}
	[[ $first == "anvil Version: $ANVIL_VERSION" ]]
}

if has_version "$binary"; then
	printf '%s\n' "$binary"
	exit 0
fi

# Take the lock, then look again: another process may have finished the install
# while we waited.
lock=$install_dir.lock
if command -v flock >/dev/null 2>&1; then
	exec 9>"$lock"
	flock -w 600 9 || die "timed out waiting for $lock"
else
	# macOS has no flock(1): fall back to an atomic mkdir, with a stale-lock
	# timeout so a killed install does not block forever.
	waited=0
	until mkdir -- "$lock.d" 2>/dev/null; do
		((waited++ < 600)) || die "timed out waiting for $lock.d (remove it if no install is running)"
		sleep 1
	done
	trap 'rmdir -- "$lock.d" 2>/dev/null || true' EXIT
fi

if has_version "$binary"; then
	printf '%s\n' "$binary"
	exit 0
fi

command -v npm >/dev/null 2>&1 ||
	die "npm not found: install Node.js >= 20 (which ships npm), or set ANVIL_BIN to an anvil $ANVIL_VERSION binary"

log "installing $package@$ANVIL_VERSION into $install_dir"
# Install into a scratch folder and swap it in, so an interrupted install never
# leaves a half-written package where the fast path above would look.
staging=$(mktemp -d "$install_dir.tmp.XXXXXX")
chmod 755 "$staging" # mktemp makes it 0700
trap 'rm -rf -- "$staging"; rmdir -- "$lock.d" 2>/dev/null || true' EXIT
npm_config_update_notifier=false npm install \
	--prefix "$staging" --no-save --no-audit --no-fund --ignore-scripts \
	"$package@$ANVIL_VERSION" >&2 ||
	die "npm install $package@$ANVIL_VERSION failed (see above)"

staged_binary=$staging/node_modules/$package/bin/anvil
if ! has_version "$staged_binary"; then
	found=$("$staged_binary" --version 2>&1 | head -n 1 || true)
	die "expected anvil $ANVIL_VERSION at $staged_binary, got: ${found:-nothing runnable}"
fi

rm -rf -- "$install_dir"
mv -- "$staging" "$install_dir"
has_version "$binary" || die "anvil missing at $binary after install"
log "installed $("$binary" --version | head -n 1)"
printf '%s\n' "$binary"

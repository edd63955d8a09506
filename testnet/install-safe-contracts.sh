#!/usr/bin/env bash
# Installs the Safe v1.4.1 contract artifacts (npm package
# @safe-global/safe-contracts, pinned) into a git-ignored folder and prints
# the absolute path of their build/artifacts/contracts folder on stdout;
# progress goes to stderr.
#
#   bash testnet/install-safe-contracts.sh      # -> <repo>/.tools/safe-contracts/...
#   SAFE_CONTRACTS_INSTALL_DIR=/some/dir bash install-safe-contracts.sh
#
# `testnet up` deploys these artifacts' init code at the canonical addresses;
# the Go side checks every init code against the keccak256 pinned in
# safe/contracts.go before deploying it, so a tampered package is refused.
# Idempotent and safe to run in parallel (a lock file next to the folder).
# The Go harness (testnet.SafeArtifactsDir) embeds this very file.
set -euo pipefail

SAFE_CONTRACTS_VERSION=1.4.1
package=@safe-global/safe-contracts

log() { printf 'install-safe-contracts: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -n ${SAFE_CONTRACTS_INSTALL_DIR:-} ]]; then
	install_dir=$SAFE_CONTRACTS_INSTALL_DIR
else
	script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]:-$0}")" && pwd -P)
	install_dir=$script_dir/../.tools/safe-contracts
fi
mkdir -p -- "$install_dir"
install_dir=$(cd -- "$install_dir" && pwd -P)
pkg_dir=$install_dir/node_modules/$package
artifacts=$pkg_dir/build/artifacts/contracts

installed() {
	[[ -f $pkg_dir/package.json && -f $artifacts/SafeL2.sol/SafeL2.json ]] || return 1
	grep -q "\"version\": \"$SAFE_CONTRACTS_VERSION\"" "$pkg_dir/package.json"
}

if installed; then
	printf '%s\n' "$artifacts"
	exit 0
fi

lock=$install_dir.lock
if command -v flock >/dev/null 2>&1; then
	exec 9>"$lock"
	flock -w 600 9 || die "timed out waiting for $lock"
else
	waited=0
	until mkdir -- "$lock.d" 2>/dev/null; do
		((waited++ < 600)) || die "timed out waiting for $lock.d (remove it if no install is running)"
		sleep 1
	done
	trap 'rmdir -- "$lock.d" 2>/dev/null || true' EXIT
fi

if installed; then
	printf '%s\n' "$artifacts"
	exit 0
fi

command -v npm >/dev/null 2>&1 ||
	die "npm not found: install Node.js >= 20 (which ships npm), or set SAFE_CONTRACTS_DIR to the build/artifacts/contracts folder of $package@$SAFE_CONTRACTS_VERSION"

log "installing $package@$SAFE_CONTRACTS_VERSION into $install_dir"
staging=$(mktemp -d "$install_dir.tmp.XXXXXX")
chmod 755 "$staging"
trap 'rm -rf -- "$staging"; rmdir -- "$lock.d" 2>/dev/null || true' EXIT
# The package declares ethers 5.4.0 as a peer dependency that only its
# hardhat scripts use; the artifacts are plain JSON, so peers are skipped.
printf '{"name":"cvmdeploy-safe-contracts","private":true}\n' >"$staging/package.json"
npm_config_update_notifier=false npm install \
	--prefix "$staging" --no-save --no-audit --no-fund --ignore-scripts --legacy-peer-deps --loglevel=error \
	"$package@$SAFE_CONTRACTS_VERSION" >&2 ||
	die "npm install $package@$SAFE_CONTRACTS_VERSION failed (see above)"

rm -rf -- "$install_dir"
mv -- "$staging" "$install_dir"
installed || die "$package@$SAFE_CONTRACTS_VERSION missing in $install_dir after install"
log "installed $package@$SAFE_CONTRACTS_VERSION"
printf '%s\n' "$artifacts"

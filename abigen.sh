#!/usr/bin/env bash
# abigen.sh: compile contracts/*.sol with a pinned solc and regenerate bindings/.
#
# Usage: bash abigen.sh          (from anywhere; needs only Go and npm)
#
# 1. Installs the toolchain pinned in contracts/package.json + package-lock.json
#    (solc-js 0.8.24, @openzeppelin/contracts{,-upgradeable} 5.4.0) into the
#    git-ignored .tools/solc with `npm ci` (integrity-checked); skipped when the
#    installed lockfile already matches.
# 2. Compiles with fixed settings (see contracts/compile.js: evmVersion cancun,
#    optimizer on, 200 runs, ipfs metadata hash, repository-relative source names).
# 3. Runs abigen --v2 at the version pinned by the tool directive in go.mod, one
#    file per contract, then drops the struct types that two files both declare.
#
# The output is deterministic: CI runs `bash abigen.sh && git diff --exit-code bindings/`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

tools=".tools/solc"
build="$tools/build"

log() { printf 'abigen.sh: %s\n' "$*" >&2; }

for cmd in go npm node; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		log "$cmd not found on PATH; install it and run again"
		exit 1
	fi
done

# --- 1. toolchain ---------------------------------------------------------
mkdir -p "$tools"
if cmp -s contracts/package-lock.json "$tools/package-lock.json" &&
	cmp -s contracts/package.json "$tools/package.json" &&
	[ -f "$tools/node_modules/.package-lock.json" ] &&
	[ -f "$tools/node_modules/solc/soljson.js" ]; then
	log "solc toolchain already installed in $tools"
else
	log "installing pinned solc and OpenZeppelin into $tools (npm ci)"
	cp contracts/package.json contracts/package-lock.json "$tools/"
	npm ci --prefix "$tools" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi

# Double-check the versions that matter, whatever npm did.
check_version() {
	local pkg="$1" want="$2" got
	got="$(node -p "require('./$tools/node_modules/$pkg/package.json').version")"
	if [ "$got" != "$want" ]; then
		log "$pkg is $got in $tools, want $want; delete $tools and run again"
		exit 1
	fi
}
check_version solc 0.8.24
check_version @openzeppelin/contracts 5.4.0
check_version @openzeppelin/contracts-upgradeable 5.4.0

# --- 2. compile -------------------------------------------------------------
log "compiling contracts/*.sol"
rm -rf "$build"
node contracts/compile.js "$tools" "$build"

# --- 3. bindings --------------------------------------------------------------
log "generating bindings with go tool abigen --v2 (the first run compiles abigen)"
mkdir -p bindings
files=()
for name in DstackKms DstackApp ERC1967Proxy TimelockController; do
	out="bindings/$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]').go"
	go tool abigen --v2 --pkg bindings --type "$name" \
		--abi "$build/$name.abi" --bin "$build/$name.bin" --out "$out"
	files+=("$out")
done
# abigen names structs without a contract prefix, so DstackKms and DstackApp both
# declare IAppAuthAppBootInfo and IsAppAllowedOutput (identically); keep the first.
go run ./contracts/internal/dedupetypes "${files[@]}"
chmod 0644 "${files[@]}" # abigen writes 0600
go vet ./bindings

log "wrote ${files[*]}"

#!/usr/bin/env bash
# Measures what a new user meets: the README's first command on a fresh clone
# with an EMPTY Go build cache (the module cache as it is: warm on a machine
# that ran `go mod download` or any build of this module before), then the
# same command again (warm build cache), then the binary's size.
#
#   bash testnet/firstrun.sh [REV]        # default: HEAD of this repository
#   FIRSTRUN_EMPTY_NPM_CACHE=1 bash testnet/firstrun.sh   # npm downloads anvil too
#
# The fresh clone has no .tools/, so a --dev that runs anvil installs it from
# npm during the first command, as it would for the user; set
# FIRSTRUN_EMPTY_NPM_CACHE=1 to count the download as well. Prints one
# "key: value" line per figure on stdout; progress goes to stderr. A cold build
# takes minutes on a small machine: run it alone.
set -euo pipefail

[[ -x /usr/bin/time ]] || { echo "firstrun: needs GNU time at /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
rev=${1:-HEAD}
work=$(mktemp -d "${TMPDIR:-/tmp}/cvmdeploy-firstrun.XXXXXX")
trap 'chmod -R u+w -- "$work" 2>/dev/null; rm -rf -- "$work"' EXIT

log() { printf 'firstrun: %s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

git clone --quiet --no-checkout -- "$repo" "$work/clone"
git -C "$work/clone" checkout --quiet "$(git -C "$repo" rev-parse "$rev")"
export GOCACHE=$work/gocache
mkdir -p "$GOCACHE"
if [[ -n ${FIRSTRUN_EMPTY_NPM_CACHE:-} ]]; then
	export npm_config_cache=$work/npm-cache
fi
cd "$work/clone"

echo "rev: $(git rev-parse --short HEAD)"
echo "machine: nproc $(nproc), $(go version | cut -d' ' -f3-), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "packages (go list -deps .): $(go list -deps . | wc -l)"

# run LABEL: the README's first command; prints the seconds until stdout
# shows "status: running" and until the process exited.
run() {
	local start line seen=""
	log "$1: go run . deploy --dev ..."
	# Sample the 1-minute load every 5 s: other work on the machine
	# stretches the wall time, not the CPU time.
	(while sleep 5; do cut -d' ' -f1 /proc/loadavg; done >"$work/load") &
	local sampler=$!
	start=$(now)
	while IFS= read -r line; do
		if [[ -z $seen && $line == status:*running* ]]; then
			seen=$(secs "$start" "$(now)")
		fi
	done < <(/usr/bin/time -f '%U %S' -o "$work/time" \
		go run . deploy --dev --compose testnet/example/docker-compose.yml --env-file testnet/example/.env 2>"$work/stderr")
	local total cpu load
	total=$(secs "$start" "$(now)")
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	load=$(awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "n/a" }' "$work/load")
	if [[ -z $seen ]]; then
		log "$1: no 'status: running'; stderr:"
		cat "$work/stderr" >&2
		exit 1
	fi
	# The CPU time (user + sys of go, the compiler, the linker, npm and the
	# command itself) does not depend on what else the machine runs: on an
	# idle 2-core machine the wall time is at least half of it.
	cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$work/time")
	echo "$1: $seen s until status: running, $total s until exit, $cpu s CPU (1-min load: $2 before, $load on average during the run)"
}

run "first run, empty GOCACHE" "$(cut -d' ' -f1 /proc/loadavg)"
run "second run, warm GOCACHE" "$(cut -d' ' -f1 /proc/loadavg)"

GOOS=linux GOARCH=amd64 go build -o "$work/plain" .
echo "size, go build (linux/amd64): $(stat -c %s "$work/plain") bytes"
GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$work/release" .
echo "size, go build -trimpath -ldflags='-s -w' (linux/amd64): $(stat -c %s "$work/release") bytes"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Installs Debian's Chromium for the review page's browser test (chromedp
# drives it headless). Idempotent: does nothing when /usr/bin/chromium (or
# $CHROMIUM_BIN) is there. Prints the path of the browser on stdout.
#
# Needs root and apt (CI runs as root on Debian); anywhere else, install a
# Chromium yourself and point CHROMIUM_BIN at it.
set -euo pipefail

BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
log() { printf 'install-chromium: %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then
	echo "$BIN"
	exit 0
fi
if [ -n "${CHROMIUM_BIN:-}" ]; then
	log "CHROMIUM_BIN=$CHROMIUM_BIN is not an executable"
	exit 1
fi
command -v apt-get >/dev/null 2>&1 || { log "apt-get not found: install Chromium yourself and set CHROMIUM_BIN"; exit 1; }
if [ "$(id -u)" != 0 ]; then
	log "not root: run 'sudo apt-get install -y chromium', or set CHROMIUM_BIN to a Chromium"
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Serialise parallel runs; apt takes its own lock too, but would fail
# instead of waiting.
exec 9>/tmp/cvmdeploy-install-chromium.lock
if command -v flock >/dev/null 2>&1; then
	flock -w 900 9 || { log "timed out waiting for another install"; exit 1; }
fi
if [ ! -x "$BIN" ]; then
	log "installing Debian's chromium with apt-get"
	# A fresh machine may have no package lists yet: update once and retry.
	if ! apt-get install -y -q --no-install-recommends chromium >&2; then
		log "apt-get install failed; running apt-get update and trying again"
		apt-get update -q >&2
		apt-get install -y -q --no-install-recommends chromium >&2
	fi
fi
[ -x "$BIN" ] || { log "chromium did not install at $BIN"; exit 1; }
echo "$BIN"

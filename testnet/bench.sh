#!/usr/bin/env bash
# Prints the benchmark table of BENCHMARKS.md: cvmdeploy and the official
# phala CLI measured in one run on one local stack (anvil + local cloud).
# Flags go to the program: -quick, -skip-official, -out FILE, -rev REV, -help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./testnet/cmd/benchmark "$@"

#!/usr/bin/env bash
# Runs every check CI runs, on a fresh machine with only Go and npm:
# installs the pinned tools (and Debian's chromium, as root with apt, for the
# review page's browser test), checks that bindings/ matches contracts/,
# checks formatting and vet, then runs all tests (integration tests included:
# they start their own anvil and local cloud on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")"

echo "==> installing anvil 1.7.1 (npm, into .tools/)" >&2
bash testnet/install-anvil.sh >/dev/null

echo "==> installing Debian's chromium when missing (the review page's browser test)" >&2
bash testnet/install-chromium.sh >/dev/null

echo "==> installing the Safe v1.4.1 contracts and @safe-global/api-kit 5.0.3 (npm, into .tools/)" >&2
bash testnet/install-safe-contracts.sh >/dev/null
bash testnet/safeservice/install-api-kit.sh >/dev/null

echo "==> regenerating bindings/ (pinned solc + abigen) and checking they are current" >&2
bash abigen.sh
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if ! git diff --exit-code --stat -- bindings/; then
    echo "bindings/ is stale: run 'bash abigen.sh' and commit the result" >&2
    exit 1
  fi
fi

echo "==> gofmt and go vet" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# The devchain build (the embedded go-ethereum chain linked in) has files of its own.
go vet -tags devchain ./internal/commands/

echo "==> windows/amd64 compiles and vets (the release builds it; linux has the tests)" >&2
GOOS=windows GOARCH=amd64 go build ./...
GOOS=windows GOARCH=amd64 go vet ./...

echo "==> go test" >&2
go test -count=1 -timeout 30m ./...

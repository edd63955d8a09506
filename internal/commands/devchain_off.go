//go:build !devchain

package commands

import "github.com/cvmdeploy/cvmdeploy/testnet"

// embeddedChain is nil in the default build: the in-process go-ethereum dev
// chain would link a whole node (about 440 more packages, a cold build about
// three times as long and a binary about three times as large), so --dev and
// testnet up run anvil. `go build -tags devchain` links it in (devchain_on.go).
var embeddedChain testnet.EmbeddedChain

//go:build devchain

package commands

import (
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/devchain"
)

// embeddedChain is the in-process go-ethereum dev chain in the devchain
// build: deploy --dev runs it instead of anvil (needing nothing but Go), and
// testnet up --embedded works.
var embeddedChain testnet.EmbeddedChain = devchain.ForLocalnet

package commands

import "github.com/cvmdeploy/cvmdeploy/testnet/devchain"

// These tests run testnet up --embedded in-process, so the test binary links
// the embedded chain whatever the build tags; the default cvmdeploy binary
// does not (e2e_test.go checks what it answers to --embedded).
func init() {
	if embeddedChain == nil {
		embeddedChain = devchain.ForLocalnet
	}
}

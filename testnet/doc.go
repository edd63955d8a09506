// Package testnet runs local chains for tests and rehearsals: anvil (pinned,
// installed from npm by install-anvil.sh) and an embedded in-process
// go-ethereum dev chain that needs nothing but Go, plus the local cloud built
// on top of them.
package testnet

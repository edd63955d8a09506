// Package bindings holds the abigen --v2 Go bindings of DstackKms, DstackApp and
// OpenZeppelin's ERC1967Proxy, generated from contracts/ by abigen.sh; the other
// files are generated and must not be edited by hand.
package bindings

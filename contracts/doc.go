// Package contracts holds the Solidity sources of the toolkit's own DstackKms and
// DstackApp contracts (interface-compatible with dstack's on-chain KMS), the
// compile step used by ../abigen.sh, and tests that check the generated bindings
// against the reference ABI and the contracts' behaviour in an in-process EVM.
package contracts

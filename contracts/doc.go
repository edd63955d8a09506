// Package contracts holds the Solidity sources of the toolkit's own DstackKms and
// DstackApp contracts (interface-compatible with dstack's on-chain KMS), the
// compile step used by ../abigen.sh (which also compiles OpenZeppelin's
// TimelockController 5.4.0 unchanged, for timelock-owned apps), and tests that
// check the generated bindings against the reference ABIs and vectors and the
// contracts' behaviour in an in-process EVM.
package contracts

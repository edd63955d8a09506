// Package deployer signs and sends the transactions that deploy and manage
// dstack AppAuth contracts (DstackKms factory, DstackApp admin) on any EVM
// chain, with batched preflight checks and decoded revert reasons.
package deployer

// Package cvm runs the two-phase Phala Cloud deployment of a CVM (provision,
// AppAuth on-chain, env encryption, commit) as resumable, journaled steps.
package cvm

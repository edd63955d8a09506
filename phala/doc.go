// Package phala is a typed client for the Phala Cloud REST API: provisioning and
// committing CVMs, on-chain KMS discovery and app env public keys, CVM state
// (SSE watch with a polling fallback) and the on-chain compose-update flow.
//
// The request and response types marshal to the exact JSON shapes the service
// and the official `phala` CLI 1.1.18 use, so the local cloud emulator in
// testnet/ serves them with the same types. Only the standard library is used.
package phala

// Package kms prepares what a dstack app's secrets and manifest need before
// they leave the user's machine: .env input checked against the dstack
// limits, env encryption to the app's X25519 key, verification that this key
// was signed by the KMS root key named on chain, and the compose hash,
// byte for byte as the official JavaScript SDK (@phala/dstack-sdk 0.5.8)
// computes them.
//
// The package does no I/O beyond reading the .env files it is given, never
// puts an env value into an error, and imports only go-ethereum's crypto
// package (for secp256k1 public-key recovery and Keccak-256).
package kms

package kms

import (
	"errors"
	"fmt"
)

// ErrInvalidInput is wrapped by every error that blames what the caller
// passed in (a malformed key, signature, ciphertext, .env line or JSON
// document), so that a command line can map all of them to one exit code
// with errors.Is. Verification failures (a key mismatch, a stale timestamp)
// do not wrap it: the input was well formed, the check failed.
var ErrInvalidInput = errors.New("invalid input")

// Sentinels for the kinds of bad input; each wraps ErrInvalidInput.
var (
	// ErrInvalidPublicKey: an X25519 public key that is not 32 bytes of hex.
	ErrInvalidPublicKey = fmt.Errorf("%w: X25519 public key", ErrInvalidInput)
	// ErrLowOrderPublicKey: an X25519 public key whose shared secret is all
	// zero (a low-order point); the guest refuses such a secret, and it would
	// make the ciphertext readable by anyone.
	ErrLowOrderPublicKey = fmt.Errorf("%w: low-order X25519 public key (all-zero shared secret)", ErrInvalidInput)
	// ErrInvalidPrivateKey: an X25519 private key that is not 32 bytes.
	ErrInvalidPrivateKey = fmt.Errorf("%w: X25519 private key", ErrInvalidInput)
	// ErrInvalidCiphertext: an encrypted env that is not hex, too short, or
	// fails authentication (wrong key, truncated or tampered).
	ErrInvalidCiphertext = fmt.Errorf("%w: encrypted env", ErrInvalidInput)
	// ErrInvalidSignature: a KMS signature that is not 65 bytes r‖s‖v with
	// v in {0, 1} and 1 ≤ r, s < n, or from which no key can be recovered.
	ErrInvalidSignature = fmt.Errorf("%w: KMS signature", ErrInvalidInput)
	// ErrInvalidAppID: an app id that is not 20 bytes of hex.
	ErrInvalidAppID = fmt.Errorf("%w: app id", ErrInvalidInput)
	// ErrInvalidRootKey: a KMS root key that is not a secp256k1 point in
	// compressed (33 bytes) or uncompressed (65 bytes) form.
	ErrInvalidRootKey = fmt.Errorf("%w: KMS root key", ErrInvalidInput)
	// ErrInvalidJSON: a document that is not one valid JSON value, or that
	// the canonical form cannot represent exactly.
	ErrInvalidJSON = fmt.Errorf("%w: JSON", ErrInvalidInput)
)

// Sentinels for .env problems, found in EnvError.Err; each wraps ErrInvalidInput.
var (
	ErrMalformedLine = fmt.Errorf("%w: malformed .env line", ErrInvalidInput)
	ErrDuplicateKey  = fmt.Errorf("%w: duplicate env key", ErrInvalidInput)
	ErrInvalidKey    = fmt.Errorf("%w: invalid env key", ErrInvalidInput)
	ErrKeyTooLong    = fmt.Errorf("%w: env key too long", ErrInvalidInput)
	ErrValueTooLarge = fmt.Errorf("%w: env value too large", ErrInvalidInput)
	ErrTooManyVars   = fmt.Errorf("%w: too many env variables", ErrInvalidInput)
	ErrEnvTooLarge   = fmt.Errorf("%w: env too large", ErrInvalidInput)
	ErrInvalidUTF8   = fmt.Errorf("%w: env not valid UTF-8", ErrInvalidInput)
	ErrUnsetVar      = fmt.Errorf("%w: env variable not set", ErrInvalidInput)
)

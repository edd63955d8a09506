package kms

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
)

// Freshness limits of a v1 (timestamped) signature, the SDK's defaults.
const (
	DefaultMaxAge    = 300 * time.Second
	DefaultMaxFuture = 60 * time.Second
)

const (
	appIDSize     = 20
	signatureSize = 65
)

// envPubKeyDomain starts every message the KMS signs for an env-encryption
// public key.
const envPubKeyDomain = "dstack-env-encrypt-pubkey:"

// ParseAppID decodes an app id: 20 bytes as hex, with or without "0x" or
// "0X", any letter case (so checksummed addresses work). This follows
// @phala/dstack-sdk 0.5.8; 0.5.7 (inside @phala/cloud 0.2.9) ignored "0X"
// and dropped the last digit of odd-length ids. Unlike both, any length but
// 20 bytes is refused: such an id cannot be an app.
func ParseAppID(s string) ([]byte, error) {
	b, err := decodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidAppID, err)
	}
	if len(b) != appIDSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d (40 hex digits)", ErrInvalidAppID, len(b), appIDSize)
	}
	return b, nil
}

// EnvPubKeyMessage returns the message the KMS signs over an app's
// env-encryption public key: "dstack-env-encrypt-pubkey:" ‖ app id (20
// bytes) ‖ public key (32) for the legacy signature, with the signing time
// as a big-endian uint64 between app id and key for the v1 signature
// (timestamp != nil). The signature covers keccak256 of it, without any
// EIP-191 prefix.
func EnvPubKeyMessage(appID, pubKey []byte, timestamp *uint64) []byte {
	msg := make([]byte, 0, len(envPubKeyDomain)+len(appID)+8+len(pubKey))
	msg = append(msg, envPubKeyDomain...)
	msg = append(msg, appID...)
	if timestamp != nil {
		msg = binary.BigEndian.AppendUint64(msg, *timestamp)
	}
	return append(msg, pubKey...)
}

// checkSignature accepts exactly 65 bytes r ‖ s ‖ v with v the recovery id 0
// or 1 and 1 ≤ r, s < n. Compared with the SDK (noble-curves):
//   - v = 27/28 (Ethereum style) is refused, as the SDK refuses it.
//   - v = 2/3 is refused; the SDK would try them, but they only occur when
//     r < p − n (odds about 2^-127), and the KMS signs with 0 or 1.
//   - High-S signatures are ACCEPTED, as the SDK accepts them. Flipping s to
//     n − s (and v) turns a valid signature into another valid one by the same
//     key over the same message; it proves exactly as much, and refusing it
//     would only reject keys the official tools accept.
func checkSignature(sig []byte) error {
	if len(sig) != signatureSize {
		return fmt.Errorf("%w: %d bytes, want %d (r ‖ s ‖ v)", ErrInvalidSignature, len(sig), signatureSize)
	}
	v := sig[64]
	switch {
	case v == 27 || v == 28:
		return fmt.Errorf("%w: recovery id %d is Ethereum style; the KMS signs with 0 or 1", ErrInvalidSignature, v)
	case v > 1:
		return fmt.Errorf("%w: recovery id %d, want 0 or 1", ErrInvalidSignature, v)
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:64])
	// homestead=false: range checks only, high S allowed (see above).
	if !crypto.ValidateSignatureValues(v, r, s, false) {
		return fmt.Errorf("%w: r or s is out of range (must be 1 ≤ r, s < n)", ErrInvalidSignature)
	}
	return nil
}

// ParseSignature decodes a KMS signature given as hex ("0x" optional) and
// checks its form: 65 bytes r ‖ s ‖ v, v in {0, 1}, 1 ≤ r, s < n.
func ParseSignature(s string) ([]byte, error) {
	sig, err := decodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if err := checkSignature(sig); err != nil {
		return nil, err
	}
	return sig, nil
}

// RecoverAppKeySigner recovers the secp256k1 key that signed pubKey (the
// app's 32-byte X25519 env-encryption key) for appID, and returns it in
// 33-byte compressed form. timestamp selects the v1 message; nil the legacy
// one. It checks no freshness and trusts nothing: callers compare the result
// with the KMS root key, which is what VerifyAppKey does.
func RecoverAppKeySigner(appID string, pubKey []byte, sig []byte, timestamp *uint64) ([]byte, error) {
	id, err := ParseAppID(appID)
	if err != nil {
		return nil, err
	}
	if len(pubKey) != x25519KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPublicKey, len(pubKey), x25519KeySize)
	}
	if err := checkSignature(sig); err != nil {
		return nil, err
	}
	hash := crypto.Keccak256(EnvPubKeyMessage(id, pubKey, timestamp))
	pub, err := crypto.SigToPub(hash, sig)
	if err != nil {
		return nil, fmt.Errorf("%w: no public key can be recovered from it", ErrInvalidSignature)
	}
	return crypto.CompressPubkey(pub), nil
}

// NormalizeRootKey returns a KMS root key in 33-byte compressed form. It
// accepts the compressed form (what kmsInfo().k256Pubkey holds) and the
// 65-byte uncompressed one, and checks that the point is on the curve.
func NormalizeRootKey(key []byte) ([]byte, error) {
	switch len(key) {
	case 33:
		pub, err := crypto.DecompressPubkey(key)
		if err != nil {
			return nil, fmt.Errorf("%w: not a secp256k1 point", ErrInvalidRootKey)
		}
		return crypto.CompressPubkey(pub), nil
	case 65:
		pub, err := crypto.UnmarshalPubkey(key)
		if err != nil {
			return nil, fmt.Errorf("%w: not a secp256k1 point", ErrInvalidRootKey)
		}
		return crypto.CompressPubkey(pub), nil
	case 0:
		return nil, fmt.Errorf("%w: empty (is a root key set on the KMS contract?)", ErrInvalidRootKey)
	}
	return nil, fmt.Errorf("%w: %d bytes, want 33 (compressed) or 65 (uncompressed)", ErrInvalidRootKey, len(key))
}

// VerifyParams is what VerifyAppKey checks. Every field but Timestamp, Now,
// MaxAge and MaxFuture is required: in particular there is no way to skip
// the comparison with the root key by leaving RootKey empty.
type VerifyParams struct {
	AppID     string  // app id, 20 bytes as hex ("0x" optional)
	PublicKey string  // the app's X25519 env-encryption public key, 32 bytes as hex ("0x" optional)
	Signature string  // the KMS signature over it, 65 bytes r‖s‖v as hex ("0x" optional)
	Timestamp *uint64 // signing time (Unix seconds) of a v1 signature; nil for a legacy signature

	Now       time.Time     // clock for the v1 freshness window; zero means time.Now()
	MaxAge    time.Duration // oldest v1 signature accepted (whole seconds); zero means DefaultMaxAge
	MaxFuture time.Duration // furthest-future v1 timestamp accepted (whole seconds); zero means DefaultMaxFuture

	// RootKey is the KMS root key, DstackKms.kmsInfo().k256Pubkey read from
	// the chain: 33 bytes compressed, or 65 uncompressed.
	RootKey []byte
}

// Check validates the form of every field without verifying anything.
func (p VerifyParams) Check() error {
	if _, err := ParseAppID(p.AppID); err != nil {
		return err
	}
	if _, err := ParseX25519PublicKey(p.PublicKey); err != nil {
		return err
	}
	if _, err := ParseSignature(p.Signature); err != nil {
		return err
	}
	if _, err := NormalizeRootKey(p.RootKey); err != nil {
		return err
	}
	if p.MaxAge < 0 || p.MaxFuture < 0 {
		return fmt.Errorf("%w: negative freshness window", ErrInvalidInput)
	}
	return nil
}

// KeyMismatchError means the env-encryption public key was not signed by the
// KMS root key: the key did not come from the KMS the chain names, so the
// env must not be encrypted to it.
type KeyMismatchError struct {
	Expected []byte // the KMS root key, compressed
	Found    []byte // the key that signed, compressed
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("KMS key mismatch: the env-encryption public key must be signed by the KMS root key 0x%x, "+
		"but it was signed by 0x%x (wrong KMS contract or chain, a v1 signature checked as legacy or the reverse, or a key that did not come from this KMS)",
		e.Expected, e.Found)
}

// FreshnessError means a v1 signature's timestamp lies outside the accepted
// window: too old (a replayed key) or too far in the future.
type FreshnessError struct {
	Timestamp uint64        // signing time in the signed message
	Now       time.Time     // the clock it was compared with
	Age       int64         // Now - Timestamp in seconds; negative in the future
	Limit     time.Duration // the window that was exceeded
}

func (e *FreshnessError) Error() string {
	if e.Age < 0 {
		return fmt.Sprintf("KMS signature timestamp %d is %ds in the future (at most %s allowed); check the clock", e.Timestamp, -e.Age, e.Limit)
	}
	return fmt.Sprintf("KMS signature timestamp %d is %ds old (at most %s allowed); fetch the key again", e.Timestamp, e.Age, e.Limit)
}

// IsVerifyFailure reports whether err says that verification failed on
// well-formed input (*KeyMismatchError, *FreshnessError, or an app-compose
// that breaks the rule, *ComposeRuleError), as opposed to malformed input
// (ErrInvalidInput).
func IsVerifyFailure(err error) bool {
	var km *KeyMismatchError
	var fe *FreshnessError
	return errors.As(err, &km) || errors.As(err, &fe) || errors.Is(err, ErrComposeRule)
}

// VerifyAppKey checks that p.PublicKey was signed for p.AppID by the KMS
// root key p.RootKey, as the dstack SDK's verifyEnvEncryptPublicKey[Legacy]
// recovers it, plus the comparison the SDK leaves to its caller. A v1
// signature must also be fresh: at most MaxAge old and MaxFuture ahead, the
// bounds included, in whole seconds as the SDK counts them.
//
// It returns nil only when the recovered key equals the root key;
// *KeyMismatchError when another key signed; *FreshnessError for a stale v1
// signature; an error wrapping ErrInvalidInput for malformed fields.
func VerifyAppKey(p VerifyParams) error {
	if err := p.Check(); err != nil {
		return err
	}
	root, _ := NormalizeRootKey(p.RootKey) // checked above
	pub, _ := ParseX25519PublicKey(p.PublicKey)
	sig, _ := ParseSignature(p.Signature)

	if p.Timestamp != nil {
		if err := checkFreshness(p); err != nil {
			return err
		}
	}
	found, err := RecoverAppKeySigner(p.AppID, pub.Bytes(), sig, p.Timestamp)
	if err != nil {
		return err
	}
	if !bytes.Equal(found, root) {
		return &KeyMismatchError{Expected: root, Found: found}
	}
	return nil
}

func checkFreshness(p VerifyParams) error {
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxAge, maxFuture := p.MaxAge, p.MaxFuture
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	if maxFuture == 0 {
		maxFuture = DefaultMaxFuture
	}
	// Clamp both to ±2^62 so the subtraction cannot overflow; the window
	// is a few minutes, so clamped values fail exactly as the real ones would.
	const bound = int64(1) << 62
	ts := *p.Timestamp
	tsSec := bound
	if ts < uint64(bound) {
		tsSec = int64(ts)
	}
	nowSec := min(max(now.Unix(), -bound), bound) // floor, like the SDK's Math.floor(Date.now()/1000)
	fail := func(age int64, limit time.Duration) error {
		return &FreshnessError{Timestamp: ts, Now: now, Age: age, Limit: limit}
	}
	age := nowSec - tsSec
	if age < -int64(maxFuture/time.Second) {
		return fail(age, maxFuture)
	}
	if age > int64(maxAge/time.Second) {
		return fail(age, maxAge)
	}
	return nil
}

package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Sizes in the encrypted env: ephemeral public key ‖ IV ‖ ciphertext ‖ tag.
const (
	x25519KeySize = 32
	gcmIVSize     = 12
	gcmTagSize    = 16
)

// decodeHex decodes hex with an optional "0x" or "0X" prefix. Its errors
// never quote the input.
func decodeHex(s string) ([]byte, error) {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("odd number of hex digits (%d)", len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not hex")
	}
	return b, nil
}

// ParseX25519PublicKey decodes the app's env-encryption public key: 32 bytes
// as hex, with or without "0x".
func ParseX25519PublicKey(s string) (*ecdh.PublicKey, error) {
	b, err := decodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	if len(b) != x25519KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d (64 hex digits)", ErrInvalidPublicKey, len(b), x25519KeySize)
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	return pub, nil
}

// EnvPlaintext returns the bytes that get encrypted: the UTF-8 of
// JSON.stringify({env: envs}), i.e. {"env":[{"key":…,"value":…},…]} with
// JavaScript's string escaping, in the given order. It does not check envs.
func EnvPlaintext(envs []EnvVar) []byte {
	n := len(`{"env":[]}`)
	for _, e := range envs {
		n += len(`{"key":"","value":""},`) + len(e.Key) + len(e.Value)
	}
	b := make([]byte, 0, n+n/8)
	b = append(b, `{"env":[`...)
	for i, e := range envs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSString(b, e.Key)
		b = append(b, `,"value":`...)
		b = appendJSString(b, e.Value)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// EncryptEnv encrypts envs to the app's X25519 public key (hex, "0x"
// optional) as the official encryptEnvVars does, with fresh randomness. envs
// must pass CheckEnv. The result is lowercase hex of ephemeral public key
// (32 bytes) ‖ IV (12) ‖ AES-256-GCM ciphertext and tag, the key being the
// raw X25519 shared secret, with no associated data.
func EncryptEnv(envs []EnvVar, pubKeyHex string) (string, error) {
	return EncryptEnvWithRand(envs, pubKeyHex, rand.Reader)
}

// EncryptEnvWithRand is EncryptEnv drawing its randomness from r, in the
// order the SDK draws it: 32 bytes of ephemeral private key, then the 12-byte
// IV. Only tests should pass anything but crypto/rand.Reader.
func EncryptEnvWithRand(envs []EnvVar, pubKeyHex string, r io.Reader) (string, error) {
	if err := CheckEnv(envs); err != nil {
		return "", err
	}
	remote, err := ParseX25519PublicKey(pubKeyHex)
	if err != nil {
		return "", err
	}

	var seed [x25519KeySize]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return "", fmt.Errorf("kms: read randomness: %w", err)
	}
	// NewPrivateKey rather than GenerateKey: the latter may ignore r, and
	// the vectors need the injected key.
	eph, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		return "", fmt.Errorf("kms: ephemeral key: %w", err)
	}
	shared, err := x25519Shared(eph, remote)
	if err != nil {
		return "", err
	}
	defer clear(shared)

	var iv [gcmIVSize]byte
	if _, err := io.ReadFull(r, iv[:]); err != nil {
		return "", fmt.Errorf("kms: read randomness: %w", err)
	}
	aead, err := newGCM(shared)
	if err != nil {
		return "", err
	}
	plaintext := EnvPlaintext(envs)
	defer clear(plaintext)
	out := make([]byte, 0, x25519KeySize+gcmIVSize+len(plaintext)+gcmTagSize)
	out = append(out, eph.PublicKey().Bytes()...)
	out = append(out, iv[:]...)
	out = aead.Seal(out, iv[:], plaintext, nil)
	return hex.EncodeToString(out), nil
}

// x25519Shared computes the raw shared secret and refuses the all-zero one
// that a low-order public key produces.
func x25519Shared(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) ([]byte, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		// crypto/ecdh fails exactly for the all-zero result.
		return nil, ErrLowOrderPublicKey
	}
	if subtle.ConstantTimeCompare(shared, make([]byte, len(shared))) == 1 {
		return nil, ErrLowOrderPublicKey
	}
	return shared, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kms: AES: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kms: GCM: %w", err)
	}
	return aead, nil
}

// DecryptEnv opens what EncryptEnv (or the official SDK) produced, with the
// app's 32-byte X25519 private key, as the guest does. It is for emulators
// and tests; it checks the format of the plaintext but not the dstack
// limits. Its errors wrap ErrInvalidCiphertext and never include plaintext.
func DecryptEnv(ciphertextHex string, privateKey []byte) ([]EnvVar, error) {
	if len(privateKey) != x25519KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPrivateKey, len(privateKey), x25519KeySize)
	}
	priv, err := ecdh.X25519().NewPrivateKey(privateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPrivateKey, err)
	}
	data, err := decodeHex(ciphertextHex)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCiphertext, err)
	}
	if min := x25519KeySize + gcmIVSize + gcmTagSize; len(data) < min {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d of key, IV and tag", ErrInvalidCiphertext, len(data), min)
	}
	eph, err := ecdh.X25519().NewPublicKey(data[:x25519KeySize])
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %w", ErrInvalidCiphertext, err)
	}
	shared, err := x25519Shared(priv, eph)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key is a low-order point", ErrInvalidCiphertext)
	}
	defer clear(shared)
	aead, err := newGCM(shared)
	if err != nil {
		return nil, err
	}
	iv := data[x25519KeySize : x25519KeySize+gcmIVSize]
	plaintext, err := aead.Open(nil, iv, data[x25519KeySize+gcmIVSize:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (wrong key, or truncated or altered data)", ErrInvalidCiphertext)
	}
	defer clear(plaintext)
	return parseEnvPlaintext(plaintext)
}

// parseEnvPlaintext reads {"env":[{"key":…,"value":…},…]} strictly: exact
// member names (encoding/json alone would match them case-insensitively),
// no other members, both present and strings. Decoder messages may quote the
// plaintext, so they are never passed on.
func parseEnvPlaintext(plaintext []byte) ([]EnvVar, error) {
	bad := fmt.Errorf("%w: plaintext is not {\"env\":[{\"key\":…,\"value\":…}]}", ErrInvalidCiphertext)
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(plaintext))
	if err := dec.Decode(&doc); err != nil {
		return nil, bad
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the plaintext JSON", ErrInvalidCiphertext)
	}
	raw, ok := doc["env"]
	if !ok || len(doc) != 1 {
		return nil, fmt.Errorf("%w: plaintext has no \"env\" list", ErrInvalidCiphertext)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, bad
	}
	envs := make([]EnvVar, len(items))
	for i, item := range items {
		k, okK := item["key"]
		v, okV := item["value"]
		if !okK || !okV || len(item) != 2 {
			return nil, fmt.Errorf("%w: env entry #%d does not have exactly \"key\" and \"value\"", ErrInvalidCiphertext, i+1)
		}
		if json.Unmarshal(k, &envs[i].Key) != nil || json.Unmarshal(v, &envs[i].Value) != nil || k[0] != '"' || v[0] != '"' {
			return nil, bad
		}
	}
	return envs, nil
}

package cloud

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/ethereum/go-ethereum/crypto"
)

// keyring is the emulated KMS: a secp256k1 root key whose compressed public
// key is what DstackKms.kmsInfo().k256Pubkey holds on-chain, and a secret
// from which every app's X25519 env-encryption key is derived.
type keyring struct {
	root   *ecdsa.PrivateKey
	signer *ecdsa.PrivateKey // signs app keys: root, or a forger's key (forged-key)
	secret []byte
}

// envKeyDomain separates the app-key derivation from any other use of the
// secret; changing it changes every app key.
const envKeyDomain = "cvmdeploy-local-kms/app-env-key/v1"

// appEnvKey derives the app's X25519 private key:
// sha256(domain ‖ secret ‖ app_id(20)). X25519 clamps any 32 bytes, so the
// digest is a valid scalar as is.
func (k *keyring) appEnvKey(appID [20]byte) (*ecdh.PrivateKey, error) {
	h := sha256.New()
	h.Write([]byte(envKeyDomain))
	h.Write(k.secret)
	h.Write(appID[:])
	priv, err := ecdh.X25519().NewPrivateKey(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("derive app env key: %w", err)
	}
	return priv, nil
}

// signPubkey signs like the dstack KMS (reference §6): legacy over
// keccak256("dstack-env-encrypt-pubkey:" ‖ app_id ‖ pubkey), v1 with the
// u64 big-endian timestamp between app id and key. r‖s‖v with v = 0/1.
func (k *keyring) signPubkey(appID [20]byte, pub []byte, timestamp uint64, v1 bool) ([]byte, error) {
	msg := []byte("dstack-env-encrypt-pubkey:")
	msg = append(msg, appID[:]...)
	if v1 {
		msg = binary.BigEndian.AppendUint64(msg, timestamp)
	}
	msg = append(msg, pub...)
	sig, err := crypto.Sign(crypto.Keccak256(msg), k.signer)
	if err != nil {
		return nil, fmt.Errorf("sign env pubkey: %w", err)
	}
	return sig, nil
}

// RootPublicKey is the 33-byte compressed secp256k1 public key that must be
// stored on-chain with setKmsInfo.
func (k *keyring) rootPublicKey() []byte { return crypto.CompressPubkey(&k.root.PublicKey) }

func appIDBytes(lowerHex string) ([20]byte, error) {
	var out [20]byte
	b, err := hex.DecodeString(lowerHex)
	if err != nil || len(b) != 20 {
		return out, fmt.Errorf("app id %q: %w", lowerHex, errNotHex)
	}
	copy(out[:], b)
	return out, nil
}

package kms

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
)

// The vector files are the ground truth made with @phala/dstack-sdk 0.5.8
// and @phala/cloud 0.2.9; every case in them is checked here.
const vectorDir = "../testdata/vectors"

func loadVectors(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		t.Fatalf("bad hex in vectors %q: %v", s, err)
	}
	return b
}

type envVector struct {
	Name                string   `json:"name"`
	RecipientPrivateKey string   `json:"recipient_private_key_hex"`
	RecipientPublicKey  string   `json:"recipient_public_key_hex"`
	PublicKeyArg        string   `json:"public_key_arg"`
	Env                 []EnvVar `json:"env"`
	ExpectedPlaintext   string   `json:"expected_plaintext_json"`
	EphemeralPrivateKey string   `json:"ephemeral_private_key_hex"`
	EphemeralPublicKey  string   `json:"ephemeral_public_key_hex"`
	IV                  string   `json:"iv_hex"`
	SharedSecret        string   `json:"shared_secret_hex"`
	Ciphertext          string   `json:"ciphertext_hex"`
}

func envVectors(t testing.TB) []envVector {
	var f struct {
		Cases []envVector `json:"cases"`
	}
	loadVectors(t, "env-encryption.json", &f)
	if len(f.Cases) == 0 {
		t.Fatal("no env-encryption cases")
	}
	return f.Cases
}

func TestVectorsEnvPlaintext(t *testing.T) {
	for _, c := range envVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			if got := string(EnvPlaintext(c.Env)); got != c.ExpectedPlaintext {
				t.Errorf("plaintext\n got %q\nwant %q", got, c.ExpectedPlaintext)
			}
		})
	}
}

func TestVectorsEncryptByteExact(t *testing.T) {
	for _, c := range envVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			// The SDK draws the ephemeral key, then the IV.
			r := bytes.NewReader(append(mustHex(t, c.EphemeralPrivateKey), mustHex(t, c.IV)...))
			got, err := EncryptEnvWithRand(c.Env, c.PublicKeyArg, r)
			if err != nil {
				t.Fatalf("EncryptEnvWithRand: %v", err)
			}
			if got != c.Ciphertext {
				t.Errorf("ciphertext\n got %s\nwant %s", got, c.Ciphertext)
			}
			if r.Len() != 0 {
				t.Errorf("%d bytes of randomness left unread", r.Len())
			}
			// The intermediate values, so a failure points at its step.
			if !strings.HasPrefix(got, c.EphemeralPublicKey+c.IV) {
				t.Errorf("output does not start with ephemeral key ‖ IV")
			}
			eph, err := ecdh.X25519().NewPrivateKey(mustHex(t, c.EphemeralPrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			remote, err := ParseX25519PublicKey(c.PublicKeyArg)
			if err != nil {
				t.Fatal(err)
			}
			shared, err := x25519Shared(eph, remote)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(shared) != c.SharedSecret {
				t.Errorf("shared secret %x, want %s", shared, c.SharedSecret)
			}
		})
	}
}

func TestVectorsDecrypt(t *testing.T) {
	for _, c := range envVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			got, err := DecryptEnv(c.Ciphertext, mustHex(t, c.RecipientPrivateKey))
			if err != nil {
				t.Fatalf("DecryptEnv: %v", err)
			}
			if len(got) != len(c.Env) {
				t.Fatalf("got %d variables, want %d", len(got), len(c.Env))
			}
			for i := range got {
				if got[i] != c.Env[i] {
					t.Errorf("variable %d: got key %q (value %d bytes), want key %q (value %d bytes)",
						i, got[i].Key, len(got[i].Value), c.Env[i].Key, len(c.Env[i].Value))
				}
			}
		})
	}
}

func TestVectorsRecipientKeys(t *testing.T) {
	var f struct {
		Recipients []struct {
			Private string `json:"private_key_hex"`
			Public  string `json:"public_key_hex"`
		} `json:"recipients"`
	}
	loadVectors(t, "env-encryption.json", &f)
	for _, r := range f.Recipients {
		priv, err := ecdh.X25519().NewPrivateKey(mustHex(t, r.Private))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(priv.PublicKey().Bytes()); got != r.Public {
			t.Errorf("public key of %s… = %s, want %s", r.Private[:8], got, r.Public)
		}
	}
}

type composeVector struct {
	Name          string          `json:"name"`
	AppCompose    json.RawMessage `json:"app_compose"`
	CanonicalJSON string          `json:"canonical_json"`
	ExpectedHash  string          `json:"expected_hash"`
	Normalized    struct {
		CanonicalJSON string `json:"canonical_json"`
		ExpectedHash  string `json:"expected_hash"`
	} `json:"normalized"`
}

func composeVectors(t testing.TB) []composeVector {
	var f struct {
		Cases []composeVector `json:"cases"`
	}
	loadVectors(t, "compose-hash.json", &f)
	if len(f.Cases) == 0 {
		t.Fatal("no compose-hash cases")
	}
	return f.Cases
}

func TestVectorsComposeHash(t *testing.T) {
	for _, c := range composeVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			for _, norm := range []struct {
				normalize bool
				canon     string
				hash      string
			}{
				{false, c.CanonicalJSON, c.ExpectedHash},
				{true, c.Normalized.CanonicalJSON, c.Normalized.ExpectedHash},
			} {
				v, err := ParseJSON(c.AppCompose)
				if err != nil {
					t.Fatalf("ParseJSON: %v", err)
				}
				obj := v.(map[string]any)
				if norm.normalize {
					obj = NormalizeAppCompose(obj)
				}
				canon, err := CanonicalJSON(obj)
				if err != nil {
					t.Fatalf("CanonicalJSON: %v", err)
				}
				if string(canon) != norm.canon {
					t.Errorf("normalize=%v canonical JSON\n got %s\nwant %s", norm.normalize, canon, norm.canon)
				}
				hash, err := ComposeHash(c.AppCompose, norm.normalize)
				if err != nil {
					t.Fatalf("ComposeHash: %v", err)
				}
				if hash != norm.hash {
					t.Errorf("normalize=%v hash %s, want %s", norm.normalize, hash, norm.hash)
				}
				if err := CheckComposeHash(c.AppCompose, norm.hash); err != nil {
					t.Errorf("CheckComposeHash(normalize=%v hash): %v", norm.normalize, err)
				}
			}
		})
	}
}

type sigVector struct {
	Name              string  `json:"name"`
	AppID             string  `json:"app_id"`
	AppIDBytes        string  `json:"app_id_bytes_hex"`
	Timestamp         *uint64 `json:"timestamp"`
	VerifyNow         int64   `json:"verify_now_unix"`
	PublicKey         string  `json:"public_key_hex"`
	Message           string  `json:"message_hex"`
	MessageHash       string  `json:"message_hash_hex"`
	Signature         string  `json:"signature_hex"`
	ExpectedRecovered string  `json:"expected_recovered_pubkey"`
	ExpectedValid     bool    `json:"expected_valid"`
	SDKLegacyResult   *string `json:"sdk_0_5_8_legacy_result"`
	SDKResult         *string `json:"sdk_0_5_8_result"`
	Options           *struct {
		MaxAgeSeconds int64 `json:"maxAgeSeconds"`
	} `json:"options"`
}

type sigVectorFile struct {
	KMSRoot struct {
		Private      string `json:"private_key_hex"`
		Compressed   string `json:"compressed_public_key_hex"`
		Uncompressed string `json:"uncompressed_public_key_hex"`
	} `json:"kms_root"`
	OtherKey struct {
		Private    string `json:"private_key_hex"`
		Compressed string `json:"compressed_public_key_0x"`
	} `json:"other_key"`
	V0 struct {
		Valid   []sigVector `json:"valid"`
		Invalid []sigVector `json:"invalid_or_edge"`
	} `json:"v0"`
	V1 struct {
		Valid   []sigVector `json:"valid"`
		Invalid []sigVector `json:"invalid_or_edge"`
	} `json:"v1"`
}

func sigVectors(t testing.TB) sigVectorFile {
	var f sigVectorFile
	loadVectors(t, "kms-pubkey-signature.json", &f)
	if len(f.V0.Valid)+len(f.V0.Invalid)+len(f.V1.Valid)+len(f.V1.Invalid) == 0 {
		t.Fatal("no signature cases")
	}
	return f
}

func TestVectorsKMSKeys(t *testing.T) {
	f := sigVectors(t)
	for _, k := range []struct{ priv, compressed string }{
		{f.KMSRoot.Private, f.KMSRoot.Compressed},
		{f.OtherKey.Private, f.OtherKey.Compressed},
	} {
		key, err := crypto.ToECDSA(mustHex(t, k.priv))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(crypto.CompressPubkey(&key.PublicKey)); got != strings.TrimPrefix(k.compressed, "0x") {
			t.Errorf("compressed key %s, want %s", got, k.compressed)
		}
	}
	// The uncompressed form of the root key is accepted and compressed.
	got, err := NormalizeRootKey(mustHex(t, f.KMSRoot.Uncompressed))
	if err != nil {
		t.Fatalf("NormalizeRootKey(uncompressed): %v", err)
	}
	if hex.EncodeToString(got) != f.KMSRoot.Compressed {
		t.Errorf("NormalizeRootKey(uncompressed) = %x, want %s", got, f.KMSRoot.Compressed)
	}
}

func TestVectorsSignatures(t *testing.T) {
	f := sigVectors(t)
	rootKey := mustHex(t, f.KMSRoot.Compressed)
	groups := []struct {
		name  string
		cases []sigVector
	}{
		{"v0/valid", f.V0.Valid},
		{"v0/invalid_or_edge", f.V0.Invalid},
		{"v1/valid", f.V1.Valid},
		{"v1/invalid_or_edge", f.V1.Invalid},
	}
	for _, g := range groups {
		for _, c := range g.cases {
			t.Run(g.name+"/"+c.Name, func(t *testing.T) {
				checkSigVector(t, c, rootKey)
			})
		}
	}
}

func checkSigVector(t *testing.T, c sigVector, rootKey []byte) {
	pub := mustHex(t, c.PublicKey)
	sig := mustHex(t, c.Signature)

	// The message and its hash, where recorded.
	if c.Message != "" {
		msg := EnvPubKeyMessage(mustHex(t, c.AppIDBytes), pub, c.Timestamp)
		if hex.EncodeToString(msg) != c.Message {
			t.Errorf("message %x, want %s", msg, c.Message)
		}
		if got := hex.EncodeToString(crypto.Keccak256(msg)); got != c.MessageHash {
			t.Errorf("message hash %s, want %s", got, c.MessageHash)
		}
	}

	// What the SDK recovered, where it recovered anything: the same key.
	sdk := c.SDKLegacyResult
	if c.Timestamp != nil {
		sdk = c.SDKResult
	}
	if c.ExpectedRecovered != "" {
		sdk = &c.ExpectedRecovered
	}
	recovered, recErr := RecoverAppKeySigner(c.AppID, pub, sig, c.Timestamp)
	if sdk != nil {
		if recErr != nil {
			t.Fatalf("RecoverAppKeySigner: %v; the SDK recovered %s", recErr, *sdk)
		}
		if got := "0x" + hex.EncodeToString(recovered); got != *sdk {
			t.Errorf("recovered %s, the SDK recovered %s", got, *sdk)
		}
	}

	// Verification against the KMS root key. The JSDoc example was signed
	// by another KMS; its expected key is its root.
	root := rootKey
	if c.ExpectedValid && c.ExpectedRecovered != "" {
		root = mustHex(t, c.ExpectedRecovered)
	}
	p := VerifyParams{
		AppID:     c.AppID,
		PublicKey: c.PublicKey,
		Signature: c.Signature,
		Timestamp: c.Timestamp,
		RootKey:   root,
	}
	if c.Timestamp != nil {
		p.Now = time.Unix(c.VerifyNow, 0)
	}
	if c.Options != nil {
		p.MaxAge = time.Duration(c.Options.MaxAgeSeconds) * time.Second
	}
	err := VerifyAppKey(p)
	if c.ExpectedValid {
		if err != nil {
			t.Fatalf("VerifyAppKey: %v, want valid", err)
		}
		return
	}
	if err == nil {
		t.Fatal("VerifyAppKey accepted a signature the vectors call invalid")
	}
	// An invalid case fails for a reason that fits what the SDK did: a
	// different recovered key is a mismatch naming both keys; a null result
	// is malformed input or a stale timestamp.
	var km *KeyMismatchError
	var fe *FreshnessError
	switch {
	case sdk != nil:
		if !errors.As(err, &km) {
			t.Fatalf("got %v, want *KeyMismatchError", err)
		}
		if "0x"+hex.EncodeToString(km.Found) != *sdk || !bytes.Equal(km.Expected, root) {
			t.Errorf("mismatch error has Found %x Expected %x", km.Found, km.Expected)
		}
		if !strings.Contains(err.Error(), hex.EncodeToString(km.Found)) || !strings.Contains(err.Error(), hex.EncodeToString(root)) {
			t.Errorf("message does not name both keys: %v", err)
		}
	case errors.As(err, &fe):
		if c.Timestamp == nil {
			t.Errorf("freshness error for a legacy signature: %v", err)
		}
	default:
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("got %v, want an ErrInvalidInput", err)
		}
		if recErr == nil {
			t.Errorf("RecoverAppKeySigner accepted input the SDK rejected")
		}
	}
}

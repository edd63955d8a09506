package kms

import (
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
)

// kmsKeys returns the vectors' KMS root key and the other signing key.
func kmsKeys(t *testing.T) (root, other *ecdsa.PrivateKey) {
	f := sigVectors(t)
	root, err := crypto.ToECDSA(mustHex(t, f.KMSRoot.Private))
	if err != nil {
		t.Fatal(err)
	}
	other, err = crypto.ToECDSA(mustHex(t, f.OtherKey.Private))
	if err != nil {
		t.Fatal(err)
	}
	return root, other
}

// signAppKey signs an app's env-encryption key as the KMS does.
func signAppKey(t *testing.T, key *ecdsa.PrivateKey, appID, pubKey []byte, ts *uint64) []byte {
	t.Helper()
	sig, err := crypto.Sign(crypto.Keccak256(EnvPubKeyMessage(appID, pubKey, ts)), key)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

type verifyFixture struct {
	appID   []byte
	pubKey  []byte
	rootKey []byte
	params  VerifyParams
}

// freshFixture signs a new random app key with the root key; legacy when ts
// is nil.
func freshFixture(t *testing.T, root *ecdsa.PrivateKey, ts *uint64, now time.Time) verifyFixture {
	appID := crypto.Keccak256([]byte(t.Name()))[:20]
	pub := newRecipient(t).PublicKey().Bytes()
	sig := signAppKey(t, root, appID, pub, ts)
	rootKey := crypto.CompressPubkey(&root.PublicKey)
	return verifyFixture{appID, pub, rootKey, VerifyParams{
		AppID:     "0x" + hex.EncodeToString(appID),
		PublicKey: hex.EncodeToString(pub),
		Signature: hex.EncodeToString(sig),
		Timestamp: ts,
		Now:       now,
		RootKey:   rootKey,
	}}
}

func TestVerifyAppKeyFreshSignatures(t *testing.T) {
	root, _ := kmsKeys(t)
	now := time.Unix(1_800_000_000, 0)
	ts := uint64(now.Unix() - 10)
	for _, tc := range []struct {
		name string
		ts   *uint64
	}{{"legacy", nil}, {"v1", &ts}} {
		t.Run(tc.name, func(t *testing.T) {
			fx := freshFixture(t, root, tc.ts, now)
			if err := VerifyAppKey(fx.params); err != nil {
				t.Fatalf("VerifyAppKey: %v", err)
			}
			// The uncompressed root key works too.
			p := fx.params
			p.RootKey = crypto.FromECDSAPub(&root.PublicKey)
			if err := VerifyAppKey(p); err != nil {
				t.Errorf("VerifyAppKey with the uncompressed root key: %v", err)
			}
			// The other message form recovers another key.
			p = fx.params
			if tc.ts == nil {
				p.Timestamp = &ts
			} else {
				p.Timestamp = nil
			}
			var km *KeyMismatchError
			if err := VerifyAppKey(p); !errors.As(err, &km) {
				t.Errorf("checked with the other message form: got %v, want *KeyMismatchError", err)
			}
		})
	}
}

func TestVerifyAppKeyZeroNowUsesClock(t *testing.T) {
	root, _ := kmsKeys(t)
	ts := uint64(time.Now().Unix())
	fx := freshFixture(t, root, &ts, time.Time{})
	if err := VerifyAppKey(fx.params); err != nil {
		t.Fatalf("signature made now, checked with the zero Now: %v", err)
	}
	old := uint64(time.Now().Add(-time.Hour).Unix())
	fx = freshFixture(t, root, &old, time.Time{})
	var fe *FreshnessError
	if err := VerifyAppKey(fx.params); !errors.As(err, &fe) {
		t.Fatalf("hour-old signature with the zero Now: got %v, want *FreshnessError", err)
	}
}

func TestVerifyAppKeyMismatch(t *testing.T) {
	root, other := kmsKeys(t)
	fx := freshFixture(t, root, nil, time.Time{})
	p := fx.params
	p.Signature = hex.EncodeToString(signAppKey(t, other, fx.appID, fx.pubKey, nil))
	err := VerifyAppKey(p)
	var km *KeyMismatchError
	if !errors.As(err, &km) {
		t.Fatalf("got %v, want *KeyMismatchError", err)
	}
	wantFound := crypto.CompressPubkey(&other.PublicKey)
	if hex.EncodeToString(km.Found) != hex.EncodeToString(wantFound) || hex.EncodeToString(km.Expected) != hex.EncodeToString(fx.rootKey) {
		t.Errorf("Found %x Expected %x", km.Found, km.Expected)
	}
	// The message says what was expected and what was found.
	msg := err.Error()
	if !strings.Contains(msg, "KMS root key 0x"+hex.EncodeToString(fx.rootKey)) || !strings.Contains(msg, "signed by 0x"+hex.EncodeToString(wantFound)) {
		t.Errorf("message does not name the expected and the found key: %q", msg)
	}
	if !IsVerifyFailure(err) || errors.Is(err, ErrInvalidInput) {
		t.Errorf("a mismatch must be a verification failure, not bad input")
	}
}

func TestVerifyAppKeyFreshnessWindow(t *testing.T) {
	root, _ := kmsKeys(t)
	const ts = 1_750_000_000
	tsv := uint64(ts)
	tests := []struct {
		name      string
		now       int64
		maxAge    time.Duration
		maxFuture time.Duration
		ok        bool
		age       int64
	}{
		{"just signed", ts, 0, 0, true, 0},
		{"300 s old", ts + 300, 0, 0, true, 0},
		{"301 s old", ts + 301, 0, 0, false, 301},
		{"one day old", ts + 86400, 0, 0, false, 86400},
		{"one day old, max age raised", ts + 86400, 100000 * time.Second, 0, true, 0},
		{"10 s old, max age lowered to 5 s", ts + 10, 5 * time.Second, 0, false, 10},
		{"60 s ahead", ts - 60, 0, 0, true, 0},
		{"61 s ahead", ts - 61, 0, 0, false, -61},
		{"61 s ahead, future raised", ts - 61, 0, 2 * time.Minute, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := freshFixture(t, root, &tsv, time.Unix(tt.now, 0))
			fx.params.MaxAge, fx.params.MaxFuture = tt.maxAge, tt.maxFuture
			err := VerifyAppKey(fx.params)
			if tt.ok {
				if err != nil {
					t.Fatalf("VerifyAppKey: %v", err)
				}
				return
			}
			var fe *FreshnessError
			if !errors.As(err, &fe) || fe.Age != tt.age || fe.Timestamp != ts {
				t.Fatalf("got %v, want *FreshnessError with age %d", err, tt.age)
			}
			if !IsVerifyFailure(err) || errors.Is(err, ErrInvalidInput) {
				t.Errorf("a stale timestamp must be a verification failure")
			}
		})
	}
	// Sub-second clocks are floored, as Math.floor(Date.now()/1000).
	fx := freshFixture(t, root, &tsv, time.Unix(ts+300, 999_999_999))
	if err := VerifyAppKey(fx.params); err != nil {
		t.Errorf("300.999 s old: %v", err)
	}
}

func TestVerifyAppKeyExtremeTimestamps(t *testing.T) {
	root, _ := kmsKeys(t)
	for _, ts := range []uint64{0, math.MaxUint64, 1 << 63, 1 << 62} {
		tsv := ts
		fx := freshFixture(t, root, &tsv, time.Unix(1_750_000_000, 0))
		var fe *FreshnessError
		if err := VerifyAppKey(fx.params); !errors.As(err, &fe) {
			t.Errorf("timestamp %d: got %v, want *FreshnessError", ts, err)
		}
	}
}

func TestVerifyAppKeyBadInput(t *testing.T) {
	root, _ := kmsKeys(t)
	fx := freshFixture(t, root, nil, time.Time{})
	good := fx.params
	sig := mustHex(t, good.Signature)
	n := crypto.S256().Params().N
	withV := func(v byte) string {
		s := append([]byte(nil), sig...)
		s[64] = v
		return hex.EncodeToString(s)
	}
	withR := func(r *big.Int) string {
		s := append([]byte(nil), sig...)
		r.FillBytes(s[:32])
		return hex.EncodeToString(s)
	}
	withS := func(v *big.Int) string {
		s := append([]byte(nil), sig...)
		v.FillBytes(s[32:64])
		return hex.EncodeToString(s)
	}
	tests := []struct {
		name    string
		mutate  func(p *VerifyParams)
		wantErr error
	}{
		{"signature 64 bytes", func(p *VerifyParams) { p.Signature = p.Signature[:128] }, ErrInvalidSignature},
		{"signature 66 bytes", func(p *VerifyParams) { p.Signature += "00" }, ErrInvalidSignature},
		{"signature empty", func(p *VerifyParams) { p.Signature = "" }, ErrInvalidSignature},
		{"signature not hex", func(p *VerifyParams) { p.Signature = "zz" + p.Signature[2:] }, ErrInvalidSignature},
		{"signature odd length", func(p *VerifyParams) { p.Signature = p.Signature[:129] }, ErrInvalidSignature},
		{"recovery id 27", func(p *VerifyParams) { p.Signature = withV(27) }, ErrInvalidSignature},
		{"recovery id 28", func(p *VerifyParams) { p.Signature = withV(28) }, ErrInvalidSignature},
		{"recovery id 2", func(p *VerifyParams) { p.Signature = withV(2) }, ErrInvalidSignature},
		{"recovery id 3", func(p *VerifyParams) { p.Signature = withV(3) }, ErrInvalidSignature},
		{"recovery id 255", func(p *VerifyParams) { p.Signature = withV(255) }, ErrInvalidSignature},
		{"r = 0", func(p *VerifyParams) { p.Signature = withR(big.NewInt(0)) }, ErrInvalidSignature},
		{"s = 0", func(p *VerifyParams) { p.Signature = withS(big.NewInt(0)) }, ErrInvalidSignature},
		{"r = n", func(p *VerifyParams) { p.Signature = withR(new(big.Int).Set(n)) }, ErrInvalidSignature},
		{"s = n", func(p *VerifyParams) { p.Signature = withS(new(big.Int).Set(n)) }, ErrInvalidSignature},
		{"app id 19 bytes", func(p *VerifyParams) { p.AppID = p.AppID[:40] }, ErrInvalidAppID},
		{"app id odd length", func(p *VerifyParams) { p.AppID = p.AppID[:41] }, ErrInvalidAppID},
		{"app id 32 bytes", func(p *VerifyParams) { p.AppID = hex.EncodeToString(make([]byte, 32)) }, ErrInvalidAppID},
		{"app id not hex", func(p *VerifyParams) { p.AppID = "0xg" + p.AppID[3:] }, ErrInvalidAppID},
		{"public key 31 bytes", func(p *VerifyParams) { p.PublicKey = p.PublicKey[:62] }, ErrInvalidPublicKey},
		{"public key not hex", func(p *VerifyParams) { p.PublicKey = "x" + p.PublicKey[1:] }, ErrInvalidPublicKey},
		{"no root key", func(p *VerifyParams) { p.RootKey = nil }, ErrInvalidRootKey},
		{"root key 32 bytes", func(p *VerifyParams) { p.RootKey = p.RootKey[1:] }, ErrInvalidRootKey},
		{"root key off the curve", func(p *VerifyParams) {
			k := append([]byte{0x02}, make([]byte, 32)...)
			k[32] = 5 // x = 5: x³+7 = 132 is not a square mod p
			p.RootKey = k
		}, ErrInvalidRootKey},
		{"root key bad prefix", func(p *VerifyParams) { p.RootKey = append([]byte{0x05}, p.RootKey[1:]...) }, ErrInvalidRootKey},
		{"uncompressed root key bad prefix", func(p *VerifyParams) {
			k := crypto.FromECDSAPub(&root.PublicKey)
			k[0] = 0x06
			p.RootKey = k
		}, ErrInvalidRootKey},
		{"negative max age", func(p *VerifyParams) { p.MaxAge = -time.Second }, ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.mutate(&p)
			err := VerifyAppKey(p)
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if IsVerifyFailure(err) {
				t.Errorf("malformed input reported as a verification failure")
			}
			if p.Check() == nil {
				t.Errorf("Check accepted what VerifyAppKey refused")
			}
		})
	}
	if err := good.Check(); err != nil {
		t.Fatalf("Check on good params: %v", err)
	}
}

func TestRecoverAppKeySignerBadInput(t *testing.T) {
	root, _ := kmsKeys(t)
	appID := make([]byte, 20)
	pub := make([]byte, 32)
	sig := signAppKey(t, root, appID, pub, nil)
	if got, err := RecoverAppKeySigner(hex.EncodeToString(appID), pub, sig, nil); err != nil ||
		hex.EncodeToString(got) != hex.EncodeToString(crypto.CompressPubkey(&root.PublicKey)) {
		t.Fatalf("RecoverAppKeySigner = %x, %v", got, err)
	}
	for _, tt := range []struct {
		name  string
		appID string
		pub   []byte
		sig   []byte
		want  error
	}{
		{"short public key", hex.EncodeToString(appID), pub[:31], sig, ErrInvalidPublicKey},
		{"short signature", hex.EncodeToString(appID), pub, sig[:64], ErrInvalidSignature},
		{"bad app id", "0x00", pub, sig, ErrInvalidAppID},
	} {
		if _, err := RecoverAppKeySigner(tt.appID, tt.pub, tt.sig, nil); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestParseAppIDForms(t *testing.T) {
	want := "f05523f9cd47bf5f3192541f93d8d6f5d1fae7a5"
	for _, s := range []string{want, "0x" + want, "0X" + want, "0xF05523f9Cd47BF5f3192541f93d8d6f5d1FaE7a5", strings.ToUpper(want)} {
		got, err := ParseAppID(s)
		if err != nil || hex.EncodeToString(got) != want {
			t.Errorf("ParseAppID(%q) = %x, %v", s, got, err)
		}
	}
}

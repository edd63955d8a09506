package kms

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func newRecipient(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sealRaw encrypts an arbitrary plaintext the way EncryptEnv does, so tests
// can feed DecryptEnv plaintexts that EncryptEnv would never produce.
func sealRaw(t testing.TB, plaintext []byte, recipient *ecdh.PublicKey) string {
	t.Helper()
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := x25519Shared(eph, recipient)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := newGCM(shared)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, gcmIVSize)
	if _, err := rand.Read(iv); err != nil {
		t.Fatal(err)
	}
	out := append(append(eph.PublicKey().Bytes(), iv...), aead.Seal(nil, iv, plaintext, nil)...)
	return hex.EncodeToString(out)
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	priv := newRecipient(t)
	pubHex := hex.EncodeToString(priv.PublicKey().Bytes())
	envs := []EnvVar{{"B", "2"}, {"A", secret}, {"EMPTY", ""}, {"U", "é\u2028<&>\x00\x1f😀"}}
	a, err := EncryptEnv(envs, pubHex)
	if err != nil {
		t.Fatalf("EncryptEnv: %v", err)
	}
	b, err := EncryptEnv(envs, "0x"+pubHex)
	if err != nil {
		t.Fatalf("EncryptEnv(0x key): %v", err)
	}
	if a == b {
		t.Error("two encryptions gave the same output: randomness not used")
	}
	if strings.ToLower(a) != a {
		t.Error("output is not lowercase hex")
	}
	if want := 2 * (32 + 12 + len(EnvPlaintext(envs)) + 16); len(a) != want {
		t.Errorf("output is %d hex digits, want %d", len(a), want)
	}
	for _, ct := range []string{a, b, "0x" + a, strings.ToUpper(a)} {
		got, err := DecryptEnv(ct, priv.Bytes())
		if err != nil {
			t.Fatalf("DecryptEnv: %v", err)
		}
		if !reflect.DeepEqual(got, envs) {
			t.Errorf("round trip changed the env")
		}
	}
	// Another key cannot open it.
	if _, err := DecryptEnv(a, newRecipient(t).Bytes()); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("decrypt with another key: got %v, want ErrInvalidCiphertext", err)
	}
}

func TestEncryptEnvEmptyList(t *testing.T) {
	priv := newRecipient(t)
	ct, err := EncryptEnv(nil, hex.EncodeToString(priv.PublicKey().Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecryptEnv(ct, priv.Bytes())
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}

// lowOrderPoints are X25519 public keys whose shared secret with any private
// key is zero (the points of order 1, 2, 4 and 8, and their non-canonical
// encodings that crypto/ecdh accepts).
var lowOrderPoints = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// failReader fails the test when read: bad input must be refused before any
// randomness is drawn, let alone anything encrypted.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("randomness was read for input that should have been refused")
	return 0, io.ErrUnexpectedEOF
}

func TestEncryptEnvBadInput(t *testing.T) {
	okKey := hex.EncodeToString(newRecipient(t).PublicKey().Bytes())
	okEnv := []EnvVar{{"A", secret}}
	tests := []struct {
		name    string
		envs    []EnvVar
		key     string
		wantErr error
	}{
		{"empty key", okEnv, "", ErrInvalidPublicKey},
		{"31 bytes", okEnv, okKey[:62], ErrInvalidPublicKey},
		{"33 bytes", okEnv, okKey + "00", ErrInvalidPublicKey},
		{"odd length", okEnv, okKey[:63], ErrInvalidPublicKey},
		{"not hex", okEnv, "zz" + okKey[2:], ErrInvalidPublicKey},
		{"0x only", okEnv, "0x", ErrInvalidPublicKey},
		{"spaces", okEnv, " " + okKey, ErrInvalidPublicKey},
		{"base64 instead of hex", okEnv, "oev zmQI77bI8KWUlKFHc9iL5NGktM4PhoH8l9X4OamE=", ErrInvalidPublicKey},
		{"invalid env key", []EnvVar{{"BAD-KEY", secret}}, okKey, ErrInvalidKey},
		{"oversize value", []EnvVar{{"A", strings.Repeat("x", MaxEnvValueBytes+1)}}, okKey, ErrValueTooLarge},
		{"non-UTF-8 value", []EnvVar{{"A", "\xff" + secret}}, okKey, ErrInvalidUTF8},
		{"duplicate key", []EnvVar{{"A", "1"}, {"A", secret}}, okKey, ErrDuplicateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := EncryptEnvWithRand(tt.envs, tt.key, failReader{t})
			if out != "" || !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got %q, %v; want %v", out, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("message leaks the value: %v", err)
			}
		})
	}
	for _, p := range lowOrderPoints {
		t.Run("low order "+p[:8], func(t *testing.T) {
			r := bytes.NewReader(make([]byte, 64))
			out, err := EncryptEnvWithRand(okEnv, p, r)
			if out != "" || !errors.Is(err, ErrLowOrderPublicKey) {
				t.Fatalf("got %q, %v; want ErrLowOrderPublicKey", out, err)
			}
		})
	}
}

func TestEncryptEnvShortRandomness(t *testing.T) {
	key := hex.EncodeToString(newRecipient(t).PublicKey().Bytes())
	for _, n := range []int{0, 31, 32, 43} {
		out, err := EncryptEnvWithRand([]EnvVar{{"A", "1"}}, key, bytes.NewReader(make([]byte, n)))
		if out != "" || err == nil {
			t.Errorf("%d bytes of randomness: got %q, %v", n, out, err)
		}
	}
}

func TestDecryptEnvBadInput(t *testing.T) {
	priv := newRecipient(t)
	envs := []EnvVar{{"A", secret}}
	good, err := EncryptEnv(envs, hex.EncodeToString(priv.PublicKey().Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(hexPos int) string {
		b, _ := hex.DecodeString(good)
		b[hexPos/2] ^= 0x01
		return hex.EncodeToString(b)
	}
	n := len(good)
	tests := []struct {
		name    string
		ct      string
		key     []byte
		wantErr error
	}{
		{"empty", "", priv.Bytes(), ErrInvalidCiphertext},
		{"not hex", "zz" + good[2:], priv.Bytes(), ErrInvalidCiphertext},
		{"odd length", good[:n-1], priv.Bytes(), ErrInvalidCiphertext},
		{"only key, IV and tag length minus one", good[:2*(32+12+16)-2], priv.Bytes(), ErrInvalidCiphertext},
		{"truncated by one byte", good[:n-2], priv.Bytes(), ErrInvalidCiphertext},
		{"truncated to half", good[:n/2], priv.Bytes(), ErrInvalidCiphertext},
		{"extra byte", good + "00", priv.Bytes(), ErrInvalidCiphertext},
		{"tampered ephemeral key", flip(2), priv.Bytes(), ErrInvalidCiphertext},
		{"tampered IV", flip(2 * 33), priv.Bytes(), ErrInvalidCiphertext},
		{"tampered ciphertext", flip(2 * 45), priv.Bytes(), ErrInvalidCiphertext},
		{"tampered tag", flip(n - 2), priv.Bytes(), ErrInvalidCiphertext},
		{"low-order ephemeral key", lowOrderPoints[2] + good[64:], priv.Bytes(), ErrInvalidCiphertext},
		{"wrong private key", good, newRecipient(t).Bytes(), ErrInvalidCiphertext},
		{"short private key", good, priv.Bytes()[:31], ErrInvalidPrivateKey},
		{"no private key", good, nil, ErrInvalidPrivateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecryptEnv(tt.ct, tt.key)
			if got != nil || !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.wantErr)
			}
		})
	}
}

func TestDecryptEnvBadPlaintext(t *testing.T) {
	priv := newRecipient(t)
	for _, pt := range []string{
		"",
		"not json " + secret,
		`{"env":[{"key":"A","value":"` + secret + `"}]} trailing`,
		`{"env":[{"key":"A","value":"` + secret + `","extra":1}]}`,
		`{"env":[{"key":"A"}]}`,
		`{"env":[{"value":"` + secret + `"}]}`,
		`{"env":[{"key":"A","value":42}]}`,
		`{"env":{"key":"A","value":"` + secret + `"}}`,
		`{"envs":[]}`,
		`{"ENV":[{"key":"A","value":"` + secret + `"}]}`,
		`{"env":[{"KEY":"A","value":"` + secret + `"}]}`,
		`{"env":[{"key":null,"value":"` + secret + `"}]}`,
		`{"env":[{"key":"A","value":null}]}`,
		`{"env":[null]}`,
		`{"env":null}`,
		`{"env":[],"other":1}`,
		`{}`,
		`[]`,
	} {
		_, err := DecryptEnv(sealRaw(t, []byte(pt), priv.PublicKey()), priv.Bytes())
		if !errors.Is(err, ErrInvalidCiphertext) {
			t.Errorf("plaintext %q: got %v, want ErrInvalidCiphertext", pt, err)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "not json") {
			t.Errorf("message leaks the plaintext: %v", err)
		}
	}
}

func TestParseX25519PublicKeyForms(t *testing.T) {
	raw := newRecipient(t).PublicKey().Bytes()
	h := hex.EncodeToString(raw)
	for _, s := range []string{h, "0x" + h, "0X" + h, strings.ToUpper(h)} {
		pub, err := ParseX25519PublicKey(s)
		if err != nil || !bytes.Equal(pub.Bytes(), raw) {
			t.Errorf("ParseX25519PublicKey(%q) = %v, %v", s, pub, err)
		}
	}
}

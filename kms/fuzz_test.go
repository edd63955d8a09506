package kms

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/joho/godotenv"
)

// Seeds live in testdata/fuzz/<FuzzName>/; the f.Add calls below add the
// vectors, which are too long to keep as corpus files.

// dotenvReason lists every reason ParseDotenv gives; a new one must be
// added here after checking that it cannot contain file text.
var dotenvReason = regexp.MustCompile(`^((` +
	`"export" with no variable|no '=' after the variable name|` +
	`unexpected character in the variable name|quoted value is never closed` +
	`) \(expected KEY=VALUE\)|` +
	`the \.env parser refused the file \(expected KEY=VALUE lines\)|` +
	`not valid UTF-8 \(save the file as UTF-8\)|` +
	`set again \(first set on line \d+\)|` +
	`cannot tell where this statement starts \(the file confuses the parser\); please simplify its quoting)$`)

// FuzzParseDotenv checks that the line scanner and godotenv agree: whatever
// godotenv refuses is refused, and whatever is accepted has exactly
// godotenv's keys and values, in line order, and no error quotes a value.
func FuzzParseDotenv(f *testing.F) {
	f.Add([]byte("A=1\nB='x y'\nexport C=\"multi\nline\"\n# c\nD: e # f\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseDotenv("f.env", data)
		ref, refErr := godotenv.UnmarshalBytes(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error does not wrap ErrInvalidInput: %v", err)
			}
			var ee *EnvError
			if !errors.As(err, &ee) {
				t.Fatalf("error is not an *EnvError: %v", err)
			}
			// Nothing from the file but the key may reach the message: the
			// reason must be one of the fixed texts.
			if !dotenvReason.MatchString(ee.Reason) {
				t.Fatalf("unexpected reason %q", ee.Reason)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("godotenv refused the file (%v) but ParseDotenv accepted it", refErr)
		}
		if len(entries) != len(ref) {
			t.Fatalf("%d entries, godotenv found %d", len(entries), len(ref))
		}
		lines := 1 + bytes.Count(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte{'\n'})
		prev := 0
		for _, e := range entries {
			if v, ok := ref[e.Key]; !ok || v != e.Value {
				t.Fatalf("key %q: value differs from godotenv's", e.Key)
			}
			if e.Source.File != "f.env" || e.Source.Line < prev || e.Source.Line > lines {
				t.Fatalf("key %q at line %d (previous %d, file has %d)", e.Key, e.Source.Line, prev, lines)
			}
			prev = e.Source.Line
		}
	})
}

// fuzzRecipient is a fixed recipient so that fuzzed plaintexts can be sealed.
var fuzzRecipient = mustX25519([]byte("cvmdeploy kms fuzz recipient...."))

func mustX25519(b []byte) *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		panic(err)
	}
	return k
}

// plaintextReason lists every message DecryptEnv gives for a well-sealed
// plaintext; a new one must be added here after checking that it cannot
// contain plaintext.
var plaintextReason = regexp.MustCompile(`^invalid input: encrypted env: (` +
	`plaintext is not \{"env":\[\{"key":…,"value":…\}\]\}|` +
	`data after the plaintext JSON|` +
	`plaintext has no "env" list|` +
	`env entry #\d+ does not have exactly "key" and "value")$`)

// FuzzDecryptEnv feeds DecryptEnv arbitrary ciphertexts and keys (it must
// fail cleanly), and arbitrary plaintexts sealed to a fixed key (what is
// accepted must survive a round trip and errors must not quote it).
func FuzzDecryptEnv(f *testing.F) {
	for _, c := range envVectors(f) {
		f.Add(c.Ciphertext, mustHex(f, c.RecipientPrivateKey), []byte(c.ExpectedPlaintext))
	}
	f.Fuzz(func(t *testing.T, ctHex string, priv []byte, plaintext []byte) {
		envs, err := DecryptEnv(ctHex, priv)
		if err != nil && !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("error does not wrap ErrInvalidInput: %v", err)
		}
		if err == nil {
			checkEnvRoundTrip(t, envs)
		}
		// Any change to a valid ciphertext must fail authentication, except
		// the top bit of the ephemeral key, which X25519 ignores.
		if err == nil {
			raw, _ := decodeHex(ctHex)
			i, mask := len(plaintext)%len(raw), 1+byte(len(priv))%255
			if i == x25519KeySize-1 {
				mask = max(mask&0x7f, 1)
			}
			raw[i] ^= mask
			if _, err := DecryptEnv(hex.EncodeToString(raw), priv); err == nil {
				t.Fatal("a modified ciphertext decrypted")
			}
		}

		ct := sealRaw(t, plaintext, fuzzRecipient.PublicKey())
		envs, err = DecryptEnv(ct, fuzzRecipient.Bytes())
		if err != nil {
			if !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("plaintext refused with %v, want ErrInvalidCiphertext", err)
			}
			// Nothing of the plaintext may reach the message: it must be
			// one of the fixed texts.
			if !plaintextReason.MatchString(err.Error()) {
				t.Fatalf("unexpected message %q", err)
			}
			return
		}
		checkEnvRoundTrip(t, envs)
	})
}

// checkEnvRoundTrip re-encrypts envs that the decryptor accepted and
// expects the same list back. Go's JSON decoder replaces invalid UTF-8 and
// lone surrogates with U+FFFD, so accepted strings are always valid UTF-8.
func checkEnvRoundTrip(t *testing.T, envs []EnvVar) {
	t.Helper()
	for _, e := range envs {
		if !utf8.ValidString(e.Key) || !utf8.ValidString(e.Value) {
			t.Fatal("decrypted env is not valid UTF-8")
		}
	}
	ct := sealRaw(t, EnvPlaintext(envs), fuzzRecipient.PublicKey())
	again, err := DecryptEnv(ct, fuzzRecipient.Bytes())
	if err != nil {
		t.Fatalf("EnvPlaintext output refused: %v", err)
	}
	if len(again) != len(envs) || (len(envs) > 0 && !reflect.DeepEqual(again, envs)) {
		t.Fatal("env changed in a round trip")
	}
}

// FuzzCanonicalJSON checks the canonical encoder on any document that
// ParseJSON accepts: the output is compact valid JSON with the same meaning
// as the input (numbers as doubles, "__proto__" keys dropped), and encoding
// it again changes nothing.
func FuzzCanonicalJSON(f *testing.F) {
	for _, c := range composeVectors(f) {
		f.Add([]byte(c.AppCompose))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseJSON(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("error does not wrap ErrInvalidJSON: %v", err)
			}
			if json.Valid(data) && utf8.Valid(data) {
				if _, lone := loneSurrogateEscape(data); !lone {
					t.Fatalf("valid JSON refused: %v", err)
				}
			}
			return
		}
		out, err := CanonicalJSON(v)
		if err != nil {
			if !errors.Is(err, ErrInvalidJSON) || !strings.Contains(err.Error(), `"constructor"`) {
				t.Fatalf("CanonicalJSON refused a parsed document: %v", err)
			}
			return
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("output is not valid JSON: %q", out)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, out); err != nil || !bytes.Equal(compact.Bytes(), out) {
			t.Fatalf("output is not compact: %q", out)
		}
		v2, err := ParseJSON(out)
		if err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		if !reflect.DeepEqual(jsMeaning(v), jsMeaning(v2)) {
			t.Fatalf("meaning changed:\n in  %q\n out %q", data, out)
		}
		out2, err := CanonicalJSON(v2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("not idempotent:\n%q\n%q (%v)", out, out2, err)
		}
	})
}

// jsMeaning maps a parsed value to what JavaScript would see after
// getComposeHash: numbers as doubles (non-finite as nil, -0 as 0) and no
// "__proto__" keys.
func jsMeaning(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := jsonNumberFloat(x)
		if err != nil {
			return err.Error()
		}
		if f != f || f > 1.7976931348623157e308 || f < -1.7976931348623157e308 {
			return nil
		}
		return f + 0 // -0 + 0 = +0
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsMeaning(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k != "__proto__" {
				out[k] = jsMeaning(e)
			}
		}
		return out
	}
	return v
}

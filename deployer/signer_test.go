package deployer_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// testKey makes a fresh key (tests never embed a fixed private key).
func testKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k, hex.EncodeToString(crypto.FromECDSA(k))
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadSignerSources(t *testing.T) {
	key, hexKey := testKey(t)
	want := crypto.PubkeyToAddress(key.PublicKey)

	ksDir := t.TempDir()
	ksJSON, err := keystore.EncryptKey(&keystore.Key{Address: want, PrivateKey: key}, "correct horse", keystore.LightScryptN, keystore.LightScryptP)
	if err != nil {
		t.Fatal(err)
	}
	ksPath := filepath.Join(ksDir, "key.json")
	if err := os.WriteFile(ksPath, ksJSON, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		cfg  deployer.SignerConfig
	}{
		{"env with 0x", deployer.SignerConfig{PrivateKeyEnv: "0x" + hexKey}},
		{"env without 0x", deployer.SignerConfig{PrivateKeyEnv: hexKey}},
		{"file with whitespace", deployer.SignerConfig{KeyFile: writeFile(t, "k", "  0x"+hexKey+"\n\n")}},
		{"stdin", deployer.SignerConfig{Stdin: strings.NewReader(hexKey + "\n")}},
		{"keystore + password file", deployer.SignerConfig{Keystore: ksPath, PasswordFile: writeFile(t, "p", "correct horse\n")}},
		{"keystore + password", deployer.SignerConfig{Keystore: ksPath, Password: "correct horse"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := deployer.LoadSigner(tc.cfg)
			if err != nil {
				t.Fatalf("LoadSigner: %v", err)
			}
			if s.Address() != want {
				t.Fatalf("address %s, want %s", s.Address(), want)
			}
			// The signature must recover to the same address.
			tx := types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(31337), Nonce: 1, Gas: 21000, GasFeeCap: big.NewInt(1), GasTipCap: big.NewInt(1), To: &common.Address{1}})
			signed, err := s.SignTx(context.Background(), tx, big.NewInt(31337))
			if err != nil {
				t.Fatal(err)
			}
			from, err := types.Sender(types.LatestSignerForChainID(big.NewInt(31337)), signed)
			if err != nil || from != want {
				t.Fatalf("recovered %s (%v), want %s", from, err, want)
			}
		})
	}
}

func TestLoadSignerErrors(t *testing.T) {
	_, hexKey := testKey(t)
	ks := writeFile(t, "ks.json", "{}")
	cases := []struct {
		name    string
		cfg     deployer.SignerConfig
		wantErr string
	}{
		{"none", deployer.SignerConfig{}, "no signer"},
		{"two sources", deployer.SignerConfig{PrivateKeyEnv: hexKey, KeyFile: "x"}, "several signers given (PRIVATE_KEY, --private-key-file)"},
		{"short key", deployer.SignerConfig{PrivateKeyEnv: hexKey[:60]}, "64 hex characters"},
		{"non-hex key", deployer.SignerConfig{PrivateKeyEnv: strings.Repeat("zz", 32)}, "not valid hex"},
		{"zero key", deployer.SignerConfig{PrivateKeyEnv: strings.Repeat("00", 32)}, "not a valid secp256k1 private key"},
		{"missing file", deployer.SignerConfig{KeyFile: filepath.Join(t.TempDir(), "nope")}, "--private-key-file"},
		{"keystore without password", deployer.SignerConfig{Keystore: ks}, "--keystore needs --password-file"},
		{"password without keystore", deployer.SignerConfig{PrivateKeyEnv: hexKey, PasswordFile: "p"}, "only used with --keystore"},
		{"bad keystore", deployer.SignerConfig{Keystore: ks, Password: "x"}, "not a Web3 v3 keystore file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deployer.LoadSigner(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), hexKey[:16]) {
				t.Fatalf("error leaks key material: %v", err)
			}
		})
	}
}

func TestKeystoreWrongPassword(t *testing.T) {
	key, _ := testKey(t)
	js, err := keystore.EncryptKey(&keystore.Key{Address: crypto.PubkeyToAddress(key.PublicKey), PrivateKey: key}, "right", keystore.LightScryptN, keystore.LightScryptP)
	if err != nil {
		t.Fatal(err)
	}
	_, err = deployer.LoadSigner(deployer.SignerConfig{Keystore: writeFile(t, "ks", string(js)), Password: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("error %v, want wrong password", err)
	}
}

// TestSecretsNeverFormatted formats signers and signer configs with every
// common verb and checks that neither the key nor the password shows up.
func TestSecretsNeverFormatted(t *testing.T) {
	key, hexKey := testKey(t)
	const password = "s3cret-passw0rd"
	s, err := deployer.LoadSigner(deployer.SignerConfig{PrivateKeyEnv: hexKey})
	if err != nil {
		t.Fatal(err)
	}
	dBytes := key.D.String() // the decimal form reflection would print
	values := []any{
		s, deployer.NewKeySigner(key),
		deployer.SignerConfig{PrivateKeyEnv: hexKey},
		&deployer.SignerConfig{Keystore: "ks.json", Password: password},
		struct{ S deployer.Signer }{s},
		[]deployer.Signer{s},
	}
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%d"} {
			out := fmt.Sprintf(verb, v)
			for _, secret := range []string{hexKey, hexKey[:20], strings.ToUpper(hexKey[:20]), dBytes, password} {
				if strings.Contains(out, secret) {
					t.Fatalf("%s of %T prints a secret: %s", verb, v, out)
				}
			}
		}
	}
	if got := fmt.Sprint(s); !strings.Contains(got, s.Address().Hex()) {
		t.Fatalf("String() = %q, want the address", got)
	}
}

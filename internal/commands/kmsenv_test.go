package commands_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

const vectorDir = "../../testdata/vectors"

// planted is put in env values so tests can check it never leaks.
const planted = "pl4nted-s3cret-VALUE"

type kmsRun struct {
	code           int
	stdout, stderr string
}

func runKMSCLI(t *testing.T, stdin string, args ...string) kmsRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := commands.Run(ctx, append([]string{"cvmdeploy"}, args...), strings.NewReader(stdin), &out, &errb)
	return kmsRun{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustJSON parses stdout as exactly one JSON object.
func (r kmsRun) mustJSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", r.stdout)
	}
	return m
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readVectors(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func newX25519(t *testing.T) (*ecdh.PrivateKey, string) {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, hex.EncodeToString(k.PublicKey().Bytes())
}

func TestEnvEncryptCommand(t *testing.T) {
	priv, pub := newX25519(t)
	base := writeTemp(t, "base.env", []byte("# app secrets\nDB_URL=postgres://u:"+planted+"@db/x\nGREETING='hello, world'\nREF=x${GREETING}\n"))
	prod := writeTemp(t, "prod.env", []byte("GREETING=\"hi\"\nTOKEN="+planted+"\n"))
	want := []kms.EnvVar{
		{Key: "DB_URL", Value: "postgres://u:" + planted + "@db/x"},
		{Key: "GREETING", Value: "hi"},
		{Key: "REF", Value: "xhello, world"},
		{Key: "TOKEN", Value: planted},
		{Key: "LIST", Value: " a, b ,c "},
		{Key: "CI_SECRET", Value: planted + "-from-env"},
	}
	// A bare --env KEY takes the value from the environment, as a CI job
	// passes its secrets.
	t.Setenv("CI_SECRET", planted+"-from-env")
	args := []string{"env", "encrypt", "--pubkey", "0x" + pub, "--env-file", base, "--env-file", prod, "--env", "LIST= a, b ,c ", "--env", "CI_SECRET"}

	r := runKMSCLI(t, "", args...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	ct := strings.TrimSuffix(r.stdout, "\n")
	if strings.Count(r.stdout, "\n") != 1 || strings.ContainsAny(ct, " \t") {
		t.Fatalf("stdout is not one line of hex: %q", r.stdout)
	}
	got, err := kms.DecryptEnv(ct, priv.Bytes())
	if err != nil {
		t.Fatalf("decrypt the output: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decrypted %q, want %q", got, want)
	}
	if strings.Contains(r.stderr, planted) {
		t.Errorf("stderr leaks a value: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, "REF") || !strings.Contains(r.stderr, "warning") {
		t.Errorf("no warning about the expanded ${GREETING}: %s", r.stderr)
	}

	r = runKMSCLI(t, "", append(args, "--json")...)
	if r.code != 0 {
		t.Fatalf("--json: exit %d: %s", r.code, r.stderr)
	}
	m := r.mustJSON(t)
	keys, _ := m["env_keys"].([]any)
	if fmt.Sprint(keys) != "[DB_URL GREETING REF TOKEN LIST CI_SECRET]" {
		t.Errorf("env_keys = %v", m["env_keys"])
	}
	enc, _ := m["encrypted_env"].(string)
	if got, err := kms.DecryptEnv(enc, priv.Bytes()); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("--json encrypted_env decrypts to %q, %v", got, err)
	}

	// No variables at all is allowed, as in the official CLI.
	r = runKMSCLI(t, "", "env", "encrypt", "--pubkey", pub, "--json", "--quiet")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("empty env: exit %d, stderr %q", r.code, r.stderr)
	}
	if m := r.mustJSON(t); fmt.Sprint(m["env_keys"]) != "[]" {
		t.Errorf("empty env: env_keys = %v", m["env_keys"])
	}
}

func TestEnvEncryptBadInput(t *testing.T) {
	_, pub := newX25519(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	malformed := file("malformed.env", "A=1\n"+planted+"\n")
	dup := file("dup.env", "A=1\nA="+planted+"\n")
	badKey := file("badkey.env", "A=1\nMY-KEY="+planted+"\n")
	latin1 := file("latin1.env", "A=caf\xe9"+planted+"\n")
	huge := file("huge.env", "BIG="+strings.Repeat("x", kms.MaxEnvValueBytes+1)+"\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no pubkey", []string{"--env", "A=" + planted}, "pubkey"},
		{"pubkey 31 bytes", []string{"--pubkey", pub[:62]}, "--pubkey: "},
		{"pubkey not hex", []string{"--pubkey", "zz" + pub[2:]}, "--pubkey: "},
		{"low-order pubkey", []string{"--pubkey", strings.Repeat("00", 32), "--env", "A=" + planted}, "low-order"},
		{"malformed line", []string{"--pubkey", pub, "--env-file", malformed}, malformed + ":2"},
		{"duplicate key in a file", []string{"--pubkey", pub, "--env-file", dup}, dup + ":2"},
		{"invalid key in a file", []string{"--pubkey", pub, "--env-file", badKey}, badKey + ":2"},
		{"non-UTF-8 file", []string{"--pubkey", pub, "--env-file", latin1}, latin1 + ":1"},
		{"oversize value", []string{"--pubkey", pub, "--env-file", huge}, huge + ":1: BIG: value is"},
		{"missing file", []string{"--pubkey", pub, "--env-file", filepath.Join(dir, "nope.env")}, "nope.env"},
		{"flag without equals", []string{"--pubkey", pub, "--env", planted}, "--env #1: expected KEY=VALUE"},
		{"bare key not set", []string{"--pubkey", pub, "--env", "ghp_" + strings.ReplaceAll(planted, "-", "_")}, "--env #1: the variable it names is not set in the environment"},
		{"invalid key in a flag", []string{"--pubkey", pub, "--env", "OK=1", "--env", "1BAD=" + planted}, "--env #2"},
		{"same flag twice", []string{"--pubkey", pub, "--env", "A=1", "--env", "A=" + planted}, "--env #2"},
		{"stray argument", []string{"--pubkey", pub, "A=1"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runKMSCLI(t, "", append([]string{"env", "encrypt"}, tt.args...)...)
			if r.code != commands.ExitUsage {
				t.Fatalf("exit %d, want %d: %s", r.code, commands.ExitUsage, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %q", r.stdout)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.want)
			}
			if strings.Contains(r.stderr, planted) {
				t.Errorf("stderr leaks the value: %s", r.stderr)
			}
			// An --env argument without '=' may be a pasted value.
			for i, a := range tt.args[1:] {
				if tt.args[i] == "--env" && !strings.Contains(a, "=") && strings.Contains(r.stderr, a) {
					t.Errorf("stderr repeats the bare --env argument %q: %s", a, r.stderr)
				}
			}
		})
	}
}

type composeCase struct {
	Name       string          `json:"name"`
	AppCompose json.RawMessage `json:"app_compose"`
	Hash       string          `json:"expected_hash"`
	Normalized struct {
		Hash string `json:"expected_hash"`
	} `json:"normalized"`
}

func TestComposeHashCommand(t *testing.T) {
	var f struct {
		Cases []composeCase `json:"cases"`
	}
	readVectors(t, "compose-hash.json", &f)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			p := writeTemp(t, "app-compose.json", c.AppCompose)
			for _, tt := range []struct {
				args []string
				want string
			}{
				{[]string{p}, c.Hash},
				{[]string{"--normalize", p}, c.Normalized.Hash},
			} {
				r := runKMSCLI(t, "", append([]string{"compose", "hash"}, tt.args...)...)
				if r.code != 0 || r.stdout != tt.want+"\n" {
					t.Errorf("compose hash %v: exit %d, stdout %q, want %s\n%s", tt.args, r.code, r.stdout, tt.want, r.stderr)
				}
			}
			r := runKMSCLI(t, string(c.AppCompose), "compose", "hash", "--json", "-")
			if r.code != 0 || r.mustJSON(t)["compose_hash"] != c.Hash {
				t.Errorf("from stdin with --json: exit %d, %s %s", r.code, r.stdout, r.stderr)
			}
			r = runKMSCLI(t, "", "compose", "hash", "--expect", "0x"+c.Normalized.Hash, p)
			if r.code != 0 || r.stdout != c.Hash+"\n" {
				t.Errorf("--expect the normalised hash: exit %d, %s", r.code, r.stderr)
			}
		})
	}
}

func TestComposeHashBadInput(t *testing.T) {
	good := writeTemp(t, "good.json", []byte(`{"runner":"docker-compose","name":"x"}`))
	bad := writeTemp(t, "bad.json", []byte(`{"runner":`))
	arr := writeTemp(t, "array.json", []byte(`[1,2]`))
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no file", nil, commands.ExitUsage, "want exactly one argument"},
		{"two files", []string{good, good}, commands.ExitUsage, "want exactly one argument"},
		{"missing file", []string{filepath.Join(t.TempDir(), "nope.json")}, commands.ExitUsage, "nope.json"},
		{"not JSON", []string{bad}, commands.ExitUsage, "bad.json"},
		{"not an object", []string{arr}, commands.ExitUsage, "JSON object"},
		{"bad --expect", []string{"--expect", "abc", good}, commands.ExitUsage, "--expect"},
		{"hash mismatch", []string{"--expect", strings.Repeat("ab", 32), good}, commands.ExitVerify, "compose hash mismatch: expected " + strings.Repeat("ab", 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runKMSCLI(t, "", append([]string{"compose", "hash"}, tt.args...)...)
			if r.code != tt.code || r.stdout != "" || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", r.code, tt.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
}

type sigCase struct {
	Name          string  `json:"name"`
	AppID         string  `json:"app_id"`
	Timestamp     *uint64 `json:"timestamp"`
	PublicKey     string  `json:"public_key_hex"`
	Signature     string  `json:"signature_hex"`
	Recovered     string  `json:"expected_recovered_pubkey"`
	ExpectedValid bool    `json:"expected_valid"`
	SDKLegacy     *string `json:"sdk_0_5_8_legacy_result"`
	SDK           *string `json:"sdk_0_5_8_result"`
}

type sigFile struct {
	KMSRoot struct {
		Private      string `json:"private_key_hex"`
		Compressed   string `json:"compressed_public_key_hex"`
		Uncompressed string `json:"uncompressed_public_key_hex"`
	} `json:"kms_root"`
	V0 struct {
		Valid   []sigCase `json:"valid"`
		Invalid []sigCase `json:"invalid_or_edge"`
	} `json:"v0"`
	V1 struct {
		Valid   []sigCase `json:"valid"`
		Invalid []sigCase `json:"invalid_or_edge"`
	} `json:"v1"`
}

func verifyArgs(c sigCase, extra ...string) []string {
	args := []string{"kms", "verify-pubkey", "--app-id", c.AppID, "--pubkey", c.PublicKey, "--signature", c.Signature}
	if c.Timestamp != nil {
		args = append(args, "--timestamp", fmt.Sprint(*c.Timestamp))
	}
	return append(args, extra...)
}

// TestKMSVerifyPubkeyRootKey runs every legacy vector through the command
// with --kms-root-key: exit 0 when the SDK's result is the root key, 7 when
// it recovered another key, 2 when the SDK refused the input.
func TestKMSVerifyPubkeyRootKey(t *testing.T) {
	var f sigFile
	readVectors(t, "kms-pubkey-signature.json", &f)
	for _, c := range append(append([]sigCase(nil), f.V0.Valid...), f.V0.Invalid...) {
		t.Run(c.Name, func(t *testing.T) {
			root := f.KMSRoot.Compressed
			if c.ExpectedValid && c.Recovered != "" {
				root = c.Recovered // the JSDoc example has its own KMS
			}
			r := runKMSCLI(t, "", verifyArgs(c, "--kms-root-key", root, "--json")...)
			switch {
			case c.ExpectedValid:
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				m := r.mustJSON(t)
				if m["verified"] != true || m["kms_root_key"] != "0x"+strings.TrimPrefix(root, "0x") || m["signature_version"] != "legacy" {
					t.Errorf("output %v", m)
				}
			case c.SDKLegacy != nil:
				if r.code != commands.ExitVerify || r.stdout != "" {
					t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
				}
				if !strings.Contains(r.stderr, "KMS root key 0x"+root) || !strings.Contains(r.stderr, "signed by "+*c.SDKLegacy) {
					t.Errorf("stderr does not say what was expected and found: %s", r.stderr)
				}
			default:
				if r.code != commands.ExitUsage || r.stdout != "" {
					t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
				}
			}
		})
	}
}

// TestKMSVerifyPubkeyV1 runs the v1 vectors: they were signed in 2025, so a
// window reaching back to their timestamp accepts the valid ones and the
// default window refuses them as stale.
func TestKMSVerifyPubkeyV1(t *testing.T) {
	var f sigFile
	readVectors(t, "kms-pubkey-signature.json", &f)
	for _, c := range f.V1.Valid {
		t.Run(c.Name, func(t *testing.T) {
			age := time.Since(time.Unix(int64(*c.Timestamp), 0)) + time.Hour
			r := runKMSCLI(t, "", verifyArgs(c, "--kms-root-key", f.KMSRoot.Uncompressed, "--max-age", age.String())...)
			if r.code != 0 || !strings.Contains(r.stdout, "signature_version:") || !strings.Contains(r.stdout, "v1") {
				t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
			}
			r = runKMSCLI(t, "", verifyArgs(c, "--kms-root-key", f.KMSRoot.Compressed)...)
			if r.code != commands.ExitVerify || !strings.Contains(r.stderr, "old (at most 5m0s allowed)") {
				t.Fatalf("default window: exit %d: %s", r.code, r.stderr)
			}
		})
	}
	// A fresh v1 signature made now passes with the default window.
	root, err := crypto.ToECDSA(hexBytes(t, f.KMSRoot.Private))
	if err != nil {
		t.Fatal(err)
	}
	appID, pub := make([]byte, 20), make([]byte, 32)
	rand.Read(appID)
	rand.Read(pub)
	ts := uint64(time.Now().Unix())
	sig, err := crypto.Sign(crypto.Keccak256(kms.EnvPubKeyMessage(appID, pub, &ts)), root)
	if err != nil {
		t.Fatal(err)
	}
	c := sigCase{AppID: hex.EncodeToString(appID), PublicKey: hex.EncodeToString(pub), Signature: hex.EncodeToString(sig), Timestamp: &ts}
	if r := runKMSCLI(t, "", verifyArgs(c, "--kms-root-key", f.KMSRoot.Compressed)...); r.code != 0 {
		t.Fatalf("fresh v1 signature: exit %d: %s", r.code, r.stderr)
	}
	// The same signature checked as legacy recovers another key.
	c.Timestamp = nil
	if r := runKMSCLI(t, "", verifyArgs(c, "--kms-root-key", f.KMSRoot.Compressed)...); r.code != commands.ExitVerify {
		t.Fatalf("v1 signature as legacy: exit %d: %s", r.code, r.stderr)
	}
}

func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKMSVerifyPubkeyBadInput(t *testing.T) {
	for _, v := range []string{"ETH_RPC_URL", "CHAIN"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	var f sigFile
	readVectors(t, "kms-pubkey-signature.json", &f)
	good := f.V0.Valid[0]
	root := f.KMSRoot.Compressed
	mod := func(change func(c *sigCase)) sigCase { c := good; change(&c); return c }
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"signature 64 bytes", verifyArgs(mod(func(c *sigCase) { c.Signature = c.Signature[:128] }), "--kms-root-key", root), "--signature: "},
		{"signature 66 bytes", verifyArgs(mod(func(c *sigCase) { c.Signature += "00" }), "--kms-root-key", root), "66 bytes"},
		{"recovery id 27", verifyArgs(mod(func(c *sigCase) { c.Signature = c.Signature[:128] + "1b" }), "--kms-root-key", root), "recovery id 27"},
		{"recovery id 2", verifyArgs(mod(func(c *sigCase) { c.Signature = c.Signature[:128] + "02" }), "--kms-root-key", root), "recovery id 2"},
		{"app id odd length", verifyArgs(mod(func(c *sigCase) { c.AppID = c.AppID[:39] }), "--kms-root-key", root), "--app-id: "},
		{"pubkey wrong length", verifyArgs(mod(func(c *sigCase) { c.PublicKey = c.PublicKey[:60] }), "--kms-root-key", root), "--pubkey: "},
		{"bad timestamp", verifyArgs(good, "--timestamp", "yesterday", "--kms-root-key", root), "--timestamp"},
		{"root key 32 bytes", verifyArgs(good, "--kms-root-key", root[2:]), "--kms-root-key: "},
		{"root key not hex", verifyArgs(good, "--kms-root-key", "xyz"), "--kms-root-key: "},
		{"both root key and contract", verifyArgs(good, "--kms-root-key", root, "--kms-contract", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"), "not both"},
		{"no root key source", verifyArgs(good), "no KMS root key"},
		{"contract without RPC", verifyArgs(good, "--kms-contract", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"), "no RPC URL"},
		{"bad contract address", verifyArgs(good, "--rpc-url", "http://127.0.0.1:1", "--kms-contract", "0x1234"), "--kms-contract: "},
		{"zero max age", verifyArgs(good, "--kms-root-key", root, "--max-age", "0s"), "--max-age"},
		{"missing signature", []string{"kms", "verify-pubkey", "--app-id", good.AppID, "--pubkey", good.PublicKey, "--kms-root-key", root}, "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runKMSCLI(t, "", tt.args...)
			if r.code != commands.ExitUsage || r.stdout != "" || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d (want 2), stdout %q, stderr %q (want %q)", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
}

// TestKMSCommandsShareOneGroup checks that verify-pubkey joined the kms
// command of kms deploy instead of hiding it behind a second "kms".
func TestKMSCommandsShareOneGroup(t *testing.T) {
	for _, sub := range []string{"deploy", "verify-pubkey", "list"} {
		if r := runKMSCLI(t, "", "kms", sub, "--help"); r.code != 0 || !strings.Contains(r.stdout, sub) {
			t.Errorf("kms %s --help: exit %d: %s%s", sub, r.code, r.stdout, r.stderr)
		}
	}
	app := commands.NewApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	n := 0
	for _, c := range app.Commands {
		if c.Name == "kms" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d top-level kms commands, want 1", n)
	}
}

// TestKMSVerifyPubkeyOnChain reads the root key from a DstackKms deployed
// on anvil with the vectors' root key.
func TestKMSVerifyPubkeyOnChain(t *testing.T) {
	for _, v := range []string{"ETH_RPC_URL", "CHAIN", "PRIVATE_KEY", "ETH_KEYSTORE", "ETH_PASSWORD", "ETH_RPC_TIMEOUT"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	var f sigFile
	readVectors(t, "kms-pubkey-signature.json", &f)
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	keyFile := writeTemp(t, "owner.key", []byte(hex.EncodeToString(crypto.FromECDSA(a.Accounts()[0].PrivateKey))))
	deploy := func(extra ...string) string {
		r := runKMSCLI(t, "", append([]string{"kms", "deploy", "--rpc-url", a.RPCURL(), "--private-key-file", keyFile, "--json"}, extra...)...)
		if r.code != 0 {
			t.Fatalf("kms deploy: exit %d: %s", r.code, r.stderr)
		}
		return r.mustJSON(t)["kms_contract"].(string)
	}
	withRoot := deploy("--root-key", f.KMSRoot.Compressed)
	noRoot := deploy()

	valid := f.V0.Valid[0]
	r := runKMSCLI(t, "", verifyArgs(valid, "--rpc-url", a.RPCURL(), "--kms-contract", withRoot, "--json")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m := r.mustJSON(t)
	if m["kms_root_key"] != "0x"+f.KMSRoot.Compressed || !strings.Contains(fmt.Sprint(m["root_key_source"]), withRoot) {
		t.Errorf("output %v", m)
	}

	for _, c := range f.V0.Invalid {
		if c.Name != "signed-by-other-key" {
			continue
		}
		r := runKMSCLI(t, "", verifyArgs(c, "--rpc-url", a.RPCURL(), "--kms-contract", withRoot)...)
		if r.code != commands.ExitVerify || r.stdout != "" || !strings.Contains(r.stderr, "signed by "+*c.SDKLegacy) {
			t.Errorf("signed by another key: exit %d: %s", r.code, r.stderr)
		}
	}

	r = runKMSCLI(t, "", verifyArgs(valid, "--rpc-url", a.RPCURL(), "--kms-contract", noRoot)...)
	if r.code != commands.ExitVerify || !strings.Contains(r.stderr, "empty") {
		t.Errorf("KMS without a root key: exit %d: %s", r.code, r.stderr)
	}

	notContract := "0x00000000000000000000000000000000000000aa"
	r = runKMSCLI(t, "", verifyArgs(valid, "--rpc-url", a.RPCURL(), "--kms-contract", notContract)...)
	if r.code != commands.ExitVerify || r.stdout != "" {
		t.Errorf("address without code: exit %d: %s", r.code, r.stderr)
	}

	// A node that does not answer.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	r = runKMSCLI(t, "", verifyArgs(valid, "--rpc-url", dead, "--kms-contract", withRoot)...)
	if r.code != commands.ExitNetwork {
		t.Errorf("unreachable node: exit %d, want %d: %s", r.code, commands.ExitNetwork, r.stderr)
	}
}

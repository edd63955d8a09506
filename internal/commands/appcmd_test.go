package commands_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// cliRun is one in-process run of the CLI.
type cliRun struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func runCLI(t *testing.T, stdin string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code := commands.Run(ctx, append([]string{"cvmdeploy"}, args...), strings.NewReader(stdin), &out, &errb)
	// Every text result any test prints is checked for Go values (map[…],
	// [{…}], &{…}, %!verb) that must never reach a person (JSON and GitHub
	// workflow commands are for machines).
	if s := strings.TrimSpace(out.String()); s != "" && s[0] != '{' && s[0] != '[' && !strings.HasPrefix(s, "::") {
		for _, m := range []string{"map[", "[{", "&{", "%!"} {
			if strings.Contains(s, m) {
				t.Errorf("cvmdeploy %s printed a Go value (%q):\n%s", strings.Join(args, " "), m, s)
			}
		}
	}
	return cliRun{code: code, stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
}

// jsonOut runs the CLI, requires exit 0 and parses stdout as one JSON object.
func jsonOut(t *testing.T, args ...string) (map[string]any, cliRun) {
	t.Helper()
	r := runCLI(t, "", args...)
	if r.code != 0 {
		t.Fatalf("cvmdeploy %s: exit %d\nstderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", r.stdout)
	}
	return m, r
}

// cliChain is an anvil with its dev keys written to key files.
type cliChain struct {
	anvil              *testnet.Anvil
	url                string
	ownerKey, otherKey string // key file paths
	owner, other       common.Address
	eth                *ethclient.Client
}

func newCLIChain(t *testing.T) *cliChain {
	t.Helper()
	t.Setenv("PRIVATE_KEY", "") // the key files below are the only source
	for _, v := range []string{"ETH_RPC_URL", "CHAIN", "ETH_KEYSTORE", "ETH_PASSWORD", "ETH_GAS_PRICE", "ETH_PRIORITY_GAS_PRICE", "ETH_GAS_LIMIT", "ETH_TIMEOUT", "ETH_RPC_TIMEOUT"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	acc := a.Accounts()
	dir := t.TempDir()
	write := func(name string, i int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(hex.EncodeToString(crypto.FromECDSA(acc[i].PrivateKey))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	eth, err := ethclient.Dial(a.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eth.Close)
	return &cliChain{anvil: a, url: a.RPCURL(), ownerKey: write("owner.key", 0), otherKey: write("other.key", 1),
		owner: acc[0].Address, other: acc[1].Address, eth: eth}
}

func (c *cliChain) nonce(t *testing.T, a common.Address) uint64 {
	t.Helper()
	n, err := c.eth.PendingNonceAt(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (c *cliChain) deployKMS(t *testing.T) string {
	t.Helper()
	m, _ := jsonOut(t, "kms", "deploy", "--rpc-url", c.url, "--private-key-file", c.ownerKey, "--json")
	return m["kms_contract"].(string)
}

func (c *cliChain) deployApp(t *testing.T, kms string, extra ...string) map[string]any {
	t.Helper()
	m, _ := jsonOut(t, append([]string{"app", "deploy", "--rpc-url", c.url, "--private-key-file", c.ownerKey, "--kms-contract", kms, "--json"}, extra...)...)
	return m
}

const (
	composeHash = "0x1111111111111111111111111111111111111111111111111111111111111111"
	deviceID    = "0x2222222222222222222222222222222222222222222222222222222222222222"
)

// writeKeystore encrypts the key in keyFile under password.
func writeKeystore(t *testing.T, keyFile, password string) string {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := crypto.HexToECDSA(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	js, err := keystore.EncryptKey(&keystore.Key{Address: crypto.PubkeyToAddress(pk.PublicKey), PrivateKey: pk}, password, keystore.LightScryptN, keystore.LightScryptP)
	if err != nil {
		t.Fatal(err)
	}
	ks := filepath.Join(t.TempDir(), "ks.json")
	if err := os.WriteFile(ks, js, 0o600); err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestMustShow is the README's walk-through: kms deploy, app deploy with
// PRIVATE_KEY set, then app info shows the compose hash allowed.
func TestMustShow(t *testing.T) {
	c := newCLIChain(t)
	key, err := os.ReadFile(c.ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PRIVATE_KEY", strings.TrimSpace(string(key)))

	kms, r := jsonOut(t, "kms", "deploy", "--rpc-url", c.url, "--json")
	for _, k := range []string{"kms_contract", "app_implementation", "kms_implementation", "chain_id", "tx_hashes"} {
		if kms[k] == nil {
			t.Fatalf("kms deploy JSON lacks %s: %v", k, kms)
		}
	}
	if kms["chain_id"].(float64) != 31337 || strings.Count(r.stderr, "tx sent: 0x") != 3 {
		t.Fatalf("kms deploy: %v\nstderr: %s", kms, r.stderr)
	}

	app, r := jsonOut(t, "app", "deploy", "--rpc-url", c.url, "--kms-contract", kms["kms_contract"].(string),
		"--compose-hash", composeHash, "--device-id", deviceID, "--json")
	t.Logf("app deploy wall time (in-process CLI, automine): %v", r.elapsed)
	for _, k := range []string{"app_id", "contract_address", "deployer_address", "tx_hash", "block_number", "gas_used", "chain_id"} {
		if app[k] == nil {
			t.Fatalf("app deploy JSON lacks %s: %v", k, app)
		}
	}
	if app["app_id"] != app["contract_address"] || app["deployer_address"] != c.owner.Hex() || app["chain_id"].(float64) != 31337 {
		t.Fatalf("app deploy: %v", app)
	}
	if !strings.Contains(r.stderr, "tx sent: "+app["tx_hash"].(string)) {
		t.Fatalf("stderr lacks the sent hash: %s", r.stderr)
	}
	if code, err := c.eth.CodeAt(context.Background(), common.HexToAddress(app["app_id"].(string)), nil); err != nil || len(code) == 0 {
		t.Fatalf("no code at the app id: %v", err)
	}

	info, _ := jsonOut(t, "app", "info", "--rpc-url", c.url, "--app-id", app["app_id"].(string),
		"--compose-hash", composeHash, "--device-id", deviceID, "--kms-contract", kms["kms_contract"].(string), "--json")
	if info["compose_hash_allowed"] != true || info["device_allowed"] != true || info["registered"] != true || info["owner"] != c.owner.Hex() {
		t.Fatalf("app info: %v", info)
	}
	// The human form prints the same facts as key: value lines.
	human := runCLI(t, "", "app", "info", "--rpc-url", c.url, "--app-id", app["app_id"].(string), "--compose-hash", composeHash)
	if human.code != 0 || !strings.Contains(human.stdout, "compose_hash_allowed:") || !strings.Contains(human.stdout, "true") {
		t.Fatalf("human app info (exit %d):\n%s%s", human.code, human.stdout, human.stderr)
	}
	// The app id as the argument (lower case, no 0x: as the cloud shows it)
	// says the same.
	bare := strings.ToLower(strings.TrimPrefix(app["app_id"].(string), "0x"))
	pos := runCLI(t, "", "app", "info", "--rpc-url", c.url, "--compose-hash", composeHash, bare)
	if pos.code != 0 || pos.stdout != human.stdout {
		t.Fatalf("app info APP_ID (exit %d):\n%s%s\nwant:\n%s", pos.code, pos.stdout, pos.stderr, human.stdout)
	}
	late := runCLI(t, "", "app", "info", "--rpc-url", c.url, bare, "--compose-hash", composeHash)
	if late.code != commands.ExitUsage || !strings.Contains(late.stderr, "flags go before positional arguments") {
		t.Fatalf("a flag after the argument: exit %d\n%s", late.code, late.stderr)
	}
}

// TestBadInput runs each bad input of issue 2 through the CLI and checks the
// exit code, the one-line message and that nothing was sent.
func TestBadInput(t *testing.T) {
	c := newCLIChain(t)
	kms := c.deployKMS(t)
	app := c.deployApp(t, kms, "--compose-hash", composeHash)["app_id"].(string)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/v3/0123456789abcdef0123456789abcdef"
	l.Close()
	unfunded := filepath.Join(t.TempDir(), "unfunded.key")
	k, _ := crypto.GenerateKey()
	if err := os.WriteFile(unfunded, []byte(hex.EncodeToString(crypto.FromECDSA(k))), 0o600); err != nil {
		t.Fatal(err)
	}
	deploy := func(extra ...string) []string {
		return append([]string{"app", "deploy", "--rpc-url", c.url, "--private-key-file", c.ownerKey}, extra...)
	}
	cases := []struct {
		name   string
		args   []string
		signer common.Address
		code   int
		msg    string
		sent   bool
	}{
		{"malformed KMS address", deploy("--kms-contract", "0x1234"), c.owner, 2, `--kms-contract: "0x1234" is not an address`, false},
		{"bad checksum", deploy("--kms-contract", "0x2F83172A49584C017F2B256F0FB2Dca14126Ba9C"), c.owner, 2, "invalid EIP-55 checksum", false},
		{"malformed compose hash", deploy("--kms-contract", kms, "--compose-hash", "0xabc"), c.owner, 2, `--compose-hash: "0xabc" is not 32 bytes of hex`, false},
		{"malformed device id", deploy("--kms-contract", kms, "--device-id", strings.Repeat("zz", 32)), c.owner, 2, "--device-id: ", false},
		{"zero owner", deploy("--kms-contract", kms, "--owner", "0x0000000000000000000000000000000000000000"), c.owner, 2, "the zero address cannot own an app", false},
		{"missing KMS", deploy(), c.owner, 2, "--kms-contract is required", false},
		{"bad gas price", deploy("--kms-contract", kms, "--gas-price", "cheap"), c.owner, 2, "--gas-price: invalid amount", false},
		{"no RPC URL", []string{"app", "deploy", "--private-key-file", c.ownerKey, "--kms-contract", kms}, c.owner, 2, "no RPC URL: pass --rpc-url or set ETH_RPC_URL", false},
		{"no signer", []string{"app", "deploy", "--rpc-url", c.url, "--kms-contract", kms}, c.owner, 2, "no signer: set PRIVATE_KEY", false},
		{"wrong chain", deploy("--kms-contract", kms, "--chain", "base"), c.owner, 7, "wrong chain: --chain is base (8453) but the RPC node serves chain anvil (31337)", false},
		{"no contract at the KMS", deploy("--kms-contract", "0x000000000000000000000000000000000000dEaD"), c.owner, 7, "no contract at 0x000000000000000000000000000000000000dEaD on chain anvil (31337): check the KMS contract (--kms-contract)", false},
		{"RPC does not answer", []string{"app", "deploy", "--rpc-url", dead, "--private-key-file", c.ownerKey, "--kms-contract", kms}, c.owner, 5, "/v3/*** did not answer", false},
		{"insufficient funds", []string{"app", "deploy", "--rpc-url", c.url, "--private-key-file", unfunded, "--kms-contract", kms}, crypto.PubkeyToAddress(k.PublicKey), 7, "insufficient funds: need ", false},
		{"not the owner", []string{"app", "compose", "add", "--rpc-url", c.url, "--private-key-file", c.otherKey, "--app-id", app, "--compose-hash", composeHash}, c.other, 7, "is not the owner of " + app, false},
		{"malformed app id", []string{"app", "compose", "add", "--rpc-url", c.url, "--private-key-file", c.ownerKey, "--app-id", "0xnope", "--compose-hash", composeHash}, c.owner, 2, `--app-id: "0xnope" is not an address`, false},
		// The factory call reverts on-chain: the target is an app, not a KMS,
		// and a fixed gas limit skips the estimate.
		{"mined revert", deploy("--kms-contract", app, "--gas-limit", "400000"), c.owner, 3, "reverted in block", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := c.nonce(t, tc.signer)
			r := runCLI(t, "", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", r.code, tc.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "error: ") || !strings.Contains(last, tc.msg) {
				t.Fatalf("stderr's last line %q lacks %q", last, tc.msg)
			}
			if r.stdout != "" {
				t.Fatalf("stdout is not empty on failure: %q", r.stdout)
			}
			if sent := c.nonce(t, tc.signer) != n; sent != tc.sent {
				t.Fatalf("transaction sent = %v, want %v", sent, tc.sent)
			}
		})
	}
}

// TestAdminCommands runs every admin command through the CLI and reads the
// effect back with app info.
func TestAdminCommands(t *testing.T) {
	c := newCLIChain(t)
	kms := c.deployKMS(t)
	app := c.deployApp(t, kms)["app_id"].(string)
	as := func(key string, args ...string) map[string]any {
		t.Helper()
		m, _ := jsonOut(t, append(append([]string{"app"}, args...), "--rpc-url", c.url, "--private-key-file", key, "--app-id", app, "--json")...)
		if m["tx_hash"] == nil || m["block_number"] == nil || m["gas_used"] == nil {
			t.Fatalf("%v: %v", args, m)
		}
		return m
	}
	info := func() map[string]any {
		t.Helper()
		m, _ := jsonOut(t, "app", "info", "--rpc-url", c.url, "--app-id", app, "--compose-hash", composeHash, "--device-id", deviceID, "--json")
		return m
	}
	steps := []struct {
		args  []string
		key   string
		field string
		want  any
	}{
		{[]string{"compose", "add", "--compose-hash", composeHash}, c.ownerKey, "compose_hash_allowed", true},
		{[]string{"compose", "remove", "--compose-hash", composeHash}, c.ownerKey, "compose_hash_allowed", false},
		{[]string{"device", "add", "--device-id", deviceID}, c.ownerKey, "device_allowed", true},
		{[]string{"device", "remove", "--device-id", deviceID}, c.ownerKey, "device_allowed", false},
		{[]string{"allow-any-device"}, c.ownerKey, "allow_any_device", true},
		{[]string{"allow-any-device", "--allow=false"}, c.ownerKey, "allow_any_device", false},
		{[]string{"require-tcb"}, c.ownerKey, "require_tcb_up_to_date", true},
		{[]string{"transfer-ownership", "--new-owner", c.other.Hex()}, c.ownerKey, "pending_owner", c.other.Hex()},
		{[]string{"accept-ownership"}, c.otherKey, "owner", c.other.Hex()},
		{[]string{"disable-upgrades"}, c.otherKey, "upgrades_disabled", true},
	}
	for _, s := range steps {
		as(s.key, s.args...)
		if got := info()[s.field]; got != s.want {
			t.Fatalf("after %v: %s = %v, want %v", s.args, s.field, got, s.want)
		}
	}
}

func TestDeployVariants(t *testing.T) {
	c := newCLIChain(t)
	kms := c.deployKMS(t)

	// --dry-run predicts the id and sends nothing.
	n := c.nonce(t, c.owner)
	dry, _ := jsonOut(t, "app", "deploy", "--rpc-url", c.url, "--private-key-file", c.ownerKey, "--kms-contract", kms, "--compose-hash", composeHash, "--dry-run", "--json")
	if c.nonce(t, c.owner) != n || dry["dry_run"] != true || dry["predicted_app_id"] == nil {
		t.Fatalf("dry run: %v", dry)
	}
	real := c.deployApp(t, kms, "--compose-hash", composeHash)
	if real["app_id"] != dry["predicted_app_id"] {
		t.Fatalf("predicted %v, deployed %v", dry["predicted_app_id"], real["app_id"])
	}

	// --two-step with the key on stdin and another owner.
	key, _ := os.ReadFile(c.ownerKey)
	r := runCLI(t, string(key), "app", "deploy", "--rpc-url", c.url, "--private-key-stdin", "--kms-contract", kms,
		"--two-step", "--owner", c.other.Hex(), "--allow-any-device", "--json")
	if r.code != 0 {
		t.Fatalf("two-step: exit %d: %s", r.code, r.stderr)
	}
	var two map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &two); err != nil || two["proxy_tx_hash"] == nil || two["owner"] != c.other.Hex() {
		t.Fatalf("two-step: %v %v", two, err)
	}
	info, _ := jsonOut(t, "app", "info", "--rpc-url", c.url, "--app-id", two["app_id"].(string), "--kms-contract", kms, "--json")
	if info["registered"] != true || info["allow_any_device"] != true {
		t.Fatalf("two-step app info: %v", info)
	}

	// 6-argument factory and a keystore signer.
	ks := writeKeystore(t, c.ownerKey, "pw")
	js, err := os.ReadFile(ks)
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	six, _ := jsonOut(t, "app", "deploy", "--rpc-url", c.url, "--keystore", ks, "--password-file", pw, "--kms-contract", kms,
		"--require-tcb-up-to-date", "--chain", "anvil", "--json")
	info, _ = jsonOut(t, "app", "info", "--rpc-url", c.url, "--app-id", six["app_id"].(string), "--json")
	if info["require_tcb_up_to_date"] != true || six["deployer_address"] != c.owner.Hex() {
		t.Fatalf("6-arg deploy: %v / %v", six, info)
	}

	// The same keystore by name, where `cast wallet import` puts it.
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".foundry", "keystores"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".foundry", "keystores", "deployer"), js, 0o600); err != nil {
		t.Fatal(err)
	}
	byName, _ := jsonOut(t, "app", "deploy", "--rpc-url", c.url, "--account", "deployer", "--password-file", pw, "--kms-contract", kms, "--json")
	if byName["deployer_address"] != c.owner.Hex() {
		t.Fatalf("--account deploy: %v", byName)
	}
	if r := runCLI(t, "", "app", "deploy", "--rpc-url", c.url, "--account", "../etc", "--password-file", pw, "--kms-contract", kms); r.code != commands.ExitUsage {
		t.Fatalf("--account with a path: exit %d", r.code)
	}
}

func TestKMSDeployOptions(t *testing.T) {
	c := newCLIChain(t)
	root, _ := crypto.GenerateKey()
	rootHex := fmt.Sprintf("%x", crypto.CompressPubkey(&root.PublicKey))
	m, _ := jsonOut(t, "kms", "deploy", "--rpc-url", c.url, "--private-key-file", c.ownerKey, "--root-key", rootHex,
		"--os-image-hash", composeHash, "--os-image-hash", deviceID, "--json")
	if hs, ok := m["tx_hashes"].([]any); !ok || len(hs) != 6 {
		t.Fatalf("kms deploy: %v", m)
	}
	r := runCLI(t, "", "kms", "deploy", "--rpc-url", c.url, "--private-key-file", c.ownerKey, "--root-key", "0x1234")
	if r.code != 2 || !strings.Contains(r.stderr, "--root-key: 2 bytes") {
		t.Fatalf("bad root key: exit %d: %s", r.code, r.stderr)
	}
}

package commands_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestCLIKMSList: the local KMS contract with its id, chain, address, root
// key and node; its root key checked on-chain through --rpc-url, unchecked
// (null) without one; pinned only when a pin names it.
func TestCLIKMSList(t *testing.T) {
	f := newFlowEnv(t)
	doc, _ := jsonOut(t, "kms", "list", "--json")
	if len(doc) != 1 {
		t.Fatalf("document %v, want only contracts", doc)
	}
	list := doc["contracts"].([]any)
	if len(list) != 1 {
		t.Fatalf("contracts %v", list)
	}
	k := list[0].(map[string]any)
	want := map[string]any{"slug": f.ln.KMSID, "chain_id": float64(31337), "contract_address": f.ln.KMSContract.Hex(),
		"k256_pubkey": fmt.Sprintf("0x%x", f.ln.RootPublicKey), "node_count": float64(1), "pinned": false, "onchain_key_matches": true}
	for key, v := range want {
		if k[key] != v {
			t.Errorf("%s = %v, want %v", key, k[key], v)
		}
	}
	if id, _ := k["id"].(string); !strings.HasPrefix(id, "kc_") || len(k) != 8 {
		t.Fatalf("contract %v", k)
	}

	// Under a version before 2026-06-23 the node listing is grouped: no id,
	// the root key from the node's page, checked all the same.
	t.Setenv("PHALA_CLOUD_API_VERSION", "2026-05-22")
	doc, _ = jsonOut(t, "kms", "list", "--json")
	if k := doc["contracts"].([]any)[0].(map[string]any); k["id"] != nil || k["k256_pubkey"] != want["k256_pubkey"] || k["onchain_key_matches"] != true {
		t.Fatalf("from the node listing: %v", k)
	}
	t.Setenv("PHALA_CLOUD_API_VERSION", "")

	// Without a node of the chain: unchecked.
	t.Setenv("ETH_RPC_URL", "")
	doc, _ = jsonOut(t, "kms", "list", "--json")
	if v, ok := doc["contracts"].([]any)[0].(map[string]any)["onchain_key_matches"]; !ok || v != nil {
		t.Fatalf("onchain_key_matches = %v (present %v), want null", v, ok)
	}
	r := runCLI(t, "", "kms", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "unchecked") || !strings.Contains(r.stdout, f.ln.KMSContract.Hex()) || strings.Contains(r.stdout, "map[") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A pin that names it (here from --compose-pins) makes it pinned.
	pins := filepath.Join(f.dir, "pins.json")
	mustWrite(t, pins, `{"kms_contracts":[{"chain_id":31337,"chain":"anvil","address":"`+f.ln.KMSContract.Hex()+`","source":"this test"}]}`)
	doc, _ = jsonOut(t, "kms", "list", "--json", "--compose-pins", pins, "--rpc-url", f.ln.RPCURL)
	if k := doc["contracts"].([]any)[0].(map[string]any); k["pinned"] != true || k["onchain_key_matches"] != true {
		t.Fatalf("pinned contract %v", k)
	}
	if r := runCLI(t, "", "kms", "list", "--rpc-url", f.ln.RPCURL, "--chain", "base"); r.code != commands.ExitVerify {
		t.Fatalf("--chain base against anvil: exit %d\n%s", r.code, r.stderr)
	}

	// The contract slug and kc_ id select the KMS in deploy.
	id := k["id"].(string)
	r = runCLI(t, "", "deploy", "--compose", f.compose, "--env-file", f.envFile, "--name", "kms-by-id", "--kms", id, "--json", "--rpc-url", f.ln.RPCURL)
	if r.code != 0 {
		t.Fatalf("deploy --kms %s: exit %d\n%s", id, r.code, r.stderr)
	}
	if d := jsonDoc(t, r); d["kms_contract"] != f.ln.KMSContract.Hex() || d["chain_id"] != float64(31337) {
		t.Fatalf("deploy --kms %s: %v", id, d)
	}
	if r := runCLI(t, "", "deploy", "--compose", f.compose, "--env-file", f.envFile, "--name", "kms-unknown", "--kms", "kc_nope", "--rpc-url", f.ln.RPCURL); r.code != commands.ExitUsage || !strings.Contains(r.stderr, "kms list") {
		t.Fatalf("deploy --kms kc_nope: exit %d\n%s", r.code, r.stderr)
	}
}

// TestCLIKMSListFlagsMisreportedRootKey: a cloud that reports a root key
// the contract does not hold is flagged (false, exit 7, both keys named).
func TestCLIKMSListFlagsMisreportedRootKey(t *testing.T) {
	f := newFlowEnvWith(t, testnet.LocalnetConfig{Cloud: cloud.Config{MisreportRootKey: true}})
	r := runCLI(t, "", "kms", "list", "--json")
	if r.code != commands.ExitVerify {
		t.Fatalf("exit %d, want %d\n%s", r.code, commands.ExitVerify, r.stderr)
	}
	k := jsonDoc(t, r)["contracts"].([]any)[0].(map[string]any)
	if k["onchain_key_matches"] != false || k["k256_pubkey"] == fmt.Sprintf("0x%x", f.ln.RootPublicKey) {
		t.Fatalf("contract %v", k)
	}
	r = runCLI(t, "", "kms", "list")
	if r.code != commands.ExitVerify || !strings.Contains(r.stdout, "DOES NOT MATCH") || !strings.Contains(r.stdout, fmt.Sprintf("0x%x", f.ln.RootPublicKey)) ||
		!strings.Contains(r.stderr, "misreports") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The flows read the root key from the chain, so a deploy still works.
	if r := runCLI(t, "", f.deployArgs("misreport-deploy")...); r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
}

// TestCLIDeployTokenNeverPrinted: a full deploy under the default version
// provisions with a one-time commit token, which is in the 0600 journal
// and nowhere in stdout or stderr.
func TestCLIDeployTokenNeverPrinted(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("token-app")...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	path := jsonDoc(t, r)["journal"].(string)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token := between(string(data), `"token": "`, `"`)
	if !strings.HasPrefix(token, "ctk_") {
		t.Fatalf("the journal holds no token:\n%s", data)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v", st.Mode().Perm())
	}
	if strings.Contains(r.stdout, token) || strings.Contains(r.stderr, token) || strings.Contains(r.stdout+r.stderr, token[4:20]) {
		t.Fatal("the commit token was printed")
	}
	if !strings.Contains(r.stderr, "one-time commit token kept in the journal") {
		t.Fatalf("stderr does not say where the token is:\n%s", r.stderr)
	}
}

// TestCLIVersionFallbackSaidOnStderr: PHALA_CLOUD_API_VERSION chooses the
// version; one the server refuses is retried with 2025-10-28, said on
// stderr even with --quiet, and the deploy completes.
func TestCLIVersionFallbackSaidOnStderr(t *testing.T) {
	f := newFlowEnv(t)
	t.Setenv("PHALA_CLOUD_API_VERSION", "2027-01-01")
	r := runCLI(t, "", append(f.deployArgs("fallback-cli"), "--quiet")...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "refused X-Phala-Version 2027-01-01") || !strings.Contains(r.stderr, "retrying with 2025-10-28") || strings.Count(r.stderr, "retrying") != 1 {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
	if doc := jsonDoc(t, r); doc["status"] != "running" {
		t.Fatalf("result %v", doc)
	}
	t.Setenv("PHALA_CLOUD_API_VERSION", "not-a-date")
	if r := runCLI(t, "", f.deployArgs("bad-version")...); r.code != commands.ExitUsage {
		t.Fatalf("bad version: exit %d\n%s", r.code, r.stderr)
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

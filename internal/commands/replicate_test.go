package commands_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

func (f *flowEnv) nonce(t *testing.T) uint64 {
	t.Helper()
	n, err := f.eth.NonceAt(context.Background(), f.ln.DevAccount.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ownerKey(k *ecdsa.PrivateKey) []byte { return crypto.FromECDSA(k) }

func (f *flowEnv) nodeDevice(id int64) string {
	for _, n := range f.ln.Nodes {
		if n.ID == id {
			return fmt.Sprintf("%x", n.DeviceID[:])
		}
	}
	return ""
}

// TestCLIReplicate: replicate --json is one document with the replica on
// node 2, its device approved by one transaction; a second replica there
// sends none; status --app-id lists the app's CVMs with their devices, and
// says "unchecked" without an RPC node.
func TestCLIReplicate(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("cli-replica")...)
	if r.code != 0 {
		t.Fatalf("deploy: %s", r.stderr)
	}
	dep := jsonDoc(t, r)
	src, app := dep["cvm_id"].(string), dep["app_id"].(string)

	r = runCLI(t, "", "replicate", "--cvm", src, "--node-id", "2", "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("replicate: exit %d\n%s", r.code, r.stderr)
	}
	doc := jsonDoc(t, r)
	reps := doc["replicas"].([]any)
	rep := reps[0].(map[string]any)
	if len(reps) != 1 || rep["node_id"] != float64(2) || rep["device_id"] != f.nodeDevice(2) || rep["status"] != "running" || rep["tx_hash"] == "" || rep["cvm_id"] == "" {
		t.Fatalf("replicate document %v", doc)
	}
	if doc["compose_verified"] != "read" || doc["device_check"] != "node-list" {
		t.Fatalf("checks not reported: %v", doc)
	}
	r = runCLI(t, "", "replicate", "--cvm", src, "--node-id", "2", "--json")
	if r.code != 0 {
		t.Fatalf("second replicate: exit %d\n%s", r.code, r.stderr)
	}
	if rep := jsonDoc(t, r)["replicas"].([]any)[0].(map[string]any); rep["tx_hash"] != "" || rep["status"] == "" {
		t.Fatalf("second replica %v: want no transaction", rep)
	}

	r = runCLI(t, "", "status", "--app-id", app, "--json")
	if r.code != 0 {
		t.Fatalf("status --app-id: exit %d\n%s", r.code, r.stderr)
	}
	st := jsonDoc(t, r)
	cvms := st["cvms"].([]any)
	if len(cvms) != 3 || st["onchain_checked"] != true {
		t.Fatalf("status --app-id %v", st)
	}
	for _, c := range cvms {
		m := c.(map[string]any)
		if m["device_allowed"] != true || m["device_id"] != f.nodeDevice(int64(m["node_id"].(float64))) {
			t.Errorf("CVM %v", m)
		}
	}
	t.Setenv("ETH_RPC_URL", "")
	r = runCLI(t, "", "status", "--app-id", app)
	if r.code != 0 || !strings.Contains(r.stdout, "Devices unchecked") || !strings.Contains(r.stdout, "DEVICE ALLOWED") || strings.Count(r.stdout, "unchecked") != 4 {
		t.Fatalf("status --app-id without an RPC node: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, bad := range []string{"map[", "[{", "&{"} {
		if strings.Contains(r.stdout, bad) {
			t.Fatalf("human output prints a Go value (%s):\n%s", bad, r.stdout)
		}
	}
}

// TestCLIReplicateOwnerApproval: an AppAuth owned by another account: the
// replicate run stops with exit 10, the calls and a Safe file, and prints
// no commit token; --prepare-only hands over the token; once the owner made
// the call, commit-replica (token from a file) creates the replica.
func TestCLIReplicateOwnerApproval(t *testing.T) {
	f := newFlowEnv(t)
	owner := f.ln.Chain.Accounts()[1]
	r := runCLI(t, "", f.deployArgs("cli-owned", "--owner", owner.Address.Hex())...)
	if r.code != 0 {
		t.Fatalf("deploy: %s", r.stderr)
	}
	dep := jsonDoc(t, r)
	src, app := dep["cvm_id"].(string), dep["app_id"].(string)
	safeFile := filepath.Join(f.dir, "safe.json")

	r = runCLI(t, "", "replicate", "--cvm", src, "--node-id", "3", "--safe-file", safeFile, "--json")
	if r.code != commands.ExitPending {
		t.Fatalf("replicate: exit %d, want %d\n%s", r.code, commands.ExitPending, r.stderr)
	}
	doc := jsonDoc(t, r)
	calls := doc["onchain_calls"].([]any)
	if doc["status"] != "awaiting-approval" || len(calls) != 1 || calls[0].(map[string]any)["function"] != "addDevice" || doc["owner"] != owner.Address.Hex() {
		t.Fatalf("pending document %v", doc)
	}
	if b, err := os.ReadFile(safeFile); err != nil || !strings.Contains(string(b), strings.TrimPrefix(strings.ToLower(f.nodeDevice(3)), "0x")) {
		t.Fatalf("safe file: %v\n%s", err, b)
	}
	// The token is only in the 0600 journal.
	token := journalToken(t, f.journals)
	if strings.Contains(r.stdout+r.stderr, token) {
		t.Fatal("a commit token was printed without --prepare-only")
	}

	r = runCLI(t, "", "replicate", "--cvm", src, "--node-id", "3", "--prepare-only", "--safe-file", safeFile, "--json")
	if r.code != 0 {
		t.Fatalf("prepare-only: exit %d\n%s", r.code, r.stderr)
	}
	prep := jsonDoc(t, r)
	rep := prep["replicas"].([]any)[0].(map[string]any)
	if prep["status"] != "prepared" || rep["commit_token"] != token {
		t.Fatalf("prepared %v", prep)
	}

	// The owner executes the call.
	t.Setenv("PRIVATE_KEY", fmt.Sprintf("%x", ownerKey(owner.PrivateKey)))
	if r = runCLI(t, "", "app", "device", "add", "--app-id", app, "--device-id", "0x"+f.nodeDevice(3), "--json"); r.code != 0 {
		t.Fatalf("app device add: exit %d\n%s", r.code, r.stderr)
	}
	tokenFile := filepath.Join(f.dir, "token")
	mustWrite(t, tokenFile, token+"\n")
	r = runCLI(t, "", "commit-replica", "--cvm", src, "--token-file", tokenFile, "--compose-hash", prep["compose_hash"].(string), "--json")
	if r.code != 0 {
		t.Fatalf("commit-replica: exit %d\n%s", r.code, r.stderr)
	}
	committed := jsonDoc(t, r)
	if committed["node_id"] != float64(3) || committed["cvm_id"] == "" {
		t.Fatalf("commit-replica %v", committed)
	}
	if strings.Contains(r.stdout+r.stderr, token) {
		t.Fatal("commit-replica printed the token")
	}
	// Re-running the prepared run finds that replica instead of making another.
	t.Setenv("PRIVATE_KEY", f.keyHex)
	r = runCLI(t, "", "replicate", "--cvm", src, "--node-id", "3", "--json")
	if r.code != 0 {
		t.Fatalf("re-run: exit %d\n%s", r.code, r.stderr)
	}
	if rep := jsonDoc(t, r)["replicas"].([]any)[0].(map[string]any); rep["cvm_id"] != committed["cvm_id"] {
		t.Fatalf("re-run replica %v, want the one commit-replica made (%v)", rep, committed["cvm_id"])
	}
	r = runCLI(t, "", "status", "--app-id", app, "--json")
	if n := len(jsonDoc(t, r)["cvms"].([]any)); n != 2 {
		t.Fatalf("%d CVMs of the app, want the source and one replica", n)
	}
}

// TestCLIReplicateLiars: a cloud lying in a replica's 465 is refused with
// the exit code of what it lied about, and nothing is approved.
func TestCLIReplicateLiars(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("cli-liars")...)
	if r.code != 0 {
		t.Fatalf("deploy: %s", r.stderr)
	}
	src := jsonDoc(t, r)["cvm_id"].(string)
	for _, tc := range []struct {
		mode string
		code int
	}{{cloud.AdversaryReplicaDevice, commands.ExitVerify}, {cloud.AdversaryReplicaApp, commands.ExitCompose}, {cloud.AdversaryReplicaCompose, commands.ExitCompose}} {
		if err := f.ln.Cloud.SetAdversary(tc.mode); err != nil {
			t.Fatal(err)
		}
		nonce := f.nonce(t)
		r = runCLI(t, "", "replicate", "--cvm", src, "--node-id", "2", "--fresh", "--json")
		if r.code != tc.code || r.stdout != "" || f.nonce(t) != nonce {
			t.Fatalf("%s: exit %d (want %d), stdout %q, nonce %d→%d\n%s", tc.mode, r.code, tc.code, r.stdout, nonce, f.nonce(t), r.stderr)
		}
	}
}

// journalToken reads the commit token of the one replicate journal.
func journalToken(t *testing.T, stateDir string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(stateDir, "deployments", "replicate-*.json"))
	if len(paths) != 1 {
		t.Fatalf("replicate journals: %v", paths)
	}
	st, err := os.Stat(paths[0])
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("journal %s: %v mode %v", paths[0], err, st.Mode())
	}
	raw, _ := os.ReadFile(paths[0])
	var j struct {
		Replicas []struct {
			CommitToken string `json:"commit_token"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal(raw, &j); err != nil || len(j.Replicas) != 1 || j.Replicas[0].CommitToken == "" {
		t.Fatalf("journal %s: %v\n%s", paths[0], err, raw)
	}
	return j.Replicas[0].CommitToken
}

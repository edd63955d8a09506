package commands_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/safe"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/safeservice"
)

// safeEnv is a flow testnet whose anvil has the Safe contracts, a 2-of-3
// Safe of dev accounts 1-3 and the local Safe Transaction Service, with
// key files for the owners and for a CI key (dev account 4) that owns
// nothing.
type safeEnv struct {
	*flowEnv
	safe    string
	service string
	owners  [3]string // key files
	ciKey   string    // hex, for PRIVATE_KEY
	ci      common.Address
}

func newSafeEnv(t *testing.T) *safeEnv {
	t.Helper()
	f := newFlowEnvWith(t, testnet.LocalnetConfig{SafeOwners: 3, SafeThreshold: 2})
	e := &safeEnv{flowEnv: f, safe: f.ln.Safe.Hex(), service: f.ln.SafeServiceURL}
	accts := f.ln.Chain.Accounts()
	for i := range e.owners {
		e.owners[i] = filepath.Join(f.dir, fmt.Sprintf("owner%d.key", i+1))
		mustWrite(t, e.owners[i], hex.EncodeToString(crypto.FromECDSA(accts[i+1].PrivateKey)))
	}
	e.ciKey, e.ci = hex.EncodeToString(crypto.FromECDSA(accts[4].PrivateKey)), accts[4].Address
	t.Setenv("SAFE_SERVICE_URL", e.service)
	return e
}

// runAs runs the CLI with PRIVATE_KEY set to key ("" unsets it).
func runAs(t *testing.T, key string, args ...string) cliRun {
	t.Helper()
	prev, had := os.LookupEnv("PRIVATE_KEY")
	os.Setenv("PRIVATE_KEY", key)
	defer func() {
		if had {
			os.Setenv("PRIVATE_KEY", prev)
		} else {
			os.Unsetenv("PRIVATE_KEY")
		}
	}()
	return runCLI(t, "", args...)
}

func (e *safeEnv) pending(t *testing.T) int {
	t.Helper()
	page, err := (&safe.Service{BaseURL: e.service}).Pending(context.Background(), common.HexToAddress(e.safe), 0)
	if err != nil {
		t.Fatal(err)
	}
	return page.Count
}

// TestSafeProposeUpdateEndToEnd: a 2-of-3 Safe owns the AppAuth and CI
// holds a key that is only a delegate. update --safe-propose proposes the
// approval (exit 10 with safe_tx_hash) and a re-run proposes nothing new;
// two owners confirm offline (safe sign), safe exec refuses below the
// threshold and executes at it; re-running the same update finishes it
// with the Safe's execution as the approval, and the CVM runs the new
// compose.
func TestSafeProposeUpdateEndToEnd(t *testing.T) {
	e := newSafeEnv(t)
	r := runCLI(t, "", e.deployArgs("safe-owned", "--owner", e.safe)...)
	if r.code != 0 {
		t.Fatalf("deploy --owner SAFE: exit %d\n%s", r.code, r.stderr)
	}
	dep := jsonDoc(t, r)
	cvmID, appID := dep["cvm_id"].(string), dep["app_id"].(string)

	// app info knows the owner is a Safe.
	info, _ := jsonOut(t, "app", "info", "--json", appID)
	if info["owner_kind"] != "safe" || info["owner"] != e.safe || info["safe_threshold"] != float64(2) || info["safe_version"] != "1.4.1" || info["safe_nonce"] != float64(0) {
		t.Fatalf("app info: %v", info)
	}

	// Without a registration, the CI key may not propose.
	v2 := filepath.Join(e.dir, "v2.yml")
	mustWrite(t, v2, flowCompose+"  sidecar:\n    image: busybox:1.36\n")
	update := []string{"update", "--cvm", cvmID, "--compose", v2, "--env-file", e.envFile, "--safe-propose", "--wait", "--json"}
	r = runAs(t, e.ciKey, update...)
	if r.code != commands.ExitUsage || !strings.Contains(r.stderr, "neither an owner") {
		t.Fatalf("unregistered CI key: exit %d\n%s", r.code, r.stderr)
	}
	r = runAs(t, "", "safe", "delegate", "add", "--safe", e.safe, "--delegate", e.ci.Hex(), "--label", "ci", "--private-key-file", e.owners[0], "--json")
	if r.code != 0 || jsonDoc(t, r)["status"] != "added" {
		t.Fatalf("safe delegate add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The release job: propose, exit 10.
	r = runAs(t, e.ciKey, update...)
	if r.code != commands.ExitPending {
		t.Fatalf("update --safe-propose: exit %d, want %d\n%s", r.code, commands.ExitPending, r.stderr)
	}
	prop := jsonDoc(t, r)
	h, _ := prop["safe_tx_hash"].(string)
	if len(h) != 66 || prop["safe_nonce"] != float64(0) || prop["compose_hash"] == "" || prop["safe_address"] != e.safe || prop["status"] != "awaiting-approval" {
		t.Fatalf("proposal result %v", prop)
	}
	calls, _ := prop["calls"].([]any)
	if len(calls) != 1 || calls[0].(map[string]any)["function"] != "addComposeHash" {
		t.Fatalf("calls %v", prop["calls"])
	}
	if _, err := os.Stat("safe-transactions.json"); err == nil {
		t.Error("a Transaction Builder file was written although the calls were proposed")
	}
	// A re-run finds the proposal: same hash, nothing new in the queue.
	r = runAs(t, e.ciKey, update...)
	if r.code != commands.ExitPending || jsonDoc(t, r)["safe_tx_hash"] != h || !strings.Contains(r.stderr, "not proposing again") {
		t.Fatalf("re-run before approval: exit %d\n%s", r.code, r.stderr)
	}
	if n := e.pending(t); n != 1 {
		t.Fatalf("%d queued transactions, want 1", n)
	}

	// The approval job: owners confirm; exec needs the threshold.
	sign := func(i int) map[string]any {
		r := runAs(t, "", "safe", "sign", "--safe", e.safe, "--safe-tx-hash", h, "--private-key-file", e.owners[i], "--json")
		if r.code != 0 {
			t.Fatalf("safe sign as owner %d: exit %d\n%s", i+1, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "addComposeHash(0x"+prop["compose_hash"].(string)) {
			t.Errorf("safe sign did not show the decoded call:\n%s", r.stderr)
		}
		return jsonDoc(t, r)
	}
	if doc := sign(0); doc["status"] != "confirmed" || doc["confirmations"] != float64(1) {
		t.Fatalf("first confirmation %v", doc)
	}
	exec := []string{"safe", "exec", "--safe", e.safe, "--safe-tx-hash", h, "--json"}
	r = runAs(t, e.ciKey, exec...)
	if r.code != commands.ExitPending || jsonDoc(t, r)["status"] != "awaiting-confirmations" {
		t.Fatalf("safe exec below the threshold: exit %d\n%s", r.code, r.stderr)
	}
	if doc := sign(2); doc["confirmations"] != float64(2) {
		t.Fatalf("second confirmation %v", doc)
	}
	if doc := sign(2); doc["status"] != "already-confirmed" {
		t.Fatalf("signing twice: %v", doc)
	}
	r = runAs(t, e.ciKey, exec...)
	if r.code != 0 {
		t.Fatalf("safe exec: exit %d\n%s", r.code, r.stderr)
	}
	ex := jsonDoc(t, r)
	if ex["status"] != "executed" || ex["tx_hash"] == "" {
		t.Fatalf("safe exec result %v", ex)
	}
	r = runAs(t, e.ciKey, exec...)
	if r.code != 0 || jsonDoc(t, r)["status"] != "already-executed" {
		t.Fatalf("safe exec again: exit %d\n%s", r.code, r.stderr)
	}

	// The follow-up job: the same command finishes the update.
	r = runAs(t, e.ciKey, update...)
	if r.code != 0 {
		t.Fatalf("re-run after execution: exit %d\n%s", r.code, r.stderr)
	}
	done := jsonDoc(t, r)
	if done["status"] != "running" || done["compose_hash"] != prop["compose_hash"] {
		t.Fatalf("finished update %v", done)
	}
	if !strings.Contains(r.stderr, "was executed in "+ex["tx_hash"].(string)) {
		t.Errorf("the approval is not the Safe's execution:\n%s", r.stderr)
	}
	// The CVM runs the new compose: its app-compose holds the sidecar.
	doc := cloudGet(t, e.flowEnv, "/cvms/"+cvmID+"/compose_file")
	if !strings.Contains(doc, "busybox:1.36") {
		t.Fatalf("the CVM's app-compose lacks the new service: %s", doc)
	}
	app := common.HexToAddress(appID)
	chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	hash := common.HexToHash(prop["compose_hash"].(string))
	ai, err := chain.AppInfo(context.Background(), deployer.AppInfoQuery{App: app, ComposeHash: (*[32]byte)(&hash)})
	if err != nil || !*ai.ComposeHashAllowed || ai.Owner != common.HexToAddress(e.safe) {
		t.Fatalf("on-chain: %+v %v", ai, err)
	}
}

// cloudGet reads a path of the local cloud's API.
func cloudGet(t *testing.T, f *flowEnv, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", f.ln.APIPrefix+path, nil)
	req.Header.Set("X-API-Key", f.ln.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// TestSafeSignRefusesALyingService: a service that serves other calldata
// under a proposal's hash gets no signature (exit 7), and the real queue
// gets no confirmation.
func TestSafeSignRefusesALyingService(t *testing.T) {
	e := newSafeEnv(t)
	ctx := context.Background()
	// A proposal by owner 1: a call to the KMS's owner() (harmless).
	svc := &safe.Service{BaseURL: e.service}
	st := safe.Tx{To: e.ln.KMSContract, Data: common.FromHex("0x8da5cb5b"), Nonce: 0}
	h := st.Hash(e.ln.ChainID, e.ln.Safe)
	owner1 := deployer.NewKeySigner(e.ln.SafeOwners[0].PrivateKey).(safe.HashSigner)
	sig, _ := safe.Sign(ctx, owner1, h)
	if err := svc.Propose(ctx, e.ln.Safe, safe.NewProposeRequest(st, h, owner1.Address(), sig.Static, "")); err != nil {
		t.Fatal(err)
	}
	// The liar answers GETs with the data of a transferOwnership to itself.
	target, _ := url.Parse(e.service)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet {
			return nil
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["data"] != nil {
			m["data"] = "0xf2fde38b000000000000000000000000000000000000000000000000000000000000dead"
			b, _ = json.Marshal(m)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		return nil
	}
	liar := httptest.NewServer(proxy)
	defer liar.Close()
	r := runAs(t, "", "safe", "sign", "--safe", e.safe, "--safe-tx-hash", h.Hex(), "--safe-service", liar.URL+target.Path, "--private-key-file", e.owners[1], "--json")
	if r.code != commands.ExitVerify || !strings.Contains(r.stderr, "is not the transaction that hash names") {
		t.Fatalf("safe sign against a liar: exit %d\n%s", r.code, r.stderr)
	}
	got, err := svc.Transaction(ctx, h)
	if err != nil || len(got.Confirmations) != 1 {
		t.Fatalf("the queue has %d confirmations after the refusal (%v)", len(got.Confirmations), err)
	}
}

// TestSafeAPIKeyFromEnv: SAFE_API_KEY reaches a service that wants a key
// (as Authorization: Bearer), a missing key is the service's refusal
// (exit 6), and the key appears in no output.
func TestSafeAPIKeyFromEnv(t *testing.T) {
	e := newSafeEnv(t)
	const key = "sk_safe_test_5d1e0c9b"
	chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	svc, err := safeservice.New(context.Background(), safeservice.Config{Chain: chain.Eth(), APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	args := []string{"safe", "delegate", "add", "--safe", e.safe, "--delegate", e.ci.Hex(), "--safe-service", svc.URL(), "--private-key-file", e.owners[0], "--json"}
	t.Setenv("SAFE_API_KEY", "")
	r := runAs(t, "", args...)
	if r.code != commands.ExitAPI || !strings.Contains(r.stderr, "HTTP 401") {
		t.Fatalf("without SAFE_API_KEY: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("SAFE_API_KEY", key)
	r = runAs(t, "", args...)
	if r.code != 0 {
		t.Fatalf("with SAFE_API_KEY: exit %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Fatal("the API key was printed")
	}
	list, err := (&safe.Service{BaseURL: svc.URL(), APIKey: key}).Delegates(context.Background(), e.ln.Safe, e.ci)
	if err != nil || list.Count != 1 {
		t.Fatalf("the keyed service holds %+v (%v)", list, err)
	}
}

// TestSafeOwnedTimelockEndToEnd: an app born with a 60 s timelock whose
// only proposer is a 2-of-3 Safe; CI holds a delegate key. update
// --safe-propose proposes the timelock's schedule call to the Safe (exit
// 10); two owners confirm and anyone executes it, which schedules the
// operation; the re-run waits for the ETA (exit 10, nothing sent); once the
// chain's clock passed it, the same command executes the operation (open
// execution), commits, and the CVM runs the new compose.
func TestSafeOwnedTimelockEndToEnd(t *testing.T) {
	e := newSafeEnv(t)
	r := runCLI(t, "", e.deployArgs("safe-timelocked", "--timelock", "60", "--timelock-proposer", e.safe)...)
	if r.code != 0 {
		t.Fatalf("deploy --timelock with a Safe proposer: exit %d\n%s", r.code, r.stderr)
	}
	dep := jsonDoc(t, r)
	cvmID, tl := dep["cvm_id"].(string), dep["timelock_address"].(string)
	if r := runAs(t, "", "safe", "delegate", "add", "--safe", e.safe, "--delegate", e.ci.Hex(), "--private-key-file", e.owners[0], "--json"); r.code != 0 {
		t.Fatalf("safe delegate add: %s", r.stderr)
	}
	v2 := filepath.Join(e.dir, "v2.yml")
	mustWrite(t, v2, flowCompose+"  worker:\n    image: busybox:1.36\n")
	update := []string{"update", "--cvm", cvmID, "--compose", v2, "--env-file", e.envFile, "--safe-propose", "--wait", "--json"}

	// The release job: the schedule call goes to the Safe.
	r = runAs(t, e.ciKey, update...)
	if r.code != commands.ExitPending {
		t.Fatalf("update: exit %d, want %d\n%s", r.code, commands.ExitPending, r.stderr)
	}
	prop := jsonDoc(t, r)
	h, _ := prop["safe_tx_hash"].(string)
	if len(h) != 66 || prop["timelock_state"] != "unset" {
		t.Fatalf("proposal %v\n%s", prop, r.stderr)
	}
	for _, i := range []int{0, 1} {
		sr := runAs(t, "", "safe", "sign", "--safe", e.safe, "--safe-tx-hash", h, "--private-key-file", e.owners[i], "--json")
		if sr.code != 0 {
			t.Fatalf("safe sign %d: %s", i, sr.stderr)
		}
		if !strings.Contains(sr.stderr, "schedule(") || !strings.Contains(sr.stderr, tl) {
			t.Errorf("safe sign did not show the schedule call on the timelock:\n%s", sr.stderr)
		}
	}
	if r := runAs(t, e.ciKey, "safe", "exec", "--safe", e.safe, "--safe-tx-hash", h, "--json"); r.code != 0 {
		t.Fatalf("safe exec: %s", r.stderr)
	}

	// Scheduled: the re-run waits for the ETA and sends nothing.
	nonce, _ := e.eth.NonceAt(context.Background(), e.ci, nil)
	r = runAs(t, e.ciKey, update...)
	if w := jsonDoc(t, r); r.code != commands.ExitPending || w["timelock_state"] != "waiting" {
		t.Fatalf("before the ETA: exit %d %v\n%s", r.code, w, r.stderr)
	}
	if after, _ := e.eth.NonceAt(context.Background(), e.ci, nil); after != nonce {
		t.Fatal("a transaction was sent before the ETA")
	}

	// After the delay: the same command executes, commits, and the CVM runs.
	e.advance(t, 61)
	r = runAs(t, e.ciKey, update...)
	if r.code != 0 {
		t.Fatalf("after the ETA: exit %d\n%s", r.code, r.stderr)
	}
	if done := jsonDoc(t, r); done["status"] != "running" || done["timelock_state"] != "done" {
		t.Fatalf("finished %v", done)
	}
	if doc := cloudGet(t, e.flowEnv, "/cvms/"+cvmID+"/compose_file"); !strings.Contains(doc, "busybox:1.36") {
		t.Fatalf("the CVM's app-compose lacks the new service: %s", doc)
	}
}

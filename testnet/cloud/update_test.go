package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// runningCVM deploys an app for name and waits until its CVM runs.
func runningCVM(t *testing.T, a *api, name string) (id string, app common.Address, hash string) {
	t.Helper()
	prov := a.do("POST", "/cvms/provision", provisionBody(name)).must(t, 200)
	hash = prov["compose_hash"].(string)
	app = deployApp(t, prov["device_id"].(string), hash)
	cvm, _ := commitFor(t, a, name, app)
	id = fmt.Sprint(int64(cvm["id"].(float64)))
	if st := a.waitStatus(id); st["status"] != cloud.StatusRunning {
		t.Fatalf("CVM %s: %v", id, st)
	}
	return id, app, hash
}

// details465 turns a 465 body's detail.details list into a map.
func details465(t *testing.T, r reply) map[string]any {
	t.Helper()
	detail := r.must(t, cloud.StatusHashRegistrationRequired)["detail"].(map[string]any)
	out := map[string]any{}
	for _, d := range detail["details"].([]any) {
		m := d.(map[string]any)
		out[m["field"].(string)] = m["value"]
	}
	for _, k := range []string{"compose_hash", "app_id", "device_id", "kms_info", "commit_token", "commit_url", "api_commit_url", "onchain_status"} {
		if _, ok := out[k]; !ok {
			t.Errorf("465 details lack %q: %v", k, out)
		}
	}
	return out
}

func addComposeHash(t *testing.T, app common.Address, hash string) common.Hash {
	t.Helper()
	c, s := chain(t)
	res, err := c.AddComposeHash(context.Background(), s, app, common.HexToHash(hash), deployer.TxOptions{})
	if err != nil {
		t.Fatalf("addComposeHash: %v", err)
	}
	return res.TxHash
}

// TestComposeUpdate walks the generic update: 465 with the new hash, the
// error statuses of a bad confirmation, addComposeHash on-chain, the
// confirmation with X-Compose-Hash/X-Transaction-Hash, and the reboot.
func TestComposeUpdate(t *testing.T) {
	a := newAPI(t)
	id, app, oldHash := runningCVM(t, a, "update-app")
	newCompose := strings.Replace(composeYAML, "nginx:1.27", "nginx:1.28", 1)

	before := shared.Cloud.Counts()
	d := details465(t, a.do("PATCH", "/cvms/"+id, map[string]any{"docker_compose_file": newCompose}))
	newHash := d["compose_hash"].(string)
	if newHash == oldHash || len(newHash) != 64 {
		t.Fatalf("465 compose_hash %q (old %q)", newHash, oldHash)
	}
	if st := d["onchain_status"].(map[string]any); st["compose_hash_allowed"] != false || st["device_id_allowed"] != true || st["is_allowed"] != false {
		t.Errorf("onchain_status = %v", st)
	}
	if !strings.HasSuffix(d["api_commit_url"].(string), "/api/v1/cvms/"+id+"/commit-update") {
		t.Errorf("api_commit_url = %v", d["api_commit_url"])
	}
	if after := shared.Cloud.Counts(); after.Updates != before.Updates+1 {
		t.Errorf("pending updates %d -> %d, want one more", before.Updates, after.Updates)
	}

	confirm := func(hash, tx string) reply {
		return a.do("PATCH", "/cvms/"+id, "{}", "X-Compose-Hash", hash, "X-Transaction-Hash", tx)
	}
	// Not registered yet: a state-only check fails with 468.
	if r := confirm(newHash, cloud.AlreadyRegistered); r.status != cloud.StatusHashNotOnChain {
		t.Errorf("already-registered before the tx: status %d, want 468: %s", r.status, r.raw)
	}
	// A hash that was never proposed: 466.
	if r := confirm(strings.Repeat("1", 64), cloud.AlreadyRegistered); r.status != cloud.StatusHashExpired {
		t.Errorf("unknown hash: status %d, want 466", r.status)
	}
	// A transaction that registers another hash: 467.
	otherTx := addComposeHash(t, app, strings.Repeat("2", 64))
	if r := confirm(newHash, otherTx.Hex()); r.status != cloud.StatusTxVerificationFailed {
		t.Errorf("unrelated tx: status %d, want 467: %s", r.status, r.raw)
	}
	if r := confirm(newHash, "0x"+strings.Repeat("9", 64)); r.status != cloud.StatusTxVerificationFailed {
		t.Errorf("unknown tx: status %d, want 467: %s", r.status, r.raw)
	}

	tx := addComposeHash(t, app, newHash)
	r := confirm(newHash, tx.Hex())
	if body := r.must(t, 202); body["correlation_id"] == nil {
		t.Fatalf("202 without correlation_id: %s", r.raw)
	}
	if st := a.waitStatus(id); st["status"] != cloud.StatusRunning {
		t.Fatalf("after the update: %v", st)
	}
	if got := a.do("GET", "/cvms/"+id, nil).must(t, 200); got["compose_hash"] != newHash || got["docker_compose_file"] != newCompose {
		t.Errorf("CVM after update: hash %v compose %q", got["compose_hash"], got["docker_compose_file"])
	}
	logHas(t, "onchain check", "app="+app.Hex(), "compose_hash="+newHash, "allowed=true")
	// The token was used up.
	if r := confirm(newHash, tx.Hex()); r.status != cloud.StatusHashExpired {
		t.Errorf("second confirmation: status %d, want 466", r.status)
	}
}

// TestPrepareOnlyAndCommitUpdate: the multisig flow, where the hash is
// registered by someone else and confirmed with commit-update.
func TestPrepareOnlyAndCommitUpdate(t *testing.T) {
	a := newAPI(t)
	id, app, _ := runningCVM(t, a, "prepare-app")
	newCompose := composeYAML + "# v2\n"
	d := details465(t, a.do("PATCH", "/cvms/"+id, map[string]any{"docker_compose_file": newCompose}, "X-Prepare-Only", "true"))
	token, hash := d["commit_token"].(string), d["compose_hash"].(string)

	// Even an allowed hash answers 465 when only preparing.
	addComposeHash(t, app, hash)
	d2 := details465(t, a.do("PATCH", "/cvms/"+id, map[string]any{"docker_compose_file": newCompose}, "X-Prepare-Only", "true"))
	if d2["onchain_status"].(map[string]any)["is_allowed"] != true {
		t.Errorf("onchain_status after addComposeHash: %v", d2["onchain_status"])
	}

	bad := []struct {
		body   map[string]any
		status int
	}{
		{map[string]any{"token": "nope", "compose_hash": hash, "transaction_hash": cloud.AlreadyRegistered}, cloud.StatusHashExpired},
		{map[string]any{"token": token, "compose_hash": strings.Repeat("3", 64), "transaction_hash": cloud.AlreadyRegistered}, cloud.StatusHashExpired},
		{map[string]any{"token": token, "compose_hash": hash}, 422},
		{map[string]any{"token": token, "compose_hash": hash, "transaction_hash": "0x12"}, 422},
	}
	for _, b := range bad {
		if r := a.do("POST", "/cvms/"+id+"/commit-update", b.body); r.status != b.status {
			t.Errorf("commit-update %v: status %d, want %d", b.body, r.status, b.status)
		}
	}
	r := a.do("POST", "/cvms/"+id+"/commit-update", map[string]any{"token": token, "compose_hash": hash, "transaction_hash": cloud.AlreadyRegistered})
	if body := r.must(t, 202); body["status"] != "in_progress" {
		t.Errorf("commit-update answer %s", r.raw)
	}
	if st := a.waitStatus(id); st["status"] != cloud.StatusRunning {
		t.Fatalf("after commit-update: %v", st)
	}
}

// TestUpdatesWithoutTransaction: an env-only update with the same key set
// and a resource change keep the hash and apply at once; a new key set
// changes the hash and needs registration.
func TestUpdatesWithoutTransaction(t *testing.T) {
	a := newAPI(t)
	id, app, hash := runningCVM(t, a, "env-update-app")
	pub := a.pubkey(app.Hex())
	enc, err := kms.EncryptEnv([]kms.EnvVar{{Key: "GREETING", Value: "bonjour"}, {Key: "DB_PASSWORD", Value: "n3w"}}, pub)
	if err != nil {
		t.Fatal(err)
	}
	a.do("PATCH", "/cvms/"+id, map[string]any{"encrypted_env": enc}).must(t, 202)
	a.do("PATCH", "/cvms/"+id, map[string]any{"vcpu": 2, "memory": 4096}).must(t, 202)
	if st := a.waitStatus(id); st["status"] != cloud.StatusRunning {
		t.Fatalf("after env update: %v", st)
	}
	got := a.do("GET", "/cvms/"+id, nil).must(t, 200)
	if got["compose_hash"] != hash || got["vcpu"] != float64(2) {
		t.Errorf("after updates: hash %v vcpu %v", got["compose_hash"], got["vcpu"])
	}

	// A key outside allowed_envs is refused; a new key set is a new hash.
	bad, _ := kms.EncryptEnv([]kms.EnvVar{{Key: "NEW_KEY", Value: "v"}}, pub)
	func() {
		defer unchanged(t)()
		if r := a.do("PATCH", "/cvms/"+id, map[string]any{"encrypted_env": bad}); r.status != 422 {
			t.Errorf("env with a key outside allowed_envs: status %d, want 422", r.status)
		}
		for _, body := range []any{"{}", map[string]any{"vcpu": "2"}, map[string]any{"allowed_envs": "A"}, map[string]any{"image": "dstack-0.0.1"}} {
			if r := a.do("PATCH", "/cvms/"+id, body); r.status != 422 {
				t.Errorf("PATCH %v: status %d, want 422", body, r.status)
			}
		}
	}()
	d := details465(t, a.do("PATCH", "/cvms/"+id, map[string]any{"allowed_envs": []string{"GREETING", "DB_PASSWORD", "NEW_KEY"}, "encrypted_env": bad}))
	if d["compose_hash"] == hash {
		t.Errorf("a new key set must change the compose hash")
	}
}

func TestIsAllowed(t *testing.T) {
	a := newAPI(t)
	id, app, hash := runningCVM(t, a, "is-allowed-app")
	got := a.do("POST", "/cvms/"+id+"/is-allowed", nil).must(t, 200)
	if got["is_allowed"] != true || got["compose_hash"] != hash || got["app_contract_address"] != app.Hex() {
		t.Errorf("is-allowed for the running hash: %v", got)
	}
	other := a.do("POST", "/cvms/"+id+"/is-allowed", map[string]any{"compose_hash": strings.Repeat("4", 64)}).must(t, 200)
	if other["is_allowed"] != false || other["compose_hash_allowed"] != false || other["error"] != "Compose hash not allowed" {
		t.Errorf("is-allowed for another hash: %v", other)
	}
	dev := a.do("POST", "/cvms/"+id+"/is-allowed", map[string]any{"device_id": strings.Repeat("5", 64)}).must(t, 200)
	if dev["device_id_allowed"] != false || dev["is_allowed"] != false {
		t.Errorf("is-allowed for another device: %v", dev)
	}
	if r := a.do("POST", "/cvms/"+id+"/is-allowed", map[string]any{"compose_hash": 5}); r.status != 422 {
		t.Errorf("bad compose_hash: status %d", r.status)
	}
	if r := a.do("POST", "/cvms/nope-not-here/is-allowed", nil); r.status != 404 {
		t.Errorf("unknown CVM: status %d", r.status)
	}
}

// TestFaultInjection: with a seeded RNG the injected 429/503 answers are
// reproducible, carry the documented shape, and store nothing.
func TestFaultInjection(t *testing.T) {
	ctx := context.Background()
	sequence := func() []int {
		srv, err := cloud.New(ctx, cloud.Config{APIKey: "k", Chain: chainBackend(t), KMSContract: shared.KMSContract,
			RootKey: rootKey, OSImageHash: shared.OSImageHash, Rate429: 0.3, Rate5xx: 0.3, Seed: 42})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		a := &api{t: t, prefix: srv.APIPrefix(), key: "k"}
		var got []int
		for range 30 {
			r := a.do("POST", "/cvms/provision", provisionBody("fault-app"))
			got = append(got, r.status)
			switch r.status {
			case 429:
				if r.header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
				fallthrough
			case 503:
				if _, ok := r.body["detail"].(string); !ok {
					t.Errorf("fault body %s", r.raw)
				}
			}
		}
		if n := srv.Counts().Provisions; n != 1 && n != 0 {
			t.Errorf("provisions stored: %d (all for one compose)", n)
		}
		return got
	}
	first, second := sequence(), sequence()
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("same seed, different faults:\n%v\n%v", first, second)
	}
	counts := map[int]int{}
	for _, s := range first {
		counts[s]++
	}
	if counts[429] == 0 || counts[503] == 0 || counts[200] == 0 {
		t.Errorf("status mix %v: want 429, 503 and 200", counts)
	}
}

func chainBackend(t *testing.T) cloud.Backend {
	c, _ := chain(t)
	return c.Eth()
}

// TestRootKeyMismatch: a cloud whose root key is not the one on-chain
// refuses to start.
func TestRootKeyMismatch(t *testing.T) {
	other, _ := cryptoKey()
	_, err := cloud.New(context.Background(), cloud.Config{APIKey: "k", Chain: chainBackend(t), KMSContract: shared.KMSContract,
		RootKey: other, OSImageHash: shared.OSImageHash})
	if !errors.Is(err, cloud.ErrRootKeyMismatch) {
		t.Fatalf("err = %v, want a root key mismatch", err)
	}
}

// TestCloseDropsUnusedConnections: a connection that never sends a request
// (what an HTTP client's parallel dial leaves behind) does not hold up
// Close, which would otherwise wait for it until its 5 s deadline, fail,
// and leave it open.
func TestCloseDropsUnusedConnections(t *testing.T) {
	srv, err := cloud.New(context.Background(), cloud.Config{APIKey: "k", Chain: chainBackend(t), KMSContract: shared.KMSContract,
		RootKey: rootKey, OSImageHash: shared.OSImageHash})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	// One connection that served a request and one that never sent a byte.
	a := &api{t: t, prefix: srv.APIPrefix(), key: "k"}
	if r := a.do("GET", "/kms?is_onchain=true", nil); r.status != 200 {
		t.Fatalf("GET /kms: %d", r.status)
	}
	unused, err := net.Dial("tcp", strings.TrimPrefix(srv.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer unused.Close()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v (it waited for the unused connection)", err)
	}
	// The deadline only keeps a regression from hanging the test.
	unused.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := unused.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("unused connection still open after Close: read %v", err)
	}
}

package cvm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// writeBatch writes n apps (each its own compose and .env) and a batch file.
func writeBatch(t *testing.T, dir string, n int) string {
	t.Helper()
	var apps []map[string]any
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("app%02d", i))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(sub, "docker-compose.yml"), fmt.Sprintf("services:\n  web:\n    image: ghcr.io/example/svc-%d:1\n    environment:\n      - TOKEN=${TOKEN}\n", i))
		writeFile(t, filepath.Join(sub, ".env"), fmt.Sprintf("TOKEN=batch-secret-%d\n", i))
		apps = append(apps, map[string]any{"name": fmt.Sprintf("batch-app-%02d", i), "compose": filepath.Join(filepath.Base(sub), "docker-compose.yml"), "env_files": []string{filepath.Join(filepath.Base(sub), ".env")}})
	}
	data, _ := json.Marshal(map[string]any{"apps": apps})
	path := filepath.Join(dir, "batch.json")
	writeFile(t, path, string(data))
	return path
}

func batchBase() cvm.Config {
	return cvm.Config{KMS: "ethereum", Wait: true, WaitTimeout: time.Minute}
}

func TestDeployBatch(t *testing.T) {
	e := newEnv(t)
	apps, err := cvm.LoadBatchFile(writeBatch(t, e.dir, 6))
	if err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	res, err := r.DeployBatch(context.Background(), batchBase(), apps)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	if res.Succeeded != 6 || res.Failed != 0 {
		t.Fatalf("result %+v", res)
	}
	seen := map[string]bool{}
	var nonces []uint64
	for _, a := range res.Apps {
		if a.Status != "running" || !common.IsHexAddress(a.AppID) || seen[a.AppID] {
			t.Fatalf("app %+v", a.Result)
		}
		seen[a.AppID] = true
		tx, _, err := e.eth.TransactionByHash(context.Background(), common.HexToHash(a.TxHash))
		if err != nil {
			t.Fatal(err)
		}
		nonces = append(nonces, tx.Nonce())
	}
	for i := 1; i < len(nonces); i++ {
		if nonces[i] != nonces[i-1]+1 {
			t.Fatalf("nonces %v are not consecutive in batch order", nonces)
		}
	}
	if n := e.appDeployments(t); n != 6 {
		t.Fatalf("%d deployments", n)
	}
	if c := e.ln.Cloud.Counts(); c.CVMs != 6 {
		t.Fatalf("%d CVMs", c.CVMs)
	}
}

func TestDeployBatchPartialFailureResumes(t *testing.T) {
	e := newEnv(t)
	apps, err := cvm.LoadBatchFile(writeBatch(t, e.dir, 5))
	if err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	var pubkeys atomic.Int32
	r.AfterStep = func(step string) error {
		if step == cvm.StepPubKey && pubkeys.Add(1) == 2 {
			return errInjected // the second app to get its key stops there
		}
		return nil
	}
	res, err := r.DeployBatch(context.Background(), batchBase(), apps)
	if !errors.Is(err, cvm.ErrBatchPartial) || res.Failed != 1 || res.Succeeded != 4 {
		t.Fatalf("first run: %v, %+v", err, res)
	}
	r.AfterStep = nil
	res, err = r.DeployBatch(context.Background(), batchBase(), apps)
	if err != nil || res.Succeeded != 5 {
		t.Fatalf("resumed batch: %v, %+v", err, res)
	}
	if n := e.appDeployments(t); n != 5 {
		t.Fatalf("%d AppAuths deployed, want exactly 5", n)
	}
	if c := e.ln.Cloud.Counts(); c.CVMs != 5 {
		t.Fatalf("%d CVMs, want exactly 5", c.CVMs)
	}
}

func TestLoadBatchFileRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":     `{"apps": []}`,
		"duplicate": `{"apps": [{"name": "app-one", "compose": "a.yml"}, {"name": "app-one", "compose": "b.yml"}]}`,
		"unknown":   `{"apps": [{"name": "app-one", "compose": "a.yml", "envs": "x"}]}`,
		"not json":  `apps: []`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		writeFile(t, path, body)
		if _, err := cvm.LoadBatchFile(path); !errors.Is(err, cvm.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want an invalid-config error", name, err)
		}
	}
}

// TestBatchOf50AtOneBlockPerSecond is the target: fifty AppAuths at
// one block per second all land within five blocks.
func TestBatchOf50AtOneBlockPerSecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testnet.LocalnetConfig{BlockTime: time.Second}
	cfg.Cloud.BootStep = 10 * time.Millisecond
	ln, err := testnet.StartLocalnet(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	e := &env{t: t, ln: ln, dir: t.TempDir()}
	apps, err := cvm.LoadBatchFile(writeBatch(t, e.dir, 50))
	if err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	r.Progress = nil
	start := time.Now()
	res, err := r.DeployBatch(ctx, batchBase(), apps)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	blocks := map[uint64]bool{}
	minB, maxB := ^uint64(0), uint64(0)
	for _, a := range res.Apps {
		blocks[a.BlockNumber] = true
		minB, maxB = min(minB, a.BlockNumber), max(maxB, a.BlockNumber)
	}
	t.Logf("50 apps: AppAuths in blocks %d..%d (%d distinct), whole batch %s", minB, maxB, len(blocks), time.Since(start).Round(time.Millisecond))
	if maxB-minB+1 > 5 {
		t.Fatalf("AppAuths spread over blocks %d..%d, want at most 5 blocks", minB, maxB)
	}
}

// TestDeployBatchReplacementsJournalToTheirApps holds the batch's
// transactions in the pool until they are replaced, then mines: every app's
// journal must hold only variants of its own nonce, and each app gets one
// AppAuth.
func TestDeployBatchReplacementsJournalToTheirApps(t *testing.T) {
	e := newEnv(t)
	apps, err := cvm.LoadBatchFile(writeBatch(t, e.dir, 3))
	if err != nil {
		t.Fatal(err)
	}
	rc := e.eth.Client()
	if err := rc.Call(nil, "evm_setAutomine", false); err != nil {
		t.Fatal(err)
	}
	store := cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")}
	// Mine only once every app's journal holds a replacement: waiting on
	// the journals rather than on a clock keeps the test honest on a slow
	// machine, where signing the batch may outlast any fixed sleep.
	replaced := func() bool {
		for _, a := range apps {
			j, err := store.Load(store.Path(e.ln.APIPrefix, a.Name))
			if err != nil || j == nil || j.DeployTx == nil || len(j.DeployTx.Variants()) < 2 {
				return false
			}
		}
		return true
	}
	go func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && !replaced(); {
			time.Sleep(20 * time.Millisecond)
		}
		rc.Call(nil, "evm_setAutomine", true)
		rc.Call(nil, "evm_mine")
	}()
	r := e.runner(t)
	base := batchBase()
	base.Tx.ReplaceAfter = 400 * time.Millisecond
	res, err := r.DeployBatch(context.Background(), base, apps)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	nonces := map[uint64]bool{}
	for _, a := range res.Apps {
		j, err := store.Load(store.Path(e.ln.APIPrefix, a.Name))
		if err != nil || j == nil || j.DeployTx == nil {
			t.Fatalf("journal of %s: %v", a.Name, err)
		}
		if len(j.DeployTx.Variants()) < 2 {
			t.Fatalf("%s: %d variants journaled, want the original and a replacement", a.Name, len(j.DeployTx.Variants()))
		}
		for _, h := range j.DeployTx.Variants() {
			tx, _, err := e.eth.TransactionByHash(context.Background(), h)
			if err == nil && tx.Nonce() != j.DeployTx.Nonce {
				t.Fatalf("%s: variant %s has nonce %d, journal says %d", a.Name, h.Hex(), tx.Nonce(), j.DeployTx.Nonce)
			}
		}
		if nonces[j.DeployTx.Nonce] {
			t.Fatalf("two apps journaled nonce %d", j.DeployTx.Nonce)
		}
		nonces[j.DeployTx.Nonce] = true
	}
	if n := e.appDeployments(t); n != 3 {
		t.Fatalf("%d AppAuths, want 3", n)
	}
}

// TestDryRunBatch: a batch dry run provisions and simulates every app but
// sends, commits and journals nothing; its total is the sum of the apps'
// costs; a balance that covers one app but not the batch is refused; and
// the app ids it predicts, in batch order, are the ones the real batch gets.
func TestDryRunBatch(t *testing.T) {
	e := newEnv(t)
	apps, err := cvm.LoadBatchFile(writeBatch(t, e.dir, 3))
	if err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	ctx := context.Background()
	signer := e.ln.DevAccount.Address
	nonce, err := e.eth.NonceAt(ctx, signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.DryRunBatch(ctx, batchBase(), apps)
	if err != nil {
		t.Fatalf("batch dry run: %v", err)
	}
	if after, _ := e.eth.NonceAt(ctx, signer, nil); after != nonce {
		t.Fatalf("nonce moved %d -> %d: a transaction was sent", nonce, after)
	}
	if n := e.appDeployments(t); n != 0 {
		t.Fatalf("%d AppAuths deployed by a dry run", n)
	}
	if c := e.ln.Cloud.Counts(); c.CVMs != 0 {
		t.Fatalf("dry run committed %d CVMs", c.CVMs)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dir, "journals")); len(entries) != 0 {
		t.Fatalf("dry run wrote %d journal(s)", len(entries))
	}
	if !out.DryRun || len(out.Apps) != 3 {
		t.Fatalf("result %+v", out)
	}
	sum := new(big.Int)
	hashes, ids := map[string]bool{}, map[string]bool{}
	for i, a := range out.Apps {
		if a.Name != apps[i].Name || a.Simulation == nil || a.Simulation.MaxCost == nil {
			t.Fatalf("app %d: %+v", i, a)
		}
		if !common.IsHexAddress(a.PredictedAppID) || a.CommitRequest["app_id"] != a.PredictedAppID {
			t.Fatalf("%s: predicted app id %q, commit request %v", a.Name, a.PredictedAppID, a.CommitRequest["app_id"])
		}
		hashes[a.ComposeHash] = true
		ids[a.PredictedAppID] = true
		sum.Add(sum, a.Simulation.MaxCost)
	}
	if len(hashes) != 3 || len(ids) != 3 {
		t.Errorf("compose hashes %v and app ids %v, want three different of each", hashes, ids)
	}
	if out.EstimatedCostWei != sum.String() {
		t.Errorf("total %s wei, want the sum of the apps: %s", out.EstimatedCostWei, sum)
	}

	// Enough for one app, not for three.
	setBalance := func(wei *big.Int) {
		t.Helper()
		if err := e.eth.Client().Call(nil, "anvil_setBalance", signer, (*hexutil.Big)(wei)); err != nil {
			t.Fatal(err)
		}
	}
	one := new(big.Int).Add(out.Apps[0].Simulation.MaxCost, big.NewInt(1))
	setBalance(one)
	_, err = r.DryRunBatch(ctx, batchBase(), apps)
	var funds *deployer.InsufficientFundsError
	if !errors.As(err, &funds) || funds.Need.Cmp(sum) > 0 || funds.Need.Cmp(one) <= 0 {
		t.Fatalf("err = %v, want *InsufficientFundsError for the batch's total", err)
	}

	// The real batch deploys the predicted ids, app by app.
	setBalance(new(big.Int).Mul(big.NewInt(100), big.NewInt(1e18)))
	res, err := r.DeployBatch(ctx, batchBase(), apps)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	for i, a := range res.Apps {
		if a.AppID != out.Apps[i].PredictedAppID {
			t.Errorf("%s: deployed app %s, dry run predicted %s", a.Name, a.AppID, out.Apps[i].PredictedAppID)
		}
	}
}

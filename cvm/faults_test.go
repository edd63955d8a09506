package cvm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/rpcproxy"
)

// newEnvWith is newEnv with a chosen localnet configuration (block time,
// cloud fault rates).
func newEnvWith(t *testing.T, cfg testnet.LocalnetConfig) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logBuf := &syncBuffer{}
	cfg.Cloud.Log = logBuf
	if cfg.Cloud.BootStep == 0 {
		cfg.Cloud.BootStep = 10 * time.Millisecond
	}
	ln, err := testnet.StartLocalnet(ctx, cfg)
	if err != nil {
		t.Fatalf("start localnet: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	dir := t.TempDir()
	e := &env{t: t, ln: ln, dir: dir, compose: filepath.Join(dir, "docker-compose.yml"), envFile: filepath.Join(dir, ".env"), cloudLog: logBuf}
	writeFile(t, e.compose, testCompose)
	writeFile(t, e.envFile, "GREETING="+secretGreeting+"\nDB_PASSWORD=\""+secretPassword+"\"\n")
	e.eth, err = ethclient.Dial(ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.eth.Close)
	return e
}

// proxied starts an RPC fault proxy in front of the env's chain and points
// a runner at it. The cloud keeps talking to the chain directly.
func (e *env) proxied(t *testing.T, seed int64, rules ...rpcproxy.Rule) (*cvm.Runner, *rpcproxy.Proxy) {
	t.Helper()
	p, err := rpcproxy.Start(context.Background(), rpcproxy.Config{Upstream: e.ln.RPCURL, Seed: seed, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	r := e.runner(t)
	r.RPCURL = p.URL()
	r.Progress = nil // fifty deploys of progress lines drown the failure
	return r, p
}

// TestDeployHTTPRequests counts the JSON-RPC HTTP requests of a whole
// on-chain deploy (provision → AppAuth → verified key → commit → running)
// between the tool and the chain: the preflight batch (which also reads the
// KMS root key), the send and the receipt poll(s). Target: at most 4 (the
// official CLI makes 6 on automine, 7 at one block per second).
func TestDeployHTTPRequests(t *testing.T) {
	for _, tc := range []struct {
		name      string
		blockTime time.Duration
		max       int
	}{
		// The preflight batch (chain, code, balance, nonce, fees, estimate,
		// KMS root key) and the synchronous send, answered with the
		// receipt (the target is at most 4).
		{"automine", 0, 2},
		{"block-time-1s", time.Second, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, testnet.LocalnetConfig{BlockTime: tc.blockTime})
			r, p := e.proxied(t, 1)
			var counts []int
			for i := range 3 {
				p.ResetStats()
				res, err := r.Deploy(context.Background(), e.config(fmt.Sprintf("count-%d", i)))
				if err != nil {
					t.Fatalf("deploy %d: %v", i, err)
				}
				if res.Status != "running" || !res.KeyVerified {
					t.Fatalf("deploy %d: %+v", i, res)
				}
				st := p.Stats()
				counts = append(counts, st.HTTPRequests)
				t.Logf("deploy %d: %d HTTP requests, calls %v", i, st.HTTPRequests, st.Calls)
			}
			if m := slices.Max(counts); m > tc.max {
				t.Fatalf("a deploy made %d JSON-RPC HTTP requests (all: %v), want at most %d", m, counts, tc.max)
			}
		})
	}
}

// faultDeploys is how many consecutive deploys run under faults: 10 in CI,
// 50 with CVMDEPLOY_FULL_FAULTS=1 (the target).
func faultDeploys(t *testing.T) int {
	if v := os.Getenv("CVMDEPLOY_FULL_FAULTS"); v != "" {
		full, err := strconv.ParseBool(v)
		if err != nil {
			t.Fatalf("CVMDEPLOY_FULL_FAULTS=%q: want 1 or 0", v)
		}
		if full {
			return 50
		}
	}
	return 10
}

// faultRules inject 20 % faults into every JSON-RPC request: drops,
// resets, 429s and 5xx in equal shares; sends get their own rule (the first
// matching rule wins) whose drops all happen after the node took the
// transaction, so its answer is lost.
var faultRules = []rpcproxy.Rule{
	{Method: "eth_sendRawTransaction*", Drop: 0.08, DropAfterForward: true, Reset: 0.04, TooMany: 0.04, ServerError: 0.04},
	{Method: "*", Drop: 0.05, Reset: 0.05, TooMany: 0.05, ServerError: 0.05},
}

// TestConsecutiveDeploysUnderFaults: N full deploys in a row, through 20 %
// injected RPC faults and a light API fault rate (429s), all succeed, each
// with exactly one AppAuth on chain and one CVM.
func TestConsecutiveDeploysUnderFaults(t *testing.T) {
	n := faultDeploys(t)
	const seed = 20260601
	cfg := testnet.LocalnetConfig{}
	// Provision is a POST the client retries only when the server cannot
	// have acted (429, not 5xx), so the API gets 429s only.
	cfg.Cloud.Rate429 = 0.03
	cfg.Cloud.Seed = seed
	e := newEnvWith(t, cfg)
	// The rules are set after the KMS is up: the harness's own setup is
	// not under test.
	r, p := e.proxied(t, seed)
	if err := p.SetRules(faultRules); err != nil {
		t.Fatal(err)
	}
	apps := map[string]bool{}
	for i := range n {
		apps0, cvms0 := e.appDeployments(t), e.ln.Cloud.Counts().CVMs
		res, err := r.Deploy(context.Background(), e.config(fmt.Sprintf("faulty-%02d", i)))
		if err != nil {
			t.Fatalf("deploy %d of %d: %v (faults so far %v)", i+1, n, err, p.Stats().Faults)
		}
		if res.Status != "running" || !res.KeyVerified || apps[res.AppID] {
			t.Fatalf("deploy %d: %+v", i+1, res)
		}
		apps[res.AppID] = true
		if got := e.appDeployments(t) - apps0; got != 1 {
			t.Fatalf("deploy %d: %d AppAuths deployed, want exactly 1", i+1, got)
		}
		if got := e.ln.Cloud.Counts().CVMs - cvms0; got != 1 {
			t.Fatalf("deploy %d: %d CVMs, want exactly 1", i+1, got)
		}
	}
	st := p.Stats()
	total := 0
	for _, k := range []string{rpcproxy.FaultDrop, rpcproxy.FaultDropAfterForward, rpcproxy.FaultReset, rpcproxy.FaultTooMany, rpcproxy.FaultServerError} {
		// Fifty deploys see every kind; ten may miss the rarer send faults
		// (TestLostSendAnswer in deployer covers those deterministically).
		if st.Faults[k] == 0 && n >= 50 {
			t.Fatalf("no %s fault in %d deploys: the mix is not what the test says (%v)", k, n, st.Faults)
		}
		total += st.Faults[k]
	}
	if total == 0 {
		t.Fatal("no fault was injected: the test proves nothing")
	}
	t.Logf("%d deploys, seed %d: %d HTTP requests, %d faults %v, calls %v", n, seed, st.HTTPRequests, total, st.Faults, st.Calls)
}

// TestDeployJournalsEveryReplacement: with automine off, the AppAuth
// transaction is replaced after ReplaceAfter; each variant is journaled
// before it is broadcast. The first run is stopped right after the
// replacement is journaled (before it is sent); the original is then mined,
// and the re-run finds its receipt among the journaled variants instead of
// sending anything.
func TestDeployJournalsEveryReplacement(t *testing.T) {
	e := newEnv(t)
	rc, err := rpc.Dial(e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Call(nil, "evm_setAutomine", false); err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	cfg := e.config("replaced-app")
	cfg.Tx.ReplaceAfter = 200 * time.Millisecond
	cfg.Tx.PollInterval = 50 * time.Millisecond
	journaled := 0
	r.AfterStep = func(s string) error {
		if s == cvm.StepDeployTx {
			journaled++
			if journaled == 2 {
				return errInjected // the replacement is journaled, not sent
			}
		}
		return nil
	}
	if _, err := r.Deploy(context.Background(), cfg); !errors.Is(err, errInjected) {
		t.Fatalf("first run: %v, want the injected stop at the replacement", err)
	}
	j, err := r.Journals.Load(r.Journals.Path(e.ln.APIPrefix, cfg.Name))
	if err != nil || j == nil || j.DeployTx == nil {
		t.Fatalf("journal: %v %+v", err, j)
	}
	if len(j.DeployTx.Hashes) != 2 || j.DeployTx.Hash != j.DeployTx.Hashes[1] {
		t.Fatalf("journaled variants %v (newest %s), want the original and the replacement", j.DeployTx.Hashes, j.DeployTx.Hash)
	}
	original := j.DeployTx.Hashes[0]
	if err := rc.Call(nil, "evm_mine"); err != nil {
		t.Fatal(err)
	}
	if err := rc.Call(nil, "evm_setAutomine", true); err != nil {
		t.Fatal(err)
	}
	r.AfterStep = nil
	res, err := r.Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if res.TxHash != original || res.Status != "running" || !slices.Contains(res.Resumed, cvm.StepDeployTx) {
		t.Fatalf("resumed run: tx %s (want the mined original %s), %+v", res.TxHash, original, res)
	}
	rcpt, err := e.eth.TransactionReceipt(context.Background(), common.HexToHash(original))
	if err != nil {
		t.Fatal(err)
	}
	dep, err := deployer.ParseAppDeployed(rcpt, e.ln.KMSContract)
	if err != nil || dep.AppID.Hex() != res.AppID {
		t.Fatalf("app id %s, the original's receipt says %v (%v)", res.AppID, dep, err)
	}
	if n := e.appDeployments(t); n != 1 {
		t.Fatalf("%d AppAuths", n)
	}
}

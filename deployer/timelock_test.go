package deployer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// advance moves anvil's clock by secs and mines a block at the new time.
func (e *chainEnv) advance(t *testing.T, secs uint64) {
	t.Helper()
	if err := e.client.RPC().CallContext(ctxT(t), nil, "evm_increaseTime", hexutil.Uint64(secs)); err != nil {
		t.Fatal(err)
	}
	if err := e.client.RPC().CallContext(ctxT(t), nil, "evm_mine"); err != nil {
		t.Fatal(err)
	}
}

// TestTimelockLifecycle: a 60 s timelock with one proposer and open
// execution owns an app; the proposer schedules, nobody can execute early,
// anyone can once the delay is over, and the history shows all of it in
// order, with the ETA.
func TestTimelockLifecycle(t *testing.T) {
	v := loadTimelockVectors(t)
	e := newChain(t, testnet.AnvilConfig{})
	proposer := deployer.NewKeySigner(e.anvil.Accounts()[2].PrivateKey)
	tl, err := e.client.DeployTimelock(ctxT(t), e.owner, deployer.TimelockDeployConfig{MinDelay: 60, Proposers: []common.Address{proposer.Address()}}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gas: timelock deployment %d (reference %d)", tl.GasUsed, 1605568)
	if n := len(e.code(t, tl.Address)); n != v.RuntimeCodeBytes {
		t.Fatalf("runtime code %d bytes, want %d", n, v.RuntimeCodeBytes)
	}
	info, err := e.client.DescribeTimelock(ctxT(t), tl.Address)
	if err != nil {
		t.Fatal(err)
	}
	if info.MinDelay != 60 || !info.OpenExecution || !slices.Equal(info.Proposers, []common.Address{proposer.Address()}) ||
		!slices.Equal(info.Cancellers, []common.Address{proposer.Address()}) || len(info.Admins) != 0 || info.CreatedAt != tl.BlockNumber {
		t.Fatalf("timelock %+v", info)
	}
	if quick, err := e.client.DescribeTimelockAtCreation(ctxT(t), tl.Address); err != nil || !slices.Equal(quick.Proposers, info.Proposers) || quick.CreatedAt != tl.BlockNumber {
		t.Fatalf("at creation: %+v, %v", quick, err)
	}
	for _, a := range []common.Address{e.kms.KMSContract, e.owner.Address()} {
		if ok, err := e.client.IsTimelock(ctxT(t), a); err != nil || ok {
			t.Fatalf("IsTimelock(%s) = %v, %v", a.Hex(), ok, err)
		}
	}
	if _, err := e.client.DescribeTimelock(ctxT(t), e.kms.KMSContract); !errors.Is(err, deployer.ErrNotTimelock) {
		t.Fatalf("DescribeTimelock(KMS): %v", err)
	}

	app := e.deployApp(t, e.owner, deployer.DeployAppConfig{Owner: tl.Address, ComposeHash: hash32(1), DeviceID: hash32(2)})
	op := deployer.TimelockOp{Calls: []deployer.TimelockCall{
		{Target: app.AppID, Data: deployer.AddDeviceCall(hash32(3)).Data},
		{Target: app.AppID, Data: deployer.AddComposeHashCall(hash32(4)).Data},
	}, Salt: common.Hash{7}}
	// Only a proposer may schedule: refused at the estimate, nothing sent.
	if _, err := e.client.SendTimelockCall(ctxT(t), e.other, tl.Address, op.ScheduleData(60), deployer.TxOptions{}); err == nil || !strings.Contains(err.Error(), "AccessControlUnauthorizedAccount") {
		t.Fatalf("schedule by a non-proposer: %v", err)
	}
	if _, err := e.client.SendTimelockCall(ctxT(t), proposer, tl.Address, op.ScheduleData(59), deployer.TxOptions{}); err == nil || !strings.Contains(err.Error(), "TimelockInsufficientDelay(59, 60)") {
		t.Fatalf("schedule below the delay: %v", err)
	}
	sched, err := e.client.SendTimelockCall(ctxT(t), proposer, tl.Address, op.ScheduleData(60), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gas: scheduleBatch of 2 calls %d", sched.GasUsed)
	st, err := e.client.TimelockOpState(ctxT(t), tl.Address, op.ID(), e.other.Address())
	if err != nil {
		t.Fatal(err)
	}
	if st.State() != deployer.OpWaiting || st.Timestamp != st.Now+60 || st.CanPropose || !st.CanExecute || st.MinDelay != 60 {
		t.Fatalf("after schedule: %+v (%s)", st, st.State())
	}
	if _, err := e.client.SendTimelockCall(ctxT(t), e.other, tl.Address, op.ExecuteData(), deployer.TxOptions{}); err == nil || !strings.Contains(err.Error(), "TimelockUnexpectedOperationState") {
		t.Fatalf("execute before the delay: %v", err)
	}
	e.advance(t, 61)
	if st, _ = e.client.TimelockOpState(ctxT(t), tl.Address, op.ID(), e.other.Address()); st.State() != deployer.OpReady {
		t.Fatalf("after 61 s: %s", st.State())
	}
	exec, err := e.client.SendTimelockCall(ctxT(t), e.other, tl.Address, op.ExecuteData(), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gas: executeBatch of 2 calls by anyone %d (reference %d)", exec.GasUsed, 100102)
	if st, _ = e.client.TimelockOpState(ctxT(t), tl.Address, op.ID(), e.other.Address()); st.State() != deployer.OpDone {
		t.Fatalf("after execute: %s", st.State())
	}
	h4 := hash32(4)
	ai, err := e.client.AppInfo(ctxT(t), deployer.AppInfoQuery{App: app.AppID, ComposeHash: &h4})
	if err != nil || !*ai.ComposeHashAllowed || ai.Owner != tl.Address {
		t.Fatalf("app after execute: %+v, %v", ai, err)
	}

	// The whole story, in order, with small log ranges through a node
	// that caps them (the reader halves until the node accepts).
	capped := newLogCapProxy(t, e.anvil.RPCURL(), 2)
	cc, err := deployer.Dial(ctxT(t), capped.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h, err := cc.AppHistory(ctxT(t), deployer.HistoryQuery{App: app.AppID, KMS: e.kms.KMSContract, Range: 8})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range h.Events {
		kinds = append(kinds, ev.Kind)
	}
	want := []string{
		deployer.KindOwnershipTransferred, deployer.KindInitialized, // initialize(owner, …)
		deployer.KindComposeHashAdded, deployer.KindDeviceAdded,
		deployer.KindUpgraded, deployer.KindAppRegistered, deployer.KindAppDeployedViaFactory,
		deployer.KindTimelockCallScheduled, deployer.KindTimelockCallScheduled,
		deployer.KindDeviceAdded, deployer.KindTimelockCallExecuted, deployer.KindComposeHashAdded, deployer.KindTimelockCallExecuted,
	}
	if !sameSet(kinds[:7], want[:7]) || !slices.Equal(kinds[7:], want[7:]) {
		t.Fatalf("history kinds %v\nwant (first 7 in any order) %v", kinds, want)
	}
	if h.FromBlock != app.BlockNumber || !slices.Equal(h.Timelocks, []common.Address{tl.Address}) || capped.refused() == 0 {
		t.Fatalf("from %d (app block %d), timelocks %v, refused ranges %d", h.FromBlock, app.BlockNumber, h.Timelocks, capped.refused())
	}
	s0 := h.Events[7]
	if s0.Actor != proposer.Address().Hex() || s0.TxHash != sched.TxHash.Hex() || s0.OperationID != op.ID().Hex() || s0.Salt != op.Salt.Hex() ||
		*s0.Delay != 60 || s0.ETA == "" || s0.Call != "addDevice("+common.Hash(hash32(3)).Hex()+")" {
		t.Fatalf("scheduled event %+v", s0)
	}
	x := h.Events[11]
	if x.Actor != e.other.Address().Hex() || x.TxHash != exec.TxHash.Hex() || x.ComposeHash != common.Hash(h4).Hex() || x.Time < s0.ETA {
		t.Fatalf("executed event %+v (scheduled ETA %s)", x, s0.ETA)
	}
	// Requests of a whole history at the default range: the creation
	// search, the app's owner and flags, the logs, the block times and
	// senders (counted, not timed).
	counting := newCountingProxy(t, e.anvil.RPCURL())
	hc, err := deployer.Dial(ctxT(t), counting.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.AppHistory(ctxT(t), deployer.HistoryQuery{App: app.AppID, KMS: e.kms.KMSContract}); err != nil {
		t.Fatal(err)
	}
	t.Logf("app history: %d events in %d HTTP requests", len(h.Events), counting.count())
	// --since skips what came before.
	later, err := e.client.AppHistory(ctxT(t), deployer.HistoryQuery{App: app.AppID, KMS: e.kms.KMSContract, Since: exec.BlockNumber})
	if err != nil || len(later.Events) != 4 {
		t.Fatalf("since %d: %v events, %v", exec.BlockNumber, len(later.Events), err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// logCapProxy forwards JSON-RPC to a real node but refuses eth_getLogs
// spanning more than max blocks, as public RPCs do.
type logCapProxy struct {
	*httptest.Server
	mu      sync.Mutex
	refusal int
}

func (p *logCapProxy) refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refusal
}

func newLogCapProxy(t *testing.T, upstream string, max uint64) *logCapProxy {
	p := &logCapProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params []struct {
				From hexutil.Uint64 `json:"fromBlock"`
				To   hexutil.Uint64 `json:"toBlock"`
			} `json:"params"`
		}
		if json.Unmarshal(body, &req) == nil && req.Method == "eth_getLogs" && len(req.Params) == 1 && uint64(req.Params[0].To-req.Params[0].From)+1 > max {
			p.mu.Lock()
			p.refusal++
			p.mu.Unlock()
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32701,"message":"block range is too large (max %d)"}}`, req.ID, max)
			return
		}
		resp, err := http.Post(upstream, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.Close)
	return p
}

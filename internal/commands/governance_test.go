package commands_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// advance moves the chain's clock by secs and mines a block at that time.
func (f *flowEnv) advance(t *testing.T, secs uint64) {
	t.Helper()
	for _, call := range []struct {
		method string
		args   []any
	}{{"evm_increaseTime", []any{hexutil.Uint64(secs)}}, {"evm_mine", nil}} {
		if err := f.eth.Client().CallContext(context.Background(), nil, call.method, call.args...); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *flowEnv) signer(t *testing.T, i int) (deployer.Signer, string) {
	t.Helper()
	a := f.ln.Chain.Accounts()[i]
	return deployer.NewKeySigner(a.PrivateKey), fmt.Sprintf("%x", crypto.FromECDSA(a.PrivateKey))
}

// otherProcess makes calls through the timelock the way someone else's
// tooling would: the proposer schedules, time passes, anyone executes.
func (f *flowEnv) otherProcess(t *testing.T, timelock string, op deployer.TimelockOp) common.Hash {
	t.Helper()
	c, err := deployer.Dial(context.Background(), f.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	proposer, _ := f.signer(t, 1)
	anyone, _ := f.signer(t, 3)
	tl := common.HexToAddress(timelock)
	if _, err := c.SendTimelockCall(context.Background(), proposer, tl, op.ScheduleData(60), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	f.advance(t, 61)
	r, err := c.SendTimelockCall(context.Background(), anyone, tl, op.ExecuteData(), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.TxHash
}

// TestCLITimelockLifeAndHistory: an app born with a 60 s timelock whose
// proposer is a plain key; a first update schedules (exit 10 with the
// ETA), waits (exit 10 again, also when --wait-approval times out), then
// executes and commits once the clock passed the ETA; a second update,
// prepared here and approved by another process, is finished by
// commit-update --wait-approval from the journal alone; ownership moves
// through the timelock to a new owner; app history shows all of it in
// order.
func TestCLITimelockLifeAndHistory(t *testing.T) {
	f := newFlowEnv(t)
	proposer, proposerKey := f.signer(t, 1)
	newOwner, newOwnerKey := f.signer(t, 2)

	dep, _ := jsonOut(t, f.deployArgs("cli-timelock", "--timelock", "1m", "--timelock-proposer", proposer.Address().Hex())...)
	tl, app, cvmID := dep["timelock_address"].(string), dep["app_id"].(string), dep["cvm_id"].(string)
	if dep["timelock_delay"] != float64(60) || dep["owner"] != tl || dep["status"] != "running" || !common.IsHexAddress(tl) {
		t.Fatalf("deploy --timelock: %v", dep)
	}

	// Update 1, by the proposer's key.
	t.Setenv("PRIVATE_KEY", proposerKey)
	v2 := filepath.Join(f.dir, "v2.yml")
	mustWrite(t, v2, flowCompose+"  sidecar:\n    image: busybox:1.36\n")
	update := []string{"update", "--cvm", cvmID, "--compose", v2, "--env-file", f.envFile, "--wait", "--json"}
	r := runCLI(t, "", update...)
	first := jsonDoc(t, r)
	if r.code != 10 || first["status"] != "awaiting-approval" || first["timelock_state"] != "waiting" || first["timelock_eta"] == nil || first["timelock_schedule_tx"] == nil {
		t.Fatalf("first run: exit %d %v\n%s", r.code, first, r.stderr)
	}
	eta := first["timelock_eta"].(string)
	if !strings.Contains(r.stderr, "still waiting") || !strings.Contains(r.stderr, eta) {
		t.Fatalf("stderr does not say it waits until %s:\n%s", eta, r.stderr)
	}
	r = runCLI(t, "", append(update, "--wait-approval", "--wait-timeout", "300ms", "--poll-interval", "50ms")...)
	if again := jsonDoc(t, r); r.code != 10 || again["timelock_operation_id"] != first["timelock_operation_id"] || !strings.Contains(r.stderr, "gave up waiting") {
		t.Fatalf("--wait-approval before the ETA: exit %d %v\n%s", r.code, again, r.stderr)
	}
	f.advance(t, 61)
	done, _ := jsonOut(t, update...)
	if done["status"] != "running" || done["approval_tx_hash"] != done["timelock_execute_tx"] || done["timelock_state"] != "done" {
		t.Fatalf("after the ETA: %v", done)
	}

	// Update 2: prepared here, approved elsewhere, finished from the journal.
	t.Setenv("PRIVATE_KEY", f.keyHex)
	v3 := filepath.Join(f.dir, "v3.yml")
	mustWrite(t, v3, flowCompose+"  cache:\n    image: redis:7\n")
	prep, _ := jsonOut(t, "update", "--cvm", cvmID, "--compose", v3, "--env-file", f.envFile, "--prepare-only", "--safe-file", filepath.Join(f.dir, "safe.json"), "--json")
	if calls := prep["onchain_calls"].([]any); len(calls) != 1 || calls[0].(map[string]any)["to"] != tl || prep["timelock_state"] != "unset" {
		t.Fatalf("prepare-only for a timelock owner: %v", prep)
	}
	// Another process approves with an operation of its own.
	op := deployer.TimelockOp{Salt: common.Hash{0x51}, Calls: []deployer.TimelockCall{
		{Target: common.HexToAddress(app), Data: deployer.AddComposeHashCall(common.HexToHash(prep["compose_hash"].(string))).Data},
	}}
	exec := f.otherProcess(t, tl, op)
	fin, _ := jsonOut(t, "commit-update", "--cvm", cvmID, "--wait-approval", "--wait", "--json")
	if fin["status"] != "running" || fin["compose_hash"] != prep["compose_hash"] || fin["approval_tx_hash"] != exec.Hex() {
		t.Fatalf("commit-update --wait-approval: %v; want approval %s", fin, exec.Hex())
	}

	// The timelock hands the app to a new owner, who accepts.
	transfer := deployer.TimelockOp{Calls: []deployer.TimelockCall{{Target: common.HexToAddress(app), Data: deployer.TransferOwnershipCall(newOwner.Address()).Data}}}
	f.otherProcess(t, tl, transfer)
	t.Setenv("PRIVATE_KEY", newOwnerKey)
	jsonOut(t, "app", "accept-ownership", "--app-id", app, "--json")

	hist, _ := jsonOut(t, "app", "history", "--kms-contract", f.ln.KMSContract.Hex(), "--json", app)
	var kinds []string
	var events []map[string]any
	for _, e := range hist["events"].([]any) {
		ev := e.(map[string]any)
		events = append(events, ev)
		kinds = append(kinds, ev["kind"].(string))
		for _, k := range []string{"block", "time", "tx_hash", "actor", "kind"} {
			if ev[k] == nil || ev[k] == "" {
				t.Fatalf("event without %s: %v", k, ev)
			}
		}
	}
	created := []string{"ownership_transferred", "initialized", "compose_hash_added", "device_added", "upgraded", "app_registered", "app_deployed_via_factory"}
	later := []string{
		"timelock_call_scheduled", "compose_hash_added", "timelock_call_executed", // update 1
		"timelock_call_scheduled", "compose_hash_added", "timelock_call_executed", // update 2
		"timelock_call_scheduled", "ownership_transfer_started", "timelock_call_executed", "ownership_transferred", // transfer
	}
	if len(kinds) != len(created)+len(later) || !sameKinds(kinds[:len(created)], created) || !slices.Equal(kinds[len(created):], later) {
		t.Fatalf("history:\n%v\nwant the creation block (%v) then\n%v", kinds, created, later)
	}
	u1, u2 := events[len(created)+1], events[len(created)+4]
	if u1["compose_hash"] != "0x"+done["compose_hash"].(string) || u1["tx_hash"] != done["approval_tx_hash"] || u2["compose_hash"] != "0x"+fin["compose_hash"].(string) || u2["tx_hash"] != exec.Hex() {
		t.Fatalf("update events %v / %v", u1, u2)
	}
	if s := events[len(created)]; s["actor"] != proposer.Address().Hex() || s["eta"] != eta || s["operation_id"] != first["timelock_operation_id"] {
		t.Fatalf("first scheduled event %v (eta %s)", s, eta)
	}
	if last := events[len(events)-1]; last["new_owner"] != newOwner.Address().Hex() || last["actor"] != newOwner.Address().Hex() {
		t.Fatalf("last event %v", last)
	}
	if hist["owner"] != newOwner.Address().Hex() || !slices.Contains(anyStrings(hist["timelocks"]), tl) {
		t.Fatalf("history header %v", hist)
	}
	// The same, for people: a table in time order.
	r = runCLI(t, "", "app", "history", "--app-id", app, "--kms-contract", f.ln.KMSContract.Hex())
	t.Logf("app history:\n%s", r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "BLOCK") || strings.Count(r.stdout, "compose_hash_added") != 3 || strings.Contains(r.stdout, "map[") {
		t.Fatalf("app history: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func sameKinds(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestCLIWaitApprovalBadInput: the governance flags refuse contradictions
// before anything is sent.
func TestCLIWaitApprovalBadInput(t *testing.T) {
	f := newFlowEnv(t)
	for _, args := range [][]string{
		f.deployArgs("cli-bad-tl", "--timelock", "soon"),
		f.deployArgs("cli-bad-tl", "--timelock", "0"),
		f.deployArgs("cli-bad-tl", "--timelock-proposer", "0x000000000000000000000000000000000000dEaD"),
		{"update", "--cvm", "x", "--compose", f.compose, "--prepare-only", "--wait-approval"},
		{"commit-update", "--cvm", "x", "--token", "t", "--wait-approval"},
		{"commit-update", "--cvm", "never-prepared", "--wait-approval"},
		{"app", "history"},
	} {
		if r := runCLI(t, "", args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	if n := f.deployments(t); n != 0 {
		t.Fatalf("%d AppAuths deployed by refused commands", n)
	}
}

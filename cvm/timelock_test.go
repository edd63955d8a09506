package cvm_test

import (
	"context"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// proposerSigner is anvil's second dev account: a plain key that proposes
// on the tests' timelocks (the user's account is the first).
func (e *env) proposerSigner(t *testing.T) deployer.Signer {
	t.Helper()
	accts := e.ln.Chain.Accounts()
	if len(accts) < 3 {
		t.Fatalf("%d dev accounts", len(accts))
	}
	return deployer.NewKeySigner(accts[1].PrivateKey)
}

// outsider is anvil's third dev account: neither owner nor proposer.
func (e *env) outsider(t *testing.T) deployer.Signer {
	return deployer.NewKeySigner(e.ln.Chain.Accounts()[2].PrivateKey)
}

func (e *env) chainClient(t *testing.T) *deployer.Client {
	t.Helper()
	c, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// advance moves the chain's clock by secs and mines a block at that time.
func (e *env) advance(t *testing.T, secs uint64) {
	t.Helper()
	c := e.chainClient(t)
	if err := c.RPC().CallContext(context.Background(), nil, "evm_increaseTime", hexutil.Uint64(secs)); err != nil {
		t.Fatal(err)
	}
	if err := c.RPC().CallContext(context.Background(), nil, "evm_mine"); err != nil {
		t.Fatal(err)
	}
}

func (e *env) nonceOf(t *testing.T, a common.Address) uint64 {
	t.Helper()
	n, err := e.eth.NonceAt(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var callScheduledTopic = crypto.Keccak256Hash([]byte("CallScheduled(bytes32,uint256,address,uint256,bytes,bytes32,uint256)"))

// scheduledCalls counts the timelock's CallScheduled logs.
func (e *env) scheduledCalls(t *testing.T, timelock string) int {
	t.Helper()
	logs, err := e.eth.FilterLogs(context.Background(), ethereum.FilterQuery{FromBlock: big.NewInt(0), Addresses: []common.Address{common.HexToAddress(timelock)}, Topics: [][]common.Hash{{callScheduledTopic}}})
	if err != nil {
		t.Fatal(err)
	}
	return len(logs)
}

// deployTimelocked deploys an app owned by a 60 s timelock whose proposer
// is the proposer key, and writes a new compose file for an update.
func (e *env) deployTimelocked(t *testing.T, name string) (*cvm.Result, string) {
	t.Helper()
	cfg := e.config(name)
	cfg.Timelock = &cvm.TimelockConfig{Delay: 60, Proposer: e.proposerSigner(t).Address()}
	res, err := e.runner(t).Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatalf("deploy --timelock: %v", err)
	}
	return res, e.v2(t, name)
}

func (e *env) v2(t *testing.T, name string) string {
	v2 := e.dir + "/" + name + "-v2.yml"
	writeFile(t, v2, testCompose+"  worker:\n    image: busybox:1.36\n")
	return v2
}

// TestDeployWithTimelockOwner: deploy --timelock deploys the timelock
// (journaled, resumable) and makes it the AppAuth's owner.
func TestDeployWithTimelockOwner(t *testing.T) {
	e := newEnv(t)
	proposer := e.proposerSigner(t).Address()
	cfg := e.config("timelocked")
	cfg.Timelock = &cvm.TimelockConfig{Delay: 60, Proposer: proposer}
	crash := e.runner(t)
	crash.AfterStep = func(step string) error {
		if step == cvm.StepTimelockTx {
			return errStop
		}
		return nil
	}
	if _, err := crash.Deploy(context.Background(), cfg); !errors.Is(err, errStop) {
		t.Fatalf("first run: %v", err)
	}
	res, err := e.runner(t).Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if res.Status != "running" || res.TimelockAddress == "" || res.TimelockDelay != 60 || res.Owner != res.TimelockAddress || !slices.Contains(res.Resumed, cvm.StepTimelockTx) {
		t.Fatalf("result %+v", res)
	}
	c := e.chainClient(t)
	info, err := c.DescribeTimelock(context.Background(), common.HexToAddress(res.TimelockAddress))
	if err != nil {
		t.Fatal(err)
	}
	if info.MinDelay != 60 || !info.OpenExecution || !slices.Equal(info.Proposers, []common.Address{proposer}) || len(info.Admins) != 0 {
		t.Fatalf("timelock %+v", info)
	}
	app, err := c.AppInfo(context.Background(), deployer.AppInfoQuery{App: common.HexToAddress(res.AppID)})
	if err != nil || app.Owner.Hex() != res.TimelockAddress {
		t.Fatalf("app owner %v, %v; want the timelock %s", app.Owner, err, res.TimelockAddress)
	}
	// One timelock: the resumed run awaited the journaled creation.
	if n := e.nonceOf(t, e.ln.DevAccount.Address); n != 2 {
		t.Fatalf("the user's account sent %d transactions, want 2 (timelock, AppAuth)", n)
	}
}

// TestTimelockUpdate: with a 60 s timelock owned by a plain proposer key,
// update schedules (exit 10 with the ETA), a re-run before the ETA still
// waits and sends nothing, and once the chain's clock passed the ETA the
// re-run executes, commits, and the CVM runs the new compose.
func TestTimelockUpdate(t *testing.T) {
	e := newEnv(t)
	res, v2 := e.deployTimelocked(t, "tl-update")
	proposer := e.proposerSigner(t)
	r := e.runner(t)
	r.Signer = proposer
	cfg := cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}, Wait: true}

	up, err := r.Update(context.Background(), cfg)
	var pe *cvm.ApprovalPendingError
	if !errors.As(err, &pe) || pe.Timelock == nil || pe.Timelock.State != deployer.OpWaiting {
		t.Fatalf("first run: %v", err)
	}
	eta := pe.Timelock.ETA.Format(time.RFC3339)
	if !strings.Contains(err.Error(), eta) || !strings.Contains(err.Error(), "still waiting") {
		t.Fatalf("the message lacks the ETA %s: %v", eta, err)
	}
	if up.Status != "awaiting-approval" || up.Timelock == nil || up.Timelock.ETA != eta || up.Timelock.State != deployer.OpWaiting || up.Timelock.ScheduleTx == "" || up.Timelock.Salt == "" {
		t.Fatalf("first run result %+v (timelock %+v)", up, up.Timelock)
	}
	// The review page names the owner's kind and its delay.
	if up.Review == nil || up.Review.OwnerKind != cvm.OwnerTimelock || !strings.Contains(up.Review.OwnerDetail, "minimum delay 1m0s; anyone may execute") {
		t.Fatalf("review owner %+v", up.Review)
	}
	sent := e.nonceOf(t, proposer.Address())
	// One schedule of addComposeHash (the node's device was allowed at
	// deployment).
	if sent != 1 || e.scheduledCalls(t, res.TimelockAddress) != 1 || len(up.Timelock.Calls) != 1 || up.Timelock.Calls[0].Function != "addComposeHash" {
		t.Fatalf("proposer sent %d, %d calls scheduled", sent, e.scheduledCalls(t, res.TimelockAddress))
	}

	// Before the ETA: still waiting, nothing sent twice.
	e.advance(t, 30)
	if _, err := r.Update(context.Background(), cfg); !errors.As(err, &pe) || pe.Timelock.State != deployer.OpWaiting || pe.Timelock.OperationID.Hex() != up.Timelock.OperationID {
		t.Fatalf("re-run before the ETA: %v", err)
	}
	if n := e.nonceOf(t, proposer.Address()); n != sent || e.scheduledCalls(t, res.TimelockAddress) != 1 {
		t.Fatalf("re-run before the ETA sent something: nonce %d", n)
	}

	// After the ETA: executed, committed, running the new compose.
	e.advance(t, 31)
	done, err := r.Update(context.Background(), cfg)
	if err != nil {
		t.Fatalf("re-run after the ETA: %v", err)
	}
	if done.Status != "running" || done.Timelock == nil || done.Timelock.ExecuteTx == "" || done.ApprovalTxHash != done.Timelock.ExecuteTx {
		t.Fatalf("result %+v (timelock %+v)", done, done.Timelock)
	}
	if !e.hashAllowed(t, res.AppID, done.ComposeHash) {
		t.Fatal("the new hash is not allowed")
	}
	cur, err := r.API.GetCVM(context.Background(), res.CVMID)
	if err != nil || cur.ComposeHash == nil || *cur.ComposeHash != done.ComposeHash || cur.Status != "running" {
		t.Fatalf("CVM after the update: %v, %v", cur, err)
	}
	if n := e.nonceOf(t, proposer.Address()); n != sent+1 {
		t.Fatalf("proposer nonce %d, want %d (schedule, execute)", n, sent+1)
	}
}

// TestCommitUpdateWaitsForTimelock: an update prepared on this machine is
// finished by FinishUpdate (commit-update --wait-approval) from its
// journal alone, once another process scheduled and executed the
// approval through the timelock: the commit carries the executing
// transaction.
func TestCommitUpdateWaitsForTimelock(t *testing.T) {
	e := newEnv(t)
	res, v2 := e.deployTimelocked(t, "tl-finish")
	r := e.runner(t)
	prep, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}, PrepareOnly: true})
	// For a timelock owner the calls handed out are the operation's
	// schedule on the timelock; nothing was sent.
	if err != nil || prep.Status != "prepared" || len(prep.OnChain) != 1 || prep.OnChain[0].Function != "schedule" || prep.OnChain[0].To != res.TimelockAddress ||
		prep.Timelock == nil || prep.Timelock.State != deployer.OpUnset || e.nonceOf(t, e.ln.DevAccount.Address) != 2 {
		t.Fatalf("prepare-only: %+v (timelock %+v), %v", prep, prep.Timelock, err)
	}
	// Another process (the proposer's own tooling) schedules the call in
	// an operation of its own (another salt).
	c := e.chainClient(t)
	tl := common.HexToAddress(res.TimelockAddress)
	op := deployer.TimelockOp{Salt: common.Hash{0x42}, Calls: []deployer.TimelockCall{
		{Target: common.HexToAddress(res.AppID), Data: deployer.AddComposeHashCall(common.HexToHash(prep.ComposeHash)).Data},
	}}
	if _, err := c.SendTimelockCall(context.Background(), e.proposerSigner(t), tl, op.ScheduleData(60), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	type finished struct {
		res *cvm.UpdateResult
		err error
	}
	out := make(chan finished, 1)
	go func() {
		fr := e.runner(t) // the user's key: may execute (open), may not propose
		fr.Progress = nil
		up, err := fr.FinishUpdate(context.Background(), cvm.FinishConfig{CVM: res.CVMID, WaitApproval: true, WaitTimeout: 2 * time.Minute, PollInterval: 20 * time.Millisecond, Wait: true})
		out <- finished{up, err}
	}()
	e.advance(t, 61)
	exec, err := c.SendTimelockCall(context.Background(), e.outsider(t), tl, op.ExecuteData(), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := <-out
	if f.err != nil {
		t.Fatalf("FinishUpdate: %v", f.err)
	}
	if f.res.Status != "running" || f.res.ComposeHash != prep.ComposeHash || f.res.ApprovalTxHash != exec.TxHash.Hex() {
		t.Fatalf("result %+v; want approval %s", f.res, exec.TxHash.Hex())
	}
	if n := e.nonceOf(t, e.ln.DevAccount.Address); n != 2 {
		t.Fatalf("the waiting user sent %d transactions beyond the deployment's 2", n-2)
	}
	// The journal is closed: a second finish has nothing to do.
	if _, err := r.FinishUpdate(context.Background(), cvm.FinishConfig{CVM: res.CVMID}); !errors.Is(err, cvm.ErrInvalidConfig) {
		t.Fatalf("second finish: %v", err)
	}
}

// TestTimelockStaleOperation: the journaled operation was executed, but
// what it allowed was undone since (a later operation removed the hash):
// the re-run refuses with a clear error and sends nothing.
func TestTimelockStaleOperation(t *testing.T) {
	e := newEnv(t)
	res, v2 := e.deployTimelocked(t, "tl-stale")
	proposer := e.proposerSigner(t)
	r := e.runner(t)
	r.Signer = proposer
	cfg := cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}}
	up, err := r.Update(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrApprovalPending) {
		t.Fatalf("first run: %v", err)
	}
	c := e.chainClient(t)
	tl := common.HexToAddress(res.TimelockAddress)
	e.advance(t, 61)
	// Someone executes the operation, then the proposer has the hash
	// removed through the timelock.
	ours := opOf(up.Timelock)
	if ours.ID().Hex() != up.Timelock.OperationID {
		t.Fatalf("rebuilt id %s, journal says %s", ours.ID().Hex(), up.Timelock.OperationID)
	}
	if _, err := c.SendTimelockCall(context.Background(), e.outsider(t), tl, ours.ExecuteData(), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	remove := deployer.TimelockOp{Calls: []deployer.TimelockCall{{Target: common.HexToAddress(res.AppID), Data: deployer.RemoveComposeHashCall(common.HexToHash(up.ComposeHash)).Data}}}
	if _, err := c.SendTimelockCall(context.Background(), proposer, tl, remove.ScheduleData(60), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	e.advance(t, 61)
	if _, err := c.SendTimelockCall(context.Background(), e.outsider(t), tl, remove.ExecuteData(), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	before := e.nonceOf(t, proposer.Address())
	_, err = r.Update(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrOwnerState) || !strings.Contains(err.Error(), up.Timelock.OperationID) {
		t.Fatalf("re-run: %v; want ErrOwnerState naming the operation", err)
	}
	if n := e.nonceOf(t, proposer.Address()); n != before {
		t.Fatal("something was sent on a contradicting chain")
	}
}

// opOf rebuilds the operation a result describes.
func opOf(st *cvm.TimelockStatus) deployer.TimelockOp {
	op := deployer.TimelockOp{Salt: common.HexToHash(st.Salt)}
	for _, c := range st.Calls {
		op.Calls = append(op.Calls, deployer.TimelockCall{Target: common.HexToAddress(c.To), Data: common.FromHex(c.Data)})
	}
	return op
}

// TestDeployTimelockApproveAfterRead: a new app born with a timelock whose
// compose hash can only be allowed after the committed document is read:
// the approval is scheduled (exit 10), and with --wait-approval the next
// run follows the chain until the ETA, executes and restarts the CVM.
func TestDeployTimelockApproveAfterRead(t *testing.T) {
	script := officialScript
	e := newEnvWith(t, testnet.LocalnetConfig{InjectPreLaunchScript: &script, Cloud: cloud.Config{BootStep: time.Millisecond}})
	r := e.runner(t)
	r.Trust.Pins = officialPins(t, script)
	cfg := e.config("tl-after-read")
	cfg.Timelock = &cvm.TimelockConfig{Delay: 60} // the signer proposes
	res, err := r.Deploy(context.Background(), cfg)
	var pe *cvm.ApprovalPendingError
	if !errors.As(err, &pe) || pe.Timelock == nil || pe.Timelock.State != deployer.OpWaiting || res.Timelock == nil || res.Status != "awaiting-approval" {
		t.Fatalf("first run: %v (result %+v)", err, res)
	}
	cfg.WaitApproval, cfg.PollInterval = true, 20*time.Millisecond
	out := make(chan error, 1)
	var done *cvm.Result
	go func() {
		waiting := e.runner(t)
		waiting.Trust, waiting.Progress = r.Trust, nil
		var err error
		done, err = waiting.Deploy(context.Background(), cfg)
		out <- err
	}()
	e.advance(t, 61)
	if err := <-out; err != nil {
		t.Fatalf("waiting run: %v", err)
	}
	if done.Status != "running" || done.ComposeVerified != cvm.ComposeApprovedAfterRead || done.ApproveTxHash == "" || done.Timelock.ExecuteTx != done.ApproveTxHash {
		t.Fatalf("result %+v", done)
	}
}

// TestTimelockProposerElsewhere: the signer is not the timelock's proposer
// (the proposer is a Safe, say): the update hands over the schedule call
// (exit 10, state unset, the proposer named), the proposer sends exactly
// that calldata, and after the delay the same command, with a key that
// may only execute, executes and commits.
func TestTimelockProposerElsewhere(t *testing.T) {
	e := newEnv(t)
	res, v2 := e.deployTimelocked(t, "tl-elsewhere")
	r := e.runner(t) // the user's key: not a proposer
	cfg := cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}, Wait: true}
	up, err := r.Update(context.Background(), cfg)
	var pe *cvm.ApprovalPendingError
	if !errors.As(err, &pe) || pe.Timelock == nil || pe.Timelock.State != deployer.OpUnset || pe.Approver != e.proposerSigner(t).Address() {
		t.Fatalf("first run: %v", err)
	}
	if len(up.OnChain) != 1 || up.OnChain[0].Function != "schedule" || up.OnChain[0].To != res.TimelockAddress || up.Approver != e.proposerSigner(t).Address().Hex() {
		t.Fatalf("handed-over calls %+v, approver %s", up.OnChain, up.Approver)
	}
	if n := e.nonceOf(t, e.ln.DevAccount.Address); n != 2 {
		t.Fatalf("the user sent %d transactions beyond the deployment", n-2)
	}
	c := e.chainClient(t)
	tl := common.HexToAddress(res.TimelockAddress)
	if _, err := c.SendTimelockCall(context.Background(), e.proposerSigner(t), tl, common.FromHex(up.OnChain[0].Data), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Update(context.Background(), cfg); !errors.As(err, &pe) || pe.Timelock.State != deployer.OpWaiting {
		t.Fatalf("after the proposer scheduled: %v", err)
	}
	e.advance(t, 61)
	done, err := r.Update(context.Background(), cfg)
	if err != nil || done.Status != "running" || done.ApprovalTxHash == "" || done.ApprovalTxHash != done.Timelock.ExecuteTx {
		t.Fatalf("after the ETA: %+v, %v", done, err)
	}
	if n := e.nonceOf(t, e.ln.DevAccount.Address); n != 3 {
		t.Fatalf("the user sent %d transactions beyond the deployment, want 1 (execute)", n-2)
	}
}

// TestTimelockFinishAfterExpiry: the preparation expired while the
// timelock's delay ran (466 on commit): commit-update prepares the same
// journaled request again, checks the service answers the approved hash,
// and commits; the CVM runs the new compose.
func TestTimelockFinishAfterExpiry(t *testing.T) {
	for _, liar := range []bool{false, true} {
		t.Run(map[bool]string{false: "honest", true: "lying-reprepare"}[liar], func(t *testing.T) { finishAfterExpiry(t, liar) })
	}
}

// finishAfterExpiry: with liar, the cloud answers the new preparation
// with another compose hash than the approved one: nothing is committed.
func finishAfterExpiry(t *testing.T, liar bool) {
	e := newEnv(t)
	res, v2 := e.deployTimelocked(t, "tl-expiry")
	r := e.runner(t)
	prep, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}, PrepareOnly: true})
	if err != nil || len(prep.OnChain) != 1 {
		t.Fatalf("prepare-only: %+v, %v", prep, err)
	}
	// The proposer (a Safe, say) sends the handed-out schedule call.
	c := e.chainClient(t)
	if _, err := c.SendTimelockCall(context.Background(), e.proposerSigner(t), common.HexToAddress(res.TimelockAddress), common.FromHex(prep.OnChain[0].Data), deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	e.advance(t, 61)
	e.ln.Cloud.ExpirePrepared()
	decrypted := strings.Count(e.cloudLog.String(), "decrypted env")
	if liar {
		if err := e.ln.Cloud.SetAdversary(cloud.AdversaryCompose); err != nil {
			t.Fatal(err)
		}
		_, err := r.FinishUpdate(context.Background(), cvm.FinishConfig{CVM: res.CVMID})
		if !errors.Is(err, cvm.ErrComposeRule) {
			t.Fatalf("FinishUpdate against a lying re-preparation: %v", err)
		}
		if cur, _ := r.API.GetCVM(context.Background(), res.CVMID); cur == nil || cur.ComposeHash == nil || *cur.ComposeHash != res.ComposeHash {
			t.Fatal("the CVM's compose changed although nothing should have been committed")
		}
		return
	}
	done, err := r.FinishUpdate(context.Background(), cvm.FinishConfig{CVM: res.CVMID, Wait: true})
	if err != nil {
		t.Fatalf("FinishUpdate: %v", err)
	}
	if done.Status != "running" || done.ComposeHash != prep.ComposeHash || done.Timelock == nil || done.ApprovalTxHash != done.Timelock.ExecuteTx || done.Timelock.OperationID != prep.Timelock.OperationID {
		t.Fatalf("result %+v (timelock %+v)", done, done.Timelock)
	}
	cur, err := r.API.GetCVM(context.Background(), res.CVMID)
	if err != nil || cur.ComposeHash == nil || *cur.ComposeHash != prep.ComposeHash {
		t.Fatalf("CVM compose hash %v, %v; want %s", cur.ComposeHash, err, prep.ComposeHash)
	}
	if n := strings.Count(e.cloudLog.String(), "decrypted env"); n != decrypted+1 {
		t.Fatalf("the cloud decrypted %d envs during the finish, want 1 (the journaled request sent again)", n-decrypted)
	}
}

package cvm_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// hashAllowed reads allowedComposeHashes(hash) on the app's AppAuth.
func (e *env) hashAllowed(t *testing.T, app, hash string) bool {
	t.Helper()
	c, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := [32]byte(common.HexToHash(hash))
	info, err := c.AppInfo(context.Background(), deployer.AppInfoQuery{App: common.HexToAddress(app), ComposeHash: &h})
	if err != nil {
		t.Fatal(err)
	}
	return info.ComposeHashAllowed != nil && *info.ComposeHashAllowed
}

var (
	composeHashAddedTopic   = crypto.Keccak256Hash([]byte("ComposeHashAdded(bytes32)"))
	composeHashRemovedTopic = crypto.Keccak256Hash([]byte("ComposeHashRemoved(bytes32)"))
)

// composeLogs returns the app's ComposeHashAdded and ComposeHashRemoved
// logs, oldest first.
func (e *env) composeLogs(t *testing.T, app string) []types.Log {
	t.Helper()
	logs, err := e.eth.FilterLogs(context.Background(), ethereum.FilterQuery{
		FromBlock: big.NewInt(0),
		Addresses: []common.Address{common.HexToAddress(app)},
		Topics:    [][]common.Hash{{composeHashAddedTopic, composeHashRemovedTopic}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return logs
}

// allowedHashes replays the app's logs: the compose hashes the chain keeps.
func (e *env) allowedHashes(t *testing.T, app string) []string {
	t.Helper()
	set := map[string]bool{}
	var order []string
	for _, l := range e.composeLogs(t, app) {
		h := hex.EncodeToString(l.Data)
		if l.Topics[0] == composeHashAddedTopic {
			if !set[h] {
				order = append(order, h)
			}
			set[h] = true
		} else {
			delete(set, h)
		}
	}
	var out []string
	for _, h := range order {
		if set[h] {
			out = append(out, h)
		}
	}
	return out
}

// composeHashAdds counts the app's ComposeHashAdded logs.
func (e *env) composeHashAdds(t *testing.T, app string) int {
	n := 0
	for _, l := range e.composeLogs(t, app) {
		if l.Topics[0] == composeHashAddedTopic {
			n++
		}
	}
	return n
}

// TestHonestCloudPredicts: against the honest local cloud the compose hash
// is predicted before anything is signed, the KMS is the one the user named,
// and the running CVM's attestation matches; no new flag is needed.
func TestHonestCloudPredicts(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	r.Trust.KMSContract = e.ln.KMSContract
	res, err := r.Deploy(context.Background(), e.config("honest-app"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.ComposeVerified != cvm.ComposePredicted || res.KMSTrust != cvm.KMSTrustFlag {
		t.Fatalf("compose_verified %q, kms_trust %q; want predicted, flag", res.ComposeVerified, res.KMSTrust)
	}
	if res.Attestation != cvm.AttestationMatches || res.Status != "running" {
		t.Fatalf("attestation %q, status %q", res.Attestation, res.Status)
	}
	if res.ApproveTxHash != "" {
		t.Fatalf("a predicted hash needs no second transaction, got %s", res.ApproveTxHash)
	}
	if !e.hashAllowed(t, res.AppID, res.ComposeHash) {
		t.Fatal("the predicted hash is not allowed on-chain")
	}
}

// TestUnpinnedLocalKMSWarns: without --kms-contract a local chain's KMS is
// used with a warning that names it.
func TestUnpinnedLocalKMSWarns(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	var lines []string
	r.Progress = func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
	res, err := r.Deploy(context.Background(), e.config("unpinned-app"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.KMSTrust != cvm.KMSTrustUnpinned {
		t.Fatalf("kms_trust %q, want unpinned", res.KMSTrust)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "warning: KMS contract "+e.ln.KMSContract.Hex()) {
		t.Fatalf("no warning naming the KMS in:\n%s", strings.Join(lines, "\n"))
	}
}

// TestLyingCloudDeploy runs deploy against each cloud that lies about one
// thing: the chain never keeps a hash that breaks the rule, the error says
// what was wrong, and it is the error kind the exit code comes from.
func TestLyingCloudDeploy(t *testing.T) {
	cases := []struct {
		mode    string
		want    error
		message string
		// appauth: whether an AppAuth gets deployed before the lie is found
		appauth bool
	}{
		{cloud.AdversaryCompose, cvm.ErrComposeRule, "docker_compose_file differs from your compose file", true},
		{cloud.AdversaryPreLaunch, cvm.ErrComposeRule, "pre_launch_script", true},
		{cloud.AdversaryFlipPublicLogs, cvm.ErrComposeRule, "public_logs", true},
		{cloud.AdversaryForgedKey, cvm.ErrKeyVerification, "not signed by the KMS root key", true},
		{cloud.AdversaryRogueKMS, cvm.ErrKMSUntrusted, "--kms-contract says " + "", false},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnvWith(t, testnet.LocalnetConfig{Adversary: tc.mode})
			r := e.runner(t)
			r.Trust.KMSContract = e.ln.KMSContract // the honest KMS is the one the user trusts
			before := e.appDeployments(t)
			res, err := r.Deploy(context.Background(), e.config("lied-to-app"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("deploy: %v; want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %q does not say %q", err, tc.message)
			}
			if got := e.appDeployments(t) - before; got != map[bool]int{true: 1, false: 0}[tc.appauth] {
				t.Fatalf("%d AppAuths deployed through the honest KMS", got)
			}
			if tc.appauth {
				// The chain keeps no hash of a document that breaks the rule;
				// a forged key lies about the key, not the (predicted) document.
				want := 0
				if tc.mode == cloud.AdversaryForgedKey {
					want = 1
				}
				if hs := e.allowedHashes(t, res.AppID); len(hs) != want {
					t.Fatalf("the chain allows %v after the lie", hs)
				}
			}
			if tc.mode == cloud.AdversaryRogueKMS {
				if !strings.Contains(err.Error(), e.ln.RogueKMSContract.Hex()) || !strings.Contains(err.Error(), e.ln.KMSContract.Hex()) {
					t.Fatalf("the refusal does not show both addresses: %v", err)
				}
			}
		})
	}
}

// TestLyingCloudAfterCommitRevokes: with --compose-check=after-commit the
// cloud's hash is allowed with the AppAuth, and revoked at once when the
// committed document breaks the rule.
func TestLyingCloudAfterCommitRevokes(t *testing.T) {
	e := newEnvWith(t, testnet.LocalnetConfig{Adversary: cloud.AdversaryCompose})
	r := e.runner(t)
	cfg := e.config("revoked-app")
	cfg.ComposeCheck = cvm.ComposeCheckAfterCommit
	res, err := r.Deploy(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrComposeRule) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("deploy: %v; want a revoked compose-rule violation", err)
	}
	if res.RevokeTxHash == "" {
		t.Fatal("no revocation transaction reported")
	}
	if e.hashAllowed(t, res.AppID, res.ComposeHash) {
		t.Fatal("the hash is still allowed after the revocation")
	}
}

// TestPredictModeRefusesBeforeSending: --compose-check=predict refuses an
// unpredicted hash with nothing sent.
func TestPredictModeRefusesBeforeSending(t *testing.T) {
	e := newEnvWith(t, testnet.LocalnetConfig{Adversary: cloud.AdversaryPreLaunch})
	r := e.runner(t)
	cfg := e.config("strict-app")
	cfg.ComposeCheck = cvm.ComposeCheckPredict
	before := e.appDeployments(t)
	_, err := r.Deploy(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrComposeRule) || !strings.Contains(err.Error(), "nothing was sent") {
		t.Fatalf("deploy: %v", err)
	}
	if e.appDeployments(t) != before {
		t.Fatal("an AppAuth was deployed")
	}
}

// TestOffModeApprovesUnchecked: the escape hatch does what it says (and
// says it): the lie is approved, compose_verified is unchecked.
func TestOffModeApprovesUnchecked(t *testing.T) {
	e := newEnvWith(t, testnet.LocalnetConfig{Adversary: cloud.AdversaryFlipPublicLogs})
	r := e.runner(t)
	cfg := e.config("unchecked-app")
	cfg.ComposeCheck = cvm.ComposeCheckOff
	res, err := r.Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.ComposeVerified != cvm.ComposeUnchecked || !e.hashAllowed(t, res.AppID, res.ComposeHash) {
		t.Fatalf("compose_verified %q", res.ComposeVerified)
	}
}

// officialScript is a pre-launch script the tests' cloud injects, pinned
// as official through an extra pins file, the mechanism of --compose-pins.
const officialScript = "#!/bin/bash\necho \"Running the local cloud's official pre-launch script\"\nset -e\n"

func officialPins(t *testing.T, script string) *kms.Pins {
	t.Helper()
	sum := sha256.Sum256([]byte(script))
	extra, err := kms.ParsePins([]byte(`{"about": "test pins", "app_compose": {"official_pre_launch_scripts": [
		{"version": "0.0.99-test", "date": "2026-12-01", "form": "file", "sha256": "` + hex.EncodeToString(sum[:]) + `", "source": "the test's local cloud"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return kms.DefaultPins().Merge(extra)
}

// TestApproveAfterRead: a cloud that injects its default pre-launch script
// makes the document unpredictable; the AppAuth is deployed with no hash,
// the committed document read and checked, and only then the hash allowed
// and the CVM restarted. A resume after each new step sends nothing twice.
func TestApproveAfterRead(t *testing.T) {
	script := officialScript
	// The cloud asks the KMS for the keys 1 ms after the commit, long before
	// the document is read and the hash allowed: the first boot is refused,
	// as on a real cloud, and the CVM must be restarted.
	e := newEnvWith(t, testnet.LocalnetConfig{InjectPreLaunchScript: &script, Cloud: cloud.Config{BootStep: time.Millisecond}})
	r := e.runner(t)
	r.Trust.Pins = officialPins(t, script)
	for _, stop := range []string{cvm.StepCommit, cvm.StepComposeRead, cvm.StepApproveTx, cvm.StepApprove, cvm.StepRestart} {
		t.Run("stop after "+stop, func(t *testing.T) {
			name := "after-read-" + stop
			crash := e.runner(t)
			crash.Trust = r.Trust
			crash.AfterStep = func(step string) error {
				if step == stop {
					return errStop
				}
				return nil
			}
			if _, err := crash.Deploy(context.Background(), e.config(name)); !errors.Is(err, errStop) {
				t.Fatalf("first run: %v", err)
			}
			res, err := r.Deploy(context.Background(), e.config(name))
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if res.ComposeVerified != cvm.ComposeApprovedAfterRead || res.Status != "running" {
				t.Fatalf("compose_verified %q status %q", res.ComposeVerified, res.Status)
			}
			if !strings.HasPrefix(res.PreLaunch, "Phala pre-launch v0.0.99-test") && !strings.Contains(res.PreLaunch, "0.0.99-test") {
				t.Fatalf("pre_launch_script %q does not name the pinned script", res.PreLaunch)
			}
			if hs := e.allowedHashes(t, res.AppID); len(hs) != 1 || hs[0] != res.ComposeHash {
				t.Fatalf("allowed hashes %v, want exactly %s", hs, res.ComposeHash)
			}
			if n := e.composeHashAdds(t, res.AppID); n != 1 {
				t.Fatalf("addComposeHash happened %d times", n)
			}
		})
	}
}

// TestUnofficialInjectedScriptRefused: the same cloud without the pin is a
// cloud that injects a script nobody reviewed.
func TestUnofficialInjectedScriptRefused(t *testing.T) {
	script := officialScript
	e := newEnvWith(t, testnet.LocalnetConfig{InjectPreLaunchScript: &script})
	r := e.runner(t)
	res, err := r.Deploy(context.Background(), e.config("unpinned-script"))
	if !errors.Is(err, cvm.ErrComposeRule) || !strings.Contains(err.Error(), "not an official Phala script") {
		t.Fatalf("deploy: %v", err)
	}
	if hs := e.allowedHashes(t, res.AppID); len(hs) != 0 {
		t.Fatalf("allowed %v", hs)
	}
}

// TestPinnedMainnetKMS: on a chain with id 8453 the cloud's KMS must be
// Phala's pinned one; a local KMS there is refused before anything is sent.
func TestPinnedMainnetKMS(t *testing.T) {
	e := newEnvWith(t, testnet.LocalnetConfig{ChainID: 8453})
	r := e.runner(t)
	cfg := e.config("base-app")
	cfg.KMS = "base"
	before := e.appDeployments(t)
	_, err := r.Deploy(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrKMSUntrusted) || !strings.Contains(err.Error(), "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C") {
		t.Fatalf("deploy: %v", err)
	}
	if e.appDeployments(t) != before {
		t.Fatal("an AppAuth was deployed")
	}
	// Naming the KMS explicitly is the user's decision, and it is honoured.
	r.Trust.KMSContract = e.ln.KMSContract
	res, err := r.Deploy(context.Background(), cfg)
	if err != nil || res.KMSTrust != cvm.KMSTrustFlag {
		t.Fatalf("deploy with --kms-contract: %v (%+v)", err, res)
	}
}

// TestPinsAgreeWithDeployer: the default KMS `app deploy --chain base` uses
// is the pinned one.
func TestPinsAgreeWithDeployer(t *testing.T) {
	pin, _, ok := kms.DefaultPins().KMSContract(8453)
	if !ok || common.HexToAddress(pin) != deployer.BaseKMS {
		t.Fatalf("pinned %s, deployer.BaseKMS %s", pin, deployer.BaseKMS.Hex())
	}
}

// errStop is what a test's AfterStep returns to stop a run at a boundary.
var errStop = errors.New("stopped by the test")

// TestApproveAfterReadThroughSafe: with a Safe as the AppAuth's owner and
// --safe-propose, approve-after-read's addComposeHash (sent only after the
// committed document was read and checked) goes to the Safe's queue; once
// two owners approved and the Safe executed it, the same deploy finishes
// with the execution as the approval and restarts the CVM.
func TestApproveAfterReadThroughSafe(t *testing.T) {
	script := officialScript
	e := newEnvWith(t, testnet.LocalnetConfig{InjectPreLaunchScript: &script, Cloud: cloud.Config{BootStep: time.Millisecond}, SafeOwners: 3, SafeThreshold: 2})
	ctx := context.Background()
	owner := func(i int) *cvm.Runner {
		o := e.runner(t)
		o.Signer = deployer.NewKeySigner(e.ln.SafeOwners[i].PrivateKey)
		o.Safe = cvm.SafeRouting{ServiceURL: e.ln.SafeServiceURL}
		return o
	}
	// The deployer's key proposes as a delegate of the Safe.
	if _, err := owner(0).SafeDelegate(ctx, cvm.SafeDelegateConfig{Safe: e.ln.Safe, Delegate: e.ln.DevAccount.Address}, false); err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	r.Trust.Pins = officialPins(t, script)
	r.Safe = cvm.SafeRouting{Propose: true, ServiceURL: e.ln.SafeServiceURL}
	cfg := e.config("safe-after-read")
	cfg.Owner = e.ln.Safe
	res, err := r.Deploy(ctx, cfg)
	if !errors.Is(err, cvm.ErrApprovalPending) || res.SafeProposal == nil || res.Status != "awaiting-approval" {
		t.Fatalf("first run: %v (%+v)", err, res)
	}
	if hs := e.allowedHashes(t, res.AppID); len(hs) != 0 {
		t.Fatalf("allowed before the Safe executed: %v", hs)
	}
	// One owner confirms; another executes, its own approval (v = 1, as
	// msg.sender) making the second of two.
	h := common.HexToHash(res.SafeProposal.SafeTxHash)
	if _, err := owner(0).SafeSign(ctx, cvm.SafeTxConfig{Safe: e.ln.Safe, SafeTxHash: h}); err != nil {
		t.Fatal(err)
	}
	ex, err := owner(2).SafeExec(ctx, cvm.SafeTxConfig{Safe: e.ln.Safe, SafeTxHash: h})
	if err != nil || ex.Confirmations != 2 {
		t.Fatalf("safe exec by an owner: %v (%+v)", err, ex)
	}
	res, err = r.Deploy(ctx, cfg)
	if err != nil || res.Status != "running" || res.ComposeVerified != cvm.ComposeApprovedAfterRead || res.ApproveTxHash != ex.TxHash {
		t.Fatalf("re-run: %v (status %q, verified %q, approval %q, exec %s)", err, res.Status, res.ComposeVerified, res.ApproveTxHash, ex.TxHash)
	}
	if hs := e.allowedHashes(t, res.AppID); len(hs) != 1 || hs[0] != res.ComposeHash {
		t.Fatalf("allowed hashes %v, want exactly %s", hs, res.ComposeHash)
	}
}

package cvm_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// deployForUpdate deploys an app honestly and writes a new compose file.
func (e *env) deployForUpdate(t *testing.T, r *cvm.Runner, name string) (*cvm.Result, string) {
	t.Helper()
	res, err := r.Deploy(context.Background(), e.config(name))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	v2 := filepath.Join(e.dir, name+"-v2.yml")
	writeFile(t, v2, testCompose+"  worker:\n    image: busybox:1.36\n")
	return res, v2
}

// TestUpdateReadsBeforeSigning: the new hash is checked against the current
// (allowed) document with the user's changes before anything is approved.
func TestUpdateReadsBeforeSigning(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	res, v2 := e.deployForUpdate(t, r, "read-update")
	up, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}, Wait: true})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if up.ComposeVerified != cvm.ComposeRead || up.Status != "running" {
		t.Fatalf("compose_verified %q status %q", up.ComposeVerified, up.Status)
	}
	if !e.hashAllowed(t, res.AppID, up.ComposeHash) {
		t.Fatal("the checked hash is not allowed")
	}
}

// TestLyingCloudUpdate: a cloud honest at deploy time lies on the update;
// nothing is approved and no transaction is sent.
func TestLyingCloudUpdate(t *testing.T) {
	cases := []struct {
		mode string
		want error
		env  []string // env flags; nil: the env file
	}{
		{cloud.AdversaryCompose, cvm.ErrComposeRule, nil},
		{cloud.AdversaryPreLaunch, cvm.ErrComposeRule, nil},
		{cloud.AdversaryFlipPublicLogs, cvm.ErrComposeRule, nil},
		{cloud.AdversaryForgedKey, cvm.ErrKeyVerification, nil},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnv(t)
			r := e.runner(t)
			res, v2 := e.deployForUpdate(t, r, "lied-update")
			if err := e.ln.Cloud.SetAdversary(tc.mode); err != nil {
				t.Fatal(err)
			}
			nonce, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
			_, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("update: %v; want %v", err, tc.want)
			}
			if after, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil); after != nonce {
				t.Fatal("a transaction was sent for a lie")
			}
			if hs := e.allowedHashes(t, res.AppID); len(hs) != 1 || hs[0] != res.ComposeHash {
				t.Fatalf("allowed hashes %v, want only the deployed %s", hs, res.ComposeHash)
			}
		})
	}
}

// TestUpdateResumesAtEveryStep stops an update right after each journaled
// step and re-runs it: it finishes, the hash is added once, and nothing is
// approved or committed twice.
func TestUpdateResumesAtEveryStep(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	for _, stop := range []string{cvm.UpdateStepBase, cvm.UpdateStepPrepare, cvm.UpdateStepVerify, cvm.UpdateStepTx, cvm.UpdateStepApprove, cvm.UpdateStepCommit} {
		t.Run(stop, func(t *testing.T) {
			res, v2 := e.deployForUpdate(t, r, "resume-"+strings.ReplaceAll(stop, "update-", "u-"))
			cfg := cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFiles: []string{e.envFile}, Wait: true}
			crash := e.runner(t)
			crash.AfterStep = func(step string) error {
				if step == stop {
					return errStop
				}
				return nil
			}
			if _, err := crash.Update(context.Background(), cfg); !errors.Is(err, errStop) {
				t.Fatalf("first run: %v", err)
			}
			up, err := r.Update(context.Background(), cfg)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if up.Status != "running" || up.ComposeVerified != cvm.ComposeRead {
				t.Fatalf("status %q compose_verified %q", up.Status, up.ComposeVerified)
			}
			if n := e.composeHashAdds(t, res.AppID); n != 2 { // the deploy's and the update's
				t.Fatalf("%d ComposeHashAdded logs, want 2", n)
			}
			if stop != cvm.UpdateStepBase && len(up.Resumed) == 0 {
				t.Fatal("the re-run says it resumed nothing")
			}
		})
	}
}

// TestUpdateReviewData: a prepared update carries what its review page
// shows: both compose files, the env names before and after, the chain's
// state before the calls, and the kind of owner that must make them.
func TestUpdateReviewData(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	signer := e.ln.DevAccount.Address
	cases := []struct {
		name  string
		owner common.Address
		want  string
	}{
		{"signer", signer, ""}, // the signer makes the calls: its kind is not read
		{"key", common.HexToAddress("0x000000000000000000000000000000000000dEaD"), cvm.OwnerEOA},
		{"contract", e.ln.KMSContract, cvm.OwnerContract}, // any account with code
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config("review-" + tc.name)
			cfg.Owner = tc.owner
			res, err := r.Deploy(context.Background(), cfg)
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			v2 := filepath.Join(e.dir, "review-"+tc.name+".yml")
			writeFile(t, v2, testCompose+"  worker:\n    image: busybox:1.36\n")
			up, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: v2, EnvFlags: []string{"NEW_KEY=1"}, AllowMissingEnv: true, PrepareOnly: true})
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			rv := up.Review
			if rv == nil || rv.OldCompose == nil || *rv.OldCompose != testCompose || rv.NewCompose == nil || *rv.NewCompose != testCompose+"  worker:\n    image: busybox:1.36\n" {
				t.Fatalf("review documents %+v", rv)
			}
			if !rv.OldKnown || !rv.EnvChanged || strings.Join(rv.NewEnvKeys, ",") != "NEW_KEY" || len(rv.OldEnvKeys) == 0 || rv.BaseComposeHash != res.ComposeHash {
				t.Fatalf("review env: old %v new %v, base %s", rv.OldEnvKeys, rv.NewEnvKeys, rv.BaseComposeHash)
			}
			if rv.Chain == nil || rv.Chain.Owner != tc.owner || rv.Chain.ComposeHashAllowed == nil || *rv.Chain.ComposeHashAllowed {
				t.Fatalf("review chain state %+v", rv.Chain)
			}
			if rv.OwnerKind != tc.want {
				t.Fatalf("owner kind %q, want %q", rv.OwnerKind, tc.want)
			}
		})
	}
}

package cvm_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestLyingCloudBatch: every app of a batch meets the liar; each is
// refused, and the chain keeps no hash for any of them.
func TestLyingCloudBatch(t *testing.T) {
	e := newEnvWith(t, testnet.LocalnetConfig{Adversary: cloud.AdversaryCompose})
	apps, err := cvm.LoadBatchFile(writeBatch(t, e.dir, 3))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.runner(t).DeployBatch(context.Background(), batchBase(), apps)
	if !errors.Is(err, cvm.ErrBatchPartial) || res.Failed != 3 {
		t.Fatalf("batch: %v (%+v)", err, res)
	}
	for _, a := range res.Apps {
		if !strings.Contains(a.Error, "breaks the rule") || !strings.Contains(a.Error, "docker_compose_file") {
			t.Fatalf("app %s: %q", a.Name, a.Error)
		}
		if hs := e.allowedHashes(t, a.AppID); len(hs) != 0 {
			t.Fatalf("app %s: the chain allows %v", a.Name, hs)
		}
	}
}

// TestLyingCloudCommitCommand: the split phases (provision here, the
// AppAuth from elsewhere, commit) check the committed document too, from
// the inputs the provision file recorded.
func TestLyingCloudCommitCommand(t *testing.T) {
	e := newEnvWith(t, testnet.LocalnetConfig{Adversary: cloud.AdversaryPreLaunch})
	r := e.runner(t)
	pf, err := r.Provision(context.Background(), e.config("split-app"))
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if pf.Provision.ComposePlan != "approve-after-read" || pf.Expectation == nil {
		t.Fatalf("plan %q, expectation recorded %v", pf.Provision.ComposePlan, pf.Expectation != nil)
	}
	// Round-trip through the file, as two jobs would.
	path := filepath.Join(e.dir, "p.json")
	if err := cvm.SaveProvisionFile(path, pf); err != nil {
		t.Fatal(err)
	}
	if pf, err = cvm.LoadProvisionFile(path); err != nil {
		t.Fatal(err)
	}
	// The AppAuth, deployed by "someone else" without a compose hash.
	dep := e.deployAppAuth(t, pf)
	res, err := r.Commit(context.Background(), cvm.CommitConfig{Provision: pf, AppID: dep, EnvFiles: []string{e.envFile}})
	if !errors.Is(err, cvm.ErrComposeRule) || !strings.Contains(err.Error(), "pre_launch_script") {
		t.Fatalf("commit: %v", err)
	}
	if hs := e.allowedHashes(t, res.AppID); len(hs) != 0 {
		t.Fatalf("the chain allows %v", hs)
	}
}

// TestCommittedCloudDeployIsNotCommittedAgain: a cloud-KMS deployment that
// committed refuses a re-run with other inputs instead of committing a
// second CVM.
func TestCommittedCloudDeployIsNotCommittedAgain(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	cfg := e.config("cloud-once")
	cfg.KMS = "phala"
	if _, err := r.Deploy(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.dir, "other.yml")
	writeFile(t, other, testCompose+"  extra:\n    image: busybox\n")
	cfg.ComposeFile = other
	_, err := r.Deploy(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrInvalidConfig) || !strings.Contains(err.Error(), "already committed CVM") {
		t.Fatalf("re-run with other inputs: %v", err)
	}
	if n := e.ln.Cloud.Counts().CVMs; n != 1 {
		t.Fatalf("%d CVMs", n)
	}
}

// deployAppAuth deploys the provision's AppAuth with its device and no
// compose hash, as a multisig or a script would in a split workflow.
func (e *env) deployAppAuth(t *testing.T, pf *cvm.ProvisionFile) string {
	t.Helper()
	c, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := deployer.DeployAppConfig{KMS: common.HexToAddress(pf.Provision.KMSContract), Owner: e.ln.DevAccount.Address, DeviceID: [32]byte(common.HexToHash(pf.Provision.DeviceID))}
	dep, err := c.DeployApp(context.Background(), deployer.NewKeySigner(e.ln.DevAccount.PrivateKey), cfg.Normalized(), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dep.AppID.Hex()
}

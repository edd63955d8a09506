package cvm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

const testCompose = `services:
  web:
    image: nginx:1.27
    environment:
      - GREETING=${GREETING}
      - DB_PASSWORD=${DB_PASSWORD}
    ports:
      - "80:80"
`

// Values that must never leave the machine in clear text.
const (
	secretGreeting = "hello-from-the-cvm-7c1f"
	secretPassword = "s3cr=t#1-very-private-9d2e"
)

type env struct {
	t        *testing.T
	ln       *testnet.Localnet
	dir      string
	compose  string
	envFile  string
	eth      *ethclient.Client
	cloudLog *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T) *env { return newEnvWith(t, testnet.LocalnetConfig{}) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) api(t *testing.T, key string) *phala.Client {
	t.Helper()
	c, err := phala.New(phala.Config{BaseURL: e.ln.APIPrefix, APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) runner(t *testing.T) *cvm.Runner {
	return &cvm.Runner{
		API:      e.api(t, e.ln.APIKey),
		RPCURL:   e.ln.RPCURL,
		Signer:   deployer.NewKeySigner(e.ln.DevAccount.PrivateKey),
		Journals: cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")},
		Progress: func(format string, args ...any) { t.Logf(format, args...) },
	}
}

func (e *env) config(name string) cvm.Config {
	return cvm.Config{
		Name:        name,
		ComposeFile: e.compose,
		EnvFiles:    []string{e.envFile},
		KMS:         "ethereum",
		Wait:        true,
		WaitTimeout: 30 * time.Second,
	}
}

// appDeployments is the number of AppAuths ever deployed through the KMS.
func (e *env) appDeployments(t *testing.T) int {
	t.Helper()
	n, err := e.ln.AppDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDeployOnChainToRunning(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	res, err := r.Deploy(context.Background(), e.config("onchain-app"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.Status != "running" {
		t.Fatalf("status = %q, want running", res.Status)
	}
	if !common.IsHexAddress(res.AppID) || res.AppID != res.ContractAddress {
		t.Fatalf("app id %q / contract %q", res.AppID, res.ContractAddress)
	}
	if res.DeployerAddress != e.ln.DevAccount.Address.Hex() {
		t.Fatalf("deployer = %s, want the signer %s", res.DeployerAddress, e.ln.DevAccount.Address.Hex())
	}
	if !res.KeyVerified {
		t.Fatal("the env key was not verified against the chain")
	}
	if res.ChainID != e.ln.ChainID || res.KMSID != e.ln.KMSID || res.CVMID == "" || res.TxHash == "" {
		t.Fatalf("result %+v", res)
	}
	// The app's contract allows exactly the provisioned compose hash.
	app := common.HexToAddress(res.AppID)
	code, err := e.eth.CodeAt(context.Background(), app, nil)
	if err != nil || len(code) == 0 {
		t.Fatalf("no code at app id %s: %v", app.Hex(), err)
	}
	chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	hash := common.HexToHash(res.ComposeHash)
	info, err := chain.AppInfo(context.Background(), deployer.AppInfoQuery{App: app, KMS: e.ln.KMSContract, ComposeHash: (*[32]byte)(&hash)})
	if err != nil {
		t.Fatal(err)
	}
	if info.ComposeHashAllowed == nil || !*info.ComposeHashAllowed || info.Registered == nil || !*info.Registered {
		t.Fatalf("on-chain state: %+v", info)
	}
	if info.Owner != e.ln.DevAccount.Address {
		t.Fatalf("owner = %s, want the signer", info.Owner.Hex())
	}
	if n := e.appDeployments(t); n != 1 {
		t.Fatalf("%d AppAuth deployments, want 1", n)
	}
	if c := e.ln.Cloud.Counts(); c.CVMs != 1 {
		t.Fatalf("%d CVMs, want 1", c.CVMs)
	}
	// The journal holds no secret and is private.
	data, err := os.ReadFile(res.Journal)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{secretGreeting, secretPassword, e.ln.APIKey, fmt.Sprintf("%x", crypto.FromECDSA(e.ln.DevAccount.PrivateKey))} {
		if strings.Contains(string(data), secret) {
			t.Fatalf("journal contains a secret")
		}
	}
	if st, _ := os.Stat(res.Journal); st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v", st.Mode().Perm())
	}
	if !strings.Contains(e.cloudLog.String(), "GREETING") {
		t.Fatalf("the cloud did not decrypt the env keys; log:\n%s", e.cloudLog.String())
	}
}

func TestDeployCloudKMS(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	r.Signer, r.RPCURL = nil, "" // the cloud KMS needs neither
	cfg := e.config("cloud-app")
	cfg.KMS = "phala"
	res, err := r.Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if res.Status != "running" || res.AppID == "" || res.TxHash != "" || res.ContractAddress != "" {
		t.Fatalf("result %+v", res)
	}
	if n := e.appDeployments(t); n != 0 {
		t.Fatalf("the cloud KMS deployed %d AppAuths", n)
	}
}

func TestDryRunSendsNothing(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	before, err := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.DryRun(context.Background(), e.config("dry-app"))
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	after, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
	if after != before {
		t.Fatalf("nonce moved %d -> %d: a transaction was sent", before, after)
	}
	if !common.IsHexAddress(out.PredictedAppID) || out.Simulation == nil || out.Simulation.GasLimit == 0 {
		t.Fatalf("simulation: %+v", out)
	}
	if out.CommitRequest["encrypted_env"] != "(elided)" {
		t.Fatalf("commit request shows the encrypted env: %v", out.CommitRequest)
	}
	if c := e.ln.Cloud.Counts(); c.CVMs != 0 {
		t.Fatalf("dry run committed %d CVMs", c.CVMs)
	}
	// The prediction holds: the next factory call deploys that address.
	res, err := r.Deploy(context.Background(), e.config("dry-app"))
	if err != nil {
		t.Fatal(err)
	}
	if res.AppID != out.PredictedAppID {
		t.Fatalf("deployed %s, dry run predicted %s", res.AppID, out.PredictedAppID)
	}
}

var errInjected = errors.New("injected failure")

// TestResumeAfterFailureAtEveryStep stops the deploy right after each
// journaled step, then re-runs the same command: each run must end with one
// AppAuth and one running CVM.
func TestResumeAfterFailureAtEveryStep(t *testing.T) {
	e := newEnv(t)
	for i, step := range []string{cvm.StepProvision, cvm.StepDeployTx, cvm.StepApp, cvm.StepPubKey, cvm.StepCommit} {
		t.Run(step, func(t *testing.T) {
			name := fmt.Sprintf("resume-app-%d", i)
			r := e.runner(t)
			r.AfterStep = func(s string) error {
				if s == step {
					return errInjected
				}
				return nil
			}
			before := e.appDeployments(t)
			cvmsBefore := e.ln.Cloud.Counts().CVMs
			if _, err := r.Deploy(context.Background(), e.config(name)); !errors.Is(err, errInjected) {
				t.Fatalf("first run: %v, want the injected failure", err)
			}
			r.AfterStep = nil
			res, err := r.Deploy(context.Background(), e.config(name))
			if err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			if res.Status != "running" {
				t.Fatalf("status %q", res.Status)
			}
			if len(res.Resumed) == 0 {
				t.Fatal("the re-run did not say what it skipped")
			}
			if got := e.appDeployments(t) - before; got != 1 {
				t.Fatalf("%d AppAuths deployed, want exactly 1", got)
			}
			if got := e.ln.Cloud.Counts().CVMs - cvmsBefore; got != 1 {
				t.Fatalf("%d CVMs, want exactly 1", got)
			}
			// A third run changes nothing.
			again, err := r.Deploy(context.Background(), e.config(name))
			if err != nil || again.AppID != res.AppID || e.appDeployments(t)-before != 1 {
				t.Fatalf("third run: %v, app %s vs %s", err, again.AppID, res.AppID)
			}
		})
	}
}

func TestFreshStartsOver(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	first, err := r.Deploy(context.Background(), e.config("fresh-app"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config("fresh-app")
	cfg.Fresh = true
	// The cloud refuses a second CVM with the same name? It accepts: another
	// app id. What matters is that --fresh deploys a new AppAuth.
	second, err := r.Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.AppID == second.AppID || e.appDeployments(t) != 2 {
		t.Fatalf("--fresh reused app %s", first.AppID)
	}
}

func TestChangedInputsAfterDeployRefuseToResume(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	r.AfterStep = func(s string) error {
		if s == cvm.StepApp {
			return errInjected
		}
		return nil
	}
	if _, err := r.Deploy(context.Background(), e.config("changed-app")); !errors.Is(err, errInjected) {
		t.Fatal(err)
	}
	r.AfterStep = nil
	writeFile(t, e.compose, testCompose+"  worker:\n    image: busybox\n")
	_, err := r.Deploy(context.Background(), e.config("changed-app"))
	if !errors.Is(err, cvm.ErrInvalidConfig) || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("err = %v, want a refusal that names --fresh", err)
	}
	if n := e.appDeployments(t); n != 1 {
		t.Fatalf("%d deployments", n)
	}
}

func TestDeployBadInput(t *testing.T) {
	e := newEnv(t)
	big := filepath.Join(e.dir, "big.yml")
	writeFile(t, big, "services:\n  x:\n    image: a\n    command: "+strings.Repeat("x", 201*1024)+"\n")
	badEnv := filepath.Join(e.dir, "bad.env")
	writeFile(t, badEnv, "GREETING=ok\n1BAD=value\n")
	poor, _ := crypto.GenerateKey()

	tests := []struct {
		name   string
		mutate func(*cvm.Config, *cvm.Runner)
		is     error
		want   string
	}{
		{"missing compose", func(c *cvm.Config, _ *cvm.Runner) { c.ComposeFile = filepath.Join(e.dir, "nope.yml") }, cvm.ErrInvalidConfig, "cannot read the compose file"},
		{"compose over 200 KiB", func(c *cvm.Config, _ *cvm.Runner) { c.ComposeFile = big }, cvm.ErrInvalidConfig, "200 KiB"},
		{"env error", func(c *cvm.Config, _ *cvm.Runner) { c.EnvFiles = []string{badEnv} }, cvm.ErrInvalidConfig, "bad.env:2"},
		{"missing compose variable", func(c *cvm.Config, _ *cvm.Runner) { c.EnvFiles = nil; c.EnvFlags = []string{"GREETING=x"} }, cvm.ErrInvalidConfig, "DB_PASSWORD"},
		{"unknown kms", func(c *cvm.Config, _ *cvm.Runner) { c.KMS = "no-such-kms" }, cvm.ErrInvalidConfig, "no such KMS"},
		{"chain mismatch", func(c *cvm.Config, _ *cvm.Runner) { c.ChainID = 8453 }, cvm.ErrChainMismatch, "chain 8453"},
		{"no funds", func(_ *cvm.Config, r *cvm.Runner) { r.Signer = deployer.NewKeySigner(poor) }, deployer.ErrPreflight, "insufficient funds"},
		{"api key rejected", func(_ *cvm.Config, r *cvm.Runner) { r.API = e.api(t, "phak_wrong") }, nil, "401"},
		{"no signer", func(_ *cvm.Config, r *cvm.Runner) { r.Signer = nil }, cvm.ErrInvalidConfig, "PRIVATE_KEY"},
		{"bad name", func(c *cvm.Config, _ *cvm.Runner) { c.Name = "x" }, cvm.ErrInvalidConfig, "--name"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.runner(t)
			cfg := e.config(fmt.Sprintf("bad-input-%d", i))
			tt.mutate(&cfg, r)
			before := e.appDeployments(t)
			_, err := r.Deploy(context.Background(), cfg)
			if err == nil {
				t.Fatal("deploy succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if e.appDeployments(t) != before {
				t.Fatal("an AppAuth was deployed despite the bad input")
			}
			for _, s := range []string{secretGreeting, secretPassword} {
				if strings.Contains(err.Error(), s) {
					t.Fatal("the error shows an env value")
				}
			}
		})
	}
}

func TestDeployKeyNotSignedByOnChainRoot(t *testing.T) {
	e := newEnv(t)
	// Point the on-chain root key elsewhere: the cloud keeps signing with
	// its own key, which the chain no longer vouches for.
	other, _ := crypto.GenerateKey()
	setRootKey(t, e, crypto.CompressPubkey(&other.PublicKey))
	r := e.runner(t)
	_, err := r.Deploy(context.Background(), e.config("mitm-app"))
	if !errors.Is(err, cvm.ErrKeyVerification) {
		t.Fatalf("err = %v, want a key verification failure", err)
	}
	if c := e.ln.Cloud.Counts(); c.CVMs != 0 {
		t.Fatal("committed despite an unverified key")
	}
}

// setRootKey changes kmsInfo on-chain as the KMS owner, impersonated on
// anvil (the owner's key stays inside the testnet).
func setRootKey(t *testing.T, e *env, root []byte) {
	t.Helper()
	data := bindings.NewDstackKms().PackSetKmsInfo(bindings.DstackKmsKmsInfo{K256Pubkey: root, CaPubkey: []byte{}, Quote: []byte{}, Eventlog: []byte{}})
	rc := e.eth.Client()
	ctx := context.Background()
	if err := rc.CallContext(ctx, nil, "anvil_impersonateAccount", e.ln.KMSOwner); err != nil {
		t.Fatal(err)
	}
	var h common.Hash
	tx := map[string]any{"from": e.ln.KMSOwner, "to": e.ln.KMSContract, "data": hexutil.Bytes(data)}
	if err := rc.CallContext(ctx, &h, "eth_sendTransaction", tx); err != nil {
		t.Fatal(err)
	}
	rcpt, err := bind.WaitMined(ctx, e.eth, h)
	if err != nil || rcpt.Status != 1 {
		t.Fatalf("setKmsInfo: %v %+v", err, rcpt)
	}
}

// TestBootFailureAfterHashRemoved: under 2025-10-28 (CLI 1.1.18's era) a
// commit names no transaction, so a hash removed before the commit is met
// at boot; token-era commits get 468 instead (TestCommitRefused467And468).
func TestBootFailureAfterHashRemoved(t *testing.T) {
	e := newEnv(t)
	r, _ := e.versioned(t, phala.Version20251028)
	cfg := e.config("boot-fail-app")
	r.AfterStep = func(s string) error {
		if s != cvm.StepPubKey {
			return nil
		}
		// Between the deploy and the commit, the owner disallows the hash:
		// the CVM is created but cannot boot.
		j, err := (cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")}).Load((cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")}).Path(e.ln.APIPrefix, cfg.Name))
		if err != nil {
			return err
		}
		chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
		if err != nil {
			return err
		}
		defer chain.Close()
		_, err = chain.RemoveComposeHash(context.Background(), r.Signer, common.HexToAddress(j.App.AppID), common.HexToHash(j.Provision.ComposeHash), deployer.TxOptions{})
		return err
	}
	_, err := r.Deploy(context.Background(), cfg)
	if !errors.Is(err, cvm.ErrBootFailed) {
		t.Fatalf("err = %v, want a boot failure", err)
	}
	if !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("the boot error does not say why: %v", err)
	}
}

func TestUpdateWithNewComposeHash(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	res, err := r.Deploy(context.Background(), e.config("update-app"))
	if err != nil {
		t.Fatal(err)
	}
	newCompose := filepath.Join(e.dir, "v2.yml")
	writeFile(t, newCompose, testCompose+"  worker:\n    image: busybox:1.36\n")
	up, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: newCompose, EnvFiles: []string{e.envFile}, Wait: true})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if up.ComposeHash == "" || up.ComposeHash == res.ComposeHash {
		t.Fatalf("update compose hash %q (was %q)", up.ComposeHash, res.ComposeHash)
	}
	if len(up.OnChain) != 1 || up.OnChain[0].Function != "addComposeHash" || up.OnChain[0].TxHash == "" {
		t.Fatalf("on-chain calls %+v, want one addComposeHash sent", up.OnChain)
	}
	if up.Status != "running" {
		t.Fatalf("status %q", up.Status)
	}
	// Running it again pays nothing: the hash is already allowed.
	again, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: newCompose, EnvFiles: []string{e.envFile}})
	if err != nil {
		t.Fatalf("second update: %v", err)
	}
	for _, c := range again.OnChain {
		if c.TxHash != "" {
			t.Fatalf("the second update sent %s again", c.Function)
		}
	}
}

func TestUpdateEnvOnlyNeedsNoTransaction(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	res, err := r.Deploy(context.Background(), e.config("env-update-app"))
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
	up, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, EnvFlags: []string{"GREETING=new", "DB_PASSWORD=rotated"}})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if len(up.OnChain) != 0 || up.CorrelationID == "" {
		t.Fatalf("env-only update: %+v", up)
	}
	if after, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil); after != nonce {
		t.Fatal("an env-only update sent a transaction")
	}
}

func TestPrepareOnlyThenCommitUpdate(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	res, err := r.Deploy(context.Background(), e.config("multisig-app"))
	if err != nil {
		t.Fatal(err)
	}
	newCompose := filepath.Join(e.dir, "v2.yml")
	writeFile(t, newCompose, testCompose+"  cache:\n    image: redis:7\n")
	nonce, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
	prep, err := r.Update(context.Background(), cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: newCompose, EnvFiles: []string{e.envFile}, PrepareOnly: true})
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if prep.CommitToken == "" || prep.Status != "prepared" || len(prep.OnChain) != 1 || prep.OnChain[0].TxHash != "" {
		t.Fatalf("prepare result %+v", prep)
	}
	if after, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil); after != nonce {
		t.Fatal("--prepare-only sent a transaction")
	}
	// The "multisig" executes the prepared call: here the owner sends its
	// calldata as is.
	chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	to := common.HexToAddress(prep.OnChain[0].To)
	rcpt, err := chain.Transact(context.Background(), r.Signer, deployer.TxRequest{To: &to, Data: common.FromHex(prep.OnChain[0].Data)}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.CommitUpdate(context.Background(), res.CVMID, prep.CommitToken, prep.ComposeHash, rcpt.TxHash.Hex())
	if err != nil {
		t.Fatalf("commit-update: %v", err)
	}
	if out.CorrelationID == "" {
		t.Fatalf("commit-update answer %+v", out)
	}
}

// TestResumeWhenJournaledNonceWasTakenElsewhere: the deploy transaction was
// journaled but never sent, and the account used that nonce for something
// else meanwhile. The re-run must not wait forever nor deploy blindly.
func TestResumeWhenJournaledNonceWasTakenElsewhere(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	r.AfterStep = func(s string) error {
		if s == cvm.StepDeployTx {
			return errInjected // signed and journaled, not broadcast
		}
		return nil
	}
	if _, err := r.Deploy(context.Background(), e.config("nonce-app")); !errors.Is(err, errInjected) {
		t.Fatal(err)
	}
	// Another transaction from the same account takes the nonce.
	chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	to := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	if _, err := chain.Transact(context.Background(), r.Signer, deployer.TxRequest{To: &to, Value: big.NewInt(1), SkipCodeCheck: true}, deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	r.AfterStep = nil
	_, err = r.Deploy(context.Background(), e.config("nonce-app"))
	if err == nil || !strings.Contains(err.Error(), "used by another transaction") || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("err = %v, want an explanation naming --fresh", err)
	}
	if n := e.appDeployments(t); n != 0 {
		t.Fatalf("%d AppAuths deployed", n)
	}
}

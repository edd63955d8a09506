package cvm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// Steps of a deployment, in order; they name journal boundaries.
const (
	StepProvision = "provision"
	// deploy --timelock: the TimelockController, before the AppAuth.
	StepTimelockTx = "timelock-tx"
	StepTimelock   = "timelock"
	StepDeployTx   = "deploy-tx"
	StepApp        = "app"
	StepPubKey     = "pubkey"
	StepCommit     = "commit"
	// Approve-after-read (and after-commit) steps, after the commit.
	StepComposeRead = "compose-read"
	StepApproveTx   = "approve-tx"
	StepApprove     = "approve"
	StepRevokeTx    = "revoke-tx"
	StepRestart     = "restart"
	StepRunning     = "running"
)

// Runner carries what a deployment talks to. Build one per command.
type Runner struct {
	// API is the Phala Cloud API (or the local cloud).
	API *phala.Client
	// RPCURL is the node of the KMS's chain; needed for an on-chain KMS.
	RPCURL string
	// Signer pays for and signs the AppAuth deployment.
	Signer deployer.Signer
	// Journals keeps the per-deployment journal; a zero Dir disables it.
	Journals JournalStore
	// Progress receives one human line per event (nil: silent).
	Progress func(format string, args ...any)
	// Explorer links a tx hash for known chains ("" when unknown).
	Explorer func(chainID uint64, tx common.Hash) string
	// AfterStep, when set, runs after each step is journaled; an error stops
	// the run there (tests use it to inject failures at every boundary).
	AfterStep func(step string) error
	// Confirm, when set, is asked before the first transaction is signed;
	// an error stops the run with nothing sent (the CLI prompts on a
	// terminal before spending mainnet gas).
	Confirm func(ctx context.Context, chainID uint64, action string) error
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Trust is the pinned data and the KMS contract the user named.
	Trust Trust
	// Safe says how owner calls reach an AppAuth owned by a Safe.
	Safe SafeRouting
}

// Result is what a deployment produced; its JSON form is the --json output.
type Result struct {
	Name            string `json:"name"`
	AppID           string `json:"app_id"`
	ContractAddress string `json:"contract_address,omitempty"`
	DeployerAddress string `json:"deployer_address,omitempty"`
	Owner           string `json:"owner,omitempty"`
	// TimelockAddress is the TimelockController deployed to own the
	// AppAuth (deploy --timelock), with its delay in seconds.
	TimelockAddress string `json:"timelock_address,omitempty"`
	TimelockDelay   uint64 `json:"timelock_delay,omitempty"`
	TimelockTxHash  string `json:"timelock_tx_hash,omitempty"`
	ComposeHash     string `json:"compose_hash"`
	KMSID           string `json:"kms_id,omitempty"`
	KMSContract     string `json:"kms_contract,omitempty"`
	ChainID         uint64 `json:"chain_id,omitempty"`
	TxHash          string `json:"tx_hash,omitempty"`
	BlockNumber     uint64 `json:"block_number,omitempty"`
	GasUsed         uint64 `json:"gas_used,omitempty"`
	CVMID           string `json:"cvm_id"`
	VMUUID          string `json:"vm_uuid,omitempty"`
	Status          string `json:"status"`
	DashboardURL    string `json:"dashboard_url,omitempty"`
	KeyVerified     bool   `json:"kms_key_verified"`
	// KMSTrust says how the KMS contract was trusted: pinned, flag or
	// unpinned (on-chain KMS only).
	KMSTrust string `json:"kms_trust,omitempty"`
	// ComposeVerified says how the compose hash was established: predicted,
	// approved-after-read, checked-after-commit or unchecked (pending while
	// an approval waits for the owner).
	ComposeVerified string `json:"compose_verified"`
	// PreLaunch names the pre-launch script the document holds (none, yours,
	// or an official Phala script), when the document was read.
	PreLaunch     string `json:"pre_launch_script,omitempty"`
	ApproveTxHash string `json:"approve_tx_hash,omitempty"`
	// Timelock is the operation that approves through a timelock owner.
	Timelock     *TimelockStatus `json:"timelock,omitempty"`
	RevokeTxHash string          `json:"revoke_tx_hash,omitempty"`
	// PendingCalls are owner-only calls the signer could not make, and
	// Approver who must make them when not the owner (a timelock's
	// proposer).
	PendingCalls []OnChainCall `json:"pending_calls,omitempty"`
	// SafeProposal is set when those calls were proposed to the owner's Safe.
	SafeProposal *SafeProposalResult `json:"safe_proposal,omitempty"`
	Approver     string              `json:"approver,omitempty"`
	// Attestation says whether the running CVM's attested app-compose hashes
	// to the allowed hash: matches, not-public or unavailable.
	Attestation string   `json:"attestation,omitempty"`
	Resumed     []string `json:"resumed_steps,omitempty"`
	Journal     string   `json:"journal,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

// run is the state of one Deploy call.
type run struct {
	*Runner
	cfg   Config
	in    *inputs
	j     *Journal
	path  string
	res   *Result
	chain *deployer.Client
	// kmsRootKey is the KMS root key read on-chain in the AppAuth
	// deployment's preflight batch; nil when not read.
	kmsRootKey []byte
	// expect, when set, replaces the expectation built from the inputs (the
	// commit command has the provision file's, not the compose file).
	expect *kms.ComposeExpectation
	// namedKMS is the KMS contract --kms named (by slug or kc_ id), which
	// the provision's kms_info must name too.
	namedKMS *phala.KMSContract
}

// Deploy takes a compose file and env to a committed (and, with cfg.Wait,
// running) CVM: provision, AppAuth on-chain, verified env key, local
// encryption, commit, wait. Every step that changed something remote is
// journaled first, so a re-run resumes and never deploys or commits twice.
func (r *Runner) Deploy(ctx context.Context, cfg Config) (*Result, error) {
	in, err := cfg.load()
	if err != nil {
		return nil, err
	}
	// An on-chain KMS needs a signer and a node; say so before provisioning.
	if in.kms.onChain() {
		if r.Signer == nil {
			return nil, errNoSigner
		}
		if r.RPCURL == "" {
			return nil, fmt.Errorf("%w: --kms %s is an on-chain KMS: pass --rpc-url (or set ETH_RPC_URL) to a node of its chain", ErrInvalidConfig, cfg.KMS)
		}
	}
	if cfg.DryRun {
		return r.dryRun(ctx, cfg, in)
	}
	d := &run{Runner: r, cfg: cfg, in: in, res: &Result{Name: cfg.Name, Warnings: in.warnings}}
	for _, w := range in.warnings {
		d.say("warning: %s", w)
	}
	if err := d.openJournal(); err != nil {
		return nil, err
	}
	defer d.closeChain()

	if err := d.provision(ctx); err != nil {
		return d.res, err
	}
	pubKey := d.j.Provision.AppEnvEncryptKey
	if d.j.Provision.OnChain {
		if err := d.connectChain(ctx); err != nil {
			return d.res, err
		}
		if err := d.deployTimelock(ctx); err != nil {
			return d.res, err
		}
		if err := d.deployAppAuth(ctx); err != nil {
			return d.res, err
		}
		if pubKey, err = d.appKey(ctx); err != nil {
			return d.res, err
		}
	} else {
		d.res.AppID = d.j.Provision.AppID
	}
	return d.res, d.commitAndWait(ctx, pubKey)
}

// commitAndWait is steps 4 to 6: encrypt and commit, then (with Wait) watch
// the CVM until it runs.
func (d *run) commitAndWait(ctx context.Context, pubKey string) error {
	if err := d.commit(ctx, pubKey); err != nil {
		return err
	}
	if err := d.afterCommit(ctx); err != nil {
		return err
	}
	if d.cfg.Wait {
		return d.waitRunning(ctx)
	}
	return nil
}

// unjournaled is r for flows that keep no journal (dry run, the split
// phases): nothing is saved and the AfterStep hook does not fire.
func (r *Runner) unjournaled() *Runner {
	c := *r
	c.Journals = JournalStore{}
	c.AfterStep = nil
	return &c
}

// say reports progress, if anyone listens.
func (r *Runner) say(format string, args ...any) {
	if r.Progress != nil {
		r.Progress(format, args...)
	}
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// openJournal loads the journal of an earlier run of the same deployment, or
// starts a new one.
func (d *run) openJournal() error {
	d.j = &Journal{Name: d.cfg.Name, APIPrefix: d.API.BaseURL(), StartedAt: d.now().UTC(), Fingerprint: d.in.fingerprint}
	if d.Journals.Dir == "" {
		return nil
	}
	d.path = d.Journals.Path(d.API.BaseURL(), d.cfg.Name)
	d.res.Journal = d.path
	if d.cfg.Fresh {
		if err := d.Journals.Remove(d.path); err != nil {
			return err
		}
		return nil
	}
	prev, err := d.Journals.Load(d.path)
	if err != nil {
		return err
	}
	if prev == nil {
		return nil
	}
	if prev.Fingerprint != d.in.fingerprint {
		if prev.App != nil || prev.DeployTx != nil || prev.TimelockTx != nil {
			return fmt.Errorf("%w: the journal %s belongs to a deployment of %q started with other inputs (compose, env keys or KMS options changed) that already deployed AppAuth %s; restore the inputs to resume it, or re-run with --fresh to start a new deployment",
				ErrInvalidConfig, d.path, d.cfg.Name, describeApp(prev))
		}
		if prev.Commit != nil {
			// A cloud-KMS deployment has no AppAuth, but its commit created
			// a CVM: other inputs are an update, not a second commit.
			return fmt.Errorf("%w: the journal %s belongs to a deployment of %q started with other inputs that already committed CVM %s; change it with `cvmdeploy update --cvm %s`, or re-run with --fresh to deploy a new CVM",
				ErrInvalidConfig, d.path, d.cfg.Name, prev.Commit.CVMID, prev.Commit.CVMID)
		}
		d.say("inputs changed since the last run of %q; starting over (nothing had been sent on-chain)", d.cfg.Name)
		return nil
	}
	d.say("resuming %q from %s", d.cfg.Name, d.path)
	d.j = prev
	return nil
}

func describeApp(j *Journal) string {
	switch {
	case j.App != nil:
		return j.App.AppID
	case j.DeployTx != nil:
		return "(transaction " + j.DeployTx.Hash + ")"
	}
	return "(its timelock, transaction " + j.TimelockTx.Hash + ")"
}

// save journals the current state, then runs the AfterStep hook.
func (d *run) save(step string) error {
	if d.Journals.Dir != "" {
		if err := d.Journals.Save(d.path, d.j); err != nil {
			return err
		}
	}
	if d.AfterStep != nil {
		return d.AfterStep(step)
	}
	return nil
}

// provision is step 1: POST /cvms/provision, or the journaled answer.
func (d *run) provision(ctx context.Context) error {
	if p := d.j.Provision; p != nil {
		d.res.Resumed = append(d.res.Resumed, StepProvision)
		d.say("✓ provisioned earlier: compose hash %s", p.ComposeHash)
		if p.OnChain {
			// The trust anchors may have changed since: check again.
			trust, err := d.trustKMS(p.ChainID, p.KMSContract)
			if err != nil {
				return err
			}
			p.KMSTrust = trust
		}
		d.fillFromProvision()
		return nil
	}
	req, err := d.provisionRequest(ctx)
	if err != nil {
		return err
	}
	d.say("→ provisioning %q on %s", d.cfg.Name, d.API.BaseURL())
	resp, err := d.API.Provision(ctx, req)
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	step := &ProvisionStep{
		ComposeHash:   resp.ComposeHash,
		OnChain:       resp.OnChain(),
		ProvisionedAt: d.now().UTC(),
		Via:           resp.Via,
		KMSContractID: req.KMSContractID,
	}
	if resp.Token != nil {
		step.Token = *resp.Token
	}
	if resp.DeviceID != nil {
		step.DeviceID = *resp.DeviceID
	}
	if resp.OSImageHash != nil {
		step.OSImageHash = *resp.OSImageHash
	}
	if resp.InstanceType != nil {
		step.InstanceType = *resp.InstanceType
	}
	if ki := resp.KMSInfo; ki != nil {
		step.KMSID = ki.Ref()
		if ki.ChainID != nil {
			step.ChainID = uint64(*ki.ChainID)
		}
		if ki.KMSContractAddress != nil {
			step.KMSContract = *ki.KMSContractAddress
		}
	}
	if step.KMSID == "" && resp.KMSID != nil {
		step.KMSID = *resp.KMSID
	}
	if resp.AppID != nil {
		step.AppID = *resp.AppID
	}
	if resp.AppEnvEncryptPubkey != nil {
		step.AppEnvEncryptKey = *resp.AppEnvEncryptPubkey
	}
	if step.OnChain {
		if !common.IsHexAddress(step.KMSContract) {
			return fmt.Errorf("provision answered an on-chain KMS without a valid contract address (%q)", step.KMSContract)
		}
		if d.cfg.ChainID != 0 && d.cfg.ChainID != step.ChainID {
			return fmt.Errorf("%w: --chain says chain %d but the KMS %s lives on chain %d", ErrChainMismatch, d.cfg.ChainID, step.KMSID, step.ChainID)
		}
		if k := d.namedKMS; k != nil && (!strings.EqualFold(k.ContractAddress, step.KMSContract) || uint64(k.ChainID) != step.ChainID) {
			return fmt.Errorf("%w: --kms %s is contract %s on chain %d as GET /kms lists it, but the provision names contract %s on chain %d; nothing was sent", ErrKMSUntrusted, d.cfg.KMS, k.ContractAddress, k.ChainID, step.KMSContract, step.ChainID)
		}
	} else if step.AppID == "" || step.AppEnvEncryptKey == "" {
		return fmt.Errorf("provision answered neither an on-chain KMS (kms_info with chain and contract) nor a cloud-KMS app id and key")
	}
	d.say("✓ provisioned (%s): compose hash %s, device %s, KMS %s%s", resp.Via, step.ComposeHash, shortHex(step.DeviceID), describeKMS(step), tokenNote(step))
	if err := d.planCompose(step); err != nil {
		return err
	}
	d.j.Provision = step
	d.fillFromProvision()
	return d.save(StepProvision)
}

func describeKMS(p *ProvisionStep) string {
	if !p.OnChain {
		return "phala (cloud)"
	}
	return fmt.Sprintf("%s (contract %s, chain %d)", p.KMSID, p.KMSContract, p.ChainID)
}

func shortHex(s string) string {
	if len(s) > 14 {
		return s[:8] + "…" + s[len(s)-4:]
	}
	if s == "" {
		return "(none)"
	}
	return s
}

func (d *run) fillFromProvision() {
	p := d.j.Provision
	d.res.ComposeHash = p.ComposeHash
	d.res.KMSID = p.KMSID
	d.res.ChainID = p.ChainID
	d.res.KMSContract = p.KMSContract
	d.res.KMSTrust = p.KMSTrust
	d.res.ComposeVerified = d.composeVerified()
}

// publicTcbinfo is always requested: it lets anyone (and cvmdeploy, after
// boot) compare the app-compose the CVM measured with the allowed hash.
var publicTcbinfo = true

func (d *run) provisionRequest(ctx context.Context) (phala.ProvisionRequest, error) {
	cfg, in := d.cfg, d.in
	req := phala.ProvisionRequest{
		Name:         cfg.Name,
		InstanceType: cfg.InstanceType,
		NodeID:       cfg.NodeID,
		Region:       cfg.Region,
		Image:        cfg.Image,
		Listed:       cfg.Listed,
		KMS:          in.kms.Type,
		ComposeFile: phala.ComposeFile{
			DockerComposeFile: in.compose,
			AllowedEnvs:       in.envKeys,
			PreLaunchScript:   in.preLaunch,
			Name:              "",
			PublicLogs:        &cfg.PublicLogs,
			PublicSysinfo:     &cfg.PublicSysinfo,
			// Sent explicitly: the attestation check after boot needs it, and
			// the compose check expects exactly what was sent.
			PublicTcbinfo: &publicTcbinfo,
		},
	}
	if cfg.DiskSize > 0 {
		req.DiskSize = &cfg.DiskSize
	}
	if req.InstanceType == "" && req.VCPU == nil && req.Memory == nil {
		req.InstanceType = "tdx.small" // what the SDK fills in
	}
	if in.kms.Slug != "" {
		// A named KMS: ask the API what it is, so an unknown name fails here,
		// before anything is provisioned, and the type matches its chain.
		if err := d.resolveNamedKMS(ctx, &req); err != nil {
			return req, err
		}
	}
	if err := req.Check(); err != nil {
		return req, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return req, nil
}

var errNoSigner = fmt.Errorf("%w: an on-chain KMS needs a signer to deploy the AppAuth: set PRIVATE_KEY, or use --private-key-file, --private-key-stdin or --keystore", ErrInvalidConfig)

// ErrChainMismatch: the RPC node, --chain and the KMS disagree on the chain.
var ErrChainMismatch = errors.New("chain mismatch")

// connectChain dials the KMS's chain and checks it is the one the KMS is on.
func (d *run) connectChain(ctx context.Context) error {
	if d.RPCURL == "" {
		return fmt.Errorf("%w: the KMS %s is on chain %d: pass --rpc-url (or set ETH_RPC_URL) to a node of that chain", ErrInvalidConfig, d.j.Provision.KMSID, d.j.Provision.ChainID)
	}
	c, err := deployer.Dial(ctx, d.RPCURL)
	if err != nil {
		return err
	}
	// Every batched preflight checks eth_chainId against the KMS's chain.
	c.ExpectChainID = d.j.Provision.ChainID
	d.chain = c
	return nil
}

func (d *run) closeChain() {
	if d.chain != nil {
		d.chain.Close()
	}
}

// deployAppAuth is step 2: the factory call, journaled from the moment the
// transaction is signed, so a re-run waits for (or re-broadcasts) that same
// transaction instead of deploying a second AppAuth.
func (d *run) deployAppAuth(ctx context.Context) error {
	p := d.j.Provision
	kmsAddr := common.HexToAddress(p.KMSContract)
	if a := d.j.App; a != nil {
		d.res.Resumed = append(d.res.Resumed, StepApp)
		d.say("✓ AppAuth deployed earlier: app id %s", a.AppID)
		d.fillFromApp()
		return nil
	}
	if t := d.j.DeployTx; t != nil {
		d.res.Resumed = append(d.res.Resumed, StepDeployTx)
		d.say("… AppAuth transaction %s was sent earlier: waiting for it instead of sending another", t.Hash)
		dep, err := d.recoverDeployment(ctx, kmsAddr, t)
		if err != nil {
			return err
		}
		return d.recordApp(dep)
	}
	if d.Signer == nil {
		return errNoSigner
	}
	cfg, err := d.deployConfig(kmsAddr)
	if err != nil {
		return err
	}
	if d.Confirm != nil {
		action := fmt.Sprintf("deploy the AppAuth of %q through KMS %s (owner %s, paid by %s)", d.cfg.Name, kmsAddr.Hex(), cfg.Owner.Hex(), d.Signer.Address().Hex())
		if d.plan() == planApproveAfterRead {
			action += ", then, once the committed app-compose is checked, allow its compose hash (a second transaction)"
		}
		if err := d.Confirm(ctx, p.ChainID, action); err != nil {
			return err
		}
	}
	opts := d.cfg.Tx
	// Every variant (the first, and each replacement of a stuck one) is
	// journaled before it is broadcast.
	opts.OnSigned = func(tx *types.Transaction) error {
		if d.j.DeployTx == nil {
			d.j.DeployTx = &TxStep{}
		}
		if err := d.j.DeployTx.AddVariant(tx, d.Signer.Address(), d.now().UTC()); err != nil {
			return err
		}
		return d.save(StepDeployTx)
	}
	opts.OnSent = func(h common.Hash) {
		d.say("→ AppAuth transaction sent: %s%s", h.Hex(), d.explorerSuffix(p.ChainID, h))
	}
	opts.OnEvent = func(e deployer.TxEvent) {
		if e.Kind != deployer.TxMined {
			d.say("  %s", e)
		}
	}
	// The KMS root key that verifies the app's env key rides in the
	// preflight batch (one request fewer than reading it afterwards).
	cfg.ReadKMSRootKey = !d.cfg.InsecureSkipKeyVerification
	d.say("→ deploying the AppAuth through KMS %s on chain %d (owner %s)", kmsAddr.Hex(), p.ChainID, cfg.Owner.Hex())
	dep, err := d.chain.DeployApp(ctx, d.Signer, cfg, opts)
	if err != nil {
		return fmt.Errorf("deploy AppAuth: %w", err)
	}
	d.kmsRootKey = dep.KMSRootKey
	return d.recordApp(dep)
}

func (d *run) deployConfig(kmsAddr common.Address) (deployer.DeployAppConfig, error) {
	p := d.j.Provision
	cfg := deployer.DeployAppConfig{
		KMS:                kmsAddr,
		Owner:              d.cfg.Owner,
		AllowAnyDevice:     d.cfg.AllowAnyDevice,
		DisableUpgrades:    d.cfg.DisableUpgrades,
		RequireTcbUpToDate: d.cfg.RequireTcbUpToDate,
	}
	if cfg.Owner == (common.Address{}) {
		cfg.Owner = d.Signer.Address()
	}
	if t := d.j.Timelock; t != nil {
		cfg.Owner = common.HexToAddress(t.Address)
	}
	hash, err := hexBytes32(p.ComposeHash)
	if err != nil {
		return cfg, fmt.Errorf("provision compose_hash: %w", err)
	}
	if d.plan() != planApproveAfterRead {
		cfg.ComposeHash = hash
	} // else: allowed only once the committed document has been read

	if p.DeviceID != "" {
		dev, err := hexBytes32(p.DeviceID)
		if err != nil {
			return cfg, fmt.Errorf("provision device_id: %w", err)
		}
		cfg.DeviceID = dev
	}
	cfg = cfg.Normalized()
	if err := cfg.Check(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return cfg, nil
}

// hexBytes32 reads a 32-byte value given as hex; shorter values are
// right-padded with zeros, as the official SDK pads device ids.
func hexBytes32(s string) ([32]byte, error) {
	var out [32]byte
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) > 64 || len(s)%2 != 0 {
		return out, fmt.Errorf("%q is not 32 bytes of hex", s)
	}
	b, err := hexutil.Decode("0x" + s)
	if err != nil {
		return out, fmt.Errorf("%q is not hex: %w", s, err)
	}
	copy(out[:], b)
	return out, nil
}

// recoverDeployment finishes a factory transaction journaled by an earlier
// run: the receipt of whichever variant (the original or a replacement) was
// mined; otherwise the newest signed bytes are broadcast again if the node
// does not have them (same nonce: it can only ever be mined once), awaited,
// and replaced if stuck, each new variant journaled first.
func (d *run) recoverDeployment(ctx context.Context, kmsAddr common.Address, t *TxStep) (*deployer.AppDeployment, error) {
	tx, err := t.Signed()
	if err != nil {
		return nil, fmt.Errorf("the journal's raw transaction is damaged (%v): check %s on an explorer, then re-run with --fresh only if it was never mined", err, t.Hash)
	}
	chainID := d.j.Provision.ChainID
	opts := d.cfg.Tx
	opts.OnSigned = func(tx *types.Transaction) error {
		if err := t.AddVariant(tx, d.Signer.Address(), d.now().UTC()); err != nil {
			return err
		}
		return d.save(StepDeployTx)
	}
	opts.OnSent = func(h common.Hash) {
		d.say("→ AppAuth transaction sent: %s%s", h.Hex(), d.explorerSuffix(chainID, h))
	}
	opts.OnEvent = func(e deployer.TxEvent) {
		if e.Kind != deployer.TxMined {
			d.say("  %s", e)
		}
	}
	dep, err := d.chain.ResumeAppDeployment(ctx, d.Signer, kmsAddr, tx, t.Variants(), opts)
	if errors.Is(err, deployer.ErrNonceUsed) {
		return nil, fmt.Errorf("the journaled AppAuth transaction %s was never mined and nonce %d of %s is used by another transaction: check the account's history (an AppAuth may exist already: cvmdeploy app info), then re-run with --fresh to deploy a new one", t.Hash, t.Nonce, t.From)
	}
	if err != nil {
		return nil, fmt.Errorf("resume AppAuth transaction %s: %w", t.Hash, err)
	}
	return dep, nil
}

func (d *run) recordApp(dep *deployer.AppDeployment) error {
	d.j.App = &AppStep{
		AppID:           dep.AppID.Hex(),
		ContractAddress: dep.ContractAddress.Hex(),
		DeployerAddress: dep.DeployerAddress.Hex(),
		TxHash:          dep.TxHash.Hex(),
		BlockNumber:     dep.BlockNumber,
		GasUsed:         dep.GasUsed,
	}
	d.fillFromApp()
	d.say("✓ AppAuth deployed: app id %s (block %d, gas %d)", dep.AppID.Hex(), dep.BlockNumber, dep.GasUsed)
	return d.save(StepApp)
}

func (d *run) fillFromApp() {
	a := d.j.App
	d.res.AppID = a.AppID
	d.res.ContractAddress = a.ContractAddress
	d.res.DeployerAddress = a.DeployerAddress
	d.res.TxHash = a.TxHash
	d.res.BlockNumber = a.BlockNumber
	d.res.GasUsed = a.GasUsed
}

// appKey is step 3: the app's env-encryption key from the API, checked
// against the KMS root key the chain holds.
func (d *run) appKey(ctx context.Context) (string, error) {
	if k := d.j.PubKey; k != nil && (k.Verified || d.cfg.InsecureSkipKeyVerification) {
		d.res.Resumed = append(d.res.Resumed, StepPubKey)
		d.res.KeyVerified = k.Verified
		return k.PublicKey, nil
	}
	p, app := d.j.Provision, d.j.App
	step, err := d.verifiedAppKey(ctx, d.chain, keyCheck{
		KMSRef: p.KMSID, KMSContract: common.HexToAddress(p.KMSContract), ChainID: p.ChainID, AppID: app.AppID,
		Root: d.kmsRootKey, // read with the deployment, when this run deployed it
		Skip: d.cfg.InsecureSkipKeyVerification,
	})
	if err != nil {
		return "", err
	}
	d.res.KeyVerified = step.Verified
	d.j.PubKey = step
	return step.PublicKey, d.save(StepPubKey)
}

// ErrKeyVerification: the app's env key is not signed by the on-chain KMS.
var ErrKeyVerification = errors.New("KMS key verification failed")

// cvmRef is the id used in later /cvms/{id} calls.
func cvmRef(c *phala.CVM) string {
	if c.VMUUID != nil && *c.VMUUID != "" {
		return *c.VMUUID
	}
	return c.ID.String()
}

func (d *run) fillFromCommit() {
	c := d.j.Commit
	d.res.CVMID = c.CVMID
	d.res.VMUUID = c.VMUUID
	d.res.Status = c.Status
	if c.VMUUID != "" {
		d.res.DashboardURL = phala.DashboardURL(c.VMUUID)
	}
	if d.res.AppID == "" {
		d.res.AppID = c.AppID
	}
}

// waitRunning is step 6: watch the CVM until it runs or fails to boot.
func (d *run) waitRunning(ctx context.Context) error {
	if d.j.Status == StepRunning {
		d.res.Status = "running"
		return nil
	}
	if d.cfg.WaitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.WaitTimeout)
		defer cancel()
	}
	d.say("… waiting for CVM %s to run", d.j.Commit.CVMID)
	st, err := d.WaitRunning(ctx, d.j.Commit.CVMID)
	if err != nil {
		if errors.Is(err, ErrBootFailed) {
			d.res.Status = st.Status
			d.j.Commit.Status = st.Status
			_ = d.save("boot-failed")
		}
		return err
	}
	d.res.Status = st.Status
	d.j.Commit.Status = st.Status
	d.j.Status = StepRunning
	d.say("✓ CVM %s is %s", d.j.Commit.CVMID, st.Status)
	if err := d.save(StepRunning); err != nil {
		return err
	}
	att, err := d.CheckAttestation(ctx, d.j.Commit.CVMID, d.j.Provision.ComposeHash)
	d.res.Attestation = att
	return err
}

// WaitRunning follows a CVM's state until it runs, printing each new status.
// A CVM that fails to boot ends it with ErrBootFailed (and its last state).
func (r *Runner) WaitRunning(ctx context.Context, cvmID string) (phala.CVMState, error) {
	last := ""
	st, err := r.API.WatchState(ctx, cvmID, "running", func(s phala.CVMState) {
		if s.Status == last || r.Progress == nil {
			return
		}
		last = s.Status
		if s.BootProgress != "" {
			r.Progress("  status %s (%s)", s.Status, s.BootProgress)
		} else {
			r.Progress("  status %s", s.Status)
		}
	})
	if err != nil {
		var be *phala.BootError
		if errors.As(err, &be) {
			return be.State, fmt.Errorf("%w: %w", ErrBootFailed, err)
		}
		return st, fmt.Errorf("wait for CVM %s: %w", cvmID, err)
	}
	return st, nil
}

// ErrBootFailed: the CVM was committed but did not boot.
var ErrBootFailed = errors.New("CVM failed to boot")

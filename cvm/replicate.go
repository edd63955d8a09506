package cvm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// Steps of a replicate run, in order; they name its journal boundaries.
// Request, prepare, commit-sent and commit happen once per replica.
const (
	ReplicateStepBase       = "replicate-base"        // the source's document, allowed on-chain
	ReplicateStepRequest    = "replicate-request"     // a cloud-KMS replica is about to be asked for
	ReplicateStepPrepare    = "replicate-prepare"     // a 465 checked: its device, hash and token
	ReplicateStepTx         = "replicate-tx"          // an owner call signed, before it is broadcast
	ReplicateStepApprove    = "replicate-approve"     // the devices (and hash) allowed on-chain
	ReplicateStepCommitSent = "replicate-commit-sent" // commit-replica is about to be sent
	ReplicateStepCommit     = "replicate-commit"      // the replica exists
	ReplicateStepRunning    = "replicate-running"     // a replica runs (--wait)
)

// How a replica's device was established (device_check in --json).
const (
	// DeviceCheckNodeList: the device the service named is the target
	// node's in the API's node list (GET /teepods/available).
	DeviceCheckNodeList = "node-list"
	// DeviceCheckUnlisted: the API lists no device for the node; the device
	// is taken as the 465 named it.
	DeviceCheckUnlisted = "unlisted"
)

// ErrDeviceMismatch: the service asked to allow a device that is not the
// target node's; nothing was approved.
var ErrDeviceMismatch = errors.New("the device is not the target node's")

// ReplicateConfig asks for replicas of a CVM: new CVMs of the same app,
// with the same app-compose, on other nodes (or the same one).
type ReplicateConfig struct {
	// CVM is the source CVM's id, UUID, name or app id.
	CVM string
	// NodeID places every replica on that node; nil lets the service pick.
	NodeID *int64
	// Count is the number of replicas (0 means 1).
	Count int
	// EnvFiles and EnvFlags give the replicas a new env (encrypted to the
	// app's verified key); without them each replica gets the source's.
	EnvFiles []string
	EnvFlags []string
	// PrepareOnly stops with the commit tokens and the owner's calls, for a
	// multisig owner; nothing is sent on-chain and nothing is created.
	PrepareOnly bool
	ChainID     uint64
	Tx          deployer.TxOptions
	// Wait follows every replica until it runs.
	Wait        bool
	WaitTimeout time.Duration
	// InsecureSkipKeyVerification trusts the API's env key unchecked.
	InsecureSkipKeyVerification bool
	// Fresh forgets the journal of an earlier, unfinished run.
	Fresh bool
}

func (c ReplicateConfig) count() int {
	if c.Count <= 0 {
		return 1
	}
	return c.Count
}

// maxReplicas bounds --count: each replica is a paid CVM.
const maxReplicas = 100

// ReplicateResult is the outcome of a replicate run; its JSON form is the
// --json output.
type ReplicateResult struct {
	SourceCVM   string `json:"source_cvm"`
	AppID       string `json:"app_id"`
	ChainID     uint64 `json:"chain_id,omitempty"`
	ComposeHash string `json:"compose_hash,omitempty"`
	// KMSTrust, ComposeVerified and DeviceCheck say how the KMS, the
	// replicas' compose hash (read: the source's current document, allowed
	// on-chain) and their devices were established.
	KMSTrust        string `json:"kms_trust,omitempty"`
	ComposeVerified string `json:"compose_verified,omitempty"`
	DeviceCheck     string `json:"device_check,omitempty"`
	// KeyVerified is set when a new env was encrypted: whether the app's
	// key was checked against the KMS root on-chain.
	KeyVerified *bool  `json:"kms_key_verified,omitempty"`
	Owner       string `json:"owner,omitempty"`
	// Replicas lists each replica asked for.
	Replicas []ReplicaResult `json:"replicas"`
	// OnChain lists the owner calls sent (or, prepared or pending, to send).
	OnChain  []OnChainCall `json:"onchain_calls,omitempty"`
	Status   string        `json:"status"`
	Resumed  []string      `json:"resumed_steps,omitempty"`
	Journal  string        `json:"journal,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
}

// ReplicaResult is one replica.
type ReplicaResult struct {
	CVMID    string `json:"cvm_id"`
	NodeID   *int64 `json:"node_id"`
	DeviceID string `json:"device_id"`
	Status   string `json:"status"`
	// TxHash is the transaction that allowed what the replica needed; empty
	// when nothing had to be approved.
	TxHash string `json:"tx_hash"`
	// CommitToken is set with --prepare-only only: the owner's executor
	// finishes with commit-replica (or a re-run of replicate).
	CommitToken string `json:"commit_token,omitempty"`
	Attestation string `json:"attestation,omitempty"`
}

// replicate is the state of one Replicate call.
type replicate struct {
	*Runner
	cfg       ReplicateConfig
	env       []kms.EnvVar
	envGiven  bool
	envKeys   []string
	encrypted string
	j         *ReplicateJournal
	path      string
	res       *ReplicateResult
	src       *phala.CVM
	chain     *deployer.Client
	app       common.Address
	nodes     map[int64]phala.Node // nil: the API lists no nodes
	resumed   map[string]bool
}

// Replicate asks for replicas of a CVM as journaled steps: read the
// source's document and check that the chain allows it; for each replica
// ask the service (X-Prepare-Only on an on-chain KMS) and check its 465 —
// the same compose hash, app and KMS as the source, and the device of the
// target node; allow the devices (and the hash, if needed) on the AppAuth
// through its owner; commit each replica with its token; wait. A re-run
// resumes at the first step not done and never approves or commits twice.
// With PrepareOnly it stops after the checks, with the tokens and the calls.
func (r *Runner) Replicate(ctx context.Context, cfg ReplicateConfig) (*ReplicateResult, error) {
	p, err := r.newReplicate(cfg)
	if err != nil {
		return nil, err
	}
	if err := p.openJournal(); err != nil {
		return nil, err
	}
	defer func() {
		if p.chain != nil {
			p.chain.Close()
		}
	}()
	if err := p.lookup(ctx); err != nil {
		return p.res, err
	}
	if err := p.readBase(ctx); err != nil {
		return p.res, err
	}
	if err := p.readNodes(ctx); err != nil {
		return p.res, err
	}
	if err := p.recordKnown(ctx); err != nil {
		return p.res, err
	}
	for i := range p.j.Replicas {
		if err := p.prepareOne(ctx, i); err != nil {
			p.fill()
			return p.res, err
		}
	}
	p.fill()
	if p.onChain() {
		if cfg.PrepareOnly {
			return p.res, p.stopPrepared(ctx)
		}
		if err := p.approve(ctx); err != nil {
			p.fill()
			return p.res, err
		}
	}
	for i := range p.j.Replicas {
		if err := p.commitOne(ctx, i); err != nil {
			p.fill()
			return p.res, err
		}
	}
	err = p.finish(ctx)
	p.fill()
	return p.res, err
}

// newReplicate reads and checks everything local; it sends nothing.
func (r *Runner) newReplicate(cfg ReplicateConfig) (*replicate, error) {
	if strings.TrimSpace(cfg.CVM) == "" {
		return nil, fmt.Errorf("%w: --cvm is required (the source CVM's id, UUID, name or app id)", ErrInvalidConfig)
	}
	if cfg.Count < 0 || cfg.Count > maxReplicas {
		return nil, fmt.Errorf("%w: --count %d: ask for 1 to %d replicas", ErrInvalidConfig, cfg.Count, maxReplicas)
	}
	if cfg.NodeID != nil && *cfg.NodeID <= 0 {
		return nil, fmt.Errorf("%w: --node-id %d: node ids are positive", ErrInvalidConfig, *cfg.NodeID)
	}
	if err := cfg.Tx.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	p := &replicate{Runner: r, cfg: cfg, resumed: map[string]bool{},
		res: &ReplicateResult{SourceCVM: cfg.CVM, Status: "committed"}}
	p.envGiven = len(cfg.EnvFiles) > 0 || len(cfg.EnvFlags) > 0
	if p.envGiven {
		env, err := kms.LoadEnv(cfg.EnvFiles, cfg.EnvFlags)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		p.env, p.envKeys = env, kms.Keys(env)
	}
	return p, nil
}

func (p *replicate) onChain() bool { return p.chain != nil }

// resume notes a step found done in the journal (once per step name).
func (p *replicate) resume(step string) {
	if !p.resumed[step] {
		p.resumed[step] = true
		p.res.Resumed = append(p.res.Resumed, step)
	}
}

// lookup reads the source CVM, checks its KMS against the trust anchors and
// connects to its chain. It changes nothing.
func (p *replicate) lookup(ctx context.Context) error {
	src, err := p.API.GetCVM(ctx, p.cfg.CVM)
	if err != nil {
		return fmt.Errorf("look up CVM %s: %w", p.cfg.CVM, err)
	}
	p.src = src
	if src.AppID != nil {
		p.res.AppID = *src.AppID
	}
	if p.res.AppID == "" {
		return fmt.Errorf("CVM %s reports no app id to replicate", p.cfg.CVM)
	}
	if len(p.j.Replicas) == 0 {
		for range p.cfg.count() {
			p.j.Replicas = append(p.j.Replicas, &ReplicaStep{})
		}
	}
	contract, chainID, _, onChain := kmsOf(src)
	if !onChain {
		if p.cfg.PrepareOnly {
			return fmt.Errorf("%w: --prepare-only applies to an on-chain KMS; CVM %s uses the cloud KMS, whose replicas need no approval", ErrInvalidConfig, p.cfg.CVM)
		}
		return nil
	}
	trust, err := p.trustKMS(chainID, contract)
	if err != nil {
		return err
	}
	p.res.KMSTrust, p.res.ChainID = trust, chainID
	if p.cfg.ChainID != 0 && p.cfg.ChainID != chainID {
		return fmt.Errorf("%w: --chain says chain %d but CVM %s's KMS lives on chain %d", ErrChainMismatch, p.cfg.ChainID, p.cfg.CVM, chainID)
	}
	if p.RPCURL == "" {
		return fmt.Errorf("%w: CVM %s uses an on-chain KMS: pass --rpc-url (or set ETH_RPC_URL)", ErrInvalidConfig, p.cfg.CVM)
	}
	if p.app, err = appAddress(p.res.AppID); err != nil {
		return err
	}
	if p.chain, err = deployer.Dial(ctx, p.RPCURL); err != nil {
		return err
	}
	p.chain.ExpectChainID = chainID
	return nil
}

// readBase is step 1 (on-chain KMS): the source's current app-compose,
// re-serialized in each known serialization; the hashes the AppAuth
// allows are the only ones a replica may run.
func (p *replicate) readBase(ctx context.Context) error {
	if !p.onChain() {
		return nil
	}
	if p.j.Base != nil {
		p.resume(ReplicateStepBase)
	} else {
		cur, err := p.readCurrentDoc(ctx, p.chain, p.app, p.cfg.CVM, false)
		if err != nil {
			return err
		}
		base := &ReplicaBase{Allowed: map[string]string{}, AllowedEnvs: stringList(cur.Doc["allowed_envs"])}
		for _, f := range cur.Forms {
			if f.Allowed {
				base.Allowed[f.Hash] = string(f.Serialization)
			}
		}
		if len(base.Allowed) == 0 {
			return fmt.Errorf("%w: CVM %s's current app-compose hashes to %s, and AppAuth %s allows none of them: no replica is approved for a document the chain does not allow", ErrComposeRule, p.cfg.CVM, cur.tried(), p.app.Hex())
		}
		p.j.Base = base
		p.say("✓ current app-compose read: hash %s is allowed on AppAuth %s", shortHex(p.baseHash()), p.app.Hex())
		if err := p.save(ReplicateStepBase); err != nil {
			return err
		}
	}
	p.res.ComposeHash, p.res.ComposeVerified = p.baseHash(), ComposeRead
	if p.envGiven {
		var outside []string
		for _, k := range p.envKeys {
			if !slices.Contains(p.j.Base.AllowedEnvs, k) {
				outside = append(outside, k)
			}
		}
		if len(outside) > 0 {
			return fmt.Errorf("%w: a replica runs the source's app-compose, whose allowed_envs are [%s]; the env keys %s are not among them (change the key set with update first)", ErrInvalidConfig, strings.Join(p.j.Base.AllowedEnvs, ", "), strings.Join(outside, ", "))
		}
	}
	return nil
}

// baseHash is the allowed hash a replica should run: the one the source
// reports, else the first allowed one in a fixed order.
func (p *replicate) baseHash() string {
	if p.src != nil && p.src.ComposeHash != nil {
		if h, err := phala.NormalizeComposeHash(*p.src.ComposeHash); err == nil {
			if _, ok := p.j.Base.Allowed[h]; ok {
				return h
			}
		}
	}
	hs := make([]string, 0, len(p.j.Base.Allowed))
	for h := range p.j.Base.Allowed {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	return hs[0]
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// readNodes reads the API's node list (on-chain KMS), to tell which node a
// device is; an API without one leaves the devices unlisted.
func (p *replicate) readNodes(ctx context.Context) error {
	if !p.onChain() {
		return nil
	}
	out, err := p.API.AvailableNodes(ctx)
	if err != nil {
		var ae *phala.APIError
		if errors.As(err, &ae) && (ae.IsNotFound() || ae.Status == 405) {
			p.warn("the API lists no nodes (GET /teepods/available): each replica's device is taken as the service names it")
			return nil
		}
		return fmt.Errorf("list the nodes: %w", err)
	}
	p.nodes = map[int64]phala.Node{}
	for _, n := range out.Nodes {
		p.nodes[n.TeepodID] = n
	}
	if id := p.cfg.NodeID; id != nil {
		if _, ok := p.nodes[*id]; !ok {
			ids := make([]string, 0, len(out.Nodes))
			for _, n := range out.Nodes {
				ids = append(ids, fmt.Sprintf("%d (%s)", n.TeepodID, n.Name))
			}
			return fmt.Errorf("%w: --node-id %d is not among the nodes the API lists: %s", ErrInvalidConfig, *id, strings.Join(ids, ", "))
		}
	}
	return nil
}

func (p *replicate) warn(msg string) {
	if !slices.Contains(p.res.Warnings, msg) {
		p.res.Warnings = append(p.res.Warnings, msg)
		p.say("warning: %s", msg)
	}
}

// recordKnown lists the app's CVMs once per run, before any replica is
// asked for: a replica created but not journaled is later found as the
// app's CVM outside this list.
func (p *replicate) recordKnown(ctx context.Context) error {
	if p.j.Known != nil {
		return nil
	}
	vms, err := p.API.AppCVMs(ctx, p.res.AppID)
	if err != nil {
		return fmt.Errorf("list app %s's CVMs: %w", p.res.AppID, err)
	}
	p.j.Known = []string{}
	for i := range vms {
		p.j.Known = append(p.j.Known, cvmRef(&vms[i]))
	}
	return nil
}

// prepareOne is step 2 for replica i: ask for it. A cloud-KMS replica is
// created at once; an on-chain one answers 465, which is checked.
func (p *replicate) prepareOne(ctx context.Context, i int) error {
	rp := p.j.Replicas[i]
	if rp.prepared() {
		p.resume(ReplicateStepPrepare)
		return nil
	}
	enc, err := p.envCiphertext(ctx)
	if err != nil {
		return err
	}
	if !p.onChain() {
		if rp.Requested {
			vm, err := p.adopt(ctx, rp)
			if err != nil {
				return err
			}
			if vm != nil {
				p.say("… replica %d was created by an earlier run (CVM %s)", i+1, cvmRef(vm))
				p.record(rp, vm)
				return p.save(ReplicateStepCommit)
			}
		}
		rp.Requested = true
		if err := p.save(ReplicateStepRequest); err != nil {
			return err
		}
	}
	req := phala.ReplicaRequest{NodeID: p.cfg.NodeID, EncryptedEnv: enc}
	if p.onChain() {
		req.ComposeHash = p.baseHash()
	}
	p.say("→ asking for replica %d of %d of CVM %s", i+1, len(p.j.Replicas), p.cfg.CVM)
	out, err := p.API.ReplicateCVM(ctx, p.cfg.CVM, req, phala.ReplicaOptions{PrepareOnly: p.onChain()})
	if err != nil {
		return fmt.Errorf("ask for replica %d of CVM %s: %w", i+1, p.cfg.CVM, err)
	}
	if out.CVM != nil {
		if p.onChain() {
			p.warn("the service created a replica without asking for the owner's approval (it ignored X-Prepare-Only); nothing was approved for it")
		}
		p.record(rp, out.CVM)
		p.say("✓ replica %d created: CVM %s", i+1, rp.CVMID)
		return p.save(ReplicateStepCommit)
	}
	reg := out.Registration
	if !p.onChain() {
		return fmt.Errorf("the service asks for an on-chain approval of replica %d, but CVM %s reports no on-chain KMS; nothing was approved", i+1, p.cfg.CVM)
	}
	if err := p.check(reg, rp, p.cfg.NodeID); err != nil {
		return err
	}
	rp.ComposeHash, rp.CommitToken = reg.ComposeHash, reg.CommitToken
	p.say("✓ replica %d prepared on node %s (device %s), compose hash %s checked", i+1, nodeWords(rp.NodeID), shortHex(rp.DeviceID), shortHex(reg.ComposeHash))
	return p.save(ReplicateStepPrepare)
}

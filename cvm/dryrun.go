package cvm

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
)

// DryRunResult is what --dry-run shows instead of deploying.
type DryRunResult struct {
	Name        string `json:"name"`
	DryRun      bool   `json:"dry_run"`
	ComposeHash string `json:"compose_hash"`
	DeviceID    string `json:"device_id,omitempty"`
	KMSID       string `json:"kms_id,omitempty"`
	OnChain     bool   `json:"on_chain"`
	// KMSTrust is how the KMS contract was trusted (on-chain KMS).
	KMSTrust string `json:"kms_trust,omitempty"`
	// ComposeVerified is how the compose hash would be established:
	// predicted now, or approve-after-read / after-commit / off later.
	ComposeVerified string                        `json:"compose_verified"`
	Simulation      *deployer.AppDeploySimulation `json:"appauth_simulation,omitempty"`
	// PredictedAppID is the app id the factory would return now; another
	// deployment through the same KMS before ours would change it.
	PredictedAppID string `json:"predicted_app_id,omitempty"`
	// EstimatedCostWei is gas limit × max fee per gas: the most it can cost.
	EstimatedCostWei string `json:"estimated_cost_wei,omitempty"`
	EstimatedCostETH string `json:"estimated_cost_eth,omitempty"`
	// CommitRequest is the POST /cvms body that would be sent, with the
	// encrypted env elided (it was encrypted to check that it can be).
	CommitRequest map[string]any `json:"commit_request"`
	EnvKeys       []string       `json:"env_keys"`
	Warnings      []string       `json:"warnings,omitempty"`
	// Review is what a review page shows beyond these fields (the compose
	// file itself, the signer); not in --json.
	Review *DryRunReview `json:"-"`
}

// DryRun is Deploy with cfg.DryRun forced on.
func (r *Runner) DryRun(ctx context.Context, cfg Config) (*DryRunResult, error) {
	in, err := cfg.load()
	if err != nil {
		return nil, err
	}
	out, err := r.dryRunResult(ctx, cfg, in)
	if err == nil && out.PredictedAppID != "" {
		r.say("app id will be %s if nothing else deploys through the KMS first", out.PredictedAppID)
	}
	return out, err
}

// dryRun lets Deploy return a *Result for --dry-run callers that only need
// the common fields; the command uses DryRun for the full picture.
func (r *Runner) dryRun(ctx context.Context, cfg Config, in *inputs) (*Result, error) {
	dr, err := r.dryRunResult(ctx, cfg, in)
	if err != nil {
		return nil, err
	}
	return &Result{Name: dr.Name, ComposeHash: dr.ComposeHash, KMSID: dr.KMSID, AppID: dr.PredictedAppID, Status: "dry-run", Warnings: dr.Warnings}, nil
}

// dryRunResult provisions (which spends nothing), simulates the factory call
// with eth_call and gas estimation, encrypts the env to prove it can be, and
// describes the commit it would send. No transaction, no commit, no journal.
func (r *Runner) dryRunResult(ctx context.Context, cfg Config, in *inputs) (*DryRunResult, error) {
	d := &run{Runner: r.unjournaled(), cfg: cfg, in: in, res: &Result{Name: cfg.Name}, j: &Journal{}}
	defer d.closeChain()
	for _, w := range in.warnings {
		d.say("warning: %s", w)
	}
	out := &DryRunResult{Name: cfg.Name, DryRun: true, EnvKeys: in.envKeys, Warnings: in.warnings,
		Review: &DryRunReview{Compose: in.compose, PreLaunch: in.preLaunch}}
	if out.EnvKeys == nil {
		out.EnvKeys = []string{}
	}
	d.say("→ dry run: provisioning %q (no gas is spent, nothing is committed)", cfg.Name)
	if err := d.provision(ctx); err != nil {
		return nil, err
	}
	p := d.j.Provision
	out.ComposeHash, out.DeviceID, out.KMSID, out.OnChain = p.ComposeHash, p.DeviceID, p.KMSID, p.OnChain
	out.KMSTrust, out.ComposeVerified = p.KMSTrust, p.ComposePlan
	req := map[string]any{"compose_hash": p.ComposeHash, "kms_id": p.KMSID, "encrypted_env": "(elided)", "env_keys": out.EnvKeys}
	pubKey := p.AppEnvEncryptKey
	if p.OnChain {
		if r.Signer == nil {
			return nil, errNoSigner
		}
		if err := d.connectChain(ctx); err != nil {
			return nil, err
		}
		kmsAddr := common.HexToAddress(p.KMSContract)
		dcfg, err := d.deployConfig(kmsAddr)
		if err != nil {
			return nil, err
		}
		sim, err := d.chain.SimulateDeployApp(ctx, r.Signer.Address(), dcfg, cfg.Tx)
		if err != nil {
			return nil, fmt.Errorf("simulate the AppAuth deployment: %w", err)
		}
		out.Simulation = sim
		out.PredictedAppID = sim.PredictedAppID.Hex()
		out.Review.Signer = r.Signer.Address().Hex()
		out.Review.OwnerKind = OwnerEOA
		if sim.Owner != r.Signer.Address() {
			// Another owner (--owner SAFE) approves what comes later.
			if out.Review.OwnerKind, _, err = ownerKind(ctx, d.chain, sim.Owner); err != nil {
				return nil, err
			}
		}
		if cfg.Timelock != nil {
			tc := d.timelockConfig()
			out.Review.OwnerKind = OwnerTimelock
			w := fmt.Sprintf("--timelock: a TimelockController (delay %ds, proposer %s, open execution, no admin) is deployed first and owns the AppAuth; its ~1.6M gas is not in the estimate, and the simulation used the signer as the owner", tc.MinDelay, tc.Proposers[0].Hex())
			out.Warnings = append(out.Warnings, w)
			d.say("warning: %s", w)
		}
		if sim.MaxCost != nil {
			out.EstimatedCostWei = sim.MaxCost.String()
			out.EstimatedCostETH = deployer.FormatEther(sim.MaxCost)
		}
		d.say("✓ factory call simulated: gas %d, at most %s ETH", sim.GasLimit, out.EstimatedCostETH)
		req["app_id"] = out.PredictedAppID
		req["contract_address"] = out.PredictedAppID
		req["deployer_address"] = r.Signer.Address().Hex()
		// The app's env key only exists once the AppAuth does; encrypt to a
		// throwaway key to prove the env is within the limits.
		throwaway, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		pubKey = hex.EncodeToString(throwaway.PublicKey().Bytes())
	} else {
		req["app_id"] = p.AppID
	}
	if p.OnChain || len(in.env) > 0 {
		if _, err := kms.EncryptEnv(in.env, pubKey); err != nil {
			return nil, fmt.Errorf("encrypt the env: %w", err)
		}
	}
	out.CommitRequest = req
	d.say("✓ dry run complete: nothing was sent on-chain and nothing was committed")
	return out, nil
}

// BatchDryRunResult is --dry-run for a batch: every app's dry run, in file
// order, and the most the batch's AppAuth deployments can cost together.
type BatchDryRunResult struct {
	DryRun           bool            `json:"dry_run"`
	Apps             []*DryRunResult `json:"apps"`
	EstimatedCostWei string          `json:"estimated_cost_wei,omitempty"`
	EstimatedCostETH string          `json:"estimated_cost_eth,omitempty"`
}

// appIDAssigned stands in for an app id a batch dry run cannot predict.
const appIDAssigned = "(assigned when the AppAuth is deployed)"

// DryRunBatch dry-runs every app of a batch: each is checked before anything
// else happens, then provisioned and simulated (at most batchWorkers at
// once). Nothing is sent, committed or journaled. On top of the per-app
// checks it refuses a batch whose total cost the signer cannot pay, which
// each app alone might pass, and it predicts each app's id in batch order.
func (r *Runner) DryRunBatch(ctx context.Context, base Config, apps []BatchApp) (*BatchDryRunResult, error) {
	runs, err := r.batchRuns(base, apps)
	if err != nil {
		return nil, err
	}
	out := &BatchDryRunResult{DryRun: true, Apps: make([]*DryRunResult, len(apps))}
	errs := make([]error, len(apps))
	idx := make([]int, len(apps))
	for i := range idx {
		idx[i] = i
	}
	parallel(idx, func(i int) {
		d := runs[i]
		if out.Apps[i], errs[i] = d.Runner.dryRunResult(ctx, d.cfg, d.in); errs[i] != nil {
			errs[i] = fmt.Errorf("app %q: %w", apps[i].Name, errs[i])
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	total := new(big.Int)
	var chainID uint64
	var onChain []*DryRunResult
	for i, dr := range out.Apps {
		sim := dr.Simulation
		if sim == nil {
			continue
		}
		if chainID != 0 && sim.ChainID != chainID {
			return nil, fmt.Errorf("app %q: %w: its KMS is on chain %d, the batch's first on-chain app on %d: deploy them in separate batches", apps[i].Name, ErrChainMismatch, sim.ChainID, chainID)
		}
		chainID = sim.ChainID
		onChain = append(onChain, dr)
		if sim.MaxCost != nil {
			total.Add(total, sim.MaxCost)
		}
	}
	if chainID == 0 {
		return out, nil
	}
	out.EstimatedCostWei, out.EstimatedCostETH = total.String(), deployer.FormatEther(total)
	chain, err := deployer.Dial(ctx, r.RPCURL)
	if err != nil {
		return nil, err
	}
	defer chain.Close()
	have, err := chain.Eth().BalanceAt(ctx, r.Signer.Address(), nil)
	if err != nil {
		return nil, fmt.Errorf("read the signer's balance: %w", err)
	}
	if have.Cmp(total) < 0 {
		return nil, &deployer.InsufficientFundsError{Account: r.Signer.Address(), ChainID: chainID, Need: total, Have: have}
	}
	if err := predictBatchAppIDs(ctx, chain, onChain); err != nil {
		return nil, err
	}
	for _, dr := range onChain {
		if dr.PredictedAppID != "" {
			r.say("[%s] app id will be %s if nothing else deploys through the KMS first", dr.Name, dr.PredictedAppID)
		}
	}
	r.say("✓ batch dry run: %d app(s), AppAuths at most %s ETH in all; nothing was sent", len(apps), out.EstimatedCostETH)
	return out, nil
}

// predictBatchAppIDs gives each app the id it gets when the batch's
// deployments are mined in order with no other deployment through the same
// KMS in between. Every simulation sees today's chain and so predicts the
// same next id; but the factory creates each AppAuth proxy with CREATE, so
// the k-th deployment through a KMS gets the CREATE address for the KMS's
// nonce + k. That rule is checked against the simulation first; where it
// does not hold (another factory design), no id is predicted.
func predictBatchAppIDs(ctx context.Context, chain *deployer.Client, apps []*DryRunResult) error {
	next := map[common.Address]uint64{}
	unknown := map[common.Address]bool{}
	for _, dr := range apps {
		sim := dr.Simulation
		n, seen := next[sim.KMS]
		if !seen && !unknown[sim.KMS] {
			nonce, err := chain.Eth().NonceAt(ctx, sim.KMS, nil)
			if err != nil {
				return fmt.Errorf("read the KMS contract's nonce: %w", err)
			}
			if crypto.CreateAddress(sim.KMS, nonce) == sim.PredictedAppID {
				n = nonce
			} else {
				unknown[sim.KMS] = true
			}
		}
		if unknown[sim.KMS] {
			dr.PredictedAppID = ""
			dr.CommitRequest["app_id"] = appIDAssigned
			dr.CommitRequest["contract_address"] = appIDAssigned
			continue
		}
		id := crypto.CreateAddress(sim.KMS, n)
		next[sim.KMS] = n + 1
		sim.PredictedAppID = id
		dr.PredictedAppID = id.Hex()
		dr.CommitRequest["app_id"] = id.Hex()
		dr.CommitRequest["contract_address"] = id.Hex()
	}
	return nil
}

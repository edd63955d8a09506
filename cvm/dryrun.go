package cvm

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
)

// DryRunResult is what --dry-run shows instead of deploying.
type DryRunResult struct {
	Name        string                        `json:"name"`
	DryRun      bool                          `json:"dry_run"`
	ComposeHash string                        `json:"compose_hash"`
	DeviceID    string                        `json:"device_id,omitempty"`
	KMSID       string                        `json:"kms_id,omitempty"`
	OnChain     bool                          `json:"on_chain"`
	Simulation  *deployer.AppDeploySimulation `json:"appauth_simulation,omitempty"`
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
}

// DryRun is Deploy with cfg.DryRun forced on.
func (r *Runner) DryRun(ctx context.Context, cfg Config) (*DryRunResult, error) {
	in, err := cfg.load()
	if err != nil {
		return nil, err
	}
	return r.dryRunResult(ctx, cfg, in)
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
	out := &DryRunResult{Name: cfg.Name, DryRun: true, EnvKeys: in.envKeys, Warnings: in.warnings}
	if out.EnvKeys == nil {
		out.EnvKeys = []string{}
	}
	d.say("→ dry run: provisioning %q (no gas is spent, nothing is committed)", cfg.Name)
	if err := d.provision(ctx); err != nil {
		return nil, err
	}
	p := d.j.Provision
	out.ComposeHash, out.DeviceID, out.KMSID, out.OnChain = p.ComposeHash, p.DeviceID, p.KMSID, p.OnChain
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
		if sim.MaxCost != nil {
			out.EstimatedCostWei = sim.MaxCost.String()
			out.EstimatedCostETH = deployer.FormatEther(sim.MaxCost)
		}
		d.say("✓ factory call simulated: app id would be %s, gas %d, at most %s ETH", out.PredictedAppID, sim.GasLimit, out.EstimatedCostETH)
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

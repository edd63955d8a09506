package cvm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
)

// ProvisionFile is what `cvmdeploy provision` saves and `cvmdeploy commit`
// reads: phase one's answer, for workflows that run the phases in separate
// jobs (a multisig deploying the AppAuth in between).
type ProvisionFile struct {
	Name        string         `json:"name"`
	APIPrefix   string         `json:"api_prefix"`
	EnvKeys     []string       `json:"env_keys"`
	Provision   *ProvisionStep `json:"provision"`
	Fingerprint string         `json:"fingerprint"`
	// Expectation is what the app-compose must hold (the user's inputs), so
	// that commit can check the committed document in another job.
	Expectation *kms.ComposeExpectation `json:"expectation,omitempty"`
}

// Provision runs only phase one and returns what phase two needs.
func (r *Runner) Provision(ctx context.Context, cfg Config) (*ProvisionFile, error) {
	in, err := cfg.load()
	if err != nil {
		return nil, err
	}
	d := &run{Runner: r.unjournaled(), cfg: cfg, in: in, res: &Result{Name: cfg.Name}, j: &Journal{}}
	for _, w := range in.warnings {
		d.say("warning: %s", w)
	}
	if err := d.provision(ctx); err != nil {
		return nil, err
	}
	keys := in.envKeys
	if keys == nil {
		keys = []string{}
	}
	exp := d.expectation()
	return &ProvisionFile{Name: cfg.Name, APIPrefix: r.API.BaseURL(), EnvKeys: keys, Provision: d.j.Provision, Fingerprint: in.fingerprint, Expectation: &exp}, nil
}

// SaveProvisionFile writes f to path (0600: it names the app, not secrets,
// but there is no reason for others to read it).
func SaveProvisionFile(path string, f *ProvisionFile) error {
	data, err := marshalFile(f)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// LoadProvisionFile reads what SaveProvisionFile wrote.
func LoadProvisionFile(path string) (*ProvisionFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read the provision file: %v", ErrInvalidConfig, err)
	}
	var f ProvisionFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %s is not a provision file: %v", ErrInvalidConfig, path, err)
	}
	if f.Provision == nil || f.Provision.ComposeHash == "" {
		return nil, fmt.Errorf("%w: %s has no provision result (write it with `cvmdeploy provision --out`)", ErrInvalidConfig, path)
	}
	return &f, nil
}

// CommitConfig is phase two on its own: the AppAuth exists (deployed by a
// multisig, a script, or `cvmdeploy app deploy`), commit the CVM.
type CommitConfig struct {
	Provision *ProvisionFile
	// AppID of the deployed AppAuth (on-chain KMS); ContractAddress
	// defaults to it, DeployerAddress to the zero address when unknown.
	AppID           string
	ContractAddress string
	DeployerAddress string
	EnvFiles        []string
	EnvFlags        []string
	Wait            bool
	// Tx applies to an owner call the commit may make (allowing a checked
	// compose hash, or revoking one that breaks the rule).
	Tx deployer.TxOptions

	InsecureSkipKeyVerification bool
}

// Commit fetches and verifies the app's env key, encrypts the env and
// commits. The env's key set must be the one provisioned (it is part of the
// compose hash).
func (r *Runner) Commit(ctx context.Context, cfg CommitConfig) (*Result, error) {
	pf := cfg.Provision
	if pf == nil || pf.Provision == nil {
		return nil, fmt.Errorf("%w: a provision file is required", ErrInvalidConfig)
	}
	cc := Config{Name: pf.Name, EnvFiles: cfg.EnvFiles, EnvFlags: cfg.EnvFlags, Wait: cfg.Wait, Tx: cfg.Tx, InsecureSkipKeyVerification: cfg.InsecureSkipKeyVerification}
	env, err := kms.LoadEnv(cfg.EnvFiles, cfg.EnvFlags)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	in := &inputs{env: env, envKeys: kms.Keys(env)}
	if !slices.Equal(in.envKeys, pf.EnvKeys) && !(len(in.envKeys) == 0 && len(pf.EnvKeys) == 0) {
		return nil, fmt.Errorf("%w: the env keys %v differ from the provisioned ones %v; they are part of the compose hash: provision again with this env", ErrInvalidConfig, in.envKeys, pf.EnvKeys)
	}
	d := &run{Runner: r.unjournaled(), cfg: cc, in: in, res: &Result{Name: pf.Name}, j: &Journal{Provision: pf.Provision}, expect: pf.Expectation}
	defer d.closeChain()
	if p := pf.Provision; p.OnChain {
		trust, err := d.trustKMS(p.ChainID, p.KMSContract)
		if err != nil {
			return nil, err
		}
		p.KMSTrust = trust
	}
	d.fillFromProvision()
	pubKey := pf.Provision.AppEnvEncryptKey
	if pf.Provision.OnChain {
		if !common.IsHexAddress(cfg.AppID) {
			return nil, fmt.Errorf("%w: --app-id %q is not an address (the AppAuth's address)", ErrInvalidConfig, cfg.AppID)
		}
		app := common.HexToAddress(cfg.AppID)
		contract := app
		if cfg.ContractAddress != "" {
			if !common.IsHexAddress(cfg.ContractAddress) {
				return nil, fmt.Errorf("%w: --contract-address %q is not an address", ErrInvalidConfig, cfg.ContractAddress)
			}
			contract = common.HexToAddress(cfg.ContractAddress)
		}
		deployerAddr := common.Address{}
		if cfg.DeployerAddress != "" {
			if !common.IsHexAddress(cfg.DeployerAddress) {
				return nil, fmt.Errorf("%w: --deployer-address %q is not an address", ErrInvalidConfig, cfg.DeployerAddress)
			}
			deployerAddr = common.HexToAddress(cfg.DeployerAddress)
		}
		d.j.App = &AppStep{AppID: app.Hex(), ContractAddress: contract.Hex(), DeployerAddress: deployerAddr.Hex()}
		d.fillFromApp()
		if err := d.connectChain(ctx); err != nil {
			return nil, err
		}
		if pubKey, err = d.appKey(ctx); err != nil {
			return nil, err
		}
	} else {
		d.res.AppID = pf.Provision.AppID
	}
	return d.res, d.commitAndWait(ctx, pubKey)
}

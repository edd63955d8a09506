package cvm

import (
	"context"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// UpdateConfig is a change to a running CVM: a new compose file, a new env,
// or both.
type UpdateConfig struct {
	// CVM is the CVM's id, UUID, name or app id.
	CVM                 string
	ComposeFile         string
	PreLaunchScriptFile string
	EnvFiles            []string
	EnvFlags            []string
	// PrepareOnly asks for the commit token and the on-chain calls, for a
	// multisig owner, and sends no transaction.
	PrepareOnly bool
	ChainID     uint64
	Tx          deployer.TxOptions
	Wait        bool
	// AllowMissingEnv lets ${VAR} references without a value through.
	AllowMissingEnv             bool
	InsecureSkipKeyVerification bool
}

// UpdateResult is the outcome of an update.
type UpdateResult struct {
	CVMID         string `json:"cvm_id"`
	AppID         string `json:"app_id"`
	ComposeHash   string `json:"compose_hash,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	// OnChain lists the transactions sent (or, with --prepare-only, to send).
	OnChain []OnChainCall `json:"onchain_calls,omitempty"`
	// CommitToken is set with --prepare-only: pass it to commit-update once
	// the multisig executed OnChain.
	CommitToken string   `json:"commit_token,omitempty"`
	ChainID     uint64   `json:"chain_id,omitempty"`
	Status      string   `json:"status"`
	Warnings    []string `json:"warnings,omitempty"`
}

// OnChainCall is one owner-only call on the AppAuth.
type OnChainCall struct {
	Function string `json:"function"`
	To       string `json:"to"`
	Data     string `json:"data"`
	TxHash   string `json:"tx_hash,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
}

// Update changes a CVM's compose and/or env. When the new compose hash must
// be allowed on-chain (HTTP 465), it adds the device and the hash to the
// AppAuth with the signer (what is already allowed on-chain is not sent
// again, so a re-run pays nothing twice) and confirms; with PrepareOnly it
// stops at the commit token and the calls a multisig must make.
func (r *Runner) Update(ctx context.Context, cfg UpdateConfig) (*UpdateResult, error) {
	if strings.TrimSpace(cfg.CVM) == "" {
		return nil, fmt.Errorf("%w: --cvm is required (the CVM id, UUID, name or app id)", ErrInvalidConfig)
	}
	if cfg.ComposeFile == "" && len(cfg.EnvFiles) == 0 && len(cfg.EnvFlags) == 0 && cfg.PreLaunchScriptFile == "" {
		return nil, fmt.Errorf("%w: nothing to update: pass --compose, --pre-launch-script, --env-file or --env", ErrInvalidConfig)
	}
	if err := cfg.Tx.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	compose, preLaunch, err := readComposePayload(cfg.ComposeFile, cfg.PreLaunchScriptFile)
	if err != nil {
		return nil, err
	}
	patch := phala.PatchCVMRequest{PreLaunchScript: preLaunch}
	if cfg.ComposeFile != "" {
		patch.DockerComposeFile = &compose
	}
	envGiven := len(cfg.EnvFiles) > 0 || len(cfg.EnvFlags) > 0
	var env []kms.EnvVar
	if envGiven {
		if env, err = kms.LoadEnv(cfg.EnvFiles, cfg.EnvFlags); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		// Updates replace the env as a whole; the key set becomes the new
		// allowed_envs, which is part of the compose hash.
		patch.AllowedEnvs = kms.Keys(env)
		if patch.AllowedEnvs == nil {
			patch.AllowedEnvs = []string{}
		}
	}
	res := &UpdateResult{Status: "accepted"}
	if compose != "" && envGiven {
		provided := map[string]bool{}
		for _, k := range patch.AllowedEnvs {
			provided[k] = true
		}
		if missing := MissingComposeVars(compose, provided); len(missing) > 0 {
			msg := fmt.Sprintf("the compose file uses %s but the new env does not provide %s", strings.Join(missing, ", "), plural(len(missing), "it", "them"))
			if !cfg.AllowMissingEnv {
				return nil, fmt.Errorf("%w: %s (pass them, give a default like ${VAR:-value}, or use --allow-missing-env)", ErrInvalidConfig, msg)
			}
			res.Warnings = append(res.Warnings, msg)
		}
	}
	say := func(format string, args ...any) {
		if r.Progress != nil {
			r.Progress(format, args...)
		}
	}

	cur, err := r.API.GetCVM(ctx, cfg.CVM)
	if err != nil {
		return nil, fmt.Errorf("look up CVM %s: %w", cfg.CVM, err)
	}
	res.CVMID = cfg.CVM
	if cur.AppID != nil {
		res.AppID = *cur.AppID
	}
	onChain := cur.KMSInfo != nil && cur.KMSInfo.OnChain()
	var chain *deployer.Client
	if onChain {
		if r.RPCURL == "" {
			return nil, fmt.Errorf("%w: CVM %s uses an on-chain KMS: pass --rpc-url (or set ETH_RPC_URL)", ErrInvalidConfig, cfg.CVM)
		}
		if chain, err = deployer.Dial(ctx, r.RPCURL); err != nil {
			return nil, err
		}
		defer chain.Close()
		chain.ExpectChainID = uint64(*cur.KMSInfo.ChainID)
		res.ChainID = chain.ExpectChainID
	}
	if envGiven {
		key, err := r.updateEnvKey(ctx, cur, chain, cfg)
		if err != nil {
			return nil, err
		}
		enc, err := kms.EncryptEnv(env, key)
		if err != nil {
			return nil, fmt.Errorf("encrypt the env: %w", err)
		}
		patch.EncryptedEnv = &enc
		say("✓ env encrypted locally (%d variables)", len(env))
	}

	say("→ updating CVM %s", cfg.CVM)
	out, err := r.API.UpdateCVM(ctx, cfg.CVM, patch, phala.UpdateOptions{PrepareOnly: cfg.PrepareOnly})
	if err != nil {
		return nil, fmt.Errorf("update CVM %s: %w", cfg.CVM, err)
	}
	if out.Accepted != nil {
		res.CorrelationID = out.Accepted.CorrelationID
		say("✓ update accepted (no on-chain change needed)")
		return res, r.waitUpdated(ctx, cfg, res)
	}
	reg := out.Registration
	res.ComposeHash = reg.ComposeHash
	if reg.AppID != "" {
		res.AppID = reg.AppID
	}
	if chain == nil {
		return nil, fmt.Errorf("the service asks to register compose hash %s on-chain, but CVM %s reports no on-chain KMS", reg.ComposeHash, cfg.CVM)
	}
	app, err := appAddress(res.AppID)
	if err != nil {
		return nil, err
	}
	hash, err := hexBytes32(reg.ComposeHash)
	if err != nil {
		return nil, fmt.Errorf("465 answer compose_hash: %w", err)
	}
	q := deployer.AppInfoQuery{App: app, ComposeHash: &hash}
	var device [32]byte
	if reg.DeviceID != "" {
		if device, err = hexBytes32(reg.DeviceID); err != nil {
			return nil, fmt.Errorf("465 answer device_id: %w", err)
		}
		q.DeviceID = &device
	}
	// What is already allowed is read from the chain itself, not from the
	// service's onchain_status: it decides what we pay for.
	info, err := chain.AppInfo(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read AppAuth %s: %w", app.Hex(), err)
	}
	var calls []deployer.AppCall
	if q.DeviceID != nil && !info.AllowAnyDevice && (info.DeviceAllowed == nil || !*info.DeviceAllowed) {
		calls = append(calls, deployer.AddDeviceCall(device))
	}
	hashAllowed := info.ComposeHashAllowed != nil && *info.ComposeHashAllowed
	if !hashAllowed {
		calls = append(calls, deployer.AddComposeHashCall(hash))
	}
	for _, c := range calls {
		res.OnChain = append(res.OnChain, OnChainCall{Function: c.Name, To: app.Hex(), Data: hexutil.Encode(c.Data)})
	}
	if cfg.PrepareOnly {
		res.CommitToken = reg.CommitToken
		res.Status = "prepared"
		say("✓ prepared: have the owner (%s) execute %d call(s) on %s, then run commit-update with the token", info.Owner.Hex(), len(calls), app.Hex())
		return res, nil
	}
	if r.Signer == nil {
		return nil, fmt.Errorf("%w: compose hash %s must be allowed on AppAuth %s: set PRIVATE_KEY (or --private-key-file, --keystore), or use --prepare-only for a multisig owner", ErrInvalidConfig, reg.ComposeHash, app.Hex())
	}
	if len(calls) > 0 && r.Confirm != nil {
		names := make([]string, len(calls))
		for i, c := range calls {
			names[i] = c.Name
		}
		if err := r.Confirm(ctx, res.ChainID, fmt.Sprintf("send %s to AppAuth %s", strings.Join(names, " and "), app.Hex())); err != nil {
			return res, err
		}
	}
	txHash := phala.AlreadyRegistered
	for i, c := range calls {
		opts := cfg.Tx
		opts.OnSent = func(h common.Hash) { say("→ %s sent: %s", c.Name, h.Hex()) }
		tr, err := chain.SendAppCall(ctx, r.Signer, app, c, opts)
		if err != nil {
			return res, fmt.Errorf("%s on %s: %w", c.Name, app.Hex(), err)
		}
		res.OnChain[i].TxHash = tr.TxHash.Hex()
		txHash = tr.TxHash.Hex()
		say("✓ %s mined in block %d", c.Name, tr.BlockNumber)
	}
	if hashAllowed {
		say("✓ compose hash %s is already allowed on-chain: nothing to send", shortHex(reg.ComposeHash))
	}
	acc, err := r.API.ConfirmUpdate(ctx, cfg.CVM, reg.ComposeHash, txHash)
	if err != nil {
		return res, fmt.Errorf("confirm the update: %w", err)
	}
	res.CorrelationID = acc.CorrelationID
	say("✓ update confirmed")
	return res, r.waitUpdated(ctx, cfg, res)
}

// updateEnvKey returns the key to encrypt a CVM's new env to: the on-chain
// KMS's key for the app (verified against the chain), or the cloud KMS's.
func (r *Runner) updateEnvKey(ctx context.Context, cur *phala.CVM, chain *deployer.Client, cfg UpdateConfig) (string, error) {
	if chain == nil {
		if cur.EncryptedEnvPubkey == nil || *cur.EncryptedEnvPubkey == "" {
			return "", fmt.Errorf("CVM %s has no encrypted_env_pubkey to encrypt the new env to", cfg.CVM)
		}
		return *cur.EncryptedEnvPubkey, nil
	}
	if cur.AppID == nil {
		return "", fmt.Errorf("CVM %s has no app id", cfg.CVM)
	}
	ki := cur.KMSInfo
	key, err := r.API.AppPubKey(ctx, ki.Ref(), *cur.AppID)
	if err != nil {
		return "", fmt.Errorf("fetch the app's env key: %w", err)
	}
	if cfg.InsecureSkipKeyVerification {
		return key.PublicKey, nil
	}
	root, err := chain.KMSRootKey(ctx, common.HexToAddress(*ki.KMSContractAddress))
	if err != nil {
		return "", fmt.Errorf("read the KMS root key on-chain: %w", err)
	}
	p := kms.VerifyParams{AppID: *cur.AppID, PublicKey: key.PublicKey, Signature: key.Signature, RootKey: root}
	if err := kms.VerifyAppKey(p); err != nil {
		return "", fmt.Errorf("%w: %w; nothing was encrypted or sent", ErrKeyVerification, err)
	}
	return key.PublicKey, nil
}

func (r *Runner) waitUpdated(ctx context.Context, cfg UpdateConfig, res *UpdateResult) error {
	if !cfg.Wait {
		return nil
	}
	st, err := r.WaitRunning(ctx, cfg.CVM)
	if st.Status != "" {
		res.Status = st.Status
	}
	return err
}

func appAddress(id string) (common.Address, error) {
	n, err := phala.NormalizeAppID(id)
	if err != nil {
		return common.Address{}, fmt.Errorf("app id %q: %w", id, err)
	}
	return common.HexToAddress("0x" + n), nil
}

// CommitUpdate finishes a prepared update once its on-chain calls are done
// (by a multisig, typically): POST /cvms/{id}/commit-update.
func (r *Runner) CommitUpdate(ctx context.Context, cvmID, token, composeHash, txHash string) (*phala.CommitUpdateResponse, error) {
	if cvmID == "" || token == "" || composeHash == "" || txHash == "" {
		return nil, fmt.Errorf("%w: commit-update needs --cvm, --token, --compose-hash and --transaction-hash", ErrInvalidConfig)
	}
	return r.API.CommitUpdate(ctx, cvmID, phala.CommitUpdateRequest{Token: token, ComposeHash: composeHash, TransactionHash: txHash})
}

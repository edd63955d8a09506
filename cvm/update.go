package cvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// Steps of an update, in order; they name its journal boundaries.
const (
	UpdateStepBase     = "update-base"     // the current document, checked against the chain
	UpdateStepPrepare  = "update-prepare"  // PATCH with X-Prepare-Only: the new hash and commit token
	UpdateStepVerify   = "update-verify"   // the new hash is the current document with the user's changes
	UpdateStepApprove  = "update-approve"  // addDevice/addComposeHash mined (or already allowed)
	UpdateStepCommit   = "update-commit"   // commit-update accepted
	UpdateStepTx       = "update-tx"       // an owner call signed, before it is broadcast
	UpdateStepAccepted = "update-accepted" // no on-chain change was needed: applied at once
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
	// ComposeCheck "off" approves the cloud's new hash unchecked; any other
	// value (the default) checks it against the current document plus the
	// user's changes before anything is approved.
	ComposeCheck string
	// Fresh forgets the journal of an earlier, unfinished run of this update.
	Fresh bool
	// WaitApproval follows the chain until an owner that is not the signer
	// (a Safe, a timelock) has allowed the hash and device, executing a
	// ready timelock operation itself, then commits; WaitTimeout bounds it
	// (0: only the context does). Without it such an owner ends the run
	// with ErrApprovalPending.
	WaitApproval bool
	WaitTimeout  time.Duration
	// PollInterval is how often the chain is read while waiting (0:
	// DefaultApprovalPoll).
	PollInterval time.Duration
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
	CommitToken string `json:"commit_token,omitempty"`
	ChainID     uint64 `json:"chain_id,omitempty"`
	// Owner is the AppAuth's owner, who must approve the calls.
	Owner string `json:"owner,omitempty"`
	// SafeProposal is set when the calls were proposed to the owner's Safe.
	SafeProposal *SafeProposalResult `json:"safe_proposal,omitempty"`
	// Approver must act when it is not the owner: a timelock's proposer.
	Approver string `json:"approver,omitempty"`
	// ApprovalTxHash is the transaction that allowed the hash (the last
	// owner call, or the log's transaction when another account made it).
	ApprovalTxHash string `json:"approval_tx_hash,omitempty"`
	// Timelock is the operation through a timelock owner.
	Timelock *TimelockStatus `json:"timelock,omitempty"`
	// KMSTrust and ComposeVerified say how the KMS and the new compose hash
	// were established (see Result).
	KMSTrust        string `json:"kms_trust,omitempty"`
	ComposeVerified string `json:"compose_verified,omitempty"`
	// KeyVerified: the new env was encrypted to a key verified against the
	// KMS root key on-chain (an update with an env, on an on-chain KMS).
	KeyVerified bool     `json:"kms_key_verified,omitempty"`
	Status      string   `json:"status"`
	Resumed     []string `json:"resumed_steps,omitempty"`
	Journal     string   `json:"journal,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	// Review is what a review page shows beyond these fields (the
	// documents before and after, the chain's state); not in --json.
	Review *UpdateReview `json:"-"`
}

// OnChainCall is one owner-only call on the AppAuth.
type OnChainCall struct {
	Function string `json:"function"`
	To       string `json:"to"`
	Data     string `json:"data"`
	TxHash   string `json:"tx_hash,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
}

// update is the state of one Update call.
type update struct {
	*Runner
	cfg     UpdateConfig
	patch   phala.PatchCVMRequest
	env     []kms.EnvVar
	envGive bool
	changes kms.ComposeChanges
	j       *UpdateJournal
	path    string
	res     *UpdateResult
	cur     *phala.CVM
	chain   *deployer.Client
	app     common.Address
	// sentPatch is the last PATCH body sent (the env in it encrypted).
	sentPatch *phala.PatchCVMRequest
}

// Update changes a CVM's compose and/or env as journaled steps: read the
// current document and check that the chain allows it; prepare the update
// (the service answers the new compose hash and a commit token); check that
// the new hash is exactly the current document with the user's changes;
// allow the node's device and the hash on the AppAuth through its owner;
// commit with the token; wait. A re-run resumes at the first step not done
// and never approves or commits twice. With PrepareOnly it stops after the
// check, with the token and the calls the owner must make.
func (r *Runner) Update(ctx context.Context, cfg UpdateConfig) (*UpdateResult, error) {
	u, err := r.newUpdate(cfg)
	if err != nil {
		return nil, err
	}
	if err := u.openJournal(); err != nil {
		return nil, err
	}
	defer func() {
		if u.chain != nil {
			u.chain.Close()
		}
	}()
	if err := u.lookup(ctx); err != nil {
		return u.res, err
	}
	if err := u.readBase(ctx); err != nil {
		return u.res, err
	}
	if err := u.prepare(ctx); err != nil {
		return u.res, err
	}
	if u.j.Accepted != "" {
		u.res.CorrelationID = u.j.Accepted
		u.fillReviewDocs()
		return u.res, u.finish(ctx)
	}
	if err := u.verifyNew(); err != nil {
		return u.res, err
	}
	u.fillReviewDocs()
	if cfg.PrepareOnly {
		calls, info, err := u.neededCalls(ctx)
		if err != nil {
			return u.res, err
		}
		u.fillReviewChain(ctx, info)
		if err := u.handOverPrepared(ctx, calls); err != nil {
			return u.res, err
		}
		if err := u.planTimelock(ctx, calls, info.Owner); err != nil {
			return u.res, err
		}
		u.res.CommitToken = u.j.Prepared.CommitToken
		u.res.Status = "prepared"
		who := "the owner (" + info.Owner.Hex() + ")"
		if u.res.Approver != "" {
			who = "the timelock's proposer (" + u.res.Approver + ")"
		}
		u.say("✓ prepared: have %s make %d call(s), then run commit-update --cvm %s (--wait-approval waits for them) or with the token", who, len(u.res.OnChain), u.cfg.CVM)
		return u.res, nil
	}
	if err := u.approve(ctx); err != nil {
		return u.res, err
	}
	if err := u.commit(ctx); err != nil {
		return u.res, err
	}
	return u.res, u.finish(ctx)
}

// newUpdate reads and checks everything local; it sends nothing.
func (r *Runner) newUpdate(cfg UpdateConfig) (*update, error) {
	if strings.TrimSpace(cfg.CVM) == "" {
		return nil, fmt.Errorf("%w: --cvm is required (the CVM id, UUID, name or app id)", ErrInvalidConfig)
	}
	if cfg.ComposeFile == "" && len(cfg.EnvFiles) == 0 && len(cfg.EnvFlags) == 0 && cfg.PreLaunchScriptFile == "" {
		return nil, fmt.Errorf("%w: nothing to update: pass --compose, --pre-launch-script, --env-file or --env", ErrInvalidConfig)
	}
	if err := cfg.Tx.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.PrepareOnly && cfg.WaitApproval {
		return nil, fmt.Errorf("%w: --prepare-only stops before the approval and --wait-approval waits for it: drop one (finish a prepared update with commit-update --wait-approval)", ErrInvalidConfig)
	}
	if err := checkComposeMode(cfg.ComposeCheck); err != nil {
		return nil, err
	}
	compose, preLaunch, err := readComposePayload(cfg.ComposeFile, cfg.PreLaunchScriptFile)
	if err != nil {
		return nil, err
	}
	u := &update{Runner: r, cfg: cfg, res: &UpdateResult{CVMID: cfg.CVM, Status: "accepted"}}
	u.patch.PreLaunchScript = preLaunch
	u.changes.PreLaunchScript = preLaunch
	if cfg.ComposeFile != "" {
		u.patch.DockerComposeFile = &compose
		u.changes.DockerCompose = &compose
	}
	u.envGive = len(cfg.EnvFiles) > 0 || len(cfg.EnvFlags) > 0
	if u.envGive {
		if u.env, err = kms.LoadEnv(cfg.EnvFiles, cfg.EnvFlags); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		// Updates replace the env as a whole; the key set becomes the new
		// allowed_envs, which is part of the compose hash.
		u.patch.AllowedEnvs = kms.Keys(u.env)
		if u.patch.AllowedEnvs == nil {
			u.patch.AllowedEnvs = []string{}
		}
		u.changes.AllowedEnvs = u.patch.AllowedEnvs
	}
	if compose != "" && u.envGive {
		provided := map[string]bool{}
		for _, k := range u.patch.AllowedEnvs {
			provided[k] = true
		}
		if missing := MissingComposeVars(compose, provided); len(missing) > 0 {
			msg := fmt.Sprintf("the compose file uses %s but the new env does not provide %s", strings.Join(missing, ", "), plural(len(missing), "it", "them"))
			if !cfg.AllowMissingEnv {
				return nil, fmt.Errorf("%w: %s (pass them, give a default like ${VAR:-value}, or use --allow-missing-env)", ErrInvalidConfig, msg)
			}
			u.res.Warnings = append(u.res.Warnings, msg)
		}
	}
	return u, nil
}

// fingerprint ties an update journal to its inputs (env keys, not values).
func (u *update) fingerprint() string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(u.cfg.CVM)
	if u.patch.DockerComposeFile != nil {
		field("compose=" + *u.patch.DockerComposeFile)
	}
	if u.patch.PreLaunchScript != nil {
		field("pre=" + *u.patch.PreLaunchScript)
	}
	if u.envGive {
		field("env=" + strings.Join(u.patch.AllowedEnvs, ","))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lookup reads the CVM, checks its KMS against the trust anchors and
// connects to its chain. It changes nothing.
func (u *update) lookup(ctx context.Context) error {
	cur, err := u.API.GetCVM(ctx, u.cfg.CVM)
	if err != nil {
		return fmt.Errorf("look up CVM %s: %w", u.cfg.CVM, err)
	}
	u.cur = cur
	if cur.AppID != nil {
		u.res.AppID = *cur.AppID
	}
	contract, chainID, _, onChain := kmsOf(cur)
	if !onChain {
		return nil
	}
	trust, err := u.trustKMS(chainID, contract)
	if err != nil {
		return err
	}
	u.res.KMSTrust = trust
	u.res.ChainID = chainID
	if u.cfg.ChainID != 0 && u.cfg.ChainID != chainID {
		return fmt.Errorf("%w: --chain says chain %d but CVM %s's KMS lives on chain %d", ErrChainMismatch, u.cfg.ChainID, u.cfg.CVM, chainID)
	}
	if u.RPCURL == "" {
		return fmt.Errorf("%w: CVM %s uses an on-chain KMS: pass --rpc-url (or set ETH_RPC_URL)", ErrInvalidConfig, u.cfg.CVM)
	}
	if u.app, err = appAddress(u.res.AppID); err != nil {
		return err
	}
	if u.chain, err = deployer.Dial(ctx, u.RPCURL); err != nil {
		return err
	}
	u.chain.ExpectChainID = chainID
	return nil
}

func (u *update) onChain() bool { return u.chain != nil }

// readBase is step 1: the CVM's current app-compose, which must be a
// document the chain allows (its hash in one of the known serializations
// is allowed on the AppAuth). It is the base of the update's document.
func (u *update) readBase(ctx context.Context) error {
	if u.j.Base != nil {
		u.res.Resumed = append(u.res.Resumed, UpdateStepBase)
		return nil
	}
	if !u.onChain() || u.cfg.ComposeCheck == ComposeCheckOff {
		return nil // nothing is approved on-chain from it
	}
	cur, err := u.readCurrentDoc(ctx, u.chain, u.app, u.cfg.CVM, true)
	if err != nil {
		return err
	}
	f := cur.allowed()
	if f == nil {
		return fmt.Errorf("%w: CVM %s's current app-compose hashes to %s, and AppAuth %s allows none of them: it is not a document the chain approved, so no update is built on it", ErrComposeRule, u.cfg.CVM, cur.tried(), u.app.Hex())
	}
	u.j.Base = &UpdateBase{ComposeHash: f.Hash, Serialization: string(f.Serialization), Doc: string(f.Bytes)}
	u.say("✓ current app-compose read: hash %s (%s) is allowed on AppAuth %s", shortHex(f.Hash), f.Serialization, u.app.Hex())
	return u.save(UpdateStepBase)
}

func parseComposeObject(raw []byte) (map[string]any, error) {
	v, err := kms.ParseJSON(raw)
	if err != nil {
		return nil, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: an app-compose must be a JSON object", kms.ErrInvalidJSON)
	}
	return doc, nil
}

// prepare is step 2: encrypt the new env to the app's verified key, and
// PATCH with X-Prepare-Only. The service answers the new compose hash, the
// node's device and a one-time commit token (465), or applies an update
// that needs nothing on-chain at once (202).
func (u *update) prepare(ctx context.Context) error {
	if p := u.j.Prepared; p != nil {
		u.res.Resumed = append(u.res.Resumed, UpdateStepPrepare)
		u.fillPrepared()
		return nil
	}
	if u.j.Accepted != "" {
		u.res.Resumed = append(u.res.Resumed, UpdateStepAccepted)
		return nil
	}
	reg, acc, err := u.send(ctx)
	if err != nil {
		return err
	}
	if acc != nil {
		u.j.Accepted = acc.CorrelationID
		u.say("✓ update accepted (no on-chain change needed)")
		return u.save(UpdateStepAccepted)
	}
	u.j.Prepared = &UpdatePrepared{ComposeHash: reg.ComposeHash, DeviceID: reg.DeviceID, AppID: reg.AppID, CommitToken: reg.CommitToken}
	u.j.Patch = u.sentPatch
	u.fillPrepared()
	u.say("✓ prepared: new compose hash %s", shortHex(reg.ComposeHash))
	return u.save(UpdateStepPrepare)
}

// send encrypts the env and sends the PATCH; it checks that a 465 names
// this CVM's app and KMS.
func (u *update) send(ctx context.Context) (*phala.ComposeHashRegistrationRequired, *phala.UpdateAccepted, error) {
	patch := u.patch
	if u.envGive {
		key, err := u.envKey(ctx)
		if err != nil {
			return nil, nil, err
		}
		enc, err := kms.EncryptEnv(u.env, key)
		if err != nil {
			return nil, nil, fmt.Errorf("encrypt the env: %w", err)
		}
		patch.EncryptedEnv = &enc
		u.say("✓ env encrypted locally (%d variables)", len(u.env))
	}
	u.say("→ preparing the update of CVM %s", u.cfg.CVM)
	return u.sendPatch(ctx, patch)
}

// sendPatch sends a prepared PATCH and checks that a 465 names this CVM's
// app and KMS.
func (u *update) sendPatch(ctx context.Context, patch phala.PatchCVMRequest) (*phala.ComposeHashRegistrationRequired, *phala.UpdateAccepted, error) {
	u.sentPatch = &patch
	out, err := u.API.UpdateCVM(ctx, u.cfg.CVM, patch, phala.UpdateOptions{PrepareOnly: u.onChain()})
	if err != nil {
		return nil, nil, fmt.Errorf("update CVM %s: %w", u.cfg.CVM, err)
	}
	if out.Accepted != nil {
		return nil, out.Accepted, nil
	}
	reg := out.Registration
	if !u.onChain() {
		return nil, nil, fmt.Errorf("the service asks to register compose hash %s on-chain, but CVM %s reports no on-chain KMS", reg.ComposeHash, u.cfg.CVM)
	}
	if reg.AppID != "" {
		if a, err := appAddress(reg.AppID); err != nil || a != u.app {
			return nil, nil, fmt.Errorf("%w: the service's 465 names app %s, but CVM %s belongs to app %s; nothing was approved", ErrComposeRule, reg.AppID, u.cfg.CVM, u.app.Hex())
		}
	}
	if ki := reg.KMSInfo; ki != nil && ki.KMSContractAddress != nil {
		if want, _, _, _ := kmsOf(u.cur); !strings.EqualFold(*ki.KMSContractAddress, want) {
			return nil, nil, fmt.Errorf("%w: the service's 465 names KMS %s, but CVM %s uses %s; nothing was approved", ErrKMSUntrusted, *ki.KMSContractAddress, u.cfg.CVM, want)
		}
	}
	if reg.CommitToken == "" {
		return nil, nil, fmt.Errorf("the service's 465 carries no commit token for CVM %s", u.cfg.CVM)
	}
	return reg, nil, nil
}

// envKey is the key to encrypt the new env to: the on-chain KMS's key for
// the app (verified against the trusted KMS on the chain, the one key check
// every flow uses), or the cloud KMS's.
func (u *update) envKey(ctx context.Context) (string, error) {
	if !u.onChain() {
		if u.cur.EncryptedEnvPubkey == nil || *u.cur.EncryptedEnvPubkey == "" {
			return "", fmt.Errorf("CVM %s has no encrypted_env_pubkey to encrypt the new env to", u.cfg.CVM)
		}
		return *u.cur.EncryptedEnvPubkey, nil
	}
	contract, chainID, ref, _ := kmsOf(u.cur)
	ref, err := u.kmsRef(ctx, ref, chainID, contract)
	if err != nil {
		return "", err
	}
	step, err := u.verifiedAppKey(ctx, u.chain, keyCheck{
		KMSRef: ref, KMSContract: common.HexToAddress(contract), ChainID: chainID,
		AppID: u.app.Hex(), Skip: u.cfg.InsecureSkipKeyVerification,
	})
	if err != nil {
		return "", err
	}
	u.res.KeyVerified = step.Verified
	return step.PublicKey, nil
}

func (u *update) fillPrepared() {
	p := u.j.Prepared
	u.res.ComposeHash = p.ComposeHash
	if v := u.j.Verified; v != "" {
		u.res.ComposeVerified = v
	}
}

// verifyNew is step 3: the prepared compose hash must be the hash of the
// current (approved) document with exactly the user's changes. A match
// proves every byte that gets approved.
func (u *update) verifyNew() error {
	if u.j.Verified != "" {
		u.res.Resumed = append(u.res.Resumed, UpdateStepVerify)
		u.res.ComposeVerified = u.j.Verified
		return nil
	}
	p := u.j.Prepared
	if u.cfg.ComposeCheck == ComposeCheckOff {
		u.say("warning: --compose-check=off: compose hash %s is approved as the cloud answered it; NOTHING checks that it is your current document with your changes", p.ComposeHash)
		u.j.Verified = ComposeUnchecked
		u.res.ComposeVerified = ComposeUnchecked
		return u.save(UpdateStepVerify)
	}
	base, err := parseComposeObject([]byte(u.j.Base.Doc))
	if err != nil {
		return fmt.Errorf("the journal's base document is damaged: %w", err)
	}
	next := kms.ApplyComposeChanges(base, u.changes)
	order := []kms.Serialization{kms.Serialization(u.j.Base.Serialization), kms.SerializationCompact, kms.SerializationIndent4}
	var tried []string
	for _, s := range order {
		b, err := kms.SerializeAppCompose(next, s)
		if err != nil {
			return fmt.Errorf("%w: the updated app-compose: %w", ErrComposeRule, err)
		}
		sum := sha256.Sum256(b)
		if h := hex.EncodeToString(sum[:]); h == p.ComposeHash {
			u.j.Verified = ComposeRead
			u.res.ComposeVerified = ComposeRead
			u.say("✓ new compose hash %s checked: it is your current document with your changes (%s)", shortHex(h), s)
			return u.save(UpdateStepVerify)
		} else {
			tried = append(tried, fmt.Sprintf("%s (%s)", h, s))
		}
	}
	return fmt.Errorf("%w: the service's new compose hash %s is not the hash of CVM %s's current document with your changes (that is %s): the cloud would run something else; nothing was approved on-chain", ErrComposeRule, p.ComposeHash, u.cfg.CVM, strings.Join(tried[:1], ""))
}

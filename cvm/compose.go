package cvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// --compose-check modes: how a deployment establishes the compose hash it
// allows on-chain.
const (
	// ComposeCheckAuto predicts the document from the user's inputs and the
	// pinned server additions; when that cannot decide, it approves only
	// after reading the committed document.
	ComposeCheckAuto = "auto"
	// ComposeCheckPredict refuses, before anything is sent, a hash that is
	// not predicted.
	ComposeCheckPredict = "predict"
	// ComposeCheckAfterCommit approves the cloud's hash with the AppAuth,
	// then reads and checks the committed document, and revokes the hash on
	// a violation (for clouds that refuse a commit whose hash is not yet
	// allowed).
	ComposeCheckAfterCommit = "after-commit"
	// ComposeCheckOff approves the cloud's hash unchecked.
	ComposeCheckOff = "off"
)

// ComposeCheckModes lists the --compose-check values.
var ComposeCheckModes = []string{ComposeCheckAuto, ComposeCheckPredict, ComposeCheckAfterCommit, ComposeCheckOff}

// How the compose hash allowed on-chain was established (compose_verified).
const (
	// ComposePredicted: cvmdeploy built the document from the user's inputs
	// and the pinned server additions, and its sha256 is the hash.
	ComposePredicted = "predicted"
	// ComposeRead: the document was read back (an update's current document
	// plus the user's changes) and hashes to the hash.
	ComposeRead = "read"
	// ComposeApprovedAfterRead: the hash was allowed on-chain only after the
	// committed document was read and met the rule.
	ComposeApprovedAfterRead = "approved-after-read"
	// ComposeCheckedAfterCommit: the hash was allowed first; the committed
	// document was read afterwards and met the rule (else it was revoked).
	ComposeCheckedAfterCommit = "checked-after-commit"
	// ComposeUnchecked: nothing was checked (--compose-check=off, or a cloud
	// KMS whose document broke the rule: the operator holds its keys anyway).
	ComposeUnchecked = "unchecked"
	// composePending: approve-after-read is planned and not done yet.
	composePending = "pending"
)

// Plans journaled with the provision (what the AppAuth is deployed with).
const (
	planPredicted        = ComposePredicted
	planApproveAfterRead = "approve-after-read"
	planAfterCommit      = ComposeCheckAfterCommit
	planOff              = ComposeCheckOff
)

// ErrComposeRule: the cloud's app-compose breaks the rule (a field that is
// neither the user's input nor a pinned server addition, an unknown
// pre-launch script, a document that does not hash to the hash). Nothing
// that breaks it stays allowed on-chain.
var ErrComposeRule = errors.New("the cloud's app-compose breaks the rule")

// ErrApprovalPending: an on-chain approval waits for the app's owner (a
// Safe, another key); re-running the same command resumes once it is done.
var ErrApprovalPending = errors.New("waiting for the app owner's approval")

func checkComposeMode(m string) error {
	for _, ok := range ComposeCheckModes {
		if m == ok || m == "" {
			return nil
		}
	}
	return fmt.Errorf("%w: --compose-check %q: want one of %s", ErrInvalidConfig, m, strings.Join(ComposeCheckModes, ", "))
}

// expectation is what the user asked the app-compose to hold: every field
// cvmdeploy sends in the provision request.
func (d *run) expectation() kms.ComposeExpectation {
	if d.expect != nil {
		return *d.expect
	}
	keys := d.in.envKeys
	if keys == nil {
		keys = []string{}
	}
	return kms.ComposeExpectation{
		DockerCompose:   d.in.compose,
		PreLaunchScript: d.in.preLaunch,
		AllowedEnvs:     keys,
		Names:           []string{""}, // compose_file.name, as the official CLI sends it
		PublicLogs:      d.cfg.PublicLogs,
		PublicSysinfo:   d.cfg.PublicSysinfo,
		PublicTcbinfo:   true,
		GatewayEnabled:  true,
		KMSEnabled:      true,
	}
}

// planCompose decides, right after provisioning and before anything is
// sent, how the provision's compose hash will be established; the plan is
// journaled with the provision. For an on-chain KMS it also checks that
// the KMS contract is trusted.
func (d *run) planCompose(step *ProvisionStep) error {
	if step.OnChain {
		trust, err := d.trustKMS(step.ChainID, step.KMSContract)
		if err != nil {
			return err
		}
		step.KMSTrust = trust
	}
	mode := d.cfg.ComposeCheck
	if mode == ComposeCheckOff {
		d.say("warning: --compose-check=off: compose hash %s is allowed on-chain as the cloud answered it; NOTHING checks that it is the document you sent (a cloud could add a service or a pre-launch script that reads your app's secrets)", step.ComposeHash)
		step.ComposePlan = planOff
		return nil
	}
	cands, err := d.Trust.pins().Predict(d.expectation())
	if err != nil {
		return fmt.Errorf("predict the app-compose: %w", err)
	}
	if m := kms.MatchPrediction(cands, step.ComposeHash); m != nil {
		step.ComposePlan = planPredicted
		step.ComposeSerialization = string(m.Serialization)
		d.say("✓ compose hash %s predicted: it is the %s document (%s) built from your inputs", shortHex(step.ComposeHash), m.Template, m.Serialization)
		return nil
	}
	if !step.OnChain {
		// Nothing is approved on-chain for a cloud KMS: read it back after
		// the commit and say what was found.
		step.ComposePlan = planAfterCommit
		return nil
	}
	switch mode {
	case ComposeCheckPredict:
		return fmt.Errorf("%w: the provision's compose hash %s is none of the %d documents cvmdeploy built from your inputs and the pinned server additions, and --compose-check=predict allows only a predicted hash; nothing was sent (pass your own --pre-launch-script so the document is fully determined, or use --compose-check=auto)", ErrComposeRule, step.ComposeHash, len(cands))
	case ComposeCheckAfterCommit:
		step.ComposePlan = planAfterCommit
	default:
		step.ComposePlan = planApproveAfterRead
		d.say("→ compose hash %s is not predicted from your inputs (the cloud adds content only known by hash, e.g. its default pre-launch script): the AppAuth is deployed without it, and it is allowed only after the committed document has been read and checked", shortHex(step.ComposeHash))
	}
	return nil
}

// plan is the journaled plan; journals from before plans existed deployed
// the AppAuth with the hash, which after-commit checks.
func (d *run) plan() string {
	if p := d.j.Provision.ComposePlan; p != "" {
		return p
	}
	return planAfterCommit
}

// composeVerified is the result's compose_verified for the state reached.
func (d *run) composeVerified() string {
	switch d.plan() {
	case planPredicted:
		return ComposePredicted
	case planOff:
		return ComposeUnchecked
	}
	if r := d.j.ComposeRead; r != nil {
		return r.Verified
	}
	return composePending
}

// afterCommit finishes the compose check the plan left for after the
// commit: read the committed document, check it, and (approve-after-read)
// only then allow its hash and restart the CVM that could not get its keys,
// or (after-commit) revoke a hash that breaks the rule.
func (d *run) afterCommit(ctx context.Context) error {
	defer func() { d.res.ComposeVerified = d.composeVerified() }()
	p := d.j.Provision
	switch plan := d.plan(); {
	case plan == planPredicted || plan == planOff:
		return nil
	case !p.OnChain:
		if err := d.readCommitted(ctx, ComposeCheckedAfterCommit); err != nil {
			if !errors.Is(err, ErrComposeRule) {
				return err
			}
			msg := fmt.Sprintf("cloud KMS: %v (nothing is approved on-chain for a cloud KMS; its operator holds the app's keys)", err)
			d.res.Warnings = append(d.res.Warnings, msg)
			d.say("warning: %s", msg)
		}
		return nil
	case plan == planAfterCommit:
		if err := d.readCommitted(ctx, ComposeCheckedAfterCommit); err != nil {
			if errors.Is(err, ErrComposeRule) {
				return d.revoke(ctx, err)
			}
			return err
		}
		return nil
	default: // approve-after-read
		if err := d.readCommitted(ctx, ComposeApprovedAfterRead); err != nil {
			if errors.Is(err, ErrComposeRule) {
				return fmt.Errorf("%w; nothing was approved on-chain: AppAuth %s allows no compose hash, so the CVM cannot get its keys", err, d.j.App.AppID)
			}
			return err
		}
		if err := d.approveCompose(ctx); err != nil {
			return err
		}
		return d.restartIfRefused(ctx)
	}
}

// readCommitted reads the committed CVM's app-compose and checks it against
// the provision's hash and the rule; verified names what passing means.
func (d *run) readCommitted(ctx context.Context, verified string) error {
	if r := d.j.ComposeRead; r != nil {
		d.res.Resumed = append(d.res.Resumed, StepComposeRead)
		d.res.PreLaunch = r.PreLaunch
		return nil
	}
	p := d.j.Provision
	if d.expect == nil && d.in.compose == "" {
		// A provision file from before expectations were saved: nothing to
		// compare the document with.
		d.j.ComposeRead = &ComposeReadStep{Verified: ComposeUnchecked}
		d.say("warning: the provision file does not record your inputs (made by an older cvmdeploy), so the committed app-compose cannot be checked")
		return nil
	}
	raw, err := d.API.ComposeFile(ctx, d.j.Commit.CVMID)
	if err != nil {
		return fmt.Errorf("read the committed app-compose of CVM %s: %w", d.j.Commit.CVMID, err)
	}
	v, err := d.Trust.pins().VerifyAppCompose(raw, p.ComposeHash, d.expectation())
	if err != nil {
		return composeRuleError(err)
	}
	d.j.ComposeRead = &ComposeReadStep{Verified: verified, Serialization: string(v.Serialization), PreLaunch: v.PreLaunch}
	d.res.PreLaunch = v.PreLaunch
	d.say("✓ committed app-compose read and checked: every field is yours or a pinned server addition (pre-launch script: %s)", v.PreLaunch)
	return d.save(StepComposeRead)
}

// composeRuleError marks a failed document check as a compose-rule
// violation: a document that breaks the rule, or one that does not hash to
// the hash, proves nothing and is never approved.
func composeRuleError(err error) error {
	var mm *kms.ComposeHashMismatchError
	if errors.Is(err, kms.ErrComposeRule) || errors.As(err, &mm) || errors.Is(err, kms.ErrInvalidJSON) {
		return fmt.Errorf("%w: %w", ErrComposeRule, err)
	}
	return err
}

// approveCompose allows the checked compose hash on the AppAuth through its
// owner: sent by the signer when it owns the AppAuth, otherwise left to the
// owner as a pending call.
func (d *run) approveCompose(ctx context.Context) error {
	if a := d.j.Approved; a != nil {
		d.res.Resumed = append(d.res.Resumed, StepApprove)
		d.res.ApproveTxHash = a.TxHash
		d.res.Timelock = timelockStatus(d.j.Approve, nil)
		return nil
	}
	if d.j.Approve.sent() || (d.j.Approve != nil && d.j.Approve.Timelock != nil) {
		d.res.Resumed = append(d.res.Resumed, StepApproveTx)
	}
	txHash, owner, err := d.setComposeHash(ctx, true)
	d.res.Timelock = timelockStatus(d.j.Approve, err)
	if err != nil {
		return d.pendingResult(err)
	}
	if txHash == "" {
		d.say("✓ compose hash %s is already allowed on AppAuth %s", shortHex(d.j.Provision.ComposeHash), d.j.App.AppID)
	}
	d.j.Approved = &ApprovedStep{TxHash: txHash, Owner: owner.Hex()}
	d.res.ApproveTxHash = txHash
	return d.save(StepApprove)
}

// revoke removes a compose hash that the committed document shows breaks
// the rule, through the owner: at once when the signer owns the AppAuth,
// otherwise as a pending call. The violation is the error either way.
func (d *run) revoke(ctx context.Context, violation error) error {
	txHash, _, err := d.setComposeHash(ctx, false)
	if err != nil {
		return fmt.Errorf("%w; %w", violation, d.pendingResult(err))
	}
	if txHash == "" {
		return fmt.Errorf("%w; compose hash %s is not allowed on AppAuth %s", violation, d.j.Provision.ComposeHash, d.j.App.AppID)
	}
	d.res.RevokeTxHash = txHash
	return fmt.Errorf("%w; revoked: removeComposeHash mined in transaction %s", violation, txHash)
}

// setComposeHash allows (or removes) the provision's compose hash on the
// AppAuth through routeOwnerCalls, unless the chain already says so. It
// returns the transaction that did it ("" when nothing had to be sent) and
// the owner.
func (d *run) setComposeHash(ctx context.Context, allow bool) (string, common.Address, error) {
	p, app := d.j.Provision, common.HexToAddress(d.j.App.AppID)
	hash, err := hexBytes32(p.ComposeHash)
	if err != nil {
		return "", common.Address{}, fmt.Errorf("provision compose_hash: %w", err)
	}
	if err := d.needChain(ctx); err != nil {
		return "", common.Address{}, err
	}
	journal, step, what, call := &d.j.Approve, StepApproveTx, "allow the checked compose hash", deployer.AddComposeHashCall(hash)
	if !allow {
		journal, step, what, call = &d.j.Revoke, StepRevokeTx, "REVOKE the compose hash now", deployer.RemoveComposeHashCall(hash)
		d.say("→ revoking compose hash %s on AppAuth %s", shortHex(p.ComposeHash), app.Hex())
	} else {
		d.say("→ allowing compose hash %s on AppAuth %s", shortHex(p.ComposeHash), app.Hex())
	}
	if *journal == nil {
		*journal = &OwnerCalls{}
	}
	var owner common.Address
	txHash, err := d.routeOwnerCalls(ctx, ownerRequest{
		chain: d.chain, chainID: p.ChainID, app: app, tx: d.cfg.Tx,
		journal: *journal, save: d.save, step: step, what: what, wait: d.approvalWait(),
		needed: func(ctx context.Context) ([]deployer.AppCall, common.Address, error) {
			info, err := d.chain.AppInfo(ctx, deployer.AppInfoQuery{App: app, ComposeHash: &hash})
			if err != nil {
				return nil, common.Address{}, fmt.Errorf("read AppAuth %s: %w", app.Hex(), err)
			}
			owner = info.Owner
			if allowed := info.ComposeHashAllowed != nil && *info.ComposeHashAllowed; allowed == allow {
				return nil, info.Owner, nil
			}
			return []deployer.AppCall{call}, info.Owner, nil
		},
	})
	return txHash, owner, err
}

// approvalWait is --wait-approval's bound for this deployment (nil
// without it).
func (d *run) approvalWait() *approvalWait {
	if !d.cfg.WaitApproval {
		return nil
	}
	return d.Runner.approvalWait(d.cfg.WaitTimeout, d.cfg.PollInterval)
}

// pendingResult copies the owner's pending calls into the result.
func (d *run) pendingResult(err error) error {
	if pe, ok := pendingOf(err); ok {
		d.res.Owner = pe.Owner.Hex()
		d.res.PendingCalls = append(d.res.PendingCalls, pe.Calls...)
		d.res.SafeProposal = pe.Safe.Result()
		d.res.Status = "awaiting-approval"
		if pe.Approver != (common.Address{}) {
			d.res.Approver = pe.Approver.Hex()
		}
	}
	return err
}

// needChain connects to the KMS's chain if this run has not yet (a resumed
// run that skipped the deployment, or the commit command).
func (d *run) needChain(ctx context.Context) error {
	if d.chain != nil {
		return nil
	}
	return d.connectChain(ctx)
}

// restartIfRefused waits for the CVM's first boot, which asked the KMS for
// its keys before the hash was allowed, and restarts it if the KMS refused,
// so that it boots again now that the hash is allowed.
func (d *run) restartIfRefused(ctx context.Context) error {
	if d.j.Restarted || d.j.Status == StepRunning {
		return nil
	}
	id := d.j.Commit.CVMID
	if d.cfg.WaitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.WaitTimeout)
		defer cancel()
	}
	st, err := d.WaitRunning(ctx, id)
	switch {
	case err == nil:
		d.j.Commit.Status = st.Status
		return nil
	case !errors.Is(err, ErrBootFailed):
		return err
	}
	d.say("→ restarting CVM %s: its first boot asked for keys before the compose hash was allowed (%s)", id, st.BootError)
	if err := d.API.RestartCVM(ctx, id); err != nil {
		return fmt.Errorf("restart CVM %s: %w", id, err)
	}
	d.j.Restarted = true
	d.j.Commit.Status = "restarting"
	d.res.Status = "restarting"
	return d.save(StepRestart)
}

// Attestation outcomes (attestation in --json).
const (
	AttestationMatches     = "matches"     // the measured app-compose hashes to the allowed hash
	AttestationNotPublic   = "not-public"  // the CVM does not publish its tcbinfo
	AttestationUnavailable = "unavailable" // the API offers no attestation for it
)

// CheckAttestation compares the app-compose a running CVM measured (its
// attestation's tcb_info.app_compose, where the API publishes it) with the
// compose hash that was allowed. A different document is a compose-rule
// violation; an attestation the API does not offer is only reported.
func (r *Runner) CheckAttestation(ctx context.Context, cvmID, wantHash string) (string, error) {
	state, got, err := r.attestedHash(ctx, cvmID)
	if err != nil || state != AttestationMatches {
		return state, err
	}
	want := strings.TrimPrefix(strings.ToLower(wantHash), "0x")
	if got != want {
		return "", fmt.Errorf("%w: the running CVM %s measured an app-compose with hash %s, not the allowed %s", ErrComposeRule, cvmID, got, want)
	}
	r.say("✓ attestation: the running CVM measured the app-compose whose hash is allowed (%s)", shortHex(got))
	return AttestationMatches, nil
}

// attestedHash reads a CVM's attestation and hashes the app-compose it
// measured. The state is AttestationMatches when there is a hash to compare
// (the caller decides with what), AttestationNotPublic when the CVM does not
// publish its tcbinfo, and AttestationUnavailable when the API offers no
// attestation (with an error when the API failed otherwise).
func (r *Runner) attestedHash(ctx context.Context, cvmID string) (state, hash string, err error) {
	att, err := r.API.CVMAttestation(ctx, cvmID)
	if err != nil {
		var ae *phala.APIError
		if errors.As(err, &ae) && (ae.IsNotFound() || ae.Status == 405 || ae.Status == 501) {
			return AttestationUnavailable, "", nil
		}
		return AttestationUnavailable, "", fmt.Errorf("read CVM %s's attestation: %w", cvmID, err)
	}
	if !att.IsPublic || att.TCBInfo == nil {
		return AttestationNotPublic, "", nil
	}
	sum := sha256.Sum256([]byte(att.TCBInfo.AppCompose))
	return AttestationMatches, hex.EncodeToString(sum[:]), nil
}

package cvm

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// FinishConfig finishes an update prepared on this machine (by `update
// --prepare-only`, or an update that stopped to wait for its owner): its
// journal holds the commit token, the checked compose hash, the device and
// the prepared request, so nothing else is needed.
type FinishConfig struct {
	// CVM is the CVM as the update named it (the journal is found by it).
	CVM     string
	ChainID uint64
	Tx      deployer.TxOptions
	// WaitApproval follows the chain until the owner allowed the hash and
	// device (executing a ready timelock operation itself when it may);
	// without it one look decides: commit, or ErrApprovalPending.
	WaitApproval bool
	WaitTimeout  time.Duration
	PollInterval time.Duration
	// Wait follows the CVM until it runs again.
	Wait bool
}

// FinishUpdate is commit-update from the journal: it checks the KMS again,
// has the compose hash and device allowed through the owner (routeOwnerCalls:
// a Safe's execution is awaited, a timelock operation executed once ready),
// takes the transaction that allowed them, and commits; an expired
// preparation (466) is prepared again with the same request and must answer
// the same, approved hash. It is journaled like the update it finishes.
func (r *Runner) FinishUpdate(ctx context.Context, cfg FinishConfig) (*UpdateResult, error) {
	if strings.TrimSpace(cfg.CVM) == "" {
		return nil, fmt.Errorf("%w: --cvm is required", ErrInvalidConfig)
	}
	if err := cfg.Tx.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	u := &update{Runner: r, res: &UpdateResult{CVMID: cfg.CVM, Status: "accepted"}, cfg: UpdateConfig{
		CVM: cfg.CVM, ChainID: cfg.ChainID, Tx: cfg.Tx, Wait: cfg.Wait,
		WaitApproval: cfg.WaitApproval, WaitTimeout: cfg.WaitTimeout, PollInterval: cfg.PollInterval,
	}}
	if r.Journals.Dir == "" {
		return nil, fmt.Errorf("%w: commit-update without --token needs the journal of the update (no journal folder)", ErrInvalidConfig)
	}
	u.path = r.Journals.Path(r.API.BaseURL(), "update-"+cfg.CVM)
	u.res.Journal = u.path
	var j UpdateJournal
	found, err := r.Journals.load(u.path, &j, func() int { return j.Version })
	if err != nil {
		return nil, err
	}
	if !found || j.Prepared == nil || (j.Verified == "" && j.Committed == "") {
		return nil, fmt.Errorf("%w: no prepared update of CVM %q in %s: run `cvmdeploy update --cvm %s … --prepare-only` on this machine first (with the same --cvm), or pass --token, --compose-hash and --transaction-hash", ErrInvalidConfig, cfg.CVM, r.Journals.Dir, cfg.CVM)
	}
	u.j = &j
	r.say("finishing the update of CVM %s prepared at %s (compose hash %s)", cfg.CVM, j.StartedAt.Format(time.RFC3339), shortHex(j.Prepared.ComposeHash))
	defer func() {
		if u.chain != nil {
			u.chain.Close()
		}
	}()
	if err := u.lookup(ctx); err != nil {
		return u.res, err
	}
	if !u.onChain() {
		return u.res, fmt.Errorf("CVM %s reports no on-chain KMS: there is nothing to approve", cfg.CVM)
	}
	if a := j.Prepared.AppID; a != "" {
		if app, err := appAddress(a); err != nil || app != u.app {
			return u.res, fmt.Errorf("%w: the journal's update was prepared for app %s, but CVM %s belongs to app %s", ErrInvalidConfig, a, cfg.CVM, u.app.Hex())
		}
	}
	u.fillPrepared()
	if err := u.approve(ctx); err != nil {
		return u.res, err
	}
	if err := u.commit(ctx); err != nil {
		return u.res, err
	}
	return u.res, u.finish(ctx)
}

// handOverPrepared journals, for a prepared update, which calls the owner
// was asked for and from which block: commit-update then finds the
// transaction that made them, even when the owner made them before it
// started looking.
func (u *update) handOverPrepared(ctx context.Context, calls []deployer.AppCall) error {
	if len(calls) == 0 || (u.j.Calls != nil && u.j.Calls.Since != 0) {
		return nil
	}
	if u.j.Calls == nil {
		u.j.Calls = &OwnerCalls{}
	}
	var owner common.Address
	return u.handOver(ctx, u.ownerRequest(&owner), calls)
}

// planTimelock is --prepare-only's answer for a timelock owner: the
// AppAuth's calls cannot be made by anyone but the timelock, so the calls
// handed out are the operation's schedule (or, once scheduled, nothing
// until it is ready; then its execute), built and journaled here and
// never sent. commit-update executes that operation once it is ready.
func (u *update) planTimelock(ctx context.Context, calls []deployer.AppCall, owner common.Address) error {
	if len(calls) == 0 || (u.Signer != nil && owner == u.Signer.Address()) {
		return nil
	}
	isTL, err := u.chain.IsTimelock(ctx, owner)
	if err != nil || !isTL {
		return err
	}
	var o common.Address
	q := u.ownerRequest(&o)
	q.noSend = true
	_, pe, err := u.timelockStep(ctx, q, owner, calls)
	if err != nil {
		return err
	}
	u.res.Timelock = timelockStatus(u.j.Calls, pe)
	u.res.OnChain = pe.Calls
	if pe.Approver != (common.Address{}) {
		u.res.Approver = pe.Approver.Hex()
	}
	return nil
}

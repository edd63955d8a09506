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
)

// OwnerCalls journals owner-only calls on an AppAuth as they are made: the
// one signed but not yet known to be mined, and the hashes of those mined.
// When the owner is not the signer it also holds what the owner was asked
// for (Since, Wanted) and, for a timelock owner, the operation.
type OwnerCalls struct {
	Pending *OwnerTx    `json:"pending,omitempty"`
	Mined   []MinedCall `json:"mined,omitempty"`
	// Since is the head block when the calls were first found missing and
	// handed to another owner: the log that allowed them comes after it.
	Since uint64 `json:"since_block,omitempty"`
	// Wanted are the calls handed to the owner.
	Wanted []OnChainCall `json:"wanted,omitempty"`
	// Timelock is the operation scheduled (or to schedule) on a timelock
	// owner.
	Timelock *TimelockStep `json:"timelock,omitempty"`
	// Safe is the calls' proposal to the owner's Safe (--safe-propose).
	Safe *SafeProposal `json:"safe_proposal,omitempty"`
}

// MinedCall is an owner call that was mined.
type MinedCall struct {
	Function string `json:"function"`
	TxHash   string `json:"tx_hash"`
}

// OwnerTx is an owner call signed and journaled before it is broadcast.
type OwnerTx struct {
	Function string `json:"function"`
	TxStep
}

// last is the hash of the newest mined call ("" when none was sent).
func (o *OwnerCalls) last() string {
	if o == nil || len(o.Mined) == 0 {
		return ""
	}
	return o.Mined[len(o.Mined)-1].TxHash
}

// sent reports whether anything was signed for these calls (a
// transaction, or a proposal to a Safe).
func (o *OwnerCalls) sent() bool {
	return o != nil && (o.Pending != nil || len(o.Mined) > 0 || o.Safe != nil)
}

// ownerRequest is a change only the AppAuth's owner may make.
type ownerRequest struct {
	chain   *deployer.Client
	chainID uint64
	app     common.Address
	// needed reads from the chain which calls are still missing (what is
	// already allowed is never sent again) and who owns the AppAuth.
	needed func(ctx context.Context) ([]deployer.AppCall, common.Address, error)
	tx     deployer.TxOptions
	// journal holds the calls' progress; save writes it (step names the
	// journal boundary, for the crash tests' hook).
	journal *OwnerCalls
	save    func(step string) error
	step    string
	// what the calls do, for the prompt and the pending message.
	what string
	// wait, when set, follows the chain until the owner made the calls
	// (executing a ready timelock operation itself) instead of returning
	// an *ApprovalPendingError at once.
	wait *approvalWait
	// noSend plans without sending (--prepare-only): a timelock operation
	// is built and journaled, never scheduled or executed.
	noSend bool
}

// approvalWait bounds --wait-approval.
type approvalWait struct {
	deadline time.Time // zero: no bound but the context
	poll     time.Duration
}

// ApprovalPendingError is ErrApprovalPending with what the owner must do.
type ApprovalPendingError struct {
	Owner common.Address
	App   common.Address
	// Calls are what the approver must send: the AppAuth's calls, or, for
	// a timelock owner, the schedule (or execute) call on the timelock.
	Calls []OnChainCall
	What  string
	// Approver is who must act when it is not the owner itself: a
	// timelock's proposer (zero when unknown or anyone may act).
	Approver common.Address
	// Timelock describes the operation when the owner is a timelock.
	Timelock *TimelockPending
	// Waited is set when --wait-approval gave up after that long.
	Waited time.Duration
	// Safe is set when the calls were proposed to the owner's Safe.
	Safe *SafePending
}

// TimelockPending is the state of a timelock operation that is not done.
type TimelockPending struct {
	Address     common.Address
	OperationID common.Hash
	Salt        common.Hash
	// State is deployer.OpUnset (a proposer must schedule it),
	// OpWaiting (scheduled; executable from ETA) or OpReady (an executor
	// must execute it).
	State string
	// ETA is when the operation may execute (zero while unscheduled);
	// Delay the timelock's minimum delay.
	ETA   time.Time
	Delay time.Duration
}

func (e *ApprovalPendingError) Error() string {
	names := make([]string, len(e.Calls))
	for i, c := range e.Calls {
		names[i] = c.Function
	}
	waited := ""
	if e.Waited > 0 {
		waited = fmt.Sprintf(" (gave up waiting after %s)", e.Waited.Round(time.Second))
	}
	if sp := e.Safe; sp != nil {
		link := ""
		if sp.AppURL != "" {
			link = " or in the Safe app (" + sp.AppURL + ")"
		}
		return fmt.Sprintf("%v%s: %s on %s is proposed to Safe %s as Safe transaction %s (nonce %d, %d of %d confirmations): owners confirm it with `cvmdeploy safe sign --safe %s --safe-tx-hash %s`%s, anyone executes it with `cvmdeploy safe exec`, then re-run the same command to finish",
			ErrApprovalPending, waited, strings.Join(names, " and "), e.App.Hex(), sp.Safe.Hex(), sp.SafeTxHash.Hex(), sp.Nonce, sp.Confirmations, sp.Threshold, sp.Safe.Hex(), sp.SafeTxHash.Hex(), link)
	}
	if tl := e.Timelock; tl != nil {
		switch tl.State {
		case deployer.OpUnset:
			who := "a proposer of the timelock"
			if e.Approver != (common.Address{}) {
				who = "the timelock's proposer " + e.Approver.Hex()
			}
			return fmt.Sprintf("%v%s: AppAuth %s is owned by timelock %s; %s must %s: call %s on %s to schedule operation %s (calldata printed; with a Safe proposer, import the Transaction Builder file); it becomes executable %s after it is scheduled: re-run the same command then",
				ErrApprovalPending, waited, e.App.Hex(), tl.Address.Hex(), who, e.What, strings.Join(names, " and "), tl.Address.Hex(), tl.OperationID.Hex(), tl.Delay)
		case deployer.OpReady:
			return fmt.Sprintf("%v%s: timelock operation %s on %s is ready since %s: anyone allowed to execute it must call %s on %s; re-run the same command with a signer that may execute, or after it is executed",
				ErrApprovalPending, waited, tl.OperationID.Hex(), tl.Address.Hex(), tl.ETA.UTC().Format(time.RFC3339), strings.Join(names, " and "), tl.Address.Hex())
		default:
			return fmt.Sprintf("%v%s: still waiting for timelock %s: operation %s (to %s) is scheduled and becomes executable at %s; re-run the same command after that time (or pass --wait-approval to wait)",
				ErrApprovalPending, waited, tl.Address.Hex(), tl.OperationID.Hex(), e.What, tl.ETA.UTC().Format(time.RFC3339))
		}
	}
	return fmt.Sprintf("%v%s: the AppAuth's owner %s must %s: call %s on %s (calldata printed; with a Safe, import the Transaction Builder file), then re-run the same command to finish",
		ErrApprovalPending, waited, e.Owner.Hex(), e.What, strings.Join(names, " and "), e.App.Hex())
}

func (e *ApprovalPendingError) Is(target error) bool { return target == ErrApprovalPending }

// ErrOwnerState: the chain contradicts what the owner's approval should
// have done (an executed timelock operation that did not allow the calls,
// a journaled operation that is not what it says).
var ErrOwnerState = errors.New("the on-chain approval does not hold what it should")

// DefaultApprovalPoll is how often --wait-approval reads the chain.
const DefaultApprovalPoll = 5 * time.Second

// routeOwnerCalls makes owner-only calls through the AppAuth's owner: it is
// the one routing layer of every owner approval (deploy's approve-after-read
// and revocation, update, replicas). An owner that is the signer sends the
// missing calls, each journaled from the moment it is signed; a call signed
// by an earlier run is awaited (or its same bytes re-broadcast) instead of
// sending another. A Safe owner with Runner.Safe.Propose gets the calls
// proposed to its Transaction Service once (routeToSafe); a re-run reports
// that proposal until the Safe executed it, whose transaction is then the
// approval. A TimelockController owner gets an operation: scheduled
// by the signer when it is a proposer (else handed to the proposer as the
// schedule call), then, once its delay is over, executed by the signer
// (anyone may when execution is open); its id, salt and ETA are journaled.
// Any other owner gets the calls back. What must happen elsewhere comes
// back as an *ApprovalPendingError, unless q.wait follows the chain until it
// has happened. It returns the hash of the transaction that made the last
// call ("" when nothing had to be made).
func (r *Runner) routeOwnerCalls(ctx context.Context, q ownerRequest) (string, error) {
	start := r.now()
	for {
		if err := r.resumePendingOwnerTx(ctx, q); err != nil {
			return "", err
		}
		calls, owner, err := q.needed(ctx)
		if err != nil {
			return "", err
		}
		if len(calls) == 0 {
			if q.journal.Safe != nil {
				return r.safeApproval(ctx, q)
			}
			return r.approvalTx(ctx, q)
		}
		var pending *ApprovalPendingError
		switch {
		case r.Signer != nil && owner == r.Signer.Address():
			return r.sendOwnerCalls(ctx, q, calls)
		default:
			isTL, err := q.chain.IsTimelock(ctx, owner)
			if err != nil {
				return "", fmt.Errorf("read the AppAuth's owner %s: %w", owner.Hex(), err)
			}
			if err := r.handOver(ctx, q, calls); err != nil {
				return "", err
			}
			if isTL {
				progressed, pe, err := r.timelockStep(ctx, q, owner, calls)
				if err != nil {
					return "", err
				}
				if progressed {
					continue // something was sent: read the chain again
				}
				pending = pe
			} else {
				if pending, err = r.safeOrHandBack(ctx, q, owner, calls); err != nil {
					return "", err
				}
			}
		}
		if q.wait == nil {
			return "", pending
		}
		if err := r.pause(ctx, q.wait, pending, start); err != nil {
			return "", err
		}
	}
}

// safeOrHandBack is the pending state for an owner that is neither the
// signer nor a timelock: with --safe-propose (or a proposal journaled
// earlier) a Safe owner gets the calls proposed to its Transaction Service
// (routeToSafe); any other owner gets the calls back.
func (r *Runner) safeOrHandBack(ctx context.Context, q ownerRequest, owner common.Address, calls []deployer.AppCall) (*ApprovalPendingError, error) {
	if r.Safe.Propose || q.journal.Safe != nil {
		st, err := r.safeOwnerState(ctx, q.chain, owner)
		if err != nil {
			return nil, err
		}
		if st != nil {
			perr := r.routeToSafe(ctx, q, st, calls)
			if pe, ok := pendingOf(perr); ok {
				return pe, nil
			}
			return nil, perr
		}
		r.say("warning: --safe-propose: the AppAuth's owner %s is not a Safe; nothing was proposed", owner.Hex())
	}
	pe := &ApprovalPendingError{Owner: owner, App: q.app, What: q.what}
	for _, c := range calls {
		pe.Calls = append(pe.Calls, OnChainCall{Function: c.Name, To: q.app.Hex(), Data: hexutil.Encode(c.Data)})
	}
	return pe, nil
}

// pause sleeps until the next look at the chain: the poll interval, or
// less when a timelock operation becomes ready sooner. Past the deadline it
// returns the pending error (still exit 10: waiting, not failed).
func (r *Runner) pause(ctx context.Context, w *approvalWait, pending *ApprovalPendingError, start time.Time) error {
	d := w.poll
	if d <= 0 {
		d = DefaultApprovalPoll
	}
	if !w.deadline.IsZero() {
		left := w.deadline.Sub(r.now())
		if left <= 0 {
			pending.Waited = r.now().Sub(start)
			return pending
		}
		d = min(d, left)
	}
	if tl := pending.Timelock; tl != nil && tl.State == deployer.OpWaiting {
		if until := time.Until(tl.ETA); until > 0 && until < d {
			d = until
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// handOver journals, the first time calls are found missing for another
// owner, what was asked and from which block, so that the log that allowed
// them can be found later.
func (r *Runner) handOver(ctx context.Context, q ownerRequest, calls []deployer.AppCall) error {
	if q.journal.Since != 0 {
		return nil
	}
	head, err := q.chain.Eth().BlockNumber(ctx)
	if err != nil {
		return fmt.Errorf("eth_blockNumber: %w", err)
	}
	q.journal.Since = max(head, 1)
	q.journal.Wanted = nil
	for _, c := range calls {
		q.journal.Wanted = append(q.journal.Wanted, OnChainCall{Function: c.Name, To: q.app.Hex(), Data: hexutil.Encode(c.Data)})
	}
	return q.save(q.step)
}

// approvalTx is the transaction that made the last call of a request whose
// calls are all made: the one this tool sent, or, when another account
// made them (a Safe, a timelock executor), the one whose log shows it.
func (r *Runner) approvalTx(ctx context.Context, q ownerRequest) (string, error) {
	j := q.journal
	if n := len(j.Mined); n > 0 && j.Mined[n-1].Function != fnSchedule {
		return j.last(), nil
	}
	if j.Since == 0 || len(j.Wanted) == 0 {
		return j.last(), nil
	}
	for i := len(j.Wanted) - 1; i >= 0; i-- {
		call := deployer.AppCall{Name: j.Wanted[i].Function, Data: common.FromHex(j.Wanted[i].Data)}
		h, ok, err := q.chain.FindCallLog(ctx, q.app, call, j.Since)
		if err != nil {
			return "", err
		}
		if ok {
			r.say("✓ %s was made by transaction %s%s", call.Name, h.Hex(), r.explorerSuffix(q.chainID, h))
			return h.Hex(), nil
		}
	}
	return j.last(), nil
}

// sendOwnerCalls sends the missing calls from the signer, which owns the
// AppAuth, each journaled from the moment it is signed.
func (r *Runner) sendOwnerCalls(ctx context.Context, q ownerRequest, calls []deployer.AppCall) (string, error) {
	if r.Confirm != nil {
		names := make([]string, len(calls))
		for i, c := range calls {
			names[i] = c.Name
		}
		if err := r.Confirm(ctx, q.chainID, fmt.Sprintf("send %s to AppAuth %s", strings.Join(names, " and "), q.app.Hex())); err != nil {
			return "", err
		}
	}
	for _, c := range calls {
		tr, err := q.chain.SendAppCall(ctx, r.Signer, q.app, c, r.journaledOpts(q, c.Name))
		if err != nil {
			return "", fmt.Errorf("%s on %s: %w", c.Name, q.app.Hex(), err)
		}
		if err := r.recordMined(q, c.Name, tr); err != nil {
			return "", err
		}
	}
	return q.journal.last(), nil
}

// journaledOpts are q's transaction options with every signed variant of
// the call journaled before it is broadcast.
func (r *Runner) journaledOpts(q ownerRequest, name string) deployer.TxOptions {
	opts := q.tx
	opts.OnSigned = func(tx *types.Transaction) error {
		if q.journal.Pending == nil {
			q.journal.Pending = &OwnerTx{Function: name}
		}
		if err := q.journal.Pending.AddVariant(tx, r.Signer.Address(), r.now().UTC()); err != nil {
			return err
		}
		return q.save(q.step)
	}
	opts.OnSent = func(h common.Hash) { r.say("→ %s sent: %s%s", name, h.Hex(), r.explorerSuffix(q.chainID, h)) }
	return opts
}

// recordMined journals a mined call and clears the pending one.
func (r *Runner) recordMined(q ownerRequest, name string, tr *deployer.TxResult) error {
	q.journal.Mined = append(q.journal.Mined, MinedCall{Function: name, TxHash: tr.TxHash.Hex()})
	q.journal.Pending = nil
	if err := q.save(q.step); err != nil {
		return err
	}
	r.say("✓ %s mined in block %d", name, tr.BlockNumber)
	return nil
}

// resumePendingOwnerTx finishes a call signed by an earlier run.
func (r *Runner) resumePendingOwnerTx(ctx context.Context, q ownerRequest) error {
	t := q.journal.Pending
	if t == nil {
		return nil
	}
	r.say("… %s transaction %s was sent earlier: waiting for it instead of sending another", t.Function, t.Hash)
	rcpt, err := r.resumeOwnerTx(ctx, q, &t.TxStep)
	if err != nil {
		return fmt.Errorf("resume %s %s: %w", t.Function, t.Hash, err)
	}
	q.journal.Mined = append(q.journal.Mined, MinedCall{Function: t.Function, TxHash: rcpt.TxHash.Hex()})
	q.journal.Pending = nil
	if tl := q.journal.Timelock; tl != nil {
		tl.noteMined(t.Function, rcpt.TxHash.Hex())
	}
	return q.save(q.step)
}

// resumeOwnerTx finishes a journaled owner call (any variant's receipt, or
// the same bytes broadcast again); each replacement is journaled.
func (r *Runner) resumeOwnerTx(ctx context.Context, q ownerRequest, t *TxStep) (*types.Receipt, error) {
	tx, err := t.Signed()
	if err != nil {
		return nil, fmt.Errorf("the journal's raw transaction is damaged (%v): check %s on an explorer", err, t.Hash)
	}
	if r.Signer == nil {
		return nil, fmt.Errorf("%w: a journaled transaction from %s waits to be finished: give the same signer", ErrInvalidConfig, t.From)
	}
	opts := q.tx
	opts.OnSigned = func(tx *types.Transaction) error {
		if err := t.AddVariant(tx, r.Signer.Address(), r.now().UTC()); err != nil {
			return err
		}
		return q.save(q.step)
	}
	return q.chain.ResumeTx(ctx, r.Signer, tx, t.Variants(), opts)
}

func (r *Runner) explorerSuffix(chainID uint64, h common.Hash) string {
	if r.Explorer == nil {
		return ""
	}
	if u := r.Explorer(chainID, h); u != "" {
		return " (" + u + ")"
	}
	return ""
}

// pendingOf returns the calls of an *ApprovalPendingError, if err is one.
func pendingOf(err error) (*ApprovalPendingError, bool) {
	var pe *ApprovalPendingError
	ok := errors.As(err, &pe)
	return pe, ok
}

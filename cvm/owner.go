package cvm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// OwnerCalls journals owner-only calls on an AppAuth as they are made: the
// one signed but not yet known to be mined, and the hashes of those mined.
type OwnerCalls struct {
	Pending *OwnerTx    `json:"pending,omitempty"`
	Mined   []MinedCall `json:"mined,omitempty"`
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
}

// ApprovalPendingError is ErrApprovalPending with what the owner must do.
type ApprovalPendingError struct {
	Owner common.Address
	App   common.Address
	Calls []OnChainCall
	What  string
	// Safe is set when the calls were proposed to the owner's Safe.
	Safe *SafePending
}

func (e *ApprovalPendingError) Error() string {
	names := make([]string, len(e.Calls))
	for i, c := range e.Calls {
		names[i] = c.Function
	}
	if sp := e.Safe; sp != nil {
		link := ""
		if sp.AppURL != "" {
			link = " or in the Safe app (" + sp.AppURL + ")"
		}
		return fmt.Sprintf("%v: %s on %s is proposed to Safe %s as Safe transaction %s (nonce %d, %d of %d confirmations): owners confirm it with `cvmdeploy safe sign --safe %s --safe-tx-hash %s`%s, anyone executes it with `cvmdeploy safe exec`, then re-run the same command to finish",
			ErrApprovalPending, strings.Join(names, " and "), e.App.Hex(), sp.Safe.Hex(), sp.SafeTxHash.Hex(), sp.Nonce, sp.Confirmations, sp.Threshold, sp.Safe.Hex(), sp.SafeTxHash.Hex(), link)
	}
	return fmt.Sprintf("%v: the AppAuth's owner %s must %s: call %s on %s (calldata printed; with a Safe, import the Transaction Builder file), then re-run the same command to finish",
		ErrApprovalPending, e.Owner.Hex(), e.What, strings.Join(names, " and "), e.App.Hex())
}

func (e *ApprovalPendingError) Is(target error) bool { return target == ErrApprovalPending }

// routeOwnerCalls makes owner-only calls through the AppAuth's owner: it is
// the one routing layer of every owner approval (deploy's approve-after-read
// and revocation, update, replicas). An owner that is the signer sends the
// missing calls, each journaled from the moment it is signed; a call signed
// by an earlier run is awaited (or its same bytes re-broadcast) instead of
// sending another. A Safe owner with Runner.Safe.Propose gets the calls
// proposed to its Transaction Service once (routeToSafe); a re-run reports
// that proposal until the Safe executed it. Any other owner gets the calls
// back. Both wait as an *ApprovalPendingError. It returns the hash of the
// last call mined for the request, or of the Safe's execution ("" when
// nothing had to be sent).
func (r *Runner) routeOwnerCalls(ctx context.Context, q ownerRequest) (string, error) {
	if t := q.journal.Pending; t != nil {
		r.say("… %s transaction %s was sent earlier: waiting for it instead of sending another", t.Function, t.Hash)
		rcpt, err := r.resumeOwnerTx(ctx, q, &t.TxStep)
		if err != nil {
			return "", fmt.Errorf("resume %s %s: %w", t.Function, t.Hash, err)
		}
		q.journal.Mined = append(q.journal.Mined, MinedCall{Function: t.Function, TxHash: rcpt.TxHash.Hex()})
		q.journal.Pending = nil
		if err := q.save(q.step); err != nil {
			return "", err
		}
	}
	calls, owner, err := q.needed(ctx)
	if err != nil {
		return "", err
	}
	if len(calls) == 0 {
		if q.journal.Safe != nil {
			return r.safeApproval(ctx, q)
		}
		return q.journal.last(), nil
	}
	if r.Signer == nil || owner != r.Signer.Address() {
		if r.Safe.Propose || q.journal.Safe != nil {
			st, err := r.safeOwnerState(ctx, q.chain, owner)
			if err != nil {
				return "", err
			}
			if st != nil {
				return "", r.routeToSafe(ctx, q, st, calls)
			}
			r.say("warning: --safe-propose: the AppAuth's owner %s is not a Safe; nothing was proposed", owner.Hex())
		}
		pe := &ApprovalPendingError{Owner: owner, App: q.app, What: q.what}
		for _, c := range calls {
			pe.Calls = append(pe.Calls, OnChainCall{Function: c.Name, To: q.app.Hex(), Data: hexutil.Encode(c.Data)})
		}
		return "", pe
	}
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
		opts := q.tx
		opts.OnSigned = func(tx *types.Transaction) error {
			if q.journal.Pending == nil {
				q.journal.Pending = &OwnerTx{Function: c.Name}
			}
			if err := q.journal.Pending.AddVariant(tx, r.Signer.Address(), r.now().UTC()); err != nil {
				return err
			}
			return q.save(q.step)
		}
		opts.OnSent = func(h common.Hash) { r.say("→ %s sent: %s%s", c.Name, h.Hex(), r.explorerSuffix(q.chainID, h)) }
		tr, err := q.chain.SendAppCall(ctx, r.Signer, q.app, c, opts)
		if err != nil {
			return "", fmt.Errorf("%s on %s: %w", c.Name, q.app.Hex(), err)
		}
		q.journal.Mined = append(q.journal.Mined, MinedCall{Function: c.Name, TxHash: tr.TxHash.Hex()})
		q.journal.Pending = nil
		if err := q.save(q.step); err != nil {
			return "", err
		}
		r.say("✓ %s mined in block %d", c.Name, tr.BlockNumber)
	}
	return q.journal.last(), nil
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

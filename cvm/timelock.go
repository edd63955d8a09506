package cvm

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// The timelock functions the routing sends, as journaled call names.
const (
	fnSchedule = "schedule"
	fnExecute  = "execute"
)

// TimelockStep journals the operation that makes owner calls through a
// TimelockController owner: its calls, predecessor (none) and salt (random,
// so that the same calls can be scheduled again later: an id is usable
// once ever), and what happened to it.
type TimelockStep struct {
	Timelock    string        `json:"timelock"`
	OperationID string        `json:"operation_id"`
	Calls       []OnChainCall `json:"calls"`
	Predecessor string        `json:"predecessor"`
	Salt        string        `json:"salt"`
	// Delay is the delay it is (to be) scheduled with, in seconds.
	Delay uint64 `json:"delay"`
	// ETA is the chain time (unix seconds) from which it may execute.
	ETA uint64 `json:"eta,omitempty"`
	// Proposer is the timelock's only proposer, when it has one (found
	// once in its logs; empty when unknown).
	Proposer   string `json:"proposer,omitempty"`
	ScheduleTx string `json:"schedule_tx,omitempty"`
	ExecuteTx  string `json:"execute_tx,omitempty"`
	// SafeSchedule is the schedule call's proposal to the proposer's Safe
	// (--safe-propose), when a Safe proposes to the timelock.
	SafeSchedule *OwnerCalls `json:"safe_schedule,omitempty"`
}

// op rebuilds the operation and checks it against the journaled id.
func (s *TimelockStep) op() (deployer.TimelockOp, error) {
	op := deployer.TimelockOp{Predecessor: common.HexToHash(s.Predecessor), Salt: common.HexToHash(s.Salt)}
	for _, c := range s.Calls {
		if !common.IsHexAddress(c.To) {
			return op, fmt.Errorf("%w: the journal's timelock operation calls %q", ErrOwnerState, c.To)
		}
		op.Calls = append(op.Calls, deployer.TimelockCall{Target: common.HexToAddress(c.To), Data: common.FromHex(c.Data)})
	}
	if len(op.Calls) == 0 || op.ID().Hex() != s.OperationID {
		return op, fmt.Errorf("%w: the journal's timelock operation does not hash to its id %s: the journal is damaged; re-run with --fresh", ErrOwnerState, s.OperationID)
	}
	return op, nil
}

// covers reports whether every call is one of the operation's.
func (s *TimelockStep) covers(app common.Address, calls []deployer.AppCall) bool {
	for _, c := range calls {
		found := false
		for _, oc := range s.Calls {
			if strings.EqualFold(oc.To, app.Hex()) && strings.EqualFold(oc.Data, hexutil.Encode(c.Data)) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *TimelockStep) noteMined(fn, tx string) {
	switch fn {
	case fnSchedule:
		s.ScheduleTx = tx
	case fnExecute:
		s.ExecuteTx = tx
	}
}

func (s *TimelockStep) eta() time.Time {
	if s.ETA <= 1 {
		return time.Time{}
	}
	return time.Unix(int64(s.ETA), 0).UTC()
}

// newTimelockStep builds the operation for calls with a fresh salt.
func newTimelockStep(timelock, app common.Address, calls []deployer.AppCall, delay uint64) (*TimelockStep, error) {
	var salt common.Hash
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, fmt.Errorf("timelock salt: %w", err)
	}
	s := &TimelockStep{Timelock: timelock.Hex(), Predecessor: common.Hash{}.Hex(), Salt: salt.Hex(), Delay: delay}
	op := deployer.TimelockOp{Salt: salt}
	for _, c := range calls {
		s.Calls = append(s.Calls, OnChainCall{Function: c.Name, To: app.Hex(), Data: hexutil.Encode(c.Data)})
		op.Calls = append(op.Calls, deployer.TimelockCall{Target: app, Data: c.Data})
	}
	s.OperationID = op.ID().Hex()
	return s, nil
}

// timelockStep moves the operation that makes calls through a timelock
// owner one step: schedule it (the signer, when a proposer), execute it
// once ready (the signer, when allowed: anyone under open execution). It
// reports whether it sent something, or what is pending elsewhere. An
// executed operation whose calls are still missing is ErrOwnerState:
// nothing more is sent on a chain that contradicts it.
func (r *Runner) timelockStep(ctx context.Context, q ownerRequest, timelock common.Address, calls []deployer.AppCall) (bool, *ApprovalPendingError, error) {
	var me common.Address
	if r.Signer != nil {
		me = r.Signer.Address()
	}
	canSend := r.Signer != nil && !q.noSend
	j := q.journal
	if s := j.Timelock; s != nil && s.Timelock != timelock.Hex() {
		r.say("warning: the AppAuth's owner is now timelock %s, not %s: a new operation is built", timelock.Hex(), s.Timelock)
		j.Timelock = nil
	}
	if s := j.Timelock; s != nil && !s.covers(q.app, calls) {
		op, err := s.op()
		if err != nil {
			return false, nil, err
		}
		st, err := q.chain.TimelockOpState(ctx, timelock, op.ID(), me)
		if err != nil {
			return false, nil, err
		}
		if st.State() == deployer.OpUnset {
			j.Timelock = nil // never scheduled: build one for what is missing now
		}
	}
	if j.Timelock == nil {
		st, err := q.chain.TimelockOpState(ctx, timelock, common.Hash{}, me)
		if err != nil {
			return false, nil, err
		}
		s, err := newTimelockStep(timelock, q.app, calls, st.MinDelay)
		if err != nil {
			return false, nil, err
		}
		// Who must schedule, when the signer cannot: the constructor's
		// proposer (cheap to find however old the timelock is).
		if info, err := q.chain.DescribeTimelockAtCreation(ctx, timelock); err == nil && len(info.Proposers) == 1 && (!st.CanPropose || q.noSend) {
			s.Proposer = info.Proposers[0].Hex()
		}
		j.Timelock = s
		if err := q.save(q.step); err != nil {
			return false, nil, err
		}
		r.say("… AppAuth %s is owned by timelock %s (delay %s): operation %s built", q.app.Hex(), timelock.Hex(), time.Duration(st.MinDelay)*time.Second, s.OperationID)
	}
	s := j.Timelock
	op, err := s.op()
	if err != nil {
		return false, nil, err
	}
	st, err := q.chain.TimelockOpState(ctx, timelock, op.ID(), me)
	if err != nil {
		return false, nil, err
	}
	pending := &ApprovalPendingError{Owner: timelock, App: q.app, What: q.what, Timelock: &TimelockPending{
		Address: timelock, OperationID: op.ID(), Salt: op.Salt, State: st.State(), Delay: time.Duration(max(s.Delay, st.MinDelay)) * time.Second,
	}}
	if st.Timestamp > 1 && s.ETA != st.Timestamp {
		s.ETA = st.Timestamp
		if err := q.save(q.step); err != nil {
			return false, nil, err
		}
	}
	pending.Timelock.ETA = s.eta()
	switch st.State() {
	case deployer.OpDone:
		names := make([]string, len(calls))
		for i, c := range calls {
			names[i] = c.Name
		}
		return false, nil, fmt.Errorf("%w: timelock operation %s on %s was executed (transaction %s), yet AppAuth %s still needs %s: the operation's calls did not allow what was asked, or something undid it since; nothing more is sent (see `cvmdeploy app history --app-id %s`, then re-run with --fresh for a new operation)",
			ErrOwnerState, s.OperationID, timelock.Hex(), orUnknown(s.ExecuteTx), q.app.Hex(), strings.Join(names, " and "), q.app.Hex())
	case deployer.OpUnset:
		delay := max(s.Delay, st.MinDelay)
		if s.Delay != delay {
			s.Delay = delay // the timelock's delay was raised since
		}
		name := "schedule"
		if op.Batch() {
			name = "scheduleBatch"
		}
		if canSend && st.CanPropose {
			if err := r.confirmTimelock(ctx, q, fmt.Sprintf("%s operation %s (%s on AppAuth %s) on timelock %s", name, s.OperationID, callNames(s.Calls), q.app.Hex(), timelock.Hex())); err != nil {
				return false, nil, err
			}
			tr, err := q.chain.SendTimelockCall(ctx, r.Signer, timelock, op.ScheduleData(delay), r.journaledOpts(q, fnSchedule))
			if err != nil {
				return false, nil, fmt.Errorf("%s on timelock %s: %w", name, timelock.Hex(), err)
			}
			s.ScheduleTx = tr.TxHash.Hex()
			if err := r.recordMined(q, fnSchedule, tr); err != nil {
				return false, nil, err
			}
			return true, nil, nil
		}
		pending.Calls = []OnChainCall{{Function: name, To: timelock.Hex(), Data: hexutil.Encode(op.ScheduleData(delay))}}
		if s.Proposer != "" {
			pending.Approver = common.HexToAddress(s.Proposer)
			pe, err := r.scheduleThroughSafe(ctx, q, s, timelock, deployer.AppCall{Name: name, Data: op.ScheduleData(delay)}, pending)
			if err != nil {
				return false, nil, err
			}
			if pe != nil {
				pending = pe
			}
		}
	case deployer.OpReady:
		name := "execute"
		if op.Batch() {
			name = "executeBatch"
		}
		if canSend && st.CanExecute {
			if err := r.confirmTimelock(ctx, q, fmt.Sprintf("%s operation %s on timelock %s", name, s.OperationID, timelock.Hex())); err != nil {
				return false, nil, err
			}
			tr, err := q.chain.SendTimelockCall(ctx, r.Signer, timelock, op.ExecuteData(), r.journaledOpts(q, fnExecute))
			if err != nil {
				return false, nil, fmt.Errorf("%s on timelock %s: %w", name, timelock.Hex(), err)
			}
			s.ExecuteTx = tr.TxHash.Hex()
			if err := r.recordMined(q, fnExecute, tr); err != nil {
				return false, nil, err
			}
			return true, nil, nil
		}
		pending.Calls = []OnChainCall{{Function: name, To: timelock.Hex(), Data: hexutil.Encode(op.ExecuteData())}}
	default: // waiting: nothing to do but wait
		r.say("… timelock operation %s is scheduled; executable at %s (chain time now %s)", s.OperationID, pending.Timelock.ETA.Format(time.RFC3339), time.Unix(int64(st.Now), 0).UTC().Format(time.RFC3339))
	}
	return false, pending, nil
}

func (r *Runner) confirmTimelock(ctx context.Context, q ownerRequest, action string) error {
	if r.Confirm == nil {
		return nil
	}
	return r.Confirm(ctx, q.chainID, action)
}

func callNames(calls []OnChainCall) string {
	names := make([]string, len(calls))
	for i, c := range calls {
		names[i] = c.Function
	}
	return strings.Join(names, " and ")
}

func orUnknown(s string) string {
	if s == "" {
		return "by another account"
	}
	return s
}

// TimelockStatus is a timelock operation as results show it.
type TimelockStatus struct {
	Address     string `json:"address"`
	OperationID string `json:"operation_id"`
	// State is unset (to schedule), waiting (until ETA), ready or done.
	State      string `json:"state"`
	ETA        string `json:"eta,omitempty"`
	Delay      uint64 `json:"delay"`
	Salt       string `json:"salt"`
	ScheduleTx string `json:"schedule_tx,omitempty"`
	ExecuteTx  string `json:"execute_tx,omitempty"`
	// Calls are the operation's calls (on the AppAuth).
	Calls []OnChainCall `json:"calls"`
}

// timelockStatus describes the journaled operation (nil when there is
// none), in the state err reports, or done when the calls were made.
func timelockStatus(j *OwnerCalls, err error) *TimelockStatus {
	if j == nil || j.Timelock == nil {
		return nil
	}
	s := j.Timelock
	out := &TimelockStatus{Address: s.Timelock, OperationID: s.OperationID, State: deployer.OpDone, Delay: s.Delay, Salt: s.Salt, ScheduleTx: s.ScheduleTx, ExecuteTx: s.ExecuteTx, Calls: s.Calls}
	if t := s.eta(); !t.IsZero() {
		out.ETA = t.Format(time.RFC3339)
	}
	if pe, ok := pendingOf(err); ok && pe.Timelock != nil {
		out.State = pe.Timelock.State
	} else if err != nil {
		out.State = ""
	}
	return out
}

// scheduleThroughSafe proposes a timelock's schedule call to its proposer
// when that proposer is a Safe and the run proposes to Safes
// (--safe-propose, or a proposal journaled earlier): the same routeToSafe
// as an AppAuth's calls, with the timelock as the target. It returns the
// pending state (the Safe's proposal, with the timelock's operation), or
// nil when the proposer is not a Safe or nothing is proposed.
func (r *Runner) scheduleThroughSafe(ctx context.Context, q ownerRequest, s *TimelockStep, timelock common.Address, call deployer.AppCall, pending *ApprovalPendingError) (*ApprovalPendingError, error) {
	if (!r.Safe.Propose && s.SafeSchedule == nil) || q.noSend {
		return nil, nil
	}
	st, err := r.safeOwnerState(ctx, q.chain, common.HexToAddress(s.Proposer))
	if err != nil || st == nil {
		return nil, err
	}
	if s.SafeSchedule == nil {
		s.SafeSchedule = &OwnerCalls{}
	}
	sq := q
	sq.app, sq.journal, sq.what = timelock, s.SafeSchedule, "schedule the timelock operation"
	perr := r.routeToSafe(ctx, sq, st, []deployer.AppCall{call})
	pe, ok := pendingOf(perr)
	if !ok {
		return nil, perr
	}
	pe.Timelock, pe.Approver = pending.Timelock, pending.Approver
	return pe, nil
}

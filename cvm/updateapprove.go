package cvm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// neededCalls reads from the chain what is still missing for the prepared
// hash and device: the chain, not the service's onchain_status, decides
// what is paid for.
func (u *update) neededCalls(ctx context.Context) ([]deployer.AppCall, *deployer.AppInfo, error) {
	p := u.j.Prepared
	hash, err := hexBytes32(p.ComposeHash)
	if err != nil {
		return nil, nil, fmt.Errorf("465 answer compose_hash: %w", err)
	}
	q := deployer.AppInfoQuery{App: u.app, ComposeHash: &hash}
	var device [32]byte
	if p.DeviceID != "" {
		if device, err = hexBytes32(p.DeviceID); err != nil {
			return nil, nil, fmt.Errorf("465 answer device_id: %w", err)
		}
		q.DeviceID = &device
	}
	info, err := u.chain.AppInfo(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("read AppAuth %s: %w", u.app.Hex(), err)
	}
	u.res.Owner = info.Owner.Hex()
	var calls []deployer.AppCall
	if q.DeviceID != nil && !info.AllowAnyDevice && (info.DeviceAllowed == nil || !*info.DeviceAllowed) {
		calls = append(calls, deployer.AddDeviceCall(device))
	}
	if info.ComposeHashAllowed == nil || !*info.ComposeHashAllowed {
		calls = append(calls, deployer.AddComposeHashCall(hash))
	}
	u.res.OnChain = nil
	for _, c := range calls {
		u.res.OnChain = append(u.res.OnChain, OnChainCall{Function: c.Name, To: u.app.Hex(), Data: hexutil.Encode(c.Data)})
	}
	return calls, info, nil
}

// approve is step 4: the missing calls, through the AppAuth's owner
// (routeOwnerCalls): sent by the signer when it owns the AppAuth, scheduled
// and executed through a timelock owner, otherwise left to the owner as
// pending calls, or, with WaitApproval, awaited on the chain.
func (u *update) approve(ctx context.Context) error {
	if a := u.j.Approved; a != nil {
		u.res.Resumed = append(u.res.Resumed, UpdateStepApprove)
		u.res.ApprovalTxHash = a.TxHash
		u.res.Timelock = timelockStatus(u.j.Calls, nil)
		return nil
	}
	if u.j.Calls == nil {
		u.j.Calls = &OwnerCalls{}
	} else if u.j.Calls.sent() || u.j.Calls.Timelock != nil {
		u.res.Resumed = append(u.res.Resumed, UpdateStepTx)
	}
	var owner common.Address
	var state *deployer.AppInfo
	q := u.ownerRequestState(&owner, &state)
	if u.cfg.WaitApproval {
		q.wait = u.approvalWait(u.cfg.WaitTimeout, u.cfg.PollInterval)
		u.say("… waiting for the owner's approval of compose hash %s", shortHex(u.j.Prepared.ComposeHash))
	}
	txHash, err := u.routeOwnerCalls(ctx, q)
	if state != nil {
		u.fillReviewChain(ctx, state)
	}
	u.res.Timelock = timelockStatus(u.j.Calls, err)
	if err != nil {
		if pe, ok := pendingOf(err); ok {
			u.res.Status = "awaiting-approval"
			u.res.Owner = pe.Owner.Hex()
			u.res.OnChain = pe.Calls
			if pe.Approver != (common.Address{}) {
				u.res.Approver = pe.Approver.Hex()
			}
			u.res.SafeProposal = pe.Safe.Result()
		}
		return err
	}
	u.res.OnChain = nil
	for _, m := range u.j.Calls.Mined {
		to := u.app.Hex()
		if tl := u.j.Calls.Timelock; tl != nil && (m.Function == fnSchedule || m.Function == fnExecute) {
			to = tl.Timelock
		}
		u.res.OnChain = append(u.res.OnChain, OnChainCall{Function: m.Function, To: to, TxHash: m.TxHash})
	}
	if p := u.j.Calls.Safe; p != nil && p.ExecTxHash != "" {
		u.res.OnChain = append(u.res.OnChain, OnChainCall{Function: "execTransaction (" + strings.Join(p.Calls, ", ") + ")", To: p.Safe, TxHash: p.ExecTxHash})
	}
	if txHash == "" {
		u.say("✓ compose hash %s and the device are already allowed on-chain: nothing to send", shortHex(u.j.Prepared.ComposeHash))
	}
	u.res.ApprovalTxHash = txHash
	u.j.Approved = &ApprovedStep{TxHash: txHash, Owner: owner.Hex()}
	return u.save(UpdateStepApprove)
}

// ownerRequest is the update's owner calls for routeOwnerCalls; owner
// receives the owner each read finds.
func (u *update) ownerRequest(owner *common.Address) ownerRequest {
	return u.ownerRequestState(owner, nil)
}

// ownerRequestState is ownerRequest that also keeps the last AppAuth state
// read (for the review page).
func (u *update) ownerRequestState(owner *common.Address, state **deployer.AppInfo) ownerRequest {
	return ownerRequest{
		chain: u.chain, chainID: u.res.ChainID, app: u.app, tx: u.cfg.Tx,
		journal: u.j.Calls, save: u.save, step: UpdateStepTx,
		what: "allow the update's compose hash (and the node's device)",
		needed: func(ctx context.Context) ([]deployer.AppCall, common.Address, error) {
			calls, info, err := u.neededCalls(ctx)
			if err != nil {
				return nil, common.Address{}, err
			}
			*owner = info.Owner
			if state != nil {
				*state = info
			}
			return calls, info.Owner, nil
		},
	}
}

// approvalWait is the wait of --wait-approval from now.
func (r *Runner) approvalWait(timeout, poll time.Duration) *approvalWait {
	w := &approvalWait{poll: poll}
	if timeout > 0 {
		w.deadline = r.now().Add(timeout)
	}
	return w
}

// commit is step 5: commit-update with the token, the hash and the
// transaction that allowed it. A token that expired meanwhile (466) is
// replaced by preparing again, once, and only if the service answers the
// same, already approved hash.
func (u *update) commit(ctx context.Context) error {
	if u.j.Committed != "" {
		u.res.Resumed = append(u.res.Resumed, UpdateStepCommit)
		u.res.CorrelationID = u.j.Committed
		return nil
	}
	p := u.j.Prepared
	txHash := phala.AlreadyRegistered
	if u.j.Approved != nil && u.j.Approved.TxHash != "" {
		txHash = u.j.Approved.TxHash
	}
	u.say("→ committing the update")
	out, err := u.API.CommitUpdate(ctx, u.cfg.CVM, phala.CommitUpdateRequest{Token: p.CommitToken, ComposeHash: p.ComposeHash, TransactionHash: txHash})
	if errors.Is(err, phala.ErrHashExpired) {
		again := u.send
		switch {
		case u.j.Patch != nil:
			// The same request as prepared (the env as encrypted then).
			again = func(ctx context.Context) (*phala.ComposeHashRegistrationRequired, *phala.UpdateAccepted, error) {
				return u.sendPatch(ctx, *u.j.Patch)
			}
		case !u.envGive && u.patch.DockerComposeFile == nil && u.patch.PreLaunchScript == nil:
			return u.commitError(txHash, err)
		}
		u.say("… the prepared update expired (466): preparing it again")
		reg, acc, err2 := again(ctx)
		switch {
		case err2 != nil:
			return fmt.Errorf("prepare again after 466: %w", err2)
		case acc != nil:
			out, err = &phala.CommitUpdateResponse{CorrelationID: acc.CorrelationID, Status: "accepted"}, nil
		case reg.ComposeHash != p.ComposeHash:
			return fmt.Errorf("%w: preparing again after 466 answered compose hash %s, not the approved %s; nothing was committed", ErrComposeRule, reg.ComposeHash, p.ComposeHash)
		default:
			p.CommitToken = reg.CommitToken
			if err := u.save(UpdateStepPrepare); err != nil {
				return err
			}
			out, err = u.API.CommitUpdate(ctx, u.cfg.CVM, phala.CommitUpdateRequest{Token: p.CommitToken, ComposeHash: p.ComposeHash, TransactionHash: txHash})
		}
	}
	if err != nil {
		return u.commitError(txHash, err)
	}
	u.j.Committed = out.CorrelationID
	u.res.CorrelationID = out.CorrelationID
	u.say("✓ update committed")
	return u.save(UpdateStepCommit)
}

// commitError explains a refused commit-update: what the status means,
// what to check, and that re-running the same command resumes (the journal
// keeps the approval, so nothing is sent on-chain twice).
func (u *update) commitError(txHash string, err error) error {
	p := u.j.Prepared
	const resume = "then re-run the same command: it resumes at the commit and sends nothing on-chain twice"
	switch {
	case errors.Is(err, phala.ErrHashExpired):
		return fmt.Errorf("commit the update: the prepared update of CVM %s expired (HTTP 466) and could not be prepared again here; %s (it prepares again, and commits only the same, approved hash 0x%s): %w", u.cfg.CVM, resume, p.ComposeHash, err)
	case errors.Is(err, phala.ErrTxVerificationFailed):
		return fmt.Errorf("commit the update: the service could not verify that transaction %s added compose hash 0x%s on AppAuth %s (HTTP 467): check the transaction on an explorer (mined? on chain %d? from the owner?), %s: %w", txHash, p.ComposeHash, u.app.Hex(), u.res.ChainID, resume, err)
	case errors.Is(err, phala.ErrHashNotOnChain):
		check := fmt.Sprintf("cvmdeploy app info --app-id %s --compose-hash 0x%s", u.app.Hex(), p.ComposeHash)
		if p.DeviceID != "" {
			check += " --device-id 0x" + p.DeviceID
		}
		return fmt.Errorf("commit the update: the service finds compose hash 0x%s (or the node's device) not allowed on-chain for AppAuth %s (HTTP 468): check with `%s`; if the owner has not executed the calls yet, wait until they are, %s: %w", p.ComposeHash, u.app.Hex(), check, resume, err)
	}
	return fmt.Errorf("commit the update: %w", err)
}

// finish waits for the CVM when asked, and closes the journal: a finished
// update is not resumed by the next one.
func (u *update) finish(ctx context.Context) error {
	if u.j.Committed != "" || u.j.Accepted != "" {
		u.res.Status = "accepted"
		if u.path != "" {
			if err := u.Journals.Remove(u.path); err != nil {
				return err
			}
			u.res.Journal = ""
		}
	}
	if !u.cfg.Wait {
		return nil
	}
	st, err := u.WaitRunning(ctx, u.cfg.CVM)
	if st.Status != "" {
		u.res.Status = st.Status
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

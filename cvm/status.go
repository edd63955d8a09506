package cvm

import (
	"context"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// StatusConfig asks for a CVM's status.
type StatusConfig struct {
	CVM         string
	Wait        bool
	WaitTimeout time.Duration
}

// StatusResult is a CVM's status and what could be checked about it.
type StatusResult struct {
	CVM   *phala.CVM
	State phala.CVMState
	// KMSTrust is how its KMS contract was trusted (on-chain KMS).
	KMSTrust string
	// Attestation compares the app-compose the running CVM measured with its
	// compose hash (AttestationMatches, …; empty when not running).
	Attestation string
	// AttestedHash is the sha256 of the measured app-compose.
	AttestedHash string
	// AllowedOnChain says whether the AppAuth allows the measured hash (nil:
	// not checked, no --rpc-url).
	AllowedOnChain *bool
}

// Status reads a CVM's status (with Wait, follows it until it runs) and,
// once it runs with public tcbinfo, checks that the app-compose it measured
// hashes to its compose hash and, given a node, that the AppAuth allows it.
func (r *Runner) Status(ctx context.Context, cfg StatusConfig) (*StatusResult, error) {
	info, err := r.API.GetCVM(ctx, cfg.CVM)
	if err != nil {
		return nil, err
	}
	out := &StatusResult{CVM: info}
	contract, chainID, _, onChain := kmsOf(info)
	if onChain {
		if out.KMSTrust, err = r.trustKMS(chainID, contract); err != nil {
			return out, err
		}
	}
	st, err := r.API.CVMState(ctx, cfg.CVM)
	if err != nil {
		return out, err
	}
	out.State = *st
	if cfg.Wait && st.Status != "running" {
		if cfg.WaitTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cfg.WaitTimeout)
			defer cancel()
		}
		if out.State, err = r.WaitRunning(ctx, cfg.CVM); err != nil {
			return out, err
		}
	}
	if out.State.Status != "running" {
		return out, nil
	}
	state, attested, err := r.attestedHash(ctx, cfg.CVM)
	if err != nil || state != AttestationMatches {
		// status only reports what it could not read; it is no failure.
		out.Attestation = state
		return out, nil
	}
	out.AttestedHash = attested
	if info.ComposeHash != nil {
		if want, err := phala.NormalizeComposeHash(*info.ComposeHash); err == nil && want != out.AttestedHash {
			return out, fmt.Errorf("%w: CVM %s measured an app-compose with hash %s, but the service reports compose hash %s", ErrComposeRule, cfg.CVM, out.AttestedHash, want)
		}
	}
	out.Attestation = AttestationMatches
	if !onChain || r.RPCURL == "" || info.AppID == nil {
		return out, nil
	}
	app, err := appAddress(*info.AppID)
	if err != nil {
		return out, err
	}
	chain, err := deployer.Dial(ctx, r.RPCURL)
	if err != nil {
		return out, err
	}
	defer chain.Close()
	chain.ExpectChainID = chainID
	h := common.HexToHash(out.AttestedHash)
	hash := [32]byte(h)
	ai, err := chain.AppInfo(ctx, deployer.AppInfoQuery{App: app, ComposeHash: &hash})
	if err != nil {
		return out, fmt.Errorf("read AppAuth %s: %w", app.Hex(), err)
	}
	out.AllowedOnChain = ai.ComposeHashAllowed
	return out, nil
}

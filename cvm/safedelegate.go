package cvm

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// SafeDelegateConfig registers (or removes) a delegate of a Safe.
type SafeDelegateConfig struct {
	Safe     common.Address
	Delegate common.Address
	Label    string
	ChainID  uint64
}

// SafeDelegateResult is what safe delegate add/remove did.
type SafeDelegateResult struct {
	Safe      string `json:"safe_address"`
	Delegate  string `json:"delegate"`
	Delegator string `json:"delegator"`
	Label     string `json:"label,omitempty"`
	ChainID   uint64 `json:"chain_id"`
	Status    string `json:"status"` // added, removed
	Service   string `json:"safe_service_url"`
}

// SafeDelegate registers cfg.Delegate as a proposer for the Safe, signed
// by the signer, who must be an owner (checked on the chain first); with
// remove it deletes the registration instead.
func (r *Runner) SafeDelegate(ctx context.Context, cfg SafeDelegateConfig, remove bool) (*SafeDelegateResult, error) {
	if r.Signer == nil {
		return nil, fmt.Errorf("%w: registering a delegate needs an owner's key", ErrInvalidConfig)
	}
	hs, ok := r.Signer.(safe.HashSigner)
	if !ok {
		return nil, fmt.Errorf("%w: the signer cannot sign the delegate registration", ErrInvalidConfig)
	}
	if cfg.Safe == (common.Address{}) || cfg.Delegate == (common.Address{}) {
		return nil, fmt.Errorf("%w: --safe and --delegate are required", ErrInvalidConfig)
	}
	if r.RPCURL == "" {
		return nil, fmt.Errorf("%w: pass --rpc-url (or set ETH_RPC_URL): the Safe is read from the chain", ErrInvalidConfig)
	}
	chain, err := deployer.Dial(ctx, r.RPCURL)
	if err != nil {
		return nil, err
	}
	defer chain.Close()
	chain.ExpectChainID = cfg.ChainID
	st, err := r.safeOwnerState(ctx, chain, cfg.Safe)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: %s is not a Safe on chain %d", ErrInvalidConfig, cfg.Safe.Hex(), chain.ChainID())
	}
	if !st.IsOwner(hs.Address()) {
		return nil, fmt.Errorf("%w: %s is not an owner of Safe %s (owners: %s): an owner registers delegates", ErrInvalidConfig, hs.Address().Hex(), cfg.Safe.Hex(), addrs(st.Owners))
	}
	chainID := chain.ChainID()
	svc, err := r.safeService(chainID)
	if err != nil {
		return nil, err
	}
	sig, err := safe.SignDelegate(ctx, hs, chainID, cfg.Delegate, r.now())
	if err != nil {
		return nil, err
	}
	res := &SafeDelegateResult{Safe: cfg.Safe.Hex(), Delegate: cfg.Delegate.Hex(), Delegator: hs.Address().Hex(), Label: cfg.Label, ChainID: chainID, Service: svc.BaseURL}
	safeHex := cfg.Safe.Hex()
	if remove {
		if err := svc.RemoveDelegate(ctx, cfg.Delegate, safe.DelegateRemoveRequest{Delegator: hs.Address().Hex(), Signature: hexutil.Encode(sig), Safe: &safeHex}); err != nil {
			return res, fmt.Errorf("remove delegate %s of Safe %s: %w", cfg.Delegate.Hex(), cfg.Safe.Hex(), err)
		}
		res.Status = "removed"
		r.say("✓ %s may no longer propose to Safe %s", cfg.Delegate.Hex(), cfg.Safe.Hex())
		return res, nil
	}
	label := cfg.Label
	if label == "" {
		label = "cvmdeploy"
	}
	res.Label = label
	if err := svc.AddDelegate(ctx, safe.DelegateRequest{Safe: &safeHex, Delegate: cfg.Delegate.Hex(), Delegator: hs.Address().Hex(), Label: label, Signature: hexutil.Encode(sig)}); err != nil {
		return res, fmt.Errorf("add delegate %s to Safe %s: %w", cfg.Delegate.Hex(), cfg.Safe.Hex(), err)
	}
	res.Status = "added"
	r.say("✓ %s may now propose transactions to Safe %s (owners still confirm them)", cfg.Delegate.Hex(), cfg.Safe.Hex())
	return res, nil
}

package cvm

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// SafeTxConfig names one queued Safe transaction.
type SafeTxConfig struct {
	Safe       common.Address
	SafeTxHash common.Hash
	// ChainID, when non-zero, is what --chain said; the node must agree.
	ChainID uint64
	// Tx are the execution's transaction options (safe exec).
	Tx deployer.TxOptions
}

// SafeCall is one call of a Safe transaction, decoded for people.
type SafeCall struct {
	To       string `json:"to"`
	Value    string `json:"value"`
	Function string `json:"function"`
	Data     string `json:"data"`
}

// SafeTxResult is what safe sign and safe exec did.
type SafeTxResult struct {
	Safe          string     `json:"safe_address"`
	SafeTxHash    string     `json:"safe_tx_hash"`
	Nonce         uint64     `json:"safe_nonce"`
	ChainID       uint64     `json:"chain_id"`
	Operation     string     `json:"operation"`
	Calls         []SafeCall `json:"calls"`
	Signer        string     `json:"signer,omitempty"`
	Confirmations int        `json:"confirmations"`
	Threshold     uint64     `json:"threshold"`
	// Status: confirmed, already-confirmed, executed, already-executed.
	Status      string `json:"status"`
	TxHash      string `json:"tx_hash,omitempty"`
	BlockNumber uint64 `json:"block_number,omitempty"`
	GasUsed     uint64 `json:"gas_used,omitempty"`
	AppURL      string `json:"safe_url,omitempty"`
	Journal     string `json:"journal,omitempty"`
}

// SafeThresholdError: a Safe transaction lacks confirmations to execute.
type SafeThresholdError struct {
	Safe       common.Address
	SafeTxHash common.Hash
	Have, Need int
}

func (e *SafeThresholdError) Error() string {
	return fmt.Sprintf("%v: Safe transaction %s has %d valid confirmation(s) of the %d Safe %s needs: more owners must run `cvmdeploy safe sign --safe %s --safe-tx-hash %s`",
		ErrApprovalPending, e.SafeTxHash.Hex(), e.Have, e.Need, e.Safe.Hex(), e.Safe.Hex(), e.SafeTxHash.Hex())
}

func (e *SafeThresholdError) Is(target error) bool { return target == ErrApprovalPending }

// safeTxView is a queued transaction fetched from the service and checked
// against the chain.
type safeTxView struct {
	chain *deployer.Client
	st    *safe.State
	svc   *safe.Service
	stx   *safe.ServiceTx
	tx    safe.Tx
	res   *SafeTxResult
}

// loadSafeTx reads the Safe from the chain and the transaction from the
// service, and checks that the service's fields hash (by this package and
// by the Safe itself) to the hash asked for: the service is not trusted to
// say what a hash means.
func (r *Runner) loadSafeTx(ctx context.Context, cfg SafeTxConfig) (*safeTxView, error) {
	if cfg.Safe == (common.Address{}) || cfg.SafeTxHash == (common.Hash{}) {
		return nil, fmt.Errorf("%w: --safe and --safe-tx-hash are required", ErrInvalidConfig)
	}
	if r.RPCURL == "" {
		return nil, fmt.Errorf("%w: pass --rpc-url (or set ETH_RPC_URL): the Safe is read from the chain", ErrInvalidConfig)
	}
	chain, err := deployer.Dial(ctx, r.RPCURL)
	if err != nil {
		return nil, err
	}
	v := &safeTxView{chain: chain}
	ok := false
	defer func() {
		if !ok {
			chain.Close()
		}
	}()
	chain.ExpectChainID = cfg.ChainID
	st, err := r.safeOwnerState(ctx, chain, cfg.Safe)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: %s is not a Safe on chain %d", ErrInvalidConfig, cfg.Safe.Hex(), chain.ChainID())
	}
	v.st = st
	chainID := chain.ChainID()
	if v.svc, err = r.safeService(chainID); err != nil {
		return nil, err
	}
	if v.stx, err = v.svc.Transaction(ctx, cfg.SafeTxHash); err != nil {
		return nil, fmt.Errorf("read Safe transaction %s from %s: %w", cfg.SafeTxHash.Hex(), v.svc.BaseURL, err)
	}
	if !common.IsHexAddress(v.stx.Safe) || common.HexToAddress(v.stx.Safe) != cfg.Safe {
		return nil, fmt.Errorf("%w: the service says Safe transaction %s belongs to %q, not Safe %s", ErrSafeCheck, cfg.SafeTxHash.Hex(), v.stx.Safe, cfg.Safe.Hex())
	}
	if v.tx, err = v.stx.Tx(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSafeCheck, err)
	}
	if h := v.tx.Hash(chainID, cfg.Safe); h != cfg.SafeTxHash {
		return nil, fmt.Errorf("%w: the service's transaction for %s hashes to %s: it is not the transaction that hash names; nothing was signed or sent", ErrSafeCheck, cfg.SafeTxHash.Hex(), h.Hex())
	}
	if err := checkOnChainHash(ctx, chain, cfg.Safe, v.tx, cfg.SafeTxHash); err != nil {
		return nil, err
	}
	v.res = &SafeTxResult{Safe: cfg.Safe.Hex(), SafeTxHash: cfg.SafeTxHash.Hex(), Nonce: v.tx.Nonce, ChainID: chainID,
		Operation: v.tx.Operation.String(), Threshold: st.Threshold, Confirmations: len(v.stx.Confirmations),
		AppURL: safe.AppURL(chainID, cfg.Safe, cfg.SafeTxHash)}
	if err := v.decode(ctx); err != nil {
		return nil, err
	}
	ok = true
	return v, nil
}

// decode lists the calls: a plain call, or a MultiSendCallOnly batch whose
// code on this chain is the canonical one. Any other DELEGATECALL (it could
// do anything as the Safe) and any gas refund paid from the Safe is
// refused.
func (v *safeTxView) decode(ctx context.Context) error {
	if v.tx.Refunds() || v.tx.GasToken != (common.Address{}) || v.tx.RefundReceiver != (common.Address{}) {
		return fmt.Errorf("%w: Safe transaction %s pays a gas refund from the Safe (gasPrice %s, gasToken %s, refundReceiver %s); cvmdeploy handles transactions without refunds only", ErrSafeCheck, v.res.SafeTxHash, v.tx.GasPrice, v.tx.GasToken.Hex(), v.tx.RefundReceiver.Hex())
	}
	calls, err := v.tx.Calls()
	if err != nil {
		return fmt.Errorf("%w: Safe transaction %s: %w", ErrSafeCheck, v.res.SafeTxHash, err)
	}
	if v.tx.Operation == safe.OpDelegateCall {
		if err := checkMultiSend(ctx, v.chain); err != nil {
			return err
		}
	}
	for _, c := range calls {
		fn, ok := deployer.DescribeAppCall(c.Data)
		if !ok {
			fn = "unknown function"
			if len(c.Data) >= 4 {
				fn = fmt.Sprintf("unknown function %s", hexutil.Encode(c.Data[:4]))
			} else if len(c.Data) == 0 {
				fn = "plain transfer"
			}
		}
		v.res.Calls = append(v.res.Calls, SafeCall{To: c.To.Hex(), Value: orZero(c.Value).String(), Function: fn, Data: hexutil.Encode(c.Data)})
	}
	return nil
}

// executed looks for the transaction's execution, where the service says
// it happened (checked on the chain), and reports it in the result.
func (v *safeTxView) executed(ctx context.Context) (*deployer.SafeExecution, error) {
	// Only where the service says it ran: a search from genesis would cost
	// thousands of eth_getLogs requests on a mainnet.
	if v.stx.BlockNumber == nil {
		return nil, nil
	}
	x, err := v.chain.SafeExecution(ctx, v.st.Address, common.HexToHash(v.res.SafeTxHash), *v.stx.BlockNumber)
	if err != nil || x == nil {
		return nil, err
	}
	v.res.TxHash, v.res.BlockNumber = x.TxHash.Hex(), x.Block
	return x, nil
}

func (v *safeTxView) say(r *Runner) {
	r.say("Safe transaction %s on Safe %s (nonce %d, %s):", v.res.SafeTxHash, v.res.Safe, v.res.Nonce, v.res.Operation)
	for _, c := range v.res.Calls {
		r.say("  %s on %s (value %s wei)", c.Function, c.To, c.Value)
	}
}

// SafeSign confirms a queued Safe transaction as the signer, an owner: it
// is fetched from the service, checked (its fields hash to the hash asked
// for, by this package and by the Safe; no refund; DELEGATECALL only into
// the canonical MultiSendCallOnly), shown, signed (EIP-712) offline and
// the signature posted to the service.
func (r *Runner) SafeSign(ctx context.Context, cfg SafeTxConfig) (*SafeTxResult, error) {
	if r.Signer == nil {
		return nil, fmt.Errorf("%w: safe sign needs an owner's key", ErrInvalidConfig)
	}
	hs, ok := r.Signer.(safe.HashSigner)
	if !ok {
		return nil, fmt.Errorf("%w: the signer cannot sign a Safe transaction hash", ErrInvalidConfig)
	}
	v, err := r.loadSafeTx(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer v.chain.Close()
	v.say(r)
	v.res.Signer = hs.Address().Hex()
	if v.tx.Nonce < v.st.Nonce {
		x, err := v.executed(ctx)
		if err != nil {
			return v.res, err
		}
		if x != nil && x.Success {
			v.res.Status = "already-executed"
			r.say("✓ already executed in %s: nothing to sign", x.TxHash.Hex())
			return v.res, nil
		}
		return v.res, fmt.Errorf("%w: Safe %s is at nonce %d: nonce %d is spent (the service records no execution of this transaction), so it can never run; nothing was signed", ErrSafeCheck, v.res.Safe, v.st.Nonce, v.tx.Nonce)
	}
	if !v.st.IsOwner(hs.Address()) {
		return v.res, fmt.Errorf("%w: %s is not an owner of Safe %s (owners: %s); delegates propose, owners confirm", ErrInvalidConfig, hs.Address().Hex(), v.res.Safe, addrs(v.st.Owners))
	}
	for _, c := range v.stx.Confirmations {
		if common.IsHexAddress(c.Owner) && common.HexToAddress(c.Owner) == hs.Address() {
			v.res.Status = "already-confirmed"
			r.say("✓ %s confirmed it already (%d of %d confirmations)", hs.Address().Hex(), v.res.Confirmations, v.st.Threshold)
			return v.res, nil
		}
	}
	s, err := safe.Sign(ctx, hs, cfg.SafeTxHash)
	if err != nil {
		return v.res, fmt.Errorf("sign Safe transaction %s: %w", cfg.SafeTxHash.Hex(), err)
	}
	if err := v.svc.Confirm(ctx, cfg.SafeTxHash, s.Static); err != nil {
		return v.res, fmt.Errorf("confirm Safe transaction %s: %w", cfg.SafeTxHash.Hex(), err)
	}
	v.res.Confirmations++
	v.res.Status = "confirmed"
	r.say("✓ confirmed by %s (%d of %d confirmations)", hs.Address().Hex(), v.res.Confirmations, v.st.Threshold)
	return v.res, nil
}

func addrs(as []common.Address) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += ", "
		}
		s += a.Hex()
	}
	return s
}

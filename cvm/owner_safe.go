package cvm

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// SafeRouting says how owner calls reach an AppAuth whose owner is a Safe.
type SafeRouting struct {
	// Propose queues the calls in the Safe Transaction Service, signed by
	// the signer (an owner, or a delegate an owner registered: no owner key
	// in CI), instead of only handing them back for a Transaction Builder
	// file.
	Propose bool
	// ServiceURL is the Transaction Service's base (api-kit's txServiceUrl);
	// empty: Safe's hosted service for the chain (safe.ServiceURL).
	ServiceURL string
	// APIKey is sent as "Authorization: Bearer" (SAFE_API_KEY).
	APIKey string
	// HTTP is the client for the service (nil: a default one).
	HTTP *http.Client
}

// SafeProposal journals a Safe transaction proposed for owner calls, from
// before it is sent to the service: a re-run finds it instead of proposing
// twice, re-sends it if the service lost it, and takes the transaction
// that executed it as the approval.
type SafeProposal struct {
	Safe       string   `json:"safe"`
	SafeTxHash string   `json:"safe_tx_hash"`
	Nonce      uint64   `json:"nonce"`
	To         string   `json:"to"`
	Data       string   `json:"data"`
	Operation  uint8    `json:"operation"`
	Calls      []string `json:"calls"`
	Service    string   `json:"service"`
	// FromBlock is the chain's head before the proposal: its execution is
	// searched from there.
	FromBlock uint64 `json:"from_block"`
	// Proposed is set once the service accepted it.
	Proposed bool `json:"proposed"`
	// ExecTxHash is the transaction that executed it on the Safe.
	ExecTxHash string `json:"exec_tx_hash,omitempty"`
}

func (p *SafeProposal) tx() (safe.Tx, error) {
	data, err := hexutil.Decode(p.Data)
	if err != nil {
		return safe.Tx{}, fmt.Errorf("the journal's Safe transaction data is damaged: %w", err)
	}
	return safe.Tx{To: common.HexToAddress(p.To), Value: new(big.Int), Data: data, Operation: safe.Operation(p.Operation), Nonce: p.Nonce}, nil
}

// SafePending is a proposal waiting in a Safe's queue.
type SafePending struct {
	Safe          common.Address
	SafeTxHash    common.Hash
	Nonce         uint64
	Threshold     uint64
	Confirmations int
	ServiceURL    string
	// AppURL is the transaction's page in Safe{Wallet} ("" on chains the
	// hosted app does not serve).
	AppURL string
}

// ErrSafeCheck is wrapped when something a Safe flow relies on does not
// check out: a service's transaction that does not hash to its safeTxHash,
// a signature by no owner, a DELEGATECALL to unknown code, a refund.
var ErrSafeCheck = errors.New("Safe transaction check failed")

// safeService is the Transaction Service for chainID.
func (r *Runner) safeService(chainID uint64) (*safe.Service, error) {
	u := r.Safe.ServiceURL
	if u == "" {
		u = safe.ServiceURL(chainID)
	}
	if u == "" {
		return nil, fmt.Errorf("%w: no Safe Transaction Service is known for chain %d: pass --safe-service URL (testnet up prints safe_service_url)", ErrInvalidConfig, chainID)
	}
	if r.Safe.APIKey == "" && safe.IsHostedService(u) {
		r.say("warning: no SAFE_API_KEY: Safe's hosted service (%s) rate-limits requests without a key (get one at https://developer.safe.global)", u)
	}
	return &safe.Service{BaseURL: u, APIKey: r.Safe.APIKey, HTTP: r.Safe.HTTP}, nil
}

// safeOwnerState reads owner and returns it as a Safe whose transaction
// hashes this package computes the same way as the contract (v1.3.0 and
// later), or nil when owner is no Safe.
func (r *Runner) safeOwnerState(ctx context.Context, chain *deployer.Client, owner common.Address) (*safe.State, error) {
	info, err := chain.DescribeOwner(ctx, owner)
	if err != nil {
		return nil, fmt.Errorf("read the AppAuth's owner %s: %w", owner.Hex(), err)
	}
	if info.Kind != deployer.OwnerSafe {
		return nil, nil
	}
	st := info.Safe.State(owner)
	if !hashCompatible(st.Version) {
		return nil, fmt.Errorf("%w: Safe %s is version %s; cvmdeploy signs transactions of Safe 1.3.0 and later", ErrSafeCheck, owner.Hex(), st.Version)
	}
	return st, nil
}

// hashCompatible: Safes from 1.3.0 on put the chain id in the domain, as
// safe.Tx.Hash does.
func hashCompatible(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 1 || major == 1 && minor >= 3
}

// checkOnChainHash asks the Safe itself for the transaction's hash
// (getTransactionHash): the contract, not this package, decides what its
// owners sign.
func checkOnChainHash(ctx context.Context, chain *deployer.Client, addr common.Address, t safe.Tx, want common.Hash) error {
	data := safe.CallData("getTransactionHash", t.To, orZero(t.Value), nonNilBytes(t.Data), uint8(t.Operation), orZero(t.SafeTxGas), orZero(t.BaseGas), orZero(t.GasPrice), t.GasToken, t.RefundReceiver, new(big.Int).SetUint64(t.Nonce))
	ret, err := chain.Eth().CallContract(ctx, ethereum.CallMsg{To: &addr, Data: data}, nil)
	if err != nil {
		return fmt.Errorf("read getTransactionHash of Safe %s: %w", addr.Hex(), err)
	}
	if common.BytesToHash(ret) != want || len(ret) != 32 {
		return fmt.Errorf("%w: Safe %s hashes the transaction to %x, cvmdeploy to %s", ErrSafeCheck, addr.Hex(), ret, want.Hex())
	}
	return nil
}

func orZero(v *big.Int) *big.Int {
	if v == nil {
		return new(big.Int)
	}
	return v
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// checkMultiSend makes sure MultiSendCallOnly has its canonical code on
// this chain: the Safe DELEGATECALLs into it, running its code as itself.
func checkMultiSend(ctx context.Context, chain *deployer.Client) error {
	code, err := chain.Eth().CodeAt(ctx, safe.MultiSendCallOnly.Address, nil)
	if err != nil {
		return fmt.Errorf("read MultiSendCallOnly's code: %w", err)
	}
	if h := crypto.Keccak256Hash(code); h != safe.MultiSendCallOnly.CodeHash {
		return fmt.Errorf("%w: MultiSendCallOnly at %s does not hold the canonical v%s code (code hash %s): a batch would DELEGATECALL into unknown code", ErrSafeCheck, safe.MultiSendCallOnly.Address.Hex(), safe.Version, h.Hex())
	}
	return nil
}

// routeToSafe is routeOwnerCalls for an owner that is a Safe: the calls
// are proposed to the Safe's queue once (journaled before they are sent),
// and every later run reports that proposal, re-sends it if the service
// lost it, or proposes anew only when its nonce went to another
// transaction. The result is always an *ApprovalPendingError carrying the
// proposal; routeOwnerCalls finishes once the chain allows the calls.
func (r *Runner) routeToSafe(ctx context.Context, q ownerRequest, st *safe.State, calls []deployer.AppCall) error {
	pe := &ApprovalPendingError{Owner: st.Address, App: q.app, What: q.what}
	for _, c := range calls {
		pe.Calls = append(pe.Calls, OnChainCall{Function: c.Name, To: q.app.Hex(), Data: hexutil.Encode(c.Data)})
	}
	svc, err := r.safeService(q.chainID)
	if err != nil {
		return err
	}
	if p := q.journal.Safe; p != nil {
		again, err := r.checkProposal(ctx, q, st, svc, p)
		if err != nil || !again {
			if err == nil {
				pe.Safe = r.pendingOf(ctx, q.chainID, st, svc, p)
				err = pe
			}
			return err
		}
	}
	var batch []safe.Call
	for _, c := range calls {
		batch = append(batch, safe.Call{To: q.app, Value: new(big.Int), Data: c.Data})
	}
	want, err := safe.NewTx(batch, 0)
	if err != nil {
		return err
	}
	page, err := svc.Pending(ctx, st.Address, st.Nonce)
	if err != nil {
		return fmt.Errorf("read the queue of Safe %s: %w", st.Address.Hex(), err)
	}
	// A run without this journal (a fresh CI machine) finds the proposal
	// of an earlier run in the queue instead of queueing a duplicate.
	if p := adoptQueued(page.Results, want, q.chainID, st); p != nil {
		p.Service = svc.BaseURL
		if p.FromBlock, err = q.chain.Eth().BlockNumber(ctx); err != nil {
			return fmt.Errorf("read the chain's head: %w", err)
		}
		// Executions are looked for from the proposal's nonce being open:
		// a bounded look back covers one submitted meanwhile.
		p.FromBlock = p.FromBlock - min(p.FromBlock, lookBack)
		for _, c := range calls {
			p.Calls = append(p.Calls, c.Name)
		}
		q.journal.Safe = p
		if err := q.save(q.step); err != nil {
			return err
		}
		r.say("… Safe transaction %s (nonce %d) in the queue of Safe %s already makes these calls: not proposing again", p.SafeTxHash, p.Nonce, st.Address.Hex())
		pe.Safe = r.pendingOf(ctx, q.chainID, st, svc, p)
		return pe
	}
	if r.Signer == nil {
		return fmt.Errorf("%w: --safe-propose needs a signer: the key of one of Safe %s's owners or of a delegate an owner registered for it", ErrInvalidConfig, st.Address.Hex())
	}
	hs, ok := r.Signer.(safe.HashSigner)
	if !ok {
		return fmt.Errorf("%w: the signer %s cannot sign a Safe transaction hash", ErrInvalidConfig, r.Signer.Address().Hex())
	}
	if !st.IsOwner(hs.Address()) {
		ds, err := svc.Delegates(ctx, st.Address, hs.Address())
		if err != nil {
			return fmt.Errorf("look up the delegates of Safe %s: %w", st.Address.Hex(), err)
		}
		if ds.Count == 0 {
			return fmt.Errorf("%w: the signer %s is neither an owner of Safe %s nor a delegate registered for it: have an owner run `cvmdeploy safe delegate add --safe %s --delegate %s` (or add it as a proposer in Safe{Wallet})", ErrInvalidConfig, hs.Address().Hex(), st.Address.Hex(), st.Address.Hex(), hs.Address().Hex())
		}
	}
	if len(batch) > 1 {
		if err := checkMultiSend(ctx, q.chain); err != nil {
			return err
		}
	}
	nonce := st.Nonce
	for _, t := range page.Results {
		if n := t.Nonce.Uint64(); n >= nonce {
			nonce = n + 1
		}
	}
	t, err := safe.NewTx(batch, nonce)
	if err != nil {
		return err
	}
	h := t.Hash(q.chainID, st.Address)
	if err := checkOnChainHash(ctx, q.chain, st.Address, t, h); err != nil {
		return err
	}
	head, err := q.chain.Eth().BlockNumber(ctx)
	if err != nil {
		return fmt.Errorf("read the chain's head: %w", err)
	}
	p := &SafeProposal{Safe: st.Address.Hex(), SafeTxHash: h.Hex(), Nonce: nonce, To: t.To.Hex(), Data: hexutil.Encode(t.Data),
		Operation: uint8(t.Operation), Service: svc.BaseURL, FromBlock: head}
	for _, c := range calls {
		p.Calls = append(p.Calls, c.Name)
	}
	q.journal.Safe = p
	if err := q.save(q.step); err != nil {
		return err
	}
	if err := r.sendProposal(ctx, q, svc, p, hs); err != nil {
		return err
	}
	pe.Safe = r.pendingOf(ctx, q.chainID, st, svc, p)
	return pe
}

// lookBack is how many blocks before a found proposal its execution is
// looked for (it may have been executed just before this run looked).
const lookBack = 1000

// adoptQueued returns the queued transaction that makes exactly want's
// calls (same target, data and operation, no value, gas or refund) at a
// nonce still open, as a journal entry; nil when there is none. The
// service's hash must be the transaction's: an entry that lies about it is
// skipped.
func adoptQueued(queued []safe.ServiceTx, want safe.Tx, chainID uint64, st *safe.State) *SafeProposal {
	for _, qt := range queued {
		t, err := qt.Tx()
		if err != nil || t.Nonce < st.Nonce || t.To != want.To || t.Operation != want.Operation || string(t.Data) != string(want.Data) ||
			orZero(t.Value).Sign() != 0 || orZero(t.SafeTxGas).Sign() != 0 || orZero(t.BaseGas).Sign() != 0 || t.Refunds() ||
			t.GasToken != (common.Address{}) || t.RefundReceiver != (common.Address{}) {
			continue
		}
		h := t.Hash(chainID, st.Address)
		if !strings.EqualFold(h.Hex(), qt.SafeTxHash) {
			continue
		}
		return &SafeProposal{Safe: st.Address.Hex(), SafeTxHash: h.Hex(), Nonce: t.Nonce, To: t.To.Hex(), Data: hexutil.Encode(t.Data),
			Operation: uint8(t.Operation), Proposed: true}
	}
	return nil
}

// sendProposal signs and posts the journaled proposal (the service is
// idempotent per safeTxHash), then marks it proposed.
func (r *Runner) sendProposal(ctx context.Context, q ownerRequest, svc *safe.Service, p *SafeProposal, hs safe.HashSigner) error {
	t, err := p.tx()
	if err != nil {
		return err
	}
	h := common.HexToHash(p.SafeTxHash)
	sig, err := safe.Sign(ctx, hs, h)
	if err != nil {
		return fmt.Errorf("sign Safe transaction %s: %w", h.Hex(), err)
	}
	addr := common.HexToAddress(p.Safe)
	if err := svc.Propose(ctx, addr, safe.NewProposeRequest(t, h, hs.Address(), sig.Static, "cvmdeploy")); err != nil {
		return fmt.Errorf("propose %s to Safe %s: %w", strings.Join(p.Calls, " and "), addr.Hex(), err)
	}
	p.Proposed = true
	if err := q.save(q.step); err != nil {
		return err
	}
	r.say("✓ proposed %s to Safe %s as Safe transaction %s (nonce %d), signed by %s", strings.Join(p.Calls, " and "), addr.Hex(), h.Hex(), p.Nonce, hs.Address().Hex())
	return nil
}

// checkProposal looks at a journaled proposal whose calls are still
// needed: it reports whether a new one must be made (the old one's nonce
// went to another transaction, or it failed on-chain), and re-sends it
// when the service does not have it.
func (r *Runner) checkProposal(ctx context.Context, q ownerRequest, st *safe.State, svc *safe.Service, p *SafeProposal) (bool, error) {
	h := common.HexToHash(p.SafeTxHash)
	if common.HexToAddress(p.Safe) != st.Address {
		r.say("the AppAuth's owner is now %s, not Safe %s of the earlier proposal: proposing again", st.Address.Hex(), p.Safe)
		return true, nil
	}
	if p.Nonce < st.Nonce {
		x, err := q.chain.SafeExecution(ctx, st.Address, h, p.FromBlock)
		if err != nil {
			return false, err
		}
		switch {
		case x == nil:
			r.say("Safe %s used nonce %d for another transaction; Safe transaction %s can no longer run: proposing again", st.Address.Hex(), p.Nonce, h.Hex())
		case !x.Success:
			r.say("Safe transaction %s was executed in %s but its calls failed (ExecutionFailure): proposing again", h.Hex(), x.TxHash.Hex())
		default:
			return false, fmt.Errorf("Safe transaction %s was executed in %s, yet AppAuth %s still lacks %s: it changed since; re-run with --fresh to start over", h.Hex(), x.TxHash.Hex(), q.app.Hex(), strings.Join(p.Calls, " and "))
		}
		return true, nil
	}
	if p.Proposed {
		_, err := svc.Transaction(ctx, h)
		var se *safe.ServiceError
		switch {
		case err == nil:
			r.say("… Safe transaction %s (nonce %d) was proposed earlier: not proposing again", h.Hex(), p.Nonce)
			return false, nil
		case errors.As(err, &se) && se.NotFound():
			r.say("the Safe Transaction Service %s does not know Safe transaction %s: sending it again", svc.BaseURL, h.Hex())
		default:
			return false, fmt.Errorf("read Safe transaction %s: %w", h.Hex(), err)
		}
	}
	hs, ok := r.Signer.(safe.HashSigner)
	if r.Signer == nil || !ok {
		return false, fmt.Errorf("%w: Safe transaction %s is journaled but not in the service: give the signer that proposed it (or another owner or delegate) to send it", ErrInvalidConfig, h.Hex())
	}
	return false, r.sendProposal(ctx, q, svc, p, hs)
}

// pendingOf describes a proposal for the pending error; the confirmation
// count is the service's (best effort).
func (r *Runner) pendingOf(ctx context.Context, chainID uint64, st *safe.State, svc *safe.Service, p *SafeProposal) *SafePending {
	h := common.HexToHash(p.SafeTxHash)
	sp := &SafePending{Safe: st.Address, SafeTxHash: h, Nonce: p.Nonce, Threshold: st.Threshold, ServiceURL: svc.BaseURL, AppURL: safe.AppURL(chainID, st.Address, h)}
	if t, err := svc.Transaction(ctx, h); err == nil {
		sp.Confirmations = len(t.Confirmations)
	}
	return sp
}

// safeApproval is routeOwnerCalls' answer once the calls are allowed after
// a proposal: the transaction that executed it (journaled), or, when
// something else allowed them, whatever was mined before.
func (r *Runner) safeApproval(ctx context.Context, q ownerRequest) (string, error) {
	p := q.journal.Safe
	if p.ExecTxHash != "" {
		return p.ExecTxHash, nil
	}
	h := common.HexToHash(p.SafeTxHash)
	x, err := q.chain.SafeExecution(ctx, common.HexToAddress(p.Safe), h, p.FromBlock)
	if err != nil {
		return "", err
	}
	if x == nil || !x.Success {
		r.say("the AppAuth allows the calls, though Safe transaction %s did not run them", h.Hex())
		return q.journal.last(), nil
	}
	p.ExecTxHash = x.TxHash.Hex()
	if err := q.save(q.step); err != nil {
		return "", err
	}
	r.say("✓ Safe transaction %s was executed in %s (block %d)", h.Hex(), x.TxHash.Hex(), x.Block)
	return p.ExecTxHash, nil
}

// SafeProposalResult is a pending Safe proposal as results print it.
type SafeProposalResult struct {
	Safe          string `json:"safe_address"`
	SafeTxHash    string `json:"safe_tx_hash"`
	Nonce         uint64 `json:"safe_nonce"`
	Confirmations int    `json:"confirmations"`
	Threshold     uint64 `json:"threshold"`
	ServiceURL    string `json:"safe_service_url"`
	AppURL        string `json:"safe_url,omitempty"`
}

// Result renders the pending proposal for a command's result.
func (sp *SafePending) Result() *SafeProposalResult {
	if sp == nil {
		return nil
	}
	return &SafeProposalResult{Safe: sp.Safe.Hex(), SafeTxHash: sp.SafeTxHash.Hex(), Nonce: sp.Nonce, Confirmations: sp.Confirmations,
		Threshold: sp.Threshold, ServiceURL: sp.ServiceURL, AppURL: sp.AppURL}
}

package safeservice

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// entry is one proposed multisig transaction.
type entry struct {
	safe       common.Address
	hash       common.Hash
	tx         safe.Tx
	proposer   common.Address
	delegate   *common.Address // proposedByDelegate
	origin     *string
	trusted    bool
	submitted  time.Time
	modified   time.Time
	fromBlock  uint64 // the chain's head when proposed: executions are searched from here
	confirms   []confirmation
	exec       *execution
	execLooked time.Time
}

type confirmation struct {
	sig safe.Signature
	at  time.Time
}

type execution struct {
	txHash     common.Hash
	block      uint64
	at         time.Time
	executor   common.Address
	success    bool
	gasUsed    uint64
	gasPrice   *big.Int
	signatures []byte
}

// refusal is a 4xx answer with a DRF body.
type refusal struct {
	status int
	body   any
}

func (e *refusal) Error() string { b, _ := json.Marshal(e.body); return string(b) }

func unprocessable(body any) *refusal { return &refusal{http.StatusUnprocessableEntity, body} }

// propose is POST /v2/safes/{safe}/multisig-transactions/.
func (s *Server) propose(w http.ResponseWriter, r *http.Request) {
	addr, ok := pathAddress(w, r, "safe")
	if !ok {
		return
	}
	var raw map[string]json.RawMessage
	if !readBody(w, r, &raw) {
		return
	}
	e, err := s.checkProposal(r.Context(), addr, raw)
	if err != nil {
		s.answer(w, "proposal refused", err, "safe", addr.Hex())
		return
	}
	s.mu.Lock()
	if prev, ok := s.txs[e.hash]; ok {
		// Proposals are idempotent per safeTxHash: new owner signatures are
		// added, the rest stays as first proposed.
		for _, c := range e.confirms {
			if !hasOwner(prev.confirms, c.sig.Owner) {
				prev.confirms = append(prev.confirms, c)
			}
		}
		prev.trusted = prev.trusted || e.trusted
		prev.modified = e.modified
	} else {
		s.txs[e.hash] = e
		s.order = append(s.order, e.hash)
	}
	s.mu.Unlock()
	s.log.Info("proposed", "safe", addr.Hex(), "safe_tx_hash", e.hash.Hex(), "nonce", e.tx.Nonce, "proposer", e.proposer.Hex(), "by_delegate", e.delegate != nil, "confirmations", len(e.confirms))
	w.WriteHeader(http.StatusCreated)
}

func hasOwner(cs []confirmation, owner common.Address) bool {
	for _, c := range cs {
		if c.sig.Owner == owner {
			return true
		}
	}
	return false
}

// answer writes a refusal, or 503 for a chain failure.
func (s *Server) answer(w http.ResponseWriter, what string, err error, kv ...any) {
	if rf, ok := err.(*refusal); ok {
		s.log.Info(what, append(kv, "status", rf.status, "reason", rf.Error())...)
		writeJSON(w, rf.status, rf.body)
		return
	}
	s.chainTrouble(w, err)
}

// checkProposal validates a proposal as the real service's
// SafeMultisigTransactionSerializer does, against the chain.
func (s *Server) checkProposal(ctx context.Context, addr common.Address, raw map[string]json.RawMessage) (*entry, error) {
	for _, k := range []string{"to", "value", "operation", "safeTxGas", "baseGas", "gasPrice", "nonce", "contractTransactionHash", "sender"} {
		if v, ok := raw[k]; !ok || string(v) == "null" {
			return nil, unprocessable(fieldErrors(k, "This field is required."))
		}
	}
	b, _ := json.Marshal(raw)
	var p safe.ProposeRequest
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, unprocessable(nonField("Invalid data: " + err.Error()))
	}
	addrField := func(name, v string, required bool) (common.Address, error) {
		if v == "" && !required {
			return common.Address{}, nil
		}
		if !checksummed(v) {
			return common.Address{}, unprocessable(fieldErrors(name, fmt.Sprintf("Address %s is not checksumed", v)))
		}
		return common.HexToAddress(v), nil
	}
	var t safe.Tx
	var err error
	if t.To, err = addrField("to", p.To, true); err != nil {
		return nil, err
	}
	sender, err := addrField("sender", p.Sender, true)
	if err != nil {
		return nil, err
	}
	if t.GasToken, err = addrField("gasToken", p.GasToken, false); err != nil {
		return nil, err
	}
	if t.RefundReceiver, err = addrField("refundReceiver", p.RefundReceiver, false); err != nil {
		return nil, err
	}
	if p.Data != "" {
		if t.Data, err = hexutil.Decode(p.Data); err != nil {
			return nil, unprocessable(fieldErrors("data", "Invalid hexadecimal data"))
		}
	}
	if p.Operation > 1 {
		return nil, unprocessable(fieldErrors("operation", fmt.Sprintf(`"%d" is not a valid choice.`, p.Operation)))
	}
	t.Operation = safe.Operation(p.Operation)
	t.Value, t.SafeTxGas, t.BaseGas, t.GasPrice = &p.Value.Int, &p.SafeTxGas.Int, &p.BaseGas.Int, &p.GasPrice.Int
	t.Nonce = uint64(p.Nonce)
	given := common.HexToHash(p.ContractTransactionHash)
	if h := t.Hash(s.chainID, addr); h != given || len(p.ContractTransactionHash) != 66 {
		return nil, unprocessable(nonField(fmt.Sprintf("Contract-transaction-hash=%s does not match provided contract-tx-hash=%s", h.Hex(), p.ContractTransactionHash)))
	}
	st, err := s.safeState(ctx, addr)
	if err != nil {
		return nil, err
	}
	if t.Nonce < st.Nonce {
		return nil, unprocessable(nonField(fmt.Sprintf("Tx with nonce=%d already executed", t.Nonce)))
	}
	delegates := s.delegatesOf(addr, st.Owners)
	if !st.IsOwner(sender) {
		if _, ok := delegates[sender]; !ok {
			return nil, unprocessable(nonField(fmt.Sprintf("Sender=%s is not an owner or delegate. Current owners=%s. Delegates=%s", sender.Hex(), addrList(st.Owners), delegateList(delegates))))
		}
	}
	now := s.now()
	e := &entry{safe: addr, hash: given, tx: t, proposer: sender, submitted: now, modified: now}
	if p.Origin != "" {
		o := p.Origin
		e.origin = &o
	}
	if head, err := s.cfg.Chain.BlockNumber(ctx); err == nil {
		e.fromBlock = head
	} else {
		return nil, err
	}
	if d, ok := delegates[sender]; ok && !st.IsOwner(sender) {
		e.proposer, e.delegate = d, &sender
	}
	if p.Signature == "" {
		return e, nil // untrusted: hidden from the default lists
	}
	sigBytes, err := hexutil.Decode(p.Signature)
	if err != nil {
		return nil, unprocessable(fieldErrors("signature", "Invalid hexadecimal signature"))
	}
	sigs, err := safe.Parse(given, sigBytes)
	if err != nil {
		return nil, unprocessable(nonField(err.Error()))
	}
	var signers []common.Address
	for _, sg := range sigs {
		if err := s.checkSignature(ctx, addr, given, sg); err != nil {
			return nil, unprocessable(nonField(err.Error()))
		}
		for _, prev := range signers {
			if prev == sg.Owner {
				return nil, unprocessable(nonField(fmt.Sprintf("Signatures are not sorted or duplicated: signer %s appears twice", sg.Owner.Hex())))
			}
		}
		signers = append(signers, sg.Owner)
		switch {
		case st.IsOwner(sg.Owner):
			e.confirms = append(e.confirms, confirmation{sig: sg, at: now})
		case delegates[sg.Owner] != (common.Address{}):
			if len(sigs) != 1 {
				return nil, unprocessable(nonField(fmt.Sprintf("Just one signature is expected if using delegates, got %d", len(sigs))))
			}
		default:
			return nil, unprocessable(nonField(fmt.Sprintf("Signer=%s is not an owner or delegate. Current owners=%s. Delegates=%s", sg.Owner.Hex(), addrList(st.Owners), delegateList(delegates))))
		}
	}
	found := false
	for _, a := range signers {
		found = found || a == sender
	}
	if !found {
		return nil, unprocessable(nonField(fmt.Sprintf("Signer=%s is not one of the signers %s", sender.Hex(), addrList(signers))))
	}
	e.trusted = true
	return e, nil
}

// checkSignature verifies one item whose owner Parse recovered (or read).
func (s *Server) checkSignature(ctx context.Context, safeAddr common.Address, hash common.Hash, sg safe.Signature) error {
	switch sg.Type {
	case safe.SigEOA, safe.SigEthSign:
		return nil // recovered from the hash: valid for the address it names
	case safe.SigApprovedHash:
		ok, err := safe.HashApproved(ctx, s.cfg.Chain, safeAddr, sg.Owner, hash)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("Signature=%s for owner=%s is not valid: the hash is not approved on-chain", hexutil.Encode(sg.Static), sg.Owner.Hex())
		}
		return nil
	}
	return fmt.Errorf("Signature=%s for owner=%s: %s signatures are not supported by the local service", hexutil.Encode(sg.Static), sg.Owner.Hex(), sg.Type)
}

func addrList(as []common.Address) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = "'" + a.Hex() + "'"
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func delegateList(m map[common.Address]common.Address) string {
	if len(m) == 0 {
		return "set()"
	}
	var as []common.Address
	for d := range m {
		as = append(as, d)
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Hex() < as[j].Hex() })
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = "'" + a.Hex() + "'"
	}
	return "{" + strings.Join(s, ", ") + "}"
}

// confirm is POST /v1/multisig-transactions/{hash}/confirmations/.
func (s *Server) confirm(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	var body struct {
		Signature string `json:"signature"`
	}
	if !readBody(w, r, &body) {
		return
	}
	e := s.lookup(r.Context(), h)
	if e == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "No MultisigTransaction matches the given query."})
		return
	}
	bad := func(msg string) {
		s.log.Info("confirmation refused", "safe_tx_hash", h.Hex(), "reason", msg)
		writeJSON(w, http.StatusBadRequest, fieldErrors("signature", msg))
	}
	if e.exec != nil {
		bad(fmt.Sprintf("Transaction with safe-tx-hash=%s was already executed", h.Hex()))
		return
	}
	raw, err := hexutil.Decode(body.Signature)
	if err != nil {
		bad("Invalid hexadecimal signature")
		return
	}
	sigs, err := safe.Parse(h, raw)
	if err != nil {
		bad(err.Error())
		return
	}
	st, err := s.safeState(r.Context(), e.safe)
	if err != nil {
		s.answer(w, "read refused", err, "safe", e.safe.Hex())
		return
	}
	s.mu.Lock()
	have := append([]confirmation(nil), e.confirms...)
	s.mu.Unlock()
	for _, sg := range sigs {
		if err := s.checkSignature(r.Context(), e.safe, h, sg); err != nil {
			bad(err.Error())
			return
		}
		if !st.IsOwner(sg.Owner) {
			bad(fmt.Sprintf("Signer=%s is not an owner. Current owners=%s", sg.Owner.Hex(), addrList(st.Owners)))
			return
		}
		if hasOwner(have, sg.Owner) {
			bad(fmt.Sprintf("Signature for owner=%s already exists", sg.Owner.Hex()))
			return
		}
		have = append(have, confirmation{sig: sg, at: s.now()})
	}
	s.mu.Lock()
	e.confirms = have
	e.modified = s.now()
	s.mu.Unlock()
	s.log.Info("confirmed", "safe_tx_hash", h.Hex(), "confirmations", len(have))
	writeJSON(w, http.StatusCreated, map[string]string{"signature": body.Signature})
}

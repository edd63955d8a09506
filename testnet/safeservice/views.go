package safeservice

import (
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// view renders an entry as the v2 serializer does.
func (s *Server) view(e *entry, threshold uint64) safe.ServiceTx {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := hexutil.Encode(e.tx.Data)
	v := safe.ServiceTx{
		Safe: e.safe.Hex(), To: e.tx.To.Hex(), Value: safe.NewDec(e.tx.Value), Operation: uint8(e.tx.Operation),
		GasToken: e.tx.GasToken.Hex(), SafeTxGas: safe.NewDec(e.tx.SafeTxGas), BaseGas: safe.NewDec(e.tx.BaseGas),
		GasPrice: safe.NewDec(e.tx.GasPrice), RefundReceiver: e.tx.RefundReceiver.Hex(), Nonce: safe.NewDec(new(big.Int).SetUint64(e.tx.Nonce)),
		SubmissionDate: stamp(e.submitted), Modified: stamp(e.modified), SafeTxHash: e.hash.Hex(), Origin: e.origin,
		ConfirmationsRequired: int(threshold), Trusted: e.trusted, Confirmations: []safe.Confirmation{},
	}
	if len(e.tx.Data) > 0 {
		v.Data = &data
	}
	proposer := e.proposer.Hex()
	v.Proposer = &proposer
	if e.delegate != nil {
		d := e.delegate.Hex()
		v.ProposedByDelegate = &d
	}
	cs := append([]confirmation(nil), e.confirms...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].at.Before(cs[j].at) })
	for _, c := range cs {
		v.Confirmations = append(v.Confirmations, safe.Confirmation{Owner: c.sig.Owner.Hex(), SubmissionDate: stamp(c.at),
			Signature: hexutil.Encode(c.sig.Bytes()), SignatureType: c.sig.Type})
	}
	if x := e.exec; x != nil {
		date, txh, executor := stamp(x.at), x.txHash.Hex(), x.executor.Hex()
		block, gas, ok := x.block, x.gasUsed, x.success
		v.ExecutionDate, v.TransactionHash, v.Executor, v.BlockNumber, v.GasUsed = &date, &txh, &executor, &block, &gas
		v.IsExecuted, v.IsSuccessful = true, &ok
		if x.gasPrice != nil {
			gp := x.gasPrice.String()
			fee := new(big.Int).Mul(x.gasPrice, new(big.Int).SetUint64(x.gasUsed)).String()
			v.EthGasPrice, v.Fee = &gp, &fee
		}
		if x.signatures != nil {
			sigs := hexutil.Encode(x.signatures)
			v.Signatures = &sigs
		}
	}
	return v
}

// getTx is GET /v2/multisig-transactions/{hash}/.
func (s *Server) getTx(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	e := s.lookup(r.Context(), h)
	if e == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "No MultisigTransaction matches the given query."})
		return
	}
	st, err := s.safeState(r.Context(), e.safe)
	if err != nil {
		s.answer(w, "read refused", err, "safe", e.safe.Hex())
		return
	}
	writeJSON(w, http.StatusOK, s.view(e, st.Threshold))
}

// listConfirmations is GET /v1/multisig-transactions/{hash}/confirmations/.
func (s *Server) listConfirmations(w http.ResponseWriter, r *http.Request) {
	h, ok := pathHash(w, r)
	if !ok {
		return
	}
	e := s.lookup(r.Context(), h)
	if e == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "No MultisigTransaction matches the given query."})
		return
	}
	v := s.view(e, 0)
	writeJSON(w, http.StatusOK, safe.Page[safe.Confirmation]{Count: len(v.Confirmations), Results: v.Confirmations})
}

// listTxs is GET /v2/safes/{safe}/multisig-transactions/ with the filters
// api-kit uses: executed, nonce__gte, nonce, has_confirmations, trusted
// (default true), ordering, limit, offset.
func (s *Server) listTxs(w http.ResponseWriter, r *http.Request) {
	addr, ok := pathAddress(w, r, "safe")
	if !ok {
		return
	}
	q := r.URL.Query()
	st, err := s.safeState(r.Context(), addr)
	if err != nil {
		if _, ok := err.(*refusal); ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
			return
		}
		s.chainTrouble(w, err)
		return
	}
	s.mu.Lock()
	var es []*entry
	for _, h := range s.order {
		if e := s.txs[h]; e.safe == addr {
			es = append(es, e)
		}
	}
	s.mu.Unlock()
	for _, e := range es {
		s.refresh(r.Context(), e)
	}
	boolParam := func(name string) (bool, bool) {
		v := strings.ToLower(q.Get(name))
		switch v {
		case "true", "1":
			return true, true
		case "false", "0":
			return false, true
		}
		return false, false
	}
	uintParam := func(name string) (uint64, bool, bool) {
		v := q.Get(name)
		if v == "" {
			return 0, false, true
		}
		n, err := strconv.ParseUint(v, 10, 64)
		return n, true, err == nil
	}
	gte, hasGte, ok1 := uintParam("nonce__gte")
	eq, hasEq, ok2 := uintParam("nonce")
	limit, hasLimit, ok3 := uintParam("limit")
	offset, _, ok4 := uintParam("offset")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"detail": "Invalid number in the query"})
		return
	}
	if !hasLimit {
		limit = 10
	}
	trusted := true
	if v, set := boolParam("trusted"); set {
		trusted = v
	}
	var out []safe.ServiceTx
	for _, e := range es {
		v := s.view(e, st.Threshold)
		n := v.Nonce.Uint64()
		if x, set := boolParam("executed"); set && v.IsExecuted != x {
			continue
		}
		if hasGte && n < gte || hasEq && n != eq {
			continue
		}
		if x, set := boolParam("has_confirmations"); set && (len(v.Confirmations) > 0) != x {
			continue
		}
		if trusted && !v.Trusted {
			continue
		}
		out = append(out, v)
	}
	ordering := q.Get("ordering")
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch ordering {
		case "nonce":
			return a.Nonce.Cmp(&b.Nonce.Int) < 0
		case "created", "submissionDate":
			return a.SubmissionDate < b.SubmissionDate
		case "-created", "-submissionDate":
			return a.SubmissionDate > b.SubmissionDate
		case "modified":
			return a.Modified < b.Modified
		case "-modified":
			return a.Modified > b.Modified
		}
		// Default (and "-nonce"): newest nonce first, then newest proposal.
		if c := a.Nonce.Cmp(&b.Nonce.Int); c != 0 {
			return c > 0
		}
		return a.SubmissionDate > b.SubmissionDate
	})
	page := safe.Page[safe.ServiceTx]{Count: len(out), Results: []safe.ServiceTx{}}
	nonces := map[string]bool{}
	for _, v := range out {
		nonces[v.Nonce.String()] = true
	}
	unique := len(nonces)
	page.CountUniqueNonce = &unique
	if offset < uint64(len(out)) {
		end := min(offset+limit, uint64(len(out)))
		page.Results = out[offset:end]
		if end < uint64(len(out)) {
			next := pageURL(r, end, limit)
			page.Next = &next
		}
	}
	if offset > 0 {
		prev := pageURL(r, uint64(max(int64(offset)-int64(limit), 0)), limit)
		page.Previous = &prev
	}
	writeJSON(w, http.StatusOK, page)
}

func pageURL(r *http.Request, offset, limit uint64) string {
	q := r.URL.Query()
	q.Set("offset", strconv.FormatUint(offset, 10))
	q.Set("limit", strconv.FormatUint(limit, 10))
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}

package safeservice

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// delegate is one registration: delegate may propose to safe (nil: to
// every Safe delegator owns) until expiry (nil: forever).
type delegate struct {
	safe      *common.Address
	delegate  common.Address
	delegator common.Address
	label     string
	expiry    *time.Time
}

func (d *delegate) view() safe.Delegate {
	v := safe.Delegate{Delegate: d.delegate.Hex(), Delegator: d.delegator.Hex(), Label: d.label}
	if d.safe != nil {
		a := d.safe.Hex()
		v.Safe = &a
	}
	if d.expiry != nil {
		e := stamp(*d.expiry)
		v.ExpiryDate = &e
	}
	return v
}

// delegatesOf maps each delegate allowed to propose to safeAddr now onto
// its delegator: registered for this Safe or for all, unexpired, by a
// current owner.
func (s *Server) delegatesOf(safeAddr common.Address, owners []common.Address) map[common.Address]common.Address {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[common.Address]common.Address{}
	for _, d := range s.delegates {
		if d.safe != nil && *d.safe != safeAddr || d.expiry != nil && !now.Before(*d.expiry) || !slices.Contains(owners, d.delegator) {
			continue
		}
		out[d.delegate] = d.delegator
	}
	return out
}

// addDelegate is POST /v2/delegates/: the delegator registers a delegate
// with its EIP-712 Delegate(delegateAddress, totp) signature.
func (s *Server) addDelegate(w http.ResponseWriter, r *http.Request) {
	var req safe.DelegateRequest
	if !readBody(w, r, &req) {
		return
	}
	bad := func(body any) {
		s.log.Info("delegate refused", "reason", fmt.Sprint(body))
		writeJSON(w, http.StatusBadRequest, body)
	}
	for _, f := range []struct{ name, v string }{{"delegate", req.Delegate}, {"delegator", req.Delegator}} {
		if f.v == "" {
			bad(fieldErrors(f.name, "This field is required."))
			return
		}
		if !checksummed(f.v) {
			bad(fieldErrors(f.name, fmt.Sprintf("Address %s is not checksumed", f.v)))
			return
		}
	}
	if req.Label == "" || len(req.Label) > 50 {
		bad(fieldErrors("label", "Ensure this field has between 1 and 50 characters."))
		return
	}
	d := &delegate{delegate: common.HexToAddress(req.Delegate), delegator: common.HexToAddress(req.Delegator), label: req.Label}
	if req.Safe != nil {
		if !checksummed(*req.Safe) {
			bad(fieldErrors("safe", fmt.Sprintf("Address %s is not checksumed", *req.Safe)))
			return
		}
		a := common.HexToAddress(*req.Safe)
		d.safe = &a
	}
	if req.ExpiryDate != nil {
		t, err := time.Parse(time.RFC3339, *req.ExpiryDate)
		if err != nil {
			bad(fieldErrors("expiryDate", "Datetime has wrong format."))
			return
		}
		d.expiry = &t
	}
	sig, err := hexutil.Decode(req.Signature)
	if err != nil {
		bad(fieldErrors("signature", "Invalid hexadecimal signature"))
		return
	}
	signers, err := safe.RecoverDelegateSigner(s.chainID, d.delegate, sig, s.now())
	if err != nil || !slices.Contains(signers, d.delegator) {
		bad(nonField(fmt.Sprintf("Signature does not match provided delegator=%s", d.delegator.Hex())))
		return
	}
	if d.safe != nil {
		st, err := s.safeState(r.Context(), *d.safe)
		if err != nil {
			if _, ok := err.(*refusal); ok {
				bad(fieldErrors("safe", fmt.Sprintf("Safe=%s does not exist or it's still not indexed", d.safe.Hex())))
				return
			}
			s.chainTrouble(w, err)
			return
		}
		if !st.IsOwner(d.delegator) {
			bad(nonField(fmt.Sprintf("Provided delegator=%s is not an owner of Safe=%s", d.delegator.Hex(), d.safe.Hex())))
			return
		}
	}
	s.mu.Lock()
	replaced := false
	for i, old := range s.delegates {
		if old.delegate == d.delegate && old.delegator == d.delegator && sameSafe(old.safe, d.safe) {
			s.delegates[i], replaced = d, true
		}
	}
	if !replaced {
		s.delegates = append(s.delegates, d)
	}
	s.mu.Unlock()
	s.log.Info("delegate added", "delegate", d.delegate.Hex(), "delegator", d.delegator.Hex(), "all_safes", d.safe == nil)
	writeJSON(w, http.StatusCreated, d.view())
}

func sameSafe(a, b *common.Address) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// listDelegates is GET /v2/delegates/?safe=&delegate=&delegator=&label=.
func (s *Server) listDelegates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var filters [3]*common.Address
	for i, name := range []string{"safe", "delegate", "delegator"} {
		if v := q.Get(name); v != "" {
			if !checksummed(v) {
				checksumError(w, v)
				return
			}
			a := common.HexToAddress(v)
			filters[i] = &a
		}
	}
	label := q.Get("label")
	s.mu.Lock()
	page := safe.Page[safe.Delegate]{Results: []safe.Delegate{}}
	for _, d := range s.delegates {
		if filters[0] != nil && (d.safe == nil || *d.safe != *filters[0]) ||
			filters[1] != nil && d.delegate != *filters[1] ||
			filters[2] != nil && d.delegator != *filters[2] ||
			label != "" && d.label != label {
			continue
		}
		page.Results = append(page.Results, d.view())
	}
	s.mu.Unlock()
	page.Count = len(page.Results)
	writeJSON(w, http.StatusOK, page)
}

// removeDelegate is DELETE /v2/delegates/{delegate}: signed by the
// delegator or the delegate.
func (s *Server) removeDelegate(w http.ResponseWriter, r *http.Request) {
	del, ok := pathAddress(w, r, "delegate")
	if !ok {
		return
	}
	var req safe.DelegateRemoveRequest
	if !readBody(w, r, &req) {
		return
	}
	if !checksummed(req.Delegator) {
		writeJSON(w, http.StatusBadRequest, fieldErrors("delegator", fmt.Sprintf("Address %s is not checksumed", req.Delegator)))
		return
	}
	delegator := common.HexToAddress(req.Delegator)
	var only *common.Address
	if req.Safe != nil {
		if !checksummed(*req.Safe) {
			writeJSON(w, http.StatusBadRequest, fieldErrors("safe", fmt.Sprintf("Address %s is not checksumed", *req.Safe)))
			return
		}
		a := common.HexToAddress(*req.Safe)
		only = &a
	}
	sig, err := hexutil.Decode(req.Signature)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, fieldErrors("signature", "Invalid hexadecimal signature"))
		return
	}
	signers, err := safe.RecoverDelegateSigner(s.chainID, del, sig, s.now())
	if err != nil || !slices.Contains(signers, delegator) && !slices.Contains(signers, del) {
		writeJSON(w, http.StatusBadRequest, nonField("Signature does not match the delegate or the delegator"))
		return
	}
	s.mu.Lock()
	kept := s.delegates[:0]
	removed := 0
	for _, d := range s.delegates {
		if d.delegate == del && d.delegator == delegator && (only == nil || sameSafe(d.safe, only)) {
			removed++
			continue
		}
		kept = append(kept, d)
	}
	s.delegates = kept
	s.mu.Unlock()
	if removed == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not found."})
		return
	}
	s.log.Info("delegate removed", "delegate", del.Hex(), "delegator", delegator.Hex())
	w.WriteHeader(http.StatusNoContent)
}

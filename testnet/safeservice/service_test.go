package safeservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/safeservice"
)

// env is a local testnet with a 2-of-3 Safe and its service.
type env struct {
	ln     *testnet.Localnet
	svc    *safe.Service
	chain  *deployer.Client
	owners []deployer.Signer // dev accounts 1-3
	others []deployer.Signer // dev accounts 4-6: not owners
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocalnet(ctx, testnet.LocalnetConfig{SafeOwners: 3, SafeThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	chain, err := deployer.Dial(ctx, ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(chain.Close)
	e := &env{ln: ln, svc: &safe.Service{BaseURL: ln.SafeServiceURL}, chain: chain}
	accts := ln.Chain.Accounts()
	for i := 1; i <= 6; i++ {
		s := deployer.NewKeySigner(accts[i].PrivateKey)
		if i <= 3 {
			e.owners = append(e.owners, s)
		} else {
			e.others = append(e.others, s)
		}
	}
	return e
}

func hashSigner(t *testing.T, s deployer.Signer) safe.HashSigner {
	t.Helper()
	hs, ok := s.(safe.HashSigner)
	if !ok {
		t.Fatal("deployer's key signer does not sign digests")
	}
	return hs
}

// tx is a call from the Safe to an account without code (it cannot fail).
func (e *env) tx(nonce uint64, tag string) (safe.Tx, common.Hash) {
	t := safe.Tx{To: e.ln.DevAccount.Address, Data: crypto.Keccak256([]byte(tag))[:4], Nonce: nonce}
	return t, t.Hash(e.ln.ChainID, e.ln.Safe)
}

func (e *env) propose(t *testing.T, tx safe.Tx, h common.Hash, sender deployer.Signer, signer deployer.Signer) error {
	t.Helper()
	var sig []byte
	if signer != nil {
		s, err := safe.Sign(context.Background(), hashSigner(t, signer), h)
		if err != nil {
			t.Fatal(err)
		}
		sig = s.Static
	}
	return e.svc.Propose(context.Background(), e.ln.Safe, safe.NewProposeRequest(tx, h, sender.Address(), sig, "test"))
}

func wantRefusal(t *testing.T, err error, status int, contains string) {
	t.Helper()
	var se *safe.ServiceError
	if !errors.As(err, &se) || se.Status != status || !strings.Contains(string(se.Body), contains) {
		t.Fatalf("want HTTP %d mentioning %q, got %v", status, contains, err)
	}
}

func (e *env) addDelegate(t *testing.T, delegator, delegate deployer.Signer, forSafe bool) error {
	t.Helper()
	sig, err := safe.SignDelegate(context.Background(), hashSigner(t, delegator), e.ln.ChainID, delegate.Address(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := safe.DelegateRequest{Delegate: delegate.Address().Hex(), Delegator: delegator.Address().Hex(), Label: "ci", Signature: hexutil.Encode(sig)}
	if forSafe {
		s := e.ln.Safe.Hex()
		req.Safe = &s
	}
	return e.svc.AddDelegate(context.Background(), req)
}

// TestProposeChecks: what the real service refuses, the local one refuses.
func TestProposeChecks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tx, h := e.tx(0, "a")

	// A safeTxHash that is not the hash of the body (here: another nonce's).
	_, other := e.tx(1, "a")
	req := safe.NewProposeRequest(tx, other, e.owners[0].Address(), nil, "")
	wantRefusal(t, e.svc.Propose(ctx, e.ln.Safe, req), 422, "does not match provided contract-tx-hash")
	// Neither an owner nor a delegate, as sender or as signer.
	wantRefusal(t, e.propose(t, tx, h, e.others[0], e.others[0]), 422, "is not an owner or delegate")
	wantRefusal(t, e.propose(t, tx, h, e.owners[0], e.others[0]), 422, "is not an owner or delegate")
	// A signature that does not match its sender.
	wantRefusal(t, e.propose(t, tx, h, e.owners[0], e.owners[1]), 422, "is not one of the signers")
	// A signature over another hash recovers someone else.
	s, _ := safe.Sign(ctx, hashSigner(t, e.owners[0]), other)
	req = safe.NewProposeRequest(tx, h, e.owners[0].Address(), s.Static, "")
	wantRefusal(t, e.svc.Propose(ctx, e.ln.Safe, req), 422, "not")
	// Addresses must be checksummed, in the path and in the body.
	zero := tx.Hash(e.ln.ChainID, common.Address{}) // the zero address is no Safe
	err := e.svc.Propose(ctx, common.Address{}, safe.NewProposeRequest(tx, zero, e.owners[0].Address(), nil, ""))
	wantRefusal(t, err, 422, "does not exist")
	raw := postRaw(t, e.ln.SafeServiceURL+"/v2/safes/"+strings.ToLower(e.ln.Safe.Hex())+"/multisig-transactions/", req)
	if raw.status != 422 || !strings.Contains(raw.body, "Checksum address validation failed") {
		t.Fatalf("lowercase Safe in the path: %d %s", raw.status, raw.body)
	}
	req.Sender = strings.ToLower(req.Sender)
	wantRefusal(t, e.svc.Propose(ctx, e.ln.Safe, req), 422, `"sender":["Address`)
	if _, err := e.svc.Transaction(ctx, h); err == nil {
		t.Fatal("a refused proposal was stored")
	}

	// An owner's proposal is stored with its signature as a confirmation.
	if err := e.propose(t, tx, h, e.owners[0], e.owners[0]); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Transaction(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if got.SafeTxHash != h.Hex() || got.ConfirmationsRequired != 2 || len(got.Confirmations) != 1 || !got.Trusted || got.IsExecuted ||
		got.Confirmations[0].Owner != e.owners[0].Address().Hex() || got.Confirmations[0].SignatureType != safe.SigEOA {
		t.Fatalf("stored %+v", got)
	}
	back, err := got.Tx()
	if err != nil || back.Hash(e.ln.ChainID, e.ln.Safe) != h {
		t.Fatalf("the stored transaction does not hash back: %v", err)
	}
	// Proposing again is idempotent.
	if err := e.propose(t, tx, h, e.owners[0], e.owners[0]); err != nil {
		t.Fatal(err)
	}
	// An unsigned proposal is accepted but untrusted: hidden by default.
	tx2, h2 := e.tx(1, "b")
	if err := e.propose(t, tx2, h2, e.owners[1], nil); err != nil {
		t.Fatal(err)
	}
	page, err := e.svc.Pending(ctx, e.ln.Safe, 0)
	if err != nil || page.Count != 1 || page.Results[0].SafeTxHash != h.Hex() {
		t.Fatalf("pending %+v %v", page, err)
	}
}

type rawAnswer struct {
	status int
	body   string
}

func postRaw(t *testing.T, url string, body any) rawAnswer {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return rawAnswer{resp.StatusCode, string(raw)}
}

// TestDelegatesConfirmExecute: a delegate proposes, owners confirm, the
// confirmations execute on the Safe, and the service sees the execution.
func TestDelegatesConfirmExecute(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ci, stranger := e.others[0], e.others[1]
	// Registrations must be signed by the delegator, an owner.
	sig, _ := safe.SignDelegate(ctx, hashSigner(t, stranger), e.ln.ChainID, ci.Address(), time.Now())
	s := e.ln.Safe.Hex()
	err := e.svc.AddDelegate(ctx, safe.DelegateRequest{Safe: &s, Delegate: ci.Address().Hex(), Delegator: e.owners[0].Address().Hex(), Label: "ci", Signature: hexutil.Encode(sig)})
	wantRefusal(t, err, 400, "does not match")
	wantRefusal(t, e.addDelegate(t, stranger, ci, true), 400, "is not an owner")
	// For every Safe: accepted, but a non-owner's delegate proposes nothing.
	if err := e.addDelegate(t, stranger, ci, false); err != nil {
		t.Fatal(err)
	}
	tx, h := e.tx(0, "batch")
	wantRefusal(t, e.propose(t, tx, h, ci, ci), 422, "is not an owner or delegate")
	if err := e.addDelegate(t, e.owners[0], ci, true); err != nil {
		t.Fatal(err)
	}
	list, err := e.svc.Delegates(ctx, e.ln.Safe, ci.Address())
	if err != nil || list.Count != 1 || list.Results[0].Delegator != e.owners[0].Address().Hex() {
		t.Fatalf("delegates %+v %v", list, err)
	}
	if err := e.propose(t, tx, h, ci, ci); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Transaction(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Proposer != e.owners[0].Address().Hex() || got.ProposedByDelegate == nil || *got.ProposedByDelegate != ci.Address().Hex() || len(got.Confirmations) != 0 {
		t.Fatalf("delegate proposal stored as %+v", got)
	}

	// Delegates and strangers cannot confirm; owners can, once.
	for _, who := range []deployer.Signer{ci, stranger} {
		s, _ := safe.Sign(ctx, hashSigner(t, who), h)
		wantRefusal(t, e.svc.Confirm(ctx, h, s.Static), 400, "is not an owner")
	}
	if err := e.svc.Confirm(ctx, crypto.Keccak256Hash([]byte("unknown")), []byte{1}); err == nil {
		t.Fatal("a confirmation of an unknown hash was accepted")
	} else if se := (*safe.ServiceError)(nil); !errors.As(err, &se) || !se.NotFound() {
		t.Fatalf("unknown hash: %v", err)
	}
	var sigs []safe.Signature
	for _, o := range []deployer.Signer{e.owners[2], e.owners[1]} {
		s, _ := safe.Sign(ctx, hashSigner(t, o), h)
		if err := e.svc.Confirm(ctx, h, s.Static); err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, s)
	}
	s3, _ := safe.SignEthSign(ctx, hashSigner(t, e.owners[1]), h)
	wantRefusal(t, e.svc.Confirm(ctx, h, s3.Static), 400, "already exists")

	// Execute with the service's confirmations, sorted by owner.
	got, _ = e.svc.Transaction(ctx, h)
	var fromService []safe.Signature
	for _, c := range got.Confirmations {
		b, _ := hexutil.Decode(c.Signature)
		p, err := safe.Parse(h, b)
		if err != nil {
			t.Fatal(err)
		}
		fromService = append(fromService, p...)
	}
	execTx, _ := got.Tx()
	safeAddr := e.ln.Safe
	r, err := e.chain.Transact(ctx, ci, deployer.TxRequest{To: &safeAddr, Data: execTx.ExecData(safe.Pack(fromService))}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err = e.svc.Transaction(ctx, h)
	if err != nil || !got.IsExecuted || got.TransactionHash == nil || *got.TransactionHash != r.TxHash.Hex() || got.IsSuccessful == nil ||
		*got.Executor != ci.Address().Hex() || *got.Signatures != hexutil.Encode(safe.Pack(sigs)) {
		t.Fatalf("after execution: %+v %v", got, err)
	}
	wantRefusal(t, e.svc.Confirm(ctx, h, sigs[0].Static), 400, "already executed")
	// The nonce is spent: another transaction with it is refused.
	tx2, h2 := e.tx(0, "other")
	wantRefusal(t, e.propose(t, tx2, h2, e.owners[0], e.owners[0]), 422, "already executed")
	page, err := e.svc.Pending(ctx, e.ln.Safe, 1)
	if err != nil || page.Count != 0 {
		t.Fatalf("pending after execution %+v %v", page, err)
	}
}

// TestAPIKeyRequired: a service configured with a key refuses requests
// without it, and the client sends it as a bearer token.
func TestAPIKeyRequired(t *testing.T) {
	e := newEnv(t)
	svc, err := safeservice.New(context.Background(), safeservice.Config{Chain: e.chain.Eth(), APIKey: "k-123"})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	c := &safe.Service{BaseURL: svc.URL()}
	_, err = c.SafeInfo(context.Background(), e.ln.Safe)
	wantRefusal(t, err, 401, "credentials")
	c.APIKey = "k-123"
	info, err := c.SafeInfo(context.Background(), e.ln.Safe)
	if err != nil || info.Threshold != 2 || len(info.Owners) != 3 || info.Version != "1.4.1" || info.MasterCopy != safe.SafeL2.Address.Hex() {
		t.Fatalf("safe info %+v %v", info, err)
	}
}

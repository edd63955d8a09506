package cvm

import (
	"context"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/safeservice"
)

// safeRouting is a testnet with a 2-of-3 Safe owning a fresh AppAuth, and
// a CI key registered as the Safe's delegate.
type safeRouting struct {
	ln     *testnet.Localnet
	chain  *deployer.Client
	app    common.Address
	owners []deployer.Signer
	ci     deployer.Signer
	device [32]byte
	hash   [32]byte
}

func newSafeRouting(t *testing.T) *safeRouting {
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
	s := &safeRouting{ln: ln, chain: chain}
	accts := ln.Chain.Accounts()
	for _, a := range ln.SafeOwners {
		s.owners = append(s.owners, deployer.NewKeySigner(a.PrivateKey))
	}
	s.ci = deployer.NewKeySigner(accts[4].PrivateKey)
	d, err := chain.DeployApp(ctx, deployer.NewKeySigner(ln.DevAccount.PrivateKey), deployer.DeployAppConfig{
		KMS: ln.KMSContract, Owner: ln.Safe, ComposeHash: crypto.Keccak256Hash([]byte("v1")), DeviceID: crypto.Keccak256Hash([]byte("node-1")),
	}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.app = d.AppID
	// The update needs a new node's device and a new compose hash: two
	// calls, so one MultiSendCallOnly batch.
	s.device, s.hash = crypto.Keccak256Hash([]byte("node-2")), crypto.Keccak256Hash([]byte("v2"))
	r := s.runner(s.owners[0], ln.SafeServiceURL)
	if _, err := r.SafeDelegate(ctx, SafeDelegateConfig{Safe: ln.Safe, Delegate: s.ci.Address(), Label: "ci"}, false); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *safeRouting) runner(signer deployer.Signer, service string) *Runner {
	return &Runner{RPCURL: s.ln.RPCURL, Signer: signer, Safe: SafeRouting{Propose: true, ServiceURL: service}}
}

// request is update's device + hash approval as an ownerRequest.
func (s *safeRouting) request(j *OwnerCalls) ownerRequest {
	return ownerRequest{
		chain: s.chain, chainID: s.ln.ChainID, app: s.app, journal: j, step: "test", what: "allow the update",
		save: func(string) error { return nil },
		needed: func(ctx context.Context) ([]deployer.AppCall, common.Address, error) {
			info, err := s.chain.AppInfo(ctx, deployer.AppInfoQuery{App: s.app, ComposeHash: &s.hash, DeviceID: &s.device})
			if err != nil {
				return nil, common.Address{}, err
			}
			var calls []deployer.AppCall
			if !*info.DeviceAllowed {
				calls = append(calls, deployer.AddDeviceCall(s.device))
			}
			if !*info.ComposeHashAllowed {
				calls = append(calls, deployer.AddComposeHashCall(s.hash))
			}
			return calls, info.Owner, nil
		},
	}
}

func pendingSafe(t *testing.T, err error) *SafePending {
	t.Helper()
	var pe *ApprovalPendingError
	if !errors.As(err, &pe) || pe.Safe == nil {
		t.Fatalf("want a Safe proposal pending, got %v", err)
	}
	return pe.Safe
}

// TestRouteToSafe walks the routing layer through a Safe owner: the batch
// is proposed once even when the first send fails, re-sent to a service
// that lost it, proposed anew when its nonce goes to another transaction;
// owners confirm and execute it (MultiSendCallOnly, checked), and the
// layer then answers the execution's transaction.
func TestRouteToSafe(t *testing.T) {
	s := newSafeRouting(t)
	ctx := context.Background()
	j := &OwnerCalls{}

	// The proposal's POST is lost on the way (the connection drops): it
	// was journaled before, so the next run sends that one.
	target, _ := url.Parse(s.ln.SafeServiceURL)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/multisig-transactions/") {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	defer flaky.Close()
	r := s.runner(s.ci, flaky.URL+target.Path)
	_, err := r.routeOwnerCalls(ctx, s.request(j))
	if !errors.Is(err, safe.ErrServiceUnreachable) || j.Safe == nil || j.Safe.Proposed {
		t.Fatalf("with the POST lost: %v, journal %+v", err, j.Safe)
	}
	first := j.Safe.SafeTxHash
	if j.Safe.Operation != uint8(safe.OpDelegateCall) || common.HexToAddress(j.Safe.To) != safe.MultiSendCallOnly.Address || strings.Join(j.Safe.Calls, ",") != "addDevice,addComposeHash" {
		t.Fatalf("the batch is %+v", j.Safe)
	}

	// Back up: the same proposal is sent, not a new one.
	r = s.runner(s.ci, s.ln.SafeServiceURL)
	sp := pendingSafe(t, func() error { _, err := r.routeOwnerCalls(ctx, s.request(j)); return err }())
	if sp.SafeTxHash.Hex() != first || sp.Nonce != 0 || sp.Threshold != 2 || !j.Safe.Proposed {
		t.Fatalf("after the service came back: %+v", sp)
	}
	svc := &safe.Service{BaseURL: s.ln.SafeServiceURL}
	got, err := svc.Transaction(ctx, sp.SafeTxHash)
	if err != nil || *got.ProposedByDelegate != s.ci.Address().Hex() {
		t.Fatalf("the service holds %+v (%v)", got, err)
	}
	// A run without the journal (a fresh CI machine) finds it queued, even
	// without a key, and queues nothing new.
	other := &OwnerCalls{}
	sp2 := pendingSafe(t, func() error {
		_, err := s.runner(nil, s.ln.SafeServiceURL).routeOwnerCalls(ctx, s.request(other))
		return err
	}())
	if sp2.SafeTxHash != sp.SafeTxHash || other.Safe == nil || !other.Safe.Proposed {
		t.Fatalf("without the journal: %+v, journal %+v", sp2, other.Safe)
	}
	if page, err := svc.Pending(ctx, s.ln.Safe, 0); err != nil || page.Count != 1 {
		t.Fatalf("queue after the journal-less run: %+v %v", page, err)
	}

	// A service that lost it (a fresh one) gets it again, same hash.
	fresh, err := safeservice.New(ctx, safeservice.Config{Chain: s.chain.Eth()})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := s.runner(s.owners[0], fresh.URL()).SafeDelegate(ctx, SafeDelegateConfig{Safe: s.ln.Safe, Delegate: s.ci.Address()}, false); err != nil {
		t.Fatal(err)
	}
	sp = pendingSafe(t, func() error { _, err := s.runner(s.ci, fresh.URL()).routeOwnerCalls(ctx, s.request(j)); return err }())
	if sp.SafeTxHash.Hex() != first {
		t.Fatalf("re-sent as %s, want %s", sp.SafeTxHash, first)
	}
	if _, err := (&safe.Service{BaseURL: fresh.URL()}).Transaction(ctx, sp.SafeTxHash); err != nil {
		t.Fatalf("the fresh service did not get the proposal: %v", err)
	}

	// Owners spend nonce 0 on something else: the layer proposes anew.
	elsewhere := safe.Tx{To: s.ln.DevAccount.Address, Data: []byte{1}, Nonce: 0}
	oh := elsewhere.Hash(s.ln.ChainID, s.ln.Safe)
	var sigs []safe.Signature
	for _, o := range s.owners[:2] {
		sg, _ := safe.Sign(ctx, o.(safe.HashSigner), oh)
		sigs = append(sigs, sg)
	}
	sa := s.ln.Safe
	if _, err := s.chain.Transact(ctx, s.ci, deployer.TxRequest{To: &sa, Data: elsewhere.ExecData(safe.Pack(sigs))}, deployer.TxOptions{}); err != nil {
		t.Fatal(err)
	}
	sp = pendingSafe(t, func() error { _, err := r.routeOwnerCalls(ctx, s.request(j)); return err }())
	if sp.SafeTxHash.Hex() == first || sp.Nonce != 1 {
		t.Fatalf("after nonce 0 went elsewhere: %+v", sp)
	}

	// Owners confirm offline and anyone executes (the batch is decoded).
	for _, o := range s.owners[1:] {
		res, err := s.runner(o, s.ln.SafeServiceURL).SafeSign(ctx, SafeTxConfig{Safe: s.ln.Safe, SafeTxHash: sp.SafeTxHash})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Calls) != 2 || !strings.HasPrefix(res.Calls[0].Function, "addDevice(0x") || res.Operation != "DELEGATECALL" {
			t.Fatalf("safe sign showed %+v", res)
		}
	}
	ex, err := s.runner(s.ci, s.ln.SafeServiceURL).SafeExec(ctx, SafeTxConfig{Safe: s.ln.Safe, SafeTxHash: sp.SafeTxHash})
	if err != nil || ex.Status != "executed" {
		t.Fatalf("safe exec: %+v %v", ex, err)
	}
	txHash, err := r.routeOwnerCalls(ctx, s.request(j))
	if err != nil || txHash != ex.TxHash || j.Safe.ExecTxHash != ex.TxHash {
		t.Fatalf("after execution the layer answers %q (%v), want %s", txHash, err, ex.TxHash)
	}
}

// TestRouteToNonSafeOwner: --safe-propose with an owner that is no Safe
// proposes nothing and hands the calls back as before.
func TestRouteToNonSafeOwner(t *testing.T) {
	s := newSafeRouting(t)
	ctx := context.Background()
	q := s.request(&OwnerCalls{})
	inner := q.needed
	stranger := s.owners[2].Address() // an EOA, not the app's owner
	q.needed = func(ctx context.Context) ([]deployer.AppCall, common.Address, error) {
		calls, _, err := inner(ctx)
		return calls, stranger, err
	}
	_, err := s.runner(s.ci, s.ln.SafeServiceURL).routeOwnerCalls(ctx, q)
	var pe *ApprovalPendingError
	if !errors.As(err, &pe) || pe.Safe != nil || pe.Owner != stranger || len(pe.Calls) != 2 || q.journal.Safe != nil {
		t.Fatalf("an EOA owner: %v", err)
	}
}

// TestSafeSignRefusals: safe sign refuses a DELEGATECALL into anything but
// MultiSendCallOnly, a transaction paying a refund, and a signer who is
// not an owner; nothing is confirmed.
func TestSafeSignRefusals(t *testing.T) {
	s := newSafeRouting(t)
	ctx := context.Background()
	svc := &safe.Service{BaseURL: s.ln.SafeServiceURL}
	propose := func(tx safe.Tx) common.Hash {
		h := tx.Hash(s.ln.ChainID, s.ln.Safe)
		sg, _ := safe.Sign(ctx, s.owners[0].(safe.HashSigner), h)
		if err := svc.Propose(ctx, s.ln.Safe, safe.NewProposeRequest(tx, h, s.owners[0].Address(), sg.Static, "")); err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, tc := range []struct {
		name string
		tx   safe.Tx
		want string
	}{
		{"delegatecall elsewhere", safe.Tx{To: s.ln.KMSContract, Operation: safe.OpDelegateCall, Data: []byte{1, 2, 3, 4}}, "could run any code"},
		{"refund", safe.Tx{To: s.app, Data: deployer.AddComposeHashCall(s.hash).Data, GasPrice: big.NewInt(1), Nonce: 1}, "refund"},
	} {
		h := propose(tc.tx)
		_, err := s.runner(s.owners[1], s.ln.SafeServiceURL).SafeSign(ctx, SafeTxConfig{Safe: s.ln.Safe, SafeTxHash: h})
		if !errors.Is(err, ErrSafeCheck) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
		got, _ := svc.Transaction(ctx, h)
		if len(got.Confirmations) != 1 {
			t.Errorf("%s: %d confirmations after the refusal", tc.name, len(got.Confirmations))
		}
	}
	h := propose(safe.Tx{To: s.app, Data: deployer.AddComposeHashCall(s.hash).Data, Nonce: 2})
	if _, err := s.runner(s.ci, s.ln.SafeServiceURL).SafeSign(ctx, SafeTxConfig{Safe: s.ln.Safe, SafeTxHash: h}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a delegate signing: %v", err)
	}
}

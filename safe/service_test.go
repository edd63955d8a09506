package safe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// TestServiceClientRequests: the client's method, path and headers are
// api-kit's (tx-service-apikit.json), and the API key is sent as a bearer
// token and only there.
func TestServiceClientRequests(t *testing.T) {
	var v apikitVector
	readVector(t, "tx-service-apikit.json", &v)
	var got []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), b})
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/safes/"):
			io.WriteString(w, `{"address":"0x399c61b017A871181d8B6C418c93a8bB361E3Db8","nonce":"5","threshold":2,"owners":[],"masterCopy":"0x29fcB43b46531BcA003ddC8FCB67FFE91900C762"}`)
		case r.Method == http.MethodGet:
			io.WriteString(w, `{"safe":"0x399c61b017A871181d8B6C418c93a8bB361E3Db8","to":"0x0000000000000000000000000000000000000001","value":"0","data":null,"operation":0,"gasToken":"0x0000000000000000000000000000000000000000","safeTxGas":0,"baseGas":"0","gasPrice":"0","refundReceiver":"0x0000000000000000000000000000000000000000","nonce":"7","confirmations":[]}`)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	}))
	defer srv.Close()
	s := &Service{BaseURL: srv.URL + "/api", APIKey: "TEST_API_KEY"}
	ctx := context.Background()
	safe := common.HexToAddress("0x399c61b017A871181d8B6C418c93a8bB361E3Db8")
	h := common.HexToHash("0x5a0e4b33b3971863870ae1f299aae1a5d8899a6737566df88b9c6f3c973e5e1f")
	if err := s.Propose(ctx, safe, ProposeRequest{}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.Transaction(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Nonce.Uint64() != 7 || tx.SafeTxGas.Sign() != 0 {
		t.Errorf("decoded nonce %s safeTxGas %s", tx.Nonce.String(), tx.SafeTxGas.String())
	}
	if err := s.Confirm(ctx, h, []byte{1}); err != nil {
		t.Fatal(err)
	}
	info, err := s.SafeInfo(ctx, safe)
	if err != nil || info.Nonce.Uint64() != 5 {
		t.Fatalf("safe info %+v %v", info, err)
	}
	if err := s.AddDelegate(ctx, DelegateRequest{}); err != nil {
		t.Fatal(err)
	}
	want := []string{v.Propose.Path, v.GetTransaction.Path, v.Confirm.Path, v.GetSafeInfo.Path, v.AddDelegate.Path}
	for i, w := range want {
		w = strings.Replace(w, "<base>", "/api", 1)
		if got[i].path != w {
			t.Errorf("request %d path %s, api-kit's %s", i, got[i].path, w)
		}
		for k, hv := range v.Propose.Headers {
			if got[i].header.Get(k) != hv {
				t.Errorf("request %d header %s = %q, want %q", i, k, got[i].header.Get(k), hv)
			}
		}
		if strings.Contains(got[i].path+got[i].query+string(got[i].body), "TEST_API_KEY") {
			t.Errorf("request %d carries the API key outside the Authorization header", i)
		}
	}
	if got[0].method != http.MethodPost || got[1].method != http.MethodGet || got[2].method != http.MethodPost {
		t.Errorf("methods %s %s %s", got[0].method, got[1].method, got[2].method)
	}

	// Without a key, no Authorization header at all.
	got = nil
	s.APIKey = ""
	if _, err := s.SafeInfo(ctx, safe); err != nil {
		t.Fatal(err)
	}
	if _, ok := got[0].header["Authorization"]; ok {
		t.Error("an Authorization header without an API key")
	}
}

func TestServiceErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, `{"nonFieldErrors":["Sender=0x15d3 is not an owner or delegate."]}`)
	}))
	s := &Service{BaseURL: srv.URL}
	err := s.Propose(context.Background(), common.Address{}, ProposeRequest{})
	var se *ServiceError
	if !errors.As(err, &se) || se.Status != 422 || se.Message != "Sender=0x15d3 is not an owner or delegate." {
		t.Fatalf("error %v", err)
	}
	srv.Close()
	err = s.Propose(context.Background(), common.Address{}, ProposeRequest{})
	if !errors.Is(err, ErrServiceUnreachable) {
		t.Fatalf("a closed server gives %v", err)
	}
}

func TestParseRefusesAndRoundTrips(t *testing.T) {
	h := crypto.Keccak256Hash([]byte("x"))
	key, _ := crypto.GenerateKey()
	s, err := Sign(context.Background(), keySigner{key}, h)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), s.Static...)
	bad[64] = 29
	if _, err := Parse(h, bad); !errors.Is(err, ErrBadSignature) {
		t.Errorf("v = 29 accepted: %v", err)
	}
	if _, err := Parse(h, s.Static[:64]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("64 bytes accepted: %v", err)
	}
	// A contract signature's data travels after the static items.
	contract := Signature{Owner: common.HexToAddress("0x00000000000000000000000000000000000000ff"), Type: SigContract, Static: make([]byte, 65), Dynamic: []byte("eip-1271 proof")}
	copy(contract.Static[12:32], contract.Owner[:])
	packed := Pack([]Signature{s, contract})
	back, err := Parse(h, packed)
	if err != nil || len(back) != 2 {
		t.Fatalf("parse packed: %v %v", back, err)
	}
	if back[0].Type != SigContract || !bytes.Equal(back[0].Dynamic, contract.Dynamic) || back[1].Owner != s.Owner {
		t.Fatalf("round trip %+v", back)
	}
	// A DELEGATECALL anywhere but MultiSendCallOnly is not understood.
	tx := Tx{To: common.HexToAddress("0x1234"), Operation: OpDelegateCall, Data: []byte{1}}
	if _, err := tx.Calls(); err == nil {
		t.Error("a delegatecall to an arbitrary contract was decoded")
	}
	if _, err := UnpackMultiSend(make([]byte, 84)); err == nil {
		t.Error("a truncated multiSend was decoded")
	}
}

package rpcproxy

import (
	"errors"
	"io"
	"maps"
	"syscall"
	"testing"

	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
)

// TestGoEthereumClientView pins down what the tool's own JSON-RPC client (go-ethereum)
// observes through the proxy, since retry logic will branch on exactly these errors.
func TestGoEthereumClientView(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{})
	rc, err := rpc.DialContext(t.Context(), p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	var chain, n1, n2 string
	batch := []rpc.BatchElem{
		{Method: "eth_chainId", Result: &chain},
		{Method: "eth_blockNumber", Result: &n1},
		{Method: "eth_blockNumber", Result: &n2},
	}
	if err := rc.BatchCallContext(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	for _, e := range batch {
		if e.Error != nil {
			t.Fatalf("%s: %v", e.Method, e.Error)
		}
	}
	s := p.Stats()
	if s.HTTPRequests != 1 || !maps.Equal(s.Calls, map[string]int{"eth_chainId": 1, "eth_blockNumber": 2}) {
		t.Errorf("a 3-call batch from go-ethereum counted as %+v, want 1 HTTP request", s)
	}
	if chain != "0x7a69" || n1 != "0x2a" {
		t.Errorf("batch results through the proxy: %q %q", chain, n1)
	}

	ec := ethclient.NewClient(rc)
	tests := []struct {
		name  string
		rule  Rule
		check func(error) bool
	}{
		{"none", Rule{Method: "eth_blockNumber", TooMany: 1}, func(err error) bool { return err == nil }},
		{"429", Rule{Method: "eth_chainId", TooMany: 1}, func(err error) bool {
			var he rpc.HTTPError
			return errors.As(err, &he) && he.StatusCode == 429
		}},
		{"503", Rule{Method: "eth_chainId", ServerError: 1}, func(err error) bool {
			var he rpc.HTTPError
			return errors.As(err, &he) && he.StatusCode == 503
		}},
		{"drop", Rule{Method: "eth_chainId", Drop: 1}, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"drop after forward", Rule{Method: "eth_chainId", Drop: 1, DropAfterForward: true}, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"reset", Rule{Method: "eth_chainId", Reset: 1}, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := p.SetRules([]Rule{tc.rule}); err != nil {
				t.Fatal(err)
			}
			id, err := ec.ChainID(t.Context())
			if !tc.check(err) {
				t.Errorf("ChainID error %v (%T) is not the expected %s", err, err, tc.name)
			}
			if err == nil && id.Int64() != 31337 {
				t.Errorf("ChainID = %v, want 31337", id)
			}
		})
	}
}

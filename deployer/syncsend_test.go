package deployer_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// noSyncNode fronts anvil like a node without eth_sendRawTransactionSync:
// that method gets -32601, everything else is forwarded.
func noSyncNode(t *testing.T, upstream string) (url string, syncCalls *atomic.Int32) {
	t.Helper()
	syncCalls = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var single struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(body, &single) == nil && single.Method == "eth_sendRawTransactionSync" {
			syncCalls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(single.ID) + `,"error":{"code":-32601,"message":"the method eth_sendRawTransactionSync does not exist/is not available"}}`))
			return
		}
		resp, err := http.Post(upstream, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, syncCalls
}

// TestSyncSendFallsBackWhenUnsupported: on a node without the synchronous
// send, the first deploy learns it (one refused call) and sends the plain
// way; the next deploy on the same client does not ask again.
func TestSyncSendFallsBackWhenUnsupported(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	url, syncCalls := noSyncNode(t, e.anvil.RPCURL())
	c := dialT(t, url)
	for i := 0; i < 2; i++ {
		d, err := c.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(byte(i + 1))}, deployer.TxOptions{})
		if err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		if d.BlockNumber == 0 {
			t.Fatalf("deploy %d: %+v", i, d)
		}
	}
	if n := syncCalls.Load(); n != 1 {
		t.Fatalf("%d synchronous sends tried, want exactly 1 (then remembered as unsupported)", n)
	}
	if got := e.factoryLogs(t); got != 2 {
		t.Fatalf("%d AppAuths, want 2", got)
	}
}

// TestSyncSendUsedWhenSupported: on anvil the receipt comes with the send,
// so a deploy is two requests: the preflight batch and the send.
func TestSyncSendUsedWhenSupported(t *testing.T) {
	for _, cfg := range []testnet.AnvilConfig{{}, {BlockTime: time.Second}} {
		e := newChain(t, cfg)
		var requests atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			body, _ := io.ReadAll(r.Body)
			resp, err := http.Post(e.anvil.RPCURL(), "application/json", bytes.NewReader(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", "application/json")
			io.Copy(w, resp.Body)
		}))
		c := dialT(t, srv.URL)
		if _, err := c.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract}, deployer.TxOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := requests.Load(); n != 2 {
			t.Errorf("block time %v: %d HTTP requests, want 2 (preflight batch, synchronous send)", cfg.BlockTime, n)
		}
		srv.Close()
	}
}

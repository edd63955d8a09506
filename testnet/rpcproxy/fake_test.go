package rpcproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
)

// fakeUpstream is a tiny JSON-RPC server: eth_chainId answers 0x7a69, eth_blockNumber
// 0x2a, anything else echoes its params. It records what reached it.
type fakeUpstream struct {
	srv *httptest.Server

	mu      sync.Mutex
	hits    int
	calls   map[string]int
	headers []http.Header
	uris    []string
}

func newFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{calls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) URL() string { return f.srv.URL }

func (f *fakeUpstream) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

func (f *fakeUpstream) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

type fakeReq struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type fakeResp struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
}

func (f *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var reqs []fakeReq
	trimmed := bytes.TrimSpace(body)
	batch := len(trimmed) > 0 && trimmed[0] == '['
	var err error
	if batch {
		err = json.Unmarshal(trimmed, &reqs)
	} else {
		reqs = make([]fakeReq, 1)
		err = json.Unmarshal(trimmed, &reqs[0])
	}
	f.mu.Lock()
	f.hits++
	f.headers = append(f.headers, r.Header.Clone())
	f.uris = append(f.uris, r.URL.RequestURI())
	if err == nil {
		for _, q := range reqs {
			f.calls[q.Method]++
		}
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Fake-Upstream", "yes")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`+"\n")
		return
	}
	resps := make([]fakeResp, len(reqs))
	for i, q := range reqs {
		resps[i] = fakeResp{JSONRPC: "2.0", ID: q.ID}
		switch q.Method {
		case "eth_chainId":
			resps[i].Result = json.RawMessage(`"0x7a69"`)
		case "eth_blockNumber":
			resps[i].Result = json.RawMessage(`"0x2a"`)
		default:
			resps[i].Result = q.Params
			if len(q.Params) == 0 {
				resps[i].Result = json.RawMessage("null")
			}
		}
	}
	var out []byte
	if batch {
		out, _ = json.Marshal(resps)
	} else {
		out, _ = json.Marshal(resps[0])
	}
	_, _ = w.Write(append(out, '\n'))
}

// startProxy starts a proxy in front of up and closes it when the test ends.
func startProxy(t testing.TB, up *fakeUpstream, cfg Config) *Proxy {
	t.Helper()
	cfg.Upstream = up.URL()
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// newClient returns a plain net/http client whose connections die with the test.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func post(ctx context.Context, c *http.Client, url, body string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// outcome classifies what a plain HTTP client observed, in the proxy's fault vocabulary.
func outcome(r result) string {
	switch {
	case r.err != nil && errors.Is(r.err, syscall.ECONNRESET):
		return FaultReset
	case r.err != nil && errors.Is(r.err, io.EOF):
		return FaultDrop
	case r.err != nil:
		return "error: " + r.err.Error()
	case r.status == http.StatusTooManyRequests:
		return FaultTooMany
	case r.status >= 500 && r.header.Get(FaultHeader) == FaultServerError:
		return FaultServerError
	case r.status == http.StatusOK:
		return "ok"
	default:
		return http.StatusText(r.status)
	}
}

const (
	reqChainID     = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`
	reqBlockNumber = `{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber","params":[]}`
	reqSendRaw     = `{"jsonrpc":"2.0","id":3,"method":"eth_sendRawTransaction","params":["0x02f8"]}`
	reqGetBalance  = `{"jsonrpc":"2.0","id":4,"method":"eth_getBalance","params":["0x00","latest"]}`
)

func batchOf(reqs ...string) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, r := range reqs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r)
	}
	b.WriteByte(']')
	return b.String()
}

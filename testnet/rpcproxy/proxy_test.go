package rpcproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTransparentWithoutRules(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{})
	c := newClient(t)
	ctx := t.Context()

	bodies := []struct{ name, body string }{
		{"single", reqChainID},
		{"batch", batchOf(reqChainID, reqBlockNumber, reqSendRaw)},
		{"echo unicode and spacing", ` {"jsonrpc":"2.0","id":"x-\u00e9","method":"web3_echo","params":[{"k":"välue"},1.5e3,null]}`},
		{"notification", `{"jsonrpc":"2.0","method":"eth_subscribe_none","params":[]}`},
		{"not json", `hello`},
		{"empty batch", `[]`},
	}
	for _, tc := range bodies {
		t.Run(tc.name, func(t *testing.T) {
			direct := post(ctx, c, up.URL(), tc.body)
			via := post(ctx, c, p.URL(), tc.body)
			if direct.err != nil || via.err != nil {
				t.Fatalf("direct err %v, proxied err %v", direct.err, via.err)
			}
			if via.status != direct.status {
				t.Errorf("status: proxied %d, direct %d", via.status, direct.status)
			}
			if !bytes.Equal(via.body, direct.body) {
				t.Errorf("body differs:\nproxied %q\ndirect  %q", via.body, direct.body)
			}
			for _, h := range []string{"Content-Type", "Content-Length", "X-Fake-Upstream"} {
				if via.header.Get(h) != direct.header.Get(h) {
					t.Errorf("header %s: proxied %q, direct %q", h, via.header.Get(h), direct.header.Get(h))
				}
			}
		})
	}
	if s := p.Stats(); len(s.Faults) != 0 || s.UpstreamErrors != 0 {
		t.Errorf("faults or upstream errors without rules: %+v", s)
	}
}

func TestForwardsHeadersPathAndQuery(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.URL()+"/rpc/v1?x=1", strings.NewReader(reqChainID))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("Connection", "keep-alive, X-Hop")
	req.Header.Set("X-Hop", "dropped")
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.uris) != 1 || up.uris[0] != "/rpc/v1?x=1" {
		t.Errorf("upstream saw URIs %q, want [/rpc/v1?x=1]", up.uris)
	}
	h := up.headers[0]
	if h.Get("X-Custom") != "kept" || h.Get("Content-Type") != "application/json" {
		t.Errorf("end-to-end headers not forwarded: %v", h)
	}
	if h.Get("X-Hop") != "" {
		t.Errorf("header named in Connection was forwarded: %v", h)
	}
}

func TestCounting(t *testing.T) {
	tests := []struct {
		name      string
		bodies    []string
		wantHTTP  int
		wantCalls map[string]int
	}{
		{"single", []string{reqChainID}, 1, map[string]int{"eth_chainId": 1}},
		{"batch is one HTTP request", []string{batchOf(reqChainID, reqBlockNumber, reqBlockNumber)}, 1,
			map[string]int{"eth_chainId": 1, "eth_blockNumber": 2}},
		{"mixed", []string{reqSendRaw, batchOf(reqChainID, reqSendRaw), reqChainID}, 3,
			map[string]int{"eth_chainId": 2, "eth_sendRawTransaction": 2}},
		{"invalid body and method-less element", []string{`nope`, `[{"id":1}]`}, 2,
			map[string]int{InvalidMethod: 2}},
		{"empty batch", []string{`[]`}, 1, map[string]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t)
			p := startProxy(t, up, Config{})
			c := newClient(t)
			for _, b := range tc.bodies {
				if r := post(t.Context(), c, p.URL(), b); r.err != nil {
					t.Fatal(r.err)
				}
			}
			s := p.Stats()
			if s.HTTPRequests != tc.wantHTTP {
				t.Errorf("HTTPRequests = %d, want %d", s.HTTPRequests, tc.wantHTTP)
			}
			if s.HTTPRequests != up.Hits() {
				t.Errorf("proxy counted %d HTTP requests, upstream received %d", s.HTTPRequests, up.Hits())
			}
			if !maps.Equal(s.Calls, tc.wantCalls) {
				t.Errorf("Calls = %v, want %v", s.Calls, tc.wantCalls)
			}

			p.ResetStats()
			if s := p.Stats(); s.HTTPRequests != 0 || len(s.Calls) != 0 {
				t.Errorf("after ResetStats: %+v", s)
			}
			if r := post(t.Context(), c, p.URL(), reqChainID); r.err != nil {
				t.Fatal(r.err)
			}
			if s := p.Stats(); s.HTTPRequests != 1 || !maps.Equal(s.Calls, map[string]int{"eth_chainId": 1}) {
				t.Errorf("counting after ResetStats: %+v", s)
			}
		})
	}
}

func TestStatsIsACopy(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{})
	post(t.Context(), newClient(t), p.URL(), reqChainID)
	s := p.Stats()
	s.Calls["eth_chainId"] = 100
	if got := p.Stats().Calls["eth_chainId"]; got != 1 {
		t.Errorf("mutating a Stats copy changed the proxy: %d", got)
	}
}

func TestEachFaultKind(t *testing.T) {
	tests := []struct {
		name        string
		rule        Rule
		wantOutcome string
		wantStatus  int // for 429/5xx
		wantFault   string
		wantUpHits  int
	}{
		{"drop", Rule{Method: "*", Drop: 1}, FaultDrop, 0, FaultDrop, 0},
		{"drop after forward", Rule{Method: "*", Drop: 1, DropAfterForward: true}, FaultDrop, 0, FaultDropAfterForward, 1},
		{"reset", Rule{Method: "*", Reset: 1}, FaultReset, 0, FaultReset, 0},
		{"429", Rule{Method: "*", TooMany: 1}, FaultTooMany, 429, FaultTooMany, 0},
		{"5xx default 503", Rule{Method: "*", ServerError: 1}, FaultServerError, 503, FaultServerError, 0},
		{"502", Rule{Method: "*", ServerError: 1, ServerErrorStatus: 502}, FaultServerError, 502, FaultServerError, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t)
			p := startProxy(t, up, Config{Rules: []Rule{tc.rule}})
			r := post(t.Context(), newClient(t), p.URL(), reqSendRaw)
			if got := outcome(r); got != tc.wantOutcome {
				t.Fatalf("client observed %q (err %v, status %d), want %q", got, r.err, r.status, tc.wantOutcome)
			}
			if tc.wantStatus != 0 && r.status != tc.wantStatus {
				t.Errorf("status %d, want %d", r.status, tc.wantStatus)
			}
			if got := up.Hits(); got != tc.wantUpHits {
				t.Errorf("upstream received %d requests, want %d", got, tc.wantUpHits)
			}
			s := p.Stats()
			if !maps.Equal(s.Faults, map[string]int{tc.wantFault: 1}) {
				t.Errorf("Faults = %v, want {%s:1}", s.Faults, tc.wantFault)
			}
			if s.HTTPRequests != 1 || s.Calls["eth_sendRawTransaction"] != 1 {
				t.Errorf("faulted request not counted: %+v", s)
			}
		})
	}
}

func TestTooManyResponse(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{Rules: []Rule{{Method: "*", TooMany: 1}}})
	c := newClient(t)
	tests := []struct {
		name, body, wantID string
	}{
		{"single echoes id", reqBlockNumber, "2"},
		{"batch has null id", batchOf(reqChainID, reqBlockNumber), "null"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t.Context(), c, p.URL(), tc.body)
			if r.err != nil || r.status != http.StatusTooManyRequests {
				t.Fatalf("err %v status %d", r.err, r.status)
			}
			if got := r.header.Get("Retry-After"); got != "0" {
				t.Errorf("Retry-After = %q, want 0", got)
			}
			var msg struct {
				ID    json.RawMessage `json:"id"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.body, &msg); err != nil {
				t.Fatalf("429 body is not JSON: %v: %q", err, r.body)
			}
			if string(msg.ID) != tc.wantID || msg.Error.Code != -32005 {
				t.Errorf("429 body id %s code %d, want id %s code -32005", msg.ID, msg.Error.Code, tc.wantID)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	up := newFakeUpstream(t)
	const delay = 30 * time.Millisecond
	p := startProxy(t, up, Config{Rules: []Rule{{Method: "eth_chainId", Delay: delay, DelayJitter: 5 * time.Millisecond}}})
	c := newClient(t)

	start := time.Now()
	r := post(t.Context(), c, p.URL(), reqChainID)
	// A lower bound only: a timer never fires early, so this cannot flake.
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("delayed request took %v, less than the %v delay", elapsed, delay)
	}
	if outcome(r) != "ok" {
		t.Fatalf("delayed request: %q", outcome(r))
	}
	if r := post(t.Context(), c, p.URL(), reqBlockNumber); outcome(r) != "ok" {
		t.Fatalf("unmatched request: %q", outcome(r))
	}
	if got := p.Stats().Faults; !maps.Equal(got, map[string]int{FaultDelay: 1}) {
		t.Errorf("Faults = %v, want one delay (the unmatched method is not delayed)", got)
	}
}

// waitFor polls cond for up to 5 s: a guard against hangs, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDelayAbortedWhenClientLeaves(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{Rules: []Rule{{Method: "*", Delay: time.Hour}}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan result, 1)
	go func() { done <- post(ctx, newClient(t), p.URL(), reqSendRaw) }()
	waitFor(t, "the request to arrive", func() bool { return p.Stats().HTTPRequests == 1 })
	cancel()
	if r := <-done; !errors.Is(r.err, context.Canceled) {
		t.Errorf("client error %v, want context.Canceled", r.err)
	}
	p.Close() // must not wait for the hour-long delay
	if up.Hits() != 0 {
		t.Errorf("an aborted delayed request reached the upstream")
	}
}

func TestCloseAbortsDelayedRequests(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{Rules: []Rule{{Method: "*", Delay: time.Hour}}})
	done := make(chan result, 1)
	go func() { done <- post(t.Context(), newClient(t), p.URL(), reqChainID) }()
	waitFor(t, "the request to arrive", func() bool { return p.Stats().HTTPRequests == 1 })
	p.Close()
	p.Close() // idempotent
	if r := <-done; r.err == nil {
		t.Errorf("request in flight during Close succeeded with status %d", r.status)
	}
	if r := post(t.Context(), newClient(t), p.URL(), reqChainID); r.err == nil {
		t.Errorf("request after Close succeeded with status %d", r.status)
	}
	if up.Hits() != 0 {
		t.Errorf("upstream received %d requests", up.Hits())
	}
}

func TestContextCancelCloses(t *testing.T) {
	up := newFakeUpstream(t)
	ctx, cancel := context.WithCancel(t.Context())
	p, err := Start(ctx, Config{Upstream: up.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if r := post(t.Context(), newClient(t), p.URL(), reqChainID); outcome(r) != "ok" {
		t.Fatalf("before cancel: %q", outcome(r))
	}
	cancel()
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

func TestUpstreamDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	p, err := Start(t.Context(), Config{Upstream: deadURL})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := post(t.Context(), newClient(t), p.URL(), reqChainID)
	if r.err != nil || r.status != http.StatusBadGateway {
		t.Fatalf("err %v status %d, want 502", r.err, r.status)
	}
	if r.header.Get(FaultHeader) != "" {
		t.Errorf("a real upstream failure is marked as injected")
	}
	if s := p.Stats(); s.UpstreamErrors != 1 || len(s.Faults) != 0 {
		t.Errorf("Stats = %+v, want one upstream error and no faults", s)
	}
}

// sequence sends n sequential requests alternating two methods and returns what the
// client observed for each.
func sequence(t *testing.T, cfg Config, n int) ([]string, Stats) {
	t.Helper()
	up := newFakeUpstream(t)
	p := startProxy(t, up, cfg)
	c := newClient(t)
	out := make([]string, n)
	for i := range out {
		body := reqChainID
		if i%2 == 1 {
			body = reqSendRaw
		}
		out[i] = outcome(post(t.Context(), c, p.URL(), body))
	}
	return out, p.Stats()
}

func TestSeededFaultsAreReproducible(t *testing.T) {
	rules, err := ParseRules("eth_sendRawTransaction:drop=0.2,after-forward;*:drop=0.1,reset=0.1,429=0.1,503=0.1")
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	a, statsA := sequence(t, Config{Seed: 42, Rules: rules}, n)
	b, _ := sequence(t, Config{Seed: 42, Rules: rules}, n)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different fault sequences:\n%v\n%v", a, b)
	}
	other, _ := sequence(t, Config{Seed: 43, Rules: rules}, n)
	if slices.Equal(a, other) {
		t.Errorf("seeds 42 and 43 gave the same %d-request sequence", n)
	}

	// The client's view agrees with the proxy's counters, and every kind occurs.
	seen := map[string]int{}
	for _, o := range a {
		seen[o]++
	}
	drops := statsA.Faults[FaultDrop] + statsA.Faults[FaultDropAfterForward]
	for kind, want := range map[string]int{
		FaultDrop:        drops,
		FaultReset:       statsA.Faults[FaultReset],
		FaultTooMany:     statsA.Faults[FaultTooMany],
		FaultServerError: statsA.Faults[FaultServerError],
	} {
		if seen[kind] != want {
			t.Errorf("client saw %d %s, proxy counted %d", seen[kind], kind, want)
		}
		if want == 0 {
			t.Errorf("no %s in %d requests", kind, n)
		}
	}
	if statsA.Faults[FaultDropAfterForward] == 0 {
		t.Errorf("no drop-after-forward in %d requests", n)
	}
	if total := seen["ok"] + drops + statsA.Faults[FaultReset] + statsA.Faults[FaultTooMany] + statsA.Faults[FaultServerError]; total != n {
		t.Errorf("outcomes %v do not add up to %d", seen, n)
	}
}

func TestUnmatchedTrafficDoesNotShiftSequence(t *testing.T) {
	rules := []Rule{{Method: "eth_sendRawTransaction", Drop: 0.3, TooMany: 0.3}}
	const n = 60
	// Only eth_sendRawTransaction, versus the same interleaved with eth_chainId.
	var alone, mixed []string
	for _, interleave := range []bool{false, true} {
		up := newFakeUpstream(t)
		p := startProxy(t, up, Config{Seed: 7, Rules: rules})
		c := newClient(t)
		var got []string
		for range n {
			if interleave {
				if o := outcome(post(t.Context(), c, p.URL(), reqChainID)); o != "ok" {
					t.Fatalf("unmatched request faulted: %s", o)
				}
			}
			got = append(got, outcome(post(t.Context(), c, p.URL(), reqSendRaw)))
		}
		if interleave {
			mixed = got
		} else {
			alone = got
		}
	}
	if !slices.Equal(alone, mixed) {
		t.Errorf("unmatched requests shifted the fault sequence:\n%v\n%v", alone, mixed)
	}
}

func TestRuleSelection(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		body  string
		want  string
	}{
		{"star matches any method", "*:429=1", reqGetBalance, FaultTooMany},
		{"star matches an invalid body", "*:429=1", `garbage`, FaultTooMany},
		{"star matches an empty batch", "*:429=1", `[]`, FaultTooMany},
		{"exact match", "eth_chainId:429=1", reqChainID, FaultTooMany},
		{"exact does not match other", "eth_chainId:429=1", reqBlockNumber, "ok"},
		{"exact is not a prefix", "eth_chain:429=1", reqChainID, "ok"},
		{"prefix match", "eth_get*:429=1", reqGetBalance, FaultTooMany},
		{"prefix mismatch", "eth_get*:429=1", reqChainID, "ok"},
		{"first rule wins", "eth_chainId:503=1;*:429=1", reqChainID, FaultServerError},
		{"falls through to star", "eth_chainId:503=1;*:429=1", reqBlockNumber, FaultTooMany},
		{"batch governed by any matching call", "eth_sendRawTransaction:503=1;*:429=1",
			batchOf(reqChainID, reqSendRaw), FaultServerError},
		{"batch without match falls through", "eth_sendRawTransaction:503=1;*:429=1",
			batchOf(reqChainID, reqBlockNumber), FaultTooMany},
		{"matching rule without faults shields later rules", "eth_chainId:;*:429=1", reqChainID, "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ParseRules(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			up := newFakeUpstream(t)
			p := startProxy(t, up, Config{Rules: rules})
			r := post(t.Context(), newClient(t), p.URL(), tc.body)
			got := outcome(r)
			if got == "Bad Request" { // the fake's answer to a body that is not JSON-RPC
				got = "ok"
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRuleMatches(t *testing.T) {
	tests := []struct {
		pattern, method string
		want            bool
	}{
		{"*", "eth_chainId", true},
		{"*", "", true},
		{"eth_chainId", "eth_chainId", true},
		{"eth_chainId", "eth_chainid", false},
		{"eth_chainId", "eth_chainIdX", false},
		{"eth_get*", "eth_getBalance", true},
		{"eth_get*", "eth_get", true},
		{"eth_get*", "eth_gasPrice", false},
		{"eth_get*", "xeth_getBalance", false},
	}
	for _, tc := range tests {
		if got := (Rule{Method: tc.pattern}).Matches(tc.method); got != tc.want {
			t.Errorf("Rule{%q}.Matches(%q) = %v, want %v", tc.pattern, tc.method, got, tc.want)
		}
	}
}

func TestSetRules(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{})
	c := newClient(t)
	check := func(body, want string) {
		t.Helper()
		if got := outcome(post(t.Context(), c, p.URL(), body)); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	check(reqChainID, "ok")
	if err := p.SetRules([]Rule{{Method: "eth_chainId", TooMany: 1}}); err != nil {
		t.Fatal(err)
	}
	check(reqChainID, FaultTooMany)
	check(reqBlockNumber, "ok")

	err := p.SetRules([]Rule{{Method: "*", Drop: 2}})
	if !errors.Is(err, ErrInvalidRule) {
		t.Errorf("SetRules(invalid) = %v, want ErrInvalidRule", err)
	}
	check(reqChainID, FaultTooMany) // the invalid rules were not installed

	rules := []Rule{{Method: "eth_chainId", ServerError: 1}}
	if err := p.SetRules(rules); err != nil {
		t.Fatal(err)
	}
	rules[0].ServerError = 0 // the proxy keeps its own copy
	check(reqChainID, FaultServerError)

	if err := p.SetRules(nil); err != nil {
		t.Fatal(err)
	}
	check(reqChainID, "ok")
}

func TestSetRulesConcurrentWithTraffic(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{Seed: 1})
	var wg sync.WaitGroup
	const workers, perWorker = 4, 25
	for range workers {
		wg.Go(func() {
			c := newClient(t)
			for range perWorker {
				post(t.Context(), c, p.URL(), batchOf(reqChainID, reqSendRaw))
			}
		})
	}
	for i := range 50 {
		_ = p.SetRules([]Rule{{Method: "*", TooMany: float64(i%2) * 0.5}})
		_ = p.Stats()
	}
	wg.Wait()
	if s := p.Stats(); s.HTTPRequests != workers*perWorker || s.Calls["eth_chainId"] != workers*perWorker {
		t.Errorf("lost counts under concurrency: %+v", s)
	}
}

func TestMaxFaults(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, up, Config{MaxFaults: 3, Rules: []Rule{{Method: "*", TooMany: 1}}})
	c := newClient(t)
	var got []string
	for range 4 {
		got = append(got, outcome(post(t.Context(), c, p.URL(), reqChainID)))
	}
	p.ResetStats() // does not refill the budget
	got = append(got, outcome(post(t.Context(), c, p.URL(), reqChainID)))
	want := []string{FaultTooMany, FaultTooMany, FaultTooMany, "ok", "ok"}
	if !slices.Equal(got, want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
}

func TestLogfNamesFaultNotBody(t *testing.T) {
	up := newFakeUpstream(t)
	var mu sync.Mutex
	var logs []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
	}
	p := startProxy(t, up, Config{Logf: logf, Rules: []Rule{{Method: "eth_sendRawTransaction", TooMany: 1}}})
	const secretish = "0xfeedfacecafebeef"
	post(t.Context(), newClient(t), p.URL(), `{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["`+secretish+`"]}`)
	post(t.Context(), newClient(t), p.URL(), reqChainID) // not faulted: not logged
	if err := p.SetRules([]Rule{{Method: "eth_chainId", ServerError: 1, ServerErrorStatus: 502}}); err != nil {
		t.Fatal(err)
	}
	post(t.Context(), newClient(t), p.URL(), reqChainID)
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 2 || !strings.Contains(logs[0], "429 into eth_sendRawTransaction") || !strings.Contains(logs[1], "502 into eth_chainId") {
		t.Errorf("logs = %q, want a 429 line for eth_sendRawTransaction and a 502 line for eth_chainId", logs)
	}
	for _, l := range logs {
		if strings.Contains(l, secretish) {
			t.Errorf("log line contains request parameters: %q", l)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	const up = "http://127.0.0.1:8545"
	tests := []struct {
		name       string
		cfg        Config
		nonLoopbak bool // want ErrNotLoopback, else just an error
	}{
		{"all interfaces", Config{Upstream: up, Listen: ":0"}, true},
		{"unspecified v4", Config{Upstream: up, Listen: "0.0.0.0:0"}, true},
		{"unspecified v6", Config{Upstream: up, Listen: "[::]:0"}, true},
		{"private address", Config{Upstream: up, Listen: "10.1.2.3:0"}, true},
		{"hostname", Config{Upstream: up, Listen: "example.com:0"}, true},
		{"remote upstream name", Config{Upstream: "https://rpc.example.com"}, true},
		{"remote upstream ip", Config{Upstream: "http://192.168.1.10:8545"}, true},
		{"unspecified upstream", Config{Upstream: "http://0.0.0.0:8545"}, true},
		{"missing upstream", Config{}, false},
		{"upstream without scheme", Config{Upstream: "127.0.0.1:8545"}, false},
		{"upstream with credentials", Config{Upstream: "http://u:p@127.0.0.1:8545"}, false},
		{"listen without port", Config{Upstream: up, Listen: "127.0.0.1"}, false},
		{"negative budget", Config{Upstream: up, MaxFaults: -1}, false},
		{"bad rule", Config{Upstream: up, Rules: []Rule{{Method: "a*b"}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Check()
			if err == nil {
				t.Fatal("Check accepted the config")
			}
			if got := errors.Is(err, ErrNotLoopback); got != tc.nonLoopbak {
				t.Errorf("errors.Is(%v, ErrNotLoopback) = %v, want %v", err, got, tc.nonLoopbak)
			}
			if p, err := Start(t.Context(), tc.cfg); err == nil {
				p.Close()
				t.Error("Start accepted the config")
			}
		})
	}

	for _, ok := range []Config{
		{Upstream: up},
		{Upstream: "http://localhost:8545/", Listen: "localhost:0"},
		{Upstream: "http://[::1]:8545", Listen: "[::1]:0"},
		{Upstream: "https://127.0.0.2:8545", Listen: "127.0.0.1:18545"},
	} {
		if err := ok.Check(); err != nil {
			t.Errorf("Check(%+v) = %v, want nil", ok, err)
		}
	}
}

func TestDialRefusesNonLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8545":   true,
		"[::1]:8545":       true,
		"10.0.0.1:80":      false,
		"[2001:db8::1]:80": false,
		"0.0.0.0:80":       false,
	} {
		err := loopbackOnly("tcp", addr, nil)
		if (err == nil) != want {
			t.Errorf("loopbackOnly(%s) = %v, want allowed=%v", addr, err, want)
		}
		if err != nil && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("loopbackOnly(%s) = %v, want ErrNotLoopback", addr, err)
		}
	}
}

// BenchmarkProxyOverhead compares requests sent straight to the fake upstream with
// the same requests through the proxy; the difference is the proxy's cost.
func BenchmarkProxyOverhead(b *testing.B) {
	up := newFakeUpstream(b)
	plain := startProxy(b, up, Config{})
	// A matching rule with no faults still parses, matches and draws.
	matching := startProxy(b, up, Config{Seed: 1, Rules: []Rule{{Method: "eth_get*", TooMany: 0.5}, {Method: "*"}}})
	batch := batchOf(reqChainID, reqBlockNumber, reqGetBalance, reqSendRaw, reqChainID,
		reqBlockNumber, reqGetBalance, reqSendRaw, reqChainID, reqBlockNumber)
	cases := []struct{ name, url, body string }{
		{"direct", up.URL(), reqChainID},
		{"proxied", plain.URL(), reqChainID},
		{"proxied-rules", matching.URL(), reqChainID},
		{"direct-batch10", up.URL(), batch},
		{"proxied-batch10", plain.URL(), batch},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			c := newClient(b)
			for b.Loop() {
				if r := post(b.Context(), c, bc.url, bc.body); r.err != nil || r.status != 200 {
					b.Fatalf("err %v status %d", r.err, r.status)
				}
			}
		})
	}
}

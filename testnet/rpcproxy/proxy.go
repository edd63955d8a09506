// Package rpcproxy is a loopback-only JSON-RPC HTTP reverse proxy that injects seeded,
// reproducible faults (drops, resets, 429s, 5xx, delays) into chosen methods and counts requests.
package rpcproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Fault kinds: the keys of Stats.Faults.
const (
	FaultDrop             = "drop"               // connection closed without a response, request not forwarded
	FaultDropAfterForward = "drop-after-forward" // forwarded and answered upstream, then closed without a response
	FaultReset            = "reset"              // connection aborted with a TCP RST, request not forwarded
	FaultTooMany          = "429"                // 429 Too Many Requests, Retry-After: 0
	FaultServerError      = "5xx"                // the rule's 5xx status
	FaultDelay            = "delay"              // request held before being handled (not counted against MaxFaults)
)

// InvalidMethod is the method name counted in Stats.Calls for a body that is not
// JSON-RPC, and for batch elements without a method.
const InvalidMethod = "(invalid)"

// FaultHeader is set on injected 429 and 5xx responses so a human reading a trace can
// tell them from real ones.
const FaultHeader = "X-Rpcproxy-Fault"

// maxBody bounds what the proxy buffers per request; JSON-RPC requests of a deploy
// are a few KiB, contract creation a few tens.
const maxBody = 32 << 20

// Stats counts what the proxy has seen since Start or the last ResetStats.
// Requests are counted when they arrive, whether or not a fault is then injected.
type Stats struct {
	// HTTPRequests counts HTTP requests; a JSON-RPC batch is one.
	HTTPRequests int `json:"http_requests"`
	// Calls counts JSON-RPC calls by method, each element of a batch separately.
	Calls map[string]int `json:"calls"`
	// Faults counts injected faults by kind (the Fault* constants), counted when decided.
	Faults map[string]int `json:"faults"`
	// UpstreamErrors counts requests the upstream could not answer (the client got 502).
	UpstreamErrors int `json:"upstream_errors"`
}

// Proxy is a running fault-injecting proxy. Its methods are safe for concurrent use.
type Proxy struct {
	cfg       Config
	target    *url.URL
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	cancel    context.CancelFunc // cancels every in-flight request
	stopAfter func() bool        // unregisters the close-on-ctx hook
	served    chan struct{}      // closed when Serve returns
	closeOnce sync.Once

	mu       sync.Mutex
	closed   bool
	active   sync.WaitGroup // in-flight handlers, so Close returns after the last Logf
	rules    []Rule
	rng      *rand.Rand
	injected int // faults counted against MaxFaults; survives ResetStats
	stats    Stats
}

// Start validates cfg, listens on cfg.Listen and serves until Close is called or ctx
// is done. Call Close (e.g. with t.Cleanup) to also wait for in-flight requests.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	target, _ := cfg.upstreamURL() // checked above
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.listen())
	if err != nil {
		return nil, fmt.Errorf("rpcproxy: listen: %w", err)
	}
	// "localhost" is accepted by Check; make sure it really resolved to loopback.
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("%w: listening on %s", ErrNotLoopback, ln.Addr())
	}

	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
	baseCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Proxy{
		cfg:    cfg,
		target: target,
		ln:     ln,
		transport: &http.Transport{
			// No Proxy field: HTTP_PROXY must never route loopback traffic elsewhere.
			DialContext:         dialer.DialContext,
			MaxIdleConns:        128,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			// Pass the client's Accept-Encoding through and the body back untouched.
			DisableCompression: true,
		},
		cancel: cancel,
		served: make(chan struct{}),
		rules:  append([]Rule(nil), cfg.Rules...),
		// PCG is a specified algorithm, so a seed gives the same draws on every Go release.
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0x7270637072787921)),
		stats: newStats(),
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	p.stopAfter = context.AfterFunc(ctx, p.Close)
	return p, nil
}

// loopbackOnly is a net.Dialer Control hook: it sees the resolved address, so no DNS
// answer or redirect can make the proxy connect off the machine.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: refusing to dial %s", ErrNotLoopback, address)
	}
	return nil
}

// URL returns the proxy's base URL, e.g. "http://127.0.0.1:40123".
func (p *Proxy) URL() string {
	return "http://" + p.ln.Addr().String()
}

// Close stops the proxy, aborts in-flight requests (including delays) and waits for
// their handlers to return. It is idempotent.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		p.stopAfter()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		_ = p.srv.Close()
		<-p.served
		p.active.Wait()
		p.transport.CloseIdleConnections()
	})
}

// SetRules replaces the rules for requests arriving from now on. The random source
// is not reseeded and the MaxFaults budget is not reset.
func (p *Proxy) SetRules(rules []Rule) error {
	if err := checkRules(rules); err != nil {
		return err
	}
	rules = append([]Rule(nil), rules...)
	p.mu.Lock()
	p.rules = rules
	p.mu.Unlock()
	return nil
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Calls = make(map[string]int, len(p.stats.Calls))
	for k, v := range p.stats.Calls {
		s.Calls[k] = v
	}
	s.Faults = make(map[string]int, len(p.stats.Faults))
	for k, v := range p.stats.Faults {
		s.Faults[k] = v
	}
	return s
}

// ResetStats zeroes the counters (not the MaxFaults budget nor the random source).
func (p *Proxy) ResetStats() {
	p.mu.Lock()
	p.stats = newStats()
	p.mu.Unlock()
}

func newStats() Stats {
	return Stats{Calls: map[string]int{}, Faults: map[string]int{}}
}

// call is the part of a JSON-RPC request the proxy looks at.
type call struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
}

// parseCalls extracts the calls of a single or batch request; a body that is not
// JSON-RPC yields one call named InvalidMethod so it is still counted.
func parseCalls(body []byte) (calls []call, batch bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	var err error
	if len(trimmed) > 0 && trimmed[0] == '[' {
		batch = true
		err = json.Unmarshal(trimmed, &calls)
	} else {
		calls = make([]call, 1)
		err = json.Unmarshal(trimmed, &calls[0])
	}
	if err != nil {
		return []call{{Method: InvalidMethod}}, batch
	}
	for i := range calls {
		if calls[i].Method == "" {
			calls[i].Method = InvalidMethod
		}
	}
	return calls, batch
}

// decision is what the proxy does with one HTTP request.
type decision struct {
	kind   string // "" or a Fault* constant other than FaultDelay
	delay  time.Duration
	status int // for FaultServerError
}

// decide counts the request and draws its fate. Everything happens under one lock,
// so decisions follow the order in which requests finish arriving; concurrent
// clients can therefore see a different interleaving from run to run, while a
// sequential client sees the same sequence for the same seed.
func (p *Proxy) decide(calls []call) (decision, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return decision{}, false
	}
	p.active.Add(1)
	p.stats.HTTPRequests++
	for _, c := range calls {
		p.stats.Calls[c.Method]++
	}
	rule, ok := matchRule(p.rules, calls)
	if !ok {
		// Unmatched requests draw nothing, so extra traffic to other methods does not
		// shift the fault sequence seen by the matched ones.
		return decision{}, true
	}
	// Always two draws per matched request, so changing one setting of a rule does
	// not shift the sequence of another.
	u, j := p.rng.Float64(), p.rng.Float64()
	d := decision{delay: rule.Delay + time.Duration(j*float64(rule.DelayJitter))}
	switch edge := rule.Drop; {
	case u < edge:
		d.kind = FaultDrop
		if rule.DropAfterForward {
			d.kind = FaultDropAfterForward
		}
	case u < edge+rule.Reset:
		d.kind = FaultReset
	case u < edge+rule.Reset+rule.TooMany:
		d.kind = FaultTooMany
	case u < edge+rule.Reset+rule.TooMany+rule.ServerError:
		d.kind = FaultServerError
		d.status = rule.status()
	}
	if d.kind != "" && p.cfg.MaxFaults > 0 && p.injected >= p.cfg.MaxFaults {
		d.kind = ""
	}
	if d.kind != "" {
		p.injected++
		p.stats.Faults[d.kind]++
	}
	if d.delay > 0 {
		p.stats.Faults[FaultDelay]++
	}
	return d, true
}

// matchRule returns the first rule, in rule order, that matches any call of the
// request: in a batch, one matching call puts the whole HTTP request under the rule.
func matchRule(rules []Rule, calls []call) (Rule, bool) {
	for _, r := range rules {
		if r.Method == "*" {
			return r, true
		}
		for _, c := range calls {
			if r.Matches(c.Method) {
				return r, true
			}
		}
	}
	return Rule{}, false
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, "rpcproxy: request body too large", http.StatusRequestEntityTooLarge)
		}
		return // otherwise the client went away
	}
	calls, batch := parseCalls(body)
	d, ok := p.decide(calls)
	if !ok {
		panic(http.ErrAbortHandler) // closing: abort without a response
	}
	defer p.active.Done()
	if d.kind != "" && p.cfg.Logf != nil {
		label := d.kind
		if d.kind == FaultServerError {
			label = strconv.Itoa(d.status)
		}
		p.cfg.Logf("rpcproxy: injecting %s into %s", label, methodList(calls))
	}

	if d.delay > 0 {
		t := time.NewTimer(d.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// Client gone or proxy closing: returning normally would make net/http
			// send an empty 200, which a client would take for an answer.
			t.Stop()
			hangUp(w, false)
			return
		}
	}

	switch d.kind {
	case FaultDrop:
		hangUp(w, false)
	case FaultReset:
		hangUp(w, true)
	case FaultDropAfterForward:
		if resp, err := p.forward(r, body); err != nil {
			p.upstreamError(r)
		} else {
			// Read the whole answer so the upstream has certainly acted on the request.
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		hangUp(w, false)
	case FaultTooMany:
		id := json.RawMessage("null")
		if !batch && len(calls[0].ID) > 0 {
			id = calls[0].ID
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Retry-After", "0")
		h.Set(FaultHeader, FaultTooMany)
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32005,"message":"rpcproxy: injected 429 Too Many Requests"}}`+"\n", id)
	case FaultServerError:
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set(FaultHeader, FaultServerError)
		w.WriteHeader(d.status)
		fmt.Fprintf(w, "rpcproxy: injected %d %s\n", d.status, http.StatusText(d.status))
	default:
		p.pass(w, r, body)
	}
}

// pass forwards the request and copies the upstream's answer back unchanged.
func (p *Proxy) pass(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, err := p.forward(r, body)
	if err != nil {
		if p.upstreamError(r) {
			http.Error(w, "rpcproxy: upstream: "+err.Error(), http.StatusBadGateway)
		} else {
			hangUp(w, false) // never an empty 200 for an aborted request
		}
		return
	}
	defer resp.Body.Close()
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// upstreamError counts a failed forward unless the client or Close caused it, and
// reports whether it counted.
func (p *Proxy) upstreamError(r *http.Request) bool {
	if r.Context().Err() != nil {
		return false
	}
	p.mu.Lock()
	p.stats.UpstreamErrors++
	p.mu.Unlock()
	return true
}

func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, error) {
	u := *p.target
	if r.URL.Path != "" && r.URL.Path != "/" {
		u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
		u.RawPath = ""
	}
	if r.URL.RawQuery != "" {
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += r.URL.RawQuery
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	copyHeader(out.Header, r.Header)
	return p.transport.RoundTrip(out)
}

// hopHeaders are meaningful for one connection only and are not forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func copyHeader(dst, src http.Header) {
	skip := map[string]bool{}
	for _, h := range hopHeaders {
		skip[h] = true
	}
	for _, v := range src.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			skip[http.CanonicalHeaderKey(strings.TrimSpace(f))] = true
		}
	}
	for k, vs := range src {
		if !skip[k] {
			dst[k] = append([]string(nil), vs...)
		}
	}
}

// hangUp takes the connection away from net/http and closes it without a response;
// with rst it first sets SO_LINGER to 0 so the kernel sends a TCP RST instead of a FIN.
func hangUp(w http.ResponseWriter, rst bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Cannot happen over HTTP/1.1; aborting still closes without a response.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func methodList(calls []call) string {
	const show = 4
	names := make([]string, 0, show+1)
	for i, c := range calls {
		if i == show {
			names = append(names, fmt.Sprintf("... (%d calls)", len(calls)))
			break
		}
		names = append(names, c.Method)
	}
	return strings.Join(names, ",")
}

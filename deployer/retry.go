package deployer

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/rpc"
)

// Defaults of RetryPolicy's zero values. Ten tries ride out a 20 % fault
// rate with a per-request failure chance of 0.2^10 ≈ 1e-7.
const (
	DefaultRetryAttempts = 10
	DefaultRetryElapsed  = time.Minute
	DefaultRetryBase     = 25 * time.Millisecond
	DefaultRetryMax      = 4 * time.Second
)

// RetryPolicy bounds how a request is repeated after a transport failure
// that says nothing about the request itself: a dropped or reset
// connection, HTTP 429 (its Retry-After is honoured), a 5xx gateway or
// overload status, a JSON-RPC "limit exceeded" (-32005), or the per-call
// timeout. Reads are safe to repeat; so is eth_sendRawTransaction with the
// same signed bytes, which can only ever be mined once. A refused
// connection is not retried: the node is down, and saying so at once is
// more useful. The zero value uses the defaults above.
type RetryPolicy struct {
	// MaxAttempts is the number of tries per request; 1 disables retries.
	MaxAttempts int
	// MaxElapsed bounds the time spent retrying one request.
	MaxElapsed time.Duration
	// BaseDelay is the first backoff; it doubles per try, with jitter.
	BaseDelay time.Duration
	// MaxDelay caps one backoff (and a server's Retry-After).
	MaxDelay time.Duration
}

func (p RetryPolicy) attempts() int {
	if p.MaxAttempts <= 0 {
		return DefaultRetryAttempts
	}
	return p.MaxAttempts
}

func (p RetryPolicy) elapsed() time.Duration {
	if p.MaxElapsed <= 0 {
		return DefaultRetryElapsed
	}
	return p.MaxElapsed
}

// backoff is the wait before try n+1 (n ≥ 1): the server's Retry-After
// when it sent one, else BaseDelay·2^(n-1) capped at MaxDelay, of which
// the upper half is random so that clients hit by the same fault spread out.
func (p RetryPolicy) backoff(n int, retryAfter time.Duration, haveRetryAfter bool) time.Duration {
	base, top := p.BaseDelay, p.MaxDelay
	if base <= 0 {
		base = DefaultRetryBase
	}
	if top <= 0 {
		top = DefaultRetryMax
	}
	if haveRetryAfter {
		return min(retryAfter, top)
	}
	d := base << min(n-1, 20)
	if d <= 0 || d > top {
		d = top
	}
	return d/2 + rand.N(d/2+1)
}

// transient reports whether err is a transport failure worth repeating the
// same request for (see RetryPolicy). parent is the caller's context: a
// deadline of the caller is final, the per-call timeout is not.
func transient(parent context.Context, err error) bool {
	if err == nil || parent.Err() != nil {
		return false
	}
	var he rpc.HTTPError
	if errors.As(err, &he) {
		switch c := he.StatusCode; {
		case c == http.StatusTooManyRequests, c == http.StatusRequestTimeout, c == http.StatusTooEarly:
			return true
		case c == http.StatusNotImplemented, c == http.StatusHTTPVersionNotSupported:
			return false
		default:
			return c >= 500 && c <= 599
		}
	}
	var re rpc.Error
	if errors.As(err, &re) {
		// -32005 is the de-facto "limit exceeded" of Infura, Alchemy and
		// others, sent with HTTP 200. Any other answer is the node's word.
		return re.ErrorCode() == -32005
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// retryHint carries a server's Retry-After from the HTTP transport to the
// retry loop of the request that got it.
type retryHint struct {
	mu    sync.Mutex
	after time.Duration
	set   bool
}

type retryHintKey struct{}

func (h *retryHint) get() (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.after, h.set
}

// hintTransport records Retry-After on 429 and 503 answers; go-ethereum's
// rpc.HTTPError keeps the status and body but not the headers.
type hintTransport struct{ base http.RoundTripper }

func (t hintTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return resp, err
	}
	if h, ok := req.Context().Value(retryHintKey{}).(*retryHint); ok {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			h.mu.Lock()
			h.after, h.set = d, true
			h.mu.Unlock()
		}
	}
	return resp, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// newHTTPClient is the HTTP client of Dial: the default transport (proxy
// settings from the environment, connection reuse) plus Retry-After capture.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: hintTransport{base: http.DefaultTransport.(*http.Transport).Clone()}}
}

// retrying runs one request (f) with the per-call timeout, repeating it on
// transient failures within the client's RetryPolicy. It returns the last
// error as is; the caller wraps it.
func (c *Client) retrying(ctx context.Context, f func(ctx context.Context) error) (attempts int, err error) {
	pol := c.Retry
	start := time.Now()
	for n := 1; ; n++ {
		hint := &retryHint{}
		cctx, cancel := context.WithTimeout(context.WithValue(ctx, retryHintKey{}, hint), c.timeout())
		err = f(cctx)
		cancel()
		if err == nil || n >= pol.attempts() || !transient(ctx, err) {
			return n, err
		}
		after, ok := hint.get()
		d := pol.backoff(n, after, ok)
		if time.Since(start)+d > pol.elapsed() {
			return n, err
		}
		c.retries.Add(1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return n, err
		case <-t.C:
		}
	}
}

package phala

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
	"sync/atomic"
	"time"
)

// maxBody bounds how much of a response is read.
const maxBody = 16 << 20

// Client talks to one Phala Cloud API prefix. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   *url.URL
	hc     *http.Client // requests, bounded per attempt by cfg.Timeout
	stream *http.Client // SSE streams: no client-wide timeout
	sleep  func(context.Context, time.Duration) error
	now    func() time.Time
	jitter func() float64
	// fellBack is set once a server refused the configured version: every
	// request after it is sent with FallbackVersion.
	fellBack atomic.Bool
	// noSamePath is set once POST /cvms turned out not to provision: later
	// provisions go straight to /cvms/provision.
	noSamePath atomic.Bool
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	base, err := parseBaseURL(cfg.baseURL())
	if err != nil {
		return nil, err
	}
	hc := &http.Client{}
	if cfg.HTTPClient != nil {
		cp := *cfg.HTTPClient
		hc = &cp
	}
	hc.CheckRedirect = sameOriginRedirects(hc.CheckRedirect)
	stream := *hc
	stream.Timeout = 0
	c := &Client{cfg: cfg, base: base, hc: hc, stream: &stream, sleep: cfg.Sleep, now: cfg.Now, jitter: cfg.Jitter}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.jitter == nil {
		c.jitter = rand.Float64
	}
	return c, nil
}

// BaseURL returns the API prefix the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// Version returns the X-Phala-Version the client sends (FallbackVersion
// once a server refused the configured one); calls naming a KMS node may
// be pinned to NodeKeyedVersion.
func (c *Client) Version() string {
	if c.fellBack.Load() {
		return FallbackVersion
	}
	return c.cfg.version()
}

// FellBack reports whether the server refused the configured version and
// the client now speaks FallbackVersion.
func (c *Client) FellBack() bool { return c.fellBack.Load() }

// versionFor is the version a request pinned to pin (or "") is sent with.
func (c *Client) versionFor(pin string) string { return pinned(c.Version(), pin) }

// sameOriginRedirects follows redirects only within the same scheme and
// host: Go forwards custom headers such as X-API-Key on redirects, so a
// redirect elsewhere could leak the key. A refused redirect surfaces as an
// APIError with the 3xx status.
func sameOriginRedirects(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		if len(via) >= 5 || req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
			return http.ErrUseLastResponse
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryPolicy says which failures of a request may be retried.
type retryPolicy int

const (
	// retryUnsent retries only failures where the server cannot have acted:
	// 429 and connection (dial) errors. For calls with side effects.
	retryUnsent retryPolicy = iota
	// retryIdempotent also retries 5xx answers, timeouts and cut
	// connections: for reads and server-side idempotent writes.
	retryIdempotent
)

type request struct {
	method string
	path   string // escaped, starting with "/"
	query  url.Values
	body   any // nil: no body
	header map[string]string
	retry  retryPolicy
	noAuth bool // the endpoint does not need X-API-Key (it is still sent when set)
	// pin is the version this call is pinned to ("" for none): it is sent
	// instead of a newer configured version.
	pin string
	// secrets are request values (a commit token) that must never appear in
	// an error, like the API key.
	secrets []string
}

type response struct {
	status     int
	statusLine string // carries the text of non-standard statuses such as 465
	header     http.Header
	body       []byte
}

func (c *Client) url(path string, q url.Values) string {
	s := strings.TrimRight(c.base.String(), "/") + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

func (c *Client) setHeaders(h http.Header, accept, version string) {
	if c.cfg.APIKey != "" {
		h.Set("X-API-Key", c.cfg.APIKey)
	}
	h.Set("X-Phala-Version", version)
	h.Set("Content-Type", "application/json")
	h.Set("Accept", accept)
	ua := c.cfg.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	h.Set("User-Agent", ua)
}

func (c *Client) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

func (c *Client) warnf(format string, args ...any) {
	if c.cfg.Warnf != nil {
		c.cfg.Warnf(format, args...)
		return
	}
	c.logf(format, args...)
}

// secrets are the values redacted from every error of req.
func (c *Client) secrets(req request) []string {
	out := make([]string, 0, len(req.secrets)+1)
	if c.cfg.APIKey != "" {
		out = append(out, c.cfg.APIKey)
	}
	for _, s := range req.secrets {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// do sends req with retries and returns the 2xx answer, or an *APIError,
// *RegistrationRequiredError, *DecodeError, *NetworkError or context error.
// When the server refuses the version (refusesVersion), the request is sent
// once more with FallbackVersion, which the client keeps from then on, and
// Warnf says so. A refusal happens before the server acts, so this is safe
// for every request.
func (c *Client) do(ctx context.Context, req request) (*response, error) {
	version := c.versionFor(req.pin)
	resp, err := c.doVersion(ctx, req, version)
	if err == nil || c.cfg.NoFallback || version == FallbackVersion || !refusesVersion(err, version) {
		return resp, err
	}
	if c.fellBack.CompareAndSwap(false, true) {
		c.warnf("warning: %s refused X-Phala-Version %s (%v); retrying with %s, which this client uses from now on (set %s to choose another)",
			c.base.Host, version, err, FallbackVersion, EnvAPIVersion)
	}
	return c.doVersion(ctx, req, c.versionFor(req.pin))
}

// doVersion is do with the version fixed.
func (c *Client) doVersion(ctx context.Context, req request, version string) (*response, error) {
	if !req.noAuth && c.cfg.APIKey == "" {
		return nil, fmt.Errorf("phala: %s %s: %w", req.method, req.path, ErrMissingAPIKey)
	}
	var payload []byte
	if req.body != nil {
		b, err := marshalJSON(req.body)
		if err != nil {
			return nil, fmt.Errorf("phala: %s %s: encoding the request: %w", req.method, req.path, err)
		}
		payload = b
	}
	maxAttempts := c.cfg.retries() + 1
	for attempt := 0; ; attempt++ {
		start := c.now()
		resp, err := c.attempt(ctx, req, payload, version)
		var lastErr error
		var delay time.Duration
		retryable := false
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("phala: %s %s: %w", req.method, req.path, ctxErr)
			}
			c.logf("phala: %s %s: attempt %d: %v", req.method, req.path, attempt+1, err)
			lastErr = &NetworkError{Method: req.method, Path: req.path, Err: err}
			retryable = req.retry == retryIdempotent || isDialError(err)
		} else {
			c.logf("phala: %s %s -> %d (%s)", req.method, req.path, resp.status, c.now().Sub(start).Round(time.Millisecond))
			if resp.status >= 200 && resp.status <= 299 {
				return resp, nil
			}
			ae := parseAPIError(req.method, req.path, resp, c.secrets(req)...)
			ae.RetryAfter = retryAfter(resp.header, c.now())
			if resp.status >= 300 && resp.status <= 399 && ae.Message == "" {
				ae.Message = "redirect to " + truncate(resp.header.Get("Location"), 200) + " not followed (only same-origin redirects are, to keep the API key on the configured host)"
			}
			lastErr = ae
			switch {
			case resp.status == http.StatusTooManyRequests:
				retryable = true
			case resp.status >= 500 && resp.status <= 599:
				retryable = req.retry == retryIdempotent
			}
			if retryable && ae.RetryAfter > 0 {
				delay = ae.RetryAfter
				if delay > durationOr(c.cfg.MaxRetryAfter, defaultMaxRetryAfter) {
					retryable = false // do not block silently for minutes
				}
			}
			if resp.status == StatusRegistrationRequired {
				reg, derr := registrationFromAPIError(ae)
				if derr != nil {
					return nil, c.decodeError(req, resp, derr)
				}
				return nil, &RegistrationRequiredError{APIError: ae, Required: *reg}
			}
		}
		if !retryable || attempt+1 >= maxAttempts {
			return nil, lastErr
		}
		if delay == 0 {
			delay = c.backoff(attempt)
		}
		c.logf("phala: %s %s: retrying in %s", req.method, req.path, delay.Round(time.Millisecond))
		if err := c.sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("phala: %s %s: %w (while retrying after: %v)", req.method, req.path, err, lastErr)
		}
	}
}

// attempt sends one HTTP request bounded by the per-request timeout and
// reads the whole body.
func (c *Client) attempt(ctx context.Context, req request, payload []byte, version string) (*response, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.timeout())
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	hreq, err := http.NewRequestWithContext(actx, req.method, c.url(req.path, req.query), body)
	if err != nil {
		return nil, err
	}
	c.setHeaders(hreq.Header, "application/json", version)
	for k, v := range req.header {
		hreq.Header.Set(k, v)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("response body exceeds %d bytes", maxBody)
	}
	h := resp.Header
	if h == nil {
		h = http.Header{}
	}
	return &response{status: resp.StatusCode, statusLine: resp.Status, header: h, body: b}, nil
}

// backoff is exponential from MinBackoff, capped at MaxBackoff, with jitter
// between half and all of the step.
func (c *Client) backoff(attempt int) time.Duration {
	lo := durationOr(c.cfg.MinBackoff, defaultMinBackoff)
	hi := durationOr(c.cfg.MaxBackoff, defaultMaxBackoff)
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	if d > hi {
		d = hi
	}
	return d/2 + time.Duration(c.jitter()*float64(d/2))
}

// retryAfter reads Retry-After as seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// isDialError reports a failure to connect: the request never reached the
// server, so even a non-idempotent call may be retried.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// decode unmarshals a 2xx body into out, turning failures into *DecodeError.
func (c *Client) decode(req request, resp *response, out any) error {
	if err := json.Unmarshal(resp.body, out); err != nil {
		return c.decodeError(req, resp, err)
	}
	return nil
}

func (c *Client) decodeError(req request, resp *response, err error) *DecodeError {
	de := &DecodeError{
		Method:      req.method,
		Path:        req.path,
		Status:      resp.status,
		ContentType: resp.header.Get("Content-Type"),
		Body:        snippet(resp.body, c.secrets(req)...),
		Err:         err,
	}
	var fe *fieldError
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &fe):
		de.Field = fe.field
	case errors.As(err, &te):
		de.Field = te.Field
	case errors.As(err, &se):
		de.Err = fmt.Errorf("the body is not JSON (%s): %w", jsonKind(resp.body), err)
	}
	return de
}

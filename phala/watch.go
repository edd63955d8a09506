package phala

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WatchOptions tune WatchState. Zero values select the defaults.
type WatchOptions struct {
	// Interval is how often the server checks the state (5s to 30s;
	// default 5s), sent as ?interval=.
	Interval time.Duration
	// StreamTimeout is how long one stream may wait (10s to 600s; default
	// 300s), sent as ?timeout=; the watch re-opens the stream after it.
	StreamTimeout time.Duration
	// RetryDelay is the pause before re-opening a stream (default 5s).
	RetryDelay time.Duration
	// MaxStreams bounds how many streams are opened (0: until ctx ends).
	MaxStreams int
	// PollInterval is the period of the GET /cvms/{id}/state fallback used
	// when the server does not speak SSE (default 2s, as the CLI polls).
	PollInterval time.Duration
	// DisableSSE polls from the start.
	DisableSSE bool
}

func (o WatchOptions) check() error {
	if o.Interval != 0 && (o.Interval < 5*time.Second || o.Interval > 30*time.Second) {
		return fmt.Errorf("%w: watch interval %s is outside 5s..30s", ErrInvalidInput, o.Interval)
	}
	if o.StreamTimeout != 0 && (o.StreamTimeout < 10*time.Second || o.StreamTimeout > 600*time.Second) {
		return fmt.Errorf("%w: watch stream timeout %s is outside 10s..600s", ErrInvalidInput, o.StreamTimeout)
	}
	if o.RetryDelay < 0 || o.PollInterval < 0 || o.MaxStreams < 0 {
		return fmt.Errorf("%w: negative watch setting", ErrInvalidInput)
	}
	return nil
}

func (o WatchOptions) withDefaults() WatchOptions {
	o.Interval = durationOr(o.Interval, 5*time.Second)
	o.StreamTimeout = durationOr(o.StreamTimeout, 300*time.Second)
	o.RetryDelay = durationOr(o.RetryDelay, 5*time.Second)
	o.PollInterval = durationOr(o.PollInterval, 2*time.Second)
	return o
}

// BootError ends a watch whose CVM failed: its state has a boot_error, or
// its status is error/failed.
type BootError struct {
	CVMID string
	State CVMState
}

func (e *BootError) Error() string {
	msg := e.State.BootError
	if msg == "" {
		msg = "no boot_error given"
	}
	return fmt.Sprintf("phala: CVM %s failed to boot (status %q): %s", e.CVMID, e.State.Status, msg)
}

// WatchError ends a watch that gave up (WatchOptions.MaxStreams) before the
// CVM reached the target status.
type WatchError struct {
	CVMID, Target string
	Streams       int
	Last          *CVMState // the last state seen, if any
	Err           error     // the last stream's error, if any
}

func (e *WatchError) Error() string {
	last := "no state seen"
	if e.Last != nil {
		last = fmt.Sprintf("last status %q", e.Last.Status)
	}
	s := fmt.Sprintf("phala: CVM %s did not reach %q after %d watch stream(s): %s", e.CVMID, e.Target, e.Streams, last)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *WatchError) Unwrap() error { return e.Err }

// StreamError is an "error" event sent by the server on a state stream.
type StreamError struct {
	Message string
}

func (e *StreamError) Error() string { return "phala: state stream error: " + e.Message }

// stateFailed reports a terminal failure short of target.
func stateFailed(s CVMState, target string) bool {
	if s.Status == target {
		return false
	}
	if s.BootError != "" {
		return true
	}
	switch strings.ToLower(s.Status) {
	case "error", "failed", "boot_error", "boot_failed":
		return true
	}
	return false
}

type streamOutcome int

const (
	streamRetry  streamOutcome = iota // re-open after RetryDelay
	streamDone                        // target reached
	streamFailed                      // boot failure
	streamFatal                       // give up with err
	streamNoSSE                       // the server does not stream: poll
)

// WatchState waits until the CVM's status is target (e.g. "running") and
// returns that state. It reads the SSE stream GET /cvms/{id}/state?target=…
// (events state, complete, timeout, error), re-opens it after a timeout or
// a cut, and falls back to polling GET /cvms/{id}/state when the server
// answers without an event stream. onState, if set, sees every state. A
// boot failure ends the watch with *BootError; ctx bounds the whole watch.
func (c *Client) WatchState(ctx context.Context, id, target string, onState func(CVMState)) (CVMState, error) {
	if strings.TrimSpace(target) == "" {
		return CVMState{}, fmt.Errorf("%w: empty target status", ErrInvalidInput)
	}
	p, err := cvmPath(id, "/state")
	if err != nil {
		return CVMState{}, err
	}
	if onState == nil {
		onState = func(CVMState) {}
	}
	o := c.cfg.Watch.withDefaults()
	if o.DisableSSE {
		return c.pollState(ctx, id, target, o, onState)
	}
	var last *CVMState
	var lastErr error
	for streams := 1; ; streams++ {
		outcome, st, err := c.watchStream(ctx, id, p, target, o, onState, &last)
		switch outcome {
		case streamDone:
			return st, nil
		case streamFailed:
			return st, &BootError{CVMID: id, State: st}
		case streamFatal:
			return lastOr(last), err
		case streamNoSSE:
			c.logf("phala: GET %s: no event stream; polling every %s", p, o.PollInterval)
			return c.pollState(ctx, id, target, o, onState)
		}
		if err != nil {
			lastErr = err
		}
		if o.MaxStreams > 0 && streams >= o.MaxStreams {
			return lastOr(last), &WatchError{CVMID: id, Target: target, Streams: streams, Last: last, Err: lastErr}
		}
		if err := c.sleep(ctx, o.RetryDelay); err != nil {
			return lastOr(last), fmt.Errorf("phala: watching CVM %s: %w", id, err)
		}
	}
}

func lastOr(s *CVMState) CVMState {
	if s == nil {
		return CVMState{}
	}
	return *s
}

// watchStream opens one state stream and reads it to its end.
func (c *Client) watchStream(ctx context.Context, id, path, target string, o WatchOptions, onState func(CVMState), last **CVMState) (streamOutcome, CVMState, error) {
	q := url.Values{
		"target":   {target},
		"interval": {strconv.Itoa(int(o.Interval / time.Second))},
		"timeout":  {strconv.Itoa(int(o.StreamTimeout / time.Second))},
	}
	// The server ends the stream itself after StreamTimeout; the margin
	// only guards against one that never does.
	if c.cfg.APIKey == "" {
		return streamFatal, CVMState{}, fmt.Errorf("phala: GET %s: %w", path, ErrMissingAPIKey)
	}
	sctx, cancel := context.WithTimeout(ctx, o.StreamTimeout+30*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(sctx, http.MethodGet, c.url(path, q), nil)
	if err != nil {
		return streamFatal, CVMState{}, err
	}
	c.setHeaders(hreq.Header, "text/event-stream", c.Version())
	hreq.Header.Set("Cache-Control", "no-cache")
	resp, err := c.stream.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return streamFatal, CVMState{}, fmt.Errorf("phala: GET %s: %w", path, ctx.Err())
		}
		return streamRetry, CVMState{}, &NetworkError{Method: http.MethodGet, Path: path, Err: err}
	}
	defer resp.Body.Close()
	c.logf("phala: GET %s (stream) -> %d", path, resp.StatusCode)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		r := &response{status: resp.StatusCode, statusLine: resp.Status, header: resp.Header, body: body}
		ae := parseAPIError(http.MethodGet, path, r, c.secrets(request{})...)
		switch {
		case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusMethodNotAllowed,
			resp.StatusCode == http.StatusNotAcceptable, resp.StatusCode == http.StatusNotImplemented:
			// No stream here; polling will report a real 404 itself.
			return streamNoSSE, CVMState{}, ae
		case resp.StatusCode == http.StatusTooManyRequests, ae.IsServer():
			return streamRetry, CVMState{}, ae
		}
		return streamFatal, CVMState{}, ae
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return streamNoSSE, CVMState{}, nil
	}
	events := newSSEReader(resp.Body)
	for {
		ev, err := events.next()
		if err != nil {
			if ctx.Err() != nil {
				return streamFatal, CVMState{}, fmt.Errorf("phala: GET %s: %w", path, ctx.Err())
			}
			if errors.Is(err, io.EOF) {
				return streamRetry, CVMState{}, nil
			}
			return streamRetry, CVMState{}, &NetworkError{Method: http.MethodGet, Path: path, Err: fmt.Errorf("state stream: %w", err)}
		}
		switch ev.name {
		case "state":
			var st CVMState
			if err := json.Unmarshal([]byte(ev.data), &st); err != nil {
				r := &response{status: resp.StatusCode, header: resp.Header, body: []byte(ev.data)}
				return streamFatal, CVMState{}, c.decodeError(request{method: http.MethodGet, path: path}, r, err)
			}
			*last = &st
			onState(st)
			if st.Status == target {
				return streamDone, st, nil
			}
			if stateFailed(st, target) {
				return streamFailed, st, nil
			}
		case "complete":
			if *last != nil && (*last).Status == target {
				return streamDone, **last, nil
			}
			// Completed without a matching state event: ask once.
			st, err := c.CVMState(ctx, id)
			if err != nil {
				return streamRetry, CVMState{}, err
			}
			*last = st
			onState(*st)
			if st.Status == target {
				return streamDone, *st, nil
			}
			if stateFailed(*st, target) {
				return streamFailed, *st, nil
			}
			return streamRetry, CVMState{}, nil
		case "timeout":
			return streamRetry, CVMState{}, nil
		case "error":
			var e struct {
				Error   string `json:"error"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal([]byte(ev.data), &e)
			msg := strings.TrimSpace(e.Error + " " + e.Message)
			if msg == "" {
				msg = truncate(ev.data, 200)
			}
			return streamRetry, CVMState{}, &StreamError{Message: msg}
		}
	}
}

// pollState polls GET /cvms/{id}/state until target, a boot failure, an
// error or the end of ctx.
func (c *Client) pollState(ctx context.Context, id, target string, o WatchOptions, onState func(CVMState)) (CVMState, error) {
	var last CVMState
	for {
		st, err := c.CVMState(ctx, id)
		if err != nil {
			return last, err
		}
		last = *st
		onState(last)
		if last.Status == target {
			return last, nil
		}
		if stateFailed(last, target) {
			return last, &BootError{CVMID: id, State: last}
		}
		if err := c.sleep(ctx, o.PollInterval); err != nil {
			return last, fmt.Errorf("phala: watching CVM %s: %w", id, err)
		}
	}
}

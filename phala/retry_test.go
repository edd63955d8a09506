package phala

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scripted answers the i-th request with statuses[i] (the last one repeats).
func scripted(t *testing.T, statuses []int, okBody string, header map[string]string) (*httptest.Server, *recorder) {
	var n atomic.Int32
	return newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		i := int(n.Add(1)) - 1
		if i >= len(statuses) {
			i = len(statuses) - 1
		}
		st := statuses[i]
		if st >= 200 && st <= 299 {
			writeJSON(w, st, okBody)
			return
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		writeJSON(w, st, `{"detail":"try later"}`)
	})
}

func TestRetryPolicy(t *testing.T) {
	provision := func(c *Client) error {
		_, err := c.Provision(context.Background(), validProvisionRequest())
		return err
	}
	getCVM := func(c *Client) error { _, err := c.GetCVM(context.Background(), "trace-app-1"); return err }
	commit := func(c *Client) error {
		_, err := c.Commit(context.Background(), CommitRequest{AppID: appIDCS, ComposeHash: hashA})
		return err
	}
	update := func(c *Client) error {
		_, err := c.UpdateCVM(context.Background(), "trace-app-1", PatchCVMRequest{VCPU: ptr(2)}, UpdateOptions{})
		return err
	}
	isAllowed := func(c *Client) error {
		_, err := c.IsAllowed(context.Background(), "trace-app-1", IsAllowedRequest{})
		return err
	}
	allowedBody := `{"app_contract_address":"a","compose_hash":"h","device_id":"d","compose_hash_allowed":true,"allow_any_device":false,"is_allowed":true}`
	tests := []struct {
		name       string
		statuses   []int
		header     map[string]string
		body       string
		call       func(*Client) error
		mut        func(*Config)
		wantHits   int
		wantPauses []time.Duration
		wantStatus int // 0: success
	}{
		{"429 then 200 on provision honours Retry-After", []int{429, 200}, map[string]string{"Retry-After": "2"}, okProvision, provision, nil,
			2, []time.Duration{2 * time.Second}, 0},
		{"500 on provision is not retried", []int{500, 200}, nil, okProvision, provision, nil,
			1, nil, 500},
		{"503 on update is not retried", []int{503, 202}, nil, `{"correlation_id":"c"}`, update, nil,
			1, nil, 503},
		{"429 on update is retried", []int{429, 202}, nil, `{"correlation_id":"c"}`, update, nil,
			2, []time.Duration{500 * time.Millisecond}, 0},
		{"500 on GET retried with exponential backoff", []int{500, 502, 200}, nil, okCVM, getCVM, nil,
			3, []time.Duration{500 * time.Millisecond, time.Second}, 0},
		{"500 on commit retried (idempotent server-side)", []int{500, 200}, nil, okCVM, commit, nil,
			2, []time.Duration{500 * time.Millisecond}, 0},
		{"is-allowed retried like a read", []int{504, 200}, nil, allowedBody, isAllowed, nil,
			2, []time.Duration{500 * time.Millisecond}, 0},
		{"retries exhausted return the last answer", []int{500}, nil, okCVM, getCVM, nil,
			4, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}, 500},
		{"backoff is capped", []int{500}, nil, okCVM, getCVM, func(c *Config) { c.Retries = 4; c.MaxBackoff = 1500 * time.Millisecond },
			5, []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond}, 500},
		{"negative Retries disables retries", []int{500, 200}, nil, okCVM, getCVM, func(c *Config) { c.Retries = -1 },
			1, nil, 500},
		{"Retry-After beyond the cap ends the retries", []int{429, 200}, map[string]string{"Retry-After": "3600"}, okCVM, getCVM, nil,
			1, nil, 429},
		{"404 is not retried", []int{404, 200}, nil, okCVM, getCVM, nil,
			1, nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := scripted(t, tt.statuses, tt.body, tt.header)
			var muts []func(*Config)
			if tt.mut != nil {
				muts = append(muts, tt.mut)
			}
			c, fs := newClient(t, srv, muts...)
			err := tt.call(c)
			if tt.wantStatus == 0 && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantStatus != 0 {
				ae, ok := AsAPIError(err)
				if !ok || ae.Status != tt.wantStatus {
					t.Fatalf("err = %v, want HTTP %d", err, tt.wantStatus)
				}
			}
			if rec.count() != tt.wantHits {
				t.Fatalf("%d requests, want %d", rec.count(), tt.wantHits)
			}
			if got := fs.all(); !reflect.DeepEqual(got, tt.wantPauses) {
				t.Fatalf("pauses %v, want %v", got, tt.wantPauses)
			}
		})
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	now := time.Date(2025, 11, 1, 12, 0, 0, 0, time.UTC)
	srv, rec := scripted(t, []int{429, 200}, okCVM, map[string]string{"Retry-After": now.Add(7 * time.Second).Format(http.TimeFormat)})
	c, fs := newClient(t, srv, func(c *Config) { c.Now = func() time.Time { return now } })
	if _, err := c.GetCVM(context.Background(), "trace-app-1"); err != nil {
		t.Fatal(err)
	}
	if got := fs.all(); rec.count() != 2 || len(got) != 1 || got[0] != 7*time.Second {
		t.Fatalf("pauses %v after %d requests", got, rec.count())
	}
}

func TestJitterSpreadsBackoff(t *testing.T) {
	srv, _ := scripted(t, []int{500, 200}, okCVM, nil)
	c, fs := newClient(t, srv, func(c *Config) { c.Jitter = func() float64 { return 0 } })
	if _, err := c.GetCVM(context.Background(), "trace-app-1"); err != nil {
		t.Fatal(err)
	}
	if got := fs.all(); len(got) != 1 || got[0] != 250*time.Millisecond {
		t.Fatalf("pauses %v, want [250ms] (half the 500ms step)", got)
	}
}

func TestConnectionRefusedIsRetriedEvenForProvision(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens: the request never reaches a server
	c, fs := newClient(t, srv, func(c *Config) { c.Version = Version20251028 })
	_, err := c.Provision(context.Background(), validProvisionRequest())
	var ne *NetworkError
	if !errors.As(err, &ne) || ne.Path != "/cvms/provision" {
		t.Fatalf("err = %T %v", err, err)
	}
	if got := len(fs.all()); got != DefaultRetries {
		t.Fatalf("%d retries, want %d", got, DefaultRetries)
	}
}

func TestPerRequestTimeout(t *testing.T) {
	tests := []struct {
		name     string
		call     func(*Client) error
		wantHits int
	}{
		{"GET times out and is retried", func(c *Client) error { _, err := c.GetCVM(context.Background(), "trace-app-1"); return err }, 3},
		{"provision times out and is not retried", func(c *Client) error {
			_, err := c.Provision(context.Background(), validProvisionRequest())
			return err
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
				<-r.Context().Done() // never answer; the client gives up
			})
			c, _ := newClient(t, srv, func(c *Config) { c.Timeout = 50 * time.Millisecond; c.Retries = 2 })
			err := tt.call(c)
			var ne *NetworkError
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("err = %T %v, want a timed-out *NetworkError", err, err)
			}
			if rec.count() != tt.wantHits {
				t.Fatalf("%d requests, want %d", rec.count(), tt.wantHits)
			}
		})
	}
}

func TestCancelledContextStopsRetries(t *testing.T) {
	srv, rec := scripted(t, []int{500}, okCVM, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c, _ := newClient(t, srv, func(c *Config) {
		c.Sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	})
	_, err := c.GetCVM(ctx, "trace-app-1")
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("err = %v", err)
	}
	if rec.count() != 1 {
		t.Fatalf("%d requests after cancel", rec.count())
	}
}

func TestSleepCtx(t *testing.T) {
	if err := sleepCtx(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("sleepCtx = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleepCtx on a cancelled context = %v", err)
	}
}

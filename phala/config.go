package phala

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults (DefaultVersion and FallbackVersion are in versions.go).
const (
	DefaultBaseURL   = "https://cloud-api.phala.com/api/v1"
	DefaultTimeout   = 30 * time.Second // the SDK's per-request timeout
	DefaultRetries   = 3
	DefaultUserAgent = "cvmdeploy-phala/1"

	defaultMinBackoff    = 500 * time.Millisecond
	defaultMaxBackoff    = 10 * time.Second
	defaultMaxRetryAfter = 60 * time.Second
)

// Environment variables read by ConfigFromEnv, shared with the official
// SDK, CLI and Terraform provider.
const (
	EnvAPIKey     = "PHALA_CLOUD_API_KEY"
	EnvAPIPrefix  = "PHALA_CLOUD_API_PREFIX"
	EnvAPIVersion = "PHALA_CLOUD_API_VERSION"
)

// ErrInvalidInput marks errors caused by what the caller supplied (bad
// config, malformed ids or hashes); nothing was sent when it is returned.
var ErrInvalidInput = errors.New("invalid input")

// ErrMissingAPIKey is returned, before anything is sent, by calls that need
// authentication when Config.APIKey is empty.
var ErrMissingAPIKey = errors.New("no Phala Cloud API key: set " + EnvAPIKey)

// Config configures a Client. The zero value of every field except APIKey
// selects a default.
type Config struct {
	// BaseURL is the API prefix, including /api/v1. Plain http:// is only
	// accepted for loopback hosts (local clouds and tests).
	BaseURL string
	// APIKey is sent as X-API-Key. It never appears in errors or logs.
	APIKey string
	// Version is sent as X-Phala-Version (YYYY-MM-DD or "latest"; default
	// DefaultVersion). Calls naming a KMS node are pinned to
	// NodeKeyedVersion when Version is newer.
	Version string
	// NoFallback turns off the retry with FallbackVersion when the server
	// refuses Version.
	NoFallback bool
	// HTTPClient is copied, never modified; its redirect policy is replaced
	// so the API key is never sent to another host.
	HTTPClient *http.Client
	// Timeout bounds one attempt of one request (not an SSE stream).
	Timeout time.Duration
	// Retries is how many times a retryable failure is retried: 0 selects
	// DefaultRetries, a negative value disables retries.
	Retries int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries (jittered between half and all of the step).
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps how long a Retry-After header may make a request
	// wait; a longer demand ends the retries with the 429/503 error.
	MaxRetryAfter time.Duration
	// UserAgent is sent as User-Agent.
	UserAgent string
	// Watch tunes WatchState.
	Watch WatchOptions
	// Sleep waits between retries and polls; tests inject a fake. It must
	// return ctx.Err() when ctx ends first.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock used to read HTTP-date Retry-After values.
	Now func() time.Time
	// Jitter returns a value in [0,1) to spread retries; tests pin it.
	Jitter func() float64
	// Logf, when set, receives one line per HTTP attempt (method, path,
	// status, duration); headers and bodies are never logged.
	Logf func(format string, args ...any)
	// Warnf, when set, receives what the user should be told (the switch to
	// FallbackVersion); nil sends it to Logf.
	Warnf func(format string, args ...any)
}

// ConfigFromEnv returns a Config with the API key from PHALA_CLOUD_API_KEY,
// the base URL from PHALA_CLOUD_API_PREFIX (default DefaultBaseURL) and the
// version from PHALA_CLOUD_API_VERSION (default DefaultVersion).
func ConfigFromEnv() Config {
	base := strings.TrimSpace(os.Getenv(EnvAPIPrefix))
	if base == "" {
		base = DefaultBaseURL
	}
	version := strings.TrimSpace(os.Getenv(EnvAPIVersion))
	if version == "" {
		version = DefaultVersion
	}
	return Config{
		BaseURL: base,
		APIKey:  strings.TrimSpace(os.Getenv(EnvAPIKey)),
		Version: version,
	}
}

// Check validates the configuration without network access.
func (c Config) Check() error {
	if _, err := parseBaseURL(c.baseURL()); err != nil {
		return err
	}
	for _, r := range c.APIKey {
		if r < 0x21 || r == 0x7f {
			// A newline would split the header; spaces are never part of a token.
			return fmt.Errorf("%w: the API key contains whitespace or control characters", ErrInvalidInput)
		}
	}
	if v := c.Version; v != "" && !strings.EqualFold(v, "latest") && !isISODate(v) {
		return fmt.Errorf("%w: API version %q is not YYYY-MM-DD or latest", ErrInvalidInput, truncate(v, 40))
	}
	if c.Timeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 || c.MaxRetryAfter < 0 {
		return fmt.Errorf("%w: timeouts and backoff durations must not be negative", ErrInvalidInput)
	}
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		return fmt.Errorf("%w: MinBackoff %s exceeds MaxBackoff %s", ErrInvalidInput, c.MinBackoff, c.MaxBackoff)
	}
	if strings.ContainsAny(c.UserAgent, "\r\n") {
		return fmt.Errorf("%w: the user agent contains a line break", ErrInvalidInput)
	}
	return c.Watch.check()
}

// String redacts the API key so a Config can be printed or logged.
func (c Config) String() string {
	key := "unset"
	if c.APIKey != "" {
		key = "[redacted]"
	}
	return fmt.Sprintf("phala.Config{BaseURL:%q APIKey:%s Version:%q Timeout:%s Retries:%d}",
		c.baseURL(), key, c.version(), c.timeout(), c.retries())
}

// GoString redacts the API key under %#v too.
func (c Config) GoString() string { return c.String() }

func (c Config) baseURL() string {
	if c.BaseURL == "" {
		return DefaultBaseURL
	}
	return c.BaseURL
}

func (c Config) version() string {
	if c.Version == "" {
		return DefaultVersion
	}
	return c.Version
}

func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c Config) retries() int {
	switch {
	case c.Retries < 0:
		return 0
	case c.Retries == 0:
		return DefaultRetries
	}
	return c.Retries
}

func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func isISODate(s string) bool {
	_, err := time.Parse("2006-01-02", s)
	return err == nil
}

// parseBaseURL accepts https URLs, and http URLs whose host is loopback, so
// the API key never crosses a network in clear text.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: API base URL: %v", ErrInvalidInput, err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: API base URL must not contain credentials", ErrInvalidInput)
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: API base URL %q has no host (expected e.g. %s)", ErrInvalidInput, redactURL(u), DefaultBaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: API base URL must not have a query or fragment", ErrInvalidInput)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("%w: refusing plain http:// to %s: the API key would travel unencrypted; use https:// (http is allowed only for 127.0.0.0/8, ::1 and localhost)",
				ErrInvalidInput, u.Hostname())
		}
	default:
		return nil, fmt.Errorf("%w: API base URL scheme %q is not https", ErrInvalidInput, u.Scheme)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

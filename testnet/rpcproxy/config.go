package rpcproxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrNotLoopback is wrapped by errors about an address that is not on the loopback
// interface: the proxy never listens on, nor connects to, anything else.
var ErrNotLoopback = errors.New("rpcproxy: address is not loopback")

// DefaultListen is the listen address used when Config.Listen is empty.
const DefaultListen = "127.0.0.1:0"

// Config configures a Proxy.
type Config struct {
	// Upstream is the JSON-RPC endpoint to forward to, e.g. "http://127.0.0.1:8545".
	// Its host must be a loopback address or "localhost".
	Upstream string
	// Listen is the address to listen on; it must be loopback. Empty means DefaultListen.
	Listen string
	// Seed seeds the single random source that decides every fault.
	Seed int64
	// Rules are tried in order; the first rule that matches a request governs it.
	Rules []Rule
	// MaxFaults, if positive, caps the number of drops, resets, 429s and 5xx the
	// proxy injects over its lifetime; later requests are forwarded (delays still apply).
	MaxFaults int
	// Logf, if set, is called once per injected fault with the methods involved;
	// request bodies (raw transactions, parameters) are never logged.
	Logf func(format string, args ...any)
}

// Check reports whether the configuration is usable, including the loopback rule.
func (c Config) Check() error {
	if _, err := c.upstreamURL(); err != nil {
		return err
	}
	if err := checkListen(c.listen()); err != nil {
		return err
	}
	if c.MaxFaults < 0 {
		return fmt.Errorf("rpcproxy: max faults %d is negative", c.MaxFaults)
	}
	return checkRules(c.Rules)
}

func (c Config) listen() string {
	if c.Listen == "" {
		return DefaultListen
	}
	return c.Listen
}

func (c Config) upstreamURL() (*url.URL, error) {
	if c.Upstream == "" {
		return nil, errors.New("rpcproxy: upstream URL is required")
	}
	u, err := url.Parse(c.Upstream)
	if err != nil {
		return nil, fmt.Errorf("rpcproxy: upstream URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("rpcproxy: upstream URL %q: scheme must be http or https", c.Upstream)
	}
	if u.User != nil {
		// Credentials would end up in logs and error messages.
		return nil, fmt.Errorf("rpcproxy: upstream URL must not contain credentials")
	}
	if !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("%w: upstream host %q", ErrNotLoopback, u.Hostname())
	}
	return u, nil
}

func checkListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("rpcproxy: listen address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("%w: listen address %q", ErrNotLoopback, addr)
	}
	return nil
}

func checkRules(rules []Rule) error {
	for i, r := range rules {
		if err := r.Check(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
	}
	return nil
}

// isLoopbackHost accepts literal loopback IPs and the name "localhost". Names are
// also re-checked after resolution (listener address, dial control), so an odd
// hosts file cannot route traffic elsewhere.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

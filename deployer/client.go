package deployer

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
)

// DefaultCallTimeout bounds one JSON-RPC request (Foundry's --rpc-timeout
// default is 45 s).
const DefaultCallTimeout = 45 * time.Second

// ErrRPCUnreachable matches (errors.Is) every *RPCError whose node did not
// answer: connection refused, DNS failure, timeout, HTTP error status.
var ErrRPCUnreachable = errors.New("RPC node unreachable")

// RPCError says the node at URL did not answer a JSON-RPC request. URL is
// redacted (no credentials, no key-like path segments, no query).
type RPCError struct {
	URL    string // redacted
	Method string // the first method of the request, e.g. "eth_chainId"
	Err    error  // the transport error, never carrying the raw URL
	// Attempts is how many times the request was tried (see RetryPolicy).
	Attempts int
}

func (e *RPCError) Error() string {
	tries := ""
	if e.Attempts > 1 {
		tries = fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	return fmt.Sprintf("RPC node %s did not answer %s (%v)%s: check --rpc-url / ETH_RPC_URL and that the node is running", e.URL, e.Method, e.Err, tries)
}

func (e *RPCError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRPCUnreachable) true.
func (e *RPCError) Is(target error) bool { return target == ErrRPCUnreachable }

// Client is a JSON-RPC connection to one node, with a per-call timeout.
// Reads that happen together are sent as one JSON-RPC batch.
type Client struct {
	rpc *rpc.Client
	eth *ethclient.Client
	url string // redacted, for messages

	// CallTimeout bounds each request; zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// ExpectChainID, when non-zero, is compared with eth_chainId in every
	// preflight (--chain); a mismatch is a *ChainMismatchError.
	ExpectChainID uint64
	// Retry bounds the repetition of requests after transport failures.
	Retry RetryPolicy

	// chainID caches the id the last preflight read (receipts carry none).
	chainID atomic.Uint64
	// retries counts repeated requests, for tests and diagnostics.
	retries atomic.Uint64
	// noSyncSend is set once the node showed it lacks
	// eth_sendRawTransactionSync; later sends go straight to the plain send.
	noSyncSend atomic.Bool
	// DisableSyncSend forces plain eth_sendRawTransaction + receipt polls.
	DisableSyncSend bool
}

// Dial connects to url (http(s)://, ws(s)://, or an IPC path). For HTTP no
// request is made until the first call, so an unreachable node surfaces as
// an *RPCError from that call.
func Dial(ctx context.Context, rawURL string) (*Client, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("no RPC URL: pass --rpc-url or set ETH_RPC_URL")
	}
	red := RedactURL(rawURL)
	var opts []rpc.ClientOption
	if u, err := url.Parse(rawURL); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		opts = append(opts, rpc.WithHTTPClient(newHTTPClient()))
	}
	rc, err := rpc.DialOptions(ctx, rawURL, opts...)
	if err != nil {
		return nil, &RPCError{URL: red, Method: "dial", Err: stripURL(err)}
	}
	return &Client{rpc: rc, eth: ethclient.NewClient(rc), url: red}, nil
}

// NewClient wraps an existing connection (e.g. one with a custom HTTP
// client). name is shown in messages and is redacted here.
func NewClient(rc *rpc.Client, name string) *Client {
	return &Client{rpc: rc, eth: ethclient.NewClient(rc), url: RedactURL(name)}
}

// Close closes the connection.
func (c *Client) Close() { c.rpc.Close() }

// RPC exposes the raw client for calls this package does not wrap.
func (c *Client) RPC() *rpc.Client { return c.rpc }

// Eth exposes an ethclient on the same connection.
func (c *Client) Eth() *ethclient.Client { return c.eth }

// ChainID is the chain id the last preflight or read got from the node;
// zero before the first one.
func (c *Client) ChainID() uint64 { return c.chainID.Load() }

// URL is the redacted node URL.
func (c *Client) URL() string { return c.url }

// Retries is the number of requests repeated so far after transport
// failures (see RetryPolicy).
func (c *Client) Retries() uint64 { return c.retries.Load() }

func (c *Client) timeout() time.Duration {
	if c.CallTimeout > 0 {
		return c.CallTimeout
	}
	return DefaultCallTimeout
}

// call does one request with the per-call timeout, retried on transport
// failures (see RetryPolicy), and maps transport errors.
func (c *Client) call(ctx context.Context, result any, method string, args ...any) error {
	n, err := c.retrying(ctx, func(cctx context.Context) error {
		return c.rpc.CallContext(cctx, result, method, args...)
	})
	return c.wrap(ctx, method, n, err)
}

// batch sends elems as one JSON-RPC batch (one HTTP request), retried like
// call. Per-element errors stay in elems[i].Error; only transport errors
// are returned.
func (c *Client) batch(ctx context.Context, elems []rpc.BatchElem) error {
	if len(elems) == 0 {
		return nil
	}
	n, err := c.retrying(ctx, func(cctx context.Context) error {
		for i := range elems {
			elems[i].Error = nil
		}
		return c.rpc.BatchCallContext(cctx, elems)
	})
	return c.wrap(ctx, elems[0].Method, n, err)
}

// wrap turns transport failures into *RPCError. JSON-RPC errors (the node
// answered) and the caller's own cancellation pass through unchanged.
func (c *Client) wrap(ctx context.Context, method string, attempts int, err error) error {
	if err == nil {
		return nil
	}
	var rpcErr rpc.Error
	if errors.As(err, &rpcErr) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &RPCError{URL: c.url, Method: method, Err: stripURL(err), Attempts: attempts}
}

// stripURL removes *url.Error wrappers, whose message repeats the full URL
// (API keys included).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	var he rpc.HTTPError
	if errors.As(err, &he) {
		// The body can be a long HTML page; the status is enough.
		return fmt.Errorf("HTTP %s", he.Status)
	}
	return err
}

// RedactURL hides what may be secret in an RPC URL: user info, the query and
// every path segment longer than 10 characters (Alchemy's /v2/KEY, Infura's
// /v3/KEY, QuickNode's token). Scheme, host, port and short segments stay.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if strings.Contains(raw, "://") {
			return "<unparsable URL>"
		}
		return raw // an IPC path
	}
	out := u.Scheme + "://"
	if u.User != nil {
		out += "***@"
	}
	out += u.Host
	if p := strings.Trim(u.Path, "/"); p != "" {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if len(s) > 10 {
				segs[i] = "***"
			}
		}
		out += "/" + strings.Join(segs, "/")
	}
	if u.RawQuery != "" {
		out += "?***"
	}
	return out
}

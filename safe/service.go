package safe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// Service is a client of a Safe Transaction Service: Safe's hosted one
// (ServiceURL) or any other at BaseURL, the base api-kit takes as
// txServiceUrl. APIKey, when set, goes in "Authorization: Bearer" on every
// request and nowhere else.
type Service struct {
	BaseURL string
	APIKey  string
	HTTP    *http.Client
}

// ErrServiceUnreachable is wrapped when the service could not be reached
// or did not answer in time.
var ErrServiceUnreachable = errors.New("the Safe Transaction Service could not be reached")

// ServiceError is a non-2xx answer. Message is what api-kit would report
// (the first of the body's data, detail, message, nonFieldErrors,
// delegate, safe, delegator keys, else the status text).
type ServiceError struct {
	Status  int
	Method  string
	Path    string
	Message string
	Body    []byte
}

func (e *ServiceError) Error() string {
	msg := fmt.Sprintf("Safe Transaction Service: %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Message)
	// Field errors ({"signature": ["…"]}) only say "Bad Request" in api-kit's
	// mapping; the body names the field, so show it (bounded).
	if body := strings.TrimSpace(string(e.Body)); body != "" && !strings.Contains(e.Message, body) {
		if len(body) > 400 {
			body = body[:400] + "…"
		}
		msg += " (" + body + ")"
	}
	return msg
}

// NotFound reports a 404.
func (e *ServiceError) NotFound() bool { return e.Status == http.StatusNotFound }

// apiKitMessage maps an error body as api-kit's sendRequest does.
func apiKitMessage(status int, body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) == nil {
		for _, k := range []string{"data", "detail", "message", "nonFieldErrors", "delegate", "safe", "delegator"} {
			raw, ok := m[k]
			if !ok || string(raw) == "null" || string(raw) == `""` {
				continue
			}
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s
			}
			var list []string
			if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
				return strings.Join(list, ",") // a JS array as a message string
			}
			return string(raw)
		}
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "HTTP " + strconv.Itoa(status)
}

func (s *Service) client() *http.Client {
	if s.HTTP != nil {
		return s.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// do sends one request; out (when non-nil) receives a JSON answer.
func (s *Service) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	if s.BaseURL == "" {
		return errors.New("no Safe Transaction Service URL")
	}
	u := strings.TrimRight(s.BaseURL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("Safe Transaction Service URL %q: %w", s.BaseURL, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	if s.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.APIKey)
	}
	resp, err := s.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The url.Error quotes the URL, which holds no secret (the key is a header).
		return fmt.Errorf("%w: %s %s: %v", ErrServiceUnreachable, method, path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading the answer: %v", ErrServiceUnreachable, method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &ServiceError{Status: resp.StatusCode, Method: method, Path: path, Message: apiKitMessage(resp.StatusCode, raw), Body: raw}
	}
	if out == nil || len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("Safe Transaction Service: %s %s: unreadable answer: %w", method, path, err)
	}
	return nil
}

// Propose queues a transaction (201, empty body; the service is
// idempotent per safeTxHash).
func (s *Service) Propose(ctx context.Context, safe common.Address, req ProposeRequest) error {
	return s.do(ctx, http.MethodPost, "/v2/safes/"+safe.Hex()+"/multisig-transactions/", nil, req, nil)
}

// Transaction reads a queued or executed transaction.
func (s *Service) Transaction(ctx context.Context, safeTxHash common.Hash) (*ServiceTx, error) {
	var out ServiceTx
	if err := s.do(ctx, http.MethodGet, "/v2/multisig-transactions/"+safeTxHash.Hex()+"/", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Confirm adds an owner's signature to a queued transaction.
func (s *Service) Confirm(ctx context.Context, safeTxHash common.Hash, sig []byte) error {
	return s.do(ctx, http.MethodPost, "/v1/multisig-transactions/"+safeTxHash.Hex()+"/confirmations/", nil, ConfirmRequest{Signature: hexutil.Encode(sig)}, nil)
}

// SafeInfo reads the Safe as the service indexed it.
func (s *Service) SafeInfo(ctx context.Context, safe common.Address) (*SafeInfo, error) {
	var out SafeInfo
	if err := s.do(ctx, http.MethodGet, "/v1/safes/"+safe.Hex()+"/", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Pending lists the Safe's queued transactions with nonce ≥ fromNonce,
// lowest nonce first (one page of up to 100).
func (s *Service) Pending(ctx context.Context, safe common.Address, fromNonce uint64) (*Page[ServiceTx], error) {
	q := url.Values{"executed": {"false"}, "nonce__gte": {strconv.FormatUint(fromNonce, 10)}, "ordering": {"nonce"}, "limit": {"100"}}
	var out Page[ServiceTx]
	if err := s.do(ctx, http.MethodGet, "/v2/safes/"+safe.Hex()+"/multisig-transactions/", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddDelegate registers a delegate (a proposer).
func (s *Service) AddDelegate(ctx context.Context, req DelegateRequest) error {
	return s.do(ctx, http.MethodPost, "/v2/delegates/", nil, req, nil)
}

// RemoveDelegate removes one.
func (s *Service) RemoveDelegate(ctx context.Context, delegate common.Address, req DelegateRemoveRequest) error {
	return s.do(ctx, http.MethodDelete, "/v2/delegates/"+delegate.Hex()+"/", nil, req, nil)
}

// Delegates lists delegates, filtered by Safe and/or delegate (zero
// addresses do not filter).
func (s *Service) Delegates(ctx context.Context, safe, delegate common.Address) (*Page[Delegate], error) {
	q := url.Values{}
	if safe != (common.Address{}) {
		q.Set("safe", safe.Hex())
	}
	if delegate != (common.Address{}) {
		q.Set("delegate", delegate.Hex())
	}
	var out Page[Delegate]
	if err := s.do(ctx, http.MethodGet, "/v2/delegates/", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

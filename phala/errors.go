package phala

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error codes of structured API errors that callers branch on (§12 of the
// reference). The API sends more; APIError.ErrorCode carries any of them.
const (
	CodeHashRegistrationRequired = "ERR-01-005"
	CodeHashInvalidOrExpired     = "ERR-01-006"
	CodeTxVerificationFailed     = "ERR-01-007"
	CodeHashNotAllowed           = "ERR-01-008"
	CodeKMSNotFound              = "ERR-02-011"
	CodeQuotaExceeded            = "ERR-02-015"
	CodeAppIDConflict            = "ERR-03-007"
	CodeInsufficientBalance      = "ERR-04-001"
)

// HTTP statuses of the on-chain compose-update flow.
const (
	StatusRegistrationRequired = 465 // the new compose hash must be registered on-chain first
	StatusHashExpired          = 466 // the prepared update expired: start again
	StatusTxVerificationFailed = 467 // the transaction does not prove the registration
	StatusHashNotOnChain       = 468 // the compose hash is not allowed on-chain
)

// Sentinels matched by errors.Is against an *APIError with the matching
// status (or structured error code).
var (
	ErrRegistrationRequired = errors.New("compose hash registration required")
	ErrHashExpired          = errors.New("compose hash expired")
	ErrTxVerificationFailed = errors.New("transaction verification failed")
	ErrHashNotOnChain       = errors.New("compose hash not allowed on-chain")
)

// ErrorDetail is one {field, value, message} item of a structured error.
type ErrorDetail struct {
	Field   string `json:"field"`
	Value   any    `json:"value"`
	Message string `json:"message,omitempty"`
}

// Link is a {label, url} item of a structured error.
type Link struct {
	Label string `json:"label"`
	URL   string `json:"url"`
}

// ValidationIssue is one item of a FastAPI 422 {"detail":[...]} list.
type ValidationIssue struct {
	Loc   []any          `json:"loc,omitempty"`
	Msg   string         `json:"msg"`
	Type  string         `json:"type,omitempty"`
	Ctx   map[string]any `json:"ctx,omitempty"`
	Input any            `json:"input,omitempty"`
}

// Field is the dotted location of the issue without the body/query/path
// prefix, as the SDK shows it ("compose_file.name"), or "" if unknown.
func (v ValidationIssue) Field() string {
	var parts []string
	for _, p := range v.Loc {
		s := fmt.Sprint(p)
		switch s {
		case "body", "query", "path", "header":
			continue
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ".")
}

// StructuredError is the structured error object, found under "detail" or at
// the top level of an error body. The local cloud writes it with ErrorBody.
type StructuredError struct {
	ErrorCode   string        `json:"error_code"`
	Message     string        `json:"message"`
	Details     []ErrorDetail `json:"details,omitempty"`
	Suggestions []string      `json:"suggestions,omitempty"`
	Links       []Link        `json:"links,omitempty"`
}

// ErrorBody is the FastAPI error envelope {"detail": …}; Detail is a string,
// a []ValidationIssue or a StructuredError.
type ErrorBody struct {
	Detail any `json:"detail"`
}

// APIError is a non-2xx answer of the API. It is parsed from every error
// shape the service uses: {"detail":"…"}, {"detail":[…]} (422),
// {"detail":{error_code,…}}, and the structured object at top level.
type APIError struct {
	Method, Path string // the request, without host or query
	Status       int
	StatusText   string

	ErrorCode        string
	Message          string
	Details          []ErrorDetail
	Suggestions      []string
	Links            []Link
	ValidationErrors []ValidationIssue
	Type, Code       string // FastAPI-style extra members, when present
	RequestID        string // body request_id or X-Request-ID header

	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
	// Body is the start of the raw body (at most 512 bytes), for debugging.
	Body string
}

// Error renders status, message, code and the first suggestion on one line.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("phala: ")
	if e.Method != "" {
		fmt.Fprintf(&b, "%s %s: ", e.Method, e.Path)
	}
	fmt.Fprintf(&b, "HTTP %d", e.Status)
	if e.StatusText != "" {
		b.WriteString(" " + e.StatusText)
	}
	if msg := e.summary(); msg != "" {
		b.WriteString(": " + msg)
	}
	if e.ErrorCode != "" {
		fmt.Fprintf(&b, " [%s]", e.ErrorCode)
	}
	if len(e.Suggestions) > 0 {
		b.WriteString(" (suggestion: " + e.Suggestions[0] + ")")
	}
	return b.String()
}

func (e *APIError) summary() string {
	if len(e.ValidationErrors) == 0 {
		return e.Message
	}
	items := make([]string, 0, len(e.ValidationErrors))
	for _, v := range e.ValidationErrors {
		if f := v.Field(); f != "" {
			items = append(items, f+": "+v.Msg)
		} else {
			items = append(items, v.Msg)
		}
	}
	return "validation failed: " + strings.Join(items, "; ")
}

// Is matches the flow sentinels (ErrRegistrationRequired, ErrHashExpired,
// ErrTxVerificationFailed, ErrHashNotOnChain) by status or error code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrRegistrationRequired:
		return e.Status == StatusRegistrationRequired || e.ErrorCode == CodeHashRegistrationRequired
	case ErrHashExpired:
		return e.Status == StatusHashExpired || e.ErrorCode == CodeHashInvalidOrExpired
	case ErrTxVerificationFailed:
		return e.Status == StatusTxVerificationFailed || e.ErrorCode == CodeTxVerificationFailed
	case ErrHashNotOnChain:
		return e.Status == StatusHashNotOnChain || e.ErrorCode == CodeHashNotAllowed
	}
	return false
}

// IsAuth reports a rejected or missing API key (401, 403).
func (e *APIError) IsAuth() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// IsNotFound reports 404.
func (e *APIError) IsNotFound() bool { return e.Status == http.StatusNotFound }

// IsConflict reports 409 (e.g. ERR-03-007: the app id is already committed
// with another compose hash).
func (e *APIError) IsConflict() bool { return e.Status == http.StatusConflict }

// IsValidation reports a 422 (or 400) rejection of the request body.
func (e *APIError) IsValidation() bool {
	return e.Status == http.StatusUnprocessableEntity || e.Status == http.StatusBadRequest
}

// IsRateLimited reports 429.
func (e *APIError) IsRateLimited() bool { return e.Status == http.StatusTooManyRequests }

// IsServer reports a 5xx answer.
func (e *APIError) IsServer() bool { return e.Status >= 500 && e.Status <= 599 }

// AsAPIError returns the *APIError in err's chain.
func AsAPIError(err error) (*APIError, bool) {
	var ae *APIError
	ok := errors.As(err, &ae)
	return ae, ok
}

// DecodeError is a 2xx (or 465) answer whose body is not what the API
// documents: not JSON, a missing required field, a malformed value.
type DecodeError struct {
	Method, Path string
	Status       int
	ContentType  string
	Field        string // the offending member, when known
	Body         string // the start of the raw body (at most 512 bytes)
	Err          error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "phala: %s %s: HTTP %d: unexpected response", e.Method, e.Path, e.Status)
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.ContentType != "" && !strings.Contains(e.ContentType, "json") {
		fmt.Fprintf(&b, " (content type %q)", e.ContentType)
	}
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// NetworkError is a request that got no HTTP answer: connection refused,
// DNS failure, TLS failure, a per-request timeout, a cut body.
type NetworkError struct {
	Method, Path string
	Err          error
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("phala: %s %s: %v", e.Method, e.Path, e.Err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// Timeout reports whether the request timed out.
func (e *NetworkError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

const snippetLen = 512

// snippet returns the start of a body as text, with secrets (the API key, a
// commit token) redacted should a server ever echo them. It redacts before
// cutting, so a secret across the cut cannot leave half of itself.
func snippet(body []byte, secrets ...string) string {
	s := redact(string(body), secrets...)
	if len(s) > snippetLen {
		s = s[:snippetLen] + "…"
	}
	return s
}

// redacted replaces each secret in error text.
const redacted = "[redacted]"

func redact(s string, secrets ...string) string {
	for _, k := range secrets {
		if k != "" && strings.Contains(s, k) {
			s = strings.ReplaceAll(s, k, redacted)
		}
	}
	return s
}

// redactAny redacts the strings inside a decoded JSON value (a validation
// error's input may be the whole request body).
func redactAny(v any, secrets ...string) any {
	switch t := v.(type) {
	case string:
		return redact(t, secrets...)
	case map[string]any:
		for k, x := range t {
			t[k] = redactAny(x, secrets...)
		}
	case []any:
		for i, x := range t {
			t[i] = redactAny(x, secrets...)
		}
	}
	return v
}

// parseAPIError builds an APIError from any error body. It never fails:
// unknown shapes keep the status text and a body snippet. Should the server
// echo a secret (the API key, a commit token) anywhere, it is redacted.
func parseAPIError(method, path string, resp *response, secrets ...string) *APIError {
	e := parseErrorBody(method, path, resp, secrets)
	if len(secrets) > 0 {
		e.redact(secrets...)
	}
	return e
}

func (e *APIError) redact(secrets ...string) {
	for _, s := range []*string{&e.Message, &e.ErrorCode, &e.Type, &e.Code, &e.RequestID, &e.Body, &e.StatusText} {
		*s = redact(*s, secrets...)
	}
	for i := range e.Suggestions {
		e.Suggestions[i] = redact(e.Suggestions[i], secrets...)
	}
	for i := range e.Details {
		e.Details[i].Message = redact(e.Details[i].Message, secrets...)
		e.Details[i].Value = redactAny(e.Details[i].Value, secrets...)
	}
	for i := range e.ValidationErrors {
		v := &e.ValidationErrors[i]
		v.Msg = redact(v.Msg, secrets...)
		v.Input = redactAny(v.Input, secrets...)
		for k, x := range v.Ctx {
			v.Ctx[k] = redactAny(x, secrets...)
		}
		for j, l := range v.Loc {
			v.Loc[j] = redactAny(l, secrets...)
		}
	}
	for i := range e.Links {
		e.Links[i].Label = redact(e.Links[i].Label, secrets...)
		e.Links[i].URL = redact(e.Links[i].URL, secrets...)
	}
}

func parseErrorBody(method, path string, resp *response, secrets []string) *APIError {
	body := resp.body
	e := &APIError{
		Method:     method,
		Path:       path,
		Status:     resp.status,
		StatusText: statusText(resp.status, resp.statusLine),
		RequestID:  resp.header.Get("X-Request-ID"),
		Body:       snippet(body, secrets...),
	}
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil || top == nil {
		// Proxies answer with HTML or text; keep a one-line excerpt.
		if line := firstLine(string(body)); line != "" && !strings.HasPrefix(line, "<") {
			e.Message = truncate(redact(line, secrets...), 200)
		}
		return e
	}
	e.Type, _ = top["type"].(string)
	e.Code, _ = top["code"].(string)
	if id, ok := top["request_id"].(string); ok && id != "" {
		e.RequestID = id
	}
	detail, hasDetail := top["detail"]
	if !hasDetail {
		if _, ok := top["error_code"]; ok {
			detail = top // the structured object at top level
		} else {
			// Non-FastAPI bodies: {"message": …} or {"error": …}.
			for _, k := range []string{"message", "error"} {
				if s, ok := top[k].(string); ok && s != "" {
					e.Message = s
					break
				}
			}
			return e
		}
	}
	switch d := detail.(type) {
	case string:
		e.Message = d
	case []any:
		for _, item := range d {
			if m, ok := item.(map[string]any); ok {
				e.ValidationErrors = append(e.ValidationErrors, validationIssue(m))
			}
		}
		if len(e.ValidationErrors) == 0 {
			e.Message = "validation failed"
		}
	case map[string]any:
		parseStructured(e, d)
	case nil:
	default:
		e.Message = fmt.Sprint(d)
	}
	return e
}

func parseStructured(e *APIError, d map[string]any) {
	e.ErrorCode, _ = d["error_code"].(string)
	e.Message, _ = d["message"].(string)
	if id, ok := d["request_id"].(string); ok && id != "" {
		e.RequestID = id
	}
	if items, ok := d["details"].([]any); ok {
		for _, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			var det ErrorDetail
			det.Field, _ = m["field"].(string)
			det.Value = m["value"]
			det.Message, _ = m["message"].(string)
			e.Details = append(e.Details, det)
		}
	}
	if items, ok := d["suggestions"].([]any); ok {
		for _, it := range items {
			if s, ok := it.(string); ok {
				e.Suggestions = append(e.Suggestions, s)
			}
		}
	}
	if items, ok := d["links"].([]any); ok {
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				var l Link
				l.Label, _ = m["label"].(string)
				l.URL, _ = m["url"].(string)
				e.Links = append(e.Links, l)
			}
		}
	}
}

func validationIssue(m map[string]any) ValidationIssue {
	var v ValidationIssue
	v.Loc, _ = m["loc"].([]any)
	v.Msg, _ = m["msg"].(string)
	v.Type, _ = m["type"].(string)
	v.Ctx, _ = m["ctx"].(map[string]any)
	v.Input = m["input"]
	return v
}

func statusText(code int, statusLine string) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	// Non-standard statuses (465–468) carry their text in the status line.
	_, text, _ := strings.Cut(statusLine, " ")
	return strings.TrimSpace(text)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

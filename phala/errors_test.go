package phala

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseAPIErrorShapes(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		statusLine string
		body       string
		check      func(t *testing.T, e *APIError)
	}{
		{"detail string", 400, "", `{"detail":"Name already taken"}`, func(t *testing.T, e *APIError) {
			if e.Message != "Name already taken" || e.ErrorCode != "" || e.StatusText != "Bad Request" {
				t.Fatalf("%+v", e)
			}
		}},
		{"422 list", 422, "", `{"detail":[{"loc":["body","compose_file","name"],"msg":"String should have at most 63 characters","type":"string_too_long","ctx":{"max_length":63},"input":"x"},{"loc":["query","page"],"msg":"bad","type":"int_parsing"}]}`, func(t *testing.T, e *APIError) {
			if len(e.ValidationErrors) != 2 || e.ValidationErrors[0].Field() != "compose_file.name" || e.ValidationErrors[1].Field() != "page" {
				t.Fatalf("%+v", e.ValidationErrors)
			}
			if e.ValidationErrors[0].Ctx["max_length"] == nil || e.ValidationErrors[0].Input != "x" {
				t.Fatalf("ctx/input lost: %+v", e.ValidationErrors[0])
			}
			if !strings.Contains(e.Error(), "validation failed: compose_file.name: String should have at most 63 characters; page: bad") || !e.IsValidation() {
				t.Fatalf("Error() = %s", e.Error())
			}
		}},
		{"structured under detail", 409, "", `{"detail":{"error_code":"ERR-03-007","message":"App id already used","details":[{"field":"app_id","value":"ab","message":"taken"}],"suggestions":["Provision again","Other"],"links":[{"label":"Docs","url":"https://docs.phala.com"}],"request_id":"req-1"}}`, func(t *testing.T, e *APIError) {
			if e.ErrorCode != CodeAppIDConflict || e.Message != "App id already used" || e.RequestID != "req-1" {
				t.Fatalf("%+v", e)
			}
			if len(e.Details) != 1 || e.Details[0].Field != "app_id" || e.Details[0].Value != "ab" || e.Details[0].Message != "taken" {
				t.Fatalf("details %+v", e.Details)
			}
			if len(e.Links) != 1 || e.Links[0].URL != "https://docs.phala.com" || len(e.Suggestions) != 2 {
				t.Fatalf("links/suggestions %+v %+v", e.Links, e.Suggestions)
			}
			want := "phala: POST /cvms: HTTP 409 Conflict: App id already used [ERR-03-007] (suggestion: Provision again)"
			if e.Error() != want || !e.IsConflict() {
				t.Fatalf("Error() = %q, want %q", e.Error(), want)
			}
		}},
		{"structured at top level", 402, "", `{"error_code":"ERR-04-001","message":"Insufficient balance","suggestions":["Top up"],"type":"business","code":"x"}`, func(t *testing.T, e *APIError) {
			if e.ErrorCode != CodeInsufficientBalance || e.Message != "Insufficient balance" || e.Type != "business" || e.Code != "x" {
				t.Fatalf("%+v", e)
			}
		}},
		{"HTML from a proxy", 502, "", "<html><body>Bad gateway</body></html>", func(t *testing.T, e *APIError) {
			if e.Message != "" || !strings.Contains(e.Body, "Bad gateway") || !e.IsServer() || !strings.Contains(e.Error(), "HTTP 502 Bad Gateway") {
				t.Fatalf("%+v / %s", e, e.Error())
			}
		}},
		{"plain text", 503, "", "upstream overloaded\nretry later", func(t *testing.T, e *APIError) {
			if e.Message != "upstream overloaded" {
				t.Fatalf("%+v", e)
			}
		}},
		{"non-FastAPI message", 500, "", `{"message":"boom"}`, func(t *testing.T, e *APIError) {
			if e.Message != "boom" {
				t.Fatalf("%+v", e)
			}
		}},
		{"empty body", 404, "", ``, func(t *testing.T, e *APIError) {
			if e.Message != "" || !e.IsNotFound() || e.Error() != "phala: POST /cvms: HTTP 404 Not Found" {
				t.Fatalf("%+v / %q", e, e.Error())
			}
		}},
		{"wrongly typed members do not panic", 400, "", `{"detail":{"error_code":5,"message":["x"],"details":"no","suggestions":[1,"ok"],"links":[{"label":1}]}}`, func(t *testing.T, e *APIError) {
			if e.ErrorCode != "" || e.Message != "" || len(e.Details) != 0 || len(e.Suggestions) != 1 || len(e.Links) != 1 {
				t.Fatalf("%+v", e)
			}
		}},
		{"detail of another type", 400, "", `{"detail":42}`, func(t *testing.T, e *APIError) {
			if e.Message != "42" {
				t.Fatalf("%+v", e)
			}
		}},
		{"non-standard status text from the status line", 465, "465 Hash Registration Required", `{"detail":"register"}`, func(t *testing.T, e *APIError) {
			if e.StatusText != "Hash Registration Required" || !errors.Is(e, ErrRegistrationRequired) {
				t.Fatalf("%+v", e)
			}
		}},
		{"unknown status", 599, "599 Weird", `{"detail":"?"}`, func(t *testing.T, e *APIError) {
			if e.StatusText != "Weird" || !e.IsServer() || e.IsAuth() {
				t.Fatalf("%+v", e)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &response{status: tt.status, statusLine: tt.statusLine, header: http.Header{}, body: []byte(tt.body)}
			tt.check(t, parseAPIError("POST", "/cvms", r, testKey))
		})
	}
}

func TestAPIErrorSentinelsAndPredicates(t *testing.T) {
	tests := []struct {
		status   int
		code     string
		sentinel error
		auth     bool
	}{
		{401, "", nil, true},
		{403, "", nil, true},
		{465, "", ErrRegistrationRequired, false},
		{466, "", ErrHashExpired, false},
		{467, "", ErrTxVerificationFailed, false},
		{468, "", ErrHashNotOnChain, false},
		{400, CodeHashInvalidOrExpired, ErrHashExpired, false},
		{400, CodeHashNotAllowed, ErrHashNotOnChain, false},
	}
	all := []error{ErrRegistrationRequired, ErrHashExpired, ErrTxVerificationFailed, ErrHashNotOnChain}
	for _, tt := range tests {
		e := &APIError{Status: tt.status, ErrorCode: tt.code}
		if e.IsAuth() != tt.auth {
			t.Errorf("%d IsAuth = %v", tt.status, e.IsAuth())
		}
		for _, s := range all {
			if got := errors.Is(e, s); got != (s == tt.sentinel) {
				t.Errorf("status %d code %q: errors.Is(%v) = %v", tt.status, tt.code, s, got)
			}
		}
	}
}

func TestSnippetRedactsKeyAndTruncates(t *testing.T) {
	body := []byte(`{"detail":"bad key ` + testKey + `"}` + strings.Repeat("x", 1000))
	s := snippet(body, testKey)
	if strings.Contains(s, testKey) || !strings.Contains(s, "[redacted]") || len(s) > snippetLen+len("…") {
		t.Fatalf("snippet = %q", s)
	}
}

func TestErrorMessages(t *testing.T) {
	reg := &RegistrationRequiredError{APIError: &APIError{Method: "PATCH", Path: "/cvms/a", Status: 465, Message: "register first"},
		Required: ComposeHashRegistrationRequired{ComposeHash: hashA, AppID: "21db43cdd6fbd4998ff67af132f953747bfacb97"}}
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"boot error", &BootError{CVMID: "app_1", State: CVMState{Status: "stopped", BootError: "Compose hash not allowed"}},
			[]string{"CVM app_1 failed to boot", `"stopped"`, "Compose hash not allowed"}},
		{"boot error without text", &BootError{CVMID: "x", State: CVMState{Status: "failed"}}, []string{"no boot_error given"}},
		{"watch error", &WatchError{CVMID: "x", Target: "running", Streams: 2, Last: &CVMState{Status: "starting"}, Err: &StreamError{Message: "kms down"}},
			[]string{`did not reach "running" after 2 watch stream(s)`, `last status "starting"`, "kms down"}},
		{"watch error without state", &WatchError{CVMID: "x", Target: "running", Streams: 1}, []string{"no state seen"}},
		{"registration required", reg, []string{"HTTP 465", "register first", "0x" + hashA, "on-chain first"}},
		{"decode error", &DecodeError{Method: "GET", Path: "/kms", Status: 200, ContentType: "text/html", Err: errors.New("boom")},
			[]string{"GET /kms: HTTP 200: unexpected response: boom", `content type "text/html"`}},
		{"network error", &NetworkError{Method: "POST", Path: "/cvms", Err: errors.New("connection reset")}, []string{"POST /cvms: connection reset"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("%q does not contain %q", msg, w)
				}
			}
		})
	}
	if !errors.Is(reg, ErrRegistrationRequired) {
		t.Fatal("RegistrationRequiredError does not match ErrRegistrationRequired")
	}
	if (&APIError{Status: 429}).IsRateLimited() != true || (&APIError{Status: 500}).IsRateLimited() {
		t.Fatal("IsRateLimited")
	}
}

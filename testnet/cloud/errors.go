package cloud

import (
	"encoding/json"
	"net/http"
)

// Error codes the emulator answers with. They follow the codes the official
// SDK knows (reference §12); the service's full list is not public.
const (
	codeHashRegistrationRequired = "ERR-01-005" // 465: the new compose hash must be registered on-chain
	codeHashInvalidOrExpired     = "ERR-01-006" // 466 (and unknown provisions at commit)
	codeTxVerificationFailed     = "ERR-01-007" // 467
	codeHashNotAllowed           = "ERR-01-008" // 468
	codeKMSNotFound              = "ERR-02-011"
	codeNodeNotFound             = "ERR-02-001"
	codeImageNotFound            = "ERR-02-002"
	codeCVMNotFound              = "ERR-03-001"
	codeAppIDConflict            = "ERR-03-007"
	codeNotOnChain               = "ERR-03-010"
)

// HTTP statuses specific to Phala Cloud's compose-update flow (reference §11).
const (
	StatusHashRegistrationRequired = 465
	StatusHashExpired              = 466
	StatusTxVerificationFailed     = 467
	StatusHashNotOnChain           = 468
)

// fieldError is one entry of a FastAPI/pydantic 422 answer:
// {"detail":[{type, loc, msg, input, ctx?}]}.
type fieldError struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// apiError is the structured error shape:
// {"detail":{error_code, message, details[], suggestions[], links[]}}.
type apiError struct {
	ErrorCode   string       `json:"error_code"`
	Message     string       `json:"message"`
	Details     []detailItem `json:"details"`
	Suggestions []string     `json:"suggestions"`
	Links       []link       `json:"links"`
}

type detailItem struct {
	Field   string `json:"field"`
	Value   any    `json:"value"`
	Message string `json:"message,omitempty"`
}

type link struct {
	Label string `json:"label"`
	URL   string `json:"url"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeDetail answers the plain FastAPI shape {"detail": "msg"}.
func writeDetail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"detail": msg})
}

// writeValidation answers 422 in the FastAPI list shape.
func writeValidation(w http.ResponseWriter, errs []fieldError) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": errs})
}

// writeStructured answers the structured shape wrapped in "detail".
func writeStructured(w http.ResponseWriter, status int, e apiError) {
	if e.Details == nil {
		e.Details = []detailItem{}
	}
	if e.Suggestions == nil {
		e.Suggestions = []string{}
	}
	if e.Links == nil {
		e.Links = []link{}
	}
	writeJSON(w, status, map[string]any{"detail": e})
}

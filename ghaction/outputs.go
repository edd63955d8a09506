package ghaction

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Report is one cvmdeploy run as the action reports it.
type Report struct {
	// Command is the cvmdeploy command that ran (deploy, update, …).
	Command string
	// ExitCode is its exit code; ExitMeaning says it in words.
	ExitCode    int
	ExitMeaning string
	// Error is the failed command's error message, if any.
	Error string
	// Result is its --json document as printed; nil when it printed none.
	Result []byte
	// ReviewPage is the review page written (--review), or "".
	ReviewPage string
	// Explorer returns a chain's block explorer base URL, or "".
	Explorer func(chainID uint64) string
	// Explain says in words what a compose_verified or kms_trust value
	// means ("" when unknown).
	Explain func(field, value string) string
}

// Output is one step output.
type Output struct{ Name, Value string }

// doc is the decoded result; nil when there is none or it is not JSON.
func (r Report) doc() map[string]any {
	var m map[string]any
	if len(r.Result) == 0 || json.Unmarshal(r.Result, &m) != nil {
		return nil
	}
	return m
}

// str reads a string or number field of the result.
func str(doc map[string]any, key string) string {
	switch v := doc[key].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// call is one on-chain call of a result (onchain_calls or pending_calls).
type call struct {
	Function string `json:"function"`
	To       string `json:"to"`
	Data     string `json:"data"`
	TxHash   string `json:"tx_hash"`
	Skipped  string `json:"skipped"`
}

func (r Report) calls() (calls []call, pending bool) {
	var doc struct {
		OnChain []call `json:"onchain_calls"`
		Pending []call `json:"pending_calls"`
	}
	_ = json.Unmarshal(r.Result, &doc)
	if len(doc.Pending) > 0 {
		return doc.Pending, true
	}
	return doc.OnChain, false
}

// Status is the status output: the result's, else what the exit code says.
func (r Report) Status() string {
	if s := str(r.doc(), "status"); s != "" && r.ExitCode != 10 {
		return s
	}
	switch r.ExitCode {
	case 0:
		return "done"
	case 10:
		return "pending-approval"
	}
	return "failed"
}

// TxHash is the transaction that did the work: the AppAuth deployment,
// else the last call sent (an update's addComposeHash), else a deploy's
// approval after reading the document.
func (r Report) TxHash() string {
	doc := r.doc()
	if h := str(doc, "tx_hash"); h != "" {
		return h
	}
	calls, _ := r.calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].TxHash != "" {
			return calls[i].TxHash
		}
	}
	return str(doc, "approve_tx_hash")
}

// Outputs are the action's outputs, every one present (empty when the
// result has no such field).
func (r Report) Outputs() []Output {
	doc := r.doc()
	appID := str(doc, "app_id")
	if appID == "" {
		appID = str(doc, "predicted_app_id")
	}
	result := strings.TrimSpace(string(r.Result))
	if doc == nil {
		result = ""
	}
	return []Output{
		{"app-id", appID},
		{"contract-address", str(doc, "contract_address")},
		{"deployer-address", str(doc, "deployer_address")},
		{"cvm-id", str(doc, "cvm_id")},
		{"compose-hash", str(doc, "compose_hash")},
		{"tx-hash", r.TxHash()},
		{"status", r.Status()},
		{"dashboard-url", str(doc, "dashboard_url")},
		{"compose-verified", str(doc, "compose_verified")},
		{"kms-trust", str(doc, "kms_trust")},
		{"chain-id", str(doc, "chain_id")},
		{"commit-token", str(doc, "commit_token")},
		{"review-page", r.ReviewPage},
		{"exit-code", strconv.Itoa(r.ExitCode)},
		{"result", result},
	}
}

// Secrets are values the log must mask before anything prints them: the
// commit token of a prepared update.
func (r Report) Secrets() []string {
	if t := str(r.doc(), "commit_token"); t != "" {
		return []string{t}
	}
	return nil
}

// WriteOutputs appends outputs to w in the $GITHUB_OUTPUT file format:
// name=value, or a heredoc with a random delimiter for multi-line values.
func WriteOutputs(w io.Writer, outputs []Output) error {
	var b strings.Builder
	for _, o := range outputs {
		if strings.ContainsAny(o.Name, "=<\n") || o.Name == "" {
			return fmt.Errorf("ghaction: invalid output name %q", o.Name)
		}
		if !strings.ContainsAny(o.Value, "\r\n") {
			fmt.Fprintf(&b, "%s=%s\n", o.Name, o.Value)
			continue
		}
		delim, err := delimiter(o.Value)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", o.Name, delim, o.Value, delim)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// delimiter is a heredoc delimiter that does not occur in value.
func delimiter(value string) (string, error) {
	for {
		var buf [16]byte
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		d := "ghadelimiter_" + hex.EncodeToString(buf[:])
		if !strings.Contains(value, d) {
			return d, nil
		}
	}
}

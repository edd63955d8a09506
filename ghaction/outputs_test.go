package ghaction

import (
	"bufio"
	"strings"
	"testing"
)

const deployResult = `{
  "name": "my-app",
  "app_id": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  "contract_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  "deployer_address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  "compose_hash": "0xabababababababababababababababababababababababababababababababab",
  "kms_id": "kms-base",
  "chain_id": 8453,
  "kms_contract": "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C",
  "tx_hash": "0xcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
  "gas_used": 260000,
  "kms_key_verified": true,
  "kms_trust": "pinned",
  "compose_verified": "predicted",
  "cvm_id": "1234",
  "status": "running",
  "dashboard_url": "https://cloud.phala.com/dashboard/cvms/uuid-1",
  "resumed_steps": ["provision", "app"]
}`

const updateResult = `{
  "cvm_id": "1234",
  "app_id": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  "status": "prepared",
  "compose_hash": "0xefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef",
  "compose_verified": "read",
  "owner": "0x000000000000000000000000000000000000dEaD",
  "commit_token": "tok_secret_1",
  "chain_id": 8453,
  "onchain_calls": [
    {"function": "addDevice", "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "data": "0x01", "tx_hash": "0x1111111111111111111111111111111111111111111111111111111111111111"},
    {"function": "addComposeHash", "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "data": "0x3a2e1b1bef"}
  ],
  "warnings": ["a | pipe and <b>html</b> and [a](javascript:x) link"]
}`

func report(result string, code int) Report {
	return Report{
		Command: "deploy", ExitCode: code, Result: []byte(result),
		Explorer: func(id uint64) string {
			if id == 8453 {
				return "https://basescan.org"
			}
			return ""
		},
		Explain: func(field, value string) string { return "words for " + field + "=" + value },
	}
}

// parseOutputs reads the $GITHUB_OUTPUT format back.
func parseOutputs(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if name, delim, ok := strings.Cut(line, "<<"); ok {
			var val []string
			for sc.Scan() && sc.Text() != delim {
				val = append(val, sc.Text())
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, _ := strings.Cut(line, "=")
		out[name] = val
	}
	return out
}

func TestOutputs(t *testing.T) {
	var b strings.Builder
	if err := WriteOutputs(&b, report(deployResult, 0).Outputs()); err != nil {
		t.Fatal(err)
	}
	got := parseOutputs(t, b.String())
	want := map[string]string{
		"app-id": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "contract-address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
		"deployer-address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "cvm-id": "1234",
		"compose-hash": "0xabababababababababababababababababababababababababababababababab",
		"tx-hash":      "0xcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "status": "running",
		"dashboard-url": "https://cloud.phala.com/dashboard/cvms/uuid-1", "compose-verified": "predicted", "kms-trust": "pinned",
		"chain-id": "8453", "commit-token": "", "review-page": "", "exit-code": "0", "result": deployResult,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("output %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("outputs %v", got)
	}

	rep := report(updateResult, 0)
	b.Reset()
	if err := WriteOutputs(&b, rep.Outputs()); err != nil {
		t.Fatal(err)
	}
	got = parseOutputs(t, b.String())
	if got["tx-hash"] != "0x1111111111111111111111111111111111111111111111111111111111111111" || got["commit-token"] != "tok_secret_1" || got["status"] != "prepared" {
		t.Errorf("update outputs %v", got)
	}
	if s := rep.Secrets(); len(s) != 1 || s[0] != "tok_secret_1" {
		t.Errorf("secrets %v", s)
	}

	// Exit 10 without a status, and a failure without a result.
	if s := report(`{"name":"x"}`, 10).Status(); s != "pending-approval" {
		t.Errorf("pending status %q", s)
	}
	if s := report("", 7).Status(); s != "failed" {
		t.Errorf("failed status %q", s)
	}
	b.Reset()
	if err := WriteOutputs(&b, report("not json", 1).Outputs()); err != nil {
		t.Fatal(err)
	}
	if got := parseOutputs(t, b.String()); got["result"] != "" || got["exit-code"] != "1" {
		t.Errorf("outputs of a failure %v", got)
	}
}

// A value holding the would-be delimiter of another cannot end its heredoc.
func TestWriteOutputsDelimiter(t *testing.T) {
	var b strings.Builder
	evil := "line1\nghadelimiter_x\nname=injected"
	if err := WriteOutputs(&b, []Output{{"a", evil}, {"b", "plain"}}); err != nil {
		t.Fatal(err)
	}
	got := parseOutputs(t, b.String())
	if got["a"] != evil || got["b"] != "plain" || got["name"] != "" {
		t.Fatalf("outputs %q from\n%s", got, b.String())
	}
	if err := WriteOutputs(&b, []Output{{"a=b", "x"}}); err == nil {
		t.Fatal("an output name with = accepted")
	}
}

func TestSummary(t *testing.T) {
	s := report(deployResult, 0).Summary()
	for _, want := range []string{
		"### ✅ cvmdeploy deploy: running\n",
		"| App id | [`0x5FbDB2315678afecb367f032d93F642f64180aa3`](https://basescan.org/address/0x5FbDB2315678afecb367f032d93F642f64180aa3) |",
		"| Transaction | [`0xcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd`](https://basescan.org/tx/0xcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd) |",
		"| Compose hash verified | **predicted** — words for compose\\_verified=predicted |",
		"| KMS trusted | **pinned** — words for kms\\_trust=pinned |",
		"| CVM | `1234` · [dashboard](https://cloud.phala.com/dashboard/cvms/uuid-1) |",
		"| Env key | verified against the KMS root key on-chain |",
		"| Resumed | provision, app |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "AppAuth contract") {
		t.Error("the contract is listed although it is the app id")
	}

	u := report(updateResult, 0)
	u.Command = "update"
	s = u.Summary()
	for _, want := range []string{
		"#### On-chain calls for the owner",
		"The AppAuth's owner [`0x000000000000000000000000000000000000dEaD`](https://basescan.org/address/0x000000000000000000000000000000000000dEaD) must execute the calls below that were not sent; then finish with `commit-update`",
		"1. `addDevice` on [`0x5FbDB2315678afecb367f032d93F642f64180aa3`](https://basescan.org/address/0x5FbDB2315678afecb367f032d93F642f64180aa3) — sent in [`0x1111",
		"2. `addComposeHash` on ",
		"   0x3a2e1b1bef\n",
		"| Commit token | in the `commit-token` output (masked) |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("update summary lacks %q:\n%s", want, s)
		}
	}
	// Strings from the cloud carry no Markdown or HTML into the summary.
	if strings.Contains(s, "<b>") || strings.Contains(s, "[a](javascript") || strings.Contains(s, "a | pipe") || strings.Contains(s, "tok_secret_1") {
		t.Errorf("summary is not escaped, or shows the token:\n%s", s)
	}

	f := report("", 7)
	f.ExitMeaning = "a check failed"
	f.Error = "the KMS <contract> | is not pinned"
	s = f.Summary()
	if !strings.Contains(s, "### ❌ cvmdeploy deploy failed (exit 7: a check failed)") || !strings.Contains(s, "> the KMS &lt;contract&gt; \\| is not pinned") {
		t.Errorf("failure summary:\n%s", s)
	}
	p := report(`{"name":"x","owner":"0x000000000000000000000000000000000000dEaD","pending_calls":[{"function":"addComposeHash","to":"0x01","data":"0x02"}]}`, 10)
	if s = p.Summary(); !strings.Contains(s, "### ⏳ cvmdeploy deploy: waiting for the owner's approval") || !strings.Contains(s, "#### On-chain calls for the owner") {
		t.Errorf("pending summary:\n%s", s)
	}
}

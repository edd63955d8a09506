package commands_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
)

// ci github-outputs turns a result a workflow's own step printed into step
// outputs and a summary; the commit token is masked first.
func TestCIGitHubOutputs(t *testing.T) {
	dir := t.TempDir()
	result := filepath.Join(dir, "result.json")
	mustWrite(t, result, `{"cvm_id": "7", "app_id": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "status": "prepared", "chain_id": 8453,
  "compose_hash": "0xab", "compose_verified": "read", "commit_token": "tok-abc", "owner": "0x000000000000000000000000000000000000dEaD",
  "onchain_calls": [{"function": "addComposeHash", "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "data": "0x3a2e"}]}`)
	outputs, summary := filepath.Join(dir, "out"), filepath.Join(dir, "summary.md")
	t.Setenv("GITHUB_OUTPUT", outputs)
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	r := runCLI(t, "", "ci", "github-outputs", "--result", result, "--command", "update")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "::add-mask::tok-abc\n") {
		t.Fatalf("the token is not masked first:\n%s", r.stdout)
	}
	out, _ := os.ReadFile(outputs)
	for _, want := range []string{"cvm-id=7\n", "commit-token=tok-abc\n", "compose-verified=read\n", "status=prepared\n", "exit-code=0\n", "result<<ghadelimiter_"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("outputs lack %q:\n%s", want, out)
		}
	}
	sum, _ := os.ReadFile(summary)
	for _, want := range []string{"### ✅ cvmdeploy update: prepared", "**read** — the hash is your current, on-chain-allowed document with exactly your changes",
		"1. `addComposeHash` on [`0x5FbDB2315678afecb367f032d93F642f64180aa3`](https://basescan.org/address/0x5FbDB2315678afecb367f032d93F642f64180aa3)"} {
		if !strings.Contains(string(sum), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}

	t.Setenv("GITHUB_OUTPUT", "")
	if r := runCLI(t, "", "ci", "github-outputs", "--result", result); r.code != commands.ExitUsage || !strings.Contains(r.stderr, "GITHUB_OUTPUT is not set") {
		t.Fatalf("outside Actions: exit %d\n%s", r.code, r.stderr)
	}
	// The action's command refuses bad inputs before running anything.
	t.Setenv("GITHUB_OUTPUT", outputs)
	t.Setenv("INPUT_COMMAND", "deploy")
	t.Setenv("INPUT_COMPOSE", "c.yml")
	t.Setenv("INPUT_ENV", "TOKEN=s3cret")
	if r := runCLI(t, "", "ci", "github-action"); r.code != commands.ExitUsage || strings.Contains(r.stderr, "s3cret") {
		t.Fatalf("github-action with a value in env: exit %d\n%s", r.code, r.stderr)
	}
}

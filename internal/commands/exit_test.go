package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// TestExitCodes pins the exit code of each library error on its own.
func TestExitCodes(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code int
	}{
		{"revert", &deployer.RevertError{}, ExitReverted},
		{"wrapped revert", fmt.Errorf("addComposeHash: %w", &deployer.RevertError{}), ExitReverted},
		{"rpc unreachable", &deployer.RPCError{URL: "http://x", Method: "eth_chainId", Err: errors.New("refused")}, ExitNetwork},
		{"receipt timeout", &deployer.TimeoutError{}, ExitNetwork},
		{"chain mismatch", &deployer.ChainMismatchError{Want: 1, Got: 2}, ExitVerify},
		{"no code", &deployer.NoCodeError{}, ExitVerify},
		{"not owner", &deployer.NotOwnerError{}, ExitVerify},
		{"no funds", &deployer.InsufficientFundsError{}, ExitVerify},
		{"estimate reverts", &deployer.EstimateRevertError{}, ExitVerify},
		{"fee too low", &deployer.FeeTooLowError{}, ExitVerify},
		{"invalid config", fmt.Errorf("%w: --name", cvm.ErrInvalidConfig), ExitUsage},
		{"usage", &UsageError{Err: errors.New("bad flag")}, ExitUsage},
		{"required flag", errors.New(`Required flag "compose" not set`), ExitUsage},
		{"env error", &kms.EnvError{}, ExitUsage},
		{"compose rule", &kms.ComposeRuleError{}, ExitCompose},
		{"compose rule (flow)", fmt.Errorf("%w: revoked", cvm.ErrComposeRule), ExitCompose},
		{"untrusted KMS", fmt.Errorf("%w: not pinned", cvm.ErrKMSUntrusted), ExitVerify},
		{"key verification", fmt.Errorf("%w: mismatch", cvm.ErrKeyVerification), ExitVerify},
		{"replica device", fmt.Errorf("%w: another node's", cvm.ErrDeviceMismatch), ExitVerify},
		{"boot", fmt.Errorf("%w: refused", cvm.ErrBootFailed), ExitBoot},
		{"owner approval pending", &cvm.ApprovalPendingError{}, ExitPending},
		{"timelock still waiting", &cvm.ApprovalPendingError{Timelock: &cvm.TimelockPending{State: "waiting"}}, ExitPending},
		{"stale timelock operation", fmt.Errorf("%w: executed, still missing", cvm.ErrOwnerState), ExitVerify},
		{"missing API key", phala.ErrMissingAPIKey, ExitAuth},
		{"API 401", &phala.APIError{Status: 401}, ExitAuth},
		{"API 409", &phala.APIError{Status: 409}, ExitAPI},
		{"API unreachable", &phala.NetworkError{Err: errors.New("refused")}, ExitNetwork},
		{"deadline", context.DeadlineExceeded, ExitNetwork},
		{"safe check", fmt.Errorf("%w: hashes to 0x…", cvm.ErrSafeCheck), ExitVerify},
		{"safe service refused", fmt.Errorf("propose: %w", &safe.ServiceError{Status: 422}), ExitAPI},
		{"safe service unreachable", fmt.Errorf("propose: %w", safe.ErrServiceUnreachable), ExitNetwork},
		{"safe proposal pending", &cvm.ApprovalPendingError{Safe: &cvm.SafePending{}}, ExitPending},
		{"safe confirmations missing", &cvm.SafeThresholdError{Have: 1, Need: 2}, ExitPending},
		{"coded", withCode(ExitVerify, errors.New("x")), ExitVerify},
		{"other", errors.New("other"), ExitFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(context.Background(), tc.err); got != tc.code {
				t.Fatalf("exitCode(%v) = %d, want %d", tc.err, got, tc.code)
			}
		})
	}
}

// TestExitPrecedence pins which code wins when one error wraps several
// causes: the order of exitTable is part of the contract.
func TestExitPrecedence(t *testing.T) {
	revert := &deployer.RevertError{}
	cases := []struct {
		name string
		err  error
		ctx  func() context.Context
		code int
	}{
		{"a command's own code beats everything", withCode(ExitVerify, fmt.Errorf("%w", cvm.ErrComposeRule)), nil, ExitVerify},
		{"usage beats compose rule", errors.Join(&UsageError{Err: errors.New("x")}, cvm.ErrComposeRule), nil, ExitUsage},
		{"compose rule beats a reverted revocation", errors.Join(cvm.ErrComposeRule, revert), nil, ExitCompose},
		{"compose rule beats boot failure", errors.Join(cvm.ErrBootFailed, kms.ErrComposeRule), nil, ExitCompose},
		{"boot beats API error", errors.Join(cvm.ErrBootFailed, &phala.APIError{Status: 500}), nil, ExitBoot},
		{"revert beats verify", errors.Join(cvm.ErrKeyVerification, revert), nil, ExitReverted},
		{"untrusted KMS beats API error", errors.Join(cvm.ErrKMSUntrusted, &phala.APIError{Status: 422}), nil, ExitVerify},
		{"auth beats network", errors.Join(&phala.APIError{Status: 403}, &phala.NetworkError{}), nil, ExitAuth},
		{"interrupted beats network", &phala.NetworkError{Err: context.Canceled}, canceled, ExitInterrupted},
		{"cancelled context alone", context.Canceled, nil, ExitInterrupted},
		{"network beats an unreadable answer", errors.Join(&phala.DecodeError{}, &phala.NetworkError{}), nil, ExitNetwork},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			if got := exitCode(ctx, tc.err); got != tc.code {
				t.Fatalf("exitCode = %d, want %d", got, tc.code)
			}
		})
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestExitCodesDocumented checks that README's exit-code table lists every
// code the table can produce, and nothing else.
func TestExitCodesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`(?m)^## Exit codes\n`).FindIndex(readme)
	if start == nil {
		t.Fatal("README has no '## Exit codes' section")
	}
	section := readme[start[1]:]
	if end := regexp.MustCompile(`(?m)^## `).FindIndex(section); end != nil {
		section = section[:end[0]]
	}
	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllSubmatch(section, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		documented[n] = true
	}
	codes := map[int]bool{ExitOK: true, ExitFailure: true}
	for _, r := range exitTable {
		if r.code != 0 {
			codes[r.code] = true
		}
	}
	codes[99] = true // the crash-test hook's exit, documented as such
	for c := range codes {
		if !documented[c] {
			t.Errorf("exit code %d is produced but not in README's table", c)
		}
		if exitMeanings[c] == "" {
			t.Errorf("exit code %d has no meaning in exitMeanings", c)
		}
	}
	for c := range documented {
		if !codes[c] {
			t.Errorf("README documents exit code %d, which nothing produces", c)
		}
	}
}

package commands

import (
	"context"
	"errors"
	"strings"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// Exit codes. They are part of the command-line contract (see README.md);
// never renumber them.
const (
	ExitOK          = 0   // success
	ExitFailure     = 1   // any failure not listed below
	ExitUsage       = 2   // bad flags, arguments or input; nothing was sent
	ExitReverted    = 3   // a transaction was mined but reverted
	ExitAuth        = 4   // the Phala Cloud API rejected the API key (401/403)
	ExitNetwork     = 5   // the RPC node or the API could not be reached, or timed out
	ExitAPI         = 6   // the Phala Cloud API (or a Safe Transaction Service) refused a request (other 4xx, 5xx)
	ExitVerify      = 7   // a check failed: chain id, KMS key signature, KMS contract, on-chain state
	ExitBoot        = 8   // the CVM failed to boot
	ExitCompose     = 9   // the cloud's app-compose breaks the rule: refused, or approved then revoked
	ExitPending     = 10  // waiting for the app owner's on-chain approval (a Safe's confirmations); re-run the same command once it is done
	ExitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

// exitMeanings say each code in words, as README's table does (the
// GitHub Action's summary quotes them).
var exitMeanings = map[int]string{
	ExitOK:          "success",
	ExitFailure:     "a failure",
	ExitUsage:       "bad flags, arguments, files or env; nothing was sent",
	ExitReverted:    "a transaction was mined but reverted",
	ExitAuth:        "the Phala Cloud API rejected the API key",
	ExitNetwork:     "the RPC node or the API could not be reached, or a wait timed out",
	ExitAPI:         "the Phala Cloud API refused a request",
	ExitVerify:      "a check failed (chain, contract, funds, owner, KMS key or KMS contract)",
	ExitBoot:        "the CVM was committed but failed to boot",
	ExitCompose:     "the cloud's app-compose breaks the compose rule",
	ExitPending:     "waiting for the app owner's on-chain approval",
	99:              "stopped by the test hook CVMDEPLOY_TEST_STOP_AFTER",
	ExitInterrupted: "interrupted",
}

// UsageError is a problem with what the user typed or supplied: flags,
// arguments, files. Nothing was sent anywhere when it is returned.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// codedError carries an explicit exit code chosen by a command.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// withCode attaches an exit code to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// exitRule maps the errors it matches onto one exit code.
type exitRule struct {
	code  int
	match func(ctx context.Context, err error) bool
}

func is(target error) func(context.Context, error) bool {
	return func(_ context.Context, err error) bool { return errors.Is(err, target) }
}

func as[T error]() func(context.Context, error) bool {
	return func(_ context.Context, err error) bool {
		var t T
		return errors.As(err, &t)
	}
}

// exitTable is every mapping from an error to an exit code, in precedence
// order: the first rule that matches decides. An error often wraps several
// causes (a revocation that reverted after a compose-rule violation, an API
// error inside a boot failure), so the order is part of the contract and
// TestExitPrecedence pins it.
var exitTable = []exitRule{
	// A command chose the code itself.
	{0, func(_ context.Context, err error) bool { var ce *codedError; return errors.As(err, &ce) }},
	// What the user supplied; nothing was sent.
	{ExitUsage, as[*UsageError]()},
	{ExitUsage, func(_ context.Context, err error) bool { return strings.HasPrefix(err.Error(), "Required flag") }}, // urfave's unexported type
	{ExitUsage, is(cvm.ErrInvalidConfig)},
	{ExitUsage, is(phala.ErrInvalidInput)},
	{ExitUsage, as[*kms.EnvError]()}, // .env files and --env flags are always the user's input
	// The cloud's app-compose breaks the rule: the most important thing to
	// say, whatever else went wrong while refusing or revoking it.
	{ExitCompose, is(kms.ErrComposeRule)},
	{ExitCompose, is(cvm.ErrComposeRule)},
	// Not a failure: the owner (a Safe, another key) must approve first.
	{ExitPending, is(cvm.ErrApprovalPending)},
	// The CVM was committed but did not boot.
	{ExitBoot, is(cvm.ErrBootFailed)},
	{ExitBoot, as[*phala.BootError]()},
	// A transaction was mined but reverted.
	{ExitReverted, as[*deployer.RevertError]()},
	// A check against the chain or a key failed.
	{ExitVerify, is(cvm.ErrKMSUntrusted)},
	{ExitVerify, is(cvm.ErrKeyVerification)},
	{ExitVerify, is(cvm.ErrKMSRootMismatch)},
	{ExitVerify, is(cvm.ErrDeviceMismatch)},
	{ExitVerify, is(cvm.ErrChainMismatch)},
	{ExitVerify, is(cvm.ErrOwnerState)}, // an executed approval the chain contradicts
	{ExitVerify, is(deployer.ErrPreflight)},
	{ExitVerify, func(_ context.Context, err error) bool { return kms.IsVerifyFailure(err) }},
	{ExitVerify, as[*kms.ComposeHashMismatchError]()},
	{ExitVerify, is(cvm.ErrSafeCheck)},
	// The API refused us.
	{ExitAuth, is(phala.ErrMissingAPIKey)},
	{ExitAuth, func(_ context.Context, err error) bool {
		var ae *phala.APIError
		return errors.As(err, &ae) && ae.IsAuth()
	}},
	{ExitAPI, as[*phala.APIError]()},
	{ExitAPI, as[*safe.ServiceError]()}, // the Safe Transaction Service refused
	// Interrupted: checked before the network rules, because a cancelled
	// request also looks like a network failure.
	{ExitInterrupted, func(ctx context.Context, err error) bool {
		return ctx.Err() != nil || errors.Is(err, context.Canceled)
	}},
	// Unreachable or too slow.
	{ExitNetwork, is(deployer.ErrRPCUnreachable)},
	{ExitNetwork, as[*deployer.TimeoutError]()},
	{ExitNetwork, as[*phala.NetworkError]()},
	{ExitNetwork, is(safe.ErrServiceUnreachable)},
	{ExitNetwork, is(context.DeadlineExceeded)},
	// An answer we could not read is the API's failure.
	{ExitAPI, as[*phala.DecodeError]()},
}

// exitCode is the process exit code for err (non-nil).
func exitCode(ctx context.Context, err error) int {
	for _, r := range exitTable {
		if !r.match(ctx, err) {
			continue
		}
		if r.code == 0 {
			var ce *codedError
			errors.As(err, &ce)
			return ce.code
		}
		return r.code
	}
	return ExitFailure
}

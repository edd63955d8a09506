package commands

import (
	"context"
	"errors"
	"strings"
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
	ExitAPI         = 6   // the Phala Cloud API refused a request (other 4xx, 5xx)
	ExitVerify      = 7   // a check failed: chain id, KMS key signature, on-chain state
	ExitBoot        = 8   // the CVM failed to boot
	ExitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

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

// exitClassifiers map library error types onto exit codes; each command file
// that introduces a library adds its classifier in init. The first non-zero
// answer wins.
var exitClassifiers []func(error) int

func exitCode(ctx context.Context, err error) int {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	// urfave reports a missing Required flag with an unexported type.
	if strings.HasPrefix(err.Error(), "Required flag") {
		return ExitUsage
	}
	for _, classify := range exitClassifiers {
		if code := classify(err); code != 0 {
			return code
		}
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitNetwork
	}
	return ExitFailure
}

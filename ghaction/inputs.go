// Package ghaction turns the GitHub Action's inputs into a cvmdeploy
// command line and a cvmdeploy result into step outputs and a job summary.
package ghaction

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Commands the action runs.
var Commands = []string{"deploy", "update", "commit-update", "status"}

// CommitTokenEnv names the variable commit-update takes the commit token
// from: an input would be printed in the job's log.
const CommitTokenEnv = "CVMDEPLOY_COMMIT_TOKEN"

// Inputs are the action's inputs (action.yml), as the composite's run step
// passes them in INPUT_* variables.
type Inputs struct {
	Command     string
	Compose     string
	EnvFiles    []string
	EnvNames    []string
	Name        string
	CVM         string
	KMS         string
	KMSContract string
	Chain       string
	Wait        bool
	DryRun      bool
	PrepareOnly bool
	Yes         bool
	// ComposeHash and TransactionHash finish a prepared update
	// (commit-update); the token comes from CommitTokenEnv.
	ComposeHash     string
	TransactionHash string
	ReviewPage      string
	ExtraArgs       []string
	// AllowPending makes "waiting for the owner's approval" (exit 10) a
	// successful step.
	AllowPending bool
}

// InputError is an input the action refuses before anything runs.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// FromEnv reads the inputs from getenv (INPUT_COMMAND, INPUT_ENV_FILE, …).
func FromEnv(getenv func(string) string) (Inputs, error) {
	in := Inputs{
		Command:         strings.TrimSpace(getenv("INPUT_COMMAND")),
		Compose:         strings.TrimSpace(getenv("INPUT_COMPOSE")),
		EnvFiles:        lines(getenv("INPUT_ENV_FILE")),
		Name:            strings.TrimSpace(getenv("INPUT_NAME")),
		CVM:             strings.TrimSpace(getenv("INPUT_CVM")),
		KMS:             strings.TrimSpace(getenv("INPUT_KMS")),
		KMSContract:     strings.TrimSpace(getenv("INPUT_KMS_CONTRACT")),
		Chain:           strings.TrimSpace(getenv("INPUT_CHAIN")),
		ComposeHash:     strings.TrimSpace(getenv("INPUT_COMPOSE_HASH")),
		TransactionHash: strings.TrimSpace(getenv("INPUT_TRANSACTION_HASH")),
		ReviewPage:      strings.TrimSpace(getenv("INPUT_REVIEW_PAGE")),
	}
	if in.Command == "" {
		in.Command = "deploy"
	}
	var err error
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"wait", &in.Wait}, {"dry-run", &in.DryRun}, {"prepare-only", &in.PrepareOnly}, {"yes", &in.Yes}, {"allow-pending", &in.AllowPending}} {
		if *b.dst, err = boolInput(b.name, getenv("INPUT_"+envName(b.name))); err != nil {
			return in, err
		}
	}
	if in.EnvNames, err = envNames(getenv("INPUT_ENV")); err != nil {
		return in, err
	}
	if in.ExtraArgs, err = SplitArgs(getenv("INPUT_EXTRA_ARGS")); err != nil {
		return in, inputErrorf("extra-args: %w", err)
	}
	return in, nil
}

// envName is the variable an input arrives in: INPUT_ and the name in
// upper case with dashes as underscores.
func envName(input string) string {
	return strings.ToUpper(strings.ReplaceAll(input, "-", "_"))
}

// boolInput accepts what the Actions toolkit's getBooleanInput accepts
// (YAML 1.2 core schema booleans); empty is false.
func boolInput(name, v string) (bool, error) {
	switch strings.TrimSpace(v) {
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE", "":
		return false, nil
	}
	return false, inputErrorf("%s: want true or false, got %q", name, v)
}

// lines splits a multi-line input into its non-empty, trimmed lines.
func lines(v string) []string {
	var out []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envNames reads the env input: variable names separated by spaces,
// commas or new lines. A NAME=VALUE is refused without repeating it: the
// value would already be in the log (inputs are printed) and in argv.
func envNames(v string) ([]string, error) {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' })
	var out []string
	for i, f := range fields {
		if name, _, ok := strings.Cut(f, "="); ok {
			return nil, inputErrorf("env: entry %d (%s=…) has a value: list variable names only, and set their values in the step's env from secrets (inputs are printed in the log)", i+1, safeName(name))
		}
		if !envNamePattern.MatchString(f) {
			return nil, inputErrorf("env: entry %d is not a variable name (letters, digits and _, not starting with a digit)", i+1)
		}
		out = append(out, f)
	}
	return out, nil
}

// safeName shows a would-be variable name only when it is one.
func safeName(s string) string {
	if envNamePattern.MatchString(s) {
		return s
	}
	return "?"
}

// SplitArgs splits extra arguments at white space; '…' and "…" keep
// spaces (no escapes, no expansion: the value is never given to a shell).
func SplitArgs(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// Args is the cvmdeploy command line (without the program name) for the
// inputs; commitToken is CommitTokenEnv's value, used by commit-update.
// It always asks for --json: the outputs are read from it.
func (in Inputs) Args(commitToken string) ([]string, error) {
	if err := in.check(commitToken); err != nil {
		return nil, err
	}
	args := []string{in.Command}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	target := in.CVM
	if target == "" {
		target = in.Name // a CVM is found by its name too
	}
	switch in.Command {
	case "deploy":
		add("--compose", in.Compose)
		add("--name", in.Name)
		add("--kms", in.KMS)
	case "update":
		add("--cvm", target)
		add("--compose", in.Compose)
	case "commit-update":
		add("--cvm", target)
		add("--token", commitToken)
		add("--compose-hash", in.ComposeHash)
		add("--transaction-hash", in.TransactionHash)
	case "status":
		add("--cvm", target)
	}
	if in.Command != "commit-update" {
		add("--kms-contract", in.KMSContract)
		add("--chain", in.Chain)
	}
	if in.Command == "deploy" || in.Command == "update" {
		for _, f := range in.EnvFiles {
			add("--env-file", f)
		}
		for _, n := range in.EnvNames {
			add("--env", n)
		}
		if in.Yes {
			args = append(args, "--yes")
		}
		add("--review", in.ReviewPage)
	}
	if in.Wait && in.Command != "commit-update" && !in.DryRun && !in.PrepareOnly {
		args = append(args, "--wait")
	}
	if in.DryRun {
		args = append(args, "--dry-run")
	}
	if in.PrepareOnly {
		args = append(args, "--prepare-only")
	}
	args = append(args, in.ExtraArgs...)
	return append(args, "--json"), nil
}

// check refuses inputs that do not fit the command, before anything runs.
func (in Inputs) check(commitToken string) error {
	known := false
	for _, c := range Commands {
		known = known || c == in.Command
	}
	if !known {
		return inputErrorf("command: want one of %s, got %q", strings.Join(Commands, ", "), in.Command)
	}
	only := func(cond bool, input, commands string) error {
		if cond {
			return inputErrorf("%s goes with %s, not %s", input, commands, in.Command)
		}
		return nil
	}
	var errs []error
	errs = append(errs,
		only(in.DryRun && in.Command != "deploy", "dry-run", "deploy"),
		only(in.PrepareOnly && in.Command != "update", "prepare-only", "update"),
		only(in.KMS != "" && in.Command != "deploy", "kms", "deploy"),
		only(in.Compose != "" && in.Command != "deploy" && in.Command != "update", "compose", "deploy and update"),
		only((len(in.EnvFiles) > 0 || len(in.EnvNames) > 0) && in.Command != "deploy" && in.Command != "update", "env and env-file", "deploy and update"),
		only(in.ReviewPage != "" && in.Command != "deploy" && in.Command != "update", "review-page", "deploy (dry-run) and update (prepare-only)"),
		only((in.ComposeHash != "" || in.TransactionHash != "") && in.Command != "commit-update", "compose-hash and transaction-hash", "commit-update"),
	)
	switch in.Command {
	case "deploy":
		if in.Compose == "" {
			errs = append(errs, inputErrorf("compose is required to deploy"))
		}
	case "update", "status":
		if in.CVM == "" && in.Name == "" {
			errs = append(errs, inputErrorf("cvm (or name) is required for %s", in.Command))
		}
	case "commit-update":
		if in.CVM == "" && in.Name == "" {
			errs = append(errs, inputErrorf("cvm (or name) is required for commit-update"))
		}
		if commitToken == "" {
			errs = append(errs, inputErrorf("commit-update takes the token from the %s environment variable (a secret), which is empty", CommitTokenEnv))
		}
		if in.ComposeHash == "" || in.TransactionHash == "" {
			errs = append(errs, inputErrorf("commit-update needs compose-hash and transaction-hash"))
		}
	}
	for i, a := range in.ExtraArgs {
		// --env KEY=VALUE in extra-args would print the value in the log.
		if (a == "--env" || a == "-env") && i+1 < len(in.ExtraArgs) && strings.Contains(in.ExtraArgs[i+1], "=") ||
			strings.HasPrefix(a, "--env=") && strings.Contains(strings.TrimPrefix(a, "--env="), "=") {
			errs = append(errs, inputErrorf("extra-args: --env with a value is refused (inputs are printed in the log): use the env input with variable names"))
		}
		if a == "--token" || strings.HasPrefix(a, "--token=") {
			errs = append(errs, inputErrorf("extra-args: --token is refused (inputs are printed in the log): set %s from a secret", CommitTokenEnv))
		}
	}
	return errors.Join(errs...)
}

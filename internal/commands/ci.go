package commands

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/ghaction"
)

func init() {
	registerCommands(func() []*cli.Command { return []*cli.Command{ciCommand()} })
}

func ciCommand() *cli.Command {
	return &cli.Command{
		Name:  "ci",
		Usage: "helpers for CI systems: GitHub Actions step outputs and job summaries",
		Subcommands: []*cli.Command{{
			Name:  "github-action",
			Usage: "run the command that the GitHub Action's inputs (INPUT_* variables) describe, then write its outputs and job summary (action.yml runs this)",
			Description: `Reads INPUT_COMMAND, INPUT_COMPOSE, INPUT_ENV_FILE, INPUT_ENV (variable names),
INPUT_NAME, INPUT_CVM, INPUT_KMS, INPUT_KMS_CONTRACT, INPUT_CHAIN, INPUT_WAIT,
INPUT_DRY_RUN, INPUT_PREPARE_ONLY, INPUT_YES, INPUT_COMPOSE_HASH,
INPUT_TRANSACTION_HASH, INPUT_REVIEW_PAGE, INPUT_EXTRA_ARGS and INPUT_ALLOW_PENDING;
keys, the API key and the commit token (` + ghaction.CommitTokenEnv + `) come from the
environment only. Exits with the command's exit code (10 is success with
INPUT_ALLOW_PENDING=true).`,
			Action: runGitHubAction,
		}, {
			Name:      "github-outputs",
			Usage:     "write a cvmdeploy --json result as GitHub step outputs ($GITHUB_OUTPUT) and a job summary ($GITHUB_STEP_SUMMARY)",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "result", Usage: "the file holding the --json result (- for standard input; required)"},
				&cli.StringFlag{Name: "command", Value: "deploy", Usage: "the cvmdeploy command that printed it"},
				&cli.IntFlag{Name: "exit-code", Usage: "its exit code"},
				&cli.StringFlag{Name: "review", Usage: "the review page it wrote, if any"},
			},
			Action: runGitHubOutputs,
		}},
	}
}

func runGitHubAction(c *cli.Context) error {
	in, err := ghaction.FromEnv(os.Getenv)
	if err != nil {
		return &UsageError{Err: err}
	}
	token := os.Getenv(ghaction.CommitTokenEnv)
	args, err := in.Args(token)
	if err != nil {
		return &UsageError{Err: err}
	}
	if _, err := githubFile("GITHUB_OUTPUT", true); err != nil {
		return err
	}
	out := c.App.Writer
	if token != "" {
		// Before anything could print it.
		fmt.Fprintf(out, "::add-mask::%s\n", token)
	}
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if token != "" && a == token {
			shown[i] = "***"
		}
	}
	newProgress(c).Printf("▶ cvmdeploy %s", strings.Join(shown, " "))
	review := ""
	if in.ReviewPage != "" {
		if review, err = filepath.Abs(in.ReviewPage); err != nil {
			return err
		}
	}
	var result bytes.Buffer
	errLine := &lastErrorLine{w: c.App.ErrWriter}
	code := Run(c.Context, append([]string{"cvmdeploy"}, args...), c.App.Reader, &result, errLine)
	rep := githubReport(in.Command, code, result.Bytes(), review)
	rep.Error = errLine.last
	if err := emitGitHub(out, rep); err != nil {
		return err
	}
	switch {
	case code == ExitOK:
		return nil
	case code == ExitPending && in.AllowPending:
		fmt.Fprintln(out, "::notice title=cvmdeploy::"+workflowEscape("waiting for the owner's on-chain approval: execute the calls, then re-run this job"))
		return nil
	}
	msg := fmt.Sprintf("cvmdeploy %s exited with code %d (%s)", in.Command, code, exitMeanings[code])
	if errLine.last != "" {
		msg += ": " + errLine.last
	}
	fmt.Fprintln(out, "::error title=cvmdeploy "+workflowEscape(in.Command)+"::"+workflowEscape(msg))
	return withCode(code, errors.New(msg))
}

func runGitHubOutputs(c *cli.Context) error {
	path := c.String("result")
	if path == "" {
		return &UsageError{Err: errors.New("--result is required: the file holding cvmdeploy's --json result")}
	}
	data, err := readInput(c, path)
	if err != nil {
		return &UsageError{Err: err}
	}
	if _, err := githubFile("GITHUB_OUTPUT", true); err != nil {
		return err
	}
	review := c.String("review")
	if review != "" {
		if review, err = filepath.Abs(review); err != nil {
			return err
		}
	}
	return emitGitHub(c.App.Writer, githubReport(c.String("command"), c.Int("exit-code"), data, review))
}

// githubReport describes one run for the Action's outputs and summary.
func githubReport(command string, code int, result []byte, review string) ghaction.Report {
	if review != "" {
		if _, err := os.Stat(review); err != nil {
			review = "" // not written (an older cvmdeploy, or the run failed first)
		}
	}
	return ghaction.Report{
		Command:     command,
		ExitCode:    code,
		ExitMeaning: exitMeanings[code],
		Result:      result,
		ReviewPage:  review,
		Explorer: func(id uint64) string {
			ch, _ := deployer.ChainByID(id)
			return ch.Explorer
		},
		Explain: func(field, value string) string {
			switch field {
			case "compose_verified":
				return composeWords(value)
			case "kms_trust":
				return kmsTrustWords(value)
			}
			return ""
		},
	}
}

// emitGitHub masks the report's secrets, prints the result in a log group,
// and writes the step outputs and the job summary.
func emitGitHub(out io.Writer, rep ghaction.Report) error {
	for _, s := range rep.Secrets() {
		fmt.Fprintf(out, "::add-mask::%s\n", s)
	}
	if len(rep.Result) > 0 {
		fmt.Fprintf(out, "::group::cvmdeploy %s result\n%s\n::endgroup::\n", rep.Command, bytes.TrimSpace(rep.Result))
	}
	path, _ := githubFile("GITHUB_OUTPUT", true)
	if err := appendFile(path, func(w io.Writer) error { return ghaction.WriteOutputs(w, rep.Outputs()) }); err != nil {
		return err
	}
	if path, _ := githubFile("GITHUB_STEP_SUMMARY", false); path != "" {
		return appendFile(path, func(w io.Writer) error { _, err := io.WriteString(w, rep.Summary()); return err })
	}
	return nil
}

// githubFile is the file a GitHub Actions variable names.
func githubFile(name string, required bool) (string, error) {
	p := os.Getenv(name)
	if p == "" && required {
		return "", &UsageError{Err: fmt.Errorf("%s is not set: this runs inside a GitHub Actions step", name)}
	}
	return p, nil
}

func appendFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// workflowEscape escapes a workflow command's message.
func workflowEscape(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// lastErrorLine passes stderr through and keeps the last "error: " line
// (the failed command's reason; errors never carry secrets).
type lastErrorLine struct {
	w    io.Writer
	buf  []byte
	last string
}

func (l *lastErrorLine) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if line := string(l.buf[:i]); strings.HasPrefix(line, "error: ") {
			l.last = strings.TrimPrefix(line, "error: ")
		}
		l.buf = l.buf[i+1:]
	}
	return l.w.Write(p)
}

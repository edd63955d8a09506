// Package commands maps cvmdeploy's command line onto the library packages.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// Run builds the app, runs it with args (args[0] is the program name) and
// returns the process exit code. stdout receives results only; progress,
// warnings and errors go to stderr.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := NewApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	code := exitCode(ctx, err)
	fmt.Fprintf(stderr, "error: %s\n", err)
	return code
}

// NewApp builds the command tree. Flags are created per app because urfave
// flag values are mutable and tests build many apps in one process.
func NewApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "cvmdeploy",
		Usage:                "deploy apps on Phala Cloud with an on-chain KMS (Ethereum, Base or any EVM chain)",
		Version:              currentBuild().String(),
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: false,
		HideHelpCommand:      true,
		// Errors are printed once, by Run, with their exit code.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError(err)
		},
		Commands: commandTree(),
	}
	// Help goes to stderr would break `cvmdeploy --help | less`; keep urfave's
	// default (app.Writer) for help, which is what users expect.
	return app
}

// commandTree lists every top-level command. Each group lives in its own
// file; files that register a command of the same name (e.g. "kms deploy"
// and "kms verify-pubkey") add their subcommands to one command.
func commandTree() []*cli.Command {
	var cmds []*cli.Command
	byName := map[string]*cli.Command{}
	for _, group := range commandGroups {
		for _, cmd := range group() {
			if prev, ok := byName[cmd.Name]; ok {
				prev.Subcommands = append(prev.Subcommands, cmd.Subcommands...)
				continue
			}
			byName[cmd.Name] = cmd
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// commandGroups is filled by the files of this package in their init
// functions, so that each command group stays in its own file.
var commandGroups []func() []*cli.Command

func registerCommands(group func() []*cli.Command) {
	commandGroups = append(commandGroups, group)
}

// usageError marks err as a problem with the command line itself.
func usageError(err error) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	return &UsageError{Err: err}
}

package commands

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// buildVersion and buildCommit are stamped by release builds:
//
//	go build -ldflags "-X github.com/cvmdeploy/cvmdeploy/internal/commands.buildVersion=v1.2.3 \
//	  -X github.com/cvmdeploy/cvmdeploy/internal/commands.buildCommit=$(git rev-parse HEAD)"
//
// Unstamped builds fall back to the module build info (`go install
// …@v1.2.3` records the version; a build in a git checkout the revision).
var (
	buildVersion string
	buildCommit  string
)

func init() {
	registerCommands(func() []*cli.Command { return []*cli.Command{versionCommand()} })
	// urfave's default printer says "cvmdeploy version X"; one line with the
	// commit and toolchain is what a bug report needs.
	cli.VersionPrinter = func(c *cli.Context) {
		fmt.Fprintln(c.App.Writer, "cvmdeploy "+currentBuild().String())
	}
}

// buildInfo is what `cvmdeploy version` reports.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func (b buildInfo) String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", b.Version, b.Commit, b.GoVersion, b.Platform)
}

// currentBuild reads the stamped values, else the module's build info.
func currentBuild() buildInfo {
	b := buildInfo{Version: buildVersion, Commit: buildCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if b.Commit == "" && rev != "" {
			b.Commit = rev
			if modified == "true" {
				b.Commit += "+dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print cvmdeploy's version, commit and Go version",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &UsageError{Err: fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			b := currentBuild()
			if c.Bool("json") {
				return writeJSON(c.App.Writer, b)
			}
			_, err := fmt.Fprintln(c.App.Writer, "cvmdeploy "+b.String())
			return err
		},
	}
}

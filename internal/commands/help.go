package commands

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// go-ethereum's node packages (linked in for the embedded dev chain in the
// devchain build and in this package's tests) restyle urfave/cli's help
// globally when imported: a "MISC" category, geth's flag format and, on a
// colour terminal, ANSI codes in the template. Package initialisation runs
// theirs first, so this undoes it for our commands.
func init() {
	cli.HelpFlag.(*cli.BoolFlag).Category = ""
	cli.VersionFlag.(*cli.BoolFlag).Category = ""
	ansi := regexp.MustCompile("\x1b\\[[0-9;]*m")
	cli.AppHelpTemplate = ansi.ReplaceAllString(cli.AppHelpTemplate, "")
	cli.FlagStringer = flagString
}

// flagString renders one flag as urfave's own format does:
// "--name value, -n value<TAB>usage (default: x) [$ENV]".
func flagString(f cli.Flag) string {
	df, ok := f.(cli.DocGenerationFlag)
	if !ok {
		return fmt.Sprint(f)
	}
	placeholder := ""
	if df.TakesValue() {
		placeholder = " value"
	}
	var names []string
	for _, n := range f.Names() {
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		names = append(names, dash+n+placeholder)
	}
	s := strings.Join(names, ", ") + "\t" + df.GetUsage()
	def := df.GetDefaultText()
	if def == "" && df.TakesValue() {
		def = df.GetValue()
	}
	if def != "" && def != `""` && def != "[]" && def != "0" && def != "false" {
		s += fmt.Sprintf(" (default: %s)", def)
	}
	if envs := df.GetEnvVars(); len(envs) > 0 {
		s += " [$" + strings.Join(envs, ", $") + "]"
	}
	return s
}

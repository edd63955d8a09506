package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// jsonFlag is the --json flag every command that prints a result accepts.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the result as one JSON document on stdout"}
}

// quietFlag silences progress lines on stderr.
func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print no progress on stderr"}
}

// result is a command's outcome: a JSON document or key: value lines.
type result struct {
	// fields are printed in this order in the human form.
	keys   []string
	values map[string]any
	// notes are human-only explanations printed after a value.
	notes map[string]string
}

func newResult() *result { return &result{values: map[string]any{}, notes: map[string]string{}} }

// note adds a human-only explanation to key's value (not in --json).
func (r *result) note(key, text string) *result {
	if text != "" {
		r.notes[key] = text
	}
	return r
}

// set records key = value, keeping first-insertion order for human output.
func (r *result) set(key string, value any) *result {
	if _, ok := r.values[key]; !ok {
		r.keys = append(r.keys, key)
	}
	r.values[key] = value
	return r
}

// printResult writes r on stdout: one JSON document with --json, otherwise
// aligned "key: value" lines.
func printResult(c *cli.Context, r *result) error {
	return writeResult(c.App.Writer, c.Bool("json"), r)
}

func writeResult(w io.Writer, asJSON bool, r *result) error {
	if asJSON {
		return writeJSON(w, r.values)
	}
	width := 0
	for _, k := range r.keys {
		if len(k) > width {
			width = len(k)
		}
	}
	for _, k := range r.keys {
		v := fmt.Sprint(r.values[k])
		if n := r.notes[k]; n != "" {
			v += " (" + n + ")"
		}
		if _, err := fmt.Fprintf(w, "%-*s  %s\n", width+1, k+":", v); err != nil {
			return err
		}
	}
	return nil
}

// progress prints human progress lines on stderr unless --quiet is set.
type progress struct {
	w     io.Writer
	quiet bool
}

func newProgress(c *cli.Context) *progress {
	return &progress{w: c.App.ErrWriter, quiet: c.Bool("quiet")}
}

// Printf writes one progress line.
func (p *progress) Printf(format string, args ...any) {
	if p == nil || p.quiet {
		return
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// stdinIsTerminal reports whether prompts may be shown.
func stdinIsTerminal(c *cli.Context) bool {
	f, ok := c.App.Reader.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ethereum/go-ethereum/common"
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
// Addresses are written 0x-prefixed and checksummed whatever their source
// (the cloud answers app ids as bare lowercase hex).
func (r *result) set(key string, value any) *result {
	if _, ok := r.values[key]; !ok {
		r.keys = append(r.keys, key)
	}
	if s, ok := value.(string); ok && addressKeys[key] {
		value = checksummed(s)
	}
	r.values[key] = value
	return r
}

// addressKeys are the result fields that hold an account or contract.
var addressKeys = map[string]bool{
	"app_id": true, "contract_address": true, "deployer_address": true, "owner": true, "pending_owner": true,
	"kms_contract": true, "rogue_kms_contract": true, "implementation": true, "predicted_app_id": true,
	"signer": true, "to": true, "dev_account": true, "kms_owner": true, "safe": true,
	"app_implementation": true, "kms_implementation": true,
}

// checksummed returns s as an EIP-55 address when it is 40 hex digits
// (0x optional), and s unchanged otherwise.
func checksummed(s string) string {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "0x") && !strings.HasPrefix(t, "0X") {
		t = "0x" + t
	}
	if len(t) != 42 || !common.IsHexAddress(t) {
		return s
	}
	return common.HexToAddress(t).Hex()
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
	var b strings.Builder
	for _, k := range r.keys {
		lines := humanLines(r.values[k])
		n := r.notes[k]
		if len(lines) == 1 {
			v := lines[0]
			if n != "" {
				v += " (" + n + ")"
			}
			fmt.Fprintf(&b, "%-*s  %s\n", width+1, k+":", v)
			continue
		}
		head := k + ":"
		if n != "" {
			head += " (" + n + ")"
		}
		b.WriteString(head + "\n")
		for _, l := range lines {
			b.WriteString("    " + l + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// humanLines renders a result value for people: a scalar on one line,
// lists and objects as lines of their own — never a Go value such as
// map[…] or [{…}].
func humanLines(v any) []string {
	switch x := v.(type) {
	case nil:
		return []string{"none"}
	case string:
		return []string{x}
	case fmt.Stringer:
		return strings.Split(x.String(), "\n")
	case bool, int, int64, uint64, uint32, int32, uint, float64:
		return []string{fmt.Sprint(x)}
	case []string:
		if len(x) == 0 {
			return []string{"none"}
		}
		return []string{strings.Join(x, ", ")}
	}
	// Anything else goes through its JSON form, which names fields as the
	// --json output does and hides nothing unexported.
	data, err := json.Marshal(v)
	if err != nil {
		return []string{"(unprintable: " + err.Error() + ")"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return []string{"(unprintable: " + err.Error() + ")"}
	}
	return treeLines(tree)
}

// treeLines renders decoded JSON: objects as "key: value" lines (sorted),
// arrays of scalars on one line, other arrays as "- " items.
func treeLines(v any) []string {
	switch x := v.(type) {
	case nil:
		return []string{"none"}
	case string:
		return []string{x}
	case json.Number:
		return []string{x.String()}
	case bool:
		return []string{fmt.Sprint(x)}
	case map[string]any:
		if len(x) == 0 {
			return []string{"none"}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			v := x[k]
			if s, ok := v.(string); ok && addressKeys[k] {
				v = checksummed(s)
			}
			sub := treeLines(v)
			if len(sub) == 1 && inline(v) {
				out = append(out, k+": "+sub[0])
				continue
			}
			out = append(out, k+":")
			for _, l := range sub {
				out = append(out, "  "+l)
			}
		}
		return out
	case []any:
		if len(x) == 0 {
			return []string{"none"}
		}
		scalars := true
		for _, e := range x {
			if isContainer(e) {
				scalars = false
				break
			}
		}
		if scalars {
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = treeLines(e)[0]
			}
			return []string{strings.Join(parts, ", ")}
		}
		var out []string
		for _, e := range x {
			for i, l := range treeLines(e) {
				if i == 0 {
					out = append(out, "- "+l)
				} else {
					out = append(out, "  "+l)
				}
			}
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

// inline reports whether v reads well after its key on the same line:
// a scalar, an empty object or list, or a list of scalars.
func inline(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) == 0
	case []any:
		for _, e := range x {
			if isContainer(e) {
				return false
			}
		}
	}
	return true
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

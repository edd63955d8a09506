package review

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Page is everything the review page shows, as text: the builders
// (FromUpdate, FromDryRun) fill it from a result, Render writes it.
type Page struct {
	Title   string
	Summary string
	Created time.Time
	// Facts is the head table: CVM, app, chain, status, hashes.
	Facts []Fact
	// Files are the diffs: the docker-compose file, and the pre-launch
	// script when it changes.
	Files []FileDiff
	Env   EnvChange
	// Verification says how the new compose hash was established.
	Verification Verification
	Calls        []Call
	// CallsNote explains an empty or special list of calls.
	CallsNote string
	Owner     Owner
	// Status is the on-chain state as read, before the calls.
	Status     []StatusRow
	StatusNote string
	// Explorer is the chain's explorer name, or why links are missing.
	ExplorerNote string
	Warnings     []string
}

// Fact is one row of the head table; URL links the value when set.
type Fact struct {
	Name, Value, URL string
	// Mono sets the value in a fixed-width font (hashes, addresses).
	Mono bool
}

// FileDiff is one file before and after, as hunks of a line diff.
type FileDiff struct {
	Title string
	// Note replaces the diff when there is none to show (a file not read).
	Note           string
	Hunks          []Hunk
	Added, Removed int
	// Unchanged: both sides are known and equal.
	Unchanged bool
	// Full is the new file, shown folded under the diff ("" hides it).
	Full string
}

// Hunk is a run of changes with a few lines of context.
type Hunk struct {
	Header string
	Lines  []DiffLine
}

// DiffLine is one rendered diff line: Class is add, del or ctx.
type DiffLine struct {
	Class        string
	Sign         string
	OldNo, NewNo string
	Text         string
	// CR marks a line ending in "\r\n"; NoEOL a last line without "\n".
	CR, NoEOL bool
}

// EnvChange lists env names (never values).
type EnvChange struct {
	// Note replaces the lists when the update leaves the env alone.
	Note                 string
	Added, Removed, Kept []string
}

// Verification is how the compose hash was checked, in words.
type Verification struct {
	ComposeHash string
	Verified    string
	Meaning     string
	KMSTrust    string
	KMSMeaning  string
}

// Call is one on-chain call, decoded locally from its calldata.
type Call struct {
	Function  string
	Signature string
	Contract  string
	To        string
	ToURL     string
	From      string
	Args      []Arg
	Data      string
	// DecodeError says why the calldata could not be decoded.
	DecodeError string
	TxHash      string
	TxURL       string
	Note        string
}

// Arg is one decoded argument; Note says what the value is (e.g. "the new
// compose hash").
type Arg struct {
	Name, Type, Value, Note string
}

// Owner is who must approve the calls, and how.
type Owner struct {
	Address string
	URL     string
	Kind    string
	// KindWords names the kind in words, Detail adds what is known of it.
	KindWords string
	Detail    string
	// Steps are what the owner (and then the operator) must do, in order.
	Steps []Step
}

// Step is one thing to do, with the commands that do it (if any).
type Step struct {
	Text     string
	Commands []string
}

// StatusRow is one on-chain fact; State is ok, no or unknown.
type StatusRow struct {
	Name, Value, State, Note string
	Mono                     bool
}

//go:embed page.html.tmpl
var pageTemplate string

var tmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"date": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"inc":  func(i int) int { return i + 1 },
}).Parse(pageTemplate))

// Render writes p as one HTML document: inline CSS, no script, no external
// resource, and a Content-Security-Policy that blocks any request; every
// value is HTML-escaped by html/template.
func Render(w io.Writer, p *Page) error {
	return tmpl.Execute(w, p)
}

// Write renders p into path atomically (a temp file renamed over it). The
// page holds no secret (no env value, no commit token): it is world-readable
// so it can be published as a CI artifact.
func Write(path string, p *Page) error {
	var buf bytes.Buffer
	if err := Render(&buf, p); err != nil {
		return fmt.Errorf("render the review page: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".review-*.html")
	if err != nil {
		return fmt.Errorf("write the review page: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write the review page: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write the review page: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the review page: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write the review page: %w", err)
	}
	return nil
}

// contextLines is how many unchanged lines surround each change.
const contextLines = 3

// NewFileDiff diffs two versions of a file into hunks.
func NewFileDiff(title, before, after string) FileDiff {
	fd := FileDiff{Title: title, Full: after}
	lines := Diff(before, after)
	// keep marks the lines shown: changes and their context.
	keep := make([]bool, len(lines))
	for i, l := range lines {
		if l.Op == Equal {
			continue
		}
		if l.Op == Insert {
			fd.Added++
		} else {
			fd.Removed++
		}
		for j := max(0, i-contextLines); j <= min(len(lines)-1, i+contextLines); j++ {
			keep[j] = true
		}
	}
	fd.Unchanged = fd.Added == 0 && fd.Removed == 0
	oldSeen, newSeen := 0, 0 // lines of each side before lines[i]
	for i := 0; i < len(lines); {
		if !keep[i] {
			oldSeen, newSeen = oldSeen+1, newSeen+1 // only equal lines are dropped
			i++
			continue
		}
		end := i
		for end < len(lines) && keep[end] {
			end++
		}
		h := newHunk(lines[i:end], oldSeen, newSeen)
		fd.Hunks = append(fd.Hunks, h)
		for _, l := range lines[i:end] {
			if l.Op != Insert {
				oldSeen++
			}
			if l.Op != Delete {
				newSeen++
			}
		}
		i = end
	}
	return fd
}

// newHunk renders lines with a unified-diff header (@@ -a,b +c,d @@);
// oldSeen and newSeen count each side's lines before the hunk.
func newHunk(lines []Line, oldSeen, newSeen int) Hunk {
	var h Hunk
	oldCount, newCount := 0, 0
	for _, l := range lines {
		d := DiffLine{Text: l.Text}
		if strings.HasSuffix(d.Text, "\n") {
			d.Text = strings.TrimSuffix(d.Text, "\n")
		} else {
			d.NoEOL = true
		}
		if strings.HasSuffix(d.Text, "\r") {
			d.Text, d.CR = strings.TrimSuffix(d.Text, "\r"), true
		}
		if l.OldNo > 0 {
			d.OldNo = strconv.Itoa(l.OldNo)
			oldCount++
		}
		if l.NewNo > 0 {
			d.NewNo = strconv.Itoa(l.NewNo)
			newCount++
		}
		switch l.Op {
		case Insert:
			d.Class, d.Sign = "add", "+"
		case Delete:
			d.Class, d.Sign = "del", "−"
		default:
			d.Class, d.Sign = "ctx", " "
		}
		h.Lines = append(h.Lines, d)
	}
	h.Header = fmt.Sprintf("@@ -%s +%s @@", hunkRange(oldSeen, oldCount), hunkRange(newSeen, newCount))
	return h
}

// hunkRange is GNU diff's unified range: "start,count", the start being
// the line before the hunk when it holds no line of that side.
func hunkRange(seen, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", seen)
	case 1:
		return strconv.Itoa(seen + 1)
	}
	return fmt.Sprintf("%d,%d", seen+1, count)
}

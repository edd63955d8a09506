package review

import (
	"math/rand"
	"strings"
	"testing"
)

// script renders a diff as one op character per line, e.g. " -+ ".
func script(lines []Line) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteByte(byte(l.Op))
	}
	return b.String()
}

// apply rebuilds both sides from a diff, checking the line numbers.
func apply(t *testing.T, lines []Line) (before, after string) {
	t.Helper()
	var a, b strings.Builder
	oldNo, newNo := 0, 0
	for _, l := range lines {
		switch l.Op {
		case Equal:
			oldNo, newNo = oldNo+1, newNo+1
			a.WriteString(l.Text)
			b.WriteString(l.Text)
		case Delete:
			oldNo++
			a.WriteString(l.Text)
		case Insert:
			newNo++
			b.WriteString(l.Text)
		}
		if (l.Op != Insert && l.OldNo != oldNo) || (l.Op != Delete && l.NewNo != newNo) ||
			(l.Op == Insert && l.OldNo != 0) || (l.Op == Delete && l.NewNo != 0) {
			t.Fatalf("line %+v: want old %d new %d", l, oldNo, newNo)
		}
	}
	return a.String(), b.String()
}

// lcs is the length of the longest common subsequence of two line lists,
// by the textbook table: the reference for minimality.
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case a[i] == b[j]:
				cur[j+1] = prev[j] + 1
			case prev[j+1] >= cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name          string
		before, after string
		want          string // the ops, one per line
	}{
		{"both empty", "", "", ""},
		{"empty before", "", "a\nb\n", "++"},
		{"empty after", "a\nb\n", "", "--"},
		{"identical", "a\nb\nc\n", "a\nb\nc\n", "   "},
		{"one line changed", "a\nb\nc\n", "a\nB\nc\n", " -+ "},
		{"insert at start", "b\nc\n", "a\nb\nc\n", "+  "},
		{"insert at end", "a\nb\n", "a\nb\nc\n", "  +"},
		{"delete in the middle", "a\nb\nc\n", "a\nc\n", " - "},
		{"no final newline added", "a\nb", "a\nb\n", " -+"},
		{"CRLF to LF changes every line", "a\r\nb\r\n", "a\nb\n", "--++"},
		{"CRLF kept", "a\r\nb\r\n", "a\r\nX\r\nb\r\n", " + "},
		{"replace all", "a\nb\n", "c\nd\ne\n", "--+++"},
		// Myers' own example: ABCABBA → CBABAC, edit distance 5.
		{"myers example", "A\nB\nC\nA\nB\nB\nA\n", "C\nB\nA\nB\nA\nC\n", "-+ -  - +"},
		{"moved block", "x\n1\n2\n3\ny\n", "1\n2\n3\nx\ny\n", "-   + "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.before, tt.after)
			if s := script(got); s != tt.want {
				t.Fatalf("ops %q, want %q (%+v)", s, tt.want, got)
			}
			if a, b := apply(t, got); a != tt.before || b != tt.after {
				t.Fatalf("the diff rebuilds %q → %q", a, b)
			}
		})
	}
}

// TestDiffMinimal compares random pairs (small alphabets make long common
// runs and many equal lines) against the LCS table: every diff rebuilds
// both sides and changes exactly n+m-2·LCS lines.
func TestDiffMinimal(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	gen := func(n, alphabet int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(byte('a' + rng.Intn(alphabet)))
			b.WriteByte('\n')
		}
		return b.String()
	}
	for i := 0; i < 2000; i++ {
		alphabet := 1 + rng.Intn(5)
		a, b := gen(rng.Intn(30), alphabet), gen(rng.Intn(30), alphabet)
		got := Diff(a, b)
		ra, rb := apply(t, got)
		if ra != a || rb != b {
			t.Fatalf("%q → %q: the diff rebuilds %q → %q", a, b, ra, rb)
		}
		changes := 0
		for _, l := range got {
			if l.Op != Equal {
				changes++
			}
		}
		la, lb := SplitLines(a), SplitLines(b)
		if want := len(la) + len(lb) - 2*lcs(la, lb); changes != want {
			t.Fatalf("%q → %q: %d changed lines, the shortest diff has %d", a, b, changes, want)
		}
	}
}

// TestDiffLarge: two 200 KiB compose-sized inputs with nothing in common
// finish (linear space), and so does a large file with scattered edits.
func TestDiffLarge(t *testing.T) {
	var a, b, c strings.Builder
	for i := 0; a.Len() < 200<<10; i++ {
		a.WriteString("      - SOME_SETTING_" + strings.Repeat("x", i%7) + "=a\n")
		b.WriteString("      - OTHER_SETTING_" + strings.Repeat("y", i%5) + "=b\n")
		if i%50 == 0 {
			c.WriteString("      # edited\n")
		} else {
			c.WriteString("      - SOME_SETTING_" + strings.Repeat("x", i%7) + "=a\n")
		}
	}
	for _, after := range []string{b.String(), c.String()} {
		got := Diff(a.String(), after)
		if ra, rb := apply(t, got); ra != a.String() || rb != after {
			t.Fatal("the diff does not rebuild the inputs")
		}
	}
}

func TestSplitLines(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"\n", []string{"\n"}},
		{"a", []string{"a"}},
		{"a\r\nb", []string{"a\r\n", "b"}},
		{"a\n\nb\n", []string{"a\n", "\n", "b\n"}},
	}
	for _, tt := range tests {
		got := SplitLines(tt.in)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("SplitLines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

package review

import "strings"

// Op is what a diff line does.
type Op byte

const (
	Equal  Op = ' '
	Delete Op = '-'
	Insert Op = '+'
)

// Line is one line of a line diff. Text keeps the line's own terminator
// ("\n", "\r\n", or none for a last line without one): a change of line
// ending changes the compose hash, so it is a change here too. OldNo and
// NewNo are 1-based line numbers (0 where the line has none on that side).
type Line struct {
	Op    Op
	Text  string
	OldNo int
	NewNo int
}

// SplitLines cuts s after each "\n"; the last line may lack one.
func SplitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// Diff is a shortest line diff of before → after (Myers' O(ND) algorithm in
// linear space: compose files go up to 200 KiB). Within each run of
// changes, deletions come before insertions.
func Diff(before, after string) []Line {
	a, b := SplitLines(before), SplitLines(after)
	// Compare small integers, not strings: equal lines get equal ids.
	ids := map[string]int{}
	intern := func(lines []string) []int {
		out := make([]int, len(lines))
		for i, l := range lines {
			id, ok := ids[l]
			if !ok {
				id = len(ids)
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	d := &differ{a: intern(a), b: intern(b)}
	d.compare(0, len(a), 0, len(b))

	out := make([]Line, 0, len(d.ops))
	i, j := 0, 0
	for start := 0; start < len(d.ops); {
		if d.ops[start] == Equal {
			i, j = i+1, j+1
			out = append(out, Line{Op: Equal, Text: a[i-1], OldNo: i, NewNo: j})
			start++
			continue
		}
		end := start
		for end < len(d.ops) && d.ops[end] != Equal {
			end++
		}
		for _, op := range d.ops[start:end] {
			if op == Delete {
				i++
				out = append(out, Line{Op: Delete, Text: a[i-1], OldNo: i})
			}
		}
		for _, op := range d.ops[start:end] {
			if op == Insert {
				j++
				out = append(out, Line{Op: Insert, Text: b[j-1], NewNo: j})
			}
		}
		start = end
	}
	return out
}

// differ appends the edit script of a → b to ops, in order.
type differ struct {
	a, b []int
	ops  []Op
}

func (d *differ) emit(op Op, n int) {
	for ; n > 0; n-- {
		d.ops = append(d.ops, op)
	}
}

// compare diffs a[aLo:aHi] against b[bLo:bHi].
func (d *differ) compare(aLo, aHi, bLo, bHi int) {
	prefix := 0
	for aLo+prefix < aHi && bLo+prefix < bHi && d.a[aLo+prefix] == d.b[bLo+prefix] {
		prefix++
	}
	d.emit(Equal, prefix)
	aLo, bLo = aLo+prefix, bLo+prefix
	suffix := 0
	for aHi-suffix > aLo && bHi-suffix > bLo && d.a[aHi-suffix-1] == d.b[bHi-suffix-1] {
		suffix++
	}
	aHi, bHi = aHi-suffix, bHi-suffix
	switch {
	case aLo == aHi:
		d.emit(Insert, bHi-bLo)
	case bLo == bHi:
		d.emit(Delete, aHi-aLo)
	default:
		// Both sides are non-empty and differ at both ends, so the edit
		// distance is at least 2 and each half of the middle snake's split
		// has a strictly smaller one: the recursion ends.
		x, y, u, v := d.middleSnake(aLo, aHi, bLo, bHi)
		d.compare(aLo, x, bLo, y)
		d.emit(Equal, u-x)
		d.compare(u, aHi, v, bHi)
	}
	d.emit(Equal, suffix)
}

// middleSnake finds the middle snake of an optimal path from (aLo, bLo) to
// (aHi, bHi) (Myers 1986, section 4b): the forward search runs from the
// start, the reverse one from the end (in reversed coordinates), one edit
// per round each, until they overlap on a diagonal. It returns the snake
// (x, y) → (u, v) in absolute coordinates.
func (d *differ) middleSnake(aLo, aHi, bLo, bHi int) (x, y, u, v int) {
	n, m := aHi-aLo, bHi-bLo
	delta := n - m
	odd := delta%2 != 0
	max := (n+m+1)/2 + 1
	// vf[k+off]: the furthest x reached on diagonal k = x-y going forward;
	// vb[k+off]: the same for the reversed sequences (x counted from aHi).
	off := max + 1
	vf := make([]int, 2*off+1)
	vb := make([]int, 2*off+1)
	eqF := func(x, y int) bool { return d.a[aLo+x] == d.b[bLo+y] }
	eqB := func(x, y int) bool { return d.a[aHi-1-x] == d.b[bHi-1-y] }
	for D := 0; D <= max; D++ {
		for k := -D; k <= D; k += 2 {
			var x int
			if k == -D || (k != D && vf[off+k-1] < vf[off+k+1]) {
				x = vf[off+k+1] // down: an insertion
			} else {
				x = vf[off+k-1] + 1 // right: a deletion
			}
			y := x - k
			xs, ys := x, y
			for x < n && y < m && eqF(x, y) {
				x, y = x+1, y+1
			}
			vf[off+k] = x
			// The reverse search has made D-1 edits; its diagonal kr
			// is this diagonal seen from the end.
			if kr := delta - k; odd && kr >= -(D-1) && kr <= D-1 && x+vb[off+kr] >= n {
				return aLo + xs, bLo + ys, aLo + x, bLo + y
			}
		}
		for k := -D; k <= D; k += 2 {
			var x int
			if k == -D || (k != D && vb[off+k-1] < vb[off+k+1]) {
				x = vb[off+k+1]
			} else {
				x = vb[off+k-1] + 1
			}
			y := x - k
			xs, ys := x, y
			for x < n && y < m && eqB(x, y) {
				x, y = x+1, y+1
			}
			vb[off+k] = x
			if kf := delta - k; !odd && kf >= -D && kf <= D && x+vf[off+kf] >= n {
				// Reversed (xs, ys) → (x, y) is forward (n-x, m-y) → (n-xs, m-ys).
				return aLo + n - x, bLo + m - y, aLo + n - xs, bLo + m - ys
			}
		}
	}
	panic("review: no middle snake (unreachable)")
}

package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{[]float64{3, 1, 2}, 0.5, 2},
		{[]float64{4, 1, 3, 2}, 0.5, 2.5}, // even count: mean of the middle two
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9, 9.1},
		{[]float64{7}, 0.9, 7},
		{[]float64{5, 1}, 0, 1},
		{[]float64{5, 1}, 1, 5},
	} {
		if got := quantile(tc.xs, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v, %v) = %v, want %v", tc.xs, tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(quantile(nil, 0.5)) {
		t.Error("quantile of nothing is not NaN")
	}
	xs := []float64{3, 1, 2}
	quantile(xs, 0.5)
	if xs[0] != 3 || xs[1] != 1 {
		t.Errorf("quantile sorted its input: %v", xs)
	}
}

func TestMedianIndex(t *testing.T) {
	ds := []time.Duration{300 * time.Millisecond, 100 * time.Millisecond, 180 * time.Millisecond, 120 * time.Millisecond, 900 * time.Millisecond}
	if got := medianIndex(ds); got != 2 {
		t.Errorf("medianIndex = %d, want 2 (180 ms)", got)
	}
	if got := medianIndex(nil); got != -1 {
		t.Errorf("medianIndex(nil) = %d, want -1", got)
	}
}

func TestScrub(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`→ provisioning "bench-ours-007" on http://127.0.0.1:39365/api/v1`, `→ provisioning "NAME" on URL`},
		{`✓ AppAuth deployed: app id 0x273B78E634d0b6a112F3f5179a72773c253426Fa (block 8, gas 260117)`, `✓ AppAuth deployed: app id 0x… (block N, gas N)`},
		{`✓ env key verified against the KMS root key on-chain (0x03b99d…2a06)`, `✓ env key verified against the KMS root key on-chain (0x…)`},
		{`✓ committed: CVM 7c668625-fa16-45ce-9c8c-49f8ad8279bf, status creating`, `✓ committed: CVM ID, status creating`},
		{`✓ provisioned: compose hash ce6d2d163b4c144f99898951cf1f14cd5d23b317f3f03c96f1ba750791d529b8, device 022e0bcb…8008`, `✓ provisioned: compose hash 0x…, device 0x…`},
		{`a | b`, `a / b`},
	} {
		if got := scrub(tc.in); got != tc.want {
			t.Errorf("scrub(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
	if got := scrub(strings.Repeat("x", 200)); len([]rune(got)) != 90 || !strings.HasSuffix(got, "…") {
		t.Errorf("a long line is not cut to 90 characters: %d", len([]rune(got)))
	}
}

func TestAlignLines(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	a := []stampedLine{{ms(1), "start"}, {ms(2), "status creating"}, {ms(3), "running"}}
	b := []stampedLine{{ms(10), "start"}, {ms(20), "status starting"}, {ms(30), "running"}, {ms(40), "extra"}}
	got := alignLines(a, b)
	want := [][3]string{
		{"1", "10", "start"},
		{"2", "", "status creating"},
		{"", "20", "status starting"},
		{"3", "30", "running"},
		{"", "40", "extra"},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	good := options{nAuto: 20, nBlock: 10, nCount: 5, nOffAuto: 10, nOffBlock: 10, nOffCount: 3, nHelp: 20, nOffHelp: 10, batchApps: 50, stacks1s: 4, totalTimeout: time.Minute}
	if err := good.Check(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	for name, mutate := range map[string]func(*options){
		"zero runs":        func(o *options) { o.nAuto = 0 },
		"huge batch":       func(o *options) { o.batchApps = 201 },
		"no official runs": func(o *options) { o.nOffBlock = 0 },
		"no timeout":       func(o *options) { o.totalTimeout = 0 },
		"no anvil":         func(o *options) { o.stacks1s = 0 },
	} {
		o := good
		mutate(&o)
		if o.Check() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o := good
	o.skipOfficial, o.nOffAuto = true, 0
	if err := o.Check(); err != nil {
		t.Errorf("-skip-official with no official runs rejected: %v", err)
	}
}

func TestReceiptLags(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	ss := []sample{
		// Started 300 ms after a block, sent at 20 ms: the block comes 700 ms
		// after the start; deployed at 760 ms is a 60 ms lag.
		{offset: ms(300), lines: []stampedLine{{ms(20), "→ AppAuth transaction sent: 0x1"}, {ms(760), "✓ AppAuth deployed: app id 0x2"}}},
		// Started 990 ms after a block, sent at 15 ms: past the next block
		// already, so the one after it, 1010 ms after the start.
		{offset: ms(990), lines: []stampedLine{{ms(15), "→ AppAuth transaction sent: 0x1"}, {ms(1030), "✓ AppAuth deployed: app id 0x2"}}},
		// No progress lines: left out.
		{offset: ms(100)},
	}
	got := receiptLags(ss)
	want := []time.Duration{ms(60), ms(20)}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("receiptLags = %v, want %v", got, want)
	}
}

func TestShare(t *testing.T) {
	for _, tc := range []struct{ n, stacks int }{{12, 4}, {10, 4}, {5, 4}, {3, 4}, {1, 1}, {0, 3}} {
		total := 0
		for k := 0; k < tc.stacks; k++ {
			q := share(tc.n, tc.stacks, k)
			if q < tc.n/tc.stacks || q > tc.n/tc.stacks+1 {
				t.Errorf("share(%d, %d, %d) = %d: uneven", tc.n, tc.stacks, k, q)
			}
			total += q
		}
		if total != tc.n {
			t.Errorf("shares of %d over %d add up to %d", tc.n, tc.stacks, total)
		}
	}
}

func TestPhaseOf(t *testing.T) {
	at := time.Unix(1700000000, 250_000_000)
	if got := phaseOf(at); got != 250*time.Millisecond {
		t.Errorf("phaseOf = %v, want 250ms", got)
	}
}

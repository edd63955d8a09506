package main

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Targets of issue 6 and the official CLI's figures from
// reference/phala-cloud-api.md §15, printed beside what this run measured.
const (
	targetAutoMS     = 185
	targetBlockMS    = 1200
	targetRequests   = 4
	targetBatchSpan  = 5
	refOfficialAuto  = "1847 ms"
	refOfficialBlock = "3827 ms"
	refOfficialHelp  = "1191 ms"
	refRequestsAuto  = "6"
	refRequestsBlock = "7"
)

func ms(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	if x >= 10 {
		return fmt.Sprintf("%.0f ms", x)
	}
	return fmt.Sprintf("%.1f ms", x)
}

func medP90(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	xs := millis(ds)
	return fmt.Sprintf("%s (p90 %s)", ms(quantile(xs, 0.5)), ms(quantile(xs, 0.9)))
}

func walls(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.wall
	}
	return out
}

func firsts(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.first
	}
	return out
}

func reqs(m *modeResult) string {
	if m == nil || len(m.requests) == 0 {
		return "—"
	}
	return fmt.Sprintf("%g / %d", quantile(ints(m.requests), 0.5), slices.Max(m.requests))
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (r *report) officialCell(f func() string) string {
	if r.opts.skipOfficial {
		return "skipped"
	}
	return f()
}

func (r *report) markdown() string {
	var b strings.Builder
	m := r.machine
	oa, ob := r.ours[modeAuto], r.ours[modeBlock]
	fa, fb := r.official[modeAuto], r.official[modeBlock]

	fmt.Fprintf(&b, "### Run of %s\n\n", m.date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: `nproc` %s, %s, %s; load average (1/5/15 min) %s at the start, %s at the end.\n", m.nproc, m.cpu, m.kernel, m.loadStart, m.loadEnd)
	tools := []string{m.goVersion, m.anvil}
	if !r.opts.skipOfficial {
		tools = append(tools, m.phala+" on node "+m.node)
	}
	fmt.Fprintf(&b, "- Tools: %s.\n", strings.Join(tools, "; "))
	fmt.Fprintf(&b, "- cvmdeploy built from %s.\n", m.build)
	fmt.Fprintf(&b, "- Stack: anvil (automine, or one block per second) with a fresh DstackKms and the local Phala Cloud (`testnet.StartLocalnet`, in the benchmark's process; a CVM boots in 2 × 50 ms), all on 127.0.0.1. cvmdeploy is the binary `go build` made at the start of the run. Every deploy uses a fresh name. One untimed warm-up deploy per tool and chain mode; the two tools' runs alternate, 200 ms apart; at one block per second the runs are spread over %d anvils whose blocks arrive %s ms into the wall-clock second (started at evenly spaced phases: cvmdeploy's next-block estimate reads whole-second block timestamps), and on each anvil the n runs of a tool start 0, 1/n, …, (n−1)/n s after a block (in a seeded order), so the wait for the block is averaged over both phases.\n", len(r.phases), phaseList(r.phases))
	if r.opts.quick {
		b.WriteString("- **Quick run** (`-quick`): small counts, not for the record.\n")
	}
	fmt.Fprintf(&b, "- Whole run: %s.\n\n", r.elapsed.Round(time.Second))

	off := func(mr *modeResult) string {
		return r.officialCell(func() string { return medP90(mr.walls()) })
	}
	b.WriteString("| measurement | cvmdeploy | official `phala` (this run) | official (§15 reference) | target (cvmdeploy) | met |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| deploy `--kms ethereum`, anvil automine: wall time incl. process start, median (p90); n = %d / %s | **%s** | %s | %s | ≤ %d ms median | %s |\n",
		len(oa.timed), r.officialN(fa), medP90(oa.walls()), off(fa), refOfficialAuto, targetAutoMS, met(quantile(millis(oa.walls()), 0.5) <= targetAutoMS))
	fmt.Fprintf(&b, "| same, anvil at one block per second; n = %d / %s | **%s** | %s | %s | ≤ %d ms median | %s |\n",
		len(ob.timed), r.officialN(fb), medP90(ob.walls()), off(fb), refOfficialBlock, targetBlockMS, met(quantile(millis(ob.walls()), 0.5) <= targetBlockMS))
	fmt.Fprintf(&b, "| JSON-RPC HTTP requests per deploy, automine: median / max; n = %d / %s | **%s** | %s | %s | ≤ %d | %s |\n",
		len(oa.requests), r.officialCountN(fa), reqs(oa), r.officialCell(func() string { return reqs(fa) }), refRequestsAuto, targetRequests, met(slices.Max(oa.requests) <= targetRequests))
	fmt.Fprintf(&b, "| same at one block per second; n = %d / %s | **%s** | %s | %s | ≤ %d | %s |\n",
		len(ob.requests), r.officialCountN(fb), reqs(ob), r.officialCell(func() string { return reqs(fb) }), refRequestsBlock, targetRequests, met(slices.Max(ob.requests) <= targetRequests))
	bt := r.batch
	span := bt.maxBlock - bt.minBlock + 1
	fmt.Fprintf(&b, "| batch of %d apps at one block per second (`deploy --batch FILE --wait`): wall time | **%s** | — | — | — | |\n", bt.apps, ms(float64(bt.wall)/float64(time.Millisecond)))
	fmt.Fprintf(&b, "| batch of %d: blocks holding the AppAuths | **%d** (%s; %d/%d running) | — | — | all within %d blocks | %s |\n",
		bt.apps, span, blockRange(bt), bt.running, bt.apps, targetBatchSpan, met(span <= targetBatchSpan && bt.running == bt.apps))
	fmt.Fprintf(&b, "| `--help` (process start to exit), median (p90); n = %d / %s | **%s** | %s | %s | — | |\n",
		len(r.help), r.officialHelpN(), medP90(walls(r.help)), r.officialCell(func() string { return medP90(walls(r.offHelp)) }), refOfficialHelp)
	fmt.Fprintf(&b, "| env encryption of 1 MiB (`BenchmarkEncryptEnv1MiB`, in-process) | **%s/op** (%.0f MB/s, %.1f MiB and %.0f allocs/op) | — | — | — | |\n",
		ms(r.enc.nsPerOp/1e6), r.enc.mbPerS, r.enc.bytesPerOp/(1<<20), r.enc.allocsPer)
	b.WriteString("\n")
	b.WriteString("n = cvmdeploy runs / official CLI runs. cvmdeploy runs `deploy --kms ethereum --wait --json` and returns once the CVM runs; the official CLI runs `phala deploy --kms ethereum --json --no-dev-os` (it has no working `--wait` for a fresh deploy, §15 E) and returns after the commit. The request counts come from separate runs through `testnet/rpcproxy` (no fault rules); the wall times from runs straight to anvil.\n\n")

	r.callsTable(&b)
	r.timelines(&b)
	return b.String()
}

func phaseList(ps []time.Duration) string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprint(p.Milliseconds()))
	}
	return strings.Join(out, ", ")
}

func (r *report) officialN(m *modeResult) string {
	if r.opts.skipOfficial || m == nil {
		return "—"
	}
	return fmt.Sprint(len(m.timed))
}

func (r *report) officialCountN(m *modeResult) string {
	if r.opts.skipOfficial || m == nil {
		return "—"
	}
	return fmt.Sprint(len(m.requests))
}

func (r *report) officialHelpN() string {
	if r.opts.skipOfficial {
		return "—"
	}
	return fmt.Sprint(len(r.offHelp))
}

func blockRange(bt batchResult) string {
	if bt.minBlock == bt.maxBlock {
		return fmt.Sprintf("all in block %d", bt.minBlock)
	}
	return fmt.Sprintf("blocks %d–%d, %d distinct", bt.minBlock, bt.maxBlock, bt.distinct)
}

// callsTable prints the JSON-RPC calls per deploy by method: the mean over
// the counted runs of each tool and mode.
func (r *report) callsTable(b *strings.Builder) {
	type col struct {
		name string
		m    *modeResult
	}
	cols := []col{{"cvmdeploy automine", r.ours[modeAuto]}, {"cvmdeploy 1 block/s", r.ours[modeBlock]}}
	if !r.opts.skipOfficial {
		cols = append(cols, col{"phala automine", r.official[modeAuto]}, col{"phala 1 block/s", r.official[modeBlock]})
	}
	methods := map[string]bool{}
	for _, c := range cols {
		for k := range c.m.calls {
			methods[k] = true
		}
	}
	names := make([]string, 0, len(methods))
	for k := range methods {
		names = append(names, k)
	}
	slices.Sort(names)
	per := func(c col, v int) string {
		if len(c.m.requests) == 0 {
			return "—"
		}
		x := float64(v) / float64(len(c.m.requests))
		if x == 0 {
			return "·"
		}
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", x), "0"), ".")
	}
	b.WriteString("JSON-RPC calls per deploy, by method (mean over the counted runs; a batch of calls is one HTTP request):\n\n")
	b.WriteString("| method |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c.name)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, k := range names {
		fmt.Fprintf(b, "| `%s` |", k)
		for _, c := range cols {
			fmt.Fprintf(b, " %s |", per(c, c.m.calls[k]))
		}
		b.WriteString("\n")
	}
	b.WriteString("| **calls** |")
	for _, c := range cols {
		total := 0
		for _, v := range c.m.calls {
			total += v
		}
		fmt.Fprintf(b, " %s |", per(c, total))
	}
	b.WriteString("\n| **HTTP requests** |")
	for _, c := range cols {
		total := 0
		for _, v := range c.m.requests {
			total += v
		}
		fmt.Fprintf(b, " %s |", per(c, total))
	}
	b.WriteString("\n\n")
	bt := r.batch
	callSum := 0
	for _, v := range bt.calls {
		callSum += v
	}
	keys := make([]string, 0, len(bt.calls))
	for k := range bt.calls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("`%s` %d", k, bt.calls[k]))
	}
	fmt.Fprintf(b, "The batch of %d apps (run through the proxy) made %d HTTP requests holding %d calls in all: %s.\n\n", bt.apps, bt.requests, callSum, strings.Join(parts, ", "))
	oa := r.ours[modeAuto]
	if len(oa.proxied) > 0 {
		fmt.Fprintf(b, "cvmdeploy's counted runs through the proxy took %s (automine) and %s (one block per second).\n\n",
			medP90(walls(oa.proxied)), medP90(walls(r.ours[modeBlock].proxied)))
	}
}

var (
	reURL      = regexp.MustCompile(`https?://\S+`)
	reUUID     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	reHex      = regexp.MustCompile(`0x[0-9a-fA-F]+(…[0-9a-fA-F]+)?|[0-9a-fA-F]{6,}…[0-9a-fA-F]+|[0-9a-fA-F]{12,}`)
	reName     = regexp.MustCompile(`"bench-[a-z]+-\d+"`)
	reBlockGas = regexp.MustCompile(`\b(block|gas) \d+`)
)

// scrub shortens a progress line to its shape: hashes, addresses, ids and
// URLs replaced, cut to a table cell.
func scrub(line string) string {
	line = reURL.ReplaceAllString(line, "URL")
	line = reUUID.ReplaceAllString(line, "ID")
	line = reHex.ReplaceAllString(line, "0x…")
	line = reName.ReplaceAllString(line, `"NAME"`)
	line = reBlockGas.ReplaceAllString(line, "$1 N")
	line = strings.ReplaceAll(line, "|", "/")
	line = strings.TrimSpace(line)
	if r := []rune(line); len(r) > 90 {
		line = string(r[:89]) + "…"
	}
	return line
}

// timelines prints the progress lines of cvmdeploy's median run in each
// mode, stamped with the time since the process was started, and the
// official CLI's time to its first output.
func (r *report) timelines(b *strings.Builder) {
	b.WriteString("Where the time goes: cvmdeploy's progress lines (stderr) in its median run, in ms since the process was started:\n\n")
	oa, ob := r.ours[modeAuto], r.ours[modeBlock]
	ia, ib := medianIndex(oa.walls()), medianIndex(ob.walls())
	sa, sb := oa.timed[ia], ob.timed[ib]
	b.WriteString("| automine | 1 block/s | progress line |\n|---:|---:|---|\n")
	for _, row := range alignLines(sa.lines, sb.lines) {
		fmt.Fprintf(b, "| %s | %s | %s |\n", row[0], row[1], row[2])
	}
	fmt.Fprintf(b, "| %d | %d | (process exited; the JSON result is on stdout) |\n\n", sa.wall.Milliseconds(), sb.wall.Milliseconds())
	if lags := receiptLags(ob.timed); len(lags) > 0 {
		xs := millis(lags)
		fmt.Fprintf(b, "At one block per second, cvmdeploy saw the receipt %s after the block that held its AppAuth transaction (median; min %s, max %s over %d runs; the block's arrival is inferred from the run's start phase and the 1 s block clock).\n\n",
			ms(quantile(xs, 0.5)), ms(slices.Min(xs)), ms(slices.Max(xs)), len(xs))
	}
	if r.opts.skipOfficial {
		return
	}
	fa, fb := r.official[modeAuto], r.official[modeBlock]
	fmt.Fprintf(b, "The official CLI prints its first line (`Provisioning CVM …`, just before its first API request) after %s on automine and %s at one block per second (median, p90): its start-up. Its `--help` alone takes %s.\n",
		medP90(firsts(fa.timed)), medP90(firsts(fb.timed)), medP90(walls(r.offHelp)))
}

// alignLines pairs the lines of two runs by their scrubbed text, in order:
// a line only one run printed (a boot status the other skipped) gets a
// row of its own.
func alignLines(a, b []stampedLine) [][3]string {
	var rows [][3]string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && scrub(a[i].text) == scrub(b[j].text):
			rows = append(rows, [3]string{fmt.Sprint(a[i].at.Milliseconds()), fmt.Sprint(b[j].at.Milliseconds()), scrub(a[i].text)})
			i, j = i+1, j+1
		case i < len(a) && (j >= len(b) || !slices.ContainsFunc(b[j:], func(l stampedLine) bool { return scrub(l.text) == scrub(a[i].text) })):
			rows = append(rows, [3]string{fmt.Sprint(a[i].at.Milliseconds()), "", scrub(a[i].text)})
			i++
		default:
			rows = append(rows, [3]string{"", fmt.Sprint(b[j].at.Milliseconds()), scrub(b[j].text)})
			j++
		}
	}
	return rows
}

// receiptLags is, per run at one block per second, the time from the block
// that mined the AppAuth transaction to cvmdeploy printing that it is
// deployed. The run started offset after a block and blocks come every
// second, so the transaction, sent at sentAt, is in the block at
// ceil((offset+sentAt)/1s)·1s − offset. Runs whose progress lines lack the
// two steps are left out.
func receiptLags(ss []sample) []time.Duration {
	var out []time.Duration
	for _, s := range ss {
		var sent, deployed time.Duration
		for _, l := range s.lines {
			switch {
			case sent == 0 && strings.Contains(l.text, "AppAuth transaction sent"):
				sent = l.at
			case deployed == 0 && strings.Contains(l.text, "AppAuth deployed"):
				deployed = l.at
			}
		}
		if sent == 0 || deployed == 0 {
			continue
		}
		k := (s.offset+sent)/time.Second + 1
		out = append(out, deployed-(k*time.Second-s.offset))
	}
	return out
}

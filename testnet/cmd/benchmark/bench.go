package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/rpcproxy"
)

const (
	oursTimeout     = 2 * time.Minute
	officialTimeout = 3 * time.Minute
	batchTimeout    = 5 * time.Minute
	helpTimeout     = 30 * time.Second
	// settle lets the local cloud finish booting the previous CVM (the
	// official CLI returns before its CVM runs) so runs do not overlap.
	settle = 200 * time.Millisecond
)

// sample is one timed process.
type sample struct {
	wall  time.Duration
	first time.Duration // first byte of output (progress for us, stdout for the official CLI)
	lines []stampedLine // our stderr progress lines, or the official CLI's stdout
	// offset is how long after a block the run started (1 block/s only).
	offset time.Duration
}

// modeResult is one tool on one chain mode.
type modeResult struct {
	timed    []sample
	proxied  []sample       // the counting runs (through the proxy)
	requests []int          // HTTP requests per counted deploy
	calls    map[string]int // JSON-RPC calls by method, summed over the counted deploys
}

func (m *modeResult) walls() []time.Duration {
	out := make([]time.Duration, len(m.timed))
	for i, s := range m.timed {
		out[i] = s.wall
	}
	return out
}

// batchResult is the batch of apps at one block per second.
type batchResult struct {
	apps     int
	running  int
	wall     time.Duration
	minBlock uint64
	maxBlock uint64
	distinct int
	requests int
	calls    map[string]int
}

// encResult is the env-encryption benchmark.
type encResult struct {
	line                  string // the raw go test line
	nsPerOp, mbPerS       float64
	bytesPerOp, allocsPer float64
}

// report is everything one run measured.
type report struct {
	opts     options
	machine  machineInfo
	ours     map[string]*modeResult // by chain mode
	official map[string]*modeResult
	batch    batchResult
	help     []sample
	offHelp  []sample
	enc      encResult
	elapsed  time.Duration
	phases   []time.Duration // when blocks arrive in the second, per 1 block/s anvil
}

const (
	modeAuto  = "automine"
	modeBlock = "1 block/s"
)

// bench holds the paths and state shared by every measurement.
type bench struct {
	o           options
	root        string // the repository
	tmp         string
	bin         string // the cvmdeploy binary built for this run
	phala       string // the official CLI ("" with -skip-official)
	compose     string // the example app, as cvmdeploy reads it
	envFile     string
	officialDir string // the example app copied, as the official CLI reads it
	home        string // an empty HOME for both tools
	stateDir    string // cvmdeploy's journals
	devKeyHex   string // anvil's public test key 0; never printed
	seq         int
	rng         *rand.Rand
}

// stack is a local testnet and the counting proxy in front of its chain.
type stack struct {
	mode  string
	ln    *testnet.Localnet
	proxy *rpcproxy.Proxy
	eth   *ethclient.Client // straight to the node, for the block clock
}

func (s *stack) close() {
	if s.eth != nil {
		s.eth.Close()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
}

func run(ctx context.Context, o options) (string, error) {
	root, err := findRoot()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "cvmdeploy-bench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	b := &bench{
		o: o, root: root, tmp: tmp,
		bin:      filepath.Join(tmp, "cvmdeploy"),
		home:     filepath.Join(tmp, "home"),
		stateDir: filepath.Join(tmp, "state"),
		rng:      rand.New(rand.NewPCG(uint64(o.seed), 0x62656e6368)),
	}
	for _, d := range []string{b.home, b.stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	if err := b.prepareApp(); err != nil {
		return "", err
	}
	rep := &report{opts: o, ours: map[string]*modeResult{}, official: map[string]*modeResult{}}
	if rep.machine, err = readMachine(ctx, root); err != nil {
		return "", err
	}

	src := root
	if o.rev != "" {
		// A clean export of one commit: the figures then belong to that
		// commit, whatever else the working tree holds right now.
		src = filepath.Join(tmp, "src")
		if err := os.MkdirAll(src, 0o700); err != nil {
			return "", err
		}
		progressf("exporting %s (git archive) into %s", o.rev, src)
		if _, err := output(ctx, root, "bash", "-c", `git archive --format=tar "$1" | tar -x -C "$2"`, "export", o.rev, src); err != nil {
			return "", err
		}
	}
	if rep.machine.build, err = describeBuild(ctx, root, o.rev); err != nil {
		return "", err
	}
	progressf("building cvmdeploy (go build -o %s .) from %s", b.bin, rep.machine.build)
	if _, err := output(ctx, src, "go", "build", "-o", b.bin, "."); err != nil {
		return "", err
	}
	anvil, err := testnet.AnvilBinary(ctx)
	if err != nil {
		return "", err
	}
	if v, err := output(ctx, root, anvil, "--version"); err == nil {
		rep.machine.anvil = firstLine(v)
	}
	if !o.skipOfficial {
		progressf("installing the official CLI (testnet/install-phala-cli.sh)")
		if b.phala, err = output(ctx, root, "bash", filepath.Join("testnet", "install-phala-cli.sh")); err != nil {
			return "", err
		}
		rep.machine.phala = phalaVersion(b.phala)
		if v, err := output(ctx, root, "node", "--version"); err == nil {
			rep.machine.node = v
		}
	}

	for _, mode := range []string{modeAuto, modeBlock} {
		if err := b.measureChain(ctx, rep, mode); err != nil {
			return "", err
		}
	}

	if rep.help, rep.offHelp, err = b.measureHelp(ctx); err != nil {
		return "", err
	}
	progressf("env encryption: go test -run=^$ -bench=^BenchmarkEncryptEnv1MiB$ -benchmem ./kms/")
	if rep.enc, err = benchEncrypt(ctx, src); err != nil {
		return "", err
	}
	rep.machine.loadEnd = loadAvg()
	rep.elapsed = time.Since(startedAt)
	return rep.markdown(), nil
}

// measureChain runs every measurement of one chain mode: on automine one
// testnet; at one block per second o.stacks1s of them, then the batch.
func (b *bench) measureChain(ctx context.Context, rep *report, mode string) error {
	o := b.o
	cfg := testnet.LocalnetConfig{}
	stacks := 1
	nOurs, nOff, nCount, nOffCount := o.nAuto, o.nOffAuto, o.nCount, o.nOffCount
	if mode == modeBlock {
		cfg.BlockTime = time.Second
		stacks = o.stacks1s
		nOurs, nOff = o.nBlock, o.nOffBlock
	}
	if b.phala == "" {
		nOff, nOffCount = 0, 0
	}
	ours := &modeResult{calls: map[string]int{}}
	off := &modeResult{calls: map[string]int{}}
	rep.ours[mode], rep.official[mode] = ours, off
	// Each anvil at one block per second mines at its own phase of the
	// wall-clock second (its interval timer starts with the process), and
	// cvmdeploy's next-block estimate reads whole-second timestamps: the
	// runs are spread over anvils started at evenly spaced phases.
	var shift time.Duration // start-to-first-block offset, learnt on the first anvil
	for k := 0; k < stacks; k++ {
		if mode == modeBlock {
			target := (time.Duration(k)*time.Second + time.Second/2) / time.Duration(stacks)
			if err := sleepUntilPhase(ctx, target-shift); err != nil {
				return err
			}
		}
		progressf("%s: starting anvil, the KMS, the local cloud and the counting proxy (%d/%d)", mode, k+1, stacks)
		startPhase := phaseOf(time.Now())
		st, err := b.startStack(ctx, mode, cfg)
		if err != nil {
			return err
		}
		if mode == modeBlock {
			if err = st.nextBlock(ctx); err == nil {
				p := phaseOf(time.Now())
				rep.phases = append(rep.phases, p)
				if k == 0 {
					shift = (p - startPhase + time.Second) % time.Second
				}
				progressf("%s: blocks arrive %d ms into each wall-clock second", mode, p.Milliseconds())
			}
		}
		if err == nil {
			err = b.measureMode(ctx, st, ours, off, share(nOurs, stacks, k), share(nOff, stacks, k), share(nCount, stacks, k), share(nOffCount, stacks, k))
		}
		if err == nil && mode == modeBlock && k == stacks-1 {
			rep.batch, err = b.measureBatch(ctx, st)
		}
		st.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// prepareApp writes the example app where both tools read it.
func (b *bench) prepareApp() error {
	b.officialDir = filepath.Join(b.tmp, "app")
	if err := os.MkdirAll(b.officialDir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"docker-compose.yml", ".env"} {
		data, err := os.ReadFile(filepath.Join(b.root, "testnet", "example", f))
		if err != nil {
			return fmt.Errorf("the example app: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.officialDir, f), data, 0o600); err != nil {
			return err
		}
	}
	b.compose = filepath.Join(b.officialDir, "docker-compose.yml")
	b.envFile = filepath.Join(b.officialDir, ".env")
	return nil
}

func (b *bench) startStack(ctx context.Context, mode string, cfg testnet.LocalnetConfig) (*stack, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocalnet(sctx, cfg)
	if err != nil {
		return nil, err
	}
	st := &stack{mode: mode, ln: ln}
	// No rules: the proxy only counts. It lives as long as ctx.
	if st.proxy, err = rpcproxy.Start(ctx, rpcproxy.Config{Upstream: ln.RPCURL}); err != nil {
		st.close()
		return nil, err
	}
	if st.eth, err = ethclient.DialContext(ctx, ln.RPCURL); err != nil {
		st.close()
		return nil, err
	}
	b.devKeyHex = hex.EncodeToString(crypto.FromECDSA(ln.DevAccount.PrivateKey))
	return st, nil
}

// offsets are the start phases, in a seeded random order, that spread n
// runs evenly over one block interval: run i starts offsets[i] after a new
// block. Back-to-back runs would start at whatever phase of the block clock
// the previous run's length left them at, and the figure would depend on
// that phase instead of averaging over it. On automine they are zero.
func (b *bench) offsets(st *stack, n int) []time.Duration {
	out := make([]time.Duration, n)
	if st.mode != modeBlock {
		return out
	}
	for i, k := range b.rng.Perm(n) {
		out[i] = time.Duration(k) * time.Second / time.Duration(n)
	}
	return out
}

// before waits until the next run may start: settle, then at one block per
// second the next block and the run's phase offset after it.
func (b *bench) before(ctx context.Context, st *stack, offset time.Duration) error {
	if err := sleep(ctx, settle); err != nil {
		return err
	}
	if st.mode != modeBlock {
		return nil
	}
	if err := st.nextBlock(ctx); err != nil {
		return err
	}
	return sleep(ctx, offset)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// share is stack k's part of n runs spread over stacks.
func share(n, stacks, k int) int {
	q := n / stacks
	if k < n%stacks {
		q++
	}
	return q
}

// phaseOf is how far into its wall-clock second t is.
func phaseOf(t time.Time) time.Duration {
	return time.Duration(t.UnixNano() % int64(time.Second))
}

// sleepUntilPhase sleeps until the wall clock is phase into a second.
func sleepUntilPhase(ctx context.Context, phase time.Duration) error {
	phase = ((phase % time.Second) + time.Second) % time.Second
	d := (phase - phaseOf(time.Now()) + time.Second) % time.Second
	return sleep(ctx, d)
}

// nextBlock returns within a few milliseconds of the chain's next block,
// asking the node directly (not through the counting proxy).
func (s *stack) nextBlock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	first, err := s.eth.BlockNumber(ctx)
	if err != nil {
		return fmt.Errorf("wait for a block: %w", err)
	}
	for {
		if err := sleep(ctx, 3*time.Millisecond); err != nil {
			return fmt.Errorf("wait for a block after %d: %w", first, err)
		}
		n, err := s.eth.BlockNumber(ctx)
		if err != nil {
			return fmt.Errorf("wait for a block: %w", err)
		}
		if n > first {
			return nil
		}
	}
}

// measureMode times both tools on one chain, interleaved so that both see
// the same machine load, then counts their JSON-RPC requests through the
// proxy. One untimed warm-up run each comes first.
func (b *bench) measureMode(ctx context.Context, st *stack, ours, off *modeResult, nOurs, nOff, nCount, nOffCount int) error {
	progressf("%s: warm-up", st.mode)
	if _, err := b.oursDeploy(ctx, st, st.ln.RPCURL); err != nil {
		return err
	}
	if nOff > 0 || nOffCount > 0 {
		if err := b.before(ctx, st, 0); err != nil {
			return err
		}
		if _, err := b.officialDeploy(ctx, st, st.ln.RPCURL); err != nil {
			return err
		}
	}

	oursOff, offOff := b.offsets(st, nOurs), b.offsets(st, nOff)
	for i := 0; i < max(nOurs, nOff); i++ {
		if i < nOurs {
			if err := b.before(ctx, st, oursOff[i]); err != nil {
				return err
			}
			s, err := b.oursDeploy(ctx, st, st.ln.RPCURL)
			if err != nil {
				return err
			}
			s.offset = oursOff[i]
			ours.timed = append(ours.timed, s)
			progressf("%s: cvmdeploy deploy %d/%d: %d ms", st.mode, i+1, nOurs, s.wall.Milliseconds())
		}
		if i < nOff {
			if err := b.before(ctx, st, offOff[i]); err != nil {
				return err
			}
			s, err := b.officialDeploy(ctx, st, st.ln.RPCURL)
			if err != nil {
				return err
			}
			s.offset = offOff[i]
			off.timed = append(off.timed, s)
			progressf("%s: phala deploy %d/%d: %d ms", st.mode, i+1, nOff, s.wall.Milliseconds())
		}
	}

	count := func(m *modeResult, n int, deploy func(context.Context, *stack, string) (sample, error), who string) error {
		for i, d := range b.offsets(st, n) {
			if err := b.before(ctx, st, d); err != nil {
				return err
			}
			st.proxy.ResetStats()
			s, err := deploy(ctx, st, st.proxy.URL())
			if err != nil {
				return err
			}
			stats := st.proxy.Stats()
			m.proxied = append(m.proxied, s)
			m.requests = append(m.requests, stats.HTTPRequests)
			for k, v := range stats.Calls {
				m.calls[k] += v
			}
			progressf("%s: %s deploy through the proxy %d/%d: %d HTTP requests %v", st.mode, who, i+1, n, stats.HTTPRequests, stats.Calls)
		}
		return nil
	}
	if err := count(ours, nCount, b.oursDeploy, "cvmdeploy"); err != nil {
		return err
	}
	return count(off, nOffCount, b.officialDeploy, "phala")
}

func (b *bench) nextName(tag string) string {
	b.seq++
	return fmt.Sprintf("bench-%s-%03d", tag, b.seq)
}

func (b *bench) oursEnv(st *stack) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + b.home,
		"PRIVATE_KEY=" + b.devKeyHex,
		"PHALA_CLOUD_API_PREFIX=" + st.ln.APIPrefix,
		"PHALA_CLOUD_API_KEY=" + st.ln.APIKey,
		"CVMDEPLOY_STATE_DIR=" + b.stateDir,
	}
}

// oursDeploy runs `cvmdeploy deploy --kms ethereum --wait --json` for a
// fresh name against rpcURL and checks that the CVM runs.
func (b *bench) oursDeploy(ctx context.Context, st *stack, rpcURL string) (sample, error) {
	name := b.nextName("ours")
	res, err := runTimed(ctx, oursTimeout, b.tmp, b.oursEnv(st), b.bin,
		"deploy", "--kms", "ethereum", "--wait", "--json", "--name", name,
		"--compose", b.compose, "--env-file", b.envFile, "--rpc-url", rpcURL)
	if err != nil {
		return sample{}, err
	}
	var out struct {
		Status string `json:"status"`
		AppID  string `json:"app_id"`
		Name   string `json:"name"`
	}
	if err := json.Unmarshal([]byte(res.stdout.String()), &out); err != nil {
		return sample{}, fmt.Errorf("cvmdeploy deploy %s: stdout is not one JSON document: %w", name, err)
	}
	if out.Status != "running" || out.Name != name || !common.IsHexAddress(out.AppID) {
		return sample{}, fmt.Errorf("cvmdeploy deploy %s: result status %q, name %q, app id %q", name, out.Status, out.Name, out.AppID)
	}
	return sample{wall: res.wall, first: res.stderr.first, lines: res.stderr.lines}, nil
}

// officialDeploy runs the official CLI's on-chain deploy exactly as
// testnet/officialcli_test.go does, for a fresh name against rpcURL.
func (b *bench) officialDeploy(ctx context.Context, st *stack, rpcURL string) (sample, error) {
	name := b.nextName("phala")
	res, err := runTimed(ctx, officialTimeout, b.officialDir, b.officialEnv(st), b.phala,
		"deploy", "--kms", "ethereum", "--private-key", "0x"+b.devKeyHex, "--rpc-url", rpcURL,
		"--json", "--no-dev-os", "-n", name, "-c", "docker-compose.yml", "-e", ".env")
	if err != nil {
		return sample{}, err
	}
	// stdout is "Provisioning CVM <name>..." and then the JSON document.
	out := res.stdout.String()
	i := strings.Index(out, "{")
	if i < 0 {
		return sample{}, fmt.Errorf("phala deploy %s: no JSON on stdout:\n%s", name, tail(out))
	}
	var doc struct {
		Success bool   `json:"success"`
		Name    string `json:"name"`
		AppID   string `json:"app_id"`
		VMUUID  string `json:"vm_uuid"`
	}
	if err := json.Unmarshal([]byte(out[i:]), &doc); err != nil {
		return sample{}, fmt.Errorf("phala deploy %s: %w", name, err)
	}
	if !doc.Success || doc.Name != name || len(strings.TrimPrefix(doc.AppID, "0x")) != 40 || doc.VMUUID == "" {
		return sample{}, fmt.Errorf("phala deploy %s: result success=%v name %q app id %q", name, doc.Success, doc.Name, doc.AppID)
	}
	return sample{wall: res.wall, first: res.stdout.first, lines: res.stdout.lines}, nil
}

func (b *bench) officialEnv(st *stack) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + b.home,
		"PHALA_CLOUD_API_PREFIX=" + st.ln.APIPrefix,
		"PHALA_CLOUD_API_KEY=" + st.ln.APIKey,
		"PHALA_DISABLE_UPDATE_CHECK=1",
		"CI=1",
	}
}

// measureBatch deploys b.o.batchApps apps with one `deploy --batch` through
// the proxy and reads where their AppAuths landed.
func (b *bench) measureBatch(ctx context.Context, st *stack) (batchResult, error) {
	r := batchResult{apps: b.o.batchApps}
	dir := filepath.Join(b.tmp, "batch")
	var apps []map[string]any
	for i := 0; i < r.apps; i++ {
		sub := fmt.Sprintf("app%03d", i)
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return r, err
		}
		compose := fmt.Sprintf("services:\n  web:\n    image: ghcr.io/example/svc-%d:1.0\n    environment:\n      - TOKEN=${TOKEN}\n    ports:\n      - \"80:80\"\n", i)
		if err := os.WriteFile(filepath.Join(dir, sub, "docker-compose.yml"), []byte(compose), 0o600); err != nil {
			return r, err
		}
		if err := os.WriteFile(filepath.Join(dir, sub, ".env"), []byte(fmt.Sprintf("TOKEN=bench-batch-token-%d\n", i)), 0o600); err != nil {
			return r, err
		}
		apps = append(apps, map[string]any{
			"name":      fmt.Sprintf("bench-batch-%03d", i),
			"compose":   sub + "/docker-compose.yml",
			"env_files": []string{sub + "/.env"},
		})
	}
	data, err := json.Marshal(map[string]any{"apps": apps})
	if err != nil {
		return r, err
	}
	file := filepath.Join(dir, "batch.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return r, err
	}
	if err := b.before(ctx, st, 0); err != nil {
		return r, err
	}
	progressf("%s: batch of %d apps (deploy --batch --wait)", st.mode, r.apps)
	st.proxy.ResetStats()
	res, err := runTimed(ctx, batchTimeout, b.tmp, b.oursEnv(st), b.bin,
		"deploy", "--batch", file, "--kms", "ethereum", "--wait", "--json", "--rpc-url", st.proxy.URL())
	if err != nil {
		return r, err
	}
	stats := st.proxy.Stats()
	r.wall, r.requests, r.calls = res.wall, stats.HTTPRequests, maps.Clone(stats.Calls)
	var out struct {
		Apps []struct {
			Name        string `json:"name"`
			Status      string `json:"status"`
			BlockNumber uint64 `json:"block_number"`
			Error       string `json:"error"`
		} `json:"apps"`
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
	}
	if err := json.Unmarshal([]byte(res.stdout.String()), &out); err != nil {
		return r, fmt.Errorf("deploy --batch: stdout is not one JSON document: %w", err)
	}
	if len(out.Apps) != r.apps {
		return r, fmt.Errorf("deploy --batch: %d apps in the result, want %d", len(out.Apps), r.apps)
	}
	blocks := map[uint64]bool{}
	r.minBlock = ^uint64(0)
	for _, a := range out.Apps {
		if a.Status == "running" {
			r.running++
		}
		if a.BlockNumber == 0 {
			return r, fmt.Errorf("deploy --batch: app %s has no block number (status %q, error %q)", a.Name, a.Status, a.Error)
		}
		blocks[a.BlockNumber] = true
		r.minBlock, r.maxBlock = min(r.minBlock, a.BlockNumber), max(r.maxBlock, a.BlockNumber)
	}
	r.distinct = len(blocks)
	progressf("%s: batch of %d: %d ms, %d running, AppAuths in blocks %d..%d, %d HTTP requests", st.mode, r.apps, r.wall.Milliseconds(), r.running, r.minBlock, r.maxBlock, r.requests)
	return r, nil
}

// measureHelp times `cvmdeploy --help` and `phala --help`, interleaved,
// after one untimed run of each.
func (b *bench) measureHelp(ctx context.Context) (ours, off []sample, err error) {
	oursEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.home}
	offEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.home, "PHALA_DISABLE_UPDATE_CHECK=1", "CI=1"}
	nOff := b.o.nOffHelp
	if b.phala == "" {
		nOff = 0
	}
	progressf("--help: %d runs of cvmdeploy, %d of phala", b.o.nHelp, nOff)
	for i := -1; i < max(b.o.nHelp, nOff); i++ {
		if i < b.o.nHelp { // i = -1 is the untimed first run
			res, err := runTimed(ctx, helpTimeout, b.tmp, oursEnv, b.bin, "--help")
			if err != nil {
				return nil, nil, err
			}
			if i >= 0 {
				ours = append(ours, sample{wall: res.wall, first: res.stdout.first})
			}
		}
		if nOff > 0 && i < nOff {
			res, err := runTimed(ctx, helpTimeout, b.tmp, offEnv, b.phala, "--help")
			if err != nil {
				return nil, nil, err
			}
			if i >= 0 {
				off = append(off, sample{wall: res.wall, first: res.stdout.first})
			}
		}
	}
	return ours, off, nil
}

var benchLine = regexp.MustCompile(`^BenchmarkEncryptEnv1MiB(-\d+)?\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) MB/s\s+(\d+) B/op\s+(\d+) allocs/op`)

// benchEncrypt runs the kms package's 1 MiB encryption benchmark.
func benchEncrypt(ctx context.Context, root string) (encResult, error) {
	out, err := output(ctx, root, "go", "test", "-run=^$", "-bench=^BenchmarkEncryptEnv1MiB$", "-benchmem", "-count=1", "./kms/")
	if err != nil {
		return encResult{}, err
	}
	for _, line := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		r := encResult{line: strings.Join(strings.Fields(line), " ")}
		fmt.Sscan(m[2], &r.nsPerOp)
		fmt.Sscan(m[3], &r.mbPerS)
		fmt.Sscan(m[4], &r.bytesPerOp)
		fmt.Sscan(m[5], &r.allocsPer)
		return r, nil
	}
	return encResult{}, fmt.Errorf("go test -bench ./kms/: no BenchmarkEncryptEnv1MiB result in:\n%s", tail(out))
}

// findRoot walks up from the working directory to this module's go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/cvmdeploy/cvmdeploy\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run this from inside the cvmdeploy repository (no go.mod of github.com/cvmdeploy/cvmdeploy above the working directory)")
		}
		dir = parent
	}
}

// machineInfo describes where the figures were measured.
type machineInfo struct {
	date      time.Time
	nproc     string
	cpu       string
	kernel    string
	goVersion string
	anvil     string
	node      string
	phala     string
	loadStart string
	loadEnd   string
	build     string // what the binary was built from
}

// describeBuild names the commit the binary is built from and, for the
// working tree, the tracked files that differ from it (other work in
// progress ends up in the binary too).
func describeBuild(ctx context.Context, root, rev string) (string, error) {
	if rev != "" {
		c, err := output(ctx, root, "git", "rev-parse", "--short", rev+"^{commit}")
		if err != nil {
			return "", err
		}
		return "commit " + c + " (a clean export)", nil
	}
	c, err := output(ctx, root, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "", err
	}
	st, err := output(ctx, root, "git", "status", "--porcelain", "--untracked-files=all")
	if err != nil {
		return "", err
	}
	var changed []string
	for _, line := range strings.Split(st, "\n") {
		if len(line) > 3 && strings.HasSuffix(line, ".go") {
			changed = append(changed, strings.TrimSpace(line[3:]))
		}
	}
	if len(changed) == 0 {
		return "commit " + c + " (working tree, no uncommitted Go changes)", nil
	}
	return fmt.Sprintf("commit %s plus uncommitted changes to %d Go files (%s)", c, len(changed), strings.Join(changed, ", ")), nil
}

func readMachine(ctx context.Context, root string) (machineInfo, error) {
	m := machineInfo{date: time.Now().UTC(), loadStart: loadAvg(), nproc: fmt.Sprint(runtime.NumCPU())}
	if v, err := output(ctx, root, "nproc"); err == nil {
		m.nproc = v
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = runtime.GOOS + " " + strings.TrimSpace(string(data))
	} else {
		m.kernel = runtime.GOOS
	}
	v, err := output(ctx, root, "go", "version")
	if err != nil {
		return m, err
	}
	m.goVersion = strings.TrimPrefix(v, "go version ")
	return m, nil
}

// loadAvg is the 1-minute load average (other users of a shared machine
// show up here).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// phalaVersion reads the installed package's version next to its bin link.
func phalaVersion(bin string) string {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "..", "phala", "package.json"))
	if err != nil {
		return "phala (version unknown)"
	}
	var p struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(data, &p) != nil || p.Version == "" {
		return "phala (version unknown)"
	}
	return "phala " + p.Version
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

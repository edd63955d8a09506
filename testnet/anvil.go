package testnet

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
)

// DefaultChainID is the chain id of a local chain when the config leaves it
// zero; it is anvil's own default, so tools that know "anvil = 31337" work
// against either chain.
const DefaultChainID = 31337

const (
	defaultAnvilStartTimeout = 10 * time.Second
	defaultAnvilStopTimeout  = 5 * time.Second
)

// DevAccount is a funded account of a local chain together with its key.
// Its String and GoString methods print the address only, so a DevAccount
// (or a slice of them) can go through fmt or a logger without leaking the key.
type DevAccount struct {
	Address    common.Address
	PrivateKey *ecdsa.PrivateKey
}

// String returns the address.
func (a DevAccount) String() string { return a.Address.Hex() }

// GoString keeps %#v from dumping the key.
func (a DevAccount) GoString() string { return "testnet.DevAccount{" + a.Address.Hex() + "}" }

// Chain is a running local chain, anvil or the embedded one, as the rest of
// the toolkit needs it.
type Chain interface {
	RPCURL() string
	ChainID() uint64
	Accounts() []DevAccount
	Close() error
}

var _ Chain = (*Anvil)(nil)

// AnvilConfig says how to start anvil. The zero value is an automining chain
// 31337 with anvil's ten default accounts.
type AnvilConfig struct {
	// Binary is the anvil executable; empty means AnvilBinary's choice.
	Binary string
	// ChainID is passed as --chain-id. Zero means 31337, except with ForkURL,
	// where zero keeps the forked chain's id.
	ChainID uint64
	// BlockTime mines a block every BlockTime (fractions of a second are
	// fine); zero means automine, one block per transaction.
	BlockTime time.Duration
	// ForkURL starts anvil as a fork of that chain (--fork-url). It often
	// carries an API key, so it is redacted from the captured log and errors.
	ForkURL string
	// ForkBlockNumber pins the fork (--fork-block-number); zero means latest.
	ForkBlockNumber uint64
	// Accounts is the number of dev accounts; zero means anvil's default (10).
	Accounts int
	// Balance is each dev account's balance in whole ether; zero means
	// anvil's default (10000).
	Balance uint64
	// Args are extra anvil arguments, appended last. The harness owns
	// --host, --port and the output format, so those are refused.
	Args []string
	// LogOutput, when set, receives anvil's output line by line as it comes,
	// redacted like Log.
	LogOutput io.Writer
	// StartTimeout bounds the wait for anvil's "Listening on" line; zero
	// means 10 s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGINT before it kills
	// anvil; zero means 5 s.
	StopTimeout time.Duration
}

// flags the harness sets or parses itself; letting Args override them would
// break the port and key parsing.
var reservedAnvilFlags = map[string]bool{
	"--host": true, "--port": true, "-p": true,
	"--json": true, "--quiet": true, "-q": true, "--color": true,
	"--config-out": true, "--ipc": true, "--ipcpath": true,
}

// Check reports a config anvil would reject, or that would break the harness.
func (c AnvilConfig) Check() error {
	if c.BlockTime < 0 {
		return fmt.Errorf("anvil block time %v is negative", c.BlockTime)
	}
	if c.Accounts < 0 {
		return fmt.Errorf("anvil accounts %d is negative", c.Accounts)
	}
	if c.StartTimeout < 0 || c.StopTimeout < 0 {
		return errors.New("anvil start/stop timeouts must not be negative")
	}
	if c.ForkURL != "" {
		u, err := url.Parse(c.ForkURL)
		if err != nil {
			// url's error quotes the URL, which may carry an API key.
			return errors.New("anvil fork URL does not parse as a URL")
		}
		switch u.Scheme {
		case "http", "https", "ws", "wss":
		default:
			return fmt.Errorf("anvil fork URL scheme %q is not http(s) or ws(s)", u.Scheme)
		}
	} else if c.ForkBlockNumber != 0 {
		return errors.New("anvil fork block number needs a fork URL")
	}
	for _, a := range c.Args {
		name, _, _ := strings.Cut(a, "=")
		if reservedAnvilFlags[name] {
			return fmt.Errorf("anvil argument %s is set by the harness and cannot be overridden", name)
		}
	}
	return nil
}

// args builds anvil's command line (without the binary).
func (c AnvilConfig) args() []string {
	args := []string{"--host", "127.0.0.1", "--port", "0", "--color", "never"}
	switch {
	case c.ChainID != 0:
		args = append(args, "--chain-id", strconv.FormatUint(c.ChainID, 10))
	case c.ForkURL == "":
		args = append(args, "--chain-id", strconv.FormatUint(DefaultChainID, 10))
	}
	if c.BlockTime > 0 {
		args = append(args, "--block-time", strconv.FormatFloat(c.BlockTime.Seconds(), 'f', -1, 64))
	}
	if c.ForkURL != "" {
		args = append(args, "--fork-url", c.ForkURL)
		if c.ForkBlockNumber != 0 {
			args = append(args, "--fork-block-number", strconv.FormatUint(c.ForkBlockNumber, 10))
		}
	}
	if c.Accounts > 0 {
		args = append(args, "--accounts", strconv.Itoa(c.Accounts))
	}
	if c.Balance > 0 {
		args = append(args, "--balance", strconv.FormatUint(c.Balance, 10))
	}
	return append(args, c.Args...)
}

// AnvilStartError is returned when anvil does not come up. Log holds its
// captured output (redacted) for debugging.
type AnvilStartError struct {
	Reason string // what went wrong, e.g. "exited before listening"
	Log    string
	Err    error // the underlying error, if any
}

func (e *AnvilStartError) Error() string {
	msg := "anvil did not start: " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	// anvil's last words are usually the actual reason (a bad flag, a fork
	// URL that does not answer); keep the message on one line.
	if last := lastLine(e.Log); last != "" {
		msg += " (anvil said: " + last + ")"
	}
	return msg
}

func (e *AnvilStartError) Unwrap() error { return e.Err }

// Anvil is a running anvil process started by StartAnvil.
type Anvil struct {
	cmd         *exec.Cmd
	rpcURL      string
	chainID     uint64
	accounts    []DevAccount
	log         *lineLog
	stopTimeout time.Duration

	exited     chan struct{} // closed once the process has been reaped
	waitErr    error         // set before exited is closed
	readerDone chan struct{} // closed once the output pipe hit EOF

	stopOnce sync.Once
	stopErr  error
}

// StartAnvil starts anvil on a free 127.0.0.1 port and returns once it
// listens, with its dev accounts and keys parsed from its start-up output.
// ctx bounds the start-up only (including a first-time install by
// AnvilBinary); the process runs until Stop.
func StartAnvil(ctx context.Context, cfg AnvilConfig) (*Anvil, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = AnvilBinary(ctx); err != nil {
			return nil, err
		}
	}
	startTimeout := cmp.Or(cfg.StartTimeout, defaultAnvilStartTimeout)

	redactions := []string{}
	if cfg.ForkURL != "" {
		redactions = append(redactions, cfg.ForkURL)
	}
	a := &Anvil{
		log:         newLineLog(cfg.LogOutput, redactions),
		stopTimeout: cmp.Or(cfg.StopTimeout, defaultAnvilStopTimeout),
		exited:      make(chan struct{}),
		readerDone:  make(chan struct{}),
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start anvil: %w", err)
	}
	// One pipe for stdout and stderr keeps anvil's errors in order with the
	// rest of its output in the captured log.
	a.cmd = exec.Command(bin, cfg.args()...)
	a.cmd.Stdout, a.cmd.Stderr = pw, pw
	a.cmd.SysProcAttr = anvilSysProcAttr()

	parser := &anvilParser{}
	ready := make(chan anvilStartup, 1)
	go a.readOutput(pr, parser, ready)

	started := make(chan error, 1)
	go a.run(started)
	err = <-started
	pw.Close() // the child holds its own copy; ours would keep the reader from seeing EOF
	if err != nil {
		pr.Close()
		return nil, &AnvilStartError{Reason: "could not run " + bin, Err: err}
	}

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var startup anvilStartup
	var failure *AnvilStartError
	select {
	case startup = <-ready:
		if startup.err != nil {
			failure = &AnvilStartError{Reason: "unexpected start-up output", Err: startup.err}
		}
	case <-a.exited:
		// The reader may still be draining anvil's last lines; they are the
		// most useful part of the error.
		<-a.readerDone
		failure = &AnvilStartError{Reason: "exited before listening", Err: a.waitErr}
	case <-timer.C:
		failure = &AnvilStartError{Reason: fmt.Sprintf("no \"Listening on\" line within %v", startTimeout)}
	case <-ctx.Done():
		failure = &AnvilStartError{Reason: "start-up cancelled", Err: ctx.Err()}
	}
	if failure == nil {
		a.rpcURL = "http://" + startup.addr
		a.accounts = startup.accounts
		// Ask the node for its chain id instead of trusting our flags: with a
		// fork and no --chain-id it is the forked chain's, and the answer also
		// proves the RPC server is up.
		if a.chainID, err = rpcChainID(ctx, a.rpcURL); err != nil {
			failure = &AnvilStartError{Reason: "eth_chainId failed", Err: err}
		}
	}
	if failure != nil {
		a.kill()
		failure.Log = a.log.String()
		return nil, failure
	}
	return a, nil
}

// run starts the process and reaps it. The goroutine stays locked to its OS
// thread until the process is gone, because on Linux the child's parent-death
// signal fires when the thread that forked it exits, not the process.
func (a *Anvil) run(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := a.cmd.Start(); err != nil {
		started <- err
		close(a.exited)
		return
	}
	started <- nil
	a.waitErr = a.cmd.Wait()
	close(a.exited)
}

// readOutput captures anvil's output for the log and feeds the start-up
// parser until anvil reports its address.
func (a *Anvil) readOutput(r io.ReadCloser, p *anvilParser, ready chan<- anvilStartup) {
	defer close(a.readerDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		if sent {
			a.log.add(line)
			continue
		}
		redacted, done := p.feed(line)
		// The line goes into the log before Start is released, so a
		// caller that reads Log right after Start sees the whole banner.
		a.log.add(redacted)
		if done {
			ready <- p.result()
			sent = true
		}
	}
	// A scanner error (a line over 1 MiB) must not leave anvil blocked
	// writing to a pipe nobody reads.
	if sc.Err() != nil {
		_, _ = io.Copy(io.Discard, r)
	}
}

// RPCURL is anvil's HTTP JSON-RPC endpoint, http://127.0.0.1:PORT.
func (a *Anvil) RPCURL() string { return a.rpcURL }

// ChainID is the chain id anvil reports over RPC.
func (a *Anvil) ChainID() uint64 { return a.chainID }

// Accounts are anvil's funded dev accounts with the keys it printed, in
// anvil's order. The slice is a copy.
func (a *Anvil) Accounts() []DevAccount { return append([]DevAccount(nil), a.accounts...) }

// Log returns anvil's output so far with private keys, the mnemonic and the
// fork URL redacted; long runs keep the start-up banner and the latest lines.
func (a *Anvil) Log() string { return a.log.String() }

// Done is closed when the anvil process has exited, for whatever reason.
func (a *Anvil) Done() <-chan struct{} { return a.exited }

// Stop interrupts anvil, kills it if it has not exited after the stop
// timeout, and reaps it, so no process or zombie is left. It is safe to call
// more than once. It returns an error if anvil had already died on its own.
func (a *Anvil) Stop() error {
	a.stopOnce.Do(func() {
		select {
		case <-a.exited:
			if a.waitErr != nil {
				a.stopErr = fmt.Errorf("anvil had exited before Stop: %w", a.waitErr)
			} else {
				a.stopErr = errors.New("anvil had exited before Stop")
			}
			<-a.readerDone
			return
		default:
		}
		_ = a.cmd.Process.Signal(os.Interrupt)
		timer := time.NewTimer(a.stopTimeout)
		defer timer.Stop()
		select {
		case <-a.exited:
		case <-timer.C:
			a.log.add(fmt.Sprintf("[harness] anvil still running %v after SIGINT; killing it", a.stopTimeout))
			_ = a.cmd.Process.Kill()
			<-a.exited
		}
		<-a.readerDone
	})
	return a.stopErr
}

// Close is Stop, so an Anvil is an io.Closer like the embedded devchain.Chain.
func (a *Anvil) Close() error { return a.Stop() }

// kill ends a process that failed to start properly.
func (a *Anvil) kill() {
	select {
	case <-a.exited:
	default:
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
	<-a.readerDone
	a.stopOnce.Do(func() {})
}

// anvilStartup is what the start-up banner told us.
type anvilStartup struct {
	addr     string
	accounts []DevAccount
	err      error
}

// anvilParser reads anvil's start-up banner: sections headed by a title line
// and a line of '=', then "Listening on HOST:PORT".
type anvilParser struct {
	section   string
	prev      string
	addresses map[int]common.Address
	keys      map[int]*ecdsa.PrivateKey
	addr      string
	err       error
}

var (
	anvilIndexedAddress = regexp.MustCompile(`^\((\d+)\)\s+(0x[0-9a-fA-F]{40})\b`)
	anvilIndexedKey     = regexp.MustCompile(`^\((\d+)\)\s+(0x[0-9a-fA-F]{64})\s*$`)
	anvilListening      = regexp.MustCompile(`^Listening on (\S+:\d+)\s*$`)
)

// feed takes one line of output and returns it redacted for the log, and
// whether the banner is complete.
func (p *anvilParser) feed(line string) (string, bool) {
	trimmed := strings.TrimSpace(line)
	if len(trimmed) >= 3 && strings.Trim(trimmed, "=") == "" {
		p.section = p.prev
		return line, false
	}
	if trimmed != "" {
		p.prev = trimmed
	}
	switch {
	case p.section == "Available Accounts":
		if m := anvilIndexedAddress.FindStringSubmatch(trimmed); m != nil {
			i, _ := strconv.Atoi(m[1])
			if p.addresses == nil {
				p.addresses = map[int]common.Address{}
			}
			p.addresses[i] = common.HexToAddress(m[2])
		}
	case p.section == "Private Keys":
		if m := anvilIndexedKey.FindStringSubmatch(trimmed); m != nil {
			i, _ := strconv.Atoi(m[1])
			key, err := crypto.HexToECDSA(strings.TrimPrefix(m[2], "0x"))
			if err != nil && p.err == nil {
				// Do not wrap err: its text could quote key material.
				p.err = fmt.Errorf("private key (%d) in anvil's output does not parse", i)
			}
			if err == nil {
				if p.keys == nil {
					p.keys = map[int]*ecdsa.PrivateKey{}
				}
				p.keys[i] = key
			}
			return fmt.Sprintf("(%d) 0x<redacted>", i), false
		}
	case p.section == "Wallet":
		if strings.HasPrefix(trimmed, "Mnemonic:") {
			return "Mnemonic: <redacted>", false
		}
	}
	if m := anvilListening.FindStringSubmatch(trimmed); m != nil {
		p.addr = m[1]
		return line, true
	}
	return line, false
}

// result pairs addresses with keys and checks each key derives its address,
// so a format change in anvil's banner cannot hand out a wrong key silently.
func (p *anvilParser) result() anvilStartup {
	r := anvilStartup{addr: p.addr, err: p.err}
	if r.err != nil {
		return r
	}
	if len(p.keys) == 0 {
		r.err = errors.New("no private keys found in anvil's output")
		return r
	}
	if len(p.keys) != len(p.addresses) {
		r.err = fmt.Errorf("anvil printed %d accounts but %d private keys", len(p.addresses), len(p.keys))
		return r
	}
	for i := range len(p.keys) {
		key, ok := p.keys[i]
		addr, ok2 := p.addresses[i]
		if !ok || !ok2 {
			r.err = fmt.Errorf("anvil's account list has no entry (%d)", i)
			return r
		}
		if derived := crypto.PubkeyToAddress(key.PublicKey); derived != addr {
			r.err = fmt.Errorf("private key (%d) in anvil's output is for %s, not the listed %s", i, derived, addr)
			return r
		}
		r.accounts = append(r.accounts, DevAccount{Address: addr, PrivateKey: key})
	}
	return r
}

// rpcChainID asks an RPC endpoint for eth_chainId with a plain HTTP POST.
func rpcChainID(ctx context.Context, rpcURL string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rpcURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Result *hexutil.Uint64 `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return 0, fmt.Errorf("eth_chainId answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if out.Error != nil {
		return 0, fmt.Errorf("eth_chainId: %s", out.Error.Message)
	}
	if out.Result == nil {
		return 0, errors.New("eth_chainId: empty result")
	}
	return uint64(*out.Result), nil
}

// lineLog keeps a process's output for debugging: the first lines (anvil's
// banner) and a ring of the latest ones, so a long test cannot grow it
// without bound.
type lineLog struct {
	mu         sync.Mutex
	head       []string
	tail       []string
	next       int // ring position in tail once it is full
	dropped    int
	out        io.Writer
	redactions []string
}

const (
	lineLogHead = 100
	lineLogTail = 1000
)

func newLineLog(out io.Writer, redactions []string) *lineLog {
	return &lineLog{out: out, redactions: redactions}
}

func (l *lineLog) add(line string) {
	for _, s := range l.redactions {
		line = strings.ReplaceAll(line, s, "<redacted>")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.out != nil {
		_, _ = io.WriteString(l.out, line+"\n")
	}
	switch {
	case len(l.head) < lineLogHead:
		l.head = append(l.head, line)
	case len(l.tail) < lineLogTail:
		l.tail = append(l.tail, line)
	default:
		l.tail[l.next] = line
		l.next = (l.next + 1) % lineLogTail
		l.dropped++
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, s := range l.head {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if l.dropped > 0 {
		fmt.Fprintf(&b, "[... %d lines dropped ...]\n", l.dropped)
	}
	for i := range l.tail {
		b.WriteString(l.tail[(l.next+i)%len(l.tail)])
		b.WriteByte('\n')
	}
	return b.String()
}

// lastLine returns the last non-blank line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if t := strings.TrimSpace(lines[i]); t != "" {
			return t
		}
	}
	return ""
}

// AnvilVersion is the anvil release the harness installs and expects.
const AnvilVersion = "1.7.1"

// modulePath identifies this repository's go.mod when looking for the
// repository root (and its .tools folder).
const modulePath = "github.com/cvmdeploy/cvmdeploy"

// ErrAnvilNotFound is returned by AnvilBinary when no anvil could be found or
// installed.
var ErrAnvilNotFound = errors.New("anvil not found")

// installAnvilScript is install-anvil.sh itself, so a binary built from this
// repository can install anvil on a machine without the source tree.
//
//go:embed install-anvil.sh
var installAnvilScript string

var anvilBinaryCache struct {
	sync.Mutex
	path string
}

// AnvilBinary finds an anvil to run, in this order:
//   - $ANVIL_BIN, when set (an error if it is not an executable file);
//   - anvil AnvilVersion already installed by install-anvil.sh in the
//     repository's .tools/anvil (the repository is the nearest go.mod of this
//     module at or above the working directory), or in the user cache folder
//     (e.g. ~/.cache/cvmdeploy/anvil) when the working directory is not in
//     the repository;
//   - the same install run now (needs npm; parallel test packages are
//     serialised by the script's lock file);
//   - anvil on PATH, whatever its version.
//
// A success is cached for the life of the process. Nothing found is
// ErrAnvilNotFound, with the install failure in the message.
func AnvilBinary(ctx context.Context) (string, error) {
	return FindAnvil(ctx, nil)
}

// FindAnvil is AnvilBinary, telling progress (when not nil) about an install
// it runs: the install script's and npm's own lines.
func FindAnvil(ctx context.Context, progress io.Writer) (string, error) {
	if p := os.Getenv("ANVIL_BIN"); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("ANVIL_BIN: %w", err)
		}
		return p, nil
	}
	anvilBinaryCache.Lock()
	defer anvilBinaryCache.Unlock()
	if anvilBinaryCache.path != "" {
		return anvilBinaryCache.path, nil
	}

	dir, err := anvilInstallDir()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAnvilNotFound, err)
	}
	installed := filepath.Join(dir, "node_modules", "@foundry-rs",
		"anvil-"+runtime.GOOS+"-"+runtime.GOARCH, "bin", "anvil")
	if anvilVersionIs(ctx, installed, AnvilVersion) {
		anvilBinaryCache.path = installed
		return installed, nil
	}
	path, installErr := InstallAnvil(ctx, dir, progress)
	if installErr == nil {
		anvilBinaryCache.path = path
		return path, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("%w: %w", ErrAnvilNotFound, installErr)
	}
	if p, err := exec.LookPath("anvil"); err == nil {
		anvilBinaryCache.path = p
		return p, nil
	}
	return "", fmt.Errorf("%w: %w; no anvil on PATH either", ErrAnvilNotFound, installErr)
}

// InstallAnvil runs install-anvil.sh (the copy embedded in this package) to
// install anvil AnvilVersion into dir and returns the binary's path. It does
// nothing but check the version when it is already there. progress, if not
// nil, receives the script's and npm's progress lines.
func InstallAnvil(ctx context.Context, dir string, progress io.Writer) (string, error) {
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	cmd := exec.CommandContext(ctx, "bash", "-c", installAnvilScript, "install-anvil.sh")
	cmd.Env = append(os.Environ(), "ANVIL_INSTALL_DIR="+dir)
	cmd.Stdout = &stdout
	if progress != nil {
		cmd.Stderr = io.MultiWriter(stderr, progress)
	} else {
		cmd.Stderr = stderr
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install anvil %s into %s: %w (%s)", AnvilVersion, dir, err, lastLine(stderr.String()))
	}
	path := strings.TrimSpace(stdout.String())
	if err := checkExecutable(path); err != nil {
		return "", fmt.Errorf("install anvil %s: script printed %q: %w", AnvilVersion, path, err)
	}
	return path, nil
}

// anvilInstallDir is <repo>/.tools/anvil inside this repository, else a
// folder in the user cache (a cvmdeploy binary run outside the repository).
func anvilInstallDir() (string, error) {
	if root, ok := repoRoot(); ok {
		return filepath.Join(root, ".tools", "anvil"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no repository and no user cache folder to install anvil into: %w", err)
	}
	return filepath.Join(cache, "cvmdeploy", "anvil"), nil
}

// repoRoot finds this repository's root: the nearest go.mod of this module
// at or above the working directory (go run and go test run there). It does
// not look where the source files were compiled: for a binary built by
// go install that is the read-only module cache.
func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if isThisModule(dir) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// isThisModule reports whether dir holds this module's go.mod.
func isThisModule(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}

// anvilVersionIs reports whether bin runs and its --version is exactly want.
func anvilVersionIs(ctx context.Context, bin, want string) bool {
	if checkExecutable(bin) != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first) == "anvil Version: "+want
}

func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// TB is the part of testing.TB the test helpers use; an interface keeps the
// testing package out of binaries that import testnet.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}

// NewTestAnvil starts anvil for a test and stops it in t.Cleanup. A missing
// anvil is a test failure, never a skip: AnvilBinary installs it when it can.
// When the test fails, anvil's (redacted) log is printed to help debugging.
func NewTestAnvil(t TB, cfg AnvilConfig) *Anvil {
	t.Helper()
	// A first-time npm install may take a while; the start-up itself keeps
	// its own StartTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, err := StartAnvil(ctx, cfg)
	if err != nil {
		var se *AnvilStartError
		if errors.As(err, &se) && se.Log != "" {
			t.Logf("anvil output:\n%s", se.Log)
		}
		t.Fatalf("start anvil: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("anvil output (%s):\n%s", a.RPCURL(), a.Log())
		}
		if err := a.Stop(); err != nil {
			t.Errorf("stop anvil: %v", err)
		}
	})
	return a
}

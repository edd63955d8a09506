// Command rpcproxy runs the rpcproxy fault-injecting JSON-RPC proxy in front of a
// local node until interrupted.
//
// It prints the proxy URL as the first line of stdout, logs each injected fault on
// stderr, and on SIGINT/SIGTERM prints the final counters as one JSON line on stdout.
//
//	rpcproxy -upstream http://127.0.0.1:8545 -seed 7 \
//	  -rules 'eth_sendRawTransaction:drop=0.1,delay=50ms;*:429=0.05,503=0.05,reset=0.05'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/cvmdeploy/cvmdeploy/testnet/rpcproxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code (0 ok, 1 failure, 2 usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The proxy logs faults from its handler goroutines while run writes
	// its own lines: one lock keeps a caller's writer safe from both.
	stderr = &lockedWriter{w: stderr}
	fs := flag.NewFlagSet("rpcproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	upstream := fs.String("upstream", "", "JSON-RPC `URL` to forward to; loopback only, e.g. http://127.0.0.1:8545")
	listen := fs.String("listen", rpcproxy.DefaultListen, "loopback `address` to listen on")
	seed := fs.Int64("seed", 1, "seed for the fault decisions (same seed and traffic, same faults)")
	rules := fs.String("rules", "", "fault `rules`: method:setting,...;... (see testnet/rpcproxy/README.md)\n"+
		"settings: drop=P reset=P 429=P 5xx=P 5NN=P delay=D jitter=D after-forward")
	maxFaults := fs.Int("max-faults", 0, "stop injecting after `N` faults (0: no limit)")
	quiet := fs.Bool("quiet", false, "do not log injected faults")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "rpcproxy: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		return usage(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	parsed, err := rpcproxy.ParseRules(*rules)
	if err != nil {
		return usage(err)
	}
	cfg := rpcproxy.Config{Upstream: *upstream, Listen: *listen, Seed: *seed, Rules: parsed, MaxFaults: *maxFaults}
	if !*quiet {
		cfg.Logf = log.New(stderr, "", log.Ltime|log.Lmicroseconds).Printf
	}
	if err := cfg.Check(); err != nil {
		return usage(err)
	}

	p, err := rpcproxy.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "rpcproxy: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, p.URL())
	fmt.Fprintf(stderr, "rpcproxy: %s -> %s, seed %d, rules %q\n", p.URL(), *upstream, *seed, rpcproxy.FormatRules(parsed))
	<-ctx.Done()
	p.Close()
	if err := json.NewEncoder(stdout).Encode(p.Stats()); err != nil {
		fmt.Fprintf(stderr, "rpcproxy: %v\n", err)
		return 1
	}
	return 0
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Command benchmark measures cvmdeploy and the official phala CLI against the
// same in-process local testnet (anvil + local Phala Cloud) in one run and
// prints the results as a markdown table.
//
//	go run ./testnet/cmd/benchmark                 # full run, table on stdout
//	go run ./testnet/cmd/benchmark -quick          # small counts, a smoke run
//	go run ./testnet/cmd/benchmark -skip-official  # cvmdeploy only (no npm)
//	go run ./testnet/cmd/benchmark -out bench.md   # also write the markdown to a file
//
// Everything listens on and talks to 127.0.0.1 only; every run has a timeout
// and the counts are fixed, so a run is bounded (a few minutes in full).
// Progress goes to stderr, the markdown to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	quick        bool
	skipOfficial bool
	out          string

	nAuto        int // cvmdeploy deploys on automine
	nBlock       int // cvmdeploy deploys at 1 block/s
	nCount       int // cvmdeploy deploys through the proxy, per chain mode
	nOffAuto     int // official CLI deploys on automine
	nOffBlock    int // official CLI deploys at 1 block/s
	nOffCount    int // official CLI deploys through the proxy, per chain mode
	nHelp        int // cvmdeploy --help runs
	nOffHelp     int // phala --help runs
	batchApps    int // apps in the batch at 1 block/s
	stacks1s     int // anvils the 1 block/s runs are spread over
	seed         int64
	totalTimeout time.Duration
	rev          string // build cvmdeploy from a clean export of this commit ("" = the working tree)
}

// Check rejects counts the report cannot be built from.
func (o options) Check() error {
	var errs []error
	for name, n := range map[string]int{"-n": o.nAuto, "-n-1s": o.nBlock, "-n-count": o.nCount, "-n-help": o.nHelp} {
		if n < 1 || n > 200 {
			errs = append(errs, fmt.Errorf("%s %d: want 1..200", name, n))
		}
	}
	if !o.skipOfficial {
		for name, n := range map[string]int{"-n-official": o.nOffAuto, "-n-official-1s": o.nOffBlock, "-n-official-count": o.nOffCount, "-n-official-help": o.nOffHelp} {
			if n < 1 || n > 50 {
				errs = append(errs, fmt.Errorf("%s %d: want 1..50", name, n))
			}
		}
	}
	if o.stacks1s < 1 || o.stacks1s > 10 {
		errs = append(errs, fmt.Errorf("-anvils-1s %d: want 1..10", o.stacks1s))
	}
	if o.batchApps < 1 || o.batchApps > 200 {
		errs = append(errs, fmt.Errorf("-batch %d: want 1..200 (a batch file holds at most 200 apps)", o.batchApps))
	}
	if o.totalTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout %v: want a positive duration", o.totalTimeout))
	}
	return errors.Join(errs...)
}

func main() {
	o := options{}
	flag.BoolVar(&o.quick, "quick", false, "small counts (a smoke run of every measurement, about a minute)")
	flag.BoolVar(&o.skipOfficial, "skip-official", false, "do not install or run the official phala CLI")
	flag.StringVar(&o.out, "out", "", "also write the markdown to this file")
	flag.IntVar(&o.nAuto, "n", 20, "cvmdeploy deploys timed on anvil automine")
	flag.IntVar(&o.nBlock, "n-1s", 12, "cvmdeploy deploys timed at one block per second")
	flag.IntVar(&o.nCount, "n-count", 5, "cvmdeploy deploys through the counting proxy, per chain mode")
	flag.IntVar(&o.nOffAuto, "n-official", 10, "official CLI deploys timed on anvil automine")
	flag.IntVar(&o.nOffBlock, "n-official-1s", 8, "official CLI deploys timed at one block per second")
	flag.IntVar(&o.nOffCount, "n-official-count", 3, "official CLI deploys through the counting proxy, per chain mode")
	flag.IntVar(&o.nHelp, "n-help", 20, "cvmdeploy --help runs")
	flag.IntVar(&o.nOffHelp, "n-official-help", 10, "phala --help runs")
	flag.IntVar(&o.batchApps, "batch", 50, "apps in the batch deployed at one block per second")
	flag.IntVar(&o.stacks1s, "anvils-1s", 4, "anvils (each with its KMS and cloud) the one-block-per-second runs are spread over, started at evenly spaced phases of the wall-clock second")
	flag.Int64Var(&o.seed, "seed", 1, "seed of the start offsets at one block per second")
	flag.StringVar(&o.rev, "rev", "", "build cvmdeploy from a clean `git archive` of this commit (e.g. HEAD) instead of the working tree")
	flag.DurationVar(&o.totalTimeout, "timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchmark: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.quick {
		// Small counts, except those given explicitly.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]*int{
			"n": &o.nAuto, "n-1s": &o.nBlock, "n-count": &o.nCount,
			"n-official": &o.nOffAuto, "n-official-1s": &o.nOffBlock, "n-official-count": &o.nOffCount,
			"n-help": &o.nHelp, "n-official-help": &o.nOffHelp, "batch": &o.batchApps, "anvils-1s": &o.stacks1s,
		} {
			if !set[name] {
				*v = quickCounts[name]
			}
		}
	}
	if err := o.Check(); err != nil {
		fmt.Fprintf(os.Stderr, "benchmark: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.totalTimeout)
	defer cancel()

	md, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchmark: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchmark: %v\n", err)
			os.Exit(1)
		}
		progressf("wrote %s", o.out)
	}
}

// quickCounts are the -quick run's counts.
var quickCounts = map[string]int{
	"n": 3, "n-1s": 2, "n-count": 1,
	"n-official": 2, "n-official-1s": 1, "n-official-count": 1,
	"n-help": 3, "n-official-help": 2, "batch": 10, "anvils-1s": 2,
}

var startedAt = time.Now()

// progressf prints one progress line on stderr, stamped with the time since
// the start.
func progressf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(startedAt).Seconds(), fmt.Sprintf(format, args...))
}

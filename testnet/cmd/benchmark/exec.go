package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// stampedLine is one output line and when it arrived, counted from just
// before the process was started.
type stampedLine struct {
	at   time.Duration
	text string
}

// stampWriter collects output and stamps every complete line on arrival.
type stampWriter struct {
	start time.Time

	mu    sync.Mutex
	all   bytes.Buffer
	part  []byte
	lines []stampedLine
	first time.Duration // arrival of the first byte; 0 when none came
}

func (w *stampWriter) Write(p []byte) (int, error) {
	at := time.Since(w.start)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.all.Len() == 0 && len(p) > 0 {
		w.first = at
	}
	w.all.Write(p)
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, stampedLine{at: at, text: string(w.part[:i])})
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

func (w *stampWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// execResult is one finished process.
type execResult struct {
	wall   time.Duration // from just before fork/exec to the process being reaped
	stdout *stampWriter
	stderr *stampWriter
}

// runTimed runs bin with args in dir with exactly env, and times it from
// just before the start to the return of Wait: process start-up included,
// as a user in a shell sees it. Errors carry the output's tail, never the
// command line (the official CLI takes the key as an argument).
func runTimed(ctx context.Context, timeout time.Duration, dir string, env []string, bin string, args ...string) (*execResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	res := &execResult{stdout: &stampWriter{start: start}, stderr: &stampWriter{start: start}}
	cmd.Stdout, cmd.Stderr = res.stdout, res.stderr
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
	}
	res.wall = time.Since(start)
	if err != nil {
		what := args[0]
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (after %s)", ctx.Err(), timeout)
		}
		return res, fmt.Errorf("%s %s: %w\nstdout tail:\n%s\nstderr tail:\n%s", shortName(bin), what, err, tail(res.stdout.String()), tail(res.stderr.String()))
	}
	return res, nil
}

// output runs a short command and returns its trimmed stdout.
func output(ctx context.Context, dir string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || stderr.Len() > 0 {
			return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(stderr.String()))
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func shortName(bin string) string {
	if i := strings.LastIndexByte(bin, '/'); i >= 0 {
		return bin[i+1:]
	}
	return bin
}

// tail keeps the last 20 lines of s.
func tail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

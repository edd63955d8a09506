package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxPasswordLen bounds what a prompt reads, so a mistaken paste cannot grow
// the buffer without limit.
const maxPasswordLen = 4096

// readPassword shows prompt on out and reads one line from the terminal in
// with echo off, so the password never appears on screen or in a terminal
// recording. Echo is restored before it returns, also when ctx is cancelled
// (Ctrl-C) while the user is still typing.
func readPassword(ctx context.Context, in *os.File, out io.Writer, prompt string) (string, error) {
	restore, err := echoOff(in)
	if err != nil {
		return "", fmt.Errorf("cannot turn off echo on this terminal (%w): use --password-file", err)
	}
	defer restore()
	fmt.Fprint(out, prompt)
	// The newline the user typed was not echoed; end the prompt's line.
	defer fmt.Fprintln(out)

	type answer struct {
		line []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		// One byte at a time: nothing past the newline is taken from stdin.
		var line []byte
		b := make([]byte, 1)
		for len(line) <= maxPasswordLen {
			n, err := in.Read(b)
			if n == 1 {
				if b[0] == '\n' {
					done <- answer{line: line}
					return
				}
				line = append(line, b[0])
			}
			if err != nil {
				done <- answer{line: line, err: err}
				return
			}
		}
		done <- answer{err: fmt.Errorf("password longer than %d bytes", maxPasswordLen)}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case a := <-done:
		if a.err != nil && !(errors.Is(a.err, io.EOF) && len(a.line) > 0) {
			if errors.Is(a.err, io.EOF) {
				return "", errors.New("no password typed")
			}
			return "", a.err
		}
		return string(bytes.TrimSuffix(a.line, []byte("\r"))), nil
	}
}

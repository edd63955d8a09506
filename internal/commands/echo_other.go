//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package commands

import (
	"errors"
	"os"
)

// echoOff is not implemented here; the prompt then refuses, and
// --password-file remains the way in.
func echoOff(*os.File) (func(), error) {
	return nil, errors.New("not supported on this system")
}

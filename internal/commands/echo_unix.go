//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package commands

import (
	"os"

	"golang.org/x/sys/unix"
)

// echoOff clears the terminal's ECHO flag and returns a function that puts
// the previous settings back. Canonical mode stays on, so the user can still
// edit the line before pressing Enter.
func echoOff(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &quiet); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, ioctlSetTermios, old) }, nil
}

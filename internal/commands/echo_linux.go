package commands

import "golang.org/x/sys/unix"

// The termios ioctls are named differently on Linux and the BSDs.
const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)

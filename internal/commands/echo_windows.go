package commands

import (
	"os"

	"golang.org/x/sys/windows"
)

// echoOff clears the console's echo flag and returns a function that puts
// the previous mode back. Line input and processed input stay on, so the
// user can still edit the line and Ctrl-C still interrupts.
func echoOff(f *os.File) (restore func(), err error) {
	h := windows.Handle(f.Fd())
	var old uint32
	if err := windows.GetConsoleMode(h, &old); err != nil {
		return nil, err
	}
	quiet := old&^windows.ENABLE_ECHO_INPUT | windows.ENABLE_LINE_INPUT | windows.ENABLE_PROCESSED_INPUT
	if err := windows.SetConsoleMode(h, quiet); err != nil {
		return nil, err
	}
	return func() { _ = windows.SetConsoleMode(h, old) }, nil
}

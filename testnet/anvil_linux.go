package testnet

import "syscall"

// anvilSysProcAttr puts anvil in its own process group, so a Ctrl-C meant for
// the Go program reaches the program (which then stops anvil in order), and
// asks the kernel to kill anvil if the program dies without calling Stop (a
// go test timeout, a SIGKILL), so no orphan keeps a port and a core busy.
func anvilSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

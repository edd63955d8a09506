//go:build !linux

package testnet

import "syscall"

// anvilSysProcAttr has no portable equivalent of Linux's parent-death signal;
// elsewhere anvil is only stopped by Stop.
func anvilSysProcAttr() *syscall.SysProcAttr { return nil }

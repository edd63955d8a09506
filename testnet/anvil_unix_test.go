//go:build unix

package testnet

import (
	"errors"
	"syscall"
	"testing"
)

// kill(pid, 0) exists on Unix only; the rest of the anvil tests compile
// everywhere (Windows included, where CI vets them).
func TestAnvilStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	a, err := StartAnvil(t.Context(), AnvilConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pid := a.cmd.Process.Pid
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("anvil pid %d not running after start: %v", pid, err)
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// kill(pid, 0) still succeeds on a zombie, so ESRCH proves the process
	// was reaped too.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("after Stop, kill(%d, 0) = %v, want ESRCH (no process, no zombie)", pid, err)
	}
	select {
	case <-a.Done():
	default:
		t.Error("Done() not closed after Stop")
	}
	if _, err := rpcChainID(t.Context(), a.RPCURL()); err == nil {
		t.Error("anvil still answers RPC after Stop")
	}
	if err := a.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

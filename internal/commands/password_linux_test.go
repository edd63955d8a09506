package commands_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
)

// openPTY returns a pseudo-terminal: the user's side (master) and the
// program's side (the terminal it sees as stdin).
func openPTY(t *testing.T) (user, term *os.File) {
	t.Helper()
	// Non-blocking, so os.NewFile puts it in the runtime poller and read
	// deadlines work on it.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func echoOn(t *testing.T, term *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// waitEchoOff waits until the program has turned echo off, i.e. is at its
// password prompt; typing earlier would be echoed by the terminal.
func waitEchoOff(t *testing.T, term *os.File, exited <-chan struct{}) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); echoOn(t, term); time.Sleep(5 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatal("the CLI ended without prompting for the password")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no password prompt within a minute")
		}
	}
}

// TestKeystorePasswordPrompt types the keystore password on a real
// pseudo-terminal: the CLI prompts on stderr, the password is not echoed,
// the deploy is signed with the keystore's key, and echo is back on after.
func TestKeystorePasswordPrompt(t *testing.T) {
	c := newCLIChain(t)
	kms := c.deployKMS(t)
	const password = "correct horse battery"
	ks := writeKeystore(t, c.ownerKey, password)
	user, term := openPTY(t)

	type result struct {
		code           int
		stdout, stderr string
	}
	exited := make(chan struct{})
	res := make(chan result, 1)
	go func() {
		defer close(exited)
		var out, errb strings.Builder
		code := commands.Run(context.Background(), []string{"cvmdeploy", "app", "deploy", "--rpc-url", c.url, "--keystore", ks, "--kms-contract", kms, "--json"}, term, &out, &errb)
		res <- result{code, out.String(), errb.String()}
	}()
	waitEchoOff(t, term, exited)
	if _, err := user.WriteString(password + "\n"); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "Password for keystore "+ks+": ") {
		t.Errorf("no prompt on stderr: %q", r.stderr)
	}
	if !strings.Contains(r.stdout, c.owner.Hex()) {
		t.Errorf("deploy not signed by the keystore's account %s: %s", c.owner.Hex(), r.stdout)
	}
	if !echoOn(t, term) {
		t.Error("echo left off after the prompt")
	}
	// Whatever the terminal sent back to the user's side: no password.
	if err := user.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := user.Read(buf)
	if strings.Contains(string(buf[:n]), password) {
		t.Errorf("the terminal echoed the password: %q", buf[:n])
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, password) {
			t.Errorf("output holds the password: %q", s)
		}
	}
}

// TestKeystorePasswordPromptInterrupted cancels the run (Ctrl-C) while the
// prompt waits: exit 130, nothing sent, and echo restored.
func TestKeystorePasswordPromptInterrupted(t *testing.T) {
	c := newCLIChain(t)
	kms := c.deployKMS(t)
	ks := writeKeystore(t, c.ownerKey, "pw")
	_, term := openPTY(t)
	before := c.nonce(t, c.owner)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan struct{})
	code := make(chan int, 1)
	go func() {
		defer close(exited)
		var out, errb strings.Builder
		code <- commands.Run(ctx, []string{"cvmdeploy", "app", "deploy", "--rpc-url", c.url, "--keystore", ks, "--kms-contract", kms}, term, &out, &errb)
	}()
	waitEchoOff(t, term, exited)
	cancel()
	if got := <-code; got != commands.ExitInterrupted {
		t.Errorf("exit %d, want %d", got, commands.ExitInterrupted)
	}
	if !echoOn(t, term) {
		t.Error("echo left off after Ctrl-C at the prompt")
	}
	if after := c.nonce(t, c.owner); after != before {
		t.Errorf("nonce %d -> %d: a transaction was sent", before, after)
	}
}

// TestKeystoreWithoutPasswordOffTerminal: a pipe for stdin and no
// --password-file fails at once with a usage error that names the fix.
func TestKeystoreWithoutPasswordOffTerminal(t *testing.T) {
	c := newCLIChain(t)
	ks := writeKeystore(t, c.ownerKey, "pw")
	r := runCLI(t, "pw\n", "app", "deploy", "--rpc-url", c.url, "--keystore", ks, "--kms-contract", c.owner.Hex())
	if r.code != commands.ExitUsage || !strings.Contains(r.stderr, "--password-file") {
		t.Fatalf("exit %d, stderr %q; want a usage error naming --password-file", r.code, r.stderr)
	}
}

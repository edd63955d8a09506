package testnet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"

	"github.com/cvmdeploy/cvmdeploy/testnet/internal/chaintest"
)

func TestAnvilTransferWithKeyFromOutput(t *testing.T) {
	t.Parallel()
	a := NewTestAnvil(t, AnvilConfig{Accounts: 3})
	ctx := t.Context()

	accts := a.Accounts()
	if len(accts) != 3 {
		t.Fatalf("got %d accounts from anvil's output, want 3", len(accts))
	}
	if a.ChainID() != DefaultChainID {
		t.Errorf("ChainID() = %d, want %d", a.ChainID(), DefaultChainID)
	}
	c := chaintest.Dial(t, a.RPCURL())
	id, err := c.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Uint64() != DefaultChainID {
		t.Errorf("eth_chainId = %d, want %d", id, DefaultChainID)
	}
	// The parsed keys must be the ones anvil funded.
	for _, acct := range accts {
		bal, err := c.BalanceAt(ctx, acct.Address, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bal.Sign() == 0 {
			t.Errorf("dev account %s has no balance", acct)
		}
	}
	r := chaintest.CheckTransfer(ctx, t, c, accts[2].PrivateKey)
	// Automine: the transfer is block 1.
	if r.BlockNumber.Uint64() != 1 {
		t.Errorf("transfer mined in block %d, want 1 (automine)", r.BlockNumber)
	}
}

func TestAnvilConfigIsPassedOn(t *testing.T) {
	t.Parallel()
	a := NewTestAnvil(t, AnvilConfig{ChainID: 4242, Accounts: 2, Balance: 7})
	c := chaintest.Dial(t, a.RPCURL())
	if a.ChainID() != 4242 {
		t.Errorf("ChainID() = %d, want 4242", a.ChainID())
	}
	if n := len(a.Accounts()); n != 2 {
		t.Errorf("%d accounts, want 2", n)
	}
	bal, err := c.BalanceAt(t.Context(), a.Accounts()[1].Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := new(big.Int).Mul(big.NewInt(7), big.NewInt(params.Ether))
	if bal.Cmp(want) != 0 {
		t.Errorf("balance %s, want %s", bal, want)
	}
}

func TestAnvilBlockTime(t *testing.T) {
	t.Parallel()
	a := NewTestAnvil(t, AnvilConfig{BlockTime: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := chaintest.Dial(t, a.RPCURL())

	// With interval mining, blocks come without any transaction.
	var h1, h2 *types.Header
	for h2 == nil {
		n, err := c.BlockNumber(ctx)
		if err != nil {
			t.Fatalf("block number (waiting for interval blocks): %v", err)
		}
		if n >= 2 {
			if h1, err = c.HeaderByNumber(ctx, big.NewInt(1)); err != nil {
				t.Fatal(err)
			}
			if h2, err = c.HeaderByNumber(ctx, big.NewInt(2)); err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := h2.Time - h1.Time; d < 1 || d > 2 {
		t.Errorf("blocks 1 and 2 are %d s apart, want about 1 (the block time)", d)
	}
	if h1.GasUsed != 0 {
		t.Errorf("block 1 used gas %d; interval blocks should be empty here", h1.GasUsed)
	}
}

func TestAnvilStopReportsEarlyDeath(t *testing.T) {
	t.Parallel()
	a, err := StartAnvil(t.Context(), AnvilConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.Done()
	if err := a.Stop(); err == nil {
		t.Error("Stop after anvil died on its own returned nil")
	}
}

func TestAnvilParallelInstancesGetDifferentPorts(t *testing.T) {
	t.Parallel()
	type started struct {
		a   *Anvil
		err error
	}
	ch := make(chan started, 2)
	for _, id := range []uint64{31337, 31338} {
		go func() {
			a, err := StartAnvil(t.Context(), AnvilConfig{ChainID: id})
			ch <- started{a, err}
		}()
	}
	var anvils []*Anvil
	for range 2 {
		s := <-ch
		if s.err != nil {
			t.Error(s.err)
			continue
		}
		t.Cleanup(func() { _ = s.a.Stop() })
		anvils = append(anvils, s.a)
	}
	if t.Failed() {
		return
	}
	if anvils[0].RPCURL() == anvils[1].RPCURL() {
		t.Fatalf("both anvils on %s", anvils[0].RPCURL())
	}
	// Each URL reaches its own anvil: the chain ids differ.
	got := map[uint64]bool{}
	for _, a := range anvils {
		id, err := rpcChainID(t.Context(), a.RPCURL())
		if err != nil {
			t.Fatal(err)
		}
		if id != a.ChainID() {
			t.Errorf("%s answers chain id %d, want %d", a.RPCURL(), id, a.ChainID())
		}
		got[id] = true
	}
	if len(got) != 2 {
		t.Errorf("chain ids %v, want two different ones", got)
	}
}

func TestAnvilForkOfLocalAnvil(t *testing.T) {
	t.Parallel()
	upstream := NewTestAnvil(t, AnvilConfig{ChainID: 777, Accounts: 1})
	ctx := t.Context()
	// Put something on the upstream chain that the fork must see.
	upClient := chaintest.Dial(t, upstream.RPCURL())
	r := chaintest.CheckTransfer(ctx, t, upClient, upstream.Accounts()[0].PrivateKey)

	fork := NewTestAnvil(t, AnvilConfig{ForkURL: upstream.RPCURL(), Accounts: 1})
	if fork.ChainID() != 777 {
		t.Errorf("fork ChainID() = %d, want the upstream's 777", fork.ChainID())
	}
	n, err := chaintest.Dial(t, fork.RPCURL()).BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < r.BlockNumber.Uint64() {
		t.Errorf("fork head %d is below the upstream block %d it forked from", n, r.BlockNumber)
	}
	// The fork URL may carry an API key on a real network.
	if log := fork.Log(); strings.Contains(log, upstream.RPCURL()) || !strings.Contains(log, "<redacted>") {
		t.Errorf("fork URL not redacted from the log:\n%s", log)
	}
}

func TestAnvilLogHasNoSecrets(t *testing.T) {
	t.Parallel()
	a := NewTestAnvil(t, AnvilConfig{})
	log := a.Log()
	if !strings.Contains(log, "Listening on") {
		t.Fatalf("log lacks anvil's banner:\n%s", log)
	}
	for _, acct := range a.Accounts() {
		keyHex := fmt.Sprintf("%x", crypto.FromECDSA(acct.PrivateKey))
		if strings.Contains(strings.ToLower(log), keyHex) {
			t.Errorf("log contains the private key of %s", acct)
		}
		if !strings.Contains(log, acct.Address.Hex()) {
			t.Errorf("log lacks address %s", acct)
		}
	}
	if strings.Contains(log, "test test test") {
		t.Error("log contains the mnemonic")
	}
}

func TestAnvilStartFailures(t *testing.T) {
	t.Parallel()
	bin, err := AnvilBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cfg        AnvilConfig
		wantReason string
		wantInErr  string
	}{
		{
			name:       "anvil rejects an argument",
			cfg:        AnvilConfig{Args: []string{"--hardfork", "no-such-fork"}},
			wantReason: "exited before listening",
			wantInErr:  "no-such-fork",
		},
		{
			name:       "binary does not exist",
			cfg:        AnvilConfig{Binary: filepath.Join(t.TempDir(), "anvil")},
			wantReason: "could not run",
			wantInErr:  "no such file",
		},
		{
			name:       "start timeout",
			cfg:        AnvilConfig{Binary: bin, StartTimeout: time.Nanosecond},
			wantReason: "no \"Listening on\" line",
			wantInErr:  "within 1ns",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := StartAnvil(t.Context(), tt.cfg)
			if err == nil {
				_ = a.Stop()
				t.Fatal("StartAnvil succeeded")
			}
			var se *AnvilStartError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want *AnvilStartError", err, err)
			}
			if !strings.HasPrefix(se.Reason, tt.wantReason) {
				t.Errorf("reason %q, want prefix %q", se.Reason, tt.wantReason)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestAnvilConfigCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     AnvilConfig
		wantErr string // empty: valid
	}{
		{"zero value", AnvilConfig{}, ""},
		{"full", AnvilConfig{ChainID: 8453, BlockTime: 500 * time.Millisecond, ForkURL: "https://example.org/v2/KEY",
			ForkBlockNumber: 10, Accounts: 2, Balance: 1, Args: []string{"--hardfork", "prague"}}, ""},
		{"negative block time", AnvilConfig{BlockTime: -time.Second}, "negative"},
		{"negative accounts", AnvilConfig{Accounts: -1}, "negative"},
		{"fork URL scheme", AnvilConfig{ForkURL: "ftp://x"}, "scheme"},
		{"fork URL unparsable", AnvilConfig{ForkURL: "http://[::1"}, "does not parse"},
		{"fork block without URL", AnvilConfig{ForkBlockNumber: 5}, "fork URL"},
		{"reserved --port", AnvilConfig{Args: []string{"--port", "8545"}}, "--port"},
		{"reserved --host=", AnvilConfig{Args: []string{"--host=0.0.0.0"}}, "--host"},
		{"reserved --json", AnvilConfig{Args: []string{"--json"}}, "--json"},
		{"negative timeout", AnvilConfig{StopTimeout: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check() = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	// The fork URL's key must not leak through the parse error.
	if err := (AnvilConfig{ForkURL: "http://[::1/SECRETKEY"}).Check(); err == nil || strings.Contains(err.Error(), "SECRETKEY") {
		t.Errorf("Check() = %v, want an error without the URL", err)
	}
}

func TestAnvilArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  AnvilConfig
		want string
	}{
		{"defaults", AnvilConfig{}, "--host 127.0.0.1 --port 0 --color never --chain-id 31337"},
		{"fork keeps upstream id", AnvilConfig{ForkURL: "http://h", ForkBlockNumber: 3},
			"--host 127.0.0.1 --port 0 --color never --fork-url http://h --fork-block-number 3"},
		{"fractional block time and extras", AnvilConfig{ChainID: 5, BlockTime: 1500 * time.Millisecond, Accounts: 1, Balance: 2, Args: []string{"--hardfork", "cancun"}},
			"--host 127.0.0.1 --port 0 --color never --chain-id 5 --block-time 1.5 --accounts 1 --balance 2 --hardfork cancun"},
	}
	for _, tt := range tests {
		if got := strings.Join(tt.cfg.args(), " "); got != tt.want {
			t.Errorf("%s: args %q, want %q", tt.name, got, tt.want)
		}
	}
}

// banner renders an anvil-like start-up banner for the given keys; addrs
// overrides the listed addresses when not nil.
func banner(keys []*ecdsa.PrivateKey, addrs []common.Address, listen string) string {
	var b strings.Builder
	b.WriteString("\n    1.7.1 (test)\n\nAvailable Accounts\n==================\n\n")
	for i, k := range keys {
		addr := crypto.PubkeyToAddress(k.PublicKey)
		if addrs != nil {
			addr = addrs[i]
		}
		fmt.Fprintf(&b, "(%d) %s (10000.000000000000000000 ETH)\n", i, addr.Hex())
	}
	b.WriteString("\nPrivate Keys\n==================\n\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "(%d) 0x%x\n", i, crypto.FromECDSA(k))
	}
	b.WriteString("\nWallet\n==================\nMnemonic:          alpha beta gamma\nDerivation path:   m/44'/60'/0'/0/\n\n")
	b.WriteString("\nChain ID\n==================\n\n31337\n\n")
	if listen != "" {
		b.WriteString("Listening on " + listen + "\n")
	}
	return b.String()
}

func TestAnvilParser(t *testing.T) {
	t.Parallel()
	keys := make([]*ecdsa.PrivateKey, 3)
	for i := range keys {
		k, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	other, _ := crypto.GenerateKey()
	swapped := []common.Address{crypto.PubkeyToAddress(keys[0].PublicKey), crypto.PubkeyToAddress(other.PublicKey), crypto.PubkeyToAddress(keys[2].PublicKey)}

	tests := []struct {
		name     string
		text     string
		wantAddr string
		wantN    int
		wantErr  string
	}{
		{"good banner", banner(keys, nil, "127.0.0.1:40001"), "127.0.0.1:40001", 3, ""},
		{"key does not match listed address", banner(keys, swapped, "127.0.0.1:40002"), "127.0.0.1:40002", 0, "not the listed"},
		{"no accounts at all", banner(nil, nil, "127.0.0.1:40003"), "127.0.0.1:40003", 0, "no private keys"},
		{"more addresses than keys", strings.Replace(banner(keys, nil, "127.0.0.1:40004"),
			fmt.Sprintf("(2) 0x%x\n", crypto.FromECDSA(keys[2])), "", 1), "127.0.0.1:40004", 0, "3 accounts but 2 private keys"},
		{"never listens", banner(keys, nil, ""), "", 0, "never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &anvilParser{}
			var logged []string
			done := false
			for line := range strings.Lines(tt.text) {
				out, d := p.feed(strings.TrimRight(line, "\n"))
				logged = append(logged, out)
				if d {
					done = true
					break
				}
			}
			if tt.wantErr == "never" {
				if done {
					t.Fatal("parser reported done without a Listening line")
				}
				return
			}
			if !done {
				t.Fatal("parser never saw the Listening line")
			}
			res := p.result()
			if res.addr != tt.wantAddr {
				t.Errorf("addr %q, want %q", res.addr, tt.wantAddr)
			}
			if tt.wantErr != "" {
				if res.err == nil || !strings.Contains(res.err.Error(), tt.wantErr) {
					t.Errorf("err %v, want one mentioning %q", res.err, tt.wantErr)
				}
				return
			}
			if res.err != nil {
				t.Fatal(res.err)
			}
			if len(res.accounts) != tt.wantN {
				t.Fatalf("%d accounts, want %d", len(res.accounts), tt.wantN)
			}
			for i, a := range res.accounts {
				if !a.PrivateKey.Equal(keys[i]) {
					t.Errorf("account %d: wrong key", i)
				}
			}
			joined := strings.Join(logged, "\n")
			for _, k := range keys {
				if strings.Contains(joined, fmt.Sprintf("%x", crypto.FromECDSA(k))) {
					t.Error("a private key reached the log")
				}
			}
			if strings.Contains(joined, "alpha beta") {
				t.Error("the mnemonic reached the log")
			}
		})
	}
}

func TestDevAccountFormattingHidesKey(t *testing.T) {
	t.Parallel()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a := DevAccount{Address: crypto.PubkeyToAddress(k.PublicKey), PrivateKey: k}
	keyHex := fmt.Sprintf("%x", crypto.FromECDSA(k))
	dBytes := k.D.String()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, arg := range []any{a, []DevAccount{a}} {
			out := fmt.Sprintf(verb, arg)
			if strings.Contains(out, keyHex) || strings.Contains(out, dBytes) {
				t.Errorf("%s of %T shows the key", verb, arg)
			}
			if !strings.Contains(out, a.Address.Hex()) {
				t.Errorf("%s of %T = %q, want the address", verb, arg, out)
			}
		}
	}
}

func TestLineLogKeepsHeadAndTail(t *testing.T) {
	t.Parallel()
	var mirror bytes.Buffer
	l := newLineLog(&mirror, []string{"SECRET"})
	total := lineLogHead + lineLogTail + 50
	for i := range total {
		l.add(fmt.Sprintf("line %d SECRET", i))
	}
	got := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(got) != lineLogHead+lineLogTail+1 {
		t.Fatalf("%d lines kept, want %d plus a marker", len(got), lineLogHead+lineLogTail)
	}
	if got[0] != "line 0 <redacted>" || got[lineLogHead-1] != fmt.Sprintf("line %d <redacted>", lineLogHead-1) {
		t.Errorf("head not kept: %q ... %q", got[0], got[lineLogHead-1])
	}
	if got[lineLogHead] != "[... 50 lines dropped ...]" {
		t.Errorf("marker %q", got[lineLogHead])
	}
	if last := got[len(got)-1]; last != fmt.Sprintf("line %d <redacted>", total-1) {
		t.Errorf("last line %q", last)
	}
	if first := got[lineLogHead+1]; first != fmt.Sprintf("line %d <redacted>", lineLogHead+50) {
		t.Errorf("first tail line %q", first)
	}
	if strings.Contains(mirror.String(), "SECRET") || strings.Count(mirror.String(), "\n") != total {
		t.Error("LogOutput mirror is not the redacted stream of every line")
	}
}

func TestAnvilBinaryFromEnv(t *testing.T) {
	// t.Setenv: not parallel.
	dir := t.TempDir()
	t.Setenv("ANVIL_BIN", filepath.Join(dir, "missing"))
	if _, err := AnvilBinary(t.Context()); err == nil {
		t.Error("AnvilBinary accepted a missing ANVIL_BIN")
	}
	t.Setenv("ANVIL_BIN", dir)
	if _, err := AnvilBinary(t.Context()); err == nil {
		t.Error("AnvilBinary accepted a directory as ANVIL_BIN")
	}
	exe := filepath.Join(dir, "anvil")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ANVIL_BIN", exe)
	if got, err := AnvilBinary(t.Context()); err != nil || got != exe {
		t.Errorf("AnvilBinary() = %q, %v; want %q", got, err, exe)
	}
}

func TestAnvilBinaryIsPinnedVersion(t *testing.T) {
	t.Parallel()
	if os.Getenv("ANVIL_BIN") != "" {
		t.Log("ANVIL_BIN is set; checking that binary")
	}
	bin, err := AnvilBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("ANVIL_BIN") == "" && !anvilVersionIs(t.Context(), bin, AnvilVersion) {
		t.Errorf("%s is not anvil %s", bin, AnvilVersion)
	}
}

func TestInstallAnvilIntoFreshDir(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "tools", "anvil")
	var progress bytes.Buffer
	path, err := InstallAnvil(ctx, dir, &progress)
	if err != nil {
		t.Fatalf("InstallAnvil: %v\n%s", err, progress.String())
	}
	if !strings.HasPrefix(path, dir) || !filepath.IsAbs(path) {
		t.Errorf("path %q is not an absolute path inside %q", path, dir)
	}
	if !anvilVersionIs(ctx, path, AnvilVersion) {
		t.Errorf("%s is not anvil %s", path, AnvilVersion)
	}
	if !strings.Contains(progress.String(), "installing") {
		t.Errorf("no progress on the first install: %q", progress.String())
	}
	// Second run: already there, nothing installed, same path.
	progress.Reset()
	again, err := InstallAnvil(ctx, dir, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if again != path || progress.Len() != 0 {
		t.Errorf("second install: path %q (want %q), progress %q (want none)", again, path, progress.String())
	}
}

func TestInstallScriptIsEmbedded(t *testing.T) {
	t.Parallel()
	root, ok := repoRoot()
	if !ok {
		t.Fatal("repository root not found")
	}
	onDisk, err := os.ReadFile(filepath.Join(root, "testnet", "install-anvil.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != installAnvilScript {
		t.Error("embedded install script differs from testnet/install-anvil.sh")
	}
	if !strings.Contains(installAnvilScript, "ANVIL_VERSION="+AnvilVersion) {
		t.Errorf("install-anvil.sh does not pin AnvilVersion %s", AnvilVersion)
	}
}

func BenchmarkAnvilStart(b *testing.B) {
	bin, err := AnvilBinary(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		a, err := StartAnvil(b.Context(), AnvilConfig{Binary: bin})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := a.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkAnvilStop(b *testing.B) {
	bin, err := AnvilBinary(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		a, err := StartAnvil(b.Context(), AnvilConfig{Binary: bin})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := a.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchmarkTransfers measures one value transfer round trip: sign,
// eth_sendRawTransaction, then eth_getTransactionReceipt until it answers.
func BenchmarkAnvilTransferRoundTrip(b *testing.B) {
	a := NewTestAnvil(b, AnvilConfig{Accounts: 1})
	chaintest.BenchmarkTransfers(b, a.RPCURL(), a.Accounts()[0].PrivateKey)
}

package deployer

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
)

type codeErr struct{ code int }

func (e codeErr) Error() string  { return fmt.Sprintf("code %d", e.code) }
func (e codeErr) ErrorCode() int { return e.code }

func TestTransient(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"EOF", live, fmt.Errorf("post: %w", io.EOF), true},
		{"unexpected EOF", live, io.ErrUnexpectedEOF, true},
		{"reset", live, fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"per-call timeout", live, context.DeadlineExceeded, true},
		{"429", live, rpc.HTTPError{StatusCode: 429}, true},
		{"502", live, rpc.HTTPError{StatusCode: 502}, true},
		{"503", live, rpc.HTTPError{StatusCode: 503}, true},
		{"501 is final", live, rpc.HTTPError{StatusCode: 501}, false},
		{"404 is final", live, rpc.HTTPError{StatusCode: 404}, false},
		{"401 is final", live, rpc.HTTPError{StatusCode: 401}, false},
		{"refused: the node is down", live, fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false},
		{"limit exceeded -32005", live, codeErr{-32005}, true},
		{"a revert is an answer", live, codeErr{3}, false},
		{"nonce too low is an answer", live, codeErr{-32000}, false},
		{"the caller gave up", gone, io.EOF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transient(tc.ctx, tc.err); got != tc.want {
				t.Fatalf("transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
		{"-1", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for n, full := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 50 {
			d := p.backoff(n, 0, false)
			if d < full/2 || d > full {
				t.Fatalf("try %d: backoff %v outside [%v, %v]", n, d, full/2, full)
			}
		}
	}
	if d := p.backoff(1, 0, true); d != 0 {
		t.Fatalf("Retry-After: 0 gave %v", d)
	}
	if d := p.backoff(1, 700*time.Millisecond, true); d != 700*time.Millisecond {
		t.Fatalf("Retry-After 700ms gave %v", d)
	}
	if d := p.backoff(1, time.Hour, true); d != time.Second {
		t.Fatalf("a Retry-After of an hour is capped at MaxDelay, got %v", d)
	}
}

// TestRetryAfterReachesTheRetryLoop: the header of a 429 answer is seen by
// the request's retry loop (go-ethereum's HTTPError drops headers), and the
// request is repeated until it succeeds.
func TestRetryAfterReachesTheRetryLoop(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":"0x7a69"}`)
	}))
	defer srv.Close()
	c, err := Dial(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A huge base delay: only the honoured Retry-After: 0 lets the test
	// finish before its deadline.
	c.Retry = RetryPolicy{BaseDelay: time.Hour, MaxDelay: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var id string
	if err := c.call(ctx, &id, "eth_chainId"); err != nil || id != "0x7a69" {
		t.Fatalf("call = %q, %v", id, err)
	}
	if calls.Load() != 3 || c.Retries() != 2 {
		t.Fatalf("%d calls, %d retries; want 3 and 2", calls.Load(), c.Retries())
	}
}

// TestRetriesAreBounded: a node that always answers 503 gets MaxAttempts
// tries, and the error says so.
func TestRetriesAreBounded(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, err := Dial(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Retry = RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	var id string
	err = c.call(context.Background(), &id, "eth_chainId")
	var re *RPCError
	if !errors.As(err, &re) || re.Attempts != 4 || calls.Load() != 4 || !errors.Is(err, ErrRPCUnreachable) {
		t.Fatalf("err = %v after %d calls; want an *RPCError after 4 attempts", err, calls.Load())
	}
}

func dynTx(tip, feeCap int64) *types.Transaction {
	to := common.HexToAddress("0x1")
	return types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(1), Nonce: 7, GasTipCap: big.NewInt(tip), GasFeeCap: big.NewInt(feeCap), Gas: 50_000, To: &to, Data: []byte{1, 2}})
}

func TestBumpedTx(t *testing.T) {
	for _, tc := range []struct {
		name          string
		old           *types.Transaction
		base, ceiling int64 // 0: none
		tip, feeCap   int64 // wanted; ignored when !ok
		ok            bool
		legacy        bool
	}{
		{name: "plus 12.5 % and one wei", old: dynTx(1000, 3000), tip: 1126, feeCap: 3376, ok: true},
		{name: "fee cap lifted to 2 × base + tip", old: dynTx(1000, 3000), base: 5000, tip: 1126, feeCap: 11126, ok: true},
		{name: "ceiling clamps a large bump", old: dynTx(1000, 3000), base: 5000, ceiling: 4000, tip: 1126, feeCap: 4000, ok: true},
		{name: "ceiling leaves less than 10 %", old: dynTx(1000, 3000), ceiling: 3200, ok: false},
		{name: "tip clamped to the fee cap but not bumped enough", old: dynTx(3000, 3000), ceiling: 3200, ok: false},
		{name: "zero tip", old: dynTx(0, 3000), tip: 1, feeCap: 3376, ok: true},
		{name: "legacy", old: types.NewTx(&types.LegacyTx{Nonce: 7, GasPrice: big.NewInt(8000), Gas: 21000}), tip: 9001, feeCap: 9001, ok: true, legacy: true},
		{name: "legacy at the ceiling", old: types.NewTx(&types.LegacyTx{Nonce: 7, GasPrice: big.NewInt(8000), Gas: 21000}), ceiling: 8500, ok: false, legacy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var base, ceiling *big.Int
			if tc.base > 0 {
				base = big.NewInt(tc.base)
			}
			if tc.ceiling > 0 {
				ceiling = big.NewInt(tc.ceiling)
			}
			got, ok := bumpedTx(tc.old, base, ceiling)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if got.Nonce() != tc.old.Nonce() || got.Gas() != tc.old.Gas() || string(got.Data()) != string(tc.old.Data()) || got.Type() != tc.old.Type() {
				t.Fatal("not the same call at the same nonce")
			}
			if got.GasTipCap().Int64() != tc.tip || got.GasFeeCap().Int64() != tc.feeCap {
				t.Fatalf("tip %s cap %s, want %d %d", got.GasTipCap(), got.GasFeeCap(), tc.tip, tc.feeCap)
			}
		})
	}
}

// TestNextDelay: after a miss the next poll waits until the next block is
// due when the block time is known (or believably estimated), else backs
// off from 10 ms; a replacement falling due comes first.
func TestNextDelay(t *testing.T) {
	T := time.Unix(1_800_000_000, 0)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	head := &headInfo{Number: 100, Hash: common.Hash{1}, Timestamp: 1_800_000_000}
	for _, tc := range []struct {
		name      string
		interval  time.Duration
		known     bool
		seen, now time.Duration // after T
		want      []time.Duration
	}{
		{"known: from when the head was seen", 2 * time.Second, true, ms(300), ms(350), []time.Duration{ms(2025)}},
		{"known: head seen late, its second bounds it", 2 * time.Second, true, ms(1500), ms(1600), []time.Duration{ms(1475)}},
		{"known: block late, short polls", 2 * time.Second, true, ms(300), ms(2400), []time.Duration{ms(10), ms(20), ms(40)}},
		{"unknown: backoff", 0, false, ms(300), ms(350), []time.Duration{ms(10), ms(20), ms(40), ms(80)}},
		{"estimated 1 s, young head", time.Second, false, ms(200), ms(250), []time.Duration{ms(1000)}},
		{"estimated, capped at the poll cap", 5 * time.Second, false, ms(200), ms(250), []time.Duration{time.Second}},
		{"estimated, but the head is old (automine)", time.Second, false, ms(5000), ms(5010), []time.Duration{ms(10), ms(20)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &waiter{opts: TxOptions{}, delay: minPollDelay, interval: tc.interval, intervalKnown: tc.known, head: head, headSeen: T.Add(tc.seen)}
			for i, want := range tc.want {
				if got := w.nextDelay(T.Add(tc.now)); got != want {
					t.Fatalf("poll %d: delay %v, want %v", i+1, got, want)
				}
			}
		})
	}
	// A receipt below the head only waits for its block-hash check: the
	// next poll comes at once, not when the next block is due.
	w0 := &waiter{opts: TxOptions{}, delay: minPollDelay, interval: time.Second, head: head, headSeen: T.Add(ms(200)), recheck: true}
	if got := w0.nextDelay(T.Add(ms(250))); got != minPollDelay {
		t.Fatalf("recheck: delay %v, want %v", got, minPollDelay)
	}
	if got := w0.nextDelay(T.Add(ms(260))); got <= minPollDelay {
		t.Fatalf("after the recheck the block schedule resumes, got %v", got)
	}
	// A replacement due before the next block wins.
	w := &waiter{opts: TxOptions{ReplaceAfter: time.Hour}, signer: NewKeySigner(mustKey(t)), delay: minPollDelay, interval: 12 * time.Second, intervalKnown: true, head: head, headSeen: T}
	w.txs = []*pendingTx{{signedAt: time.Now().Add(-time.Hour + 50*time.Millisecond)}}
	if got := w.nextDelay(T); got > 50*time.Millisecond || got <= 0 {
		t.Fatalf("delay %v, want at most the 50 ms left before the replacement", got)
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSeeHeadEstimate: two heads give the block time, unless their
// timestamps ran ahead of our clock, as on a chain that mines on demand
// (each block stamped a second after its parent however fast it comes):
// then there is no estimate and polls back off from 10 ms instead of
// waiting a made-up second.
func TestSeeHeadEstimate(t *testing.T) {
	T := time.Unix(1_800_000_000, 0)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name       string
		blocks     uint64        // head number advance
		stamps     uint64        // timestamp advance, seconds
		seenAfter  time.Duration // local time between the two heads
		want       time.Duration // estimated interval, 0 for none
		firstDelay time.Duration // next poll 10 ms after the newer head was seen
	}{
		{"2 s chain", 1, 2, ms(2000), 2 * time.Second, ms(1000)},
		{"2 s chain, older head seen late", 1, 2, ms(1600), 2 * time.Second, ms(1000)},
		{"12 s chain, one slot skipped", 1, 24, ms(24000), 24 * time.Second, time.Second},
		{"on demand: three blocks in 40 ms", 3, 3, ms(40), 0, ms(10)},
		{"on demand: one block 30 ms later", 1, 1, ms(30), 0, ms(10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &waiter{opts: TxOptions{}, delay: minPollDelay}
			w.seeHead(&headInfo{Number: 100, Hash: common.Hash{1}, Timestamp: 1_800_000_000}, T)
			seen := T.Add(tc.seenAfter)
			w.seeHead(&headInfo{Number: hexutil.Uint64(100 + tc.blocks), Hash: common.Hash{2}, Timestamp: hexutil.Uint64(1_800_000_000 + tc.stamps)}, seen)
			if w.interval != tc.want {
				t.Fatalf("interval %v, want %v", w.interval, tc.want)
			}
			if got := w.nextDelay(seen.Add(ms(10))); got > tc.firstDelay || got <= 0 {
				t.Fatalf("next poll in %v, want at most %v", got, tc.firstDelay)
			}
		})
	}
}

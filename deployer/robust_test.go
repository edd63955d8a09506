package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/rpcproxy"
)

// anvilCall runs an anvil/hardhat control method (evm_mine, evm_setAutomine,
// anvil_dropTransaction, ...) directly on the node.
func (e *chainEnv) anvilCall(t testing.TB, result any, method string, args ...any) {
	t.Helper()
	if err := e.client.RPC().CallContext(ctxT(t), result, method, args...); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

func (e *chainEnv) setAutomine(t testing.TB, on bool) { e.anvilCall(t, nil, "evm_setAutomine", on) }
func (e *chainEnv) mine(t testing.TB)                 { e.anvilCall(t, nil, "evm_mine") }

// factoryLogs counts AppDeployedViaFactory logs of the env's KMS on the
// canonical chain: the AppAuths that exist.
func (e *chainEnv) factoryLogs(t testing.TB) int {
	t.Helper()
	logs, err := e.client.Eth().FilterLogs(ctxT(t), ethereum.FilterQuery{
		FromBlock: big.NewInt(0),
		Addresses: []common.Address{e.kms.KMSContract},
		Topics:    [][]common.Hash{{crypto.Keccak256Hash([]byte("AppDeployedViaFactory(address,address)"))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(logs)
}

// receipt reads a canonical receipt directly from anvil.
func (e *chainEnv) receipt(t testing.TB, h common.Hash) *types.Receipt {
	t.Helper()
	r, err := e.client.Eth().TransactionReceipt(ctxT(t), h)
	if err != nil {
		t.Fatalf("receipt of %s: %v", h.Hex(), err)
	}
	return r
}

// sendMined sends tx straight to anvil and waits for its receipt: anvil's
// automine answers the send before the block exists, and a busy machine can
// show that gap.
func (e *chainEnv) sendMined(t testing.TB, tx *types.Transaction) {
	t.Helper()
	if err := e.client.Rebroadcast(ctxT(t), rawOf(t, tx)); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := e.client.Eth().TransactionReceipt(ctxT(t), tx.Hash())
		if err == nil {
			return
		}
		if !errors.Is(err, ethereum.NotFound) {
			t.Fatalf("receipt of %s: %v", tx.Hash().Hex(), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startProxy(t testing.TB, upstream string, seed int64, rules ...rpcproxy.Rule) *rpcproxy.Proxy {
	t.Helper()
	p, err := rpcproxy.Start(ctxT(t), rpcproxy.Config{Upstream: upstream, Seed: seed, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dialT(t testing.TB, url string) *deployer.Client {
	t.Helper()
	c, err := deployer.Dial(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// hooks records the transaction hooks in order, and hands the events to the
// test as they happen.
type hooks struct {
	mu     sync.Mutex
	log    []string // "signed HASH", "sent HASH"
	signed []*types.Transaction
	events chan deployer.TxEvent
	sent   chan common.Hash
	signs  chan *types.Transaction
}

func newHooks() *hooks {
	return &hooks{events: make(chan deployer.TxEvent, 256), sent: make(chan common.Hash, 64), signs: make(chan *types.Transaction, 64)}
}

func (h *hooks) opts(o deployer.TxOptions) deployer.TxOptions {
	o.OnSigned = func(tx *types.Transaction) error {
		h.mu.Lock()
		h.log = append(h.log, "signed "+tx.Hash().Hex())
		h.signed = append(h.signed, tx)
		h.mu.Unlock()
		h.signs <- tx
		return nil
	}
	o.OnSent = func(x common.Hash) {
		h.mu.Lock()
		h.log = append(h.log, "sent "+x.Hex())
		h.mu.Unlock()
		h.sent <- x
	}
	o.OnEvent = func(e deployer.TxEvent) { h.events <- e }
	return o
}

func (h *hooks) signedTxs() []*types.Transaction {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*types.Transaction(nil), h.signed...)
}

// await returns the next event of kind, skipping others; it fails the test
// if the operation ends (done) first or nothing comes within a minute.
func (h *hooks) await(t testing.TB, kind deployer.TxEventKind, done <-chan struct{}) deployer.TxEvent {
	t.Helper()
	limit := time.After(time.Minute)
	for {
		select {
		case e := <-h.events:
			t.Logf("event: %s", e)
			if e.Kind == kind {
				return e
			}
		case <-done:
			t.Fatalf("the operation ended before a %q event", kind)
		case <-limit:
			t.Fatalf("no %q event within a minute", kind)
		}
	}
}

func (h *hooks) awaitChan(t testing.TB, what string, c <-chan common.Hash) common.Hash {
	t.Helper()
	select {
	case x := <-c:
		return x
	case <-time.After(time.Minute):
		t.Fatalf("no %s within a minute", what)
	}
	return common.Hash{}
}

// signedBefore asserts that every sent hash was signed (journaled) before
// it was sent.
func (h *hooks) signedBefore(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	signed := map[string]bool{}
	for _, l := range h.log {
		var kind, hash string
		fmt.Sscan(l, &kind, &hash)
		switch kind {
		case "signed":
			signed[hash] = true
		case "sent":
			if !signed[hash] {
				t.Fatalf("%s was sent before OnSigned saw it (log %v)", hash, h.log)
			}
		}
	}
}

// deployAsync runs DeployApp in the background.
type deployOutcome struct {
	d   *deployer.AppDeployment
	err error
}

func deployAsync(c *deployer.Client, s deployer.Signer, cfg deployer.DeployAppConfig, opts deployer.TxOptions) (<-chan deployOutcome, <-chan struct{}) {
	out := make(chan deployOutcome, 1)
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		d, err := c.DeployApp(ctx, s, cfg, opts)
		out <- deployOutcome{d, err}
		close(done)
	}()
	return out, done
}

func result(t testing.TB, out <-chan deployOutcome) *deployer.AppDeployment {
	t.Helper()
	select {
	case o := <-out:
		if o.err != nil {
			t.Fatalf("DeployApp: %v", o.err)
		}
		return o.d
	case <-time.After(2 * time.Minute):
		t.Fatal("DeployApp did not return")
	}
	return nil
}

// checkFromReceipt asserts that d is what the canonical receipt of its
// transaction says, and that the transaction is one of the signed variants.
func (e *chainEnv) checkFromReceipt(t testing.TB, d *deployer.AppDeployment, variants []*types.Transaction) *types.Receipt {
	t.Helper()
	r := e.receipt(t, d.TxHash)
	want, err := deployer.ParseAppDeployed(r, e.kms.KMSContract)
	if err != nil {
		t.Fatal(err)
	}
	if d.AppID != want.AppID || d.BlockNumber != want.BlockNumber {
		t.Fatalf("DeployApp says app %s in block %d; the canonical receipt says %s in block %d", d.AppID.Hex(), d.BlockNumber, want.AppID.Hex(), want.BlockNumber)
	}
	found := false
	for _, v := range variants {
		found = found || v.Hash() == d.TxHash
	}
	if !found {
		t.Fatalf("mined tx %s is none of the %d signed variants", d.TxHash.Hex(), len(variants))
	}
	return r
}

// TestDeployUnderRPCFaults: every fault kind the proxy injects, alone at a
// high rate on every method (sends included, drops also after the node
// acted), and all mixed; each deploy succeeds with exactly one AppAuth.
func TestDeployUnderRPCFaults(t *testing.T) {
	mixed := rpcproxy.Rule{Method: "*", Drop: 0.05, Reset: 0.05, TooMany: 0.05, ServerError: 0.05}
	for _, tc := range []struct {
		name  string
		rules []rpcproxy.Rule
		kinds []string
	}{
		{"drop", []rpcproxy.Rule{{Method: "*", Drop: 0.3}}, []string{rpcproxy.FaultDrop}},
		{"drop-after-forward", []rpcproxy.Rule{{Method: "*", Drop: 0.3, DropAfterForward: true}}, []string{rpcproxy.FaultDropAfterForward}},
		{"reset", []rpcproxy.Rule{{Method: "*", Reset: 0.3}}, []string{rpcproxy.FaultReset}},
		{"429", []rpcproxy.Rule{{Method: "*", TooMany: 0.3}}, []string{rpcproxy.FaultTooMany}},
		{"5xx", []rpcproxy.Rule{{Method: "*", ServerError: 0.3, ServerErrorStatus: 502}}, []string{rpcproxy.FaultServerError}},
		{"mixed-20%", []rpcproxy.Rule{{Method: "eth_sendRawTransaction", Drop: 0.1, DropAfterForward: true, Reset: 0.05, TooMany: 0.05}, mixed}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newChain(t, testnet.AnvilConfig{})
			p := startProxy(t, e.anvil.RPCURL(), 7, tc.rules...)
			c := dialT(t, p.URL())
			c.Retry = deployer.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}
			const n = 6
			nonce := e.nonce(t, e.owner.Address())
			for i := range n {
				d, err := c.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(byte(i + 1))}, deployer.TxOptions{})
				if err != nil {
					t.Fatalf("deploy %d: %v", i, err)
				}
				e.checkFromReceipt(t, d, ownTx(t, e, d))
			}
			st := p.Stats()
			t.Logf("faults %v, retries %d, HTTP requests %d", st.Faults, c.Retries(), st.HTTPRequests)
			for _, k := range tc.kinds {
				if st.Faults[k] == 0 {
					t.Fatalf("no %s fault was injected: the test proves nothing", k)
				}
			}
			if c.Retries() == 0 {
				t.Fatal("no request was retried")
			}
			if got := e.factoryLogs(t); got != n {
				t.Fatalf("%d AppAuths on chain after %d deploys", got, n)
			}
			if got := e.nonce(t, e.owner.Address()) - nonce; got != n {
				t.Fatalf("%d transactions mined for %d deploys", got, n)
			}
		})
	}
}

// ownTx is the variant list of a deployment made without hooks: its own
// transaction, read back from the node.
func ownTx(t testing.TB, e *chainEnv, d *deployer.AppDeployment) []*types.Transaction {
	tx, _, err := e.client.Eth().TransactionByHash(ctxT(t), d.TxHash)
	if err != nil {
		t.Fatal(err)
	}
	return []*types.Transaction{tx}
}

// TestLostSendAnswer: the node takes the transaction but the answer is lost
// (the proxy drops the connection after forwarding). The same bytes are
// sent again (as a plain send after a lost synchronous one); with automine the node says "nonce too low" (mined already),
// without it "already known". Either way exactly one transaction is mined.
func TestLostSendAnswer(t *testing.T) {
	for _, automine := range []bool{true, false} {
		t.Run(fmt.Sprintf("automine=%v", automine), func(t *testing.T) {
			e := newChain(t, testnet.AnvilConfig{})
			p, err := rpcproxy.Start(ctxT(t), rpcproxy.Config{Upstream: e.anvil.RPCURL(), Seed: 1, MaxFaults: 1,
				Rules: []rpcproxy.Rule{{Method: "eth_sendRawTransaction*", Drop: 1, DropAfterForward: true}}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c := dialT(t, p.URL())
			if !automine {
				e.setAutomine(t, false)
			}
			nonce := e.nonce(t, e.owner.Address())
			h := newHooks()
			out, _ := deployAsync(c, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract}, h.opts(deployer.TxOptions{PollInterval: 20 * time.Millisecond}))
			sent := h.awaitChan(t, "send", h.sent)
			if !automine {
				e.mine(t)
			}
			d := result(t, out)
			if d.TxHash != sent {
				t.Fatalf("mined %s, sent %s", d.TxHash.Hex(), sent.Hex())
			}
			st := p.Stats()
			// The first send (synchronous, where the node has it) loses its
			// answer; the same bytes go again as a plain send.
			if sends := st.Calls["eth_sendRawTransaction"] + st.Calls["eth_sendRawTransactionSync"]; st.Faults[rpcproxy.FaultDropAfterForward] != 1 || sends != 2 {
				t.Fatalf("want one lost answer and one re-send: %+v", st)
			}
			if got := e.nonce(t, e.owner.Address()) - nonce; got != 1 {
				t.Fatalf("%d transactions mined", got)
			}
			if got := e.factoryLogs(t); got != 1 {
				t.Fatalf("%d AppAuths", got)
			}
			h.signedBefore(t)
		})
	}
}

// TestReplaceStuckTransaction: with automine off, a deploy not mined within
// ReplaceAfter is replaced at the same nonce with fees bumped 12.5 %; every
// variant goes through OnSigned before it is sent; once a block is mined,
// the app id comes from the variant that was mined.
func TestReplaceStuckTransaction(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	e.setAutomine(t, false)
	nonce := e.nonce(t, e.owner.Address())
	h := newHooks()
	out, done := deployAsync(e.client, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(1)},
		h.opts(deployer.TxOptions{ReplaceAfter: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond}))
	first := h.awaitChan(t, "first send", h.sent)
	ev := h.await(t, deployer.TxReplaced, done)
	e.mine(t)
	d := result(t, out)
	vs := h.signedTxs()
	if len(vs) < 2 || vs[0].Hash() != first || ev.Hash == first {
		t.Fatalf("want the original %s and at least one replacement, got %d variants (event %s)", first.Hex(), len(vs), ev.Hash.Hex())
	}
	for i := 1; i < len(vs); i++ {
		a, b := vs[i-1], vs[i]
		if b.Nonce() != a.Nonce() || *b.To() != *a.To() || string(b.Data()) != string(a.Data()) || b.Gas() != a.Gas() {
			t.Fatalf("variant %d is not the same call at the same nonce", i)
		}
		// 12.5 % on both fees (integers: ≥ 9/8 of the old value).
		if new(big.Int).Mul(b.GasTipCap(), big.NewInt(8)).Cmp(new(big.Int).Mul(a.GasTipCap(), big.NewInt(9))) < 0 ||
			new(big.Int).Mul(b.GasFeeCap(), big.NewInt(8)).Cmp(new(big.Int).Mul(a.GasFeeCap(), big.NewInt(9))) < 0 {
			t.Fatalf("variant %d bumps tip %s→%s, cap %s→%s: less than 12.5 %%", i, a.GasTipCap(), b.GasTipCap(), a.GasFeeCap(), b.GasFeeCap())
		}
	}
	e.checkFromReceipt(t, d, vs)
	if d.TxHash == first {
		t.Fatal("the node mined the replaced original: anvil should only hold the newest variant")
	}
	h.signedBefore(t)
	if got := e.nonce(t, e.owner.Address()) - nonce; got != 1 {
		t.Fatalf("%d transactions mined", got)
	}
	if got := e.factoryLogs(t); got != 1 {
		t.Fatalf("%d AppAuths", got)
	}
}

// TestReplacedOriginalStillMined: the replacement is signed but never
// reaches the node (the proxy drops sends from then on), and the original
// is mined: the wait accepts the original's receipt.
func TestReplacedOriginalStillMined(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	e.setAutomine(t, false)
	p := startProxy(t, e.anvil.RPCURL(), 3)
	c := dialT(t, p.URL())
	c.Retry = deployer.RetryPolicy{MaxAttempts: 1}
	h := newHooks()
	out, _ := deployAsync(c, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract},
		h.opts(deployer.TxOptions{ReplaceAfter: 150 * time.Millisecond, PollInterval: 50 * time.Millisecond}))
	first := h.awaitChan(t, "first send", h.sent)
	if err := p.SetRules([]rpcproxy.Rule{{Method: "eth_sendRawTransaction", Drop: 1}}); err != nil {
		t.Fatal(err)
	}
	<-h.signs // the original
	select {
	case tx := <-h.signs:
		t.Logf("replacement %s signed", tx.Hash().Hex())
	case <-time.After(time.Minute):
		t.Fatal("no replacement was signed")
	}
	e.mine(t)
	d := result(t, out)
	if d.TxHash != first {
		t.Fatalf("mined %s, want the original %s", d.TxHash.Hex(), first.Hex())
	}
	e.checkFromReceipt(t, d, h.signedTxs())
	if p.Stats().Faults[rpcproxy.FaultDrop] == 0 {
		t.Fatal("the replacement was not dropped: the test proves nothing")
	}
	if got := e.factoryLogs(t); got != 1 {
		t.Fatalf("%d AppAuths", got)
	}
}

// TestReplacementCappedByMaxFee: when MaxFeeCap leaves no room for the
// +10 % nodes require, nothing is re-signed; the original is awaited.
func TestReplacementCappedByMaxFee(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	e.setAutomine(t, false)
	head, err := e.client.Eth().HeaderByNumber(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	// max fee = base + tip < 2 × base + tip: the first fee cap is already
	// the ceiling.
	ceiling := new(big.Int).Add(head.BaseFee, gwei(1))
	h := newHooks()
	out, done := deployAsync(e.client, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract},
		h.opts(deployer.TxOptions{MaxFee: ceiling, PriorityFee: gwei(1), MaxFeeCap: ceiling, ReplaceAfter: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond}))
	first := h.awaitChan(t, "send", h.sent)
	h.await(t, deployer.TxFeeCapReached, done)
	e.mine(t)
	d := result(t, out)
	if n := len(h.signedTxs()); n != 1 || d.TxHash != first {
		t.Fatalf("%d variants signed, mined %s; want only the original %s", n, d.TxHash.Hex(), first.Hex())
	}
}

// TestDroppedTransactionIsResent: the node forgets a pending transaction
// (anvil_dropTransaction); the waiter notices (unknown hash, nonce unused)
// and sends the same signed bytes again.
func TestDroppedTransactionIsResent(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	e.setAutomine(t, false)
	h := newHooks()
	out, done := deployAsync(e.client, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract},
		h.opts(deployer.TxOptions{PollInterval: 50 * time.Millisecond}))
	sent := h.awaitChan(t, "send", h.sent)
	var dropped any
	e.anvilCall(t, &dropped, "anvil_dropTransaction", sent)
	ev := h.await(t, deployer.TxRebroadcast, done)
	if ev.Hash != sent {
		t.Fatalf("re-sent %s, want %s", ev.Hash.Hex(), sent.Hex())
	}
	e.mine(t)
	d := result(t, out)
	if d.TxHash != sent || len(h.signedTxs()) != 1 {
		t.Fatalf("mined %s after %d signatures; want the same bytes %s", d.TxHash.Hex(), len(h.signedTxs()), sent.Hex())
	}
	e.checkFromReceipt(t, d, h.signedTxs())
	if got := e.factoryLogs(t); got != 1 {
		t.Fatalf("%d AppAuths", got)
	}
}

// otherDeployRaw signs a factory deploy from the env's second account (not
// sent), to be mined ahead of ours in a reorg.
func (e *chainEnv) otherDeployRaw(t testing.TB) hexutil.Bytes {
	t.Helper()
	to, data, err := deployer.DeployAppCalldata(deployer.DeployAppConfig{KMS: e.kms.KMSContract, Owner: e.other.Address(), ComposeHash: hash32(0xee)})
	if err != nil {
		t.Fatal(err)
	}
	tx := types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(31337), Nonce: e.nonce(t, e.other.Address()), GasTipCap: gwei(1), GasFeeCap: gwei(10), Gas: 2_000_000, To: &to, Data: data})
	signed, err := e.other.SignTx(ctxT(t), tx, big.NewInt(31337))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestReorgReincludesWithAnotherAppID: the block holding our deploy is
// replaced (anvil_reorg) by one where another deploy through the same
// factory comes first, so our transaction creates another address. With
// three confirmations the waiter sees the reorg and returns the app id of
// the final canonical receipt, not the first one it saw.
func TestReorgReincludesWithAnotherAppID(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	h := newHooks()
	out, done := deployAsync(e.client, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(1)},
		h.opts(deployer.TxOptions{Confirmations: 3, PollInterval: 50 * time.Millisecond}))
	mined := h.await(t, deployer.TxMined, done)
	r1 := e.receipt(t, mined.Hash)
	first, err := deployer.ParseAppDeployed(r1, e.kms.KMSContract)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := h.signedTxs()[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	e.anvilCall(t, nil, "anvil_reorg", 1, [][]any{{e.otherDeployRaw(t), 0}, {hexutil.Bytes(ours), 0}})
	h.await(t, deployer.TxReorged, done)
	e.mine(t)
	e.mine(t)
	d := result(t, out)
	r2 := e.checkFromReceipt(t, d, h.signedTxs())
	if r2.BlockHash == r1.BlockHash || d.AppID == first.AppID {
		t.Fatalf("app %s in block %s: want the re-included one, not %s in %s", d.AppID.Hex(), r2.BlockHash.Hex(), first.AppID.Hex(), r1.BlockHash.Hex())
	}
	if got := e.factoryLogs(t); got != 2 {
		t.Fatalf("%d AppAuths on chain, want ours and the other one", got)
	}
}

// TestRevertedBlockIsMinedAgain: the chain is reverted to before our block
// (evm_revert), which drops the transaction from chain and pool; the
// waiter sends the same bytes again and returns the new canonical receipt.
func TestRevertedBlockIsMinedAgain(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	var snap hexutil.Uint64
	e.anvilCall(t, &snap, "evm_snapshot")
	h := newHooks()
	out, done := deployAsync(e.client, e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract},
		h.opts(deployer.TxOptions{Confirmations: 2, PollInterval: 50 * time.Millisecond}))
	first := h.await(t, deployer.TxMined, done)
	r1 := e.receipt(t, first.Hash)
	var ok bool
	e.anvilCall(t, &ok, "evm_revert", snap)
	if !ok {
		t.Fatal("evm_revert failed")
	}
	h.await(t, deployer.TxReorged, done)
	h.await(t, deployer.TxRebroadcast, done)
	again := h.await(t, deployer.TxMined, done)
	e.mine(t)
	d := result(t, out)
	r2 := e.checkFromReceipt(t, d, h.signedTxs())
	if again.Hash != first.Hash || r2.BlockHash == r1.BlockHash || len(h.signedTxs()) != 1 {
		t.Fatalf("want the same transaction in a new block: %s in %s vs %s in %s", again.Hash.Hex(), r2.BlockHash.Hex(), first.Hash.Hex(), r1.BlockHash.Hex())
	}
	if got := e.factoryLogs(t); got != 1 {
		t.Fatalf("%d AppAuths", got)
	}
}

// signTransfer signs a 1-wei transfer at nonce with the given fee cap.
func signTransfer(t testing.TB, s deployer.Signer, to common.Address, nonce uint64, feeCap *big.Int) *types.Transaction {
	t.Helper()
	tx, err := s.SignTx(ctxT(t), types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(31337), Nonce: nonce, GasTipCap: gwei(1), GasFeeCap: feeCap, Gas: 21_000, To: &to, Value: big.NewInt(1)}), big.NewInt(31337))
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func rawOf(t testing.TB, tx *types.Transaction) []byte {
	t.Helper()
	b, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResumeTx: a journaled transaction and its replacements, resumed by a
// new run. Whichever variant was mined is found in the first batch and
// nothing is sent; a variant the node never saw is sent; a nonce taken by
// another transaction is a *NonceUsedError.
func TestResumeTx(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup signs the variants (oldest first) and acts on the chain;
		// it returns the hash that must be mined, or zero for "nonce used".
		setup     func(t *testing.T, e *chainEnv, n uint64) ([]*types.Transaction, common.Hash)
		wantSends int
	}{
		{"earlier variant mined", func(t *testing.T, e *chainEnv, n uint64) ([]*types.Transaction, common.Hash) {
			v1 := signTransfer(t, e.owner, e.other.Address(), n, gwei(3))
			v2 := signTransfer(t, e.owner, e.other.Address(), n, gwei(4))
			e.sendMined(t, v1)
			return []*types.Transaction{v1, v2}, v1.Hash()
		}, 0},
		{"never sent", func(t *testing.T, e *chainEnv, n uint64) ([]*types.Transaction, common.Hash) {
			v1 := signTransfer(t, e.owner, e.other.Address(), n, gwei(3))
			return []*types.Transaction{v1}, v1.Hash()
		}, 1},
		{"nonce used elsewhere", func(t *testing.T, e *chainEnv, n uint64) ([]*types.Transaction, common.Hash) {
			v1 := signTransfer(t, e.owner, e.other.Address(), n, gwei(3))
			other := signTransfer(t, e.owner, e.owner.Address(), n, gwei(3))
			e.sendMined(t, other)
			return []*types.Transaction{v1}, common.Hash{}
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newChain(t, testnet.AnvilConfig{})
			vs, want := tc.setup(t, e, e.nonce(t, e.owner.Address()))
			p := startProxy(t, e.anvil.RPCURL(), 1)
			c := dialT(t, p.URL())
			var earlier []common.Hash
			for _, v := range vs {
				earlier = append(earlier, v.Hash())
			}
			r, err := c.ResumeTx(ctxT(t), e.owner, vs[len(vs)-1], earlier, deployer.TxOptions{PollInterval: 20 * time.Millisecond})
			sends := p.Stats().Calls["eth_sendRawTransaction"]
			if want == (common.Hash{}) {
				var nu *deployer.NonceUsedError
				if !errors.As(err, &nu) || !errors.Is(err, deployer.ErrNonceUsed) || nu.Nonce != vs[0].Nonce() {
					t.Fatalf("err = %v, want *NonceUsedError", err)
				}
			} else if err != nil || r.TxHash != want {
				t.Fatalf("ResumeTx = %v, %v; want the receipt of %s", r, err, want.Hex())
			}
			if sends > tc.wantSends {
				t.Fatalf("%d sends, want at most %d", sends, tc.wantSends)
			}
			if tc.wantSends == 0 && p.Stats().HTTPRequests != 1 {
				t.Fatalf("%d HTTP requests to find a mined variant, want 1 batch", p.Stats().HTTPRequests)
			}
		})
	}
}

// TestResumeTxOnAnotherChain: a journaled transaction resumed against a
// node of another chain is refused at once, not awaited until the timeout.
func TestResumeTxOnAnotherChain(t *testing.T) {
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{ChainID: 1337})
	c := dialT(t, a.RPCURL())
	s := deployer.NewKeySigner(a.Accounts()[0].PrivateKey)
	tx := signTransfer(t, s, a.Accounts()[1].Address, 0, gwei(3)) // for chain 31337
	_, err := c.ResumeTx(ctxT(t), s, tx, nil, deployer.TxOptions{Timeout: time.Minute})
	var cm *deployer.ChainMismatchError
	if !errors.As(err, &cm) || cm.Want != 31337 || cm.Got != 1337 {
		t.Fatalf("err = %v, want a chain mismatch 31337 vs 1337", err)
	}
}

// TestDeployAppReadsKMSRootKey: the root key rides in the preflight batch
// and equals what KMSRootKey reads.
func TestDeployAppReadsKMSRootKey(t *testing.T) {
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	c := dialT(t, a.RPCURL())
	owner := deployer.NewKeySigner(a.Accounts()[0].PrivateKey)
	k, _ := testKey(t)
	root := crypto.CompressPubkey(&k.PublicKey)
	kmsDep, err := c.DeployKMS(ctxT(t), owner, deployer.KMSDeployConfig{RootKey: root}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := newCountingProxy(t, a.RPCURL())
	pc := dialT(t, p.URL)
	d, err := pc.DeployApp(ctxT(t), owner, deployer.DeployAppConfig{KMS: kmsDep.KMSContract, ReadKMSRootKey: true}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(d.KMSRootKey) != string(root) {
		t.Fatalf("KMSRootKey = %x, want %x", d.KMSRootKey, root)
	}
	if n := p.count(); n > 4 {
		t.Fatalf("%d HTTP requests, want at most 4", n)
	}
	plain, err := c.DeployApp(ctxT(t), owner, deployer.DeployAppConfig{KMS: kmsDep.KMSContract}, deployer.TxOptions{})
	if err != nil || plain.KMSRootKey != nil {
		t.Fatalf("without ReadKMSRootKey: %v, key %x", err, plain.KMSRootKey)
	}
}

package devchain

import (
	"context"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/internal/chaintest"
)

func TestDevChainTransferMinedOnDemand(t *testing.T) {
	t.Parallel()
	d := NewTest(t, Config{})
	ctx := t.Context()
	c := chaintest.Dial(t, d.RPCURL())

	id, err := c.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Uint64() != testnet.DefaultChainID || d.ChainID() != testnet.DefaultChainID {
		t.Errorf("eth_chainId = %d, ChainID() = %d; want %d", id, d.ChainID(), testnet.DefaultChainID)
	}
	// On-demand mining: no block past the start-up block 1 until a
	// transaction arrives ...
	if n, err := c.BlockNumber(ctx); err != nil || n != 1 {
		t.Fatalf("block number before any tx = %d, %v; want 1", n, err)
	}
	// ... and a transaction nobody sent reads as null, not as an error.
	if _, err := c.TransactionReceipt(ctx, common.Hash{1}); err != ethereum.NotFound {
		t.Fatalf("receipt of an unknown tx: %v, want not found", err)
	}
	bal, err := c.BalanceAt(ctx, crypto.PubkeyToAddress(d.DevKey().PublicKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bal.Cmp(DefaultDevBalance) != 0 {
		t.Errorf("dev balance %s, want %s", bal, DefaultDevBalance)
	}
	// ... then exactly one, holding it.
	r := chaintest.CheckTransfer(ctx, t, c, d.DevKey())
	if r.BlockNumber.Uint64() != 2 {
		t.Errorf("transfer mined in block %d, want 2", r.BlockNumber)
	}
	block, err := c.BlockByNumber(ctx, r.BlockNumber)
	if err != nil {
		t.Fatal(err)
	}
	if block.GasLimit() != 30_000_000 {
		t.Errorf("block gas limit %d, want the default 30M kept from genesis", block.GasLimit())
	}
	if len(block.Transactions()) != 1 || block.Transactions()[0].Hash() != r.TxHash {
		t.Errorf("block 2 holds %d txs, want just the transfer", len(block.Transactions()))
	}
	if accts := d.Accounts(); len(accts) != 1 || accts[0].PrivateKey != d.DevKey() {
		t.Errorf("Accounts() = %v, want the dev key's account", accts)
	}
}

func TestDevChainBatchRequest(t *testing.T) {
	t.Parallel()
	d := NewTest(t, Config{ChainID: 1001})
	dev := crypto.PubkeyToAddress(d.DevKey().PublicKey)

	// A raw JSON-RPC batch over HTTP, as any client may send it.
	body := `[{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]},` +
		`{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["` + dev.Hex() + `","latest"]},` +
		`{"jsonrpc":"2.0","id":3,"method":"eth_blockNumber","params":[]}]`
	resp, err := http.Post(d.RPCURL(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var answers []struct {
		ID     int             `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  any             `json:"error"`
	}
	if err := json.Unmarshal(raw, &answers); err != nil {
		t.Fatalf("batch answer is not a JSON array: %v: %s", err, raw)
	}
	want := map[int]string{1: `"0x3e9"`, 2: `"` + hexutil.EncodeBig(DefaultDevBalance) + `"`, 3: `"0x1"`}
	if len(answers) != len(want) {
		t.Fatalf("%d answers, want %d: %s", len(answers), len(want), raw)
	}
	for _, a := range answers {
		if a.Error != nil || string(a.Result) != want[a.ID] {
			t.Errorf("answer %d = %s (error %v), want %s", a.ID, a.Result, a.Error, want[a.ID])
		}
	}

	// And through go-ethereum's own batch client.
	rc, err := rpc.DialContext(t.Context(), d.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var chainID, gasPrice hexutil.Big
	batch := []rpc.BatchElem{
		{Method: "eth_chainId", Result: &chainID},
		{Method: "eth_gasPrice", Result: &gasPrice},
	}
	if err := rc.BatchCallContext(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	for _, e := range batch {
		if e.Error != nil {
			t.Errorf("%s: %v", e.Method, e.Error)
		}
	}
	if chainID.ToInt().Uint64() != 1001 || gasPrice.ToInt().Sign() <= 0 {
		t.Errorf("batch: chain id %s, gas price %s", chainID.ToInt(), gasPrice.ToInt())
	}
}

func TestDevChainLogsAndContracts(t *testing.T) {
	t.Parallel()
	d := NewTest(t, Config{})
	ctx := t.Context()
	c := chaintest.Dial(t, d.RPCURL())
	s := chaintest.NewSender(ctx, t, c, d.DevKey())

	// Init code that emits one LOG0 with empty data and deploys nothing:
	// PUSH1 0, PUSH1 0, LOG0, STOP. eth_getLogs must see the log, which
	// needs the filter API that eth.New does not register by itself.
	initCode := []byte{0x60, 0x00, 0x60, 0x00, 0xa0, 0x00}
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{
		ChainID: s.ChainID, Nonce: s.Nonce, GasTipCap: s.Tip, GasFeeCap: s.FeeCap, Gas: 100_000, Data: initCode,
	}), s.Signer, s.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	r := waitReceipt(ctx, t, c, tx.Hash())
	if r.Status != types.ReceiptStatusSuccessful || len(r.Logs) != 1 {
		t.Fatalf("receipt status %d with %d logs, want success with 1", r.Status, len(r.Logs))
	}
	logs, err := c.FilterLogs(ctx, ethereum.FilterQuery{FromBlock: r.BlockNumber, ToBlock: r.BlockNumber})
	if err != nil {
		t.Fatalf("eth_getLogs: %v", err)
	}
	if len(logs) != 1 || logs[0].Address != r.ContractAddress || logs[0].TxHash != tx.Hash() {
		t.Errorf("eth_getLogs = %+v, want the one log of %s", logs, r.ContractAddress)
	}
}

func waitReceipt(ctx context.Context, t *testing.T, c interface {
	TransactionReceipt(context.Context, common.Hash) (*types.Receipt, error)
}, h common.Hash) *types.Receipt {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		r, err := c.TransactionReceipt(ctx, h)
		if err == nil {
			return r
		}
		if err != ethereum.NotFound {
			t.Fatalf("receipt %s: %v", h, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDevChainAllocAndGasLimit(t *testing.T) {
	t.Parallel()
	funded := common.HexToAddress("0x00000000000000000000000000000000000F00d5")
	amount := new(big.Int).Mul(big.NewInt(3), big.NewInt(params.Ether))
	devBalance := big.NewInt(params.Ether)
	d := NewTest(t, Config{Alloc: map[common.Address]*big.Int{funded: amount}, DevBalance: devBalance, GasLimit: 12_000_000})
	c := chaintest.Dial(t, d.RPCURL())
	if err := d.Mine(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h, err := c.HeaderByNumber(t.Context(), nil); err != nil || h.GasLimit != 12_000_000 || h.Number.Uint64() != 2 {
		t.Errorf("head after a mine: %+v, %v; want block 2 with the configured 12M gas limit", h, err)
	}
	for addr, want := range map[common.Address]*big.Int{funded: amount, d.Accounts()[0].Address: devBalance} {
		got, err := c.BalanceAt(t.Context(), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Cmp(want) != 0 {
			t.Errorf("balance of %s = %s, want %s", addr, got, want)
		}
	}
}

func TestDevChainBlockPeriod(t *testing.T) {
	t.Parallel()
	d := NewTest(t, Config{BlockPeriod: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := chaintest.Dial(t, d.RPCURL())
	for {
		n, err := c.BlockNumber(ctx)
		if err != nil {
			t.Fatalf("waiting for timed blocks: %v", err)
		}
		if n >= 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Block 1 is sealed as the beacon starts; 2 and 3 come a period apart.
	h2, err := c.HeaderByNumber(ctx, big.NewInt(2))
	if err != nil {
		t.Fatal(err)
	}
	h3, err := c.HeaderByNumber(ctx, big.NewInt(3))
	if err != nil {
		t.Fatal(err)
	}
	// Timestamps are whole seconds of the wall clock at sealing, so a
	// one-second period shows as 1 s, or 2 s when sealing straddles a tick.
	if gap := h3.Time - h2.Time; gap < 1 || gap > 2 {
		t.Errorf("blocks 2 and 3 are %d s apart, want about 1 (the period)", gap)
	}
	// A transfer still goes through on a timed chain.
	chaintest.CheckTransfer(ctx, t, c, d.DevKey())
}

func TestDevChainParallelInstances(t *testing.T) {
	t.Parallel()
	a := NewTest(t, Config{})
	b := NewTest(t, Config{ChainID: 4242})
	if a.RPCURL() == b.RPCURL() {
		t.Fatalf("both chains on %s", a.RPCURL())
	}
	if a.DevKey().Equal(b.DevKey()) {
		t.Error("two chains share a dev key; each start must generate its own")
	}
	for _, d := range []*Chain{a, b} {
		id, err := chaintest.ChainID(t.Context(), d.RPCURL())
		if err != nil {
			t.Fatal(err)
		}
		if id != d.ChainID() {
			t.Errorf("%s answers chain id %d, want %d", d.RPCURL(), id, d.ChainID())
		}
	}
}

func TestDevChainCloseStopsServer(t *testing.T) {
	t.Parallel()
	d, err := Start(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chaintest.ChainID(t.Context(), d.RPCURL()); err != nil {
		t.Fatalf("before Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := chaintest.ChainID(t.Context(), d.RPCURL()); err == nil {
		t.Error("chain still answers after Close")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDevChainWritesNothingToDisk(t *testing.T) {
	// t.Chdir and t.Setenv: not parallel.
	cwd, tmp, home := t.TempDir(), t.TempDir(), t.TempDir()
	t.Chdir(cwd)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("HOME", home)
	d, err := Start(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	chaintest.CheckTransfer(t.Context(), t, chaintest.Dial(t, d.RPCURL()), d.DevKey())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{cwd, tmp, home} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s has %d entries after a dev chain run, want none (first: %s)", dir, len(entries), entries[0].Name())
		}
	}
}

func TestDevChainRejectsUnderpricedTx(t *testing.T) {
	t.Parallel()
	// A zero tip is refused at the door instead of sitting in the pool, where
	// the on-demand loop would keep sealing empty blocks around it.
	d := NewTest(t, Config{})
	c := chaintest.Dial(t, d.RPCURL())
	s := chaintest.NewSender(t.Context(), t, c, d.DevKey())
	s.Tip = big.NewInt(0)
	if _, _, err := s.Transfer(t.Context(), common.Address{1}, big.NewInt(1)); err == nil ||
		!strings.Contains(err.Error(), "below minimum") {
		t.Errorf("zero-tip transfer: %v, want a tip-below-minimum error", err)
	}
}

func TestDevChainMine(t *testing.T) {
	t.Parallel()
	d := NewTest(t, Config{})
	ctx := t.Context()
	c := chaintest.Dial(t, d.RPCURL())
	start, err := c.BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Mine(ctx); err != nil {
		t.Fatalf("Mine: %v", err)
	}
	var res string
	if err := c.Client().CallContext(ctx, &res, "evm_mine"); err != nil {
		t.Fatalf("evm_mine: %v", err)
	}
	if res != "0x0" {
		t.Errorf("evm_mine answered %q, want \"0x0\" as anvil does", res)
	}
	if n, err := c.BlockNumber(ctx); err != nil || n != start+2 {
		t.Errorf("block number %d, %v after two mines from %d; want %d", n, err, start, start+2)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Mine(ctx); err == nil {
		t.Error("Mine on a closed chain succeeded")
	}
}

// Closing while blocks are being sealed must neither crash the process nor
// hang: go-ethereum's own dev loop can seal into a closed database, which
// exits the process, so this runs the race many times.
func TestDevChainCloseWhileSealing(t *testing.T) {
	t.Parallel()
	for i := range 15 {
		d, err := Start(t.Context(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		c := chaintest.Dial(t, d.RPCURL())
		s := chaintest.NewSender(t.Context(), t, c, d.DevKey())
		for range i % 4 {
			tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: s.ChainID, Nonce: s.Nonce,
				GasTipCap: s.Tip, GasFeeCap: s.FeeCap, Gas: params.TxGas, To: &common.Address{2}, Value: big.NewInt(1)}), s.Signer, s.Key)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SendTransaction(t.Context(), tx); err != nil {
				t.Fatal(err)
			}
			s.Nonce++
		}
		if err := d.Close(); err != nil {
			t.Fatalf("Close %d: %v", i, err)
		}
	}
}

func TestDevChainConfigCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero value", Config{}, ""},
		{"full", Config{ChainID: 5, BlockPeriod: 2 * time.Second, Alloc: map[common.Address]*big.Int{{1}: big.NewInt(1)},
			DevBalance: big.NewInt(0), GasLimit: 10_000_000}, ""},
		{"negative period", Config{BlockPeriod: -time.Second}, "negative"},
		{"sub-second period", Config{BlockPeriod: 1500 * time.Millisecond}, "whole number of seconds"},
		{"nil alloc balance", Config{Alloc: map[common.Address]*big.Int{{1}: nil}}, "nil or negative"},
		{"negative alloc balance", Config{Alloc: map[common.Address]*big.Int{{1}: big.NewInt(-1)}}, "nil or negative"},
		{"negative dev balance", Config{DevBalance: big.NewInt(-1)}, "negative"},
		{"tiny gas limit", Config{GasLimit: 10}, "minimum"},
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
	if _, err := Start(t.Context(), Config{BlockPeriod: time.Millisecond}); err == nil {
		t.Error("Start accepted a config that fails Check")
	}
}

func TestDevChainStartHonoursCancelledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if d, err := Start(ctx, Config{}); err == nil {
		_ = d.Close()
		t.Error("Start succeeded with a cancelled context")
	}
}

func BenchmarkDevChainStart(b *testing.B) {
	for b.Loop() {
		d, err := Start(b.Context(), Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkDevChainTransferRoundTrip(b *testing.B) {
	d := NewTest(b, Config{})
	chaintest.BenchmarkTransfers(b, d.RPCURL(), d.DevKey())
}

// Package chaintest holds the test helpers the local chains' tests share
// (anvil's in testnet, the embedded chain's in testnet/devchain): a client, a
// value-transfer sender and a raw eth_chainId probe.
package chaintest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"
)

// Dial connects an ethclient to rpcURL and closes it with the test.
func Dial(t testing.TB, rpcURL string) *ethclient.Client {
	t.Helper()
	c, err := ethclient.Dial(rpcURL)
	if err != nil {
		t.Fatalf("dial %s: %v", rpcURL, err)
	}
	t.Cleanup(c.Close)
	return c
}

// Sender signs and sends EIP-1559 value transfers from one key, tracking the
// nonce locally so benchmarks measure only the send and the receipt. Tests
// that build other transactions use its fields.
type Sender struct {
	C       *ethclient.Client
	Key     *ecdsa.PrivateKey
	Signer  types.Signer
	Nonce   uint64
	Tip     *big.Int
	FeeCap  *big.Int
	ChainID *big.Int
}

// NewSender reads the chain id, the key's pending nonce and the base fee.
func NewSender(ctx context.Context, t testing.TB, c *ethclient.Client, key *ecdsa.PrivateKey) *Sender {
	t.Helper()
	chainID, err := c.ChainID(ctx)
	if err != nil {
		t.Fatalf("eth_chainId: %v", err)
	}
	nonce, err := c.PendingNonceAt(ctx, crypto.PubkeyToAddress(key.PublicKey))
	if err != nil {
		t.Fatalf("nonce: %v", err)
	}
	head, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	tip := big.NewInt(params.GWei)
	// Twice the base fee plus the tip, as bind does: room for base fee rises.
	feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
	return &Sender{C: c, Key: key, Signer: types.LatestSignerForChainID(chainID),
		Nonce: nonce, Tip: tip, FeeCap: feeCap, ChainID: chainID}
}

// Transfer sends value wei to `to` and polls for the receipt without delay
// between polls; it returns the receipt and how many polls it took.
func (s *Sender) Transfer(ctx context.Context, to common.Address, value *big.Int) (*types.Receipt, int, error) {
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{
		ChainID:   s.ChainID,
		Nonce:     s.Nonce,
		GasTipCap: s.Tip,
		GasFeeCap: s.FeeCap,
		Gas:       params.TxGas,
		To:        &to,
		Value:     value,
	}), s.Signer, s.Key)
	if err != nil {
		return nil, 0, err
	}
	if err := s.C.SendTransaction(ctx, tx); err != nil {
		return nil, 0, err
	}
	s.Nonce++
	for polls := 1; ; polls++ {
		r, err := s.C.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			return r, polls, nil
		}
		if !errors.Is(err, ethereum.NotFound) {
			return nil, polls, err
		}
		if polls > 10 {
			// Past the first few immediate polls, back off a little so an
			// interval-mining chain is not hammered.
			select {
			case <-ctx.Done():
				return nil, polls, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// CheckTransfer sends a value transfer from `from` to a fresh address and
// checks the receipt and the recipient's balance.
func CheckTransfer(ctx context.Context, t *testing.T, c *ethclient.Client, from *ecdsa.PrivateKey) *types.Receipt {
	t.Helper()
	recipientKey, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	to := crypto.PubkeyToAddress(recipientKey.PublicKey)
	value := big.NewInt(12345)
	r, _, err := NewSender(ctx, t, c, from).Transfer(ctx, to, value)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatalf("receipt status %d, want success", r.Status)
	}
	if r.GasUsed != params.TxGas {
		t.Errorf("gas used %d, want %d", r.GasUsed, params.TxGas)
	}
	bal, err := c.BalanceAt(ctx, to, r.BlockNumber)
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	if bal.Cmp(value) != 0 {
		t.Errorf("recipient balance %s, want %s", bal, value)
	}
	return r
}

// ChainID asks an RPC endpoint for eth_chainId with one plain HTTP POST, so
// a test can tell a stopped server from a running one without a client that
// retries or keeps connections.
func ChainID(ctx context.Context, rpcURL string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rpcURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Result *hexutil.Uint64 `json:"result"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return 0, fmt.Errorf("eth_chainId answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if out.Result == nil {
		return 0, errors.New("eth_chainId: no result")
	}
	return uint64(*out.Result), nil
}

// BenchmarkTransfers measures value-transfer round trips (send, then poll
// for the receipt) from key, reporting the receipt polls per transfer.
func BenchmarkTransfers(b *testing.B, rpcURL string, key *ecdsa.PrivateKey) {
	ctx := b.Context()
	c := Dial(b, rpcURL)
	s := NewSender(ctx, b, c, key)
	to := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	polls := 0
	for b.Loop() {
		r, n, err := s.Transfer(ctx, to, big.NewInt(1))
		if err != nil {
			b.Fatal(err)
		}
		if r.Status != types.ReceiptStatusSuccessful {
			b.Fatal("transfer failed")
		}
		polls += n
	}
	b.ReportMetric(float64(polls)/float64(b.N), "receipt-polls/op")
}

package deployer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// TransactAll sends reqs from signer with consecutive nonces without
// waiting between them (each estimated on its own, so none may depend on
// another), then awaits every receipt. Receipts come in request order.
func (c *Client) TransactAll(ctx context.Context, signer Signer, reqs []TxRequest, opts TxOptions) ([]*types.Receipt, error) {
	p, err := c.preflight(ctx, signer.Address(), reqs, opts, nil)
	if err != nil {
		return nil, err
	}
	sent, err := c.sendAll(ctx, signer, p, opts)
	if err != nil {
		return nil, err
	}
	return c.waitMined(ctx, signer, p, sent, opts)
}

// SafeExecution is the on-chain execution of a Safe transaction.
type SafeExecution struct {
	TxHash  common.Hash
	Block   uint64
	Success bool // ExecutionSuccess; false: ExecutionFailure (nonce spent, call failed)
}

// logRange is the widest eth_getLogs range asked for at first; public RPCs
// cap ranges (often at a few thousand blocks), so a refusal halves it.
const (
	logRange    = 5000
	minLogRange = 100
)

// SafeExecution finds the transaction that executed safeTxHash on the Safe
// at safeAddr (its ExecutionSuccess or ExecutionFailure log, whose first
// topic is the hash), searching blocks from..head in bounded ranges. It
// returns nil when the hash was not executed.
func (c *Client) SafeExecution(ctx context.Context, safeAddr common.Address, safeTxHash common.Hash, from uint64) (*SafeExecution, error) {
	var head hexutil.Uint64
	if err := c.call(ctx, &head, "eth_blockNumber"); err != nil {
		return nil, err
	}
	step := uint64(logRange)
	for lo := from; lo <= uint64(head); {
		hi := min(lo+step-1, uint64(head))
		var logs []types.Log
		q := map[string]any{
			"address":   safeAddr,
			"fromBlock": hexutil.Uint64(lo),
			"toBlock":   hexutil.Uint64(hi),
			"topics":    [][]common.Hash{{safe.ExecutionSuccessTopic, safe.ExecutionFailureTopic}, {safeTxHash}},
		}
		if err := c.call(ctx, &logs, "eth_getLogs", q); err != nil {
			if step > minLogRange && isRangeRefusal(err) {
				step /= 2
				continue
			}
			return nil, fmt.Errorf("searching the execution of Safe transaction %s: %w", safeTxHash.Hex(), err)
		}
		for _, l := range logs {
			if l.Removed || len(l.Topics) < 2 || l.Topics[1] != safeTxHash {
				continue
			}
			return &SafeExecution{TxHash: l.TxHash, Block: l.BlockNumber, Success: l.Topics[0] == safe.ExecutionSuccessTopic}, nil
		}
		lo = hi + 1
	}
	return nil, nil
}

// isRangeRefusal recognises a node refusing an eth_getLogs range as too
// wide or too heavy (each provider words it differently).
func isRangeRefusal(err error) bool {
	s := strings.ToLower(err.Error())
	for _, w := range []string{"range", "too many", "limit", "exceed", "10000", "block"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded)
}

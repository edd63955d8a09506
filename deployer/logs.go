package deployer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
)

// Limits of the log and lookup reads. Public RPCs cap eth_getLogs (10,000
// blocks or 10,000 results is common; some allow less) and batch sizes.
const (
	// DefaultLogRange is the widest eth_getLogs block range asked for.
	DefaultLogRange = 10_000
	// maxBatch is the most calls put in one JSON-RPC batch.
	maxBatch = 100
	// creationFanout is how many eth_getCode probes one batch of
	// CreationBlock's search makes: each batch narrows the range 32-fold.
	creationFanout = 32
)

// LogQuery selects logs: the addresses (any of), topics (position-wise, any
// of each), and the inclusive block range (To zero: the head).
type LogQuery struct {
	Addresses []common.Address
	Topics    [][]common.Hash
	From, To  uint64
	// Range is the widest block range of one request; 0 means
	// DefaultLogRange. A node that refuses a range as too large (or too
	// many results) gets half of it, down to one block.
	Range uint64
}

// Logs reads the logs q selects in bounded eth_getLogs ranges, oldest
// first.
func (c *Client) Logs(ctx context.Context, q LogQuery) ([]types.Log, error) {
	to := q.To
	if to == 0 {
		var head hexutil.Uint64
		if err := c.call(ctx, &head, "eth_blockNumber"); err != nil {
			return nil, fmt.Errorf("eth_blockNumber: %w", err)
		}
		to = uint64(head)
	}
	span := q.Range
	if span == 0 {
		span = DefaultLogRange
	}
	var out []types.Log
	for from := q.From; from <= to; {
		end := min(to, from+span-1)
		var logs []types.Log
		err := c.call(ctx, &logs, "eth_getLogs", logFilter(q, from, end))
		if err != nil {
			if tooLarge(err) && span > 1 {
				span /= 2
				continue
			}
			return nil, fmt.Errorf("eth_getLogs blocks %d-%d: %w", from, end, err)
		}
		out = append(out, logs...)
		from = end + 1
	}
	return out, nil
}

func logFilter(q LogQuery, from, to uint64) map[string]any {
	f := map[string]any{"fromBlock": hexutil.Uint64(from), "toBlock": hexutil.Uint64(to)}
	if len(q.Addresses) > 0 {
		f["address"] = q.Addresses
	}
	if len(q.Topics) > 0 {
		f["topics"] = q.Topics
	}
	return f
}

// tooLarge recognises the ways nodes refuse a log query that spans too
// many blocks or matches too many logs (Alchemy, Infura, QuickNode,
// publicnode, Base's and geth's own messages; -32005 is "limit exceeded").
func tooLarge(err error) bool {
	var re rpc.Error
	if errors.As(err, &re) && re.ErrorCode() == -32005 {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"range", "too many", "too large", "more than", "exceed", "limit", "response size"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// CreationBlock finds the block in which the contract at addr got its code,
// by searching eth_getCode over past blocks, 32 probes per batch (five
// batches cover 30 million blocks). It needs a node that serves old state
// (an archive node, or a chain young enough); otherwise it fails and says
// so.
func (c *Client) CreationBlock(ctx context.Context, addr common.Address) (uint64, error) {
	var head hexutil.Uint64
	if err := c.call(ctx, &head, "eth_blockNumber"); err != nil {
		return 0, fmt.Errorf("eth_blockNumber: %w", err)
	}
	// Invariant: no code at lo-1 (or lo is 0), code at hi.
	lo, hi := uint64(0), uint64(head)
	for lo < hi {
		step := max(1, (hi-lo+creationFanout-1)/creationFanout)
		var blocks []uint64
		for b := lo; b < hi; b += step {
			blocks = append(blocks, b)
		}
		codes := make([]hexutil.Bytes, len(blocks))
		elems := make([]rpc.BatchElem, len(blocks))
		for i, b := range blocks {
			elems[i] = rpc.BatchElem{Method: "eth_getCode", Args: []any{addr, hexutil.Uint64(b)}, Result: &codes[i]}
		}
		if err := c.batch(ctx, elems); err != nil {
			return 0, err
		}
		newLo, newHi := lo, hi
		for i, b := range blocks {
			if elems[i].Error != nil {
				return 0, fmt.Errorf("the node cannot read the code of %s at block %d (%v): it may not keep old state; pass --since BLOCK", addr.Hex(), b, elems[i].Error)
			}
			if len(codes[i]) > 0 {
				newHi = b
				break
			}
			newLo = b + 1
		}
		if newLo == lo && newHi == hi {
			return 0, fmt.Errorf("searching the creation block of %s made no progress", addr.Hex())
		}
		lo, hi = newLo, newHi
	}
	return lo, nil
}

// BlockTimes reads the timestamps of blocks, in batches.
func (c *Client) BlockTimes(ctx context.Context, blocks []uint64) (map[uint64]uint64, error) {
	out := make(map[uint64]uint64, len(blocks))
	for start := 0; start < len(blocks); start += maxBatch {
		part := blocks[start:min(len(blocks), start+maxBatch)]
		heads := make([]headBlock, len(part))
		elems := make([]rpc.BatchElem, len(part))
		for i, b := range part {
			elems[i] = rpc.BatchElem{Method: "eth_getBlockByNumber", Args: []any{hexutil.Uint64(b), false}, Result: &heads[i]}
		}
		if err := c.batch(ctx, elems); err != nil {
			return nil, err
		}
		for i, e := range elems {
			if e.Error != nil {
				return nil, fmt.Errorf("eth_getBlockByNumber %d: %w", part[i], e.Error)
			}
			out[part[i]] = uint64(heads[i].Timestamp)
		}
	}
	return out, nil
}

// TxSenders reads the sender (from) of transactions, in batches.
func (c *Client) TxSenders(ctx context.Context, hashes []common.Hash) (map[common.Hash]common.Address, error) {
	out := make(map[common.Hash]common.Address, len(hashes))
	type txFrom struct {
		From common.Address `json:"from"`
	}
	for start := 0; start < len(hashes); start += maxBatch {
		part := hashes[start:min(len(hashes), start+maxBatch)]
		txs := make([]*txFrom, len(part))
		elems := make([]rpc.BatchElem, len(part))
		for i, h := range part {
			elems[i] = rpc.BatchElem{Method: "eth_getTransactionByHash", Args: []any{h}, Result: &txs[i]}
		}
		if err := c.batch(ctx, elems); err != nil {
			return nil, err
		}
		for i, e := range elems {
			if e.Error != nil {
				return nil, fmt.Errorf("eth_getTransactionByHash %s: %w", part[i].Hex(), e.Error)
			}
			if txs[i] != nil {
				out[part[i]] = txs[i].From
			}
		}
	}
	return out, nil
}

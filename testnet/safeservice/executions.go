package safeservice

import (
	"context"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// lookup returns the entry with its execution state refreshed.
func (s *Server) lookup(ctx context.Context, h common.Hash) *entry {
	s.mu.Lock()
	e := s.txs[h]
	s.mu.Unlock()
	if e != nil {
		s.refresh(ctx, e)
	}
	return e
}

// refresh looks for the transaction's execution on the chain (the real
// service indexes ExecutionSuccess/ExecutionFailure the same way).
func (s *Server) refresh(ctx context.Context, e *entry) {
	s.mu.Lock()
	done := e.exec != nil
	s.mu.Unlock()
	if done {
		return
	}
	logs, err := s.cfg.Chain.FilterLogs(ctx, ethereum.FilterQuery{
		FromBlock: new(big.Int).SetUint64(e.fromBlock), Addresses: []common.Address{e.safe},
		Topics: [][]common.Hash{{safe.ExecutionSuccessTopic, safe.ExecutionFailureTopic}, {e.hash}},
	})
	if err != nil || len(logs) == 0 {
		return
	}
	l := logs[0]
	x := &execution{txHash: l.TxHash, block: l.BlockNumber, success: l.Topics[0] == safe.ExecutionSuccessTopic}
	if tx, _, err := s.cfg.Chain.TransactionByHash(ctx, l.TxHash); err == nil {
		if from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), tx); err == nil {
			x.executor = from
		}
		if len(tx.Data()) > 4 {
			if args, err := safe.ABI().Methods["execTransaction"].Inputs.Unpack(tx.Data()[4:]); err == nil && len(args) == 10 {
				x.signatures, _ = args[9].([]byte)
			}
		}
	}
	if rc, err := s.cfg.Chain.TransactionReceipt(ctx, l.TxHash); err == nil {
		x.gasUsed, x.gasPrice = rc.GasUsed, rc.EffectiveGasPrice
	}
	if hd, err := s.cfg.Chain.HeaderByNumber(ctx, new(big.Int).SetUint64(l.BlockNumber)); err == nil {
		x.at = time.Unix(int64(hd.Time), 0)
	}
	s.mu.Lock()
	e.exec, e.modified = x, s.now()
	s.mu.Unlock()
	s.log.Info("executed", "safe_tx_hash", e.hash.Hex(), "tx", l.TxHash.Hex(), "success", x.success)
}

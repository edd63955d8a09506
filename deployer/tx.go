package deployer

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
)

// Defaults of TxOptions' zero values.
const (
	DefaultGasMarginPercent = 20
	DefaultConfirmations    = 1
	DefaultTxTimeout        = 2 * time.Minute
	// DefaultPollCap caps the receipt poll backoff (10 ms, 20 ms, … 1 s).
	DefaultPollCap = time.Second
	// fallbackTip is the priority fee used when the node lacks
	// eth_maxPriorityFeePerGas (op-service's txmgr uses the same floor).
	fallbackTip = 1_000_000_000
)

// TxOptions are the fee, gas, nonce and waiting settings of a transaction,
// mirroring Foundry's flags. The zero value is a sensible default.
type TxOptions struct {
	// MaxFee (--gas-price) caps maxFeePerGas of an EIP-1559 transaction, or
	// is the gas price of a legacy one. Nil: from the node.
	MaxFee *big.Int
	// PriorityFee (--priority-gas-price) is the tip. Nil: eth_maxPriorityFeePerGas.
	PriorityFee *big.Int
	// Legacy sends a type-0 transaction with a gas price (--legacy).
	Legacy bool
	// GasLimit, when non-zero, is used as is and gas estimation is skipped
	// (so a reverting call is only detected once mined). Operations that
	// send several transactions ignore it.
	GasLimit uint64
	// GasMarginPercent is added to the estimate: 0 means 20 %, a negative
	// value means none.
	GasMarginPercent int
	// Nonce overrides the account's pending nonce (--nonce).
	Nonce *uint64
	// Confirmations to wait for: 0 means 1 (the block holding the tx).
	Confirmations uint64
	// Timeout bounds the wait for the receipt after sending; 0 means 2 min.
	Timeout time.Duration
	// OnSigned is called with each signed transaction before it is
	// broadcast; an error stops the send. Callers journal the hash and raw
	// bytes here, so that an interrupted run can wait for (or re-broadcast)
	// exactly this transaction instead of signing another.
	OnSigned func(*types.Transaction) error
	// OnSent is called with the hash right after the node accepted the
	// transaction, before waiting (the CLI prints it then), and again for
	// each replacement the node accepts.
	OnSent func(common.Hash)
	// OnEvent, when set, hears what happens while waiting: replacements,
	// re-sends of a transaction the node lost, reorgs (see TxEventKind).
	OnEvent func(TxEvent)
	// PollInterval caps the receipt poll backoff; 0 means 1 s. On chains
	// whose block time is known or measured, polls wait for the next block
	// instead, which can be longer.
	PollInterval time.Duration
	// ReplaceAfter (--replace-after), when positive, replaces a transaction
	// that is not mined that long after it was signed: the same nonce, to,
	// value, data and gas, with the tip and fee cap raised by 12.5 % (nodes
	// require 10 %; the fee cap also at least 2 × base fee + tip), signed
	// and passed to OnSigned before it is broadcast. Every variant stays
	// awaited: whichever is mined is the result. Zero never replaces.
	ReplaceAfter time.Duration
	// MaxFeeCap (--max-fee) is the highest maxFeePerGas (legacy: gas
	// price) a replacement may use. Nil: MaxFee when set, else three times
	// the first transaction's fee cap.
	MaxFeeCap *big.Int
}

// Check rejects contradictory settings.
func (o TxOptions) Check() error {
	if o.Legacy && o.PriorityFee != nil {
		return errors.New("--priority-gas-price has no meaning with --legacy: drop one of them")
	}
	if o.MaxFee != nil && o.MaxFee.Sign() <= 0 {
		return errors.New("--gas-price must be positive")
	}
	if o.PriorityFee != nil && o.PriorityFee.Sign() < 0 {
		return errors.New("--priority-gas-price must not be negative")
	}
	if o.MaxFee != nil && o.PriorityFee != nil && o.PriorityFee.Cmp(o.MaxFee) > 0 {
		return fmt.Errorf("--priority-gas-price (%s gwei) is above --gas-price (%s gwei): the tip cannot exceed the fee cap", FormatGwei(o.PriorityFee), FormatGwei(o.MaxFee))
	}
	if o.Timeout < 0 || o.PollInterval < 0 {
		return errors.New("--timeout must not be negative")
	}
	if o.ReplaceAfter < 0 {
		return errors.New("--replace-after must not be negative")
	}
	if o.MaxFeeCap != nil {
		if o.MaxFeeCap.Sign() <= 0 {
			return errors.New("--max-fee must be positive")
		}
		if o.MaxFee != nil && o.MaxFeeCap.Cmp(o.MaxFee) < 0 {
			return fmt.Errorf("--max-fee (%s gwei) is below --gas-price (%s gwei): replacements can only raise the fee", FormatGwei(o.MaxFeeCap), FormatGwei(o.MaxFee))
		}
		if o.PriorityFee != nil && o.PriorityFee.Cmp(o.MaxFeeCap) > 0 {
			return fmt.Errorf("--priority-gas-price (%s gwei) is above --max-fee (%s gwei)", FormatGwei(o.PriorityFee), FormatGwei(o.MaxFeeCap))
		}
	}
	return nil
}

func (o TxOptions) confirmations() uint64 {
	if o.Confirmations == 0 {
		return DefaultConfirmations
	}
	return o.Confirmations
}

func (o TxOptions) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultTxTimeout
	}
	return o.Timeout
}

func (o TxOptions) pollCap() time.Duration {
	if o.PollInterval == 0 {
		return DefaultPollCap
	}
	return o.PollInterval
}

func (o TxOptions) withMargin(gas uint64) uint64 {
	m := o.GasMarginPercent
	if m == 0 {
		m = DefaultGasMarginPercent
	}
	if m < 0 {
		return gas
	}
	return gas + gas*uint64(m)/100
}

// TxRequest is one call or contract creation to send.
type TxRequest struct {
	To    *common.Address // nil creates a contract
	Data  []byte
	Value *big.Int
	// Role names the target for a NoCodeError, e.g. "the KMS contract (--kms-contract)".
	Role string
	// SkipCodeCheck skips the code check of To (its contract is created by
	// an earlier transaction of the same operation).
	SkipCodeCheck bool
	// GasLimit fixes this request's gas and skips its estimate; used when
	// the estimate cannot run yet because an earlier transaction of the
	// operation is not mined.
	GasLimit uint64
	// RevertHint, when set, turns a decoded estimate revert into advice.
	RevertHint func(reason string, data []byte) string

	// build, when set, gives To and Data once the operation's first nonce is
	// known (for addresses predicted from it). Such requests need GasLimit.
	build func(firstNonce uint64) (*common.Address, []byte)
}

// TxResult is the outcome of an admin transaction.
type TxResult struct {
	TxHash      common.Hash    `json:"tx_hash"`
	BlockNumber uint64         `json:"block_number"`
	GasUsed     uint64         `json:"gas_used"`
	Receipt     *types.Receipt `json:"-"`
}

func resultOf(r *types.Receipt) *TxResult {
	return &TxResult{TxHash: r.TxHash, BlockNumber: r.BlockNumber.Uint64(), GasUsed: r.GasUsed, Receipt: r}
}

// callArgs is the JSON object of eth_call / eth_estimateGas. Both "input"
// and "data" are sent: newer nodes read input, older ones data.
func callArgs(from common.Address, req TxRequest, gas uint64) map[string]any {
	m := map[string]any{"from": from}
	if req.To != nil {
		m["to"] = *req.To
	}
	if len(req.Data) > 0 {
		m["input"] = hexutil.Bytes(req.Data)
		m["data"] = hexutil.Bytes(req.Data)
	}
	if req.Value != nil && req.Value.Sign() > 0 {
		m["value"] = (*hexutil.Big)(req.Value)
	}
	if gas != 0 {
		m["gas"] = hexutil.Uint64(gas)
	}
	return m
}

// headBlock is the part of eth_getBlockByNumber this package reads.
type headBlock struct {
	Number    hexutil.Uint64 `json:"number"`
	Hash      common.Hash    `json:"hash"`
	Timestamp hexutil.Uint64 `json:"timestamp"`
	GasLimit  hexutil.Uint64 `json:"gasLimit"`
	BaseFee   *hexutil.Big   `json:"baseFeePerGas"`
}

// plan is the outcome of a preflight: unsigned transactions ready to sign.
type plan struct {
	chainID *big.Int
	from    common.Address
	txs     []*types.Transaction
	reqs    []TxRequest
	balance *big.Int
	cost    *big.Int // Σ gas × fee cap + value
	// head is the latest block the preflight read, at local time headSeen:
	// the receipt poll schedule starts from it.
	head     *headInfo
	headSeen time.Time
}

// extraRead is a read riding in the preflight batch, checked after the chain
// id and code checks and before estimate errors (so "not the owner" wins
// over the revert it would cause).
type extraRead struct {
	elem  rpc.BatchElem
	check func(elem rpc.BatchElem, chainID uint64) error
}

// preflight reads everything needed to send reqs from `from` in ONE JSON-RPC
// batch (chain id, code at each target, balance, pending nonce, gas
// estimates, the head block's base fee, the suggested tip, plus extras) and
// checks it. It signs nothing and sends nothing.
func (c *Client) preflight(ctx context.Context, from common.Address, reqs []TxRequest, opts TxOptions, extras []extraRead) (*plan, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	var (
		chainID  hexutil.Big
		balance  hexutil.Big
		nonce    hexutil.Uint64
		head     headBlock
		tip      hexutil.Big
		gasPrice hexutil.Big
		elems    []rpc.BatchElem
	)
	add := func(result any, method string, args ...any) int {
		elems = append(elems, rpc.BatchElem{Method: method, Args: args, Result: result})
		return len(elems) - 1
	}
	iChain := add(&chainID, "eth_chainId")
	codes := make([]hexutil.Bytes, len(reqs))
	iCode := make([]int, len(reqs))
	estimates := make([]hexutil.Uint64, len(reqs))
	iEst := make([]int, len(reqs))
	single := len(reqs) == 1
	for i, r := range reqs {
		iCode[i], iEst[i] = -1, -1
		if r.To != nil && !r.SkipCodeCheck {
			iCode[i] = add(&codes[i], "eth_getCode", *r.To, "latest")
		}
		fixed := r.GasLimit != 0 || (single && opts.GasLimit != 0)
		if !fixed {
			iEst[i] = add(&estimates[i], "eth_estimateGas", callArgs(from, r, 0))
		}
	}
	iBal := add(&balance, "eth_getBalance", from, "pending")
	iNonce := -1
	if opts.Nonce == nil {
		iNonce = add(&nonce, "eth_getTransactionCount", from, "pending")
	}
	iHead := add(&head, "eth_getBlockByNumber", "latest", false)
	iTip, iPrice := -1, -1
	if !opts.Legacy && opts.PriorityFee == nil {
		iTip = add(&tip, "eth_maxPriorityFeePerGas")
	}
	if opts.Legacy && opts.MaxFee == nil {
		iPrice = add(&gasPrice, "eth_gasPrice")
	}
	iExtra := len(elems)
	for _, x := range extras {
		elems = append(elems, x.elem)
	}
	if err := c.batch(ctx, elems); err != nil {
		return nil, err
	}
	seen := time.Now()
	// Reads that must succeed for any further check to mean something.
	for _, i := range []int{iChain, iBal, iNonce, iHead} {
		if i >= 0 && elems[i].Error != nil {
			return nil, fmt.Errorf("%s: %w", elems[i].Method, elems[i].Error)
		}
	}
	id := chainID.ToInt().Uint64()
	c.chainID.Store(id)
	if c.ExpectChainID != 0 && id != c.ExpectChainID {
		return nil, &ChainMismatchError{Want: c.ExpectChainID, Got: id}
	}
	for i, r := range reqs {
		if iCode[i] < 0 {
			continue
		}
		if err := elems[iCode[i]].Error; err != nil {
			return nil, fmt.Errorf("eth_getCode %s: %w", r.To.Hex(), err)
		}
		if len(codes[i]) == 0 {
			return nil, &NoCodeError{Address: *r.To, ChainID: id, Role: r.Role}
		}
	}
	for k, x := range extras {
		if x.check != nil {
			if err := x.check(elems[iExtra+k], id); err != nil {
				return nil, err
			}
		}
	}
	gas := make([]uint64, len(reqs))
	for i, r := range reqs {
		switch {
		case r.GasLimit != 0:
			gas[i] = r.GasLimit
		case single && opts.GasLimit != 0:
			gas[i] = opts.GasLimit
		default:
			if err := elems[iEst[i]].Error; err != nil {
				return nil, estimateError(r, err)
			}
			gas[i] = opts.withMargin(uint64(estimates[i]))
			// More than a block can hold is never includable; the estimate
			// itself fitting is what matters.
			if head.GasLimit > 0 && gas[i] > uint64(head.GasLimit) {
				gas[i] = max(uint64(head.GasLimit), uint64(estimates[i]))
			}
		}
	}

	p := &plan{chainID: new(big.Int).SetUint64(id), from: from, reqs: reqs, balance: balance.ToInt(), headSeen: seen,
		head: &headInfo{Number: head.Number, Hash: head.Hash, Timestamp: head.Timestamp, BaseFee: head.BaseFee}}
	next := uint64(nonce)
	if opts.Nonce != nil {
		next = *opts.Nonce
	}
	var feeCap, tipCap, price *big.Int
	legacy := opts.Legacy || head.BaseFee == nil
	if legacy {
		switch {
		case opts.MaxFee != nil:
			price = opts.MaxFee
		case iPrice >= 0 && elems[iPrice].Error == nil:
			price = gasPrice.ToInt()
		default:
			// A pre-London chain without --legacy: one more read.
			var gp hexutil.Big
			if err := c.call(ctx, &gp, "eth_gasPrice"); err != nil {
				return nil, fmt.Errorf("eth_gasPrice: %w", err)
			}
			price = gp.ToInt()
		}
		feeCap = price
	} else {
		base := head.BaseFee.ToInt()
		switch {
		case opts.PriorityFee != nil:
			tipCap = new(big.Int).Set(opts.PriorityFee)
		case iTip >= 0 && elems[iTip].Error == nil:
			tipCap = tip.ToInt()
		default:
			tipCap = big.NewInt(fallbackTip)
		}
		// Twice the base fee survives six full blocks of +12.5 % each.
		feeCap = new(big.Int).Add(new(big.Int).Mul(base, big.NewInt(2)), tipCap)
		if opts.MaxFee != nil {
			if opts.MaxFee.Cmp(base) < 0 {
				return nil, &FeeTooLowError{MaxFee: opts.MaxFee, BaseFee: base}
			}
			if feeCap.Cmp(opts.MaxFee) > 0 {
				feeCap = new(big.Int).Set(opts.MaxFee)
			}
		}
		if tipCap.Cmp(feeCap) > 0 {
			tipCap = new(big.Int).Set(feeCap)
		}
	}
	cost := new(big.Int)
	for i := range reqs {
		if reqs[i].build != nil {
			reqs[i].To, reqs[i].Data = reqs[i].build(next)
		}
		r := reqs[i]
		cost.Add(cost, new(big.Int).Mul(new(big.Int).SetUint64(gas[i]), feeCap))
		if r.Value != nil {
			cost.Add(cost, r.Value)
		}
		var tx *types.Transaction
		if legacy {
			tx = types.NewTx(&types.LegacyTx{Nonce: next + uint64(i), GasPrice: price, Gas: gas[i], To: r.To, Value: valueOf(r), Data: r.Data})
		} else {
			tx = types.NewTx(&types.DynamicFeeTx{ChainID: p.chainID, Nonce: next + uint64(i), GasTipCap: tipCap, GasFeeCap: feeCap, Gas: gas[i], To: r.To, Value: valueOf(r), Data: r.Data})
		}
		p.txs = append(p.txs, tx)
	}
	p.cost = cost
	if p.balance.Cmp(cost) < 0 {
		return nil, &InsufficientFundsError{Account: from, ChainID: id, Need: cost, Have: p.balance}
	}
	return p, nil
}

func valueOf(r TxRequest) *big.Int {
	if r.Value == nil {
		return new(big.Int)
	}
	return r.Value
}

// estimateError turns a failed eth_estimateGas into a typed error.
func estimateError(r TxRequest, err error) error {
	if !isRevert(err) {
		return fmt.Errorf("eth_estimateGas: %w", err)
	}
	data, _ := revertData(err)
	reason := DecodeRevert(data)
	if len(data) == 0 && err.Error() != "" && err.Error() != "execution reverted" {
		// Some nodes put the reason in the message only.
		reason = err.Error()
	}
	e := &EstimateRevertError{To: r.To, Reason: reason, Data: data}
	if r.RevertHint != nil {
		e.Hint = r.RevertHint(reason, data)
	}
	return e
}

// Transact runs one transaction end to end: batched preflight, sign, send,
// wait for the receipt and confirmations. A mined revert is a *RevertError
// with the reason replayed from the chain.
func (c *Client) Transact(ctx context.Context, signer Signer, req TxRequest, opts TxOptions) (*types.Receipt, error) {
	return c.transact(ctx, signer, req, opts, nil)
}

func (c *Client) transact(ctx context.Context, signer Signer, req TxRequest, opts TxOptions, extras []extraRead) (*types.Receipt, error) {
	p, err := c.preflight(ctx, signer.Address(), []TxRequest{req}, opts, extras)
	if err != nil {
		return nil, err
	}
	sent, err := c.sendAll(ctx, signer, p, opts)
	if err != nil {
		return nil, err
	}
	rs, err := c.waitMined(ctx, signer, p, sent, opts)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// Rebroadcast sends an already signed transaction again, e.g. one journaled
// before an interrupted run; transport failures are retried (the same bytes
// can only ever be mined once). A node that already has it pooled is not
// an error. A used nonce is reported as ErrNonceUsed: the transaction was
// mined already, or another one took the nonce, and only the receipt can
// tell (ResumeTx does all of this, and waits).
func (c *Client) Rebroadcast(ctx context.Context, raw []byte) error {
	var tx types.Transaction
	if err := tx.UnmarshalBinary(raw); err != nil {
		return fmt.Errorf("not a signed transaction: %w", err)
	}
	st, err := c.broadcast(ctx, raw, tx.Hash())
	switch st {
	case sendAccepted, sendKnown:
		return nil
	case sendNonceUsed:
		return fmt.Errorf("%w: %w", ErrNonceUsed, err)
	}
	return err
}

// ErrNonceUsed: the account's nonce moved past the transaction's.
var ErrNonceUsed = errors.New("the transaction's nonce is already used")

// WaitReceipt waits for a transaction sent earlier and its confirmations,
// counted against the head, and returns its receipt once its block is
// canonical. It does not decode a revert and cannot re-send (it has only
// the hash): see ResumeTx.
func (c *Client) WaitReceipt(ctx context.Context, h common.Hash, opts TxOptions) (*types.Receipt, error) {
	t := &pendingTx{hashes: []common.Hash{h}, accepted: -1}
	rs, err := newWaiter(c, nil, common.Address{}, nil, []*pendingTx{t}, opts).wait(ctx, 0)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// revertError replays a reverted transaction with eth_call on the state
// before its block (exact when it was the block's first transaction, as on
// an automining chain; close enough otherwise) to recover the reason.
func (c *Client) revertError(ctx context.Context, from common.Address, tx *types.Transaction, r *types.Receipt) error {
	e := &RevertError{TxHash: r.TxHash, BlockNumber: r.BlockNumber.Uint64(), GasUsed: r.GasUsed}
	block := "latest"
	if r.BlockNumber.Sign() > 0 {
		block = hexutil.EncodeBig(new(big.Int).Sub(r.BlockNumber, big.NewInt(1)))
	}
	req := TxRequest{To: tx.To(), Data: tx.Data(), Value: tx.Value()}
	var out hexutil.Bytes
	err := c.call(ctx, &out, "eth_call", callArgs(from, req, tx.Gas()), block)
	switch {
	case r.GasUsed >= tx.Gas() && (err == nil || !isRevert(err) || strings.Contains(err.Error(), "out of gas")):
		e.Reason = fmt.Sprintf("out of gas (used all %d): raise --gas-limit or omit it", tx.Gas())
	case err == nil:
		// The call succeeds on the parent state: the revert depended on
		// an earlier transaction of the same block.
		e.Reason = "reason unknown (the call succeeds when replayed before its block)"
	case isRevert(err):
		e.Data, _ = revertData(err)
		e.Reason = DecodeRevert(e.Data)
	default:
		e.Reason = "reason unknown (replaying the call failed: " + err.Error() + ")"
	}
	return e
}

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

// TxEventKind names what happened to a transaction while it was awaited.
type TxEventKind string

// The events TxOptions.OnEvent receives.
const (
	// TxMined: a receipt was seen (Block); it may still need confirmations.
	TxMined TxEventKind = "mined"
	// TxReplaced: the transaction was not mined within ReplaceAfter; a
	// variant with the same nonce and bumped fees (Hash) was broadcast.
	TxReplaced TxEventKind = "replaced"
	// TxRebroadcast: the node no longer knew the transaction (dropped from
	// its pool, or reorganised out) while its nonce was unused; the same
	// signed bytes were sent again.
	TxRebroadcast TxEventKind = "rebroadcast"
	// TxReorged: a receipt seen earlier is no longer canonical.
	TxReorged TxEventKind = "reorged"
	// TxFeeCapReached: a replacement was due but the fee ceiling does not
	// leave room for the minimum bump, or the node refused it (Detail).
	TxFeeCapReached TxEventKind = "fee-cap-reached"
)

// TxEvent reports progress of an awaited transaction (see TxOptions.OnEvent).
type TxEvent struct {
	Kind   TxEventKind
	Hash   common.Hash
	Nonce  uint64
	Block  uint64 // TxMined, TxReorged
	Detail string
}

// String is a one-line description for progress output.
func (e TxEvent) String() string {
	switch e.Kind {
	case TxMined:
		return fmt.Sprintf("transaction %s mined in block %d", e.Hash.Hex(), e.Block)
	case TxReplaced:
		return fmt.Sprintf("transaction (nonce %d) not mined in time: replaced by %s (%s)", e.Nonce, e.Hash.Hex(), e.Detail)
	case TxRebroadcast:
		return fmt.Sprintf("transaction %s: %s", e.Hash.Hex(), e.Detail)
	case TxReorged:
		return fmt.Sprintf("transaction %s: block %d was reorganised (%s)", e.Hash.Hex(), e.Block, e.Detail)
	}
	return fmt.Sprintf("transaction %s (nonce %d): %s", e.Hash.Hex(), e.Nonce, e.Detail)
}

// Minimum fee bump of a replacement: geth and most clients refuse less than
// +10 % on both the tip and the fee cap; 12.5 % leaves margin for rounding
// and for clients that ask a little more.
const (
	bumpNum, bumpDen = 9, 8
	minBumpPercent   = 110
	// defaultCeilingFactor bounds replacements when neither MaxFeeCap nor
	// MaxFee is set: three times the fee cap of the first variant.
	defaultCeilingFactor = 3
)

// Receipt poll schedule.
const (
	// firstPollDelay is the first receipt poll after a send on a chain
	// of unknown block time. anvil automine answers eth_sendRawTransaction
	// before it seals the block; measured on anvil 1.7.1 the receipt is
	// available about 1 ms after the answer (40 of 40 deploys needed one
	// poll at 1.5 ms, through a proxy); 4 ms leaves room for a busy machine.
	firstPollDelay = 4 * time.Millisecond
	// minPollDelay is the shortest backoff once a poll missed.
	minPollDelay = 10 * time.Millisecond
	// onDemandTolerance: see seeHead.
	onDemandTolerance = 500 * time.Millisecond
	// staleRounds is how many consecutive polls must agree before the
	// waiter acts on "the node lost it" or "the nonce is used": a node
	// behind a load balancer can briefly disagree with itself.
	staleRounds = 2
)

// pendingTx is one nonce being awaited with every variant signed for it.
type pendingTx struct {
	req TxRequest // the request, for the revert replay; zero on resume
	// hashes of every variant, oldest first. signed holds the variants
	// this process has in full, aligned to the end of hashes (a resumed
	// run knows only the newest one in full; WaitReceipt none).
	hashes []common.Hash
	signed []*types.Transaction
	raw    [][]byte // encodings of signed
	// accepted indexes signed: the newest variant the node took; -1 none.
	accepted int
	signedAt time.Time // when the newest variant was signed
	noBump   bool      // the ceiling leaves no room for another bump

	receipt          *types.Receipt
	unknown, noNonce int // consecutive polls: node lost it / nonce used elsewhere
	done             bool
}

func (t *pendingTx) newest() *types.Transaction {
	if len(t.signed) == 0 {
		return nil
	}
	return t.signed[len(t.signed)-1]
}

// variantOf returns the signed variant with hash h, or the newest.
func (t *pendingTx) variantOf(h common.Hash) *types.Transaction {
	for _, s := range t.signed {
		if s.Hash() == h {
			return s
		}
	}
	return t.newest()
}

// live indexes signed: the variant the node should hold (the newest it
// accepted; on resume, the newest signed); -1 when there is none.
func (t *pendingTx) live(resume bool) int {
	switch {
	case t.accepted >= 0:
		return t.accepted
	case resume && len(t.signed) > 0:
		return len(t.signed) - 1
	}
	return -1
}

func (t *pendingTx) add(tx *types.Transaction, raw []byte) {
	t.hashes = append(t.hashes, tx.Hash())
	t.signed = append(t.signed, tx)
	t.raw = append(t.raw, raw)
	t.signedAt = time.Now()
}

// sendStatus is how a node answered eth_sendRawTransaction.
type sendStatus int

const (
	sendFailed sendStatus = iota
	sendAccepted
	sendKnown       // the node has it already: pooled or mined
	sendNonceUsed   // nonce too low: mined already, or another tx took it
	sendUnderpriced // a replacement with too small a fee bump
)

// broadcast sends signed bytes, retried on transport failures (resending
// the same bytes is safe), and classifies the node's answer.
func (c *Client) broadcast(ctx context.Context, raw []byte, want common.Hash) (sendStatus, error) {
	var h common.Hash
	err := c.call(ctx, &h, "eth_sendRawTransaction", hexutil.Bytes(raw))
	if err == nil {
		if h != want {
			return sendFailed, fmt.Errorf("the node returned hash %s for transaction %s", h.Hex(), want.Hex())
		}
		return sendAccepted, nil
	}
	msg := strings.ToLower(err.Error())
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("already known", "already imported", "known transaction", "already exists", "already in mempool", "alreadyknown"):
		return sendKnown, nil
	case has("nonce too low", "nonce is too low", "oldnonce", "nonce_too_low"):
		return sendNonceUsed, err
	case has("underpriced", "replacement fee too low"):
		return sendUnderpriced, err
	}
	return sendFailed, err
}

// syncSendWait bounds how long eth_sendRawTransactionSync may hold a send:
// long enough for the next block on chains of up to a few seconds' block
// time (anvil at one block per second, Base), short enough that a slow
// chain falls back to polling, where replacement and drop detection live.
const syncSendWait = 3 * time.Second

// sendSync sends raw with eth_sendRawTransactionSync (EIP-7966), which
// answers with the receipt once the transaction is mined. It returns nil
// whenever that did not work out — the node lacks the method, the block was
// slower than syncSendWait, the answer was lost — and the caller then sends
// the same bytes the ordinary way, which is safe: a node that already has
// them says so, and the waiter takes over.
func (c *Client) sendSync(ctx context.Context, raw []byte, want common.Hash, p *plan, opts TxOptions) *types.Receipt {
	if c.DisableSyncSend || c.noSyncSend.Load() {
		return nil
	}
	wait := syncSendWait
	if d := c.timeout(); d < wait {
		wait = d
	}
	if opts.ReplaceAfter > 0 && opts.ReplaceAfter < wait {
		wait = opts.ReplaceAfter // the waiter must be free to replace it
	}
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var r *types.Receipt
	err := c.rpc.CallContext(sctx, &r, "eth_sendRawTransactionSync", hexutil.Bytes(raw))
	if err != nil {
		var rpcErr rpc.Error
		if errors.As(err, &rpcErr) && (rpcErr.ErrorCode() == -32601 || rpcErr.ErrorCode() == -32602) {
			c.noSyncSend.Store(true) // method not found / not in this form
		}
		return nil
	}
	if r == nil || r.TxHash != want || r.BlockNumber == nil {
		return nil
	}
	if p.chainID != nil && p.chainID.Sign() > 0 {
		c.chainID.Store(p.chainID.Uint64())
	}
	return r
}

// signVariant signs tx, journals it through OnSigned and encodes it.
func signVariant(ctx context.Context, signer Signer, tx *types.Transaction, chainID *big.Int, opts TxOptions) (*types.Transaction, []byte, error) {
	signed, err := signer.SignTx(ctx, tx, chainID)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w", err)
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the signed transaction: %w", err)
	}
	if opts.OnSigned != nil {
		if err := opts.OnSigned(signed); err != nil {
			return nil, nil, fmt.Errorf("before sending transaction %s: %w", signed.Hash().Hex(), err)
		}
	}
	return signed, raw, nil
}

// sendAll signs and sends the planned transactions in nonce order without
// waiting between them, calling opts.OnSent after each. It returns those
// the node took (a prefix of p.txs) and, if it stopped early, why.
func (c *Client) sendAll(ctx context.Context, signer Signer, p *plan, opts TxOptions) ([]*pendingTx, error) {
	var out []*pendingTx
	for i, tx := range p.txs {
		signed, raw, err := signVariant(ctx, signer, tx, p.chainID, opts)
		if err != nil {
			return out, err
		}
		t := &pendingTx{req: p.reqs[i], accepted: -1}
		t.add(signed, raw)
		if len(p.txs) == 1 && opts.confirmations() == 1 {
			// One transaction awaiting its block: ask the node to answer
			// with the receipt (no polls, no guessing when the block is due).
			if r := c.sendSync(ctx, raw, signed.Hash(), p, opts); r != nil {
				t.receipt, t.done, t.accepted = r, true, 0
				out = append(out, t)
				if opts.OnSent != nil {
					opts.OnSent(signed.Hash())
				}
				continue
			}
		}
		st, err := c.broadcast(ctx, raw, signed.Hash())
		switch st {
		case sendAccepted, sendKnown:
		case sendNonceUsed:
			// A try whose answer was lost may have reached the node, and
			// the tx been mined since; or another tx took the nonce. The
			// receipt tells (one read, only on this path).
			var r *types.Receipt
			if rerr := c.call(ctx, &r, "eth_getTransactionReceipt", signed.Hash()); rerr != nil {
				return out, fmt.Errorf("sending transaction (nonce %d): %w; its receipt could not be read: %w", signed.Nonce(), err, rerr)
			}
			if r == nil {
				return out, &NonceUsedError{Account: p.from, Nonce: signed.Nonce(), Hashes: t.hashes}
			}
		default:
			return out, fmt.Errorf("sending transaction %s (nonce %d): %w", signed.Hash().Hex(), signed.Nonce(), err)
		}
		t.accepted = 0
		out = append(out, t)
		if opts.OnSent != nil {
			opts.OnSent(signed.Hash())
		}
	}
	return out, nil
}

// NonceUsedError: the nonce of an awaited transaction was used by another
// transaction: none of the variants has a receipt, yet the account's mined
// nonce moved past it.
type NonceUsedError struct {
	Account common.Address
	Nonce   uint64
	Hashes  []common.Hash // every variant signed for the nonce
}

func (e *NonceUsedError) Error() string {
	hs := make([]string, len(e.Hashes))
	for i, h := range e.Hashes {
		hs[i] = h.Hex()
	}
	return fmt.Sprintf("nonce %d of %s was used by another transaction; %s was never mined: check the account's history", e.Nonce, e.Account.Hex(), strings.Join(hs, ", "))
}

// Is makes errors.Is(err, ErrNonceUsed) true.
func (e *NonceUsedError) Is(t error) bool { return t == ErrNonceUsed }

// headInfo is the part of a block header the waiter reads.
type headInfo struct {
	Number    hexutil.Uint64 `json:"number"`
	Hash      common.Hash    `json:"hash"`
	Timestamp hexutil.Uint64 `json:"timestamp"`
	BaseFee   *hexutil.Big   `json:"baseFeePerGas"`
}

// waiter awaits a group of pending transactions of one account: receipts,
// canonical inclusion, confirmations, and the repairs on the way (re-send
// of a lost tx, replacement of a stuck one).
type waiter struct {
	c       *Client
	signer  Signer // nil: no replacement
	from    common.Address
	chainID *big.Int
	txs     []*pendingTx
	opts    TxOptions
	resume  bool // a resumed run: re-send at once what the node lacks

	ceiling *big.Int // highest fee cap a replacement may use

	head     *headInfo // newest head seen
	headSeen time.Time // local time the newest head number was first seen
	// interval is the chain's block time: from the registry (known) or
	// from two headers (an estimate, which can be wrong on automine).
	interval      time.Duration
	intervalKnown bool
	delay         time.Duration // current backoff
	polls         int
	lastErr       error
	// recheck: a receipt arrived in a block below the head, whose hash
	// only the next poll reads; nothing to wait for before asking.
	recheck bool
}

func newWaiter(c *Client, signer Signer, from common.Address, chainID *big.Int, txs []*pendingTx, opts TxOptions) *waiter {
	w := &waiter{c: c, signer: signer, from: from, chainID: chainID, txs: txs, opts: opts, delay: minPollDelay}
	if chainID != nil {
		if ch, ok := ChainByID(chainID.Uint64()); ok && ch.BlockTime > 0 {
			w.interval, w.intervalKnown = ch.BlockTime, true
		}
	}
	switch {
	case opts.MaxFeeCap != nil:
		w.ceiling = opts.MaxFeeCap
	case opts.MaxFee != nil:
		w.ceiling = opts.MaxFee
	default:
		for _, t := range txs {
			if n := t.newest(); n != nil {
				w.ceiling = new(big.Int).Mul(n.GasFeeCap(), big.NewInt(defaultCeilingFactor))
				break
			}
		}
	}
	return w
}

// seeHead records a head read at local time at.
func (w *waiter) seeHead(h *headInfo, at time.Time) {
	if h == nil || h.Hash == (common.Hash{}) {
		return
	}
	if w.head != nil && h.Number > w.head.Number && !w.intervalKnown {
		if dt := time.Duration(int64(h.Timestamp)-int64(w.head.Timestamp)) * time.Second; dt > 0 {
			w.interval = dt / time.Duration(h.Number-w.head.Number)
			// A chain that mines on demand (geth --dev, hardhat) stamps
			// each block at least a second after its parent however fast
			// it mines, so its timestamps run ahead of our clock: then they
			// tell nothing about when the next block comes. The half second
			// allows for having seen the older head late.
			if at.Sub(w.headSeen)+onDemandTolerance < dt {
				w.interval = 0
			}
		}
	}
	if w.head == nil || h.Number != w.head.Number {
		w.headSeen = at
	}
	w.head = h
}

// wait polls until every transaction is mined in a canonical block with
// its confirmations, or the timeout. firstDelay is the wait before the
// first poll.
func (w *waiter) wait(ctx context.Context, firstDelay time.Duration) ([]*types.Receipt, error) {
	wctx, cancel := context.WithTimeout(ctx, w.opts.timeout())
	defer cancel()
	next := firstDelay
	for {
		if next > 0 {
			t := time.NewTimer(next)
			select {
			case <-wctx.Done():
				t.Stop()
				return nil, w.timeoutError(ctx)
			case <-t.C:
			}
		}
		done, err := w.poll(wctx)
		if err != nil {
			return nil, err
		}
		if done {
			out := make([]*types.Receipt, len(w.txs))
			for i, t := range w.txs {
				out[i] = t.receipt
			}
			return out, nil
		}
		if wctx.Err() != nil {
			return nil, w.timeoutError(ctx)
		}
		if err := w.repair(wctx); err != nil {
			return nil, err
		}
		next = w.nextDelay(time.Now())
	}
}

func (w *waiter) timeoutError(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("waiting for transaction %s: %w", w.txs[0].hashes[len(w.txs[0].hashes)-1].Hex(), ctx.Err())
	}
	for _, t := range w.txs {
		if !t.done {
			te := &TimeoutError{TxHash: t.hashes[len(t.hashes)-1], Timeout: w.opts.timeout(), Mined: t.receipt != nil, Variants: append([]common.Hash(nil), t.hashes...)}
			if w.lastErr != nil && t.receipt == nil {
				return fmt.Errorf("%w (last RPC error: %v)", te, w.lastErr)
			}
			return te
		}
	}
	return &TimeoutError{TxHash: w.txs[0].hashes[0], Timeout: w.opts.timeout()}
}

// poll reads, in one batch, the head, every variant's receipt, the block
// holding each known receipt (canonical check) and, after the first poll,
// what the node knows of each unmined transaction and the account's mined
// nonce. It reports whether everything is mined, canonical and confirmed.
func (w *waiter) poll(ctx context.Context) (bool, error) {
	var (
		head    headInfo
		prev    headInfo
		chainID hexutil.Big
		nonce   hexutil.Uint64
		elems   []rpc.BatchElem
	)
	add := func(result any, method string, args ...any) int {
		elems = append(elems, rpc.BatchElem{Method: method, Args: args, Result: result})
		return len(elems) - 1
	}
	iHead := add(&head, "eth_getBlockByNumber", "latest", false)
	iPrev, iChain, iNonce := -1, -1, -1
	// The block before the preflight's head gives the block time when the
	// registry does not know the chain (so a miss waits for the next block
	// instead of polling blindly).
	if w.polls == 0 && !w.intervalKnown && w.head != nil && w.head.Number > 0 {
		iPrev = add(&prev, "eth_getBlockByNumber", hexutil.Uint64(w.head.Number-1), false)
	}
	if w.polls == 0 && w.resume {
		iChain = add(&chainID, "eth_chainId")
	}
	type txElems struct {
		receipts []*types.Receipt
		iRcpt    int // first receipt element
		block    headInfo
		iBlock   int
		known    *rpcTxSeen
		iKnown   int
	}
	te := make([]txElems, len(w.txs))
	checks := w.polls > 0 || w.resume
	for i, t := range w.txs {
		x := &te[i]
		x.receipts = make([]*types.Receipt, len(t.hashes))
		x.iRcpt = len(elems)
		for k, h := range t.hashes {
			add(&x.receipts[k], "eth_getTransactionReceipt", h)
		}
		x.iBlock, x.iKnown = -1, -1
		if t.receipt != nil {
			x.iBlock = add(&x.block, "eth_getBlockByNumber", hexutil.Uint64(t.receipt.BlockNumber.Uint64()), false)
		} else if k := t.live(w.resume); checks && k >= 0 {
			x.iKnown = add(&x.known, "eth_getTransactionByHash", t.signed[k].Hash())
		}
	}
	if checks && w.from != (common.Address{}) {
		iNonce = add(&nonce, "eth_getTransactionCount", w.from, "latest")
	}
	err := w.c.batch(ctx, elems)
	w.polls++
	if err != nil {
		// The node may be restarting, or the retries ran out: keep polling
		// until the timeout.
		w.lastErr = err
		return false, nil
	}
	now := time.Now()
	if iChain >= 0 {
		if elems[iChain].Error != nil {
			return false, fmt.Errorf("eth_chainId: %w", elems[iChain].Error)
		}
		id := chainID.ToInt().Uint64()
		w.c.chainID.Store(id)
		if w.c.ExpectChainID != 0 && id != w.c.ExpectChainID {
			return false, &ChainMismatchError{Want: w.c.ExpectChainID, Got: id}
		}
		// A transaction signed for another chain can be neither found nor
		// sent here: say so instead of waiting for the timeout.
		if w.chainID != nil && w.chainID.Sign() > 0 && w.chainID.Uint64() != id {
			return false, fmt.Errorf("transaction %s was signed for chain %d: %w", w.txs[0].hashes[len(w.txs[0].hashes)-1].Hex(), w.chainID.Uint64(), &ChainMismatchError{Want: w.chainID.Uint64(), Got: id})
		}
	}
	if iPrev >= 0 && elems[iPrev].Error == nil && prev.Hash != (common.Hash{}) {
		if dt := int64(w.head.Timestamp) - int64(prev.Timestamp); dt > 0 {
			w.interval = time.Duration(dt) * time.Second
		}
	}
	if elems[iHead].Error != nil {
		w.lastErr = elems[iHead].Error
		return false, nil
	}
	w.seeHead(&head, now)
	confs := w.opts.confirmations()
	all := true
	for i, t := range w.txs {
		x := &te[i]
		var r *types.Receipt
		readAll := true
		for k := range t.hashes {
			e := elems[x.iRcpt+k]
			if e.Error != nil {
				w.lastErr = e.Error
				readAll = false
				continue
			}
			if x.receipts[k] != nil {
				r = x.receipts[k]
			}
		}
		prevR := t.receipt
		t.done = false
		if r == nil {
			if prevR != nil {
				w.event(TxEvent{Kind: TxReorged, Hash: prevR.TxHash, Nonce: w.nonceOf(t), Block: prevR.BlockNumber.Uint64(), Detail: "the receipt is gone: the block left the canonical chain"})
				t.receipt = nil
			}
			all = false
			if readAll {
				w.judgeUnmined(t, x.iKnown, elems, x.known, iNonce, uint64(nonce))
			}
			continue
		}
		t.unknown, t.noNonce = 0, 0
		if prevR == nil || prevR.BlockHash != r.BlockHash {
			if prevR != nil {
				w.event(TxEvent{Kind: TxReorged, Hash: prevR.TxHash, Nonce: w.nonceOf(t), Block: prevR.BlockNumber.Uint64(), Detail: fmt.Sprintf("re-included in block %d", r.BlockNumber.Uint64())})
			}
			w.event(TxEvent{Kind: TxMined, Hash: r.TxHash, Nonce: w.nonceOf(t), Block: r.BlockNumber.Uint64()})
		}
		t.receipt = r
		rb := r.BlockNumber.Uint64()
		canonical := false
		switch {
		case rb == uint64(head.Number):
			canonical = r.BlockHash == head.Hash
		case x.iBlock >= 0 && elems[x.iBlock].Error == nil && prevR != nil && prevR.BlockNumber.Uint64() == rb:
			canonical = x.block.Hash == r.BlockHash
		}
		if canonical && rb+confs <= uint64(head.Number)+1 {
			t.done = true
		} else {
			all = false
			if !canonical && rb+confs <= uint64(head.Number)+1 {
				w.recheck = true
			}
		}
	}
	return all, nil
}

// rpcTxSeen is the part of eth_getTransactionByHash the waiter reads.
type rpcTxSeen struct {
	Hash common.Hash `json:"hash"`
}

func (w *waiter) nonceOf(t *pendingTx) uint64 {
	if n := t.newest(); n != nil {
		return n.Nonce()
	}
	return 0
}

// judgeUnmined updates the lost/used counters of a transaction without a
// receipt from what the node said in the same batch.
func (w *waiter) judgeUnmined(t *pendingTx, iKnown int, elems []rpc.BatchElem, known *rpcTxSeen, iNonce int, mined uint64) {
	n := t.newest()
	if n == nil || iNonce < 0 || elems[iNonce].Error != nil {
		return
	}
	if mined > n.Nonce() {
		t.noNonce++
		t.unknown = 0
		return
	}
	t.noNonce = 0
	if iKnown >= 0 && elems[iKnown].Error == nil && known == nil {
		t.unknown++
	} else {
		t.unknown = 0
	}
}

// repair acts on what the last poll found: a nonce used elsewhere is an
// error, a lost transaction is sent again (same bytes), a stuck one is
// replaced with bumped fees.
func (w *waiter) repair(ctx context.Context) error {
	for _, t := range w.txs {
		if t.receipt != nil {
			continue
		}
		n := t.newest()
		if n == nil {
			continue
		}
		if t.noNonce >= staleRounds {
			return &NonceUsedError{Account: w.from, Nonce: n.Nonce(), Hashes: append([]common.Hash(nil), t.hashes...)}
		}
		need := staleRounds
		if w.resume {
			need = 1
		}
		if i := t.live(w.resume); i >= 0 && t.unknown >= need {
			st, err := w.c.broadcast(ctx, t.raw[i], t.signed[i].Hash())
			t.unknown = 0
			switch st {
			case sendAccepted, sendKnown:
				if t.accepted < 0 {
					t.accepted = i
				}
				w.event(TxEvent{Kind: TxRebroadcast, Hash: t.signed[i].Hash(), Nonce: n.Nonce(), Detail: "the node no longer knew it; the same signed bytes were sent again"})
				if w.opts.OnSent != nil && w.resume {
					w.opts.OnSent(t.signed[i].Hash())
				}
			case sendNonceUsed:
				// Mined meanwhile, or taken: the next polls decide.
			default:
				w.lastErr = err
			}
		}
		if w.signer != nil && w.opts.ReplaceAfter > 0 && !t.noBump && time.Since(t.signedAt) >= w.opts.ReplaceAfter {
			if err := w.replace(ctx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// replace signs and broadcasts a variant of t's newest transaction with
// fees bumped by at least 12.5 %, within the ceiling.
func (w *waiter) replace(ctx context.Context, t *pendingTx) error {
	old := t.newest()
	var base *big.Int
	if w.head != nil && w.head.BaseFee != nil {
		base = w.head.BaseFee.ToInt()
	}
	tx, ok := bumpedTx(old, base, w.ceiling)
	if !ok {
		t.noBump = true
		w.event(TxEvent{Kind: TxFeeCapReached, Hash: old.Hash(), Nonce: old.Nonce(), Detail: fmt.Sprintf("the fee ceiling %s gwei leaves no room for a +10%% bump over %s gwei: waiting for the current transaction (raise --max-fee to allow replacements)", FormatGwei(w.ceiling), FormatGwei(old.GasFeeCap()))})
		return nil
	}
	chainID := w.chainID
	if chainID == nil {
		chainID = old.ChainId()
	}
	signed, raw, err := signVariant(ctx, w.signer, tx, chainID, w.opts)
	if err != nil {
		return fmt.Errorf("replacing transaction %s: %w", old.Hash().Hex(), err)
	}
	t.add(signed, raw)
	st, err := w.c.broadcast(ctx, raw, signed.Hash())
	switch st {
	case sendAccepted, sendKnown:
		t.accepted = len(t.signed) - 1
		w.event(TxEvent{Kind: TxReplaced, Hash: signed.Hash(), Nonce: signed.Nonce(),
			Detail: fmt.Sprintf("replaces %s: max fee %s → %s gwei, tip %s → %s gwei", old.Hash().Hex(), FormatGwei(old.GasFeeCap()), FormatGwei(signed.GasFeeCap()), FormatGwei(old.GasTipCap()), FormatGwei(signed.GasTipCap()))})
		if w.opts.OnSent != nil {
			w.opts.OnSent(signed.Hash())
		}
	case sendUnderpriced:
		// The node wants a bigger bump: the next replacement starts from
		// this variant's fees, so it escalates.
		w.event(TxEvent{Kind: TxFeeCapReached, Hash: signed.Hash(), Nonce: signed.Nonce(), Detail: "the node refused the replacement as underpriced; trying a larger bump later"})
	case sendNonceUsed:
		// A variant was mined meanwhile: the next poll finds its receipt.
	default:
		if errors.Is(err, ErrRPCUnreachable) {
			// Perhaps it arrived, perhaps not: it stays awaited, and the
			// next replacement (if due) bumps from it.
			w.lastErr = err
			return nil
		}
		// E.g. insufficient funds for the higher fee: keep waiting for the
		// variants already out.
		t.noBump = true
		w.event(TxEvent{Kind: TxFeeCapReached, Hash: signed.Hash(), Nonce: signed.Nonce(), Detail: "the node refused the replacement: " + errText(err)})
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// bumpedTx is old with fees raised by 12.5 % (and, for EIP-1559, the fee
// cap at least 2 × base fee + tip), capped at ceiling; ok is false when the
// ceiling leaves less than the +10 % nodes require on each fee.
func bumpedTx(old *types.Transaction, baseFee, ceiling *big.Int) (*types.Transaction, bool) {
	bump := func(x *big.Int) *big.Int {
		y := new(big.Int).Mul(x, big.NewInt(bumpNum))
		y.Div(y, big.NewInt(bumpDen))
		return y.Add(y, big.NewInt(1))
	}
	enough := func(newV, oldV *big.Int) bool {
		// newV ≥ oldV × 1.10, in integers.
		return new(big.Int).Mul(newV, big.NewInt(100)).Cmp(new(big.Int).Mul(oldV, big.NewInt(minBumpPercent))) >= 0
	}
	capAt := func(x *big.Int) *big.Int {
		if ceiling != nil && x.Cmp(ceiling) > 0 {
			return new(big.Int).Set(ceiling)
		}
		return x
	}
	if old.Type() == types.LegacyTxType {
		price := capAt(bump(old.GasPrice()))
		if !enough(price, old.GasPrice()) {
			return nil, false
		}
		return types.NewTx(&types.LegacyTx{Nonce: old.Nonce(), GasPrice: price, Gas: old.Gas(), To: old.To(), Value: old.Value(), Data: old.Data()}), true
	}
	tip := bump(old.GasTipCap())
	feeCap := bump(old.GasFeeCap())
	if baseFee != nil {
		if floor := new(big.Int).Add(new(big.Int).Mul(baseFee, big.NewInt(2)), tip); floor.Cmp(feeCap) > 0 {
			feeCap = floor
		}
	}
	feeCap = capAt(feeCap)
	if tip.Cmp(feeCap) > 0 {
		tip = new(big.Int).Set(feeCap)
	}
	if !enough(feeCap, old.GasFeeCap()) || !enough(tip, old.GasTipCap()) {
		return nil, false
	}
	return types.NewTx(&types.DynamicFeeTx{ChainID: old.ChainId(), Nonce: old.Nonce(), GasTipCap: tip, GasFeeCap: feeCap, Gas: old.Gas(), To: old.To(), Value: old.Value(), Data: old.Data(), AccessList: old.AccessList()}), true
}

func (w *waiter) event(e TxEvent) {
	if w.opts.OnEvent != nil {
		w.opts.OnEvent(e)
	}
}

// nextDelay is the wait before the next poll: until the next block is due
// when the block time is known (or estimated), else a doubling backoff;
// never past a replacement that falls due.
func (w *waiter) nextDelay(now time.Time) time.Duration {
	if w.recheck {
		// Mined and deep enough; only the block hash check is left.
		w.recheck = false
		return minPollDelay
	}
	backoff := func() time.Duration {
		d := w.delay
		w.delay = min(w.delay*2, w.opts.pollCap())
		return d
	}
	var d time.Duration
	// An estimated block time is only believed while the head is younger
	// than it: an automining chain's head ages until the next transaction.
	plausible := w.intervalKnown || (w.head != nil && w.headSeen.Sub(time.Unix(int64(w.head.Timestamp), 0)) <= w.interval+time.Second)
	if w.interval > 0 && w.head != nil && plausible {
		// The head block was mined no later than we first saw it, nor
		// after the second its timestamp ends (chain clocks are NTP-close).
		mined := w.headSeen
		if t := time.Unix(int64(w.head.Timestamp)+1, 0); t.Before(mined) {
			mined = t
		}
		margin := 25*time.Millisecond + w.interval/40
		due := mined.Add(w.interval + margin)
		if due.After(now.Add(minPollDelay / 2)) {
			d = due.Sub(now)
			w.delay = minPollDelay
		} else {
			// The block is late (or was mined without our tx): short polls.
			d = backoff()
		}
		if !w.intervalKnown {
			// An estimate from two headers can be wrong (automine).
			d = min(d, w.opts.pollCap())
		}
	} else {
		d = backoff()
	}
	if w.signer != nil && w.opts.ReplaceAfter > 0 {
		for _, t := range w.txs {
			if t.receipt == nil && !t.noBump {
				d = min(d, max(time.Until(t.signedAt.Add(w.opts.ReplaceAfter)), 0))
			}
		}
	}
	return d
}

// waitMined waits for all transactions and turns the first status-0
// receipt into a *RevertError (returned with all receipts). txs are the
// sent prefix of p's transactions.
func (c *Client) waitMined(ctx context.Context, signer Signer, p *plan, txs []*pendingTx, opts TxOptions) ([]*types.Receipt, error) {
	if rs := syncedReceipts(txs); rs != nil {
		// The node answered the send with the receipt of the block it
		// just sealed: mined, canonical and, at one confirmation, done.
		if opts.OnEvent != nil {
			for i, r := range rs {
				opts.OnEvent(TxEvent{Kind: TxMined, Hash: r.TxHash, Nonce: txs[i].newest().Nonce(), Block: r.BlockNumber.Uint64()})
			}
		}
		return rs, c.checkReverts(ctx, p.from, txs, rs)
	}
	w := newWaiter(c, signer, p.from, p.chainID, txs, opts)
	first := firstPollDelay
	if p.head != nil {
		w.seeHead(p.head, p.headSeen)
		if w.intervalKnown {
			first = w.nextDelay(time.Now())
		}
	}
	rs, err := w.wait(ctx, first)
	if err != nil {
		return nil, err
	}
	return rs, c.checkReverts(ctx, p.from, txs, rs)
}

func (c *Client) checkReverts(ctx context.Context, from common.Address, txs []*pendingTx, rs []*types.Receipt) error {
	for i, r := range rs {
		if r.Status != types.ReceiptStatusSuccessful {
			tx := txs[i].variantOf(r.TxHash)
			if tx == nil {
				return &RevertError{TxHash: r.TxHash, BlockNumber: blockOf(r), GasUsed: r.GasUsed}
			}
			return c.revertError(ctx, from, tx, r)
		}
	}
	return nil
}

// ResumeTx finishes a transaction signed by an earlier run (e.g. read back
// from a journal): latest is its newest signed variant, earlier the hashes
// of variants replaced before it (same nonce). In one batch it looks for a
// receipt of any of them; when none is mined and the node does not know
// latest while its nonce is unused, the same signed bytes are broadcast
// again. Then it waits like Transact: with a signer and opts.ReplaceAfter
// a stuck transaction is replaced (each new variant goes through
// opts.OnSigned first), confirmations are counted against the head, and the
// receipt returned is canonical. The receipt of whichever variant was mined
// is returned; a mined revert is a *RevertError; a nonce taken by another
// transaction is a *NonceUsedError.
func (c *Client) ResumeTx(ctx context.Context, signer Signer, latest *types.Transaction, earlier []common.Hash, opts TxOptions) (*types.Receipt, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if latest == nil {
		return nil, errors.New("no transaction to resume")
	}
	from, err := types.Sender(types.LatestSignerForChainID(latest.ChainId()), latest)
	if err != nil {
		return nil, fmt.Errorf("transaction %s: cannot recover its sender: %w", latest.Hash().Hex(), err)
	}
	if signer != nil && signer.Address() != from {
		// Another key cannot replace it; waiting and re-sending still work.
		signer = nil
	}
	raw, err := latest.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding transaction %s: %w", latest.Hash().Hex(), err)
	}
	t := &pendingTx{accepted: -1}
	for _, h := range earlier {
		if h != latest.Hash() {
			t.hashes = append(t.hashes, h)
		}
	}
	t.add(latest, raw)
	w := newWaiter(c, signer, from, latest.ChainId(), []*pendingTx{t}, opts)
	w.resume = true
	rs, err := w.wait(ctx, 0)
	if err != nil {
		return nil, err
	}
	return rs[0], c.checkReverts(ctx, from, w.txs, rs)
}

// syncedReceipts returns every receipt when each transaction's came with
// its send, else nil.
func syncedReceipts(txs []*pendingTx) []*types.Receipt {
	rs := make([]*types.Receipt, len(txs))
	for i, t := range txs {
		if !t.done || t.receipt == nil {
			return nil
		}
		rs[i] = t.receipt
	}
	return rs
}

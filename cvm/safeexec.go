package cvm

import (
	"context"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// SafeExecJournal records a safe exec's transaction from the moment it is
// signed: a re-run waits for it instead of sending another.
type SafeExecJournal struct {
	Version    int       `json:"version"`
	Kind       string    `json:"kind"` // "safe-exec"
	Safe       string    `json:"safe"`
	SafeTxHash string    `json:"safe_tx_hash"`
	StartedAt  time.Time `json:"started_at"`
	Tx         *TxStep   `json:"tx,omitempty"`
}

// SafeExec executes a queued Safe transaction whose confirmations meet the
// threshold: each confirmation is verified against the Safe's current
// owners (a signature the service holds proves nothing by itself), an
// executing owner adds its own approval (v = 1), and execTransaction goes
// out with the signatures sorted by owner, journaled before broadcast.
func (r *Runner) SafeExec(ctx context.Context, cfg SafeTxConfig) (*SafeTxResult, error) {
	if r.Signer == nil {
		return nil, fmt.Errorf("%w: safe exec needs a key to send (and pay for) execTransaction", ErrInvalidConfig)
	}
	if err := cfg.Tx.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	v, err := r.loadSafeTx(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer v.chain.Close()
	v.say(r)
	v.res.Signer = r.Signer.Address().Hex()
	j := &SafeExecJournal{Kind: "safe-exec", Safe: v.res.Safe, SafeTxHash: v.res.SafeTxHash, StartedAt: r.now().UTC()}
	path := ""
	if r.Journals.Dir != "" {
		path = r.Journals.Path(v.svc.BaseURL, "safe-exec-"+v.res.SafeTxHash)
		var prev SafeExecJournal
		found, err := r.Journals.load(path, &prev, func() int { return prev.Version })
		if err != nil {
			return v.res, err
		}
		if found && prev.Tx != nil {
			j = &prev
			v.res.Journal = path
		}
	}
	save := func() error {
		if path == "" {
			return nil
		}
		j.Version = JournalVersion
		v.res.Journal = path
		return r.Journals.saveJSON(path, j)
	}
	done := func(rc *types.Receipt) (*SafeTxResult, error) {
		v.res.TxHash, v.res.BlockNumber, v.res.GasUsed = rc.TxHash.Hex(), rc.BlockNumber.Uint64(), rc.GasUsed
		if !executedIn(rc, v.st.Address, common.HexToHash(v.res.SafeTxHash)) {
			return v.res, fmt.Errorf("%w: transaction %s was mined but did not execute Safe transaction %s (no ExecutionSuccess)", ErrSafeCheck, rc.TxHash.Hex(), v.res.SafeTxHash)
		}
		v.res.Status = "executed"
		r.say("✓ Safe transaction %s executed in %s (block %d)", v.res.SafeTxHash, rc.TxHash.Hex(), rc.BlockNumber.Uint64())
		if path != "" {
			v.res.Journal = ""
			return v.res, r.Journals.Remove(path)
		}
		return v.res, nil
	}
	if j.Tx != nil {
		r.say("… execTransaction %s was sent earlier: waiting for it instead of sending another", j.Tx.Hash)
		tx, err := j.Tx.Signed()
		if err != nil {
			return v.res, fmt.Errorf("the journal's raw transaction is damaged (%v): check %s on an explorer", err, j.Tx.Hash)
		}
		opts := cfg.Tx
		opts.OnSigned = func(tx *types.Transaction) error {
			if err := j.Tx.AddVariant(tx, r.Signer.Address(), r.now().UTC()); err != nil {
				return err
			}
			return save()
		}
		rc, err := v.chain.ResumeTx(ctx, r.Signer, tx, j.Tx.Variants(), opts)
		if err != nil {
			return v.res, fmt.Errorf("resume execTransaction %s: %w", j.Tx.Hash, err)
		}
		return done(rc)
	}
	if x, err := v.executed(ctx); err != nil {
		return v.res, err
	} else if x != nil && x.Success {
		v.res.Status = "already-executed"
		r.say("✓ already executed in %s", x.TxHash.Hex())
		return v.res, nil
	}
	switch {
	case v.tx.Nonce < v.st.Nonce:
		return v.res, fmt.Errorf("%w: Safe %s is at nonce %d: nonce %d went to another transaction, so %s can never run", ErrSafeCheck, v.res.Safe, v.st.Nonce, v.tx.Nonce, v.res.SafeTxHash)
	case v.tx.Nonce > v.st.Nonce:
		return v.res, fmt.Errorf("%w: Safe %s is at nonce %d: execute the transactions queued before nonce %d first", ErrInvalidConfig, v.res.Safe, v.st.Nonce, v.tx.Nonce)
	}
	sigs, err := r.validConfirmations(ctx, v)
	if err != nil {
		return v.res, err
	}
	v.res.Confirmations = len(sigs)
	if len(sigs) < int(v.st.Threshold) {
		return v.res, &SafeThresholdError{Safe: v.st.Address, SafeTxHash: common.HexToHash(v.res.SafeTxHash), Have: len(sigs), Need: int(v.st.Threshold)}
	}
	packed := safe.Pack(sigs)
	if n := int(v.st.Threshold); len(sigs) > n {
		// checkSignatures reads the first threshold items (sorted by owner).
		packed = safe.Pack(sortedByOwner(sigs)[:n])
	}
	addr := v.st.Address
	opts := cfg.Tx
	opts.OnSigned = func(tx *types.Transaction) error {
		if j.Tx == nil {
			j.Tx = &TxStep{}
		}
		if err := j.Tx.AddVariant(tx, r.Signer.Address(), r.now().UTC()); err != nil {
			return err
		}
		return save()
	}
	opts.OnSent = func(h common.Hash) {
		r.say("→ execTransaction sent: %s%s", h.Hex(), r.explorerSuffix(v.res.ChainID, h))
	}
	if r.Confirm != nil {
		if err := r.Confirm(ctx, v.res.ChainID, fmt.Sprintf("execute Safe transaction %s on Safe %s", v.res.SafeTxHash, v.res.Safe)); err != nil {
			return v.res, err
		}
	}
	rc, err := v.chain.Transact(ctx, r.Signer, deployer.TxRequest{To: &addr, Data: v.tx.ExecData(packed), Role: "the Safe (--safe)"}, opts)
	if err != nil {
		return v.res, fmt.Errorf("execTransaction on Safe %s: %w", v.res.Safe, err)
	}
	return done(rc)
}

// validConfirmations keeps the confirmations that are signatures of the
// hash by current owners, one per owner, plus the executing owner's own
// approval (v = 1: msg.sender is the owner) when it did not sign.
func (r *Runner) validConfirmations(ctx context.Context, v *safeTxView) ([]safe.Signature, error) {
	h := common.HexToHash(v.res.SafeTxHash)
	seen := map[common.Address]bool{}
	var out []safe.Signature
	for _, c := range v.stx.Confirmations {
		raw, err := hexutil.Decode(c.Signature)
		if err != nil {
			r.say("warning: ignoring a confirmation that is not hex (owner %s)", c.Owner)
			continue
		}
		items, err := safe.Parse(h, raw)
		if err != nil || len(items) != 1 {
			r.say("warning: ignoring confirmation of %s: not one signature of this hash (%v)", c.Owner, err)
			continue
		}
		s := items[0]
		switch {
		case !v.st.IsOwner(s.Owner):
			r.say("warning: ignoring a confirmation by %s, who is not an owner of the Safe", s.Owner.Hex())
			continue
		case common.IsHexAddress(c.Owner) && common.HexToAddress(c.Owner) != s.Owner:
			r.say("warning: ignoring a confirmation the service files under %s but signed by %s", c.Owner, s.Owner.Hex())
			continue
		case seen[s.Owner]:
			continue
		}
		if s.Type == safe.SigApprovedHash && s.Owner != r.Signer.Address() {
			ok, err := safe.HashApproved(ctx, v.chain.Eth(), v.st.Address, s.Owner, h)
			if err != nil {
				return nil, fmt.Errorf("read approvedHashes of Safe %s: %w", v.st.Address.Hex(), err)
			}
			if !ok {
				r.say("warning: ignoring %s's approved-hash confirmation: the hash is not approved on-chain", s.Owner.Hex())
				continue
			}
		}
		seen[s.Owner] = true
		out = append(out, s)
	}
	if me := r.Signer.Address(); v.st.IsOwner(me) && !seen[me] && len(out) < int(v.st.Threshold) {
		r.say("%s executes as an owner: its own approval counts (no signature needed)", me.Hex())
		out = append(out, safe.ApprovedHash(me))
	}
	return out, nil
}

func sortedByOwner(sigs []safe.Signature) []safe.Signature {
	out := append([]safe.Signature(nil), sigs...)
	for i := 1; i < len(out); i++ {
		for k := i; k > 0 && out[k].Owner.Cmp(out[k-1].Owner) < 0; k-- {
			out[k], out[k-1] = out[k-1], out[k]
		}
	}
	return out
}

// executedIn reports whether the receipt holds the Safe's ExecutionSuccess
// for hash.
func executedIn(rc *types.Receipt, addr common.Address, hash common.Hash) bool {
	for _, l := range rc.Logs {
		if l.Address == addr && len(l.Topics) == 2 && l.Topics[0] == safe.ExecutionSuccessTopic && l.Topics[1] == hash {
			return true
		}
	}
	return false
}

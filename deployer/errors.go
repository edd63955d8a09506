package deployer

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// ErrPreflight matches (errors.Is) every error of a check that ran before a
// transaction was signed: nothing was sent when it is returned.
var ErrPreflight = errors.New("preflight check failed; nothing was sent")

// ChainMismatchError: the node serves another chain than --chain says.
type ChainMismatchError struct{ Want, Got uint64 }

func (e *ChainMismatchError) Error() string {
	return fmt.Sprintf("wrong chain: --chain is %s but the RPC node serves chain %s: fix --chain or --rpc-url", chainLabel(e.Want), chainLabel(e.Got))
}

func (e *ChainMismatchError) Is(t error) bool { return t == ErrPreflight }

// NoCodeError: the target address holds no contract on this chain.
type NoCodeError struct {
	Address common.Address
	ChainID uint64
	// Role says what was expected there, e.g. "the KMS contract (--kms-contract)".
	Role string
}

func (e *NoCodeError) Error() string {
	role := e.Role
	if role == "" {
		role = "the target contract"
	}
	return fmt.Sprintf("no contract at %s on chain %s: check %s and the chain", e.Address.Hex(), chainLabel(e.ChainID), role)
}

func (e *NoCodeError) Is(t error) bool { return t == ErrPreflight }

// InsufficientFundsError: the signer cannot pay gas limit × max fee (+ value).
type InsufficientFundsError struct {
	Account    common.Address
	ChainID    uint64
	Need, Have *big.Int
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: need %s ETH, have %s ETH on %s (chain %s): fund the account or lower --gas-price",
		FormatEther(e.Need), FormatEther(e.Have), e.Account.Hex(), chainLabel(e.ChainID))
}

func (e *InsufficientFundsError) Is(t error) bool { return t == ErrPreflight }

// NotOwnerError: an owner-only call from another account. Pending is true
// for acceptOwnership, where Owner is the pending owner.
type NotOwnerError struct {
	Contract common.Address
	Owner    common.Address
	Signer   common.Address
	Pending  bool
}

func (e *NotOwnerError) Error() string {
	if e.Pending {
		if e.Owner == (common.Address{}) {
			return fmt.Sprintf("no ownership transfer is pending on %s: the current owner must run transfer-ownership to %s first", e.Contract.Hex(), e.Signer.Hex())
		}
		return fmt.Sprintf("%s is not the pending owner of %s (pending owner is %s): sign with the pending owner's key", e.Signer.Hex(), e.Contract.Hex(), e.Owner.Hex())
	}
	return fmt.Sprintf("%s is not the owner of %s (owner is %s): sign with the owner's key", e.Signer.Hex(), e.Contract.Hex(), e.Owner.Hex())
}

func (e *NotOwnerError) Is(t error) bool { return t == ErrPreflight }

// EstimateRevertError: the node's gas estimation reverted, so the
// transaction would revert on-chain too. It was not sent.
type EstimateRevertError struct {
	To     *common.Address
	Reason string // decoded, e.g. `Error("Invalid owner address")`
	Data   []byte // raw revert data, may be empty
	Hint   string // what to do, when known
}

func (e *EstimateRevertError) Error() string {
	s := "transaction would revert: " + e.Reason
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s + " (nothing was sent)"
}

func (e *EstimateRevertError) Is(t error) bool { return t == ErrPreflight }

// FeeTooLowError: --gas-price is below the current base fee, so the
// transaction could not be included.
type FeeTooLowError struct{ MaxFee, BaseFee *big.Int }

func (e *FeeTooLowError) Error() string {
	return fmt.Sprintf("--gas-price %s gwei is below the current base fee %s gwei: raise --gas-price or omit it", FormatGwei(e.MaxFee), FormatGwei(e.BaseFee))
}

func (e *FeeTooLowError) Is(t error) bool { return t == ErrPreflight }

// RevertError: the transaction was mined and reverted (receipt status 0).
type RevertError struct {
	TxHash      common.Hash
	BlockNumber uint64
	GasUsed     uint64
	Reason      string // decoded by replaying the call; "" when unknown
	Data        []byte
}

func (e *RevertError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("transaction %s reverted in block %d (gas used %d): %s", e.TxHash.Hex(), e.BlockNumber, e.GasUsed, reason)
}

// TimeoutError: the transaction was sent but not mined (or not confirmed)
// in time. It may still be mined; TxHash is the handle to follow it.
type TimeoutError struct {
	TxHash  common.Hash // the newest variant
	Timeout time.Duration
	Mined   bool // mined but short of the requested confirmations
	// Variants are all transactions signed for the nonce, oldest first
	// (more than one after replacements); any of them may still be mined.
	Variants []common.Hash
}

func (e *TimeoutError) Error() string {
	what := "not mined"
	if e.Mined {
		what = "mined but not confirmed"
	}
	also := ""
	if len(e.Variants) > 1 {
		hs := make([]string, 0, len(e.Variants)-1)
		for _, h := range e.Variants {
			if h != e.TxHash {
				hs = append(hs, h.Hex())
			}
		}
		also = " (it replaced " + strings.Join(hs, ", ") + ")"
	}
	return fmt.Sprintf("transaction %s%s %s after %s: it may still be mined; check it later or raise --timeout (do not resend blindly: the same nonce is in use)", e.TxHash.Hex(), also, what, e.Timeout)
}

// Unwrap makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

func chainLabel(id uint64) string {
	if c, ok := ChainByID(id); ok {
		return c.String()
	}
	return fmt.Sprint(id)
}

// ErrNotMined: the node has no receipt for a transaction (yet): it is
// pending, was dropped, or this node never saw it.
var ErrNotMined = errors.New("not mined (or unknown to this node)")

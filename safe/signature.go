package safe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// SigType is how a Safe checks one owner's signature, named as the Safe
// Transaction Service names it.
type SigType string

const (
	SigEOA          SigType = "EOA"                // v 27/28: ECDSA over the safeTxHash (EIP-712)
	SigEthSign      SigType = "ETH_SIGN"           // v 31/32: personal_sign of the hash, v + 4
	SigApprovedHash SigType = "APPROVED_HASH"      // v 1: r = owner; the owner sends the tx or called approveHash
	SigContract     SigType = "CONTRACT_SIGNATURE" // v 0: r = contract owner, EIP-1271 data at offset s
)

// Signature is one owner's signature of a safeTxHash.
type Signature struct {
	Owner common.Address
	Type  SigType
	// Static is the 65-byte r ‖ s ‖ v item. For a contract signature, s is
	// rewritten by Pack to the offset of Dynamic.
	Static []byte
	// Dynamic is a contract signature's data (CONTRACT_SIGNATURE only).
	Dynamic []byte
}

// Bytes is the signature on its own, as a confirmation carries it: the
// static item, and for a contract signature its length-prefixed data right
// after (offset 65).
func (s Signature) Bytes() []byte { return Pack([]Signature{s}) }

// HashSigner signs a 32-byte digest and returns r ‖ s ‖ v with v 0 or 1
// (go-ethereum's crypto.Sign form). deployer's key signers implement it.
type HashSigner interface {
	Address() common.Address
	SignHash(ctx context.Context, hash common.Hash) ([]byte, error)
}

// Sign is signer's EIP-712 signature of safeTxHash (v 27/28), the form
// Safe{Wallet} and the Transaction Service expect from an EOA owner.
func Sign(ctx context.Context, signer HashSigner, safeTxHash common.Hash) (Signature, error) {
	sig, err := signer.SignHash(ctx, safeTxHash)
	if err != nil {
		return Signature{}, err
	}
	if len(sig) != 65 || sig[64] > 1 {
		return Signature{}, errors.New("safe: the signer returned a malformed signature")
	}
	out := append([]byte(nil), sig...)
	out[64] += 27
	return Signature{Owner: signer.Address(), Type: SigEOA, Static: out}, nil
}

// SignEthSign is signer's personal_sign ("\x19Ethereum Signed Message:\n32")
// of safeTxHash, with v + 4 (31/32) as the Safe expects that form.
func SignEthSign(ctx context.Context, signer HashSigner, safeTxHash common.Hash) (Signature, error) {
	sig, err := signer.SignHash(ctx, common.BytesToHash(accounts.TextHash(safeTxHash[:])))
	if err != nil {
		return Signature{}, err
	}
	if len(sig) != 65 || sig[64] > 1 {
		return Signature{}, errors.New("safe: the signer returned a malformed signature")
	}
	out := append([]byte(nil), sig...)
	out[64] += 31
	return Signature{Owner: signer.Address(), Type: SigEthSign, Static: out}, nil
}

// ApprovedHash is the signature item of an owner who approved the hash
// on-chain (approveHash) or who submits execTransaction itself: r = owner,
// s = 0, v = 1.
func ApprovedHash(owner common.Address) Signature {
	st := make([]byte, 65)
	copy(st[12:32], owner.Bytes())
	st[64] = 1
	return Signature{Owner: owner, Type: SigApprovedHash, Static: st}
}

// ErrBadSignature is wrapped by every signature that cannot be parsed or
// recovered.
var ErrBadSignature = errors.New("invalid Safe signature")

// Parse splits concatenated signatures as checkNSignatures reads them and
// recovers each signer. EOA and eth_sign items are recovered from hash;
// approved-hash and contract items name their owner in r and are not
// checked here (the chain or the caller must). A contract item's data is
// read at its offset.
func Parse(hash common.Hash, sigs []byte) ([]Signature, error) {
	if len(sigs) < 65 {
		return nil, fmt.Errorf("%w: %d bytes, want at least 65", ErrBadSignature, len(sigs))
	}
	var out []Signature
	// Static items run until the first contract signature's data.
	end := len(sigs)
	for i := 0; i+65 <= end; i += 65 {
		item := sigs[i : i+65]
		s, err := parseItem(hash, item)
		if err != nil {
			return nil, fmt.Errorf("signature %d: %w", len(out), err)
		}
		if s.Type == SigContract {
			off := new(big.Int).SetBytes(item[32:64])
			if !off.IsUint64() || off.Uint64() < uint64(i+65) || off.Uint64()+32 > uint64(len(sigs)) {
				return nil, fmt.Errorf("%w: signature %d: contract data offset %s is outside the signatures", ErrBadSignature, len(out), off)
			}
			o := int(off.Uint64())
			n := new(big.Int).SetBytes(sigs[o : o+32])
			if !n.IsUint64() || n.Uint64() > uint64(len(sigs)-o-32) {
				return nil, fmt.Errorf("%w: signature %d: contract data length %s is outside the signatures", ErrBadSignature, len(out), n)
			}
			s.Dynamic = append([]byte(nil), sigs[o+32:o+32+int(n.Uint64())]...)
			end = min(end, o)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no signature item", ErrBadSignature)
	}
	return out, nil
}

// parseItem reads one 65-byte item.
func parseItem(hash common.Hash, item []byte) (Signature, error) {
	s := Signature{Static: append([]byte(nil), item...)}
	v := item[64]
	switch {
	case v == 0:
		s.Type, s.Owner = SigContract, common.BytesToAddress(item[:32])
		if !zeroPrefix(item[:12]) {
			return s, fmt.Errorf("%w: contract signature r is not an address", ErrBadSignature)
		}
	case v == 1:
		s.Type, s.Owner = SigApprovedHash, common.BytesToAddress(item[:32])
		if !zeroPrefix(item[:12]) {
			return s, fmt.Errorf("%w: approved-hash signature r is not an address", ErrBadSignature)
		}
	case v == 27 || v == 28:
		s.Type = SigEOA
		a, err := recoverAddr(hash[:], item, v-27)
		if err != nil {
			return s, err
		}
		s.Owner = a
	case v == 31 || v == 32:
		s.Type = SigEthSign
		a, err := recoverAddr(accounts.TextHash(hash[:]), item, v-31)
		if err != nil {
			return s, err
		}
		s.Owner = a
	default:
		return s, fmt.Errorf("%w: v = %d (want 0, 1, 27, 28, 31 or 32)", ErrBadSignature, v)
	}
	return s, nil
}

func zeroPrefix(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func recoverAddr(digest, item []byte, recID byte) (common.Address, error) {
	sig := make([]byte, 65)
	copy(sig, item[:64])
	sig[64] = recID
	pub, err := crypto.SigToPub(digest, sig)
	if err != nil {
		return common.Address{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return crypto.PubkeyToAddress(*pub), nil
}

// Pack concatenates signatures for execTransaction: sorted by owner
// ascending (the Safe requires strictly increasing owners, GS026), then
// each contract signature's length-prefixed data after the static items,
// its s set to that offset.
func Pack(sigs []Signature) []byte {
	sorted := append([]Signature(nil), sigs...)
	sort.SliceStable(sorted, func(i, j int) bool { return bytes.Compare(sorted[i].Owner[:], sorted[j].Owner[:]) < 0 })
	static := make([]byte, 0, 65*len(sorted))
	var dynamic []byte
	for _, s := range sorted {
		item := append([]byte(nil), s.Static...)
		if s.Type == SigContract {
			off := 65*len(sorted) + len(dynamic)
			copy(item[32:64], common.LeftPadBytes(big.NewInt(int64(off)).Bytes(), 32))
			dynamic = append(dynamic, common.LeftPadBytes(big.NewInt(int64(len(s.Dynamic))).Bytes(), 32)...)
			dynamic = append(dynamic, s.Dynamic...)
		}
		static = append(static, item...)
	}
	return append(static, dynamic...)
}

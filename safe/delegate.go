package safe

import (
	"context"
	"errors"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// A delegate (a "proposer" in Safe{Wallet}) may propose transactions to a
// Safe's queue but not confirm them. An owner (the delegator) registers it
// with an EIP-712 signature over Delegate(delegateAddress, totp) in the
// Transaction Service's domain; totp is the current hour since the epoch.
var (
	delegateTypeHash       = crypto.Keccak256Hash([]byte("Delegate(address delegateAddress,uint256 totp)"))
	serviceDomainTypeHash  = crypto.Keccak256Hash([]byte("EIP712Domain(string name,string version,uint256 chainId)"))
	serviceDomainNoChainTH = crypto.Keccak256Hash([]byte("EIP712Domain(string name,string version)"))
	serviceName            = crypto.Keccak256([]byte("Safe Transaction Service"))
	serviceVersion         = crypto.Keccak256([]byte("1.0"))
)

// TOTP is the delegate signature's time step: whole hours since the epoch.
func TOTP(t time.Time) uint64 { return uint64(t.Unix() / 3600) }

// ServiceDomainSeparator is the Transaction Service's EIP-712 domain
// {name "Safe Transaction Service", version "1.0", chainId}; chainID 0
// gives the older domain without a chain id, which the service accepts too.
func ServiceDomainSeparator(chainID uint64) common.Hash {
	if chainID == 0 {
		return crypto.Keccak256Hash(serviceDomainNoChainTH[:], serviceName, serviceVersion)
	}
	return crypto.Keccak256Hash(serviceDomainTypeHash[:], serviceName, serviceVersion, word(new(big.Int).SetUint64(chainID)))
}

// DelegateDigest is the digest a delegator signs to add (or anyone of the
// pair signs to remove) delegate.
func DelegateDigest(chainID uint64, delegate common.Address, totp uint64) common.Hash {
	st := crypto.Keccak256Hash(delegateTypeHash[:], addrWord(delegate), word(new(big.Int).SetUint64(totp)))
	ds := ServiceDomainSeparator(chainID)
	return crypto.Keccak256Hash([]byte{0x19, 0x01}, ds[:], st[:])
}

// SignDelegate is signer's signature (v 27/28) registering delegate at
// time now.
func SignDelegate(ctx context.Context, signer HashSigner, chainID uint64, delegate common.Address, now time.Time) ([]byte, error) {
	sig, err := signer.SignHash(ctx, DelegateDigest(chainID, delegate, TOTP(now)))
	if err != nil {
		return nil, err
	}
	if len(sig) != 65 || sig[64] > 1 {
		return nil, errors.New("safe: the signer returned a malformed signature")
	}
	out := append([]byte(nil), sig...)
	out[64] += 27
	return out, nil
}

// RecoverDelegateSigner returns who signed a delegate registration at one
// of the accepted time steps (now's and the previous one) and domains
// (with and without the chain id), as the service accepts them.
func RecoverDelegateSigner(chainID uint64, delegate common.Address, sig []byte, now time.Time) ([]common.Address, error) {
	if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
		return nil, ErrBadSignature
	}
	var out []common.Address
	t := TOTP(now)
	for _, totp := range []uint64{t, t - 1} {
		for _, id := range []uint64{chainID, 0} {
			a, err := recoverAddr(DelegateDigest(id, delegate, totp).Bytes(), sig, sig[64]-27)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

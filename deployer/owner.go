package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/cvmdeploy/cvmdeploy/safe"
)

// OwnerKind is what an AppAuth's owner is, as read from the chain.
type OwnerKind string

const (
	OwnerEOA      OwnerKind = "eoa"      // no code (or an EIP-7702 delegation): a key signs
	OwnerSafe     OwnerKind = "safe"     // a Safe multisig: m of n owners sign
	OwnerTimelock OwnerKind = "timelock" // an OpenZeppelin TimelockController
	OwnerContract OwnerKind = "contract" // some other contract
)

// OwnerInfo describes an owner account.
type OwnerInfo struct {
	Address common.Address `json:"address"`
	Kind    OwnerKind      `json:"owner_kind"`
	// Delegation is the code an EIP-7702 account delegates to (Kind eoa).
	Delegation *common.Address `json:"delegation,omitempty"`
	// Safe is set when Kind is safe.
	Safe *SafeOwner `json:"safe,omitempty"`
	// Timelock is set when Kind is timelock: min delay, open execution and
	// the role holders.
	Timelock *TimelockInfo `json:"timelock,omitempty"`
}

// SafeOwner is a Safe read from the chain.
type SafeOwner struct {
	Version   string           `json:"version"`
	Threshold uint64           `json:"threshold"`
	Owners    []common.Address `json:"owners"`
	Nonce     uint64           `json:"nonce"`
	// Singleton is the proxy's implementation; SingletonName names the
	// canonical v1.4.1 ones ("Safe", "SafeL2"), "" for any other.
	Singleton       common.Address `json:"singleton"`
	SingletonName   string         `json:"singleton_name,omitempty"`
	FallbackHandler common.Address `json:"fallback_handler"`
	Guard           common.Address `json:"guard"`
}

// State is the owner as the safe package reads it.
func (s *SafeOwner) State(addr common.Address) *safe.State {
	return &safe.State{Address: addr, Version: s.Version, Owners: s.Owners, Threshold: s.Threshold, Nonce: s.Nonce,
		Singleton: s.Singleton, FallbackHandler: s.FallbackHandler, Guard: s.Guard}
}

// eip7702Prefix starts the code of an EIP-7702 delegated account.
var eip7702Prefix = []byte{0xef, 0x01, 0x00}

// DescribeOwner tells what addr is from the chain: an EOA, a Safe (with
// its version, m-of-n, owners and nonce), a TimelockController, or another
// contract. The code and the Safe reads go in one batch.
func (c *Client) DescribeOwner(ctx context.Context, addr common.Address) (*OwnerInfo, error) {
	var (
		chainID hexutil.Big
		code    hexutil.Bytes
		rets    [4]hexutil.Bytes
		slots   [3]common.Hash
	)
	elems := []rpc.BatchElem{
		{Method: "eth_chainId", Result: &chainID},
		{Method: "eth_getCode", Args: []any{addr, "latest"}, Result: &code},
	}
	for i, m := range []string{"VERSION", "getOwners", "getThreshold", "nonce"} {
		data := hexutil.Bytes(safe.CallData(m))
		elems = append(elems, rpc.BatchElem{Method: "eth_call", Args: []any{map[string]any{"to": addr, "input": data, "data": data}, "latest"}, Result: &rets[i]})
	}
	for i, k := range []common.Hash{safe.SingletonSlot, safe.FallbackHandlerSlot, safe.GuardSlot} {
		elems = append(elems, rpc.BatchElem{Method: "eth_getStorageAt", Args: []any{addr, k, "latest"}, Result: &slots[i]})
	}
	if err := c.batch(ctx, elems); err != nil {
		return nil, err
	}
	for _, e := range elems[:2] {
		if e.Error != nil {
			return nil, fmt.Errorf("%s: %w", e.Method, e.Error)
		}
	}
	id := chainID.ToInt().Uint64()
	c.chainID.Store(id)
	if c.ExpectChainID != 0 && id != c.ExpectChainID {
		return nil, &ChainMismatchError{Want: c.ExpectChainID, Got: id}
	}
	info := &OwnerInfo{Address: addr}
	if len(code) == 0 {
		info.Kind = OwnerEOA
		return info, nil
	}
	if len(code) == 23 && bytes.HasPrefix(code, eip7702Prefix) {
		d := common.BytesToAddress(code[3:])
		info.Kind, info.Delegation = OwnerEOA, &d
		return info, nil
	}
	safeReads := true
	for _, e := range elems[2:9] {
		if e.Error != nil {
			if !isRevert(e.Error) && !isCallFailure(e.Error) {
				return nil, fmt.Errorf("reading %s: %w", addr.Hex(), e.Error)
			}
			safeReads = false
		}
	}
	if safeReads {
		st, err := safe.DecodeState(addr, rets[0], rets[1], rets[2], rets[3], slots[0], slots[1], slots[2])
		if err == nil {
			info.Kind = OwnerSafe
			info.Safe = &SafeOwner{Version: st.Version, Threshold: st.Threshold, Owners: st.Owners, Nonce: st.Nonce,
				Singleton: st.Singleton, SingletonName: safe.KnownSingleton(st.Singleton), FallbackHandler: st.FallbackHandler, Guard: st.Guard}
			return info, nil
		}
		if !errors.Is(err, safe.ErrNotSafe) {
			return nil, err
		}
	}
	ok, err := c.describeTimelock(ctx, addr, info)
	if err != nil {
		return nil, err
	}
	if !ok {
		info.Kind = OwnerContract
	}
	return info, nil
}

// isCallFailure: an eth_call that failed for a reason of the callee (no
// such function and no fallback, bad return) rather than of the node.
func isCallFailure(err error) bool {
	var de rpc.DataError
	if errors.As(err, &de) {
		return true
	}
	var re rpc.Error
	return errors.As(err, &re) && re.ErrorCode() == 3
}

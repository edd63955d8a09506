package safe

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Storage slots of a Safe proxy (Safe v1.4.1).
var (
	SingletonSlot       = common.Hash{}
	FallbackHandlerSlot = crypto.Keccak256Hash([]byte("fallback_manager.handler.address"))
	GuardSlot           = crypto.Keccak256Hash([]byte("guard_manager.guard.address"))
	// sentinel is the start (and end) of the owners and modules lists.
	sentinel = common.HexToAddress("0x0000000000000000000000000000000000000001")
)

// CallData is the calldata of one of ABI's view or admin methods.
func CallData(method string, args ...any) []byte { return pack(method, args...) }

// Unpack decodes a method's return data.
func Unpack(method string, ret []byte) ([]any, error) {
	m, ok := ABI().Methods[method]
	if !ok {
		return nil, fmt.Errorf("safe: no method %s", method)
	}
	return m.Outputs.Unpack(ret)
}

// State is a Safe read from the chain.
type State struct {
	Address         common.Address
	Version         string
	Owners          []common.Address
	Threshold       uint64
	Nonce           uint64
	Singleton       common.Address
	FallbackHandler common.Address
	Guard           common.Address
}

// IsOwner reports whether a is among s.Owners.
func (s *State) IsOwner(a common.Address) bool {
	for _, o := range s.Owners {
		if o == a {
			return true
		}
	}
	return false
}

// Caller is what reading a Safe needs (an ethclient.Client has it).
type Caller interface {
	CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error)
	StorageAt(ctx context.Context, account common.Address, key common.Hash, block *big.Int) ([]byte, error)
	CodeAt(ctx context.Context, account common.Address, block *big.Int) ([]byte, error)
}

// ErrNotSafe is wrapped when an address does not answer like a Safe.
var ErrNotSafe = errors.New("not a Safe")

// DecodeState fills a State from the return data of VERSION(),
// getOwners(), getThreshold() and nonce() and the three storage slots.
func DecodeState(addr common.Address, version, owners, threshold, nonce []byte, singleton, handler, guard common.Hash) (*State, error) {
	st := &State{Address: addr, Singleton: common.BytesToAddress(singleton[:]), FallbackHandler: common.BytesToAddress(handler[:]), Guard: common.BytesToAddress(guard[:])}
	v, err := Unpack("VERSION", version)
	if err != nil || len(v) != 1 {
		return nil, fmt.Errorf("%w: %s: VERSION() does not answer a string", ErrNotSafe, addr.Hex())
	}
	st.Version, _ = v[0].(string)
	o, err := Unpack("getOwners", owners)
	if err != nil || len(o) != 1 {
		return nil, fmt.Errorf("%w: %s: getOwners() does not answer an address list", ErrNotSafe, addr.Hex())
	}
	st.Owners, _ = o[0].([]common.Address)
	for _, name := range []string{"getThreshold", "nonce"} {
		ret := threshold
		if name == "nonce" {
			ret = nonce
		}
		if len(ret) != 32 {
			return nil, fmt.Errorf("%w: %s: %s() returned %d bytes", ErrNotSafe, addr.Hex(), name, len(ret))
		}
		n := new(big.Int).SetBytes(ret)
		if !n.IsUint64() {
			return nil, fmt.Errorf("%w: %s: %s() = %s is out of range", ErrNotSafe, addr.Hex(), name, n)
		}
		if name == "nonce" {
			st.Nonce = n.Uint64()
		} else {
			st.Threshold = n.Uint64()
		}
	}
	if len(st.Owners) == 0 || st.Threshold == 0 || st.Threshold > uint64(len(st.Owners)) {
		return nil, fmt.Errorf("%w: %s: %d owners with threshold %d is not a set-up Safe", ErrNotSafe, addr.Hex(), len(st.Owners), st.Threshold)
	}
	return st, nil
}

// ReadState reads a Safe at the latest block (seven reads; deployer
// batches the same reads into one request).
func ReadState(ctx context.Context, c Caller, addr common.Address) (*State, error) {
	code, err := c.CodeAt(ctx, addr, nil)
	if err != nil {
		return nil, err
	}
	if len(code) == 0 {
		return nil, fmt.Errorf("%w: %s has no code", ErrNotSafe, addr.Hex())
	}
	call := func(method string) ([]byte, error) {
		ret, err := c.CallContract(ctx, ethereum.CallMsg{To: &addr, Data: CallData(method)}, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s(): %v", ErrNotSafe, addr.Hex(), method, err)
		}
		return ret, nil
	}
	var rets [4][]byte
	for i, m := range []string{"VERSION", "getOwners", "getThreshold", "nonce"} {
		if rets[i], err = call(m); err != nil {
			return nil, err
		}
	}
	var slots [3]common.Hash
	for i, k := range []common.Hash{SingletonSlot, FallbackHandlerSlot, GuardSlot} {
		b, err := c.StorageAt(ctx, addr, k, nil)
		if err != nil {
			return nil, err
		}
		slots[i] = common.BytesToHash(b)
	}
	return DecodeState(addr, rets[0], rets[1], rets[2], rets[3], slots[0], slots[1], slots[2])
}

// HashApproved reads approvedHashes(owner, hash) != 0: the owner called
// approveHash(hash).
func HashApproved(ctx context.Context, c Caller, safe, owner common.Address, hash common.Hash) (bool, error) {
	ret, err := c.CallContract(ctx, ethereum.CallMsg{To: &safe, Data: CallData("approvedHashes", owner, hash)}, nil)
	if err != nil {
		return false, err
	}
	return new(big.Int).SetBytes(ret).Sign() != 0, nil
}

// Modules reads the first page of enabled modules.
func Modules(ctx context.Context, c Caller, safe common.Address) ([]common.Address, error) {
	ret, err := c.CallContract(ctx, ethereum.CallMsg{To: &safe, Data: CallData("getModulesPaginated", sentinel, big.NewInt(50))}, nil)
	if err != nil {
		return nil, err
	}
	out, err := Unpack("getModulesPaginated", ret)
	if err != nil || len(out) != 2 {
		return nil, fmt.Errorf("getModulesPaginated: %v", err)
	}
	mods, _ := out[0].([]common.Address)
	return mods, nil
}

// SetupData is setup(owners, threshold, 0, 0x, handler, 0, 0, 0): a plain
// m-of-n Safe with a fallback handler and nothing else.
func SetupData(owners []common.Address, threshold uint64, handler common.Address) []byte {
	return pack("setup", owners, new(big.Int).SetUint64(threshold), common.Address{}, []byte{}, handler, common.Address{}, new(big.Int), common.Address{})
}

// CreateProxyData is the proxy factory's createProxyWithNonce(singleton,
// initializer, saltNonce).
func CreateProxyData(singleton common.Address, initializer []byte, saltNonce *big.Int) []byte {
	return pack("createProxyWithNonce", singleton, initializer, orZero(saltNonce))
}

// PredictProxy is the address createProxyWithNonce gives: CREATE2 from the
// factory with salt keccak256(keccak256(initializer) ‖ saltNonce) over
// proxyCreationCode ‖ singleton.
func PredictProxy(factory common.Address, proxyCreationCode []byte, singleton common.Address, initializer []byte, saltNonce *big.Int) common.Address {
	salt := crypto.Keccak256(crypto.Keccak256(initializer), word(saltNonce))
	init := append(append([]byte(nil), proxyCreationCode...), addrWord(singleton)...)
	return crypto.CreateAddress2(factory, [32]byte(salt), crypto.Keccak256(init))
}

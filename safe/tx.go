package safe

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Operation is how a Safe runs a transaction's call.
type Operation uint8

const (
	OpCall         Operation = 0
	OpDelegateCall Operation = 1
)

func (o Operation) String() string {
	switch o {
	case OpCall:
		return "CALL"
	case OpDelegateCall:
		return "DELEGATECALL"
	}
	return fmt.Sprintf("operation(%d)", uint8(o))
}

// EIP-712 type hashes of Safe v1.4.1 (no name or version in the domain).
var (
	DomainTypeHash = crypto.Keccak256Hash([]byte("EIP712Domain(uint256 chainId,address verifyingContract)"))
	SafeTxTypeHash = crypto.Keccak256Hash([]byte("SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)"))
)

// Tx is a Safe transaction: what the owners sign and execTransaction runs.
// Nil big.Int fields count as zero.
type Tx struct {
	To             common.Address
	Value          *big.Int
	Data           []byte
	Operation      Operation
	SafeTxGas      *big.Int
	BaseGas        *big.Int
	GasPrice       *big.Int
	GasToken       common.Address
	RefundReceiver common.Address
	Nonce          uint64
}

func orZero(v *big.Int) *big.Int {
	if v == nil {
		return new(big.Int)
	}
	return v
}

// word is v as one 32-byte ABI word.
func word(v *big.Int) []byte { return common.LeftPadBytes(orZero(v).Bytes(), 32) }

func addrWord(a common.Address) []byte { return common.LeftPadBytes(a.Bytes(), 32) }

// DomainSeparator is the Safe's EIP-712 domain separator (domainSeparator()).
func DomainSeparator(chainID uint64, safe common.Address) common.Hash {
	return crypto.Keccak256Hash(DomainTypeHash[:], word(new(big.Int).SetUint64(chainID)), addrWord(safe))
}

// StructHash is the EIP-712 hash of the SafeTx struct.
func (t Tx) StructHash() common.Hash {
	return crypto.Keccak256Hash(
		SafeTxTypeHash[:],
		addrWord(t.To),
		word(t.Value),
		crypto.Keccak256(t.Data),
		word(big.NewInt(int64(t.Operation))),
		word(t.SafeTxGas),
		word(t.BaseGas),
		word(t.GasPrice),
		addrWord(t.GasToken),
		addrWord(t.RefundReceiver),
		word(new(big.Int).SetUint64(t.Nonce)),
	)
}

// Encode is the 66-byte preimage of the hash (encodeTransactionData()):
// 0x19 ‖ 0x01 ‖ domainSeparator ‖ structHash.
func (t Tx) Encode(chainID uint64, safe common.Address) []byte {
	ds, sh := DomainSeparator(chainID, safe), t.StructHash()
	out := make([]byte, 0, 66)
	out = append(out, 0x19, 0x01)
	out = append(out, ds[:]...)
	return append(out, sh[:]...)
}

// Hash is the safeTxHash the owners sign (getTransactionHash()).
func (t Tx) Hash(chainID uint64, safe common.Address) common.Hash {
	return crypto.Keccak256Hash(t.Encode(chainID, safe))
}

// Refunds reports whether executing t pays anyone from the Safe's funds
// (gasPrice > 0 makes execTransaction refund gas to refundReceiver).
func (t Tx) Refunds() bool { return orZero(t.GasPrice).Sign() != 0 }

// ExecData is the calldata of execTransaction(t, signatures).
func (t Tx) ExecData(signatures []byte) []byte {
	return pack("execTransaction", t.To, orZero(t.Value), nonNil(t.Data), uint8(t.Operation),
		orZero(t.SafeTxGas), orZero(t.BaseGas), orZero(t.GasPrice), t.GasToken, t.RefundReceiver, nonNil(signatures))
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Call is one call of a batch: a plain CALL from the Safe.
type Call struct {
	To    common.Address
	Value *big.Int
	Data  []byte
}

// PackMultiSend encodes calls as MultiSendCallOnly's transactions bytes:
// per call operation(1) ‖ to(20) ‖ value(32) ‖ len(32) ‖ data, unpadded.
func PackMultiSend(calls []Call) []byte {
	var out []byte
	for _, c := range calls {
		out = append(out, byte(OpCall))
		out = append(out, c.To.Bytes()...)
		out = append(out, word(c.Value)...)
		out = append(out, word(big.NewInt(int64(len(c.Data))))...)
		out = append(out, c.Data...)
	}
	return out
}

// UnpackMultiSend decodes transactions bytes back into calls. MultiSend
// entries with DELEGATECALL are an error: MultiSendCallOnly reverts on them.
func UnpackMultiSend(b []byte) ([]Call, error) {
	var calls []Call
	for len(b) > 0 {
		if len(b) < 85 {
			return nil, fmt.Errorf("multiSend: %d trailing bytes do not hold a call", len(b))
		}
		if Operation(b[0]) != OpCall {
			return nil, fmt.Errorf("multiSend: call %d has %s; MultiSendCallOnly runs plain calls only", len(calls), Operation(b[0]))
		}
		to := common.BytesToAddress(b[1:21])
		value := new(big.Int).SetBytes(b[21:53])
		n := new(big.Int).SetBytes(b[53:85])
		if !n.IsUint64() || n.Uint64() > uint64(len(b)-85) {
			return nil, fmt.Errorf("multiSend: call %d claims %s data bytes, %d left", len(calls), n, len(b)-85)
		}
		end := 85 + int(n.Uint64())
		calls = append(calls, Call{To: to, Value: value, Data: append([]byte(nil), b[85:end]...)})
		b = b[end:]
	}
	return calls, nil
}

// MultiSendSelector is multiSend(bytes).
var MultiSendSelector = []byte{0x8d, 0x80, 0xff, 0x0a}

// NewTx builds the Safe transaction that makes calls: the call itself when
// there is one, otherwise a DELEGATECALL to MultiSendCallOnly batching them
// (all or nothing). Gas and refund fields are zero: whoever executes pays,
// and a failing call reverts the whole execution (GS013) without spending
// the nonce.
func NewTx(calls []Call, nonce uint64) (Tx, error) {
	switch len(calls) {
	case 0:
		return Tx{}, errors.New("safe: a transaction needs at least one call")
	case 1:
		c := calls[0]
		return Tx{To: c.To, Value: orZero(c.Value), Data: nonNil(c.Data), Operation: OpCall, Nonce: nonce}, nil
	}
	return Tx{To: MultiSendCallOnly.Address, Value: new(big.Int), Data: pack("multiSend", PackMultiSend(calls)), Operation: OpDelegateCall, Nonce: nonce}, nil
}

// Calls is the inverse of NewTx: the plain calls a transaction makes. A
// DELEGATECALL is understood only into MultiSendCallOnly at its canonical
// address (whose code the caller must check on the chain); anything else
// could run arbitrary code as the Safe, and is an error.
func (t Tx) Calls() ([]Call, error) {
	switch t.Operation {
	case OpCall:
		return []Call{{To: t.To, Value: orZero(t.Value), Data: t.Data}}, nil
	case OpDelegateCall:
		if t.To != MultiSendCallOnly.Address {
			return nil, fmt.Errorf("a DELEGATECALL to %s, which is not MultiSendCallOnly (%s): it could run any code as the Safe", t.To.Hex(), MultiSendCallOnly.Address.Hex())
		}
		if len(t.Data) < 4 || string(t.Data[:4]) != string(MultiSendSelector) {
			return nil, errors.New("a DELEGATECALL to MultiSendCallOnly that is not multiSend(bytes)")
		}
		args, err := ABI().Methods["multiSend"].Inputs.Unpack(t.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("multiSend arguments: %w", err)
		}
		packed, _ := args[0].([]byte)
		if !equalBytes(pack("multiSend", packed), t.Data) {
			return nil, errors.New("multiSend calldata is not canonically encoded")
		}
		return UnpackMultiSend(packed)
	}
	return nil, fmt.Errorf("unknown operation %d", t.Operation)
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

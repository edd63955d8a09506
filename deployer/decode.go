package deployer

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// DecodedCall is calldata read back with a contract's ABI, for a human to
// check what a transaction would do.
type DecodedCall struct {
	// Contract is the ABI it was decoded with: "DstackApp" or "DstackKms".
	Contract string `json:"contract"`
	// Method is the function's name; Signature its canonical form, e.g.
	// "addComposeHash(bytes32)".
	Method    string       `json:"method"`
	Signature string       `json:"signature"`
	Args      []DecodedArg `json:"args"`
}

// DecodedArg is one argument, its value as text: addresses checksummed,
// bytes and bytesN as 0x hex, integers in decimal.
type DecodedArg struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ErrUnknownCall: calldata that is not exactly one call of the contract's
// ABI (unknown selector, bad encoding, trailing bytes).
var ErrUnknownCall = errors.New("calldata is not a call of the contract's ABI")

// DecodeAppCall decodes calldata sent to an AppAuth with the DstackApp ABI.
func DecodeAppCall(data []byte) (*DecodedCall, error) {
	return decodeCall("DstackApp", appBinding().GetABI(), data)
}

// DecodeKMSCall decodes calldata sent to the KMS (the AppAuth factory) with
// the DstackKms ABI.
func DecodeKMSCall(data []byte) (*DecodedCall, error) {
	return decodeCall("DstackKms", kmsBinding().GetABI(), data)
}

func decodeCall(contract string, a abi.ABI, data []byte) (*DecodedCall, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a selector", ErrUnknownCall, len(data))
	}
	m, err := a.MethodById(data[:4])
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no function with selector %s", ErrUnknownCall, contract, hexutil.Encode(data[:4]))
	}
	values, err := m.Inputs.Unpack(data[4:])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnknownCall, m.Sig, err)
	}
	// Unpack ignores bytes it does not read: re-encoding must give the
	// calldata back, so nothing is hidden behind the arguments shown.
	again, err := m.Inputs.Pack(values...)
	if err != nil || !bytes.Equal(again, data[4:]) {
		return nil, fmt.Errorf("%w: %s: the calldata carries more than its arguments", ErrUnknownCall, m.Sig)
	}
	out := &DecodedCall{Contract: contract, Method: m.RawName, Signature: m.Sig}
	for i, in := range m.Inputs {
		name := in.Name
		if name == "" {
			name = fmt.Sprintf("arg%d", i)
		}
		out.Args = append(out.Args, DecodedArg{Name: name, Type: in.Type.String(), Value: formatABIValue(values[i])})
	}
	return out, nil
}

// formatABIValue writes a decoded argument as text (never a Go value's
// default formatting).
func formatABIValue(v any) string {
	switch x := v.(type) {
	case common.Address:
		return x.Hex()
	case *big.Int:
		return x.String()
	case []byte:
		return hexutil.Encode(x)
	case bool:
		if x {
			return "true"
		}
		return "false"
	case string:
		return x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Array:
		if rv.Type().Elem().Kind() == reflect.Uint8 { // bytesN
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return hexutil.Encode(b)
		}
		fallthrough
	case reflect.Slice:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = formatABIValue(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("%d", rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("%d", rv.Uint())
	case reflect.Struct:
		parts := make([]string, rv.NumField())
		for i := range parts {
			parts[i] = rv.Type().Field(i).Name + ": " + formatABIValue(rv.Field(i).Interface())
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprintf("%v", v)
}

package deployer

import (
	"fmt"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

var appABI = sync.OnceValues(bindings.DstackAppMetaData.ParseABI)

var timelockABI = sync.OnceValues(bindings.TimelockControllerMetaData.ParseABI)

// DescribeAppCall renders DstackApp calldata for a person about to sign
// it, e.g. "addComposeHash(0x91c4…f358)", and a TimelockController's calls
// with the AppAuth calls they carry decoded, e.g. "schedule(0xAPP, 0,
// addComposeHash(0x91c4…), …)"; ok is false when the data is neither
// contract's function or its arguments do not decode canonically.
func DescribeAppCall(data []byte) (string, bool) {
	for _, get := range []func() (*abi.ABI, error){appABI, timelockABI} {
		a, err := get()
		if err != nil {
			continue
		}
		if s, ok := describeCall(a, data); ok {
			return s, true
		}
	}
	return "", false
}

func describeCall(a *abi.ABI, data []byte) (string, bool) {
	if len(data) < 4 {
		return "", false
	}
	m, err := a.MethodById(data[:4])
	if err != nil || m.Type != abi.Function {
		return "", false
	}
	args, err := m.Inputs.Unpack(data[4:])
	if err != nil {
		return "", false
	}
	// Only canonical encodings: what is shown must be all that is signed.
	if packed, err := m.Inputs.Pack(args...); err != nil || string(packed) != string(data[4:]) {
		return "", false
	}
	parts := make([]string, len(args))
	for i, v := range args {
		parts[i] = describeArg(v)
	}
	return m.RawName + "(" + strings.Join(parts, ", ") + ")", true
}

// describeArg renders one argument; calldata an AppAuth or a timelock
// would run is shown decoded.
func describeArg(v any) string {
	switch x := v.(type) {
	case [32]byte:
		return hexutil.Encode(x[:])
	case common.Address:
		return x.Hex()
	case []byte:
		if s, ok := DescribeAppCall(x); ok {
			return s
		}
		return hexutil.Encode(x)
	case []common.Address:
		out := make([]string, len(x))
		for i, a := range x {
			out[i] = a.Hex()
		}
		return "[" + strings.Join(out, ", ") + "]"
	case [][]byte:
		out := make([]string, len(x))
		for i, b := range x {
			out[i] = describeArg(b)
		}
		return "[" + strings.Join(out, ", ") + "]"
	default:
		return fmt.Sprint(x)
	}
}

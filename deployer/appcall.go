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

// DescribeAppCall renders DstackApp calldata for a person about to sign
// it, e.g. "addComposeHash(0x91c4…f358)"; ok is false when the data is no
// DstackApp function or its arguments do not decode.
func DescribeAppCall(data []byte) (string, bool) {
	a, err := appABI()
	if err != nil || len(data) < 4 {
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
		switch x := v.(type) {
		case [32]byte:
			parts[i] = hexutil.Encode(x[:])
		case common.Address:
			parts[i] = x.Hex()
		case []byte:
			parts[i] = hexutil.Encode(x)
		default:
			parts[i] = fmt.Sprint(x)
		}
	}
	return m.RawName + "(" + strings.Join(parts, ", ") + ")", true
}

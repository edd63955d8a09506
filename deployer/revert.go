package deployer

import (
	"bytes"
	"fmt"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

var (
	errorSelector = []byte{0x08, 0xc3, 0x79, 0xa0} // Error(string)
	panicSelector = []byte{0x4e, 0x48, 0x7b, 0x71} // Panic(uint256)
)

// knownErrors holds the custom errors of every contract the toolkit talks
// to, keyed by selector; built once from the bindings' ABIs.
var knownErrors = sync.OnceValue(func() map[[4]byte]abi.Error {
	m := map[[4]byte]abi.Error{}
	for _, md := range []*abi.ABI{abiOf(&bindings.DstackKmsMetaData), abiOf(&bindings.DstackAppMetaData), abiOf(&bindings.ERC1967ProxyMetaData), abiOf(&bindings.TimelockControllerMetaData)} {
		for _, e := range md.Errors {
			var sel [4]byte
			copy(sel[:], e.ID[:4])
			m[sel] = e
		}
	}
	return m
})

type metaData interface{ ParseABI() (*abi.ABI, error) }

func abiOf(md metaData) *abi.ABI {
	a, err := md.ParseABI()
	if err != nil {
		// The ABI is generated and compiled in; failing here is a build bug.
		panic(fmt.Sprintf("deployer: bindings ABI does not parse: %v", err))
	}
	return a
}

// DecodeRevert turns revert data into a readable reason: the message of
// Error(string), the meaning of Panic(uint256), or a custom error of the KMS,
// App, proxy or timelock contracts with its arguments (e.g.
// "OwnableUnauthorizedAccount(0xabc…)"). Unknown data is shown as hex.
func DecodeRevert(data []byte) string {
	switch {
	case len(data) == 0:
		return "execution reverted without a reason"
	case len(data) < 4:
		return "execution reverted with malformed data " + hexutil.Encode(data)
	case bytes.Equal(data[:4], errorSelector), bytes.Equal(data[:4], panicSelector):
		msg, err := abi.UnpackRevert(data)
		if err != nil {
			return "execution reverted with malformed data " + hexutil.Encode(data)
		}
		if bytes.Equal(data[:4], panicSelector) {
			return "panic: " + msg
		}
		return msg
	}
	var sel [4]byte
	copy(sel[:], data[:4])
	e, ok := knownErrors()[sel]
	if !ok {
		return fmt.Sprintf("custom error %s (data %s)", hexutil.Encode(data[:4]), hexutil.Encode(data))
	}
	vals, err := e.Inputs.Unpack(data[4:])
	if err != nil {
		return fmt.Sprintf("%s (undecodable arguments %s)", e.Name, hexutil.Encode(data[4:]))
	}
	args := make([]string, len(vals))
	for i, v := range vals {
		args[i] = formatABIValue(v)
	}
	return e.Name + "(" + strings.Join(args, ", ") + ")"
}

// revertData extracts the revert payload from a JSON-RPC error (code 3 with
// hex data, as geth and anvil return it).
func revertData(err error) ([]byte, bool) {
	return ethclient.RevertErrorData(err)
}

// isRevert reports whether a JSON-RPC error is an EVM revert even when the
// node sent no data (some nodes answer -32000 "execution reverted").
func isRevert(err error) bool {
	if _, ok := revertData(err); ok {
		return true
	}
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "revert")
}

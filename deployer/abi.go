package deployer

import (
	"fmt"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

// Parsed ABIs and binding instances, built once.
var (
	kmsBinding   = sync.OnceValue(bindings.NewDstackKms)
	appBinding   = sync.OnceValue(bindings.NewDstackApp)
	proxyBinding = sync.OnceValue(bindings.NewERC1967Proxy)
)

// Signatures of the overloaded functions. Overloads are picked by signature,
// never by abigen's numbered names (Foo, Foo0), whose order follows the ABI.
const (
	sigDeployApp5 = "deployAndRegisterApp(address,bool,bool,bytes32,bytes32)"
	sigDeployApp6 = "deployAndRegisterApp(address,bool,bool,bool,bytes32,bytes32)"
	sigAppInit6   = "initialize(address,bool,bool,bool,bytes32,bytes32)"
)

// packBySig ABI-encodes a call of the method whose signature is sig.
func packBySig(a abi.ABI, sig string, args ...any) ([]byte, error) {
	for _, m := range a.Methods {
		if m.Sig == sig {
			enc, err := m.Inputs.Pack(args...)
			if err != nil {
				return nil, fmt.Errorf("encoding %s: %w", sig, err)
			}
			return append(append([]byte{}, m.ID...), enc...), nil
		}
	}
	return nil, fmt.Errorf("the contract bindings have no %s", sig)
}

// Topics of the events the receipt parsers look for.
var (
	topicAppDeployedViaFactory = sync.OnceValue(func() common.Hash {
		return kmsBinding().GetABI().Events["AppDeployedViaFactory"].ID
	})
	topicAppRegistered = sync.OnceValue(func() common.Hash {
		return kmsBinding().GetABI().Events["AppRegistered"].ID
	})
)

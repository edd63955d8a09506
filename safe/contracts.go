// Package safe holds what cvmdeploy knows about Safe{Wallet} v1.4.1
// multisigs: the canonical contracts, the EIP-712 safeTxHash, owner
// signatures, MultiSendCallOnly batches, execTransaction calldata, and a
// client of the Safe Transaction Service.
package safe

import (
	_ "embed"
	"fmt"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// Version is the Safe contracts' version cvmdeploy speaks (VERSION()).
const Version = "1.4.1"

// SingletonFactory is the Safe singleton factory (a CREATE2 deployer) that
// every canonical v1.4.1 address is derived from, with a zero salt.
var SingletonFactory = common.HexToAddress("0x914d7Fec6aaC8cd542e72Bca78B30650d45643d7")

// SingletonFactoryRuntime is the factory's runtime code (the same bytes as
// anvil's preinstalled CREATE2 deployer): calldata = salt ‖ initcode.
var SingletonFactoryRuntime = common.FromHex("0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3")

// Contract is one canonical Safe v1.4.1 contract: where the npm package
// @safe-global/safe-contracts@1.4.1 keeps its artifact, its canonical
// address, and the pinned hashes of its init code and runtime code (from
// safe-deployments 1.37.63, checked on anvil; testdata/governance).
type Contract struct {
	Name         string
	Artifact     string // under build/artifacts/contracts/
	Address      common.Address
	InitCodeHash common.Hash
	CodeHash     common.Hash
}

// The canonical contracts, same addresses on Ethereum, Base, Sepolia and
// Base Sepolia.
var (
	SafeL1 = Contract{"Safe", "Safe.sol/Safe.json",
		common.HexToAddress("0x41675C099F32341bf84BFc5382aF534df5C7461a"),
		common.HexToHash("0xbdd9e3833a8bdf0f6b4312e07bc851afc298d53690a00a28cade5de8b6ac0f36"),
		common.HexToHash("0x1fe2df852ba3299d6534ef416eefa406e56ced995bca886ab7a553e6d0c5e1c4")}
	SafeL2 = Contract{"SafeL2", "SafeL2.sol/SafeL2.json",
		common.HexToAddress("0x29fcB43b46531BcA003ddC8FCB67FFE91900C762"),
		common.HexToHash("0x3555bd3ee95b1c6605c602740d71efaf200068e0395ccd701ac82ab8e42307bd"),
		common.HexToHash("0xb1f926978a0f44a2c0ec8fe822418ae969bd8c3f18d61e5103100339894f81ff")}
	ProxyFactory = Contract{"SafeProxyFactory", "proxies/SafeProxyFactory.sol/SafeProxyFactory.json",
		common.HexToAddress("0x4e1DCf7AD4e460CfD30791CCC4F9c8a4f820ec67"),
		common.HexToHash("0x596f87ec561ad5ea1c13253af5c91247a713253499b74a5d594537cae42eaaa9"),
		common.HexToHash("0x50c3cdc4074750a7a974204a716c999edd37482f907608d960b2b025ee0b3317")}
	FallbackHandler = Contract{"CompatibilityFallbackHandler", "handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler.json",
		common.HexToAddress("0xfd0732Dc9E303f09fCEf3a7388Ad10A83459Ec99"),
		common.HexToHash("0x5a63128db658d8601220c014848acd6c27b855a0427f0181eb3ba8c25e2d3e95"),
		common.HexToHash("0x7c6007a5d711cea8dfd5d91f5940ec29c7f200fe511eb1fc1397b367af3c42f9")}
	MultiSend = Contract{"MultiSend", "libraries/MultiSend.sol/MultiSend.json",
		common.HexToAddress("0x38869bf66a61cF6bDB996A6aE40D5853Fd43B526"),
		common.HexToHash("0x4b098e80d2b37db2c4a92ff33a116dfacb2276a8532a6b493367952cc6d0b7b3"),
		common.HexToHash("0x0e4f7fc66550a322d1e7688e181b75e217e662a4f3f4d6a29b22bc61217c4b77")}
	MultiSendCallOnly = Contract{"MultiSendCallOnly", "libraries/MultiSendCallOnly.sol/MultiSendCallOnly.json",
		common.HexToAddress("0x9641d764fc13c8B624c04430C7356C1C7C8102e2"),
		common.HexToHash("0xa7934433f19155c708af2674b14c6c8b591fedbed7b01ce8cf64014f307468a0"),
		common.HexToHash("0xecd5bd14a08c5d2122379900b2f272bdf107a7e92423c10dd5fe3254386c9939")}
)

// Contracts lists the six canonical contracts in deployment order.
func Contracts() []Contract {
	return []Contract{SafeL1, SafeL2, ProxyFactory, FallbackHandler, MultiSend, MultiSendCallOnly}
}

// ProxyArtifact is SafeProxy's artifact: its init code is the factory's
// proxyCreationCode(), whose keccak is ProxyCreationCodeHash.
const ProxyArtifact = "proxies/SafeProxy.sol/SafeProxy.json"

// ProxyCreationCodeHash is keccak256(proxyCreationCode()) of the v1.4.1
// factory.
var ProxyCreationCodeHash = common.HexToHash("0x1856e0ee08399d74e0ea0b03adca210aeade6f748969ac023cdcb4dd62dcaf5f")

// KnownSingleton names a v1.4.1 singleton by its canonical address ("" if
// addr is none of them).
func KnownSingleton(addr common.Address) string {
	switch addr {
	case SafeL1.Address:
		return SafeL1.Name
	case SafeL2.Address:
		return SafeL2.Name
	}
	return ""
}

// Create2Address is the address the singleton factory gives initCode with
// a zero salt.
func Create2Address(initCode []byte) common.Address {
	return crypto.CreateAddress2(SingletonFactory, [32]byte{}, crypto.Keccak256(initCode))
}

//go:embed abi.json
var abiJSON string

var (
	abiOnce sync.Once
	safeABI abi.ABI
	abiErr  error
)

// ABI is the subset of the Safe, SafeProxyFactory and MultiSendCallOnly
// ABIs (from the v1.4.1 artifacts) that cvmdeploy calls.
func ABI() abi.ABI {
	abiOnce.Do(func() { safeABI, abiErr = abi.JSON(strings.NewReader(abiJSON)) })
	if abiErr != nil {
		panic(fmt.Sprintf("safe: embedded ABI: %v", abiErr))
	}
	return safeABI
}

// pack encodes a call to one of ABI's methods; the arguments are fixed by
// this package, so an error is a bug.
func pack(method string, args ...any) []byte {
	b, err := ABI().Pack(method, args...)
	if err != nil {
		panic(fmt.Sprintf("safe: pack %s: %v", method, err))
	}
	return b
}

// Event topics.
var (
	ExecutionSuccessTopic = crypto.Keccak256Hash([]byte("ExecutionSuccess(bytes32,uint256)"))
	ExecutionFailureTopic = crypto.Keccak256Hash([]byte("ExecutionFailure(bytes32,uint256)"))
	ProxyCreationTopic    = crypto.Keccak256Hash([]byte("ProxyCreation(address,address)"))
)

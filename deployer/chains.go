package deployer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// Chain is an EVM chain the toolkit knows by name.
type Chain struct {
	Name    string   // canonical name, e.g. "base"
	Aliases []string // other accepted names, e.g. "mainnet"
	ID      uint64   // EIP-155 chain id
	// Explorer is the block explorer's base URL without a trailing slash;
	// empty for local chains.
	Explorer string
	// KMS is Phala Cloud's DstackKms proxy on this chain; zero when none is
	// known (then --kms-contract is required).
	KMS common.Address
	// BlockTime is the chain's slot time; zero when it varies (local
	// chains). Receipt polls wait for the next block with it.
	BlockTime time.Duration
}

// BaseKMS is the DstackKms proxy Phala Cloud's on-chain KMS uses on Base.
var BaseKMS = common.HexToAddress("0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C")

// chains is the registry. Ethereum mainnet's Phala KMS address is not known
// to us (it is served by the Phala Cloud API), so it stays zero.
var chains = []Chain{
	{Name: "ethereum", Aliases: []string{"mainnet", "eth"}, ID: 1, Explorer: "https://etherscan.io", BlockTime: 12 * time.Second},
	{Name: "base", ID: 8453, Explorer: "https://basescan.org", KMS: BaseKMS, BlockTime: 2 * time.Second},
	{Name: "sepolia", ID: 11155111, Explorer: "https://sepolia.etherscan.io", BlockTime: 12 * time.Second},
	{Name: "base-sepolia", ID: 84532, Explorer: "https://sepolia.basescan.org", BlockTime: 2 * time.Second},
	{Name: "anvil", Aliases: []string{"localhost"}, ID: 31337},
}

// Chains returns the known chains.
func Chains() []Chain { return append([]Chain(nil), chains...) }

// ChainByID returns the registry entry for id; ok is false for other chains.
func ChainByID(id uint64) (Chain, bool) {
	for _, c := range chains {
		if c.ID == id {
			return c, true
		}
	}
	return Chain{}, false
}

// LookupChain resolves a chain name (case-insensitive) or a decimal chain id.
// Any positive id is accepted; ids outside the registry get the name
// "chain-<id>" and no explorer.
func LookupChain(nameOrID string) (Chain, error) {
	s := strings.ToLower(strings.TrimSpace(nameOrID))
	if s == "" {
		return Chain{}, fmt.Errorf("empty chain: use a name (%s) or a chain id", knownChainNames())
	}
	if id, err := strconv.ParseUint(s, 10, 64); err == nil {
		if id == 0 {
			return Chain{}, fmt.Errorf("chain id 0 is not valid: use a name (%s) or a positive chain id", knownChainNames())
		}
		if c, ok := ChainByID(id); ok {
			return c, nil
		}
		return Chain{Name: "chain-" + s, ID: id}, nil
	}
	for _, c := range chains {
		if c.Name == s {
			return c, nil
		}
		for _, a := range c.Aliases {
			if a == s {
				return c, nil
			}
		}
	}
	return Chain{}, fmt.Errorf("unknown chain %q: use a name (%s) or a chain id", nameOrID, knownChainNames())
}

func knownChainNames() string {
	var names []string
	for _, c := range chains {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// String is the name and id, e.g. "base (8453)".
func (c Chain) String() string { return fmt.Sprintf("%s (%d)", c.Name, c.ID) }

// TxURL links a transaction on the explorer, or "" without one.
func (c Chain) TxURL(h common.Hash) string {
	if c.Explorer == "" {
		return ""
	}
	return c.Explorer + "/tx/" + h.Hex()
}

// AddressURL links an address on the explorer, or "" without one.
func (c Chain) AddressURL(a common.Address) string {
	if c.Explorer == "" {
		return ""
	}
	return c.Explorer + "/address/" + a.Hex()
}

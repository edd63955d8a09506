package cvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// resolveNamedKMS fills the provision request for --kms NAME: a KMS
// contract by slug or kc_ id (the 2026-06-23 listing; the provision then
// names it by kms_contract_id, and its kms_info must name the same
// contract), else a KMS node by slug or id (kms_id, as before contracts).
func (d *run) resolveNamedKMS(ctx context.Context, req *phala.ProvisionRequest) error {
	name := d.in.kms.Slug
	list, err := d.API.ListKMSContracts(ctx)
	if err != nil {
		return fmt.Errorf("look up KMS %q: %w", name, err)
	}
	if !list.Legacy {
		for _, k := range list.Items {
			if !k.Matches(name) {
				continue
			}
			if !k.OnChain() {
				req.KMS = phala.KMSPhala
				return nil
			}
			req.KMS = kmsTypeOf(uint64(k.ChainID))
			if !k.ID.IsZero() {
				req.KMSContractID = k.ID.String()
			} else {
				req.KMSContract = k.ContractAddress
			}
			d.namedKMS = &k
			return nil
		}
	}
	info, err := d.API.GetKMS(ctx, name)
	if err != nil {
		var ae *phala.APIError
		if errors.As(err, &ae) && ae.IsNotFound() {
			return fmt.Errorf("%w: --kms %q: no such KMS contract or node on %s (see `cvmdeploy kms list`)", ErrInvalidConfig, name, d.API.BaseURL())
		}
		return fmt.Errorf("look up KMS %q: %w", name, err)
	}
	req.KMSID = name
	if !info.OnChain() {
		req.KMS = phala.KMSPhala
	} else {
		req.KMS = kmsTypeOf(uint64(*info.ChainID))
	}
	return nil
}

// kmsTypeOf is the provision's kms type for a KMS on chainID.
func kmsTypeOf(chainID uint64) phala.KMSType {
	if chainID == 8453 {
		return phala.KMSBase
	}
	return phala.KMSEthereum
}

// ErrKMSRootMismatch: the API reports a KMS root key that is not the one
// the contract holds on-chain.
var ErrKMSRootMismatch = errors.New("the API misreports a KMS root key")

// KMSListConfig says which chain `kms list` can read.
type KMSListConfig struct {
	// RPCURL is a node of one chain; contracts on it get their on-chain
	// root key compared, the others are "unchecked".
	RPCURL string
	// ChainID, when set (--chain), must be the node's chain.
	ChainID uint64
}

// KMSContractStatus is one KMS contract as `kms list` reports it.
type KMSContractStatus struct {
	Slug string `json:"slug"`
	// ID is the contract's "kc_…" id; nil when the API answered the node
	// listing (versions before 2026-06-23), which has none.
	ID              *string `json:"id"`
	ChainID         uint64  `json:"chain_id"`
	ContractAddress string  `json:"contract_address"`
	// K256Pubkey is the root key the API reports (nil when it reports none).
	K256Pubkey *string `json:"k256_pubkey"`
	NodeCount  int     `json:"node_count"`
	// Pinned says whether the contract is the pinned KMS of its chain
	// (kms/pins.json); false also when the chain has no pin.
	Pinned bool `json:"pinned"`
	// OnchainKeyMatches says whether kmsInfo().k256Pubkey on-chain equals
	// K256Pubkey; nil when not checked (no node of that chain).
	OnchainKeyMatches *bool `json:"onchain_key_matches"`

	// Pin is the pinned address of the chain ("" without a pin), and
	// PinSource where it comes from.
	Pin       string `json:"-"`
	PinSource string `json:"-"`
	// OnchainKey is the root key read on-chain (hex), and Note why a
	// comparison failed or was not made.
	OnchainKey string `json:"-"`
	Note       string `json:"-"`
}

// KMSListResult is `kms list`'s result.
type KMSListResult struct {
	Contracts []KMSContractStatus `json:"contracts"`
	// Legacy says the API answered the node listing (a version before
	// 2026-06-23), grouped here by contract.
	Legacy bool `json:"-"`
	// CheckedChain is the chain the RPC node serves (0 without one).
	CheckedChain uint64 `json:"-"`
	// OffChain counts the listing's entries that are no contract (Phala's
	// cloud KMS).
	OffChain int `json:"-"`
}

// ListKMS lists the KMS contracts the API knows, and for each says whether
// it is the pinned one of its chain and — for the chain cfg.RPCURL serves —
// whether the root key the API reports is the one the contract holds.
// An API that lies about a root key is caught here before any flow uses it
// (the flows themselves read the root from the chain).
func (r *Runner) ListKMS(ctx context.Context, cfg KMSListConfig) (*KMSListResult, error) {
	list, err := r.API.ListKMSContracts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list KMS contracts: %w", err)
	}
	out := &KMSListResult{Contracts: []KMSContractStatus{}, Legacy: list.Legacy}
	var chain *deployer.Client
	if cfg.RPCURL != "" {
		if chain, err = deployer.Dial(ctx, cfg.RPCURL); err != nil {
			return nil, err
		}
		defer chain.Close()
		id, err := chain.Eth().ChainID(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: eth_chainId on %s: %v", deployer.ErrRPCUnreachable, chain.URL(), err)
		}
		out.CheckedChain = id.Uint64()
		if cfg.ChainID != 0 && cfg.ChainID != out.CheckedChain {
			return nil, fmt.Errorf("%w: --chain says chain %d but the node at %s serves chain %d", ErrChainMismatch, cfg.ChainID, chain.URL(), out.CheckedChain)
		}
		chain.ExpectChainID = out.CheckedChain
	}
	for _, k := range list.Items {
		if !k.OnChain() {
			out.OffChain++
			continue
		}
		st := KMSContractStatus{ChainID: uint64(k.ChainID), ContractAddress: common.HexToAddress(k.ContractAddress).Hex(), NodeCount: k.NodeCount}
		if !k.ID.IsZero() {
			id := k.ID.String()
			st.ID = &id
		}
		if k.Slug != nil {
			st.Slug = *k.Slug
		}
		if k.K256Pubkey != nil && *k.K256Pubkey != "" {
			st.K256Pubkey = k.K256Pubkey
		} else if list.Legacy && st.Slug != "" {
			// The node listing carries no root key; the node's page does.
			if info, err := r.API.GetKMS(ctx, st.Slug); err == nil {
				if key := extraString(info.Extra, "k256_pubkey"); key != "" {
					st.K256Pubkey = &key
				}
			}
		}
		if pin, source, ok := r.Trust.pins().KMSContract(st.ChainID); ok {
			st.Pin, st.PinSource = common.HexToAddress(pin).Hex(), source
			st.Pinned = strings.EqualFold(pin, st.ContractAddress)
		}
		if chain != nil && st.ChainID == out.CheckedChain {
			if err := checkRootKey(ctx, chain, &st); err != nil {
				return nil, err
			}
		} else {
			st.Note = fmt.Sprintf("unchecked: no RPC node of chain %d (pass --rpc-url)", st.ChainID)
		}
		out.Contracts = append(out.Contracts, st)
	}
	return out, nil
}

// checkRootKey reads the contract's kmsInfo().k256Pubkey and compares it
// with what the API reports. A contract that is not there, or answers no
// root, does not match; a node that cannot be reached is an error.
func checkRootKey(ctx context.Context, chain *deployer.Client, st *KMSContractStatus) error {
	no := false
	onchain, err := chain.KMSRootKey(ctx, common.HexToAddress(st.ContractAddress))
	if err != nil {
		if errors.Is(err, deployer.ErrRPCUnreachable) || ctx.Err() != nil {
			return fmt.Errorf("read the root key of KMS %s: %w", st.ContractAddress, err)
		}
		st.OnchainKeyMatches, st.Note = &no, "the chain has no such KMS root: "+err.Error()
		return nil
	}
	st.OnchainKey = hexutil.Encode(onchain)
	if st.K256Pubkey == nil {
		st.OnchainKeyMatches, st.Note = &no, "the API reports no root key; the contract holds "+st.OnchainKey
		return nil
	}
	reported, err := hexutil.Decode(ensure0x(*st.K256Pubkey))
	if err != nil || len(reported) == 0 {
		st.OnchainKeyMatches, st.Note = &no, "the API reports no usable root key; the contract holds "+st.OnchainKey
		return nil
	}
	match := bytes.Equal(compressed(reported), compressed(onchain))
	st.OnchainKeyMatches = &match
	if !match {
		st.Note = "the API reports root key " + *st.K256Pubkey + " but the contract holds " + st.OnchainKey
	}
	return nil
}

// compressed returns the 33-byte form of a secp256k1 public key given in
// either form (other input unchanged, so it compares unequal).
func compressed(k []byte) []byte {
	if len(k) == 65 {
		if pub, err := crypto.UnmarshalPubkey(k); err == nil {
			return crypto.CompressPubkey(pub)
		}
	}
	return k
}

func ensure0x(s string) string {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return s
	}
	return "0x" + s
}

func extraString(e phala.Extra, key string) string {
	raw, ok := e[key]
	if !ok {
		return ""
	}
	s := strings.Trim(string(raw), `"`)
	if s == "null" {
		return ""
	}
	return s
}

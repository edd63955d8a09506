package cvm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// Trust is what the user trusts beyond the chain: the pinned data (KMS
// contracts per chain, the cloud's app-compose additions, official
// pre-launch scripts) and the KMS contract named with --kms-contract.
type Trust struct {
	// Pins is the reviewed trust data; nil means kms.DefaultPins().
	Pins *kms.Pins
	// KMSContract, when set, is the only KMS contract the user trusts: the
	// cloud's kms_info must name exactly it.
	KMSContract common.Address
}

func (t Trust) pins() *kms.Pins {
	if t.Pins != nil {
		return t.Pins
	}
	return kms.DefaultPins()
}

// How a KMS contract was established (kms_trust in --json).
const (
	KMSTrustPinned   = "pinned"   // the built-in pin for the chain
	KMSTrustFlag     = "flag"     // named by the user with --kms-contract
	KMSTrustUnpinned = "unpinned" // a testnet or local chain: taken as the cloud named it, with a warning
)

// ErrKMSUntrusted: the cloud named a KMS contract that is neither the
// pinned one nor the one the user named; nothing was sent.
var ErrKMSUntrusted = errors.New("KMS contract not trusted")

// mainnets are the chains where an unpinned, unnamed KMS is refused:
// real money and real apps live there.
var mainnets = map[uint64]string{1: "Ethereum mainnet", 8453: "Base"}

// trustKMS decides whether the KMS contract the cloud named on chainID may
// be used: it must be the one named with --kms-contract, else the pinned
// one for the chain; on a mainnet with neither it is refused, elsewhere it
// is used with a warning. It returns how it was established.
func (r *Runner) trustKMS(chainID uint64, contract string) (string, error) {
	if !common.IsHexAddress(contract) {
		return "", fmt.Errorf("%w: the cloud named KMS contract %q, which is not an address", ErrKMSUntrusted, contract)
	}
	got := common.HexToAddress(contract)
	if want := r.Trust.KMSContract; want != (common.Address{}) {
		if got != want {
			return "", fmt.Errorf("%w: the cloud names KMS contract %s on chain %d, but --kms-contract says %s; nothing was sent", ErrKMSUntrusted, got.Hex(), chainID, want.Hex())
		}
		return KMSTrustFlag, nil
	}
	if pin, source, ok := r.Trust.pins().KMSContract(chainID); ok {
		if got != common.HexToAddress(pin) {
			return "", fmt.Errorf("%w: the cloud names KMS contract %s on chain %d, but the pinned KMS there is %s (%s); nothing was sent. If you really run your own KMS, name it with --kms-contract", ErrKMSUntrusted, got.Hex(), chainID, common.HexToAddress(pin).Hex(), source)
		}
		return KMSTrustPinned, nil
	}
	if name, ok := mainnets[chainID]; ok {
		return "", fmt.Errorf("%w: the cloud names KMS contract %s on %s (chain %d), and cvmdeploy has no pin for that chain; nothing was sent. Check the address against Phala's documentation or `GET /kms` and an explorer, then pass it with --kms-contract (or CVMDEPLOY_KMS_CONTRACT)", ErrKMSUntrusted, got.Hex(), name, chainID)
	}
	r.say("warning: KMS contract %s on chain %d is neither pinned nor named with --kms-contract; using it as the cloud named it (fine for a local chain or a testnet)", got.Hex(), chainID)
	return KMSTrustUnpinned, nil
}

// keyCheck is what verifying an app's env key needs.
type keyCheck struct {
	KMSRef      string // kms_info slug or id, for the API
	KMSContract common.Address
	ChainID     uint64
	AppID       string
	// Root is the KMS root key when already read on-chain (nil: read it).
	Root []byte
	// Skip trusts the API's key without a check (the loud escape hatch).
	Skip bool
}

// verifiedAppKey fetches an app's env-encryption key from the API and
// checks its signature against the root key of the (trusted) KMS contract
// as the chain holds it. It is the one key check of every flow: deploy,
// batch, commit, update and replicas. A timestamped (v1) signature is
// checked with its age limit, a legacy one without.
func (r *Runner) verifiedAppKey(ctx context.Context, chain *deployer.Client, k keyCheck) (*PubKeyStep, error) {
	key, err := r.API.AppPubKey(ctx, k.KMSRef, k.AppID)
	if err != nil {
		return nil, fmt.Errorf("fetch the app's env key: %w", err)
	}
	step := &PubKeyStep{PublicKey: key.PublicKey}
	if k.Skip {
		r.say("warning: --insecure-skip-kms-key-verification: trusting the API's env key without checking the KMS signature")
		return step, nil
	}
	root := k.Root
	if len(root) == 0 {
		if chain == nil {
			return nil, fmt.Errorf("%w: no chain connection to read the KMS root key", ErrInvalidConfig)
		}
		if root, err = chain.KMSRootKey(ctx, k.KMSContract); err != nil {
			return nil, fmt.Errorf("read the KMS root key on-chain: %w", err)
		}
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	params := kms.VerifyParams{AppID: k.AppID, PublicKey: key.PublicKey, Signature: key.Signature, RootKey: root, Now: now()}
	if key.Timestamp != nil && key.SignatureV1 != nil {
		params.Timestamp, params.Signature = key.Timestamp, *key.SignatureV1
	}
	if err := kms.VerifyAppKey(params); err != nil {
		return nil, fmt.Errorf("%w: the env key the API returned for app %s is not signed by the KMS root key of %s on chain %d: %w; nothing was encrypted or sent", ErrKeyVerification, k.AppID, k.KMSContract.Hex(), k.ChainID, err)
	}
	step.Verified = true
	step.RootKey = hexutil.Encode(root)
	r.say("✓ env key verified against the KMS root key on-chain (%s)", shortHex(step.RootKey))
	return step, nil
}

// kmsOf reads the KMS a CVM object names (either kms_info shape), for the
// flows that start from an existing CVM (update, status): contract, chain
// and API reference ("" when the object names no KMS node: see kmsRef).
func kmsOf(c *phala.CVM) (contract string, chainID uint64, ref string, ok bool) {
	k, ok := c.OnChainKMS()
	if !ok {
		return "", 0, "", false
	}
	return k.Contract, k.ChainID, k.Ref, true
}

// kmsRef is the KMS node to ask for app keys: ref when the CVM object
// named one, else the node the (pinned, node-keyed) listing has for the
// contract. Any node of the contract serves the contract's keys; the key is
// checked against the contract's root on-chain anyway.
func (r *Runner) kmsRef(ctx context.Context, ref string, chainID uint64, contract string) (string, error) {
	if ref != "" {
		return ref, nil
	}
	page, err := r.API.ListOnChainKMS(ctx)
	if err != nil {
		return "", fmt.Errorf("find a KMS node of contract %s: %w", contract, err)
	}
	for _, k := range page.Items {
		if k.OnChain() && uint64(*k.ChainID) == chainID && strings.EqualFold(*k.KMSContractAddress, contract) {
			return k.Ref(), nil
		}
	}
	return "", fmt.Errorf("the API lists no KMS node for contract %s on chain %d", contract, chainID)
}

package deployer

import (
	"context"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

// Gas limits of the KMS deployment steps that cannot be estimated before the
// earlier steps are mined (the proxy needs the implementation's code, the
// setters need the proxy). Generous: unused gas is not charged. Observed
// on anvil: proxy 208k, addOsImageHash 55k.
const (
	gasKMSProxy       = 600_000
	gasSetKmsInfoBase = 150_000
	gasPerKeyWord     = 25_000 // one storage slot per 32 bytes of key
	gasAddOsImageHash = 120_000
)

// KMSDeployConfig describes a DstackKms deployment (for local chains,
// testnets and self-hosted KMS operators).
type KMSDeployConfig struct {
	// Owner owns the KMS proxy; zero means the signer.
	Owner common.Address
	// RootKey, when set, is stored as kmsInfo.k256Pubkey (33-byte compressed
	// or 65-byte uncompressed secp256k1 public key).
	RootKey []byte
	// OSImageHashes are allowed on the KMS (addOsImageHash), needed before
	// any app can boot.
	OSImageHashes [][32]byte
}

// Check validates the root key.
func (c KMSDeployConfig) Check() error {
	switch len(c.RootKey) {
	case 0:
	case 33:
		if _, err := crypto.DecompressPubkey(c.RootKey); err != nil {
			return errors.New("--root-key: 33 bytes but not a compressed secp256k1 public key")
		}
	case 65:
		if _, err := crypto.UnmarshalPubkey(c.RootKey); err != nil {
			return errors.New("--root-key: 65 bytes but not an uncompressed secp256k1 public key")
		}
	default:
		return fmt.Errorf("--root-key: %d bytes; a secp256k1 public key is 33 (compressed) or 65 (uncompressed) bytes", len(c.RootKey))
	}
	seen := map[[32]byte]bool{}
	for _, h := range c.OSImageHashes {
		if h == ([32]byte{}) {
			return errors.New("--os-image-hash: the zero hash is not an OS image")
		}
		if seen[h] {
			return fmt.Errorf("--os-image-hash %x given twice", h)
		}
		seen[h] = true
	}
	return nil
}

// KMSDeployment is what DeployKMS produced.
type KMSDeployment struct {
	KMSContract       common.Address `json:"kms_contract"`
	AppImplementation common.Address `json:"app_implementation"`
	KMSImplementation common.Address `json:"kms_implementation"`
	Owner             common.Address `json:"owner"`
	ChainID           uint64         `json:"chain_id"`
	// TxHashes in nonce order: app implementation, KMS implementation,
	// proxy, then setKmsInfo and addOsImageHash calls if any.
	TxHashes    []common.Hash `json:"tx_hashes"`
	GasUsed     uint64        `json:"gas_used"`
	BlockNumber uint64        `json:"block_number"` // of the last transaction
}

// DeployKMS deploys the DstackApp implementation, the DstackKms
// implementation and an ERC1967Proxy initialised with initialize(owner,
// appImpl), then optionally setKmsInfo and addOsImageHash. All transactions
// are signed with consecutive nonces and sent without waiting between them
// (addresses are predicted from the nonces), then all receipts are awaited.
func (c *Client) DeployKMS(ctx context.Context, signer Signer, cfg KMSDeployConfig, opts TxOptions) (*KMSDeployment, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	from := signer.Address()
	owner := cfg.Owner
	if owner == (common.Address{}) {
		owner = from
	}
	kb := kmsBinding()
	// Addresses depend on the first nonce, known only after the preflight.
	at := func(n uint64) (appImpl, kmsImpl, proxy common.Address) {
		return crypto.CreateAddress(from, n), crypto.CreateAddress(from, n+1), crypto.CreateAddress(from, n+2)
	}
	reqs := []TxRequest{
		{Data: common.FromHex(bindings.DstackAppMetaData.Bin)},
		{Data: common.FromHex(bindings.DstackKmsMetaData.Bin)},
		{GasLimit: gasKMSProxy, build: func(n uint64) (*common.Address, []byte) {
			appImpl, kmsImpl, _ := at(n)
			init := kb.PackInitialize(owner, appImpl)
			return nil, append(common.FromHex(bindings.ERC1967ProxyMetaData.Bin), proxyBinding().PackConstructor(kmsImpl, init)...)
		}},
	}
	// The setters are owner-only: they work in this batch only when the
	// signer is the owner.
	if (len(cfg.RootKey) > 0 || len(cfg.OSImageHashes) > 0) && owner != from {
		return nil, errors.New("--root-key and --os-image-hash need the signer to own the new KMS: drop --owner, or set them later from the owner's key")
	}
	toProxy := func(data []byte) func(uint64) (*common.Address, []byte) {
		return func(n uint64) (*common.Address, []byte) {
			_, _, proxy := at(n)
			return &proxy, data
		}
	}
	if len(cfg.RootKey) > 0 {
		info := bindings.DstackKmsKmsInfo{K256Pubkey: cfg.RootKey, CaPubkey: []byte{}, Quote: []byte{}, Eventlog: []byte{}}
		gas := uint64(gasSetKmsInfoBase + gasPerKeyWord*((len(cfg.RootKey)+31)/32))
		reqs = append(reqs, TxRequest{GasLimit: gas, SkipCodeCheck: true, build: toProxy(kb.PackSetKmsInfo(info))})
	}
	for _, h := range cfg.OSImageHashes {
		reqs = append(reqs, TxRequest{GasLimit: gasAddOsImageHash, SkipCodeCheck: true, build: toProxy(kb.PackAddOsImageHash(h))})
	}
	p, err := c.preflight(ctx, from, reqs, opts, nil)
	if err != nil {
		return nil, err
	}
	first := p.txs[0].Nonce()
	sent, err := c.sendAll(ctx, signer, p, opts)
	if err != nil {
		return nil, err
	}
	rs, err := c.waitMined(ctx, signer, p, sent, opts)
	if err != nil {
		return nil, err
	}
	appImpl, kmsImpl, proxy := at(first)
	for i, want := range []common.Address{appImpl, kmsImpl, proxy} {
		if rs[i].ContractAddress != want {
			return nil, fmt.Errorf("transaction %s created %s, expected %s", rs[i].TxHash.Hex(), rs[i].ContractAddress.Hex(), want.Hex())
		}
	}
	d := &KMSDeployment{
		KMSContract: proxy, AppImplementation: appImpl, KMSImplementation: kmsImpl, Owner: owner,
		ChainID: p.chainID.Uint64(), BlockNumber: blockOf(rs[len(rs)-1]),
	}
	for _, r := range rs {
		d.TxHashes = append(d.TxHashes, r.TxHash)
		d.GasUsed += r.GasUsed
	}
	return d, nil
}

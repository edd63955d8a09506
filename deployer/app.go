package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

// DeployAppConfig describes the AppAuth (DstackApp) to deploy through the
// KMS factory.
type DeployAppConfig struct {
	// KMS is the DstackKms proxy (--kms-contract).
	KMS common.Address
	// Owner becomes owner() of the app; zero means the signer. It may be any
	// address, e.g. a Safe, while the signer pays the gas.
	Owner common.Address
	// DeviceID and ComposeHash are registered at creation when non-zero.
	DeviceID, ComposeHash [32]byte
	// AllowAnyDevice lets the app boot on any device. Phala's SDK rule
	// applies: it is forced to false when DeviceID is given (see Normalized).
	AllowAnyDevice  bool
	DisableUpgrades bool
	// RequireTcbUpToDate selects the 6-argument factory overload; otherwise
	// the 5-argument one, which every KMS generation since 2025-07 has.
	RequireTcbUpToDate bool
	// ReadKMSRootKey reads kmsInfo().k256Pubkey in DeployApp's preflight
	// batch into AppDeployment.KMSRootKey, saving the separate request a
	// later key verification would make. A failed read fails the
	// preflight, so nothing is paid for a deployment whose key cannot be
	// verified.
	ReadKMSRootKey bool
}

// Check rejects a config the factory would refuse.
func (c DeployAppConfig) Check() error {
	if c.KMS == (common.Address{}) {
		return errors.New("no KMS contract: pass --kms-contract (or --chain base for Phala's Base KMS)")
	}
	return nil
}

// Normalized applies Phala's SDK rule: a non-zero DeviceID turns
// AllowAnyDevice off, so an explicit device list is never silently widened.
func (c DeployAppConfig) Normalized() DeployAppConfig {
	if c.DeviceID != ([32]byte{}) {
		c.AllowAnyDevice = false
	}
	return c
}

// AppDeployment is what an app deployment produced. AppID and
// ContractAddress are the same address: the app id is the proxy's address.
type AppDeployment struct {
	AppID           common.Address `json:"app_id"`
	ContractAddress common.Address `json:"contract_address"`
	DeployerAddress common.Address `json:"deployer_address"`
	Owner           common.Address `json:"owner"`
	KMS             common.Address `json:"kms_contract"`
	TxHash          common.Hash    `json:"tx_hash"`
	// ProxyTxHash is the proxy creation of the two-step path (TxHash is then
	// the registerApp transaction).
	ProxyTxHash common.Hash `json:"proxy_tx_hash,omitempty"`
	BlockNumber uint64      `json:"block_number"`
	GasUsed     uint64      `json:"gas_used"`
	ChainID     uint64      `json:"chain_id"`
	// KMSRootKey is the KMS's kmsInfo().k256Pubkey, read before the
	// transaction when DeployAppConfig.ReadKMSRootKey is set.
	KMSRootKey hexutil.Bytes `json:"kms_root_key,omitempty"`
}

// DeployAppCalldata returns the factory call for cfg, for a Safe or another
// multisig to send. cfg.Owner must be set (there is no signer to default to).
func DeployAppCalldata(cfg DeployAppConfig) (to common.Address, data []byte, err error) {
	if err := cfg.Check(); err != nil {
		return common.Address{}, nil, err
	}
	if cfg.Owner == (common.Address{}) {
		return common.Address{}, nil, errors.New("calldata needs an explicit --owner (the zero address cannot own an app)")
	}
	data, err = deployAppData(cfg.Normalized(), cfg.Owner)
	return cfg.KMS, data, err
}

func deployAppData(cfg DeployAppConfig, owner common.Address) ([]byte, error) {
	a := kmsBinding().GetABI()
	if cfg.RequireTcbUpToDate {
		return packBySig(a, sigDeployApp6, owner, cfg.DisableUpgrades, true, cfg.AllowAnyDevice, cfg.DeviceID, cfg.ComposeHash)
	}
	return packBySig(a, sigDeployApp5, owner, cfg.DisableUpgrades, cfg.AllowAnyDevice, cfg.DeviceID, cfg.ComposeHash)
}

func deployAppRequest(cfg DeployAppConfig, owner common.Address) (TxRequest, error) {
	data, err := deployAppData(cfg, owner)
	if err != nil {
		return TxRequest{}, err
	}
	kms := cfg.KMS
	return TxRequest{
		To: &kms, Data: data, Role: "the KMS contract (--kms-contract)",
		RevertHint: func(reason string, revert []byte) string {
			if len(revert) == 0 && cfg.RequireTcbUpToDate {
				return "this KMS may predate the 6-argument deployAndRegisterApp: deploy without --require-tcb-up-to-date"
			}
			if len(revert) == 0 {
				return "is " + kms.Hex() + " a DstackKms contract? check --kms-contract"
			}
			return ""
		},
	}, nil
}

func (cfg DeployAppConfig) owner(s common.Address) common.Address {
	if cfg.Owner == (common.Address{}) {
		return s
	}
	return cfg.Owner
}

// DeployApp deploys and registers an AppAuth through the KMS factory in one
// transaction and reads the ids from the receipt. On an automining chain it
// usually makes three JSON-RPC HTTP requests: the preflight batch (with the
// KMS root key when asked), the send and one receipt poll.
func (c *Client) DeployApp(ctx context.Context, signer Signer, cfg DeployAppConfig, opts TxOptions) (*AppDeployment, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.Normalized()
	owner := cfg.owner(signer.Address())
	req, err := deployAppRequest(cfg, owner)
	if err != nil {
		return nil, err
	}
	var extras []extraRead
	var root []byte
	if cfg.ReadKMSRootKey {
		extras = append(extras, kmsRootKeyRead(cfg.KMS, &root))
	}
	r, err := c.transact(ctx, signer, req, opts, extras)
	if err != nil {
		return nil, err
	}
	d, err := ParseAppDeployed(r, cfg.KMS)
	if err != nil {
		return nil, err
	}
	d.Owner = owner
	d.ChainID = c.chainIDOf(r)
	d.KMSRootKey = root
	return d, nil
}

// kmsRootKeyRead is kmsInfo() on kms as a preflight extra; the key lands in
// *out. The code check of the same batch has already vouched for kms.
func kmsRootKeyRead(kms common.Address, out *[]byte) extraRead {
	data := kmsBinding().PackKmsInfo()
	var ret hexutil.Bytes
	return extraRead{
		elem: rpc.BatchElem{Method: "eth_call", Args: []any{map[string]any{"to": kms, "input": hexutil.Bytes(data), "data": hexutil.Bytes(data)}, "latest"}, Result: &ret},
		check: func(e rpc.BatchElem, _ uint64) error {
			if e.Error != nil {
				if isRevert(e.Error) {
					d, _ := revertData(e.Error)
					return fmt.Errorf("reading kmsInfo(): the call reverted (%s): is %s a DstackKms?", DecodeRevert(d), kms.Hex())
				}
				return fmt.Errorf("reading kmsInfo(): %w", e.Error)
			}
			info, err := kmsBinding().UnpackKmsInfo(ret)
			if err != nil {
				return fmt.Errorf("reading kmsInfo(): %w", err)
			}
			*out = info.K256Pubkey
			return nil
		},
	}
}

// ResumeAppDeployment finishes a factory transaction signed by an earlier
// run (see ResumeTx: any variant's receipt, a re-send of the same bytes
// when the node lost it, replacement when stuck) and reads the deployment
// from the canonical receipt of whichever variant was mined.
func (c *Client) ResumeAppDeployment(ctx context.Context, signer Signer, kms common.Address, latest *types.Transaction, earlier []common.Hash, opts TxOptions) (*AppDeployment, error) {
	r, err := c.ResumeTx(ctx, signer, latest, earlier, opts)
	if err != nil {
		return nil, err
	}
	d, err := ParseAppDeployed(r, kms)
	if err != nil {
		return nil, err
	}
	d.Owner = ownerFromCalldata(latest.Data())
	d.ChainID = c.chainIDOf(r)
	return d, nil
}

// chainIDOf is the chain the receipt came from. Receipts carry no chain id;
// the preflight read it and cached it on the client.
func (c *Client) chainIDOf(*types.Receipt) uint64 { return c.chainID.Load() }

// ParseAppDeployed reads an app deployment from a factory receipt: the log
// emitted by kms with topic0 AppDeployedViaFactory (never by position),
// app id = topics[1], deployer = topics[2], cross-checked with the KMS's
// AppRegistered log for the same address.
func ParseAppDeployed(r *types.Receipt, kms common.Address) (*AppDeployment, error) {
	if r == nil {
		return nil, errors.New("no receipt")
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return nil, &RevertError{TxHash: r.TxHash, BlockNumber: blockOf(r), GasUsed: r.GasUsed}
	}
	var found []*types.Log
	for _, l := range r.Logs {
		if l.Address == kms && len(l.Topics) == 3 && l.Topics[0] == topicAppDeployedViaFactory() {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("transaction %s has no AppDeployedViaFactory log from %s: was it a deployAndRegisterApp call to that KMS?", r.TxHash.Hex(), kms.Hex())
	case 1:
	default:
		return nil, fmt.Errorf("transaction %s deployed %d apps; read them one by one from its logs", r.TxHash.Hex(), len(found))
	}
	appID := common.BytesToAddress(found[0].Topics[1].Bytes())
	if !registeredIn(r, kms, appID) {
		return nil, fmt.Errorf("transaction %s: AppDeployedViaFactory names app %s but the KMS logged no AppRegistered for it", r.TxHash.Hex(), appID.Hex())
	}
	return &AppDeployment{
		AppID: appID, ContractAddress: appID,
		DeployerAddress: common.BytesToAddress(found[0].Topics[2].Bytes()),
		KMS:             kms, TxHash: r.TxHash, BlockNumber: blockOf(r), GasUsed: r.GasUsed,
	}, nil
}

// registeredIn reports whether kms logged AppRegistered(app) in r. The
// address is not indexed: it is the 32-byte data word.
func registeredIn(r *types.Receipt, kms, app common.Address) bool {
	for _, l := range r.Logs {
		if l.Address == kms && len(l.Topics) >= 1 && l.Topics[0] == topicAppRegistered() &&
			len(l.Data) == 32 && bytes.Equal(l.Data[12:], app.Bytes()) {
			return true
		}
	}
	return false
}

func blockOf(r *types.Receipt) uint64 {
	if r.BlockNumber == nil {
		return 0
	}
	return r.BlockNumber.Uint64()
}

// AppDeploymentFromTx re-reads the receipt of an earlier factory call (to
// resume after an interruption) in one batch with the chain id.
func (c *Client) AppDeploymentFromTx(ctx context.Context, kms common.Address, txHash common.Hash) (*AppDeployment, error) {
	var (
		r       *types.Receipt
		tx      *rpcTx
		chainID hexutil.Big
	)
	elems := []rpc.BatchElem{
		{Method: "eth_getTransactionReceipt", Args: []any{txHash}, Result: &r},
		{Method: "eth_getTransactionByHash", Args: []any{txHash}, Result: &tx},
		{Method: "eth_chainId", Result: &chainID},
	}
	if err := c.batch(ctx, elems); err != nil {
		return nil, err
	}
	for _, e := range elems {
		if e.Error != nil {
			return nil, fmt.Errorf("%s: %w", e.Method, e.Error)
		}
	}
	if r == nil {
		return nil, fmt.Errorf("transaction %s: %w", txHash.Hex(), ErrNotMined)
	}
	d, err := ParseAppDeployed(r, kms)
	if err != nil {
		return nil, err
	}
	d.ChainID = chainID.ToInt().Uint64()
	if tx != nil {
		d.Owner = ownerFromCalldata(tx.Input)
	}
	return d, nil
}

// rpcTx is the part of eth_getTransactionByHash read here.
type rpcTx struct {
	Input hexutil.Bytes `json:"input"`
}

// ownerFromCalldata reads initialOwner (the first argument of both factory
// overloads); zero when the calldata is not a factory call.
func ownerFromCalldata(data []byte) common.Address {
	a := kmsBinding().GetABI()
	if len(data) < 4+32 {
		return common.Address{}
	}
	m, err := a.MethodById(data[:4])
	if err != nil || m.RawName != "deployAndRegisterApp" {
		return common.Address{}
	}
	return common.BytesToAddress(data[4+12 : 4+32])
}

// AppDeploySimulation is a dry run of DeployApp: nothing is signed or sent.
type AppDeploySimulation struct {
	// PredictedAppID is what eth_call returns now; a concurrent factory call
	// by someone else can shift it, so read the real id from the receipt.
	PredictedAppID common.Address `json:"predicted_app_id"`
	Owner          common.Address `json:"owner"`
	KMS            common.Address `json:"kms_contract"`
	ChainID        uint64         `json:"chain_id"`
	GasLimit       uint64         `json:"gas_limit"`
	MaxFeePerGas   *big.Int       `json:"max_fee_per_gas"`
	// MaxCost is gas limit × max fee: the most the deployment can cost.
	MaxCost *big.Int      `json:"max_cost_wei"`
	Nonce   uint64        `json:"nonce"`
	Data    hexutil.Bytes `json:"data"`
}

// SimulateDeployApp runs every preflight check of DeployApp plus an eth_call
// predicting the app id, in the same single batch, and sends nothing.
func (c *Client) SimulateDeployApp(ctx context.Context, from common.Address, cfg DeployAppConfig, opts TxOptions) (*AppDeploySimulation, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.Normalized()
	owner := cfg.owner(from)
	req, err := deployAppRequest(cfg, owner)
	if err != nil {
		return nil, err
	}
	var ret hexutil.Bytes
	var predicted common.Address
	call := extraRead{
		elem: rpc.BatchElem{Method: "eth_call", Args: []any{callArgs(from, req, 0), "latest"}, Result: &ret},
		check: func(e rpc.BatchElem, _ uint64) error {
			if e.Error != nil {
				// The estimate carries the same revert; let it report it.
				return nil
			}
			if len(ret) != 32 {
				return fmt.Errorf("deployAndRegisterApp returned %d bytes, want an address", len(ret))
			}
			predicted = common.BytesToAddress(ret)
			return nil
		},
	}
	p, err := c.preflight(ctx, from, []TxRequest{req}, opts, []extraRead{call})
	if err != nil {
		return nil, err
	}
	tx := p.txs[0]
	return &AppDeploySimulation{
		PredictedAppID: predicted, Owner: owner, KMS: cfg.KMS, ChainID: p.chainID.Uint64(),
		GasLimit: tx.Gas(), MaxFeePerGas: tx.GasFeeCap(), MaxCost: p.cost, Nonce: tx.Nonce(), Data: req.Data,
	}, nil
}

// DeployAppTwoStep is the path for a custom or self-deployed AppAuth: it
// reads appImplementation() from the KMS, deploys an ERC1967Proxy to it
// initialised with the 6-argument initialize, then calls registerApp(proxy).
// The app id is the proxy address, confirmed by the AppRegistered log.
func (c *Client) DeployAppTwoStep(ctx context.Context, signer Signer, cfg DeployAppConfig, opts TxOptions) (*AppDeployment, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.Normalized()
	owner := cfg.owner(signer.Address())
	impl, err := c.AppImplementation(ctx, cfg.KMS)
	if err != nil {
		return nil, err
	}
	init, err := packBySig(appBinding().GetABI(), sigAppInit6, owner, cfg.DisableUpgrades, cfg.RequireTcbUpToDate, cfg.AllowAnyDevice, cfg.DeviceID, cfg.ComposeHash)
	if err != nil {
		return nil, err
	}
	create, err := proxyCreation(impl, init)
	if err != nil {
		return nil, err
	}
	r1, err := c.Transact(ctx, signer, TxRequest{Data: create}, opts)
	if err != nil {
		return nil, fmt.Errorf("step 1 (deploy the app proxy): %w", err)
	}
	proxy := r1.ContractAddress
	kms := cfg.KMS
	reg := TxRequest{To: &kms, Data: kmsBinding().PackRegisterApp(proxy), Role: "the KMS contract (--kms-contract)"}
	// The two steps are separate transactions; a fresh nonce is read.
	opts2 := opts
	if opts.Nonce != nil {
		n := *opts.Nonce + 1
		opts2.Nonce = &n
	}
	r2, err := c.Transact(ctx, signer, reg, opts2)
	if err != nil {
		return nil, fmt.Errorf("step 2 (registerApp %s; the proxy is deployed, rerun registration only): %w", proxy.Hex(), err)
	}
	if !registeredIn(r2, kms, proxy) {
		return nil, fmt.Errorf("transaction %s: the KMS logged no AppRegistered for %s", r2.TxHash.Hex(), proxy.Hex())
	}
	return &AppDeployment{
		AppID: proxy, ContractAddress: proxy, DeployerAddress: signer.Address(), Owner: owner, KMS: kms,
		TxHash: r2.TxHash, ProxyTxHash: r1.TxHash, BlockNumber: blockOf(r2), GasUsed: r1.GasUsed + r2.GasUsed,
		ChainID: c.chainID.Load(),
	}, nil
}

// proxyCreation is the creation code of ERC1967Proxy(impl, init).
func proxyCreation(impl common.Address, init []byte) ([]byte, error) {
	// Bin is a "0x…" hex string: FromHex, never []byte(Bin).
	return append(common.FromHex(bindings.ERC1967ProxyMetaData.Bin), proxyBinding().PackConstructor(impl, init)...), nil
}

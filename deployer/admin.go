package deployer

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// AppCall is one owner-only call on a DstackApp: its name and calldata. The
// calldata is what a Safe or another multisig would send to the app.
type AppCall struct {
	Name string
	Data []byte
	// Pending marks acceptOwnership, which the pending owner (not the
	// owner) must send.
	Pending bool
}

// The AppCall constructors; each maps to one DstackApp function.
func AddComposeHashCall(h [32]byte) AppCall {
	return AppCall{Name: "addComposeHash", Data: appBinding().PackAddComposeHash(h)}
}
func RemoveComposeHashCall(h [32]byte) AppCall {
	return AppCall{Name: "removeComposeHash", Data: appBinding().PackRemoveComposeHash(h)}
}
func AddDeviceCall(id [32]byte) AppCall {
	return AppCall{Name: "addDevice", Data: appBinding().PackAddDevice(id)}
}
func RemoveDeviceCall(id [32]byte) AppCall {
	return AppCall{Name: "removeDevice", Data: appBinding().PackRemoveDevice(id)}
}
func SetAllowAnyDeviceCall(allow bool) AppCall {
	return AppCall{Name: "setAllowAnyDevice", Data: appBinding().PackSetAllowAnyDevice(allow)}
}
func SetRequireTcbUpToDateCall(require bool) AppCall {
	return AppCall{Name: "setRequireTcbUpToDate", Data: appBinding().PackSetRequireTcbUpToDate(require)}
}
func DisableUpgradesCall() AppCall {
	return AppCall{Name: "disableUpgrades", Data: appBinding().PackDisableUpgrades()}
}
func TransferOwnershipCall(newOwner common.Address) AppCall {
	return AppCall{Name: "transferOwnership", Data: appBinding().PackTransferOwnership(newOwner)}
}
func AcceptOwnershipCall() AppCall {
	return AppCall{Name: "acceptOwnership", Data: appBinding().PackAcceptOwnership(), Pending: true}
}

// SendAppCall sends call to the app after an owner preflight: owner() (or
// pendingOwner() for acceptOwnership) is read in the same batch as the other
// preflight reads, and a signer that is not that account gets a
// *NotOwnerError before anything is signed.
func (c *Client) SendAppCall(ctx context.Context, signer Signer, app common.Address, call AppCall, opts TxOptions) (*TxResult, error) {
	if app == (common.Address{}) {
		return nil, errors.New("no app: pass --app-id")
	}
	req := TxRequest{To: &app, Data: call.Data, Role: "the app contract (--app-id)"}
	r, err := c.transact(ctx, signer, req, opts, []extraRead{ownerCheck(app, signer.Address(), call.Pending)})
	if err != nil {
		return nil, err
	}
	return resultOf(r), nil
}

// ownerCheck reads owner() or pendingOwner() and compares it with signer.
func ownerCheck(app, signer common.Address, pending bool) extraRead {
	var ret hexutil.Bytes
	data, method := appBinding().PackOwner(), "owner()"
	if pending {
		data, method = appBinding().PackPendingOwner(), "pendingOwner()"
	}
	return extraRead{
		elem: rpc.BatchElem{Method: "eth_call", Args: []any{callArgs(signer, TxRequest{To: &app, Data: data}, 0), "latest"}, Result: &ret},
		check: func(e rpc.BatchElem, _ uint64) error {
			if e.Error != nil {
				return fmt.Errorf("reading %s of %s (is it a DstackApp?): %w", method, app.Hex(), e.Error)
			}
			if len(ret) != 32 {
				return fmt.Errorf("%s of %s returned %d bytes: is it a DstackApp? check --app-id", method, app.Hex(), len(ret))
			}
			owner := common.BytesToAddress(ret)
			if owner != signer {
				return &NotOwnerError{Contract: app, Owner: owner, Signer: signer, Pending: pending}
			}
			return nil
		},
	}
}

// AddComposeHash allows a compose hash on the app.
func (c *Client) AddComposeHash(ctx context.Context, s Signer, app common.Address, h [32]byte, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, AddComposeHashCall(h), o)
}

// RemoveComposeHash disallows a compose hash.
func (c *Client) RemoveComposeHash(ctx context.Context, s Signer, app common.Address, h [32]byte, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, RemoveComposeHashCall(h), o)
}

// AddDevice allows a device id.
func (c *Client) AddDevice(ctx context.Context, s Signer, app common.Address, id [32]byte, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, AddDeviceCall(id), o)
}

// RemoveDevice disallows a device id.
func (c *Client) RemoveDevice(ctx context.Context, s Signer, app common.Address, id [32]byte, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, RemoveDeviceCall(id), o)
}

// SetAllowAnyDevice sets whether the app may boot on any device.
func (c *Client) SetAllowAnyDevice(ctx context.Context, s Signer, app common.Address, allow bool, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, SetAllowAnyDeviceCall(allow), o)
}

// SetRequireTcbUpToDate sets whether boots need TCB status "UpToDate".
func (c *Client) SetRequireTcbUpToDate(ctx context.Context, s Signer, app common.Address, require bool, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, SetRequireTcbUpToDateCall(require), o)
}

// DisableUpgrades makes the app's implementation permanent (one way).
func (c *Client) DisableUpgrades(ctx context.Context, s Signer, app common.Address, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, DisableUpgradesCall(), o)
}

// TransferOwnership starts a two-step ownership transfer (Ownable2Step):
// newOwner becomes pendingOwner and must call AcceptOwnership.
func (c *Client) TransferOwnership(ctx context.Context, s Signer, app, newOwner common.Address, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, TransferOwnershipCall(newOwner), o)
}

// AcceptOwnership completes a transfer; the signer must be pendingOwner().
func (c *Client) AcceptOwnership(ctx context.Context, s Signer, app common.Address, o TxOptions) (*TxResult, error) {
	return c.SendAppCall(ctx, s, app, AcceptOwnershipCall(), o)
}

// AppInfoQuery selects what AppInfo reads. Zero/nil fields are skipped.
type AppInfoQuery struct {
	App         common.Address
	KMS         common.Address // when set, Registered is read from it
	ComposeHash *[32]byte
	DeviceID    *[32]byte
}

// AppInfo is the on-chain state of a DstackApp. Pointer fields are nil when
// not asked for or not available on this contract generation (older apps
// have no pendingOwner, requireTcbUpToDate or version).
type AppInfo struct {
	App                common.Address  `json:"app_id"`
	ChainID            uint64          `json:"chain_id"`
	Owner              common.Address  `json:"owner"`
	PendingOwner       *common.Address `json:"pending_owner,omitempty"`
	AllowAnyDevice     bool            `json:"allow_any_device"`
	RequireTcbUpToDate *bool           `json:"require_tcb_up_to_date,omitempty"`
	// Implementation is the proxy's ERC-1967 implementation slot.
	Implementation common.Address `json:"implementation"`
	// UpgradesDisabled has no getter (the flag is private). It is derived by
	// simulating upgradeToAndCall(Implementation) from the owner, which
	// reverts with "Upgrades are permanently disabled" once disabled; nil
	// when the simulation is inconclusive (no owner, other revert).
	UpgradesDisabled   *bool          `json:"upgrades_disabled,omitempty"`
	Version            *uint64        `json:"version,omitempty"`
	ComposeHash        *common.Hash   `json:"compose_hash,omitempty"`
	ComposeHashAllowed *bool          `json:"compose_hash_allowed,omitempty"`
	DeviceID           *common.Hash   `json:"device_id,omitempty"`
	DeviceAllowed      *bool          `json:"device_allowed,omitempty"`
	KMS                common.Address `json:"kms_contract,omitempty"`
	Registered         *bool          `json:"registered,omitempty"`
}

// AppInfo reads the app's state in one batch, plus one simulated call for
// UpgradesDisabled, which needs the owner and implementation read first.
func (c *Client) AppInfo(ctx context.Context, q AppInfoQuery) (*AppInfo, error) {
	if q.App == (common.Address{}) {
		return nil, errors.New("no app: pass --app-id")
	}
	ab := appBinding()
	type read struct {
		data []byte
		to   common.Address
		ret  hexutil.Bytes
	}
	var (
		chainID hexutil.Big
		code    hexutil.Bytes
		impl    common.Hash
		elems   []rpc.BatchElem
		reads   = map[string]*read{}
	)
	elems = append(elems,
		rpc.BatchElem{Method: "eth_chainId", Result: &chainID},
		rpc.BatchElem{Method: "eth_getCode", Args: []any{q.App, "latest"}, Result: &code},
		rpc.BatchElem{Method: "eth_getStorageAt", Args: []any{q.App, implSlot, "latest"}, Result: &impl})
	addRead := func(name string, to common.Address, data []byte) {
		r := &read{data: data, to: to}
		reads[name] = r
		elems = append(elems, rpc.BatchElem{Method: "eth_call", Args: []any{map[string]any{"to": to, "input": hexutil.Bytes(data), "data": hexutil.Bytes(data)}, "latest"}, Result: &r.ret})
	}
	addRead("owner", q.App, ab.PackOwner())
	addRead("pendingOwner", q.App, ab.PackPendingOwner())
	addRead("allowAnyDevice", q.App, ab.PackAllowAnyDevice())
	addRead("requireTcbUpToDate", q.App, ab.PackRequireTcbUpToDate())
	addRead("version", q.App, ab.PackVersion())
	if q.ComposeHash != nil {
		addRead("allowedComposeHashes", q.App, ab.PackAllowedComposeHashes(*q.ComposeHash))
	}
	if q.DeviceID != nil {
		addRead("allowedDeviceIds", q.App, ab.PackAllowedDeviceIds(*q.DeviceID))
	}
	if q.KMS != (common.Address{}) {
		addRead("registeredApps", q.KMS, kmsBinding().PackRegisteredApps(q.App))
	}
	if err := c.batch(ctx, elems); err != nil {
		return nil, err
	}
	if elems[0].Error != nil {
		return nil, fmt.Errorf("eth_chainId: %w", elems[0].Error)
	}
	info := &AppInfo{App: q.App, ChainID: chainID.ToInt().Uint64(), KMS: q.KMS}
	c.chainID.Store(info.ChainID)
	if c.ExpectChainID != 0 && info.ChainID != c.ExpectChainID {
		return nil, &ChainMismatchError{Want: c.ExpectChainID, Got: info.ChainID}
	}
	if elems[1].Error == nil && len(code) == 0 {
		return nil, &NoCodeError{Address: q.App, ChainID: info.ChainID, Role: "the app contract (--app-id)"}
	}
	// Map batch errors back to reads: a reverted read means "not on this
	// generation", any other error fails the whole query.
	ok := map[string]bool{}
	i := 3
	for _, name := range []string{"owner", "pendingOwner", "allowAnyDevice", "requireTcbUpToDate", "version", "allowedComposeHashes", "allowedDeviceIds", "registeredApps"} {
		if reads[name] == nil {
			continue
		}
		if err := elems[i].Error; err != nil && !isRevert(err) {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		ok[name] = elems[i].Error == nil && len(reads[name].ret) == 32
		i++
	}
	word := func(name string) []byte { return reads[name].ret }
	if !ok["owner"] || !ok["allowAnyDevice"] {
		return nil, fmt.Errorf("%s does not answer owner() and allowAnyDevice(): is it a DstackApp? check --app-id", q.App.Hex())
	}
	info.Owner = common.BytesToAddress(word("owner"))
	info.AllowAnyDevice = new(big.Int).SetBytes(word("allowAnyDevice")).Sign() != 0
	if ok["pendingOwner"] {
		a := common.BytesToAddress(word("pendingOwner"))
		info.PendingOwner = &a
	}
	boolOf := func(name string) *bool {
		if !ok[name] {
			return nil
		}
		b := new(big.Int).SetBytes(word(name)).Sign() != 0
		return &b
	}
	info.RequireTcbUpToDate = boolOf("requireTcbUpToDate")
	if ok["version"] {
		v := new(big.Int).SetBytes(word("version")).Uint64()
		info.Version = &v
	}
	if q.ComposeHash != nil {
		h := common.Hash(*q.ComposeHash)
		info.ComposeHash, info.ComposeHashAllowed = &h, boolOf("allowedComposeHashes")
	}
	if q.DeviceID != nil {
		h := common.Hash(*q.DeviceID)
		info.DeviceID, info.DeviceAllowed = &h, boolOf("allowedDeviceIds")
	}
	if q.KMS != (common.Address{}) {
		info.Registered = boolOf("registeredApps")
	}
	if elems[2].Error == nil {
		info.Implementation = common.BytesToAddress(impl.Bytes())
	}
	info.UpgradesDisabled = c.upgradesDisabled(ctx, q.App, info.Owner, info.Implementation)
	return info, nil
}

// implSlot is the ERC-1967 implementation slot of a proxy.
var implSlot = common.HexToHash("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc")

// upgradesDisabled simulates upgradeToAndCall(currentImpl, "") from the
// owner: it succeeds while upgrades are allowed (re-pointing to the same
// implementation is a valid upgrade) and reverts with "Upgrades are
// permanently disabled" after disableUpgrades. Nothing is sent. nil when
// the simulation says neither.
func (c *Client) upgradesDisabled(ctx context.Context, app, owner, impl common.Address) *bool {
	if owner == (common.Address{}) || impl == (common.Address{}) {
		return nil
	}
	data := appBinding().PackUpgradeToAndCall(impl, []byte{})
	var out hexutil.Bytes
	err := c.call(ctx, &out, "eth_call", callArgs(owner, TxRequest{To: &app, Data: data}, 0), "latest")
	var v bool
	switch {
	case err == nil:
		v = false
	case isRevert(err):
		d, _ := revertData(err)
		if !strings.Contains(strings.ToLower(DecodeRevert(d)), "upgrades are permanently disabled") {
			return nil
		}
		v = true
	default:
		return nil
	}
	return &v
}

// AppImplementation reads appImplementation() of a KMS, checking first that
// the KMS address holds code (both in one batch).
func (c *Client) AppImplementation(ctx context.Context, kms common.Address) (common.Address, error) {
	ret, err := c.readKMS(ctx, kms, kmsBinding().PackAppImplementation())
	if err != nil {
		return common.Address{}, fmt.Errorf("reading appImplementation(): %w", err)
	}
	impl, err := kmsBinding().UnpackAppImplementation(ret)
	if err != nil {
		return common.Address{}, fmt.Errorf("reading appImplementation(): %w", err)
	}
	if impl == (common.Address{}) {
		return common.Address{}, fmt.Errorf("the KMS %s has no app implementation set: its owner must call setAppImplementation", kms.Hex())
	}
	return impl, nil
}

// KMSRootKey reads kmsInfo().k256Pubkey, the KMS root public key.
func (c *Client) KMSRootKey(ctx context.Context, kms common.Address) ([]byte, error) {
	ret, err := c.readKMS(ctx, kms, kmsBinding().PackKmsInfo())
	if err != nil {
		return nil, fmt.Errorf("reading kmsInfo(): %w", err)
	}
	info, err := kmsBinding().UnpackKmsInfo(ret)
	if err != nil {
		return nil, fmt.Errorf("reading kmsInfo(): %w", err)
	}
	return info.K256Pubkey, nil
}

// readKMS does one eth_call on the KMS with the chain id and code check in
// the same batch.
func (c *Client) readKMS(ctx context.Context, kms common.Address, data []byte) ([]byte, error) {
	var (
		chainID hexutil.Big
		code    hexutil.Bytes
		ret     hexutil.Bytes
	)
	elems := []rpc.BatchElem{
		{Method: "eth_chainId", Result: &chainID},
		{Method: "eth_getCode", Args: []any{kms, "latest"}, Result: &code},
		{Method: "eth_call", Args: []any{map[string]any{"to": kms, "input": hexutil.Bytes(data), "data": hexutil.Bytes(data)}, "latest"}, Result: &ret},
	}
	if err := c.batch(ctx, elems); err != nil {
		return nil, err
	}
	for _, e := range elems[:2] {
		if e.Error != nil {
			return nil, fmt.Errorf("%s: %w", e.Method, e.Error)
		}
	}
	id := chainID.ToInt().Uint64()
	c.chainID.Store(id)
	if c.ExpectChainID != 0 && id != c.ExpectChainID {
		return nil, &ChainMismatchError{Want: c.ExpectChainID, Got: id}
	}
	if len(code) == 0 {
		return nil, &NoCodeError{Address: kms, ChainID: id, Role: "the KMS contract (--kms-contract)"}
	}
	if err := elems[2].Error; err != nil {
		if isRevert(err) {
			d, _ := revertData(err)
			return nil, fmt.Errorf("the call reverted (%s): is %s a DstackKms?", DecodeRevert(d), kms.Hex())
		}
		return nil, err
	}
	return ret, nil
}

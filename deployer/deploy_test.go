package deployer_test

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

func TestDeployKMS(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	k := e.kms
	if k.ChainID != e.anvil.ChainID() || k.Owner != e.owner.Address() {
		t.Fatalf("deployment %+v", k)
	}
	if len(k.TxHashes) != 4 { // app impl, kms impl, proxy, addOsImageHash
		t.Fatalf("tx hashes %v, want 4", k.TxHashes)
	}
	for _, a := range []common.Address{k.KMSContract, k.AppImplementation, k.KMSImplementation} {
		if len(e.code(t, a)) == 0 {
			t.Fatalf("no code at %s", a)
		}
	}
	impl, err := e.client.AppImplementation(ctxT(t), k.KMSContract)
	if err != nil || impl != k.AppImplementation {
		t.Fatalf("appImplementation() = %s, %v; want %s", impl, err, k.AppImplementation)
	}
	kb := bindings.NewDstackKms()
	inst := kb.Instance(e.client.Eth(), k.KMSContract)
	ok, err := bind.Call(inst, &bind.CallOpts{Context: ctxT(t)}, kb.PackAllowedOsImages(e.osHash), kb.UnpackAllowedOsImages)
	if err != nil || !ok {
		t.Fatalf("allowedOsImages = %v, %v", ok, err)
	}
	// No root key was set.
	key, err := e.client.KMSRootKey(ctxT(t), k.KMSContract)
	if err != nil || len(key) != 0 {
		t.Fatalf("KMSRootKey = %x, %v", key, err)
	}
}

func TestDeployKMSWithRootKey(t *testing.T) {
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	c, err := deployer.Dial(ctxT(t), a.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	s := deployer.NewKeySigner(a.Accounts()[0].PrivateKey)
	rk, _ := testKey(t)
	root := crypto.CompressPubkey(&rk.PublicKey)
	k, err := c.DeployKMS(ctxT(t), s, deployer.KMSDeployConfig{RootKey: root, OSImageHashes: [][32]byte{hash32(1), hash32(2)}}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.TxHashes) != 6 {
		t.Fatalf("%d txs, want 6", len(k.TxHashes))
	}
	got, err := c.KMSRootKey(ctxT(t), k.KMSContract)
	if err != nil || !bytes.Equal(got, root) {
		t.Fatalf("KMSRootKey = %x, %v; want %x", got, err, root)
	}
	// Bad root keys are refused before any RPC.
	for _, bad := range [][]byte{{1, 2, 3}, bytes.Repeat([]byte{9}, 33)} {
		if _, err := c.DeployKMS(ctxT(t), s, deployer.KMSDeployConfig{RootKey: bad}, deployer.TxOptions{}); err == nil || !strings.Contains(err.Error(), "--root-key") {
			t.Fatalf("root key %x: %v", bad, err)
		}
	}
}

func TestDeployAppFactoryOverloads(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	compose, device := hash32(0xc0, 0x01), hash32(0xde, 0x01)
	cases := []struct {
		name     string
		tcb      bool
		selector string
	}{
		{"5-arg", false, "8618169d"},
		{"6-arg", true, "9cb9c31f"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.deployApp(t, e.owner, deployer.DeployAppConfig{ComposeHash: compose, DeviceID: device, RequireTcbUpToDate: tc.tcb})
			if d.AppID != d.ContractAddress || d.AppID == (common.Address{}) {
				t.Fatalf("app id %s, contract %s", d.AppID, d.ContractAddress)
			}
			if d.DeployerAddress != e.owner.Address() || d.Owner != e.owner.Address() || d.ChainID != e.anvil.ChainID() {
				t.Fatalf("deployment %+v", d)
			}
			if len(e.code(t, d.AppID)) == 0 {
				t.Fatalf("no code at the app proxy %s", d.AppID)
			}
			tx, _, err := e.client.Eth().TransactionByHash(ctxT(t), d.TxHash)
			if err != nil {
				t.Fatal(err)
			}
			if got := common.Bytes2Hex(tx.Data()[:4]); got != tc.selector {
				t.Fatalf("selector %s, want %s", got, tc.selector)
			}
			// The receipt ids are the real proxy: it answers as the app.
			info, err := e.client.AppInfo(ctxT(t), deployer.AppInfoQuery{App: d.AppID, KMS: e.kms.KMSContract, ComposeHash: &compose, DeviceID: &device})
			if err != nil {
				t.Fatal(err)
			}
			if info.Owner != e.owner.Address() || !*info.ComposeHashAllowed || !*info.DeviceAllowed || !*info.Registered || info.AllowAnyDevice {
				t.Fatalf("info %+v", info)
			}
			if info.RequireTcbUpToDate == nil || *info.RequireTcbUpToDate != tc.tcb {
				t.Fatalf("requireTcbUpToDate = %v, want %v", info.RequireTcbUpToDate, tc.tcb)
			}
			if info.UpgradesDisabled == nil || *info.UpgradesDisabled {
				t.Fatalf("upgradesDisabled = %v, want false", info.UpgradesDisabled)
			}
			// Re-reading the receipt gives the same deployment (resume).
			again, err := e.client.AppDeploymentFromTx(ctxT(t), e.kms.KMSContract, d.TxHash)
			if err != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("AppDeploymentFromTx = %+v, %v; want %+v", again, err, d)
			}
		})
	}
}

func TestDeployAppOwnerAndFlags(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	// Another owner (e.g. a Safe) while the signer pays; allow-any-device
	// without a device id; upgrades disabled from the start.
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{Owner: e.other.Address(), AllowAnyDevice: true, DisableUpgrades: true})
	if d.DeployerAddress != e.owner.Address() || d.Owner != e.other.Address() {
		t.Fatalf("deployment %+v", d)
	}
	info, err := e.client.AppInfo(ctxT(t), deployer.AppInfoQuery{App: d.AppID})
	if err != nil {
		t.Fatal(err)
	}
	if info.Owner != e.other.Address() || !info.AllowAnyDevice || info.UpgradesDisabled == nil || !*info.UpgradesDisabled {
		t.Fatalf("info %+v", info)
	}
	// SDK rule: a device id turns allow-any-device off.
	d2 := e.deployApp(t, e.owner, deployer.DeployAppConfig{AllowAnyDevice: true, DeviceID: hash32(7)})
	info2, err := e.client.AppInfo(ctxT(t), deployer.AppInfoQuery{App: d2.AppID})
	if err != nil || info2.AllowAnyDevice {
		t.Fatalf("allowAnyDevice with a device id: %+v, %v", info2, err)
	}
}

func TestDeployAppTwoStep(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	compose := hash32(0xc0, 0x02)
	cfg := deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: compose, AllowAnyDevice: true}
	d, err := e.client.DeployAppTwoStep(ctxT(t), e.owner, cfg, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.AppID != d.ContractAddress || d.ProxyTxHash == (common.Hash{}) || d.TxHash == d.ProxyTxHash {
		t.Fatalf("deployment %+v", d)
	}
	// The proxy points at the KMS's app implementation (ERC1967 slot).
	slot := common.HexToHash("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc")
	v, err := e.client.Eth().StorageAt(ctxT(t), d.AppID, slot, nil)
	if err != nil || common.BytesToAddress(v) != e.kms.AppImplementation {
		t.Fatalf("implementation slot %x, %v; want %s", v, err, e.kms.AppImplementation)
	}
	info, err := e.client.AppInfo(ctxT(t), deployer.AppInfoQuery{App: d.AppID, KMS: e.kms.KMSContract, ComposeHash: &compose})
	if err != nil {
		t.Fatal(err)
	}
	if !*info.Registered || !*info.ComposeHashAllowed || !info.AllowAnyDevice || info.Owner != e.owner.Address() {
		t.Fatalf("info %+v", info)
	}
}

func TestDeployAppCalldataAndSimulation(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	cfg := deployer.DeployAppConfig{KMS: e.kms.KMSContract, Owner: e.owner.Address(), ComposeHash: hash32(3)}
	n0 := e.nonce(t, e.owner.Address())
	sim, err := e.client.SimulateDeployApp(ctxT(t), e.owner.Address(), cfg, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.nonce(t, e.owner.Address()) != n0 {
		t.Fatal("a simulation sent a transaction")
	}
	if sim.GasLimit == 0 || sim.MaxCost.Sign() <= 0 || sim.PredictedAppID == (common.Address{}) {
		t.Fatalf("simulation %+v", sim)
	}
	to, data, err := deployer.DeployAppCalldata(cfg)
	if err != nil || to != e.kms.KMSContract || !bytes.Equal(data, sim.Data) {
		t.Fatalf("calldata to %s (%v), differs from the simulation's: %v", to, err, !bytes.Equal(data, sim.Data))
	}
	// What a multisig would send gives the predicted app.
	r, err := e.client.Transact(ctxT(t), e.owner, deployer.TxRequest{To: &to, Data: data}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := deployer.ParseAppDeployed(r, e.kms.KMSContract)
	if err != nil || d.AppID != sim.PredictedAppID {
		t.Fatalf("deployed %v (%v), predicted %s", d, err, sim.PredictedAppID)
	}
	if _, _, err := deployer.DeployAppCalldata(deployer.DeployAppConfig{KMS: e.kms.KMSContract}); err == nil || !strings.Contains(err.Error(), "--owner") {
		t.Fatalf("calldata without owner: %v", err)
	}
}

// TestAdminCalls runs every owner-only call and reads the effect back.
func TestAdminCalls(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{})
	app, c, o := d.AppID, e.client, deployer.TxOptions{}
	h, dev := hash32(0xaa), hash32(0xbb)
	info := func() *deployer.AppInfo {
		t.Helper()
		i, err := c.AppInfo(ctxT(t), deployer.AppInfoQuery{App: app, ComposeHash: &h, DeviceID: &dev})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	step := func(name string, res *deployer.TxResult, err error, check func(*deployer.AppInfo) bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.TxHash == (common.Hash{}) || res.BlockNumber == 0 || res.GasUsed == 0 || res.Receipt.Status != types.ReceiptStatusSuccessful {
			t.Fatalf("%s: result %+v", name, res)
		}
		if i := info(); !check(i) {
			t.Fatalf("%s: state after: %+v", name, i)
		}
	}
	ctx := ctxT(t)
	r, err := c.AddComposeHash(ctx, e.owner, app, h, o)
	step("addComposeHash", r, err, func(i *deployer.AppInfo) bool { return *i.ComposeHashAllowed })
	r, err = c.RemoveComposeHash(ctx, e.owner, app, h, o)
	step("removeComposeHash", r, err, func(i *deployer.AppInfo) bool { return !*i.ComposeHashAllowed })
	r, err = c.AddDevice(ctx, e.owner, app, dev, o)
	step("addDevice", r, err, func(i *deployer.AppInfo) bool { return *i.DeviceAllowed })
	r, err = c.RemoveDevice(ctx, e.owner, app, dev, o)
	step("removeDevice", r, err, func(i *deployer.AppInfo) bool { return !*i.DeviceAllowed })
	r, err = c.SetAllowAnyDevice(ctx, e.owner, app, true, o)
	step("setAllowAnyDevice(true)", r, err, func(i *deployer.AppInfo) bool { return i.AllowAnyDevice })
	r, err = c.SetAllowAnyDevice(ctx, e.owner, app, false, o)
	step("setAllowAnyDevice(false)", r, err, func(i *deployer.AppInfo) bool { return !i.AllowAnyDevice })
	r, err = c.SetRequireTcbUpToDate(ctx, e.owner, app, true, o)
	step("setRequireTcbUpToDate", r, err, func(i *deployer.AppInfo) bool { return *i.RequireTcbUpToDate })
	r, err = c.TransferOwnership(ctx, e.owner, app, e.other.Address(), o)
	step("transferOwnership", r, err, func(i *deployer.AppInfo) bool {
		return i.Owner == e.owner.Address() && *i.PendingOwner == e.other.Address()
	})
	// Only the pending owner may accept.
	n := e.nonce(t, e.owner.Address())
	_, err = c.AcceptOwnership(ctx, e.owner, app, o)
	var noe *deployer.NotOwnerError
	if !errors.As(err, &noe) || !noe.Pending || noe.Owner != e.other.Address() || !strings.Contains(err.Error(), "not the pending owner") {
		t.Fatalf("accept by the owner: %v", err)
	}
	if e.nonce(t, e.owner.Address()) != n {
		t.Fatal("a refused acceptOwnership was sent")
	}
	r, err = c.AcceptOwnership(ctx, e.other, app, o)
	step("acceptOwnership", r, err, func(i *deployer.AppInfo) bool {
		return i.Owner == e.other.Address() && *i.PendingOwner == (common.Address{})
	})
	r, err = c.DisableUpgrades(ctx, e.other, app, o)
	step("disableUpgrades", r, err, func(i *deployer.AppInfo) bool { return *i.UpgradesDisabled })
}

func TestNotOwner(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{})
	n := e.nonce(t, e.other.Address())
	_, err := e.client.AddComposeHash(ctxT(t), e.other, d.AppID, hash32(1), deployer.TxOptions{})
	var noe *deployer.NotOwnerError
	if !errors.As(err, &noe) || noe.Owner != e.owner.Address() || noe.Signer != e.other.Address() || !errors.Is(err, deployer.ErrPreflight) {
		t.Fatalf("err = %v, want *NotOwnerError", err)
	}
	if want := "is not the owner of " + d.AppID.Hex(); !strings.Contains(err.Error(), want) {
		t.Fatalf("err %q lacks %q", err, want)
	}
	if e.nonce(t, e.other.Address()) != n {
		t.Fatal("a transaction was sent")
	}
	// No transfer pending: acceptOwnership says so.
	_, err = e.client.AcceptOwnership(ctxT(t), e.other, d.AppID, deployer.TxOptions{})
	if err == nil || !strings.Contains(err.Error(), "no ownership transfer is pending") {
		t.Fatalf("accept without a pending transfer: %v", err)
	}
}

// zeroOwnerCall is a factory call with a zero owner, which the contract
// rejects with "Invalid owner address" (DeployApp itself never builds it).
func zeroOwnerCall(t *testing.T, kms common.Address) deployer.TxRequest {
	data, err := bindings.NewDstackKms().GetABI().Methods["deployAndRegisterApp"].Inputs.Pack(common.Address{}, false, false, [32]byte{}, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	m := bindings.NewDstackKms().GetABI().Methods["deployAndRegisterApp"]
	return deployer.TxRequest{To: &kms, Data: append(append([]byte{}, m.ID...), data...)}
}

func TestRevertAtEstimate(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	n := e.nonce(t, e.owner.Address())
	_, err := e.client.Transact(ctxT(t), e.owner, zeroOwnerCall(t, e.kms.KMSContract), deployer.TxOptions{})
	var er *deployer.EstimateRevertError
	if !errors.As(err, &er) || er.Reason != "Invalid owner address" || !errors.Is(err, deployer.ErrPreflight) {
		t.Fatalf("err = %v, want an estimate revert with the reason", err)
	}
	if e.nonce(t, e.owner.Address()) != n {
		t.Fatal("a transaction was sent")
	}
}

func TestRevertMined(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	n := e.nonce(t, e.owner.Address())
	var sent common.Hash
	// A fixed gas limit skips the estimate, so the revert happens on-chain.
	_, err := e.client.Transact(ctxT(t), e.owner, zeroOwnerCall(t, e.kms.KMSContract), deployer.TxOptions{GasLimit: 500_000, OnSent: func(h common.Hash) { sent = h }})
	var re *deployer.RevertError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want *RevertError", err)
	}
	if re.TxHash != sent || re.Reason != "Invalid owner address" || re.BlockNumber == 0 {
		t.Fatalf("revert %+v (sent %s)", re, sent)
	}
	if !strings.Contains(err.Error(), "reverted in block") || !strings.Contains(err.Error(), "Invalid owner address") {
		t.Fatalf("message %q", err)
	}
	if e.nonce(t, e.owner.Address()) != n+1 {
		t.Fatal("the reverted transaction was not mined")
	}
	r, err := e.client.Eth().TransactionReceipt(ctxT(t), sent)
	if err != nil || r.Status != types.ReceiptStatusFailed {
		t.Fatalf("receipt %+v, %v", r, err)
	}
	// A custom error: a non-owner call with a fixed gas limit skips the
	// estimate but not the owner check, so use the raw Transact.
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{})
	call := deployer.AddComposeHashCall(hash32(1))
	_, err = e.client.Transact(ctxT(t), e.other, deployer.TxRequest{To: &d.AppID, Data: call.Data}, deployer.TxOptions{GasLimit: 200_000})
	if !errors.As(err, &re) || re.Reason != "OwnableUnauthorizedAccount("+e.other.Address().Hex()+")" {
		t.Fatalf("err = %v, want OwnableUnauthorizedAccount", err)
	}
}

func TestPreflightFailures(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	from := e.owner.Address()
	cases := []struct {
		name  string
		run   func() error
		typed func(error) bool
		msg   string
	}{
		{"wrong chain", func() error {
			c, err := deployer.Dial(ctxT(t), e.anvil.RPCURL())
			if err != nil {
				return err
			}
			defer c.Close()
			c.ExpectChainID = 8453
			_, err = c.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract}, deployer.TxOptions{})
			return err
		}, func(err error) bool { var x *deployer.ChainMismatchError; return errors.As(err, &x) }, "--chain is base (8453) but the RPC node serves chain anvil (31337)"},
		{"no code at the KMS", func() error {
			_, err := e.client.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: common.HexToAddress("0x1234")}, deployer.TxOptions{})
			return err
		}, func(err error) bool { var x *deployer.NoCodeError; return errors.As(err, &x) }, "no contract at 0x0000000000000000000000000000000000001234 on chain anvil (31337): check the KMS contract (--kms-contract)"},
		{"insufficient funds", func() error {
			_, err := e.client.DeployApp(ctxT(t), newUnfunded(t), deployer.DeployAppConfig{KMS: e.kms.KMSContract}, deployer.TxOptions{})
			return err
		}, func(err error) bool { var x *deployer.InsufficientFundsError; return errors.As(err, &x) }, "insufficient funds: need 0.0"},
		{"gas price below base fee", func() error {
			_, err := e.client.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract}, deployer.TxOptions{MaxFee: big.NewInt(1)})
			return err
		}, func(err error) bool { var x *deployer.FeeTooLowError; return errors.As(err, &x) }, "below the current base fee"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := e.nonce(t, from)
			err := tc.run()
			if err == nil || !errors.Is(err, deployer.ErrPreflight) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want a preflight error containing %q", err, tc.msg)
			}
			if !tc.typed(err) {
				t.Fatalf("err %T is not of the expected type", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("message is not one line: %q", err)
			}
			if e.nonce(t, from) != n {
				t.Fatal("a transaction was sent")
			}
		})
	}
}

func TestRPCUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := deployer.Dial(ctxT(t), "http://"+addr+"/v2/abcdefghijklmnopqrstuvwxyz")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := testKey(t)
	_, err = c.DeployApp(ctxT(t), deployer.NewKeySigner(k), deployer.DeployAppConfig{KMS: common.HexToAddress("0x1234")}, deployer.TxOptions{})
	var re *deployer.RPCError
	if !errors.As(err, &re) || !errors.Is(err, deployer.ErrRPCUnreachable) {
		t.Fatalf("err = %v, want *RPCError", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "http://"+addr+"/v2/***") || strings.Contains(msg, "abcdefghijklmnop") || !strings.Contains(msg, "check --rpc-url") || strings.Contains(msg, "\n") {
		t.Fatalf("message %q: want the redacted URL and the fix on one line", msg)
	}
}

func TestFees(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{})
	ctx := ctxT(t)
	// Legacy type and price.
	r, err := e.client.AddComposeHash(ctx, e.owner, d.AppID, hash32(1), deployer.TxOptions{Legacy: true, MaxFee: gwei(3)})
	if err != nil {
		t.Fatal(err)
	}
	tx, _, err := e.client.Eth().TransactionByHash(ctx, r.TxHash)
	if err != nil || tx.Type() != types.LegacyTxType || tx.GasPrice().Cmp(gwei(3)) != 0 {
		t.Fatalf("legacy tx %v type %d price %s", err, tx.Type(), tx.GasPrice())
	}
	// EIP-1559 with caps, a fixed nonce and a margin-free estimate.
	nonce := e.nonce(t, e.owner.Address())
	r, err = e.client.AddComposeHash(ctx, e.owner, d.AppID, hash32(2), deployer.TxOptions{MaxFee: gwei(2), PriorityFee: gwei(1), Nonce: &nonce, GasMarginPercent: -1})
	if err != nil {
		t.Fatal(err)
	}
	tx, _, err = e.client.Eth().TransactionByHash(ctx, r.TxHash)
	if err != nil || tx.Type() != types.DynamicFeeTxType || tx.GasFeeCap().Cmp(gwei(2)) > 0 || tx.GasTipCap().Cmp(gwei(1)) != 0 || tx.Nonce() != nonce {
		t.Fatalf("1559 tx: %v type %d cap %s tip %s nonce %d", err, tx.Type(), tx.GasFeeCap(), tx.GasTipCap(), tx.Nonce())
	}
	if r.GasUsed > tx.Gas() || tx.Gas() > r.GasUsed*11/10+5000 {
		t.Fatalf("gas limit %d for %d used: the estimate had a margin", tx.Gas(), r.GasUsed)
	}
	// The default margin is 20 %.
	r, err = e.client.AddComposeHash(ctx, e.owner, d.AppID, hash32(3), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tx, _, _ = e.client.Eth().TransactionByHash(ctx, r.TxHash)
	if tx.Gas() < r.GasUsed*115/100 {
		t.Fatalf("gas limit %d for %d used: want a 20%% margin", tx.Gas(), r.GasUsed)
	}
}

func TestConfirmationsAndTimeout(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{BlockTime: 200 * time.Millisecond})
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{})
	r, err := e.client.AddComposeHash(ctxT(t), e.owner, d.AppID, hash32(1), deployer.TxOptions{Confirmations: 3})
	if err != nil {
		t.Fatal(err)
	}
	head, err := e.client.Eth().BlockNumber(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.BlockNumber+3 > head+1 {
		t.Fatalf("returned at head %d for a tx in block %d with 3 confirmations", head, r.BlockNumber)
	}
}

func TestTimeout(t *testing.T) {
	// A chain that mines nothing: the tx is sent and never mined.
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{Args: []string{"--no-mining"}})
	c, err := deployer.Dial(ctxT(t), a.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	s := deployer.NewKeySigner(a.Accounts()[0].PrivateKey)
	to := a.Accounts()[1].Address
	var sent common.Hash
	_, err = c.Transact(ctxT(t), s, deployer.TxRequest{To: &to, Value: big.NewInt(1), SkipCodeCheck: true},
		deployer.TxOptions{Timeout: 300 * time.Millisecond, OnSent: func(h common.Hash) { sent = h }})
	var te *deployer.TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) || te.TxHash != sent || sent == (common.Hash{}) || te.Mined {
		t.Fatalf("err = %v, want *TimeoutError for %s", err, sent)
	}
	if !strings.Contains(err.Error(), sent.Hex()) || !strings.Contains(err.Error(), "not mined after 300ms") {
		t.Fatalf("message %q", err)
	}
}

// TestOnSignedAndRebroadcast: the journal hook sees the signed tx before it
// is sent, can stop the send, and a journaled tx can be re-broadcast.
func TestOnSignedAndRebroadcast(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	d := e.deployApp(t, e.owner, deployer.DeployAppConfig{})
	var signed *types.Transaction
	var sent common.Hash
	var order []string
	r, err := e.client.AddComposeHash(ctxT(t), e.owner, d.AppID, hash32(1), deployer.TxOptions{
		OnSigned: func(tx *types.Transaction) error { signed = tx; order = append(order, "signed"); return nil },
		OnSent:   func(h common.Hash) { sent = h; order = append(order, "sent") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if signed == nil || signed.Hash() != sent || r.TxHash != sent || strings.Join(order, ",") != "signed,sent" {
		t.Fatalf("hooks: order %v, signed %v, sent %s, mined %s", order, signed, sent, r.TxHash)
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// A mined tx's nonce is used: Rebroadcast says so, and the caller
	// looks up the receipt (it cannot tell "mined" from "replaced").
	if err := e.client.Rebroadcast(ctxT(t), raw); !errors.Is(err, deployer.ErrNonceUsed) {
		t.Fatalf("rebroadcast of a mined tx: %v, want ErrNonceUsed", err)
	}
	n := e.nonce(t, e.owner.Address())
	stop := errors.New("journal full")
	_, err = e.client.AddComposeHash(ctxT(t), e.owner, d.AppID, hash32(2), deployer.TxOptions{
		OnSigned: func(*types.Transaction) error { return stop },
	})
	if !errors.Is(err, stop) || e.nonce(t, e.owner.Address()) != n {
		t.Fatalf("a failing OnSigned: err %v, nonce moved: %v", err, e.nonce(t, e.owner.Address()) != n)
	}
}

package contracts_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/ethclient/simulated"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

// A smoke test of the contracts' behaviour in go-ethereum's in-process EVM
// (ethclient/simulated, chain id 1337): the real-chain tests run on anvil in
// deployer/ and testnet/. Keys are generated per run. Gas figures logged here
// are not anvil's: the simulated backend activates every dev fork, which reprices
// state creation (on anvil 1.7.1 the 6-argument factory call costs ~260k).

type account struct {
	addr common.Address
	auth *bind.TransactOpts
}

type chain struct {
	ctx    context.Context
	client simulated.Client
	commit func() // mines pending transactions (the simulated backend mines nothing on its own)
	// adjust moves the clock of the next block forward.
	adjust func(time.Duration)
}

func newChain(t *testing.T, n int) (*chain, []account) {
	t.Helper()
	alloc := types.GenesisAlloc{}
	keys := make([]*ecdsa.PrivateKey, n)
	for i := range keys {
		k, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = types.Account{Balance: new(big.Int).Lsh(big.NewInt(1), 100)}
	}
	sim := simulated.NewBackend(alloc)
	t.Cleanup(func() { sim.Close() })
	c := &chain{ctx: context.Background(), client: sim.Client(), commit: func() { sim.Commit() },
		adjust: func(d time.Duration) {
			if err := sim.AdjustTime(d); err != nil {
				t.Fatal(err)
			}
		}}
	chainID, err := c.client.ChainID(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	accts := make([]account, n)
	for i, k := range keys {
		auth := bind.NewKeyedTransactor(k, chainID)
		auth.Context = c.ctx
		accts[i] = account{crypto.PubkeyToAddress(k.PublicKey), auth}
	}
	return c, accts
}

// mined commits a block and returns the receipt of hash, which must have succeeded
// (bind.WaitMined returns a reverted receipt with a nil error).
func (c *chain) mined(t *testing.T, hash common.Hash, what string) *types.Receipt {
	t.Helper()
	c.commit()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	r, err := bind.WaitMined(ctx, c.client, hash) // first look is immediate
	if err != nil {
		t.Fatalf("%s: receipt: %v", what, err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatalf("%s: reverted", what)
	}
	return r
}

func (c *chain) deploy(t *testing.T, from account, bin string, ctor []byte, what string) (common.Address, *types.Receipt) {
	t.Helper()
	addr, tx, err := bind.DeployContract(from.auth, common.FromHex(bin), c.client, ctor)
	if err != nil {
		t.Fatalf("deploy %s: %v", what, err)
	}
	r := c.mined(t, tx.Hash(), "deploy "+what)
	code, err := c.client.CodeAt(c.ctx, addr, nil)
	if err != nil || len(code) == 0 {
		t.Fatalf("deploy %s: no code at %s (%v)", what, addr, err)
	}
	return addr, r
}

func (c *chain) send(t *testing.T, from account, to common.Address, data []byte, what string) *types.Receipt {
	t.Helper()
	tx, err := bind.Transact(bind.NewBoundContract(to, abi.ABI{}, c.client, c.client, c.client), from.auth, data)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c.mined(t, tx.Hash(), what)
}

// revert runs data as an eth_call from `from` and returns the revert data; the call must revert.
func (c *chain) revert(t *testing.T, from account, to common.Address, data []byte, what string) []byte {
	t.Helper()
	_, err := c.client.CallContract(c.ctx, ethereum.CallMsg{From: from.addr, To: &to, Data: data}, nil)
	if err == nil {
		t.Fatalf("%s: did not revert", what)
	}
	raw, ok := ethclient.RevertErrorData(err)
	if !ok {
		t.Fatalf("%s: not a revert: %v", what, err)
	}
	return raw
}

func call[T any](t *testing.T, c *chain, to common.Address, data []byte, unpack func([]byte) (T, error)) T {
	t.Helper()
	out, err := c.client.CallContract(c.ctx, ethereum.CallMsg{To: &to, Data: data}, nil)
	if err != nil {
		t.Fatalf("call %s: %v", to, err)
	}
	v, err := unpack(out)
	if err != nil {
		t.Fatalf("unpack call %s: %v", to, err)
	}
	return v
}

// revertString decodes an Error(string) revert.
func revertString(t *testing.T, raw []byte) string {
	t.Helper()
	s, err := abi.UnpackRevert(raw)
	if err != nil {
		t.Fatalf("revert data %x is not Error(string): %v", raw, err)
	}
	return s
}

// unauthorized checks raw is OwnableUnauthorizedAccount(who).
func unauthorized(t *testing.T, raw []byte, who common.Address) {
	t.Helper()
	kms := bindings.NewDstackKms()
	if len(raw) < 4 { // UnpackError panics on short data
		t.Fatalf("revert data %x too short", raw)
	}
	// The generated UnpackXxxError functions expect the data after the selector;
	// UnpackError matches the selector and strips it.
	v, err := kms.UnpackError(raw)
	e, ok := v.(*bindings.DstackKmsOwnableUnauthorizedAccount)
	if err != nil || !ok {
		t.Fatalf("revert data %x is not OwnableUnauthorizedAccount: %T %v", raw, v, err)
	}
	if e.Account != who {
		t.Fatalf("OwnableUnauthorizedAccount(%s), want %s", e.Account, who)
	}
}

// invalidInitialization is the revert data of OZ's InvalidInitialization().
var invalidInitialization = crypto.Keccak256([]byte("InvalidInitialization()"))[:4]

func h(s string) [32]byte { return crypto.Keccak256Hash([]byte(s)) }

// topicsOf lists the topic0 of each log as a short event name, using both ABIs.
func topicsOf(t *testing.T, logs []*types.Log) []string {
	t.Helper()
	kms, app := bindings.NewDstackKms().GetABI(), bindings.NewDstackApp().GetABI()
	names := make([]string, len(logs))
	for i, l := range logs {
		if ev, err := kms.EventByID(l.Topics[0]); err == nil {
			names[i] = ev.Name
		} else if ev, err := app.EventByID(l.Topics[0]); err == nil {
			names[i] = ev.Name
		} else {
			names[i] = l.Topics[0].Hex()
		}
	}
	return names
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// factoryAppID finds AppDeployedViaFactory emitted by the KMS by topic0 (not by
// position) and cross-checks AppRegistered, as the toolkit does.
func factoryAppID(t *testing.T, r *types.Receipt, kmsAddr, caller common.Address) common.Address {
	t.Helper()
	kms := bindings.NewDstackKms()
	deployedID := kms.GetABI().Events["AppDeployedViaFactory"].ID
	registeredID := kms.GetABI().Events["AppRegistered"].ID
	var appID, registered common.Address
	for _, l := range r.Logs {
		if l.Address != kmsAddr {
			continue
		}
		switch l.Topics[0] {
		case deployedID:
			ev, err := kms.UnpackAppDeployedViaFactoryEvent(l)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Deployer != caller {
				t.Errorf("AppDeployedViaFactory deployer %s, want the caller %s", ev.Deployer, caller)
			}
			appID = ev.AppId
		case registeredID:
			ev, err := kms.UnpackAppRegisteredEvent(l)
			if err != nil {
				t.Fatal(err)
			}
			registered = ev.AppId
		}
	}
	if appID == (common.Address{}) || appID != registered {
		t.Fatalf("AppDeployedViaFactory app id %s, AppRegistered %s", appID, registered)
	}
	return appID
}

func TestContractsBehaviour(t *testing.T) {
	c, accts := newChain(t, 3)
	checkBehaviour(t, c, accts[0], accts[1], accts[2])
}

// checkBehaviour deploys the KMS (owned by admin), lets user deploy apps and
// checks what the toolkit relies on; stranger owns nothing (until it accepts an app).
func checkBehaviour(t *testing.T, c *chain, admin, user, stranger account) {
	kms, app, proxy := bindings.NewDstackKms(), bindings.NewDstackApp(), bindings.NewERC1967Proxy()

	appImpl, r := c.deploy(t, admin, bindings.DstackAppMetaData.Bin, nil, "DstackApp implementation")
	t.Logf("gas (simulated): DstackApp implementation %d", r.GasUsed)
	kmsImpl, r := c.deploy(t, admin, bindings.DstackKmsMetaData.Bin, nil, "DstackKms implementation")
	t.Logf("gas (simulated): DstackKms implementation %d", r.GasUsed)
	kmsAddr, r := c.deploy(t, admin, bindings.ERC1967ProxyMetaData.Bin,
		proxy.PackConstructor(kmsImpl, kms.PackInitialize(admin.addr, appImpl)), "KMS proxy")
	t.Logf("gas (simulated): KMS proxy + initialize %d", r.GasUsed)
	if got, want := topicsOf(t, r.Logs), []string{"Upgraded", "OwnershipTransferred", "AppImplementationSet", "PolicyChanged", "Initialized"}; !equalStrings(got, want) {
		t.Errorf("KMS proxy deploy logs %v, want %v", got, want)
	}
	if got := call(t, c, kmsAddr, kms.PackOwner(), kms.UnpackOwner); got != admin.addr {
		t.Fatalf("KMS owner %s, want %s", got, admin.addr)
	}
	if got := call(t, c, kmsAddr, kms.PackAppImplementation(), kms.UnpackAppImplementation); got != appImpl {
		t.Fatalf("appImplementation %s, want %s", got, appImpl)
	}

	var (
		composeA, composeB = h("compose-a"), h("compose-b")
		deviceA, deviceB   = h("device-a"), h("device-b")
		osImage            = h("os-image-1")
	)

	t.Run("implementations cannot be initialized directly", func(t *testing.T) {
		for _, tc := range []struct {
			to   common.Address
			data []byte
		}{
			{kmsImpl, kms.PackInitialize(admin.addr, appImpl)},
			{appImpl, app.PackInitialize0(admin.addr, false, false, true, [32]byte{}, [32]byte{})},
		} {
			raw := c.revert(t, admin, tc.to, tc.data, "initialize implementation")
			if !bytes.Equal(raw, invalidInitialization) {
				t.Errorf("revert %x, want InvalidInitialization()", raw)
			}
		}
	})

	// 6-argument factory call with a device and a compose hash: same 10 logs, in the same order, as upstream.
	r = c.send(t, user, kmsAddr, kms.PackDeployAndRegisterApp0(user.addr, false, false, false, deviceA, composeA), "factory (6 args)")
	t.Logf("gas (simulated): deployAndRegisterApp 6 args, device + compose hash: %d", r.GasUsed)
	app1 := factoryAppID(t, r, kmsAddr, user.addr)
	if got, want := topicsOf(t, r.Logs), []string{"Upgraded", "DeviceAdded", "PolicyChanged", "ComposeHashAdded", "PolicyChanged",
		"OwnershipTransferred", "Initialized", "AppRegistered", "PolicyChanged", "AppDeployedViaFactory"}; !equalStrings(got, want) {
		t.Errorf("factory logs %v, want %v", got, want)
	}
	if ev, err := app.UnpackPolicyChangedEvent(r.Logs[2]); err != nil || ev.Actor != kmsAddr || ev.Policy != h("device") || ev.Value != deviceA {
		t.Errorf("app PolicyChanged during factory init = %+v (%v), want actor KMS, policy device", ev, err)
	}

	// 5-argument factory call, allow any device, nothing else.
	r = c.send(t, user, kmsAddr, kms.PackDeployAndRegisterApp(user.addr, false, true, [32]byte{}, [32]byte{}), "factory (5 args)")
	t.Logf("gas (simulated): deployAndRegisterApp 5 args, allowAnyDevice, no device/hash: %d", r.GasUsed)
	app2 := factoryAppID(t, r, kmsAddr, user.addr)
	if got, want := topicsOf(t, r.Logs), []string{"Upgraded", "OwnershipTransferred", "Initialized", "AppRegistered", "PolicyChanged", "AppDeployedViaFactory"}; !equalStrings(got, want) {
		t.Errorf("factory logs %v, want %v", got, want)
	}

	t.Run("factory apps are initialized proxies owned by initialOwner", func(t *testing.T) {
		for _, tc := range []struct {
			app                      common.Address
			allowAny, requireTcb     bool
			composeAllowed, devAllow bool
		}{
			{app1, false, false, true, true},
			{app2, true, false, false, false},
		} {
			if code, _ := c.client.CodeAt(c.ctx, tc.app, nil); len(code) == 0 {
				t.Fatalf("no code at app id %s", tc.app)
			}
			impl, _ := c.client.StorageAt(c.ctx, tc.app, common.HexToHash("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc"), nil)
			if common.BytesToAddress(impl) != appImpl {
				t.Errorf("%s: ERC1967 implementation %x, want %s", tc.app, impl, appImpl)
			}
			if got := call(t, c, tc.app, app.PackOwner(), app.UnpackOwner); got != user.addr {
				t.Errorf("%s: owner %s, want %s", tc.app, got, user.addr)
			}
			if got := call(t, c, tc.app, app.PackAllowAnyDevice(), app.UnpackAllowAnyDevice); got != tc.allowAny {
				t.Errorf("%s: allowAnyDevice %v", tc.app, got)
			}
			if got := call(t, c, tc.app, app.PackRequireTcbUpToDate(), app.UnpackRequireTcbUpToDate); got != tc.requireTcb {
				t.Errorf("%s: requireTcbUpToDate %v", tc.app, got)
			}
			if got := call(t, c, tc.app, app.PackAllowedComposeHashes(composeA), app.UnpackAllowedComposeHashes); got != tc.composeAllowed {
				t.Errorf("%s: allowedComposeHashes %v", tc.app, got)
			}
			if got := call(t, c, tc.app, app.PackAllowedDeviceIds(deviceA), app.UnpackAllowedDeviceIds); got != tc.devAllow {
				t.Errorf("%s: allowedDeviceIds %v", tc.app, got)
			}
			if got := call(t, c, tc.app, app.PackVersion(), app.UnpackVersion); got.Cmp(big.NewInt(2)) != 0 {
				t.Errorf("%s: version %s, want 2", tc.app, got)
			}
			if !call(t, c, kmsAddr, kms.PackRegisteredApps(tc.app), kms.UnpackRegisteredApps) {
				t.Errorf("%s: not registered", tc.app)
			}
		}
	})

	t.Run("factory and registration reverts", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data []byte
			want string
		}{
			{"zero owner, 5 args", kms.PackDeployAndRegisterApp(common.Address{}, false, true, [32]byte{}, [32]byte{}), "Invalid owner address"},
			{"zero owner, 6 args", kms.PackDeployAndRegisterApp0(common.Address{}, false, false, true, [32]byte{}, [32]byte{}), "Invalid owner address"},
			{"zero app id", kms.PackRegisterApp(common.Address{}), "Invalid app ID"},
			{"zero implementation", kms.PackSetAppImplementation(common.Address{}), "Invalid implementation address"},
		} {
			if got := revertString(t, c.revert(t, admin, kmsAddr, tc.data, tc.name)); got != tc.want {
				t.Errorf("%s: reverted %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("owner-only calls revert with OwnableUnauthorizedAccount", func(t *testing.T) {
		for _, tc := range []struct {
			to   common.Address
			data []byte
		}{
			{kmsAddr, kms.PackAddOsImageHash(osImage)},
			{kmsAddr, kms.PackSetKmsInfo(bindings.DstackKmsKmsInfo{})},
			{kmsAddr, kms.PackSetAppImplementation(appImpl)},
			{kmsAddr, kms.PackUpgradeToAndCall(kmsImpl, nil)},
			{app1, app.PackAddComposeHash(composeB)},
			{app1, app.PackAddDevice(deviceB)},
			{app1, app.PackSetAllowAnyDevice(true)},
			{app1, app.PackDisableUpgrades()},
		} {
			unauthorized(t, c.revert(t, stranger, tc.to, tc.data, "non-owner call"), stranger.addr)
		}
	})

	bootInfo := func(appID common.Address, compose, device [32]byte, tcb string) bindings.IAppAuthAppBootInfo {
		return bindings.IAppAuthAppBootInfo{AppId: appID, ComposeHash: compose, DeviceId: device, OsImageHash: osImage, TcbStatus: tcb, AdvisoryIds: []string{}}
	}
	allowed := func(t *testing.T, bi bindings.IAppAuthAppBootInfo) bindings.IsAppAllowedOutput {
		return call(t, c, kmsAddr, kms.PackIsAppAllowed(bi), kms.UnpackIsAppAllowed)
	}

	t.Run("isAppAllowed reasons", func(t *testing.T) {
		if got := allowed(t, bootInfo(app1, composeA, deviceA, "UpToDate")); got.IsAllowed || got.Reason != "OS image is not allowed" {
			t.Fatalf("before addOsImageHash: %+v", got)
		}
		c.send(t, admin, kmsAddr, kms.PackAddOsImageHash(osImage), "addOsImageHash")
		// Registration is permissionless and does not check for code.
		c.send(t, stranger, kmsAddr, kms.PackRegisterApp(stranger.addr), "registerApp(EOA)")

		for _, tc := range []struct {
			name   string
			bi     bindings.IAppAuthAppBootInfo
			reason string // empty: allowed
		}{
			{"unregistered", bootInfo(common.HexToAddress("0x1234"), composeA, deviceA, "UpToDate"), "App not registered"},
			{"registered without code", bootInfo(stranger.addr, composeA, deviceA, "UpToDate"), "App not deployed or invalid address"},
			{"compose hash not allowed", bootInfo(app1, composeB, deviceA, "UpToDate"), "Compose hash not allowed"},
			{"device not allowed", bootInfo(app1, composeA, deviceB, "UpToDate"), "Device not allowed"},
			{"allowed", bootInfo(app1, composeA, deviceA, "UpToDate"), ""},
			{"TCB not required", bootInfo(app1, composeA, deviceA, "OutOfDate"), ""},
			{"any device", bootInfo(app2, composeA, deviceB, "UpToDate"), "Compose hash not allowed"},
		} {
			got := allowed(t, tc.bi)
			if got.IsAllowed != (tc.reason == "") || got.Reason != tc.reason {
				t.Errorf("%s: (%v, %q), want reason %q", tc.name, got.IsAllowed, got.Reason, tc.reason)
			}
		}

		c.send(t, user, app1, app.PackSetRequireTcbUpToDate(true), "setRequireTcbUpToDate")
		if got := allowed(t, bootInfo(app1, composeA, deviceA, "OutOfDate")); got.IsAllowed || got.Reason != "TCB status is not up to date" {
			t.Errorf("TCB required, OutOfDate: %+v", got)
		}
		c.send(t, user, app2, app.PackAddComposeHash(composeA), "addComposeHash")
		if got := allowed(t, bootInfo(app2, composeA, deviceB, "UpToDate")); !got.IsAllowed {
			t.Errorf("allowAnyDevice app with allowed compose hash: %+v", got)
		}
	})

	t.Run("two-step deploy: own proxy, then registerApp", func(t *testing.T) {
		own, r := c.deploy(t, user, bindings.ERC1967ProxyMetaData.Bin,
			proxy.PackConstructor(appImpl, app.PackInitialize(user.addr, false, true, [32]byte{}, composeA)), "own app proxy")
		t.Logf("gas (simulated): own ERC1967Proxy + 5-arg initialize %d", r.GasUsed)
		if got := allowed(t, bootInfo(own, composeA, deviceB, "UpToDate")); got.Reason != "App not registered" {
			t.Errorf("before registerApp: %+v", got)
		}
		r = c.send(t, user, kmsAddr, kms.PackRegisterApp(own), "registerApp")
		t.Logf("gas (simulated): registerApp %d", r.GasUsed)
		ev, err := kms.UnpackAppRegisteredEvent(r.Logs[0])
		if err != nil || ev.AppId != own {
			t.Errorf("AppRegistered = %+v (%v), want %s", ev, err, own)
		}
		if got := allowed(t, bootInfo(own, composeA, deviceB, "UpToDate")); !got.IsAllowed {
			t.Errorf("after registerApp: %+v", got)
		}
		raw := c.revert(t, user, own, app.PackInitialize0(user.addr, false, false, true, [32]byte{}, [32]byte{}), "second initialize")
		if !bytes.Equal(raw, invalidInitialization) {
			t.Errorf("second initialize reverted %x, want InvalidInitialization()", raw)
		}
	})

	t.Run("Ownable2Step transfer and accept", func(t *testing.T) {
		r := c.send(t, user, app2, app.PackTransferOwnership(stranger.addr), "transferOwnership")
		if ev, err := app.UnpackOwnershipTransferStartedEvent(r.Logs[0]); err != nil || ev.PreviousOwner != user.addr || ev.NewOwner != stranger.addr {
			t.Errorf("OwnershipTransferStarted = %+v (%v)", ev, err)
		}
		if got := call(t, c, app2, app.PackOwner(), app.UnpackOwner); got != user.addr {
			t.Errorf("owner changed before accept: %s", got)
		}
		if got := call(t, c, app2, app.PackPendingOwner(), app.UnpackPendingOwner); got != stranger.addr {
			t.Errorf("pendingOwner %s, want %s", got, stranger.addr)
		}
		unauthorized(t, c.revert(t, admin, app2, app.PackAcceptOwnership(), "accept by someone else"), admin.addr)
		r = c.send(t, stranger, app2, app.PackAcceptOwnership(), "acceptOwnership")
		if ev, err := app.UnpackOwnershipTransferredEvent(r.Logs[0]); err != nil || ev.NewOwner != stranger.addr {
			t.Errorf("OwnershipTransferred = %+v (%v)", ev, err)
		}
		if got := call(t, c, app2, app.PackOwner(), app.UnpackOwner); got != stranger.addr {
			t.Errorf("owner %s, want %s", got, stranger.addr)
		}
		unauthorized(t, c.revert(t, user, app2, app.PackAddDevice(deviceB), "old owner"), user.addr)
	})

	t.Run("disableUpgrades blocks upgradeToAndCall for good", func(t *testing.T) {
		owner := stranger // after the transfer above
		appImpl2, _ := c.deploy(t, admin, bindings.DstackAppMetaData.Bin, nil, "second DstackApp implementation")
		c.send(t, owner, app2, app.PackUpgradeToAndCall(appImpl2, nil), "upgrade before disabling")
		r := c.send(t, owner, app2, app.PackDisableUpgrades(), "disableUpgrades")
		if got, want := topicsOf(t, r.Logs), []string{"UpgradesDisabled", "PolicyChanged"}; !equalStrings(got, want) {
			t.Errorf("disableUpgrades logs %v, want %v", got, want)
		}
		if got := revertString(t, c.revert(t, owner, app2, app.PackUpgradeToAndCall(appImpl, nil), "upgrade after disabling")); got != "Upgrades are permanently disabled" {
			t.Errorf("upgrade after disableUpgrades reverted %q", got)
		}
	})

	t.Run("supportsInterface", func(t *testing.T) {
		for _, tc := range []struct {
			to   common.Address
			id   string
			want bool
		}{
			{kmsAddr, "1e079198", true}, {kmsAddr, "01ffc9a7", true}, {kmsAddr, "8fd37527", false},
			{app1, "1e079198", true}, {app1, "8fd37527", true}, {app1, "01ffc9a7", true}, {app1, "ffffffff", false},
		} {
			var id [4]byte
			copy(id[:], common.FromHex(tc.id))
			if got := call(t, c, tc.to, kms.PackSupportsInterface(id), kms.UnpackSupportsInterface); got != tc.want {
				t.Errorf("%s supportsInterface(0x%s) = %v", tc.to, tc.id, got)
			}
		}
	})

	// Upgrading existing proxies to these implementations needs the documented slots.
	t.Run("storage layout", func(t *testing.T) {
		c.send(t, admin, kmsAddr, kms.PackSetKmsInfo(bindings.DstackKmsKmsInfo{K256Pubkey: []byte{0xaa}, CaPubkey: []byte{0xbb}, Quote: []byte{0xcc}, Eventlog: []byte{0xdd}}), "setKmsInfo")
		c.send(t, admin, kmsAddr, kms.PackSetGatewayAppId("gw"), "setGatewayAppId")
		c.send(t, admin, kmsAddr, kms.PackAddKmsAggregatedMr(h("mr")), "addKmsAggregatedMr")
		c.send(t, admin, kmsAddr, kms.PackAddKmsDevice(h("kms-dev")), "addKmsDevice")
		short := func(b ...byte) common.Hash { // a short bytes/string: data left-aligned, 2*len in the last byte
			var w common.Hash
			copy(w[:], b)
			w[31] = byte(2 * len(b))
			return w
		}
		one := common.BigToHash(big.NewInt(1))
		for _, tc := range []struct {
			name string
			at   common.Address
			slot common.Hash
			want common.Hash
		}{
			{"kmsInfo.k256Pubkey", kmsAddr, slot(0), short(0xaa)},
			{"kmsInfo.caPubkey", kmsAddr, slot(1), short(0xbb)},
			{"kmsInfo.quote", kmsAddr, slot(2), short(0xcc)},
			{"kmsInfo.eventlog", kmsAddr, slot(3), short(0xdd)},
			{"gatewayAppId", kmsAddr, slot(4), short('g', 'w')},
			{"registeredApps", kmsAddr, mapSlot(common.LeftPadBytes(app1[:], 32), 5), one},
			{"kmsAllowedAggregatedMrs", kmsAddr, mapSlot(hb(h("mr")), 6), one},
			{"kmsAllowedDeviceIds", kmsAddr, mapSlot(hb(h("kms-dev")), 7), one},
			{"allowedOsImages", kmsAddr, mapSlot(hb(osImage), 8), one},
			{"appImplementation", kmsAddr, slot(9), common.BytesToHash(appImpl[:])},
			{"allowedComposeHashes", app1, mapSlot(hb(composeA), 0), one},
			{"_upgradesDisabled + allowAnyDevice", app2, slot(1), common.BigToHash(big.NewInt(0x0101))},
			{"allowAnyDevice only", app1, slot(1), common.Hash{}},
			{"allowedDeviceIds", app1, mapSlot(hb(deviceA), 2), one},
			{"requireTcbUpToDate", app1, slot(3), one},
		} {
			got, err := c.client.StorageAt(c.ctx, tc.at, tc.slot, nil)
			if err != nil {
				t.Fatal(err)
			}
			if common.BytesToHash(got) != tc.want {
				t.Errorf("%s: slot %s holds %x, want %s", tc.name, tc.slot, got, tc.want)
			}
		}
	})
}

func slot(n int64) common.Hash { return common.BigToHash(big.NewInt(n)) }

// mapSlot is the storage slot of mapping[key] for a mapping declared at slot n.
func mapSlot(key []byte, n int64) common.Hash {
	return crypto.Keccak256Hash(key, slot(n).Bytes())
}

func hb(b [32]byte) []byte { return b[:] }

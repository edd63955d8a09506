package deployer_test

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
)

var (
	kmsABI          = bindings.NewDstackKms().GetABI()
	topicDeployed   = kmsABI.Events["AppDeployedViaFactory"].ID
	topicRegistered = kmsABI.Events["AppRegistered"].ID
)

func deployedLog(from, app, sender common.Address) *types.Log {
	return &types.Log{Address: from, Topics: []common.Hash{topicDeployed, common.BytesToHash(app.Bytes()), common.BytesToHash(sender.Bytes())}}
}

func registeredLog(from, app common.Address) *types.Log {
	return &types.Log{Address: from, Topics: []common.Hash{topicRegistered}, Data: common.LeftPadBytes(app.Bytes(), 32)}
}

func TestParseAppDeployed(t *testing.T) {
	kms, app, sender := common.Address{0xc0}, common.Address{0xa1}, common.Address{0x5e}
	receipt := func(logs ...*types.Log) *types.Receipt {
		return &types.Receipt{Status: 1, TxHash: common.Hash{1}, BlockNumber: big.NewInt(7), GasUsed: 123, Logs: logs}
	}
	noise := &types.Log{Address: app, Topics: []common.Hash{{0xff}}}
	// Position does not matter: the event is found by address and topic0,
	// with unrelated logs (the app's own, another KMS's copy) around it.
	good := []*types.Receipt{
		receipt(noise, registeredLog(kms, app), deployedLog(kms, app, sender)),
		receipt(deployedLog(kms, app, sender), noise, registeredLog(kms, app)),
		receipt(deployedLog(common.Address{0x99}, common.Address{0x98}, sender), registeredLog(kms, app), deployedLog(kms, app, sender)),
	}
	for i, r := range good {
		d, err := deployer.ParseAppDeployed(r, kms)
		if err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		if d.AppID != app || d.ContractAddress != app || d.DeployerAddress != sender || d.KMS != kms || d.BlockNumber != 7 || d.GasUsed != 123 {
			t.Fatalf("receipt %d: %+v", i, d)
		}
	}
	bad := []struct {
		r   *types.Receipt
		msg string
	}{
		{receipt(noise), "no AppDeployedViaFactory log from"},
		{receipt(deployedLog(common.Address{0x99}, app, sender), registeredLog(kms, app)), "no AppDeployedViaFactory log from"},
		{receipt(deployedLog(kms, app, sender)), "no AppRegistered"},
		{receipt(deployedLog(kms, app, sender), registeredLog(kms, common.Address{0x42})), "no AppRegistered"},
		{receipt(deployedLog(kms, app, sender), registeredLog(kms, app), deployedLog(kms, common.Address{0x43}, sender)), "deployed 2 apps"},
	}
	for i, tc := range bad {
		if _, err := deployer.ParseAppDeployed(tc.r, kms); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("bad receipt %d: %v, want %q", i, err, tc.msg)
		}
	}
	failed := receipt(deployedLog(kms, app, sender), registeredLog(kms, app))
	failed.Status = 0
	var re *deployer.RevertError
	if _, err := deployer.ParseAppDeployed(failed, kms); !errors.As(err, &re) {
		t.Fatalf("status 0: %v, want *RevertError", err)
	}
}

func TestDecodeRevert(t *testing.T) {
	str, _ := abi.NewType("string", "", nil)
	u256, _ := abi.NewType("uint256", "", nil)
	errorString := func(s string) []byte {
		b, _ := abi.Arguments{{Type: str}}.Pack(s)
		return append([]byte{0x08, 0xc3, 0x79, 0xa0}, b...)
	}
	panicCode := func(c int64) []byte {
		b, _ := abi.Arguments{{Type: u256}}.Pack(big.NewInt(c))
		return append([]byte{0x4e, 0x48, 0x7b, 0x71}, b...)
	}
	account := common.HexToAddress("0x70997970C51812dc3A010C7d01b50e20d17dc79C")
	e := bindings.NewDstackApp().GetABI().Errors["OwnableUnauthorizedAccount"]
	args, _ := e.Inputs.Pack(account)
	custom := append(append([]byte{}, e.ID[:4]...), args...)
	cases := []struct {
		data []byte
		want string
	}{
		{nil, "execution reverted without a reason"},
		{[]byte{1, 2}, "malformed data 0x0102"},
		{errorString("Invalid owner address"), "Invalid owner address"},
		{panicCode(0x11), "panic: arithmetic underflow or overflow"},
		{custom, "OwnableUnauthorizedAccount(" + account.Hex() + ")"},
		{[]byte{0xde, 0xad, 0xbe, 0xef, 1}, "custom error 0xdeadbeef"},
		{custom[:10], "OwnableUnauthorizedAccount (undecodable arguments"},
	}
	for _, tc := range cases {
		if got := deployer.DecodeRevert(tc.data); !strings.Contains(got, tc.want) {
			t.Fatalf("DecodeRevert(%x) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

package deployer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

func TestDecodeCalls(t *testing.T) {
	hash := [32]byte{0xab, 0x01}
	device := [32]byte{0x22}
	owner := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	kms := common.HexToAddress("0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C")
	_, deploy, err := deployer.DeployAppCalldata(deployer.DeployAppConfig{KMS: kms, Owner: owner, ComposeHash: hash, DeviceID: device})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		decode func([]byte) (*deployer.DecodedCall, error)
		data   []byte
		sig    string
		args   string // name=value, comma-separated
	}{
		{"addComposeHash", deployer.DecodeAppCall, deployer.AddComposeHashCall(hash).Data, "addComposeHash(bytes32)",
			"composeHash=0xab01000000000000000000000000000000000000000000000000000000000000"},
		{"addDevice", deployer.DecodeAppCall, deployer.AddDeviceCall(device).Data, "addDevice(bytes32)",
			"deviceId=0x2200000000000000000000000000000000000000000000000000000000000000"},
		{"setAllowAnyDevice", deployer.DecodeAppCall, deployer.SetAllowAnyDeviceCall(true).Data, "setAllowAnyDevice(bool)", "_allowAnyDevice=true"},
		{"transferOwnership", deployer.DecodeAppCall, deployer.TransferOwnershipCall(owner).Data, "transferOwnership(address)", "newOwner=0x000000000000000000000000000000000000bEEF"},
		{"factory", deployer.DecodeKMSCall, deploy, "deployAndRegisterApp(address,bool,bool,bytes32,bytes32)",
			"initialOwner=0x000000000000000000000000000000000000bEEF,disableUpgrades=false,allowAnyDevice=false," +
				"initialDeviceId=0x2200000000000000000000000000000000000000000000000000000000000000," +
				"initialComposeHash=0xab01000000000000000000000000000000000000000000000000000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.decode(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			var args []string
			for _, a := range got.Args {
				args = append(args, a.Name+"="+a.Value)
			}
			if got.Signature != tt.sig || strings.Join(args, ",") != tt.args {
				t.Fatalf("decoded %s(%s), want %s(%s)", got.Signature, strings.Join(args, ","), tt.sig, tt.args)
			}
		})
	}
}

func TestDecodeCallRefusesWhatIsNotACall(t *testing.T) {
	add := deployer.AddComposeHashCall([32]byte{1}).Data
	_, factory, err := deployer.DeployAppCalldata(deployer.DeployAppConfig{KMS: common.Address{1}, Owner: common.Address{2}, ComposeHash: [32]byte{3}})
	if err != nil || len(factory) < 4 {
		t.Fatalf("factory calldata: %v", err)
	}
	for name, data := range map[string][]byte{
		"empty":           nil,
		"short":           add[:3],
		"unknown":         {0xde, 0xad, 0xbe, 0xef},
		"truncated":       add[:20],
		"trailing bytes":  append(append([]byte{}, add...), 0x01),
		"factory on app":  factory, // a DstackKms call is not a DstackApp call
		"extra full word": append(append([]byte{}, add...), make([]byte, 32)...),
	} {
		if got, err := deployer.DecodeAppCall(data); !errors.Is(err, deployer.ErrUnknownCall) {
			t.Errorf("%s: decoded %+v (%v), want ErrUnknownCall", name, got, err)
		}
	}
}

package contracts_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

// The toolkit talks to Phala's live KMS with our bindings, so everything it
// uses must have the same selector / topic and the same types in the reference
// ABI (compiled from dstack's own sources) as in ours. The expected values are
// the literals given in shared/reference/appauth-contracts.md.

type abiKind int

const (
	function abiKind = iota
	event
	customError
)

func (k abiKind) String() string {
	return [...]string{"function", "event", "error"}[k]
}

// used is one ABI item the toolkit relies on.
type used struct {
	kind abiKind
	sig  string // canonical signature
	id   string // selector (4 bytes) or topic0 (32 bytes), hex from the reference doc
}

const bootInfoTuple = "(address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[])"

var kmsUsed = []used{
	{function, "deployAndRegisterApp(address,bool,bool,bool,bytes32,bytes32)", "9cb9c31f"},
	{function, "deployAndRegisterApp(address,bool,bool,bytes32,bytes32)", "8618169d"},
	{function, "registerApp(address)", "17a1d80f"},
	{function, "kmsInfo()", "09177063"},
	{function, "setKmsInfo((bytes,bytes,bytes,bytes))", "7d025352"},
	{function, "addOsImageHash(bytes32)", "06a3ae96"},
	{function, "allowedOsImages(bytes32)", "9a4e1d18"},
	{function, "registeredApps(address)", "a6c4cce9"},
	{function, "appImplementation()", "25a992da"},
	{function, "isAppAllowed(" + bootInfoTuple + ")", "1e079198"},
	{function, "owner()", "8da5cb5b"},
	{function, "pendingOwner()", "e30c3978"},
	{function, "transferOwnership(address)", "f2fde38b"},
	{function, "acceptOwnership()", "79ba5097"},
	{function, "initialize(address,address)", "485cc955"},
	{event, "AppDeployedViaFactory(address,address)", "fd86d7f6962eba3b7a3bf9129c06c0b2f885e1c61ef2c9f0dbb856be0deefdee"},
	{event, "AppRegistered(address)", "0d540ad8f39e07d19909687352b9fa017405d93c91a6760981fbae9cf28bfef7"},
	{event, "KmsInfoSet(bytes)", "77cdad119a452bbd96c45635758fc4af8a6bde3deaccf3fada634ddf9a162706"},
	{event, "OsImageHashAdded(bytes32)", "4911843506849c85a5ca6e6e2c01eed2d3ab86baba619517a2aad9d5ab2aeff2"},
	{event, "OwnershipTransferStarted(address,address)", "38d16b8cac22d99fc7c124b9cd0de2d3fa1faef420bfe791d8c362d765e22700"},
	{event, "OwnershipTransferred(address,address)", "8be0079c531659141344cd1fd0a4f28419497f9722a3daafe3b4186f6b6457e0"},
	{event, "PolicyChanged(address,bytes32,bytes32,bool)", "341d3bc64e32172fc5bcf27b0f7f69dc5adc19af64b7aa1dee361e5883c32375"},
	{customError, "OwnableUnauthorizedAccount(address)", "118cdaa7"},
}

var appUsed = []used{
	{function, "addComposeHash(bytes32)", "dfc77223"},
	{function, "removeComposeHash(bytes32)", "67b3f22c"},
	{function, "addDevice(bytes32)", "2a819728"},
	{function, "removeDevice(bytes32)", "1d266200"},
	{function, "setAllowAnyDevice(bool)", "7c4beeb8"},
	{function, "setRequireTcbUpToDate(bool)", "6e4c7422"},
	{function, "disableUpgrades()", "ec669036"},
	{function, "allowedComposeHashes(bytes32)", "2f6622e5"},
	{function, "allowedDeviceIds(bytes32)", "bf8b211b"},
	{function, "allowAnyDevice()", "3440a16a"},
	{function, "requireTcbUpToDate()", "0aa58c83"},
	{function, "owner()", "8da5cb5b"},
	{function, "pendingOwner()", "e30c3978"},
	{function, "transferOwnership(address)", "f2fde38b"},
	{function, "acceptOwnership()", "79ba5097"},
	{function, "initialize(address,bool,bool,bytes32,bytes32)", "187515ca"},
	{function, "initialize(address,bool,bool,bool,bytes32,bytes32)", "9ed28193"},
	{function, "isAppAllowed(" + bootInfoTuple + ")", "1e079198"},
	{function, "version()", "54fd4d50"},
	{event, "ComposeHashAdded(bytes32)", "fecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af"},
	{event, "ComposeHashRemoved(bytes32)", "755b79bd4b0eeab344d032284a99003b2ddc018b646752ac72d681593a6e8947"},
	{event, "DeviceAdded(bytes32)", "67fc71ab96fe3fa3c6f78e9a00e635d591b7333ce611c0380bc577aac702243b"},
	{event, "DeviceRemoved(bytes32)", "e0862975ac517b0478d308012afabc4bc37c23874a18144d7f2dfb852ff95c2c"},
	{event, "AllowAnyDeviceSet(bool)", "bb2cdb6c7b362202d40373f87bc4788301cca658f91711ac1662e1ad2cba4a20"},
	{event, "RequireTcbUpToDateSet(bool)", "afae60561b2481a349b45b3a47357f70eef6ae67e5b6e1749d74de7f19a25aa1"},
	{event, "UpgradesDisabled()", "0e5daa943fcd7e7182d0e893d180695c2ea9f6f1b4a1c5432faf14cf17b774e8"},
	{event, "OwnershipTransferStarted(address,address)", "38d16b8cac22d99fc7c124b9cd0de2d3fa1faef420bfe791d8c362d765e22700"},
	{event, "OwnershipTransferred(address,address)", "8be0079c531659141344cd1fd0a4f28419497f9722a3daafe3b4186f6b6457e0"},
	{event, "PolicyChanged(address,bytes32,bytes32,bool)", "341d3bc64e32172fc5bcf27b0f7f69dc5adc19af64b7aa1dee361e5883c32375"},
	{customError, "OwnableUnauthorizedAccount(address)", "118cdaa7"},
}

// item is the comparable shape of one ABI entry: its id and everything that
// decides how calldata, return data and logs are encoded.
type item struct {
	id    []byte
	shape string
}

// index flattens an ABI into signature -> item, per kind.
func index(a *abi.ABI) map[abiKind]map[string]item {
	args := func(as abi.Arguments) string {
		parts := make([]string, len(as))
		for i, a := range as {
			parts[i] = a.Type.String()
			if a.Indexed {
				parts[i] += " indexed"
			}
		}
		return "(" + strings.Join(parts, ",") + ")"
	}
	out := map[abiKind]map[string]item{function: {}, event: {}, customError: {}}
	for _, m := range a.Methods {
		out[function][m.Sig] = item{m.ID, m.StateMutability + " " + args(m.Inputs) + " returns " + args(m.Outputs)}
	}
	for _, e := range a.Events {
		out[event][e.Sig] = item{e.ID.Bytes(), fmt.Sprintf("anonymous=%v %s", e.Anonymous, args(e.Inputs))}
	}
	for _, e := range a.Errors {
		out[customError][e.Sig] = item{e.ID.Bytes()[:4], args(e.Inputs)}
	}
	return out
}

func loadReference(t *testing.T, name string) *abi.ABI {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "abi", name))
	if err != nil {
		t.Fatalf("reference ABI: %v", err)
	}
	defer f.Close()
	a, err := abi.JSON(f)
	if err != nil {
		t.Fatalf("parse reference ABI %s: %v", name, err)
	}
	return &a
}

type pair struct {
	name        string
	reference   *abi.ABI
	ours        *abi.ABI
	toolkitUses []used
}

func pairs(t *testing.T) []pair {
	t.Helper()
	kms, err := bindings.DstackKmsMetaData.ParseABI()
	if err != nil {
		t.Fatal(err)
	}
	app, err := bindings.DstackAppMetaData.ParseABI()
	if err != nil {
		t.Fatal(err)
	}
	return []pair{
		{"DstackKms", loadReference(t, "DstackKms.abi.json"), kms, kmsUsed},
		{"DstackApp", loadReference(t, "DstackApp.abi.json"), app, appUsed},
	}
}

// TestToolkitABICompatible checks every function, event and error the toolkit
// uses against the reference ABI and the selector/topic literal from the doc.
func TestToolkitABICompatible(t *testing.T) {
	for _, p := range pairs(t) {
		ref, ours := index(p.reference), index(p.ours)
		for _, u := range p.toolkitUses {
			t.Run(p.name+"/"+u.kind.String()+"/"+u.sig, func(t *testing.T) {
				want, err := hex.DecodeString(u.id)
				if err != nil {
					t.Fatal(err)
				}
				r, inRef := ref[u.kind][u.sig]
				o, inOurs := ours[u.kind][u.sig]
				if !inRef {
					t.Fatalf("not in the reference ABI")
				}
				if !inOurs {
					t.Fatalf("not in our ABI")
				}
				if !bytes.Equal(r.id, want) {
					t.Errorf("reference id %x, doc says %s", r.id, u.id)
				}
				if !bytes.Equal(o.id, want) {
					t.Errorf("our id %x, want %s", o.id, u.id)
				}
				if o.shape != r.shape {
					t.Errorf("shape differs:\n ours      %s\n reference %s", o.shape, r.shape)
				}
			})
		}
	}
}

// TestReferenceABIFullyImplemented goes beyond the toolkit's list: every
// function, event and error of the reference must exist in ours with the same
// id and shape. Items only in ours are logged.
func TestReferenceABIFullyImplemented(t *testing.T) {
	for _, p := range pairs(t) {
		ref, ours := index(p.reference), index(p.ours)
		for _, kind := range []abiKind{function, event, customError} {
			var missing, differ, extra []string
			for sig, r := range ref[kind] {
				o, ok := ours[kind][sig]
				switch {
				case !ok:
					missing = append(missing, sig)
				case !bytes.Equal(o.id, r.id) || o.shape != r.shape:
					differ = append(differ, fmt.Sprintf("%s: ours %x %s, reference %x %s", sig, o.id, o.shape, r.id, r.shape))
				}
			}
			for sig := range ours[kind] {
				if _, ok := ref[kind][sig]; !ok {
					extra = append(extra, sig)
				}
			}
			sort.Strings(missing)
			sort.Strings(differ)
			sort.Strings(extra)
			if len(missing) > 0 {
				t.Errorf("%s: reference %ss missing from ours: %s", p.name, kind, strings.Join(missing, ", "))
			}
			if len(differ) > 0 {
				t.Errorf("%s: %ss that differ:\n%s", p.name, kind, strings.Join(differ, "\n"))
			}
			if len(extra) > 0 {
				t.Logf("%s: %ss only in ours: %s", p.name, kind, strings.Join(extra, ", "))
			}
			t.Logf("%s: %d reference %ss checked", p.name, len(ref[kind]), kind)
		}
	}
}

// TestOverloadNames pins which generated Go method packs which overload:
// abigen names overloads by ABI order (Foo, Foo0), and callers depend on it.
func TestOverloadNames(t *testing.T) {
	kms, app := bindings.NewDstackKms(), bindings.NewDstackApp()
	var a common.Address
	a[19] = 1
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"DstackKms.PackDeployAndRegisterApp is the 5-argument overload", kms.PackDeployAndRegisterApp(a, false, true, [32]byte{}, [32]byte{}), "8618169d"},
		{"DstackKms.PackDeployAndRegisterApp0 is the 6-argument overload", kms.PackDeployAndRegisterApp0(a, false, false, true, [32]byte{}, [32]byte{}), "9cb9c31f"},
		{"DstackApp.PackInitialize is the 5-argument initializer", app.PackInitialize(a, false, true, [32]byte{}, [32]byte{}), "187515ca"},
		{"DstackApp.PackInitialize0 is the 6-argument initializer", app.PackInitialize0(a, false, false, true, [32]byte{}, [32]byte{}), "9ed28193"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.data[:4]); got != tt.want {
			t.Errorf("%s: selector %s, want %s", tt.name, got, tt.want)
		}
	}
}

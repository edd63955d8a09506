package testnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/devchain"
)

// govVector reads one of testdata/governance's files.
func govVector(t *testing.T, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "governance", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// TestSafeOnAnvil: the npm package's init code lands every Safe v1.4.1
// contract at its canonical address with the canonical runtime code, on
// chain 31337 and on an anvil with Base's id, and the 2-of-3 Safe of dev
// accounts 1-3 gets the address the vectors predicted on both.
func TestSafeOnAnvil(t *testing.T) {
	var d struct {
		Safe struct {
			Predicted common.Address   `json:"predictedAddress"`
			Owners    []common.Address `json:"owners"`
			L1        struct {
				Predicted common.Address `json:"predicted"`
			} `json:"sameWithL1SingletonSaltNonce1"`
		} `json:"safe2of3"`
	}
	govVector(t, "safe-deploy-anvil.json", &d)
	for _, id := range []uint64{0, 8453} {
		l := startLocalnet(t, testnet.LocalnetConfig{ChainID: id, SafeOwners: 3, SafeThreshold: 2})
		ctx := context.Background()
		eth, _ := deployer.Dial(ctx, l.RPCURL)
		for _, c := range safe.Contracts() {
			code, err := eth.Eth().CodeAt(ctx, c.Address, nil)
			if err != nil {
				t.Fatal(err)
			}
			if crypto.Keccak256Hash(code) != c.CodeHash {
				t.Errorf("chain %d: %s at %s: code hash %s, want %s", l.ChainID, c.Name, c.Address, crypto.Keccak256Hash(code), c.CodeHash)
			}
		}
		if l.Safe != d.Safe.Predicted {
			t.Errorf("chain %d: Safe at %s, the vector predicted %s", l.ChainID, l.Safe, d.Safe.Predicted)
		}
		st, err := safe.ReadState(ctx, eth.Eth(), l.Safe)
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != "1.4.1" || st.Threshold != 2 || len(st.Owners) != 3 || st.Nonce != 0 || st.Singleton != safe.SafeL2.Address {
			t.Errorf("chain %d: Safe state %+v", l.ChainID, st)
		}
		for i, o := range d.Safe.Owners {
			if l.SafeOwners[i].Address != o || !st.IsOwner(o) {
				t.Errorf("owner %d: %s, the vector says %s", i, l.SafeOwners[i].Address, o)
			}
		}
		info, err := eth.DescribeOwner(ctx, l.Safe)
		if err != nil || info.Kind != deployer.OwnerSafe || info.Safe.Threshold != 2 || info.Safe.SingletonName != "SafeL2" {
			t.Errorf("DescribeOwner(Safe) = %+v, %v", info, err)
		}
		if info, err := eth.DescribeOwner(ctx, l.DevAccount.Address); err != nil || info.Kind != deployer.OwnerEOA {
			t.Errorf("DescribeOwner(dev account) = %+v, %v", info, err)
		}
		if info, err := eth.DescribeOwner(ctx, l.KMSContract); err != nil || info.Kind != deployer.OwnerContract {
			t.Errorf("DescribeOwner(KMS) = %+v, %v", info, err)
		}
		// The L1 singleton with salt nonce 1 predicts the vector's address.
		l1 := safe.PredictProxy(safe.ProxyFactory.Address, proxyCode(t), safe.SafeL1.Address, safe.SetupData(d.Safe.Owners, 2, safe.FallbackHandler.Address), big.NewInt(1))
		if l1 != d.Safe.L1.Predicted {
			t.Errorf("L1 Safe with salt nonce 1 predicted at %s, the vector says %s", l1, d.Safe.L1.Predicted)
		}
		// A second run finds everything in place and deploys nothing.
		dir, err := testnet.SafeArtifactsDir(ctx)
		if err != nil {
			t.Fatal(err)
		}
		funder := deployer.NewKeySigner(l.DevAccount.PrivateKey)
		again, err := testnet.DeploySafeContracts(ctx, eth, funder, dir)
		if err != nil || len(again.Deployed) != 0 {
			t.Errorf("second deployment: %v, deployed %v", err, again)
		}
		eth.Close()
	}
}

// TestSafeArtifactTampered: an artifact whose init code is not the pinned
// one is refused before anything is sent.
// proxyCode is SafeProxy's init code from the pinned artifacts.
func proxyCode(t *testing.T) []byte {
	t.Helper()
	dir, err := testnet.SafeArtifactsDir(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, err := testnet.SafeInitCode(dir, safe.ProxyArtifact, safe.ProxyCreationCodeHash)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestSafeArtifactTampered(t *testing.T) {
	dir, err := testnet.SafeArtifactsDir(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, safe.MultiSendCallOnly.Artifact))
	if err != nil {
		t.Fatal(err)
	}
	var a map[string]any
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	if _, err := testnet.SafeInitCode(dir, safe.MultiSendCallOnly.Artifact, safe.MultiSendCallOnly.InitCodeHash); err != nil {
		t.Fatalf("the installed artifact is refused: %v", err)
	}
	code := a["bytecode"].(string)
	a["bytecode"] = code[:len(code)-2] + "00"
	if strings.HasSuffix(code, "00") {
		a["bytecode"] = code[:len(code)-2] + "01"
	}
	tampered := t.TempDir()
	p := filepath.Join(tampered, safe.MultiSendCallOnly.Artifact)
	os.MkdirAll(filepath.Dir(p), 0o755)
	b, _ := json.Marshal(a)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testnet.SafeInitCode(tampered, safe.MultiSendCallOnly.Artifact, safe.MultiSendCallOnly.InitCodeHash); !errors.Is(err, testnet.ErrSafeArtifact) {
		t.Fatalf("a tampered artifact gives %v", err)
	}
}

func TestSafeNeedsAnvil(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := testnet.StartLocalnet(ctx, testnet.LocalnetConfig{Embedded: devchain.ForLocalnet, Safe: true})
	if err == nil || !strings.Contains(err.Error(), "anvil") {
		t.Fatalf("embedded chain with Safe: %v", err)
	}
	for _, bad := range []testnet.LocalnetConfig{{SafeOwners: 3, SafeThreshold: 4}, {SafeOwners: 9, SafeThreshold: 1}, {SafeOwners: 2}} {
		if err := bad.Check(); err == nil {
			t.Errorf("%d-of-%d accepted", bad.SafeThreshold, bad.SafeOwners)
		}
	}
}

// BenchmarkLocalnetStart measures what the Safe contracts and the local
// Safe Transaction Service add to a testnet's start (testnet up has them
// on every anvil testnet).
func BenchmarkLocalnetStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  testnet.LocalnetConfig
	}{{"plain", testnet.LocalnetConfig{}}, {"safe", testnet.LocalnetConfig{Safe: true}}, {"safe-2-of-3", testnet.LocalnetConfig{SafeOwners: 3, SafeThreshold: 2}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				l, err := testnet.StartLocalnet(context.Background(), bc.cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				l.Close()
				b.StartTimer()
			}
		})
	}
}

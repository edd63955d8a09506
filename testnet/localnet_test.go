package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
	"github.com/cvmdeploy/cvmdeploy/testnet/devchain"
)

func startLocalnet(t *testing.T, cfg testnet.LocalnetConfig) *testnet.Localnet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := testnet.StartLocalnet(ctx, cfg)
	if err != nil {
		t.Fatalf("StartLocalnet: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

func call(t *testing.T, l *testnet.Localnet, method, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, l.APIPrefix+path, rd)
	req.Header.Set("X-API-Key", l.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return m
}

// deployAndBoot runs the on-chain create flow with the dev account and
// returns the CVM's final state.
func deployAndBoot(t *testing.T, l *testnet.Localnet, name string) map[string]any {
	t.Helper()
	return deployAndBootOn(t, l, name, l.KMSContract, l.RootPublicKey)
}

// deployAndBootOn is deployAndBoot with the app registered on kmsAddr and
// its env key checked against root.
func deployAndBootOn(t *testing.T, l *testnet.Localnet, name string, kmsAddr common.Address, root []byte) map[string]any {
	t.Helper()
	ctx := context.Background()
	prov := call(t, l, "POST", "/cvms/provision", map[string]any{"name": name, "kms": "ETHEREUM", "instance_type": "tdx.small",
		"compose_file": map[string]any{"docker_compose_file": "services:\n  web:\n    image: nginx\n", "allowed_envs": []string{"TOKEN"}, "name": ""}})
	c, err := deployer.Dial(ctx, l.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.DeployApp(ctx, deployer.NewKeySigner(l.DevAccount.PrivateKey), deployer.DeployAppConfig{KMS: kmsAddr,
		DeviceID: common.HexToHash(prov["device_id"].(string)), ComposeHash: common.HexToHash(prov["compose_hash"].(string))}, deployer.TxOptions{})
	if err != nil {
		t.Fatalf("deploy app: %v", err)
	}
	key := call(t, l, "GET", "/kms/"+l.KMSID+"/pubkey/"+d.AppID.Hex(), nil)
	if err := kms.VerifyAppKey(kms.VerifyParams{AppID: d.AppID.Hex(), PublicKey: key["public_key"].(string),
		Signature: key["signature"].(string), RootKey: root}); err != nil {
		t.Fatalf("pubkey signature: %v", err)
	}
	enc, err := kms.EncryptEnv([]kms.EnvVar{{Key: "TOKEN", Value: "fake-token"}}, key["public_key"].(string))
	if err != nil {
		t.Fatal(err)
	}
	cvm := call(t, l, "POST", "/cvms", map[string]any{"app_id": d.AppID.Hex(), "compose_hash": prov["compose_hash"],
		"encrypted_env": enc, "kms_id": l.KMSID, "contract_address": d.AppID.Hex(), "deployer_address": l.DevAccount.Address.Hex()})
	id := cvm["vm_uuid"].(string)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st := call(t, l, "GET", "/cvms/"+id+"/state", nil)
		if st["status"] == "running" || st["status"] == "error" {
			return st
		}
	}
	t.Fatal("CVM did not boot")
	return nil
}

func kmsRead(t *testing.T, rpcURL string, kmsAddr common.Address) (root []byte, osAllowed func(common.Hash) bool) {
	t.Helper()
	ctx := context.Background()
	c, err := deployer.Dial(ctx, rpcURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	root, err = c.KMSRootKey(ctx, kmsAddr)
	if err != nil {
		t.Fatal(err)
	}
	kb := bindings.NewDstackKms()
	return root, func(h common.Hash) bool {
		out, err := c.Eth().CallContract(ctx, ethereumCall(kmsAddr, kb.PackAllowedOsImages(h)), nil)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := kb.UnpackAllowedOsImages(out)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
}

func TestLocalnetEmbedded(t *testing.T) {
	l := startLocalnet(t, testnet.LocalnetConfig{Embedded: devchain.ForLocalnet})
	if l.ChainID != testnet.DefaultChainID || !strings.HasSuffix(l.APIPrefix, "/api/v1") || !strings.HasPrefix(l.APIKey, "phak_local_") {
		t.Errorf("localnet = chain %d prefix %s", l.ChainID, l.APIPrefix)
	}
	root, osAllowed := kmsRead(t, l.RPCURL, l.KMSContract)
	if !bytes.Equal(root, l.RootPublicKey) || !osAllowed(l.OSImageHash) {
		t.Fatalf("KMS not set up: root %x (want %x), os image allowed %v", root, l.RootPublicKey, osAllowed(l.OSImageHash))
	}
	c, _ := deployer.Dial(context.Background(), l.RPCURL)
	defer c.Close()
	bal, err := c.Eth().BalanceAt(context.Background(), l.DevAccount.Address, nil)
	if err != nil || bal.Cmp(new(big.Int).Exp(big.NewInt(10), big.NewInt(21), nil)) < 0 {
		t.Fatalf("dev account balance %v (%v), want at least 1000 ETH", bal, err)
	}
	if st := deployAndBoot(t, l, "embedded-app"); st["status"] != "running" {
		t.Fatalf("CVM on the embedded chain: %v", st)
	}
}

// TestLocalnetFork forks a second local anvil that already has a KMS owned
// by someone else, and takes that KMS over on the fork only.
func TestLocalnetFork(t *testing.T) {
	upstream := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	ctx := context.Background()
	uc, err := deployer.Dial(ctx, upstream.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	accts := upstream.Accounts()
	operator := accts[3] // owns the "live" KMS; its key is not given to the localnet
	otherRoot, _ := crypto.GenerateKey()
	d, err := uc.DeployKMS(ctx, deployer.NewKeySigner(operator.PrivateKey),
		deployer.KMSDeployConfig{RootKey: crypto.CompressPubkey(&otherRoot.PublicKey)}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}

	l := startLocalnet(t, testnet.LocalnetConfig{ForkURL: upstream.RPCURL(), KMSContract: d.KMSContract})
	if !l.Forked || l.KMSContract != d.KMSContract || l.KMSOwner != operator.Address || l.ChainID != upstream.ChainID() {
		t.Fatalf("fork localnet: forked %v kms %s owner %s chain %d", l.Forked, l.KMSContract.Hex(), l.KMSOwner.Hex(), l.ChainID)
	}
	root, osAllowed := kmsRead(t, l.RPCURL, l.KMSContract)
	if !bytes.Equal(root, l.RootPublicKey) || !osAllowed(l.OSImageHash) {
		t.Fatalf("fork KMS not taken over: root %x, os image %v", root, osAllowed(l.OSImageHash))
	}
	// The upstream chain is untouched.
	upRoot, upOS := kmsRead(t, upstream.RPCURL(), d.KMSContract)
	if !bytes.Equal(upRoot, crypto.CompressPubkey(&otherRoot.PublicKey)) || upOS(l.OSImageHash) {
		t.Errorf("the upstream KMS changed: root %x, os image allowed %v", upRoot, upOS(l.OSImageHash))
	}
	if st := deployAndBoot(t, l, "fork-app"); st["status"] != "running" {
		t.Fatalf("CVM on the fork: %v", st)
	}
}

// TestLocalnetRogueKMS: the rogue-kms adversary gets a second DstackKms
// with its own root on the same chain; the cloud serves it while
// Localnet.KMSContract still names the honest KMS. The injected pre-launch
// script reaches the cloud too.
func TestLocalnetRogueKMS(t *testing.T) {
	script := "#!/bin/sh\necho injected\n"
	l := startLocalnet(t, testnet.LocalnetConfig{Embedded: devchain.ForLocalnet, Adversary: cloud.AdversaryRogueKMS, InjectPreLaunchScript: &script})
	if l.Adversary != cloud.AdversaryRogueKMS || l.RogueKMSContract == (common.Address{}) || l.RogueKMSContract == l.KMSContract {
		t.Fatalf("localnet: adversary %q rogue KMS %s honest KMS %s", l.Adversary, l.RogueKMSContract.Hex(), l.KMSContract.Hex())
	}
	root, _ := kmsRead(t, l.RPCURL, l.KMSContract)
	rogueRoot, rogueOS := kmsRead(t, l.RPCURL, l.RogueKMSContract)
	if !bytes.Equal(root, l.RootPublicKey) || !bytes.Equal(rogueRoot, l.RogueRootPublicKey) || bytes.Equal(rogueRoot, root) || !rogueOS(l.OSImageHash) {
		t.Fatalf("on-chain roots: honest %x (want %x), rogue %x (want %x, not the honest one), rogue allows the OS image %v",
			root, l.RootPublicKey, rogueRoot, l.RogueRootPublicKey, rogueOS(l.OSImageHash))
	}
	k := call(t, l, "GET", "/kms/"+l.KMSID, nil)
	if k["kms_contract_address"] != l.RogueKMSContract.Hex() || k["k256_pubkey"] != fmt.Sprintf("0x%x", l.RogueRootPublicKey) {
		t.Errorf("GET /kms/%s = %v, want the rogue KMS", l.KMSID, k)
	}
	if st := deployAndBootOn(t, l, "rogue-app", l.RogueKMSContract, l.RogueRootPublicKey); st["status"] != "running" {
		t.Fatalf("CVM of an app on the rogue KMS: %v", st)
	}
	prov := call(t, l, "POST", "/cvms/provision", map[string]any{"name": "inject-app", "kms": "PHALA",
		"compose_file": map[string]any{"docker_compose_file": "services:\n  web:\n    image: nginx\n"}})
	cvm := call(t, l, "POST", "/cvms", map[string]any{"app_id": prov["app_id"], "compose_hash": prov["compose_hash"]})
	if doc := call(t, l, "GET", "/cvms/"+cvm["vm_uuid"].(string)+"/compose_file", nil); doc["pre_launch_script"] != script {
		t.Errorf("pre_launch_script = %#v, want the injected script", doc["pre_launch_script"])
	}
}

func TestLocalnetForkNotAKMS(t *testing.T) {
	upstream := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	_, err := testnet.StartLocalnet(context.Background(), testnet.LocalnetConfig{ForkURL: upstream.RPCURL(),
		KMSContract: upstream.Accounts()[5].Address})
	if err == nil || !strings.Contains(err.Error(), "DstackKms") {
		t.Fatalf("err = %v, want a not-a-DstackKms error", err)
	}
}

func TestLocalnetConfigCheck(t *testing.T) {
	kmsAddr := common.HexToAddress("0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C")
	tests := []struct {
		name string
		cfg  testnet.LocalnetConfig
		ok   bool
	}{
		{"zero", testnet.LocalnetConfig{}, true},
		{"fork", testnet.LocalnetConfig{ForkURL: "http://127.0.0.1:8545", KMSContract: kmsAddr}, true},
		{"embedded fork", testnet.LocalnetConfig{Embedded: devchain.ForLocalnet, ForkURL: "http://x", KMSContract: kmsAddr}, false},
		{"fork without kms", testnet.LocalnetConfig{ForkURL: "http://x"}, false},
		{"kms without fork", testnet.LocalnetConfig{KMSContract: kmsAddr}, false},
		{"negative block time", testnet.LocalnetConfig{BlockTime: -time.Second}, false},
		{"embedded half second", testnet.LocalnetConfig{Embedded: devchain.ForLocalnet, BlockTime: 500 * time.Millisecond}, false},
		{"fork with chain id", testnet.LocalnetConfig{ForkURL: "http://x", KMSContract: kmsAddr, ChainID: 5}, false},
		{"adversary", testnet.LocalnetConfig{Adversary: cloud.AdversaryCompose}, true},
		{"unknown adversary", testnet.LocalnetConfig{Adversary: "bogus"}, false},
		{"adversary and Cloud.Adversary disagree", testnet.LocalnetConfig{Adversary: cloud.AdversaryCompose,
			Cloud: cloud.Config{Adversary: cloud.AdversaryPreLaunch}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Check(); (err == nil) != tt.ok {
				t.Fatalf("Check() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestExportLines(t *testing.T) {
	l := &testnet.Localnet{RPCURL: "http://127.0.0.1:8545", APIPrefix: "http://127.0.0.1:9/api/v1", APIKey: "phak it's"}
	got := strings.Join(l.ExportLines(), "\n")
	want := "export ETH_RPC_URL=http://127.0.0.1:8545\nexport PHALA_CLOUD_API_PREFIX=http://127.0.0.1:9/api/v1\nexport PHALA_CLOUD_API_KEY='phak it'\\''s'"
	if got != want {
		t.Fatalf("export lines:\n%s\nwant:\n%s", got, want)
	}
}

func ethereumCall(to common.Address, data []byte) ethereum.CallMsg {
	return ethereum.CallMsg{To: &to, Data: data}
}

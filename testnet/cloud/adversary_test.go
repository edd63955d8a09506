package cloud_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// deployAppOn registers an app through the factory of the DstackKms at kmsAddr.
func deployAppOn(t *testing.T, kmsAddr common.Address, deviceHex, hashHex string) common.Address {
	t.Helper()
	c, s := chain(t)
	d, err := c.DeployApp(context.Background(), s, deployer.DeployAppConfig{
		KMS: kmsAddr, DeviceID: common.HexToHash(deviceHex), ComposeHash: common.HexToHash(hashHex)}, deployer.TxOptions{})
	if err != nil {
		t.Fatalf("deploy app on %s: %v", kmsAddr.Hex(), err)
	}
	return d.AppID
}

// onChainCVM runs the on-chain create flow on a (for the KMS) and waits for
// the boot: provision body, deployAndRegisterApp with the answered hash on
// the KMS kms_info names, pubkey, commit. It returns the CVM id, the app,
// the answered compose hash and the final state.
func onChainCVM(t *testing.T, a *api, body map[string]any) (id string, app common.Address, hash string, st map[string]any) {
	t.Helper()
	prov := a.do("POST", "/cvms/provision", body).must(t, 200)
	hash = prov["compose_hash"].(string)
	kmsAddr := common.HexToAddress(prov["kms_info"].(map[string]any)["kms_contract_address"].(string))
	app = deployAppOn(t, kmsAddr, prov["device_id"].(string), hash)
	enc, err := kms.EncryptEnv(testEnv, a.pubkey(app.Hex()))
	if err != nil {
		t.Fatal(err)
	}
	cvm := a.do("POST", "/cvms", map[string]any{"app_id": app.Hex(), "compose_hash": hash, "encrypted_env": enc,
		"kms_id": shared.KMSID, "contract_address": app.Hex()}).must(t, 200)
	id = fmt.Sprint(int64(cvm["id"].(float64)))
	return id, app, hash, a.waitStatus(id)
}

// diffKeys lists the keys whose values differ between two app-composes.
func diffKeys(a, b map[string]any) []string {
	var out []string
	for k := range a {
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestAdversaryComposeModes: the compose, prelaunch and flip-public-logs
// adversaries each change exactly one field of the stored app-compose, on
// provision and on the update PATCH, and lie consistently: the compose
// hash answered is the tampered document's, the CVM booted with it once
// the user allowed it, and the attestation shows the same bytes.
func TestAdversaryComposeModes(t *testing.T) {
	const newCompose = "services:\n  web:\n    image: nginx:1.28\n"
	tests := []struct {
		mode    string
		field   string
		want    any            // the field after provision
		patch   map[string]any // the update
		wantUpd any            // the field after the update
	}{
		{cloud.AdversaryCompose, "docker_compose_file",
			strings.Replace(composeYAML, "services:\n", "services:\n"+cloud.AdversarySidecar, 1),
			map[string]any{"docker_compose_file": newCompose},
			"services:\n" + cloud.AdversarySidecar + "  web:\n    image: nginx:1.28\n"},
		{cloud.AdversaryPreLaunch, "pre_launch_script", cloud.AdversaryPreLaunchScript,
			// The user's own script is replaced too (a new compose makes the
			// hash change, so the update needs registering).
			map[string]any{"pre_launch_script": "#!/bin/sh\necho mine\n", "docker_compose_file": newCompose}, cloud.AdversaryPreLaunchScript},
		{cloud.AdversaryFlipPublicLogs, "public_logs", false,
			map[string]any{"public_logs": false}, true},
	}
	honest := newAPI(t)
	for i, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			a, log := newCloud(t, func(c *cloud.Config) { c.Adversary = tt.mode })
			a = a.forTest(t)
			body := provisionBody(fmt.Sprintf("adversary-%d", i))
			id, app, hash, st := onChainCVM(t, a, body)
			if st["status"] != cloud.StatusRunning {
				t.Fatalf("the CVM booted with the answered hash must run: %v", st)
			}
			stored := a.do("GET", "/cvms/"+id+"/compose_file", nil).raw
			checkConsistent(t, a, id, hash, stored)

			// Exactly the one field differs from what the honest cloud stores.
			_, _, honestDoc := honest.forTest(t).cloudKMSCVM(provisionBody(fmt.Sprintf("adversary-honest-%d", i)))
			lied := decode(t, stored)
			if d := diffKeys(decode(t, honestDoc), lied); len(d) != 1 || d[0] != tt.field {
				t.Errorf("fields that differ from the honest app-compose: %v, want [%s]", d, tt.field)
			}
			if lied[tt.field] != tt.want {
				t.Errorf("%s = %#v, want %#v", tt.field, lied[tt.field], tt.want)
			}
			logHasIn(t, log, `msg=adversary`, "mode="+tt.mode, "on=provision", "compose_hash="+hash)

			// The update PATCH lies the same way.
			d := details465(t, a.do("PATCH", "/cvms/"+id, tt.patch))
			newHash := d["compose_hash"].(string)
			tx := addComposeHash(t, app, newHash)
			a.do("PATCH", "/cvms/"+id, "{}", "X-Compose-Hash", newHash, "X-Transaction-Hash", tx.Hex()).must(t, 202)
			if st := a.waitStatus(id); st["status"] != cloud.StatusRunning {
				t.Fatalf("after the update: %v", st)
			}
			stored = a.do("GET", "/cvms/"+id+"/compose_file", nil).raw
			checkConsistent(t, a, id, newHash, stored)
			if got := decode(t, stored)[tt.field]; got != tt.wantUpd {
				t.Errorf("after the update %s = %#v, want %#v", tt.field, got, tt.wantUpd)
			}
			logHasIn(t, log, `msg=adversary`, "mode="+tt.mode, "on=update", "compose_hash="+newHash)
		})
	}
}

// checkConsistent asserts that the liar is consistent: the stored
// app-compose hashes to the compose hash of the CVM object and of the
// answer that proposed it, and the attestation shows the same bytes.
func checkConsistent(t *testing.T, a *api, id, hash string, stored []byte) {
	t.Helper()
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != hash {
		t.Errorf("sha256 of the stored app-compose %x, answered compose_hash %s", sum, hash)
	}
	if cvm := a.do("GET", "/cvms/"+id, nil).must(t, 200); cvm["compose_hash"] != hash {
		t.Errorf("CVM compose_hash %v, want %s", cvm["compose_hash"], hash)
	}
	att := a.do("GET", "/cvms/"+id+"/attestation", nil).must(t, 200)
	if tcb, _ := att["tcb_info"].(map[string]any); tcb == nil || tcb["app_compose"] != string(stored) {
		t.Errorf("attestation app_compose differs from the stored app-compose: %v", att["tcb_info"])
	}
}

// TestAdversaryForgedKey: the env key is the honest one, but both of its
// signatures come from a key that is not the on-chain KMS root; everything
// else (provision, the KMS's advertised root key) is honest.
func TestAdversaryForgedKey(t *testing.T) {
	a, log := newCloud(t, func(c *cloud.Config) { c.Adversary = cloud.AdversaryForgedKey })
	honest := newAPI(t)
	c, _ := chain(t)
	root, err := c.KMSRootKey(context.Background(), shared.KMSContract)
	if err != nil {
		t.Fatal(err)
	}
	prov := a.do("POST", "/cvms/provision", provisionBody("forged-key-app")).must(t, 200)
	honestProv := honest.do("POST", "/cvms/provision", provisionBody("forged-key-app")).must(t, 200)
	if prov["compose_hash"] != honestProv["compose_hash"] || !strings.EqualFold(fmt.Sprint(prov["kms_info"].(map[string]any)["kms_contract_address"]), shared.KMSContract.Hex()) {
		t.Errorf("provision differs from the honest one: %v vs %v", prov, honestProv)
	}
	if k := a.do("GET", "/kms/"+shared.KMSID, nil).must(t, 200); k["k256_pubkey"] != "0x"+hex.EncodeToString(root) {
		t.Errorf("k256_pubkey %v, want the on-chain root %x", k["k256_pubkey"], root)
	}
	app := deployApp(t, prov["device_id"].(string), prov["compose_hash"].(string))
	got := a.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+app.Hex()+"?v1=true", nil).must(t, 200)
	want := honest.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+app.Hex(), nil).must(t, 200)
	if got["public_key"] != want["public_key"] {
		t.Errorf("public_key %v, want the honest %v", got["public_key"], want["public_key"])
	}
	ts := uint64(got["timestamp"].(float64))
	var signers [][]byte
	for _, p := range []kms.VerifyParams{
		{AppID: app.Hex(), PublicKey: got["public_key"].(string), Signature: got["signature"].(string), RootKey: root},
		{AppID: app.Hex(), PublicKey: got["public_key"].(string), Signature: got["signature_v1"].(string), Timestamp: &ts, RootKey: root},
	} {
		var mismatch *kms.KeyMismatchError
		if err := kms.VerifyAppKey(p); !errors.As(err, &mismatch) {
			t.Fatalf("signature (v1 %v): err %v, want a key mismatch (signed by another key)", p.Timestamp != nil, err)
		}
		if bytes.Equal(mismatch.Found, root) {
			t.Errorf("the forged signature recovers to the root")
		}
		signers = append(signers, mismatch.Found)
	}
	if !bytes.Equal(signers[0], signers[1]) {
		t.Errorf("legacy and v1 signatures come from different keys %x %x", signers[0], signers[1])
	}
	logHasIn(t, log, `msg=adversary`, "mode=forged-key", "on=pubkey", "app=0x"+strings.ToLower(app.Hex()[2:]))
}

// TestAdversaryRogueKMS: the cloud names a second DstackKms, deployed on the
// same chain with its own root key, in every kms_info; app keys are signed
// by its root and CVMs boot against it. The app-compose stays honest.
func TestAdversaryRogueKMS(t *testing.T) {
	ctx := context.Background()
	c, _ := chain(t)
	rogueRoot, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	operator := shared.Chain.Accounts()[2] // neither the user nor the honest KMS's owner
	d, err := c.DeployKMS(ctx, deployer.NewKeySigner(operator.PrivateKey), deployer.KMSDeployConfig{
		RootKey: crypto.CompressPubkey(&rogueRoot.PublicKey), OSImageHashes: [][32]byte{shared.OSImageHash}}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rogue := d.KMSContract
	a, log := newCloud(t, func(c *cloud.Config) {
		c.Adversary, c.RogueKMSContract, c.RogueRootKey = cloud.AdversaryRogueKMS, rogue, rogueRoot
	})
	honestRoot, err := c.KMSRootKey(ctx, shared.KMSContract)
	if err != nil {
		t.Fatal(err)
	}
	onChainRogueRoot, err := c.KMSRootKey(ctx, rogue)
	if err != nil {
		t.Fatal(err)
	}
	if rogue == shared.KMSContract || bytes.Equal(onChainRogueRoot, honestRoot) {
		t.Fatalf("the rogue KMS %s (root %x) is not a second KMS", rogue.Hex(), onChainRogueRoot)
	}

	// Every kms_info names the rogue KMS; its advertised root is the rogue's on-chain root.
	k := a.do("GET", "/kms/"+shared.KMSID, nil).must(t, 200)
	if k["kms_contract_address"] != rogue.Hex() || k["k256_pubkey"] != "0x"+hex.EncodeToString(onChainRogueRoot) {
		t.Errorf("GET /kms/%s = %v, want the rogue %s with root %x", shared.KMSID, k, rogue.Hex(), onChainRogueRoot)
	}
	list := a.do("GET", "/kms?is_onchain=true", nil).must(t, 200)
	if items := list["items"].([]any); len(items) != 1 || items[0].(map[string]any)["kms_contract_address"] != rogue.Hex() {
		t.Errorf("GET /kms?is_onchain=true = %v, want the rogue KMS", list)
	}
	id, app, hash, st := onChainCVM(t, a, provisionBody("rogue-kms-app"))
	if st["status"] != cloud.StatusRunning {
		t.Fatalf("a CVM of an app on the rogue KMS must boot (against it): %v", st)
	}
	logHasIn(t, log, "onchain check", "app="+app.Hex(), "allowed=true")
	registeredOn := func(kmsAddr common.Address) bool {
		kb := bindings.NewDstackKms()
		out, err := c.Eth().CallContract(ctx, ethereum.CallMsg{To: &kmsAddr, Data: kb.PackRegisteredApps(app)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := kb.UnpackRegisteredApps(out)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !registeredOn(rogue) || registeredOn(shared.KMSContract) {
		t.Errorf("the app must be registered on the rogue KMS only")
	}
	key := a.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+app.Hex(), nil).must(t, 200)
	params := kms.VerifyParams{AppID: app.Hex(), PublicKey: key["public_key"].(string), Signature: key["signature"].(string), RootKey: onChainRogueRoot}
	if err := kms.VerifyAppKey(params); err != nil {
		t.Errorf("the app key is not signed by the rogue root: %v", err)
	}
	params.RootKey = honestRoot
	if err := kms.VerifyAppKey(params); err == nil {
		t.Errorf("the app key verifies against the honest root")
	}
	for _, v := range []string{cloud.Version20251028, cloud.Version20260522} {
		b := *a
		b.version = v
		cvm := b.do("GET", "/cvms/"+fmt.Sprint(id), nil)
		info, _ := decode(t, cvm.raw)["kms_info"].(map[string]any)
		if info["kms_contract_address"] != nil && info["kms_contract_address"] != rogue.Hex() ||
			info["dstack_kms_address"] != nil && info["dstack_kms_address"] != rogue.Hex() ||
			info["kms_contract_address"] == nil && info["dstack_kms_address"] == nil {
			t.Errorf("version %s: CVM kms_info %v does not name the rogue KMS", v, info)
		}
	}
	// The app-compose itself is honest.
	_, _, honestDoc := newAPI(t).cloudKMSCVM(provisionBody("rogue-kms-honest"))
	if sum := sha256.Sum256(honestDoc); hex.EncodeToString(sum[:]) != hash {
		t.Errorf("compose hash %s differs from the honest one %x", hash, sum)
	}
	logHasIn(t, log, `msg=adversary`, "mode=rogue-kms", "on=start", rogue.Hex())
	logHasIn(t, log, `msg=adversary`, "mode=rogue-kms", "on=provision")
}

// TestAdversaryConfig: Config.Check names the modes and the rogue-kms needs.
func TestAdversaryConfig(t *testing.T) {
	key, _ := crypto.GenerateKey()
	base := cloud.Config{APIKey: "k", Chain: chainBackend(t), KMSContract: shared.KMSContract, RootKey: rootKey, OSImageHash: shared.OSImageHash}
	other := common.HexToAddress("0x00000000000000000000000000000000000000b0")
	tests := []struct {
		name string
		edit func(*cloud.Config)
		err  string // "" = valid
	}{
		{"honest", func(*cloud.Config) {}, ""},
		{"each mode but rogue-kms", func(c *cloud.Config) { c.Adversary = cloud.AdversaryFlipPublicLogs }, ""},
		{"unknown mode lists the modes", func(c *cloud.Config) { c.Adversary = "bogus" }, strings.Join(cloud.AdversaryModes, ", ")},
		{"rogue-kms without its KMS", func(c *cloud.Config) { c.Adversary = cloud.AdversaryRogueKMS }, "needs RogueKMSContract and RogueRootKey"},
		{"rogue KMS without the mode", func(c *cloud.Config) { c.RogueKMSContract, c.RogueRootKey = other, key }, "apply only to the rogue-kms"},
		{"rogue KMS that is the honest one", func(c *cloud.Config) {
			c.Adversary, c.RogueKMSContract, c.RogueRootKey = cloud.AdversaryRogueKMS, shared.KMSContract, key
		}, "must differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			err := cfg.Check()
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Check() = %v, want %q", err, tt.err)
			}
		})
	}
	// A rogue KMS whose on-chain root is not RogueRootKey is refused at start.
	cfg := base
	cfg.Adversary, cfg.RogueKMSContract, cfg.RogueRootKey = cloud.AdversaryRogueKMS, shared.KMSContract, key
	cfg.KMSContract = shared.KMSContract
	if _, err := cloud.New(context.Background(), cfg); err == nil {
		t.Errorf("New accepted a rogue KMS equal to the honest one")
	}
}

package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestVersionShapes: one CVM, read under every version, has each version's
// shape: integer or string ids, the KmsInfo or the 2026 kms_info, and the
// legacy list items with hosted under 2025-10-28.
func TestVersionShapes(t *testing.T) {
	a := newAPI(t)
	app := deployApp(t, fmt.Sprintf("%x", shared.DeviceID[:]), "")
	cvm, _ := commitFor(t, a, "shapes-app", app)
	vm := cvm["vm_uuid"].(string)
	for _, v := range cloud.Versions {
		t.Run(v, func(t *testing.T) {
			a := a.forTest(t)
			a.version = v
			got := a.do("GET", "/cvms/"+vm, nil).must(t, 200)
			_, intID := got["id"].(float64)
			_, intUser := got["user_id"].(float64)
			hashed := v == cloud.Version20260522 || v == cloud.Version20260623
			if intID == hashed || intUser == hashed {
				t.Fatalf("id %#v, user_id %#v under %s", got["id"], got["user_id"], v)
			}
			if hashed && !strings.HasPrefix(got["id"].(string), "cvm_") {
				t.Fatalf("id %q", got["id"])
			}
			info := got["kms_info"].(map[string]any)
			_, legacyKMS := info["slug"]
			_, flatKMS := info["dstack_kms_address"]
			if legacyKMS != (v == cloud.Version20251028) || flatKMS == legacyKMS {
				t.Fatalf("kms_info %v under %s", info, v)
			}
			if flatKMS && !strings.EqualFold(fmt.Sprint(info["dstack_kms_address"]), shared.KMSContract.Hex()) {
				t.Fatalf("kms_info %v", info)
			}
			lr := a.do("GET", "/cvms", nil)
			if lr.status != 200 {
				t.Fatalf("GET /cvms: %d %s", lr.status, lr.raw)
			}
			list := decodeList(t, lr.raw)
			var mine map[string]any
			for _, item := range list {
				if item["name"] == "shapes-app" {
					mine = item
				}
			}
			hosted, isLegacy := mine["hosted"].(map[string]any)
			if isLegacy != (v == cloud.Version20251028) {
				t.Fatalf("list item %v under %s", mine, v)
			}
			if isLegacy && (hosted["id"] != vm || hosted["app_id"] != strings.ToLower(app.Hex()[2:]) || mine["id"] != nil) {
				t.Fatalf("legacy item %v", mine)
			}
		})
	}
	a.version = "2027-01-01"
	r := a.do("GET", "/cvms/"+vm, nil)
	if r.status != 400 || !strings.Contains(fmt.Sprint(r.body["detail"]), "X-Phala-Version") {
		t.Fatalf("unknown version: %d %s", r.status, r.raw)
	}
	a.version = "latest"
	if id, _ := a.do("GET", "/cvms/"+vm, nil).must(t, 200)["id"].(string); !strings.HasPrefix(id, "cvm_") {
		t.Fatalf("latest: id %q", id)
	}
}

func decodeList(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("list %s: %v", raw, err)
	}
	return list
}

// TestKMSContracts: under 2026-06-23 GET /kms lists contracts, the slug
// and the kc_ id resolve one, and /nodes lists its node; older versions
// keep the node listing and have no /nodes.
func TestKMSContracts(t *testing.T) {
	a := newAPI(t)
	a.version = cloud.Version20260623
	page := a.do("GET", "/kms", nil).must(t, 200)
	items := page["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("items %v", items)
	}
	on := items[0].(map[string]any)
	id, _ := on["id"].(string)
	if !strings.HasPrefix(id, "kc_") || on["slug"] != shared.KMSID || !strings.EqualFold(fmt.Sprint(on["contract_address"]), shared.KMSContract.Hex()) ||
		on["chain_id"] != float64(shared.ChainID) || on["k256_pubkey"] != fmt.Sprintf("0x%x", shared.RootPublicKey) || on["node_count"] != float64(1) {
		t.Fatalf("contract %v", on)
	}
	if off := items[1].(map[string]any); off["contract_address"] != "phala" || off["chain_id"] != float64(0) {
		t.Fatalf("cloud KMS sentinel %v", off)
	}
	for _, ref := range []string{id, shared.KMSID} {
		if got := a.do("GET", "/kms/"+ref, nil).must(t, 200); got["id"] != id || got["node_count"] != float64(1) {
			t.Fatalf("GET /kms/%s = %v", ref, got)
		}
	}
	nodes := a.do("GET", "/kms/"+id+"/nodes", nil).must(t, 200)
	if n := nodes["items"].([]any); len(n) != 1 || n[0].(map[string]any)["slug"] != shared.KMSID || nodes["total"] != float64(1) {
		t.Fatalf("nodes %v", nodes)
	}
	if r := a.do("GET", "/kms/kc_nope", nil); r.status != 404 {
		t.Fatalf("unknown contract: %d", r.status)
	}
	for _, v := range []string{cloud.Version20251028, cloud.Version20260522} {
		a.version = v
		item := a.do("GET", "/kms", nil).must(t, 200)["items"].([]any)[0].(map[string]any)
		if _, node := item["kms_contract_address"]; !node {
			t.Fatalf("%s: GET /kms item %v, want the node shape", v, item)
		}
		if r := a.do("GET", "/kms/"+shared.KMSID+"/nodes", nil); r.status != 404 {
			t.Fatalf("%s: /nodes answered %d", v, r.status)
		}
	}
}

// TestSamePathProvisionAndTokenCommit: from 2026-05-22 POST /cvms with a
// provision body provisions and answers a one-time token; the commit by
// token takes the compose hash from it; a replay of the same commit gets
// the same CVM; an unknown token is 466. Before 2026-05-22 POST /cvms only
// commits.
func TestSamePathProvisionAndTokenCommit(t *testing.T) {
	a := newAPI(t)
	old := a.do("POST", "/cvms", provisionBody("samepath-old"))
	if old.status != 422 || !strings.Contains(string(old.raw), "app_id") {
		t.Fatalf("2025-10-28 POST /cvms with a provision body: %d %s", old.status, old.raw)
	}
	a.version = cloud.Version20260522
	prov := a.do("POST", "/cvms", provisionBody("samepath-app")).must(t, 200)
	token, _ := prov["token"].(string)
	hash := prov["compose_hash"].(string)
	if !strings.HasPrefix(token, "ctk_") || prov["app_id"] != nil {
		t.Fatalf("provision %v", prov)
	}
	app := deployApp(t, prov["device_id"].(string), hash)
	enc, err := kms.EncryptEnv(testEnv, a.pubkey(app.Hex()))
	if err != nil {
		t.Fatal(err)
	}
	// The token is for this app's compose hash only.
	bad := a.do("POST", "/cvms", map[string]any{"token": token, "app_id": app.Hex(), "compose_hash": strings.Repeat("ab", 32)})
	if bad.status != 422 {
		t.Fatalf("mismatched compose_hash: %d %s", bad.status, bad.raw)
	}
	if r := a.do("POST", "/cvms", map[string]any{"token": token, "encrypted_env": enc}); r.status != 422 || !strings.Contains(string(r.raw), "app_id") {
		t.Fatalf("on-chain commit without app_id: %d %s", r.status, r.raw)
	}
	body := map[string]any{"token": token, "app_id": app.Hex(), "encrypted_env": enc, "contract_address": app.Hex(),
		"deployer_address": shared.DevAccount.Address.Hex()}
	cvm := a.do("POST", "/cvms", body).must(t, 200)
	if id, _ := cvm["id"].(string); !strings.HasPrefix(id, "cvm_") || cvm["compose_hash"] != hash {
		t.Fatalf("commit %v", cvm)
	}
	if st := a.waitStatus(cvm["id"].(string)); st["status"] != cloud.StatusRunning {
		t.Fatalf("state %v", st)
	}
	again := a.do("POST", "/cvms", body).must(t, 200)
	if again["id"] != cvm["id"] {
		t.Fatalf("replay made %v", again["id"])
	}
	other := deployApp(t, prov["device_id"].(string), hash)
	if r := a.do("POST", "/cvms", map[string]any{"token": token, "app_id": other.Hex()}); r.status != cloud.StatusHashExpired {
		t.Fatalf("used token for another app: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/cvms", map[string]any{"token": "ctk_unknown", "app_id": app.Hex()}); r.status != cloud.StatusHashExpired || r.body["detail"].(map[string]any)["error_code"] != "ERR-01-006" {
		t.Fatalf("unknown token: %d %s", r.status, r.raw)
	}

	// The cloud KMS: the token stands for the app id too.
	cb := provisionBody("samepath-cloud")
	cb["kms"] = "PHALA"
	cp := a.do("POST", "/cvms", cb).must(t, 200)
	cc := a.do("POST", "/cvms", map[string]any{"token": cp["token"]}).must(t, 200)
	if cc["app_id"] != cp["app_id"] || cc["compose_hash"] != cp["compose_hash"] {
		t.Fatalf("cloud-KMS token commit %v", cc)
	}
}

// TestCommitTransactionChecks: a commit naming a transaction_hash is
// checked like a confirmed update: the transaction must have added the
// hash on the app (467), and the hash must be allowed (468).
func TestCommitTransactionChecks(t *testing.T) {
	a := newAPI(t)
	c, s := chain(t)
	prov := a.do("POST", "/cvms/provision", provisionBody("tx-commit-app", "GREETING")).must(t, 200)
	hash, device := prov["compose_hash"].(string), prov["device_id"].(string)
	dep, err := c.DeployApp(context.Background(), s, deployer.DeployAppConfig{KMS: shared.KMSContract, DeviceID: common.HexToHash(device), ComposeHash: common.HexToHash(hash)}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An app deployed without the hash: its deployment proves nothing.
	bare, err := c.DeployApp(context.Background(), s, deployer.DeployAppConfig{KMS: shared.KMSContract, DeviceID: common.HexToHash(device)}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(app common.Address) string {
		e, err := kms.EncryptEnv(testEnv[:1], a.pubkey(app.Hex()))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tests := []struct {
		name   string
		app    common.Address
		tx     string
		status int
	}{
		{"unknown transaction", dep.AppID, "0x" + strings.Repeat("12", 32), cloud.StatusTxVerificationFailed},
		{"another app's deployment", bare.AppID, dep.TxHash.Hex(), cloud.StatusTxVerificationFailed},
		{"already-registered but not allowed", bare.AppID, cloud.AlreadyRegistered, cloud.StatusHashNotOnChain},
		{"the deployment that added the hash", dep.AppID, dep.TxHash.Hex(), 200},
	}
	for _, tt := range tests {
		r := a.do("POST", "/cvms", map[string]any{"app_id": tt.app.Hex(), "compose_hash": hash, "encrypted_env": enc(tt.app), "transaction_hash": tt.tx})
		if r.status != tt.status {
			t.Fatalf("%s: %d %s", tt.name, r.status, r.raw)
		}
	}
}

// TestExpirePrepared: an expired token or provision is 466 on commit.
func TestExpirePrepared(t *testing.T) {
	api, _ := newCloud(t, nil)
	srv := api.server
	api.version = cloud.Version20260623
	b := provisionBody("expire-app")
	b["kms"] = "PHALA"
	prov := api.do("POST", "/cvms", b).must(t, 200)
	srv.ExpirePrepared()
	if got := srv.Counts(); got.Provisions != 0 || got.Tokens != 0 {
		t.Fatalf("counts %+v", got)
	}
	if r := api.do("POST", "/cvms", map[string]any{"token": prov["token"]}); r.status != cloud.StatusHashExpired {
		t.Fatalf("commit after expiry: %d %s", r.status, r.raw)
	}
}

// TestMisreportRootKey: the API reports a root key the chain does not hold,
// everywhere it reports one, while app keys stay signed by the real root.
func TestMisreportRootKey(t *testing.T) {
	api, log := newCloud(t, func(c *cloud.Config) { c.MisreportRootKey = true })
	real := fmt.Sprintf("0x%x", shared.RootPublicKey)
	node := api.do("GET", "/kms/"+shared.KMSID, nil).must(t, 200)
	api.version = cloud.Version20260623
	contract := api.do("GET", "/kms", nil).must(t, 200)["items"].([]any)[0].(map[string]any)
	if node["k256_pubkey"] == real || contract["k256_pubkey"] != node["k256_pubkey"] {
		t.Fatalf("reported %v and %v, real %s", node["k256_pubkey"], contract["k256_pubkey"], real)
	}
	logHasIn(t, log, "adversary", "misreport-root-key")
	app := "0x" + strings.Repeat("5a", 20)
	key := api.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+app, nil).must(t, 200)
	if err := kms.VerifyAppKey(kms.VerifyParams{AppID: app, PublicKey: key["public_key"].(string), Signature: key["signature"].(string), RootKey: shared.RootPublicKey}); err != nil {
		t.Fatalf("the app key is not signed by the real root: %v", err)
	}
}

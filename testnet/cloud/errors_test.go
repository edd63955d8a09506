package cloud_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// unchanged fails the test when a rejected request stored anything.
func unchanged(t *testing.T) func() {
	t.Helper()
	before := shared.Cloud.Counts()
	return func() {
		t.Helper()
		if after := shared.Cloud.Counts(); after != before {
			t.Errorf("state changed by a rejected request: %+v -> %+v", before, after)
		}
	}
}

// fieldLocs returns the "loc" paths of a FastAPI 422 answer, joined by dots.
func fieldLocs(t *testing.T, r reply) []string {
	t.Helper()
	list, ok := r.body["detail"].([]any)
	if !ok {
		t.Fatalf("422 detail is not a list: %s", r.raw)
	}
	var locs []string
	for _, item := range list {
		m := item.(map[string]any)
		for _, k := range []string{"type", "loc", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("422 item lacks %q: %v", k, m)
			}
		}
		var parts []string
		for _, p := range m["loc"].([]any) {
			parts = append(parts, fmt.Sprint(p))
		}
		locs = append(locs, strings.Join(parts, "."))
	}
	return locs
}

func TestProvisionValidation(t *testing.T) {
	a := newAPI(t)
	with := func(edit func(b, cf map[string]any)) map[string]any {
		b := provisionBody("valid-name")
		edit(b, b["compose_file"].(map[string]any))
		return b
	}
	tests := []struct {
		name string
		body any
		loc  string
	}{
		{"not json", "{nope", "body.0"},
		{"not an object", `["a"]`, "body"},
		{"empty body", "", "body"},
		{"name missing", with(func(b, _ map[string]any) { delete(b, "name") }), "body.name"},
		{"name number", with(func(b, _ map[string]any) { b["name"] = 12345 }), "body.name"},
		{"name too short", with(func(b, _ map[string]any) { b["name"] = "abcd" }), "body.name"},
		{"name too long", with(func(b, _ map[string]any) { b["name"] = "a" + strings.Repeat("b", 63) }), "body.name"},
		{"name digit first", with(func(b, _ map[string]any) { b["name"] = "1abcde" }), "body.name"},
		{"name double hyphen", with(func(b, _ map[string]any) { b["name"] = "ab--cd" }), "body.name"},
		{"name trailing hyphen", with(func(b, _ map[string]any) { b["name"] = "abcde-" }), "body.name"},
		{"name underscore", with(func(b, _ map[string]any) { b["name"] = "abc_de" }), "body.name"},
		{"compose_file missing", with(func(b, _ map[string]any) { delete(b, "compose_file") }), "body.compose_file"},
		{"compose_file string", with(func(b, _ map[string]any) { b["compose_file"] = "services: {}" }), "body.compose_file"},
		{"docker_compose_file missing", with(func(_, cf map[string]any) { delete(cf, "docker_compose_file") }), "body.compose_file.docker_compose_file"},
		{"docker_compose_file number", with(func(_, cf map[string]any) { cf["docker_compose_file"] = 1 }), "body.compose_file.docker_compose_file"},
		{"docker_compose_file blank", with(func(_, cf map[string]any) { cf["docker_compose_file"] = "  " }), "body.compose_file.docker_compose_file"},
		{"compose over 200 KiB", with(func(_, cf map[string]any) { cf["docker_compose_file"] = strings.Repeat("#", cloud.MaxComposeBytes+1) }), "body.compose_file.docker_compose_file"},
		{"compose + script over 200 KiB", with(func(_, cf map[string]any) {
			cf["docker_compose_file"] = strings.Repeat("#", cloud.MaxComposeBytes-10)
			cf["pre_launch_script"] = strings.Repeat("#", 11)
		}), "body.compose_file.docker_compose_file"},
		{"pre_launch_script number", with(func(_, cf map[string]any) { cf["pre_launch_script"] = 7 }), "body.compose_file.pre_launch_script"},
		{"allowed_envs string", with(func(_, cf map[string]any) { cf["allowed_envs"] = "A" }), "body.compose_file.allowed_envs"},
		{"allowed_envs item number", with(func(_, cf map[string]any) { cf["allowed_envs"] = []any{"A", 2} }), "body.compose_file.allowed_envs.1"},
		{"allowed_envs bad key", with(func(_, cf map[string]any) { cf["allowed_envs"] = []any{"1BAD"} }), "body.compose_file.allowed_envs.0"},
		{"allowed_envs duplicate", with(func(_, cf map[string]any) { cf["allowed_envs"] = []any{"A", "A"} }), "body.compose_file.allowed_envs.1"},
		{"public_logs string", with(func(_, cf map[string]any) { cf["public_logs"] = "true" }), "body.compose_file.public_logs"},
		{"public_sysinfo number", with(func(_, cf map[string]any) { cf["public_sysinfo"] = 1 }), "body.compose_file.public_sysinfo"},
		{"gateway_enabled string", with(func(_, cf map[string]any) { cf["gateway_enabled"] = "yes" }), "body.compose_file.gateway_enabled"},
		{"kms_enabled false", with(func(_, cf map[string]any) { cf["kms_enabled"] = false }), "body.compose_file.kms_enabled"},
		{"storage_fs unknown", with(func(_, cf map[string]any) { cf["storage_fs"] = "btrfs" }), "body.compose_file.storage_fs"},
		{"compose name number", with(func(_, cf map[string]any) { cf["name"] = 3 }), "body.compose_file.name"},
		{"kms unknown", with(func(b, _ map[string]any) { b["kms"] = "SOLANA" }), "body.kms"},
		{"kms lowercase", with(func(b, _ map[string]any) { b["kms"] = "ethereum" }), "body.kms"},
		{"kms number", with(func(b, _ map[string]any) { b["kms"] = 1 }), "body.kms"},
		{"kms_id number", with(func(b, _ map[string]any) { b["kms_id"] = 5 }), "body.kms_id"},
		{"kms_contract not an address", with(func(b, _ map[string]any) { b["kms_contract"] = "0x1234" }), "body.kms_contract"},
		{"instance_type unknown", with(func(b, _ map[string]any) { b["instance_type"] = "tdx.huge" }), "body.instance_type"},
		{"instance_type number", with(func(b, _ map[string]any) { b["instance_type"] = 2 }), "body.instance_type"},
		{"vcpu zero", with(func(b, _ map[string]any) { b["vcpu"] = 0 }), "body.vcpu"},
		{"vcpu fraction", with(func(b, _ map[string]any) { b["vcpu"] = 1.5 }), "body.vcpu"},
		{"vcpu string", with(func(b, _ map[string]any) { b["vcpu"] = "2" }), "body.vcpu"},
		{"memory too small", with(func(b, _ map[string]any) { b["memory"] = 100 }), "body.memory"},
		{"memory too large", with(func(b, _ map[string]any) { b["memory"] = 1 << 30 }), "body.memory"},
		{"disk_size negative", with(func(b, _ map[string]any) { b["disk_size"] = -1 }), "body.disk_size"},
		{"disk_size too large", with(func(b, _ map[string]any) { b["disk_size"] = 100000 }), "body.disk_size"},
		{"teepod_id string", with(func(b, _ map[string]any) { b["teepod_id"] = "1" }), "body.teepod_id"},
		{"node_id zero", with(func(b, _ map[string]any) { b["node_id"] = 0 }), "body.node_id"},
		{"region number", with(func(b, _ map[string]any) { b["region"] = 1 }), "body.region"},
		{"image number", with(func(b, _ map[string]any) { b["image"] = 1 }), "body.image"},
		{"listed string", with(func(b, _ map[string]any) { b["listed"] = "no" }), "body.listed"},
		{"prefer_dev number", with(func(b, _ map[string]any) { b["prefer_dev"] = 0 }), "body.prefer_dev"},
		{"env_keys not list", with(func(b, _ map[string]any) { b["env_keys"] = "A" }), "body.env_keys"},
		{"nonce negative", with(func(b, _ map[string]any) { b["nonce"] = -1 }), "body.nonce"},
		{"nonce with on-chain kms", with(func(b, _ map[string]any) { b["nonce"] = 1 }), "body.nonce"},
		{"app_id short", with(func(b, _ map[string]any) { b["app_id"] = "abc" }), "body.app_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer unchanged(t)()
			r := a.do("POST", "/cvms/provision", tt.body)
			if r.status != 422 {
				t.Fatalf("status %d, want 422: %s", r.status, r.raw)
			}
			locs := fieldLocs(t, r)
			found := false
			for _, l := range locs {
				found = found || l == tt.loc
			}
			if !found {
				t.Errorf("422 locs %v, want %s", locs, tt.loc)
			}
		})
	}
}

// TestProvisionLimits: exactly 200 KiB is accepted; one byte more is not
// (covered above).
func TestProvisionLimits(t *testing.T) {
	a := newAPI(t)
	b := provisionBody("limit-app")
	cf := b["compose_file"].(map[string]any)
	cf["docker_compose_file"] = strings.Repeat("#", cloud.MaxComposeBytes-5)
	cf["pre_launch_script"] = "#!sh\n"
	a.do("POST", "/cvms/provision", b).must(t, 200)
}

func TestProvisionResourceErrors(t *testing.T) {
	a := newAPI(t)
	tests := []struct {
		name  string
		edit  func(b map[string]any)
		code  string
		field string
	}{
		{"unknown node", func(b map[string]any) { b["teepod_id"] = 99 }, "ERR-02-001", "node_id"},
		{"unknown image", func(b map[string]any) { b["image"] = "dstack-9.9.9" }, "ERR-02-002", "image"},
		{"unknown kms_id", func(b map[string]any) { b["kms_id"] = "kms-base-prod7" }, "ERR-02-011", "kms_id"},
		{"other kms contract", func(b map[string]any) { b["kms_contract"] = "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C" }, "ERR-02-011", "kms_contract"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer unchanged(t)()
			b := provisionBody("resource-app")
			tt.edit(b)
			detail := a.do("POST", "/cvms/provision", b).must(t, 404)["detail"].(map[string]any)
			if detail["error_code"] != tt.code {
				t.Errorf("error_code %v, want %s", detail["error_code"], tt.code)
			}
			d := detail["details"].([]any)[0].(map[string]any)
			if d["field"] != tt.field {
				t.Errorf("details[0].field %v, want %s", d["field"], tt.field)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	tests := []struct{ name, key string }{{"missing key", ""}, {"wrong key", "phak_wrong"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer unchanged(t)()
			a := newAPI(t)
			a.key = tt.key
			for _, path := range []string{"/cvms/provision", "/cvms"} {
				r := a.do("POST", path, provisionBody("auth-app"))
				if r.status != 401 {
					t.Fatalf("POST %s status %d, want 401", path, r.status)
				}
				if _, ok := r.body["detail"].(string); !ok {
					t.Errorf("401 body %s, want {\"detail\": string}", r.raw)
				}
			}
			if r := a.do("GET", "/kms?is_onchain=true", nil); r.status != 401 {
				t.Errorf("GET /kms status %d, want 401", r.status)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	a := newAPI(t)
	app := deployApp(t, fmt.Sprintf("%x", shared.DeviceID[:]), "")
	a.version = cloud.Version20260522
	cvm, _ := commitFor(t, a, "version-app", app)
	id, ok := cvm["id"].(string)
	if !ok || !strings.HasPrefix(id, "cvm_") {
		t.Fatalf("2026-05-22 id = %#v, want \"cvm_…\"", cvm["id"])
	}
	a.version = cloud.Version20251028
	old := a.do("GET", "/cvms/"+id, nil).must(t, 200)
	if _, ok := old["id"].(float64); !ok {
		t.Errorf("2025-10-28 id = %#v, want a number", old["id"])
	}
	if _, ok := old["kms_info"].(map[string]any)["slug"]; !ok {
		t.Errorf("2025-10-28 kms_info is not the KmsInfo shape: %v", old["kms_info"])
	}
	a.version = "LATEST"
	if _, ok := a.do("GET", "/cvms/"+id, nil).must(t, 200)["id"].(string); !ok {
		t.Errorf("LATEST should answer the hashed-id version")
	}
	a.version = "1999-01-01"
	if r := a.do("GET", "/cvms/"+id, nil); r.status != 400 {
		t.Errorf("unknown version: status %d, want 400", r.status)
	}
}

func TestCommitRejections(t *testing.T) {
	a := newAPI(t)
	device := fmt.Sprintf("%x", shared.DeviceID[:])
	prov := a.do("POST", "/cvms/provision", provisionBody("reject-app", "GREETING")).must(t, 200)
	hash := prov["compose_hash"].(string)
	app := deployApp(t, device, hash)
	pub := a.pubkey(app.Hex())
	other, _ := crypto.GenerateKey()
	otherPub := fmt.Sprintf("%x", crypto.Keccak256(crypto.FromECDSA(other))) // some other X25519 public key
	encWrongKey, err := kms.EncryptEnv([]kms.EnvVar{{Key: "GREETING", Value: "x"}}, otherPub)
	if err != nil {
		t.Fatal(err)
	}
	encOutside, err := kms.EncryptEnv(testEnv, pub) // DB_PASSWORD is not allowed here
	if err != nil {
		t.Fatal(err)
	}
	encOK, err := kms.EncryptEnv(testEnv[:1], pub)
	if err != nil {
		t.Fatal(err)
	}
	base := func(edit func(map[string]any)) map[string]any {
		b := map[string]any{"app_id": app.Hex(), "compose_hash": hash, "encrypted_env": encOK, "kms_id": shared.KMSID,
			"contract_address": app.Hex(), "deployer_address": shared.DevAccount.Address.Hex()}
		edit(b)
		return b
	}
	tests := []struct {
		name   string
		body   any
		status int
		loc    string
	}{
		{"undecryptable env", base(func(b map[string]any) { b["encrypted_env"] = encWrongKey }), 422, "body.encrypted_env"},
		{"truncated env", base(func(b map[string]any) { b["encrypted_env"] = encOK[:40] }), 422, "body.encrypted_env"},
		{"env not hex", base(func(b map[string]any) { b["encrypted_env"] = "zz" }), 422, "body.encrypted_env"},
		{"env key outside allowed_envs", base(func(b map[string]any) { b["encrypted_env"] = encOutside }), 422, "body.encrypted_env"},
		{"env_keys disagree", base(func(b map[string]any) { b["env_keys"] = []string{"OTHER"} }), 422, "body.env_keys"},
		{"app_id missing", base(func(b map[string]any) { delete(b, "app_id") }), 422, "body.app_id"},
		{"app_id number", base(func(b map[string]any) { b["app_id"] = 7 }), 422, "body.app_id"},
		{"app_id short", base(func(b map[string]any) { b["app_id"] = "0x1234" }), 422, "body.app_id"},
		{"compose_hash missing", base(func(b map[string]any) { delete(b, "compose_hash") }), 422, "body.compose_hash"},
		{"compose_hash not hex", base(func(b map[string]any) { b["compose_hash"] = strings.Repeat("g", 64) }), 422, "body.compose_hash"},
		{"encrypted_env number", base(func(b map[string]any) { b["encrypted_env"] = 5 }), 422, "body.encrypted_env"},
		{"env_keys string", base(func(b map[string]any) { b["env_keys"] = "GREETING" }), 422, "body.env_keys"},
		{"kms_id other", base(func(b map[string]any) { b["kms_id"] = "phala" }), 422, "body.kms_id"},
		{"contract_address differs", base(func(b map[string]any) { b["contract_address"] = shared.KMSContract.Hex() }), 422, "body.contract_address"},
		{"deployer_address bad", base(func(b map[string]any) { b["deployer_address"] = "me" }), 422, "body.deployer_address"},
		{"transaction_hash bad", base(func(b map[string]any) { b["transaction_hash"] = "0x12" }), 422, "body.transaction_hash"},
		{"unknown compose hash", base(func(b map[string]any) { b["compose_hash"] = strings.Repeat("0", 64) }), 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer unchanged(t)()
			r := a.do("POST", "/cvms", tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if tt.loc != "" {
				if locs := fieldLocs(t, r); len(locs) == 0 || locs[0] != tt.loc {
					t.Errorf("locs %v, want %s", locs, tt.loc)
				}
			} else if code := r.body["detail"].(map[string]any)["error_code"]; code != "ERR-01-006" {
				t.Errorf("error_code %v, want ERR-01-006", code)
			}
			if strings.Contains(string(r.raw), testEnv[1].Value) {
				t.Errorf("error body leaks an env value")
			}
		})
	}
	// The valid commit still works after all the rejections.
	a.do("POST", "/cvms", base(func(map[string]any) {})).must(t, 200)
}

// TestAppIDConflict: a second compose hash for an app that has a CVM is a
// 409 with ERR-03-007, and stores nothing.
func TestAppIDConflict(t *testing.T) {
	a := newAPI(t)
	app := deployApp(t, fmt.Sprintf("%x", shared.DeviceID[:]), "")
	commitFor(t, a, "conflict-app", app)
	prov := a.do("POST", "/cvms/provision", provisionBody("conflict-app", "GREETING")).must(t, 200)
	defer unchanged(t)()
	r := a.do("POST", "/cvms", map[string]any{"app_id": app.Hex(), "compose_hash": prov["compose_hash"]})
	detail := r.must(t, 409)["detail"].(map[string]any)
	if detail["error_code"] != "ERR-03-007" {
		t.Errorf("error_code %v, want ERR-03-007", detail["error_code"])
	}
	for _, k := range []string{"message", "details", "suggestions", "links"} {
		if _, ok := detail[k]; !ok {
			t.Errorf("structured error lacks %q", k)
		}
	}
}

func TestKMSEndpoints(t *testing.T) {
	a := newAPI(t)
	page := a.do("GET", "/kms?is_onchain=true", nil).must(t, 200)
	items := page["items"].([]any)
	if len(items) != 1 || page["total"] != float64(1) || page["page"] != float64(1) || page["pages"] != float64(1) {
		t.Fatalf("on-chain KMS page = %v", page)
	}
	item := items[0].(map[string]any)
	if item["slug"] != shared.KMSID || !strings.EqualFold(item["kms_contract_address"].(string), shared.KMSContract.Hex()) {
		t.Errorf("KMS item = %v", item)
	}
	if off := a.do("GET", "/kms?is_onchain=false", nil).must(t, 200); off["items"].([]any)[0].(map[string]any)["chain_id"] != nil {
		t.Errorf("cloud KMS should have chain_id null: %v", off)
	}
	one := a.do("GET", "/kms/"+shared.KMSID, nil).must(t, 200)
	if one["k256_pubkey"] != fmt.Sprintf("0x%x", shared.RootPublicKey) {
		t.Errorf("k256_pubkey = %v, want the root key", one["k256_pubkey"])
	}
	tests := []struct {
		path   string
		status int
	}{
		{"/kms/kms-nope", 404},
		{"/kms/base/pubkey/" + strings.Repeat("ab", 20), 404}, // the kms type is not a slug
		{"/kms/" + shared.KMSID + "/pubkey/0x1234", 422},
		{"/kms/" + shared.KMSID + "/pubkey/" + strings.Repeat("zz", 20), 422},
		{"/kms/" + shared.KMSID + "/pubkey/" + strings.Repeat("ab", 20) + "?v1=maybe", 422},
		{"/kms?page_size=0", 422},
		{"/kms?is_onchain=perhaps", 422},
		{"/nope", 404},
	}
	for _, tt := range tests {
		if r := a.do("GET", tt.path, nil); r.status != tt.status {
			t.Errorf("GET %s: status %d, want %d (%s)", tt.path, r.status, tt.status, r.raw)
		} else if _, ok := r.body["detail"]; !ok {
			t.Errorf("GET %s: error body without detail: %s", tt.path, r.raw)
		}
	}
}

// TestCloudKMS: kms PHALA answers app_id and app_env_encrypt_pubkey, and
// boots without the chain.
func TestCloudKMS(t *testing.T) {
	a := newAPI(t)
	b := provisionBody("cloud-kms-app")
	b["kms"] = "PHALA"
	prov := a.do("POST", "/cvms/provision", b).must(t, 200)
	appID, _ := prov["app_id"].(string)
	pub, _ := prov["app_env_encrypt_pubkey"].(string)
	if len(appID) != 40 || len(pub) != 64 {
		t.Fatalf("PHALA provision app_id %q pubkey %q", appID, pub)
	}
	if prov["kms_info"].(map[string]any)["chain_id"] != nil {
		t.Errorf("cloud KMS kms_info.chain_id should be null")
	}
	enc, err := kms.EncryptEnv(testEnv, pub)
	if err != nil {
		t.Fatal(err)
	}
	if r := a.do("POST", "/cvms", map[string]any{"app_id": strings.Repeat("1", 40), "compose_hash": prov["compose_hash"], "encrypted_env": enc}); r.status != 422 {
		t.Errorf("commit with another app id: status %d, want 422", r.status)
	}
	cvm := a.do("POST", "/cvms", map[string]any{"app_id": appID, "compose_hash": prov["compose_hash"], "encrypted_env": enc}).must(t, 200)
	if st := a.waitStatus(cvm["vm_uuid"].(string)); st["status"] != cloud.StatusRunning {
		t.Fatalf("cloud-KMS CVM ended %v", st)
	}
	logHas(t, "cloud kms boot", "app="+appID)
}

package phala

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const (
	hashA   = "6c7e0e1dbd3c3ff2b1e4b9e1b0a48b5d6b2b8a1f0c9e8d7c6b5a4f3e2d1c0b0a"
	device1 = "e5a0c70bb6503de2d31c11d85914fe3776ed5b33a078ed856327c371a60fe0fd"
	appIDCS = "0x21dB43cDD6FbD4998FF67Af132F953747BFaCb97"
	kmsAddr = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
)

func TestProvisionRequestMatchesCLIBody(t *testing.T) {
	// The body CLI 1.1.18 sends for `deploy --kms ethereum` (reference §15.A.1).
	req := ProvisionRequest{
		Name:         "trace-app-1",
		InstanceType: "tdx.small",
		ComposeFile: ComposeFile{
			AllowedEnvs:       []string{"GREETING", "DB_PASSWORD"},
			DockerComposeFile: "services:\n  web:\n    command: a && b <x>\n",
			PublicLogs:        ptr(true),
			PublicSysinfo:     ptr(true),
		},
		KMS: KMSEthereum,
	}
	// marshalJSON is what the client sends with: no HTML escaping.
	b, err := marshalJSON(req)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, b, `{"name":"trace-app-1",
	 "compose_file":{"allowed_envs":["GREETING","DB_PASSWORD"],
	                 "docker_compose_file":"services:\n  web:\n    command: a && b <x>\n",
	                 "name":"","public_logs":true,"public_sysinfo":true},
	 "listed":false,"kms":"ETHEREUM","prefer_dev":false,"instance_type":"tdx.small"}`)
	if !bytes.Contains(b, []byte("a && b <x>")) {
		t.Fatalf("compose text was HTML-escaped: %s", b)
	}
}

func TestProvisionRequestWire(t *testing.T) {
	tests := []struct {
		name string
		req  ProvisionRequest
		want string
	}{
		{
			name: "nil allowed_envs is sent as []",
			req:  ProvisionRequest{Name: "abcde", ComposeFile: ComposeFile{DockerComposeFile: "x"}},
			want: `{"name":"abcde","compose_file":{"docker_compose_file":"x","allowed_envs":[],"name":""},"listed":false,"prefer_dev":false}`,
		},
		{
			name: "node id goes out as teepod_id",
			req:  ProvisionRequest{Name: "abcde", NodeID: ptr(int64(7)), ComposeFile: ComposeFile{DockerComposeFile: "x"}},
			want: `{"name":"abcde","teepod_id":7,"compose_file":{"docker_compose_file":"x","allowed_envs":[],"name":""},"listed":false,"prefer_dev":false}`,
		},
		{
			name: "extra members pass through, clashing ones are dropped",
			req: ProvisionRequest{Name: "abcde", ComposeFile: ComposeFile{DockerComposeFile: "x", Extra: Extra{"secure_time": json.RawMessage(`true`)}},
				Extra: Extra{"kms_type": json.RawMessage(`"base"`), "name": json.RawMessage(`"evil"`)}},
			want: `{"name":"abcde","compose_file":{"docker_compose_file":"x","allowed_envs":[],"name":"","secure_time":true},"listed":false,"prefer_dev":false,"kms_type":"base"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, b, tt.want)
		})
	}
}

func TestProvisionRequestDecode(t *testing.T) {
	var r ProvisionRequest
	body := `{"name":"abcde","node_id":3,"compose_file":{"docker_compose_file":"x","allowed_envs":["A"],"name":"","key_provider":"kms"},"kms":"BASE","listed":true,"future":1}`
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.NodeID == nil || *r.NodeID != 3 {
		t.Fatalf("node_id alias not decoded: %+v", r.NodeID)
	}
	if _, ok := r.Extra["node_id"]; ok {
		t.Fatalf("node_id kept as extra too: %v", r.Extra)
	}
	if string(r.Extra["future"]) != "1" || string(r.ComposeFile.Extra["key_provider"]) != `"kms"` {
		t.Fatalf("unknown members lost: %v / %v", r.Extra, r.ComposeFile.Extra)
	}
	if r.KMS != KMSBase || !r.Listed || r.ComposeFile.AllowedEnvs[0] != "A" {
		t.Fatalf("decoded %+v", r)
	}
}

func TestProvisionRequestCheck(t *testing.T) {
	ok := func() ProvisionRequest {
		return ProvisionRequest{Name: "my-app", ComposeFile: ComposeFile{DockerComposeFile: "services: {}", AllowedEnvs: []string{"A_1"}}}
	}
	big := strings.Repeat("x", MaxComposePayload-10)
	tests := []struct {
		name string
		mut  func(*ProvisionRequest)
		ok   bool
	}{
		{"valid", func(*ProvisionRequest) {}, true},
		{"bad name", func(r *ProvisionRequest) { r.Name = "1app" }, false},
		{"empty compose", func(r *ProvisionRequest) { r.ComposeFile.DockerComposeFile = " " }, false},
		{"compose at the limit", func(r *ProvisionRequest) {
			r.ComposeFile.DockerComposeFile = big
			r.ComposeFile.PreLaunchScript = ptr(strings.Repeat("y", 10))
		}, true},
		{"compose plus script over 200 KiB", func(r *ProvisionRequest) {
			r.ComposeFile.DockerComposeFile = big
			r.ComposeFile.PreLaunchScript = ptr(strings.Repeat("y", 11))
		}, false},
		{"unknown kms", func(r *ProvisionRequest) { r.KMS = "SOLANA" }, false},
		{"prefer_dev with on-chain KMS", func(r *ProvisionRequest) { r.KMS, r.PreferDev = KMSBase, true }, false},
		{"bad storage fs", func(r *ProvisionRequest) { r.ComposeFile.StorageFS = "btrfs" }, false},
		{"zero vcpu", func(r *ProvisionRequest) { r.VCPU = ptr(0) }, false},
		{"bad env key", func(r *ProvisionRequest) { r.ComposeFile.AllowedEnvs = []string{"1BAD"} }, false},
		{"bad custom app id", func(r *ProvisionRequest) { r.AppID = "0x1234" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.mut(&r)
			err := r.Check()
			if tt.ok != (err == nil) {
				t.Fatalf("Check() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("%v does not wrap ErrInvalidInput", err)
			}
		})
	}
}

// kmsInfoJSONDoc is a complete kms_info as the local chain's KMS reports it.
const kmsInfoJSONDoc = `{"id":"kms_1","slug":"kms-test-local","url":"http://127.0.0.1:9000","version":"v0.5.3","chain_id":31337,"kms_contract_address":"` + kmsAddr + `","gateway_app_id":null}`

func TestProvisionResponseDecode(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantErr   string // substring; "" means success
		wantField string
		check     func(t *testing.T, r ProvisionResponse)
	}{
		{
			name: "on-chain answer",
			body: `{"app_id":null,"compose_hash":"` + hashA + `","device_id":"` + device1 + `","kms_info":` + kmsInfoJSONDoc + `,"teepod_id":2,"os_image_hash":"ab","fmspc":"00906ED50000","instance_type":"tdx.small","kms_id":"kms-test-local"}`,
			check: func(t *testing.T, r ProvisionResponse) {
				if !r.OnChain() || r.ComposeHash != hashA || *r.DeviceID != device1 || *r.NodeID != 2 || r.KMSInfo.Ref() != "kms-test-local" {
					t.Fatalf("decoded %+v", r)
				}
				if *r.KMSInfo.ChainID != 31337 || *r.KMSInfo.KMSContractAddress != kmsAddr || r.KMSInfo.GatewayAppID != nil {
					t.Fatalf("kms_info %+v", r.KMSInfo)
				}
			},
		},
		{
			name: "sha256: prefix stripped",
			body: `{"compose_hash":"sha256:` + hashA + `"}`,
			check: func(t *testing.T, r ProvisionResponse) {
				if r.ComposeHash != hashA {
					t.Fatalf("compose_hash %q", r.ComposeHash)
				}
			},
		},
		{
			name: "0x prefix and upper case normalised",
			body: `{"compose_hash":"0x` + strings.ToUpper(hashA) + `","device_id":"0x` + device1 + `"}`,
			check: func(t *testing.T, r ProvisionResponse) {
				if r.ComposeHash != hashA || *r.DeviceID != device1 {
					t.Fatalf("decoded %q %q", r.ComposeHash, *r.DeviceID)
				}
			},
		},
		{
			name: "node_id accepted for teepod_id, unknown members kept",
			body: `{"compose_hash":"` + hashA + `","node_id":9,"compose_hash_registered":false,"brand_new":{"a":1}}`,
			check: func(t *testing.T, r ProvisionResponse) {
				if r.NodeID == nil || *r.NodeID != 9 || *r.ComposeHashRegistered || string(r.Extra["brand_new"]) != `{"a":1}` {
					t.Fatalf("decoded %+v", r)
				}
			},
		},
		{name: "missing compose_hash", body: `{"app_id":null}`, wantErr: "missing", wantField: "compose_hash"},
		{name: "compose_hash too short", body: `{"compose_hash":"abcd"}`, wantErr: "64 hex", wantField: "compose_hash"},
		{name: "compose_hash not a string", body: `{"compose_hash":5}`, wantErr: "cannot unmarshal", wantField: "compose_hash"},
		{name: "device_id malformed", body: `{"compose_hash":"` + hashA + `","device_id":"abcd"}`, wantErr: "64 hex", wantField: "device_id"},
		{name: "chain_id as a string", body: `{"compose_hash":"` + hashA + `","kms_info":` + strings.Replace(kmsInfoJSONDoc, "31337", `"31337"`, 1) + `}`, wantErr: "cannot unmarshal", wantField: "kms_info.chain_id"},
		{name: "kms_info not an object", body: `{"compose_hash":"` + hashA + `","kms_info":[1]}`, wantErr: "expected a JSON object"},
		{name: "array body", body: `[]`, wantErr: "expected a JSON object"},
	}
	// Every one of the seven kms_info keys is required (CLI 1.1.18 rejects the answer otherwise).
	for _, k := range kmsInfoKeys {
		var m map[string]any
		json.Unmarshal([]byte(kmsInfoJSONDoc), &m)
		delete(m, k)
		ki, _ := json.Marshal(m)
		tests = append(tests, struct {
			name      string
			body      string
			wantErr   string
			wantField string
			check     func(t *testing.T, r ProvisionResponse)
		}{name: "kms_info without " + k, body: `{"compose_hash":"` + hashA + `","kms_info":` + string(ki) + `}`, wantErr: "missing", wantField: k})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r ProvisionResponse
			err := json.Unmarshal([]byte(tt.body), &r)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				tt.check(t, r)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decode error = %v, want %q", err, tt.wantErr)
			}
			if tt.wantField != "" {
				var fe *fieldError
				var te *json.UnmarshalTypeError
				field := ""
				switch {
				case errors.As(err, &fe):
					field = fe.field
				case errors.As(err, &te):
					field = te.Field
				}
				if field != tt.wantField {
					t.Fatalf("field = %q, want %q (err %v)", field, tt.wantField, err)
				}
			}
		})
	}
}

func TestProvisionResponseOnChain(t *testing.T) {
	full := func() *KMSInfo {
		return &KMSInfo{ID: "k", URL: "u", Version: "v", ChainID: ptr(int64(8453)), KMSContractAddress: ptr(kmsAddr)}
	}
	tests := []struct {
		name string
		r    ProvisionResponse
		want bool
	}{
		{"null app id with chain and contract", ProvisionResponse{KMSInfo: full()}, true},
		{"empty app id counts as absent", ProvisionResponse{AppID: ptr(""), KMSInfo: full()}, true},
		{"app id set means cloud KMS", ProvisionResponse{AppID: ptr("abc"), KMSInfo: full()}, false},
		{"no kms_info", ProvisionResponse{}, false},
		{"no chain id", ProvisionResponse{KMSInfo: &KMSInfo{KMSContractAddress: ptr(kmsAddr)}}, false},
		{"no contract", ProvisionResponse{KMSInfo: &KMSInfo{ChainID: ptr(int64(1))}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.OnChain(); got != tt.want {
				t.Fatalf("OnChain() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProvisionResponseMarshalShape(t *testing.T) {
	r := ProvisionResponse{
		ComposeHash: hashA,
		DeviceID:    ptr(device1),
		KMSInfo:     &KMSInfo{ID: "kms_1", URL: "http://127.0.0.1:9000", Version: "v0.5.3", ChainID: ptr(int64(31337)), KMSContractAddress: ptr(kmsAddr)},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, b, `{"app_id":null,"compose_hash":"`+hashA+`","device_id":"`+device1+`",
	  "kms_info":{"id":"kms_1","slug":null,"url":"http://127.0.0.1:9000","version":"v0.5.3","chain_id":31337,"kms_contract_address":"`+kmsAddr+`","gateway_app_id":null}}`)
	var back ProvisionResponse
	if err := json.Unmarshal(b, &back); err != nil || !back.OnChain() || back.KMSInfo.Ref() != "kms_1" {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestCVMMarshalShapeForCLI(t *testing.T) {
	// The keys CLI 1.1.18 requires in the commit answer must be present,
	// with id and teepod_id as numbers (reference §15.B).
	c := CVM{ID: IntID(42), Name: "trace-app-1", Status: "creating", TeepodID: ptr(int64(2)),
		AppID: ptr("21db43cdd6fbd4998ff67af132f953747bfacb97"), VMUUID: ptr("2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55"),
		VCPU: 2, Memory: 2048, DiskSize: 20, CreatedAt: "2025-11-01T00:00:00Z"}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	m := objectKeys(t, b)
	for _, k := range []string{"id", "name", "status", "teepod_id", "teepod", "user_id", "app_id", "vm_uuid", "instance_id", "base_image", "vcpu", "memory", "disk_size", "docker_compose_file", "created_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %s", k, b)
		}
	}
	if string(m["id"]) != "42" || string(m["teepod_id"]) != "2" || string(m["teepod"]) != "null" || string(m["user_id"]) != "null" {
		t.Fatalf("wrong id/teepod shapes: %s", b)
	}
}

func TestCVMDecode(t *testing.T) {
	base := `"name":"a","status":"running","teepod_id":1,"teepod":{"id":1,"name":"node-1"},"user_id":7,"app_id":"ab","vm_uuid":"u","instance_id":null,"base_image":"dstack-0.5.5","vcpu":1,"memory":2048,"disk_size":20,"docker_compose_file":null,"created_at":"x"`
	tests := []struct {
		name    string
		body    string
		wantErr string
		check   func(t *testing.T, c CVM)
	}{
		{"integer id", `{"id":12,` + base + `}`, "", func(t *testing.T, c CVM) {
			if n, ok := c.ID.Int(); !ok || n != 12 || c.Teepod.Name != "node-1" || c.UserID.String() != "7" {
				t.Fatalf("decoded %+v", c)
			}
		}},
		{"hashed string id", `{"id":"cvm_abc","user_id":"usr_1","name":"a","status":"running"}`, "", func(t *testing.T, c CVM) {
			if _, ok := c.ID.Int(); ok || c.ID.String() != "cvm_abc" || c.UserID.String() != "usr_1" {
				t.Fatalf("decoded %+v", c)
			}
		}},
		{"2026-01-21 kms_info shape is kept aside", `{"id":1,"name":"a","status":"running","kms_info":{"chain_id":8453,"dstack_kms_address":"0x1"}}`, "", func(t *testing.T, c CVM) {
			if c.KMSInfo != nil || !strings.Contains(string(c.Extra["kms_info"]), "dstack_kms_address") {
				t.Fatalf("decoded %+v extra %v", c.KMSInfo, c.Extra)
			}
			b, _ := json.Marshal(c)
			if !strings.Contains(string(b), "dstack_kms_address") {
				t.Fatalf("round trip lost kms_info: %s", b)
			}
		}},
		{"2025-10-28 kms_info decoded", `{"id":1,"name":"a","status":"running","in_progress":true,"kms_info":` + kmsInfoJSONDoc + `}`, "", func(t *testing.T, c CVM) {
			if c.KMSInfo == nil || c.KMSInfo.Ref() != "kms-test-local" || !*c.InProgress {
				t.Fatalf("decoded %+v", c)
			}
		}},
		{"missing id", `{` + base + `}`, `"id" is missing`, nil},
		{"null id", `{"id":null,` + base + `}`, `"id" is null`, nil},
		{"fractional id", `{"id":1.5,` + base + `}`, "neither an integer", nil},
		{"missing status", `{"id":1,"name":"a"}`, `"status" is missing`, nil},
		{"vcpu as string", `{"id":1,"name":"a","status":"s","vcpu":"2"}`, "cannot unmarshal", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c CVM
			err := json.Unmarshal([]byte(tt.body), &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestIDJSON(t *testing.T) {
	tests := []struct {
		in, out, str string
	}{
		{`123`, `123`, "123"},
		{`"cvm_x1"`, `"cvm_x1"`, "cvm_x1"},
		{`null`, `null`, ""},
	}
	for _, tt := range tests {
		var id ID
		if err := json.Unmarshal([]byte(tt.in), &id); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		b, _ := json.Marshal(id)
		if string(b) != tt.out || id.String() != tt.str {
			t.Fatalf("%s -> %s / %q", tt.in, b, id.String())
		}
	}
	for _, bad := range []string{`1.5`, `true`, `{}`} {
		var id ID
		if err := json.Unmarshal([]byte(bad), &id); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

func TestAppPubKey(t *testing.T) {
	const pk = "8f4a1d6e0c2b3a59687766554433221100ffeeddccbbaa998877665544332211"
	const sig = "aa11"
	t.Run("encodes exactly public_key and signature", func(t *testing.T) {
		b, _ := json.Marshal(AppPubKey{PublicKey: pk, Signature: ""})
		if string(b) != `{"public_key":"`+pk+`","signature":""}` {
			t.Fatalf("got %s", b)
		}
	})
	tests := []struct {
		name, body, wantErr string
	}{
		{"strict shape", `{"public_key":"` + pk + `","signature":"` + sig + `"}`, ""},
		{"extra keys from the KMS tolerated", `{"public_key":"0x` + strings.ToUpper(pk) + `","signature":"0x` + sig + `","timestamp":1700000000,"signature_v1":"bb","other":1}`, ""},
		{"empty signature accepted", `{"public_key":"` + pk + `","signature":""}`, ""},
		{"missing signature", `{"public_key":"` + pk + `"}`, `"signature" is missing`},
		{"null public key", `{"public_key":null,"signature":""}`, `"public_key" is null`},
		{"short public key", `{"public_key":"abcd","signature":""}`, "32 bytes"},
		{"non-hex signature", `{"public_key":"` + pk + `","signature":"zz"}`, "not hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p AppPubKey
			err := json.Unmarshal([]byte(tt.body), &p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || p.PublicKey != pk {
				t.Fatalf("decoded %+v, %v", p, err)
			}
		})
	}
}

func TestCVMStateJSON(t *testing.T) {
	var s CVMState
	if err := json.Unmarshal([]byte(`{"name":"a","status":"starting","boot_progress":"kms","uptime":"1s","x":1}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.Status != "starting" || s.BootProgress != "kms" || string(s.Extra["x"]) != "1" {
		t.Fatalf("decoded %+v", s)
	}
	if err := json.Unmarshal([]byte(`{"name":"a"}`), &s); err == nil {
		t.Fatal("state without status accepted")
	}
	b, _ := json.Marshal(CVMState{Name: "a", Status: "running"})
	if string(b) != `{"name":"a","status":"running"}` {
		t.Fatalf("optional members not omitted: %s", b)
	}
}

func TestKMSPageJSON(t *testing.T) {
	b, _ := json.Marshal(KMSPage{Page: 1, PageSize: 100})
	jsonEqual(t, b, `{"items":[],"total":0,"page":1,"page_size":100,"pages":0}`)
	var p KMSPage
	if err := json.Unmarshal([]byte(`{"total":0}`), &p); err == nil {
		t.Fatal("page without items accepted")
	}
}

func TestPatchCVMRequestAllowedEnvs(t *testing.T) {
	tests := []struct {
		name string
		req  PatchCVMRequest
		want string
	}{
		{"nil is absent", PatchCVMRequest{VCPU: ptr(2)}, `{"vcpu":2}`},
		{"empty clears", PatchCVMRequest{AllowedEnvs: []string{}}, `{"allowed_envs":[]}`},
		{"set", PatchCVMRequest{DockerComposeFile: ptr("a && b"), AllowedEnvs: []string{"A"}}, `{"docker_compose_file":"a && b","allowed_envs":["A"]}`},
		{"extra", PatchCVMRequest{Extra: Extra{"gpus_v2": json.RawMessage(`1`)}}, `{"gpus_v2":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := marshalJSON(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got %s, want %s", b, tt.want)
			}
			var back PatchCVMRequest
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if (back.AllowedEnvs == nil) != (tt.req.AllowedEnvs == nil) || len(back.Extra) != len(tt.req.Extra) {
				t.Fatalf("round trip: %+v", back)
			}
		})
	}
}

func TestCommitRequestDecodesCLIBody(t *testing.T) {
	// The commit body of CLI 1.1.18 (reference §15.A.3), plus a member from
	// a newer client that must survive a decode/encode round trip.
	body := `{"app_id":"` + appIDCS + `","encrypted_env":"ab12","compose_hash":"` + hashA + `","kms_id":"kms-test-local",` +
		`"contract_address":"` + appIDCS + `","deployer_address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","future_flag":true}`
	var r CommitRequest
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.AppID != appIDCS || r.ContractAddress != appIDCS || r.KMSID != "kms-test-local" || r.EncryptedEnv != "ab12" || string(r.Extra["future_flag"]) != "true" {
		t.Fatalf("decoded %+v", r)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	b, err := marshalJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, b, body)
}

package phala

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

var okProvision = `{"app_id":null,"compose_hash":"` + hashA + `","device_id":"` + device1 + `","kms_info":` + kmsInfoJSONDoc + `,"teepod_id":2,"instance_type":"tdx.small"}`

var okCVM = `{"id":42,"name":"trace-app-1","status":"creating","teepod_id":2,"teepod":{"id":2,"name":"node-2"},"user_id":null,
"app_id":"21db43cdd6fbd4998ff67af132f953747bfacb97","vm_uuid":"2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55","instance_id":null,
"base_image":"dstack-0.5.5","vcpu":1,"memory":2048,"disk_size":20,"docker_compose_file":"services: {}","created_at":"2025-11-01T00:00:00Z",
"app_auth_contract_address":"0x21db43cdd6fbd4998ff67af132f953747bfacb97","deployer_address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"}`

func validProvisionRequest() ProvisionRequest {
	return ProvisionRequest{
		Name:        "trace-app-1",
		KMS:         KMSEthereum,
		ComposeFile: ComposeFile{DockerComposeFile: "services:\n  web:\n    command: sh -c 'a && b'\n", AllowedEnvs: []string{"GREETING"}, PublicLogs: ptr(true), PublicSysinfo: ptr(true)},
	}
}

func TestHeadersOnEveryRequest(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		writeJSON(w, 200, `{"items":[],"total":0,"page":1,"page_size":100,"pages":0}`)
	})
	tests := []struct {
		name        string
		mut         func(*Config)
		wantVersion string
		wantUA      string
	}{
		{"defaults to the newest version", nil, DefaultVersion, DefaultUserAgent},
		{"version and user agent are settable", func(c *Config) { c.Version = "2026-01-21"; c.UserAgent = "cvmdeploy/test" }, "2026-01-21", "cvmdeploy/test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var muts []func(*Config)
			if tt.mut != nil {
				muts = append(muts, tt.mut)
			}
			c, _ := newClient(t, srv, muts...)
			if _, err := c.ListKMSContracts(context.Background()); err != nil {
				t.Fatal(err)
			}
			all := rec.all()
			h := all[len(all)-1].Header
			for k, want := range map[string]string{
				"X-API-Key": testKey, "X-Phala-Version": tt.wantVersion, "Content-Type": "application/json",
				"Accept": "application/json", "User-Agent": tt.wantUA,
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if h.Get("Authorization") != "" {
				t.Errorf("unexpected Authorization header")
			}
		})
	}
}

func TestProvision(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		writeJSON(w, 200, okProvision)
	})
	// 2025-10-28 predates the same-path flow: POST /cvms/provision at once.
	c, _ := newClient(t, srv, func(c *Config) { c.Version = Version20251028 })
	got, err := c.Provision(context.Background(), validProvisionRequest())
	if err != nil {
		t.Fatal(err)
	}
	if !got.OnChain() || got.ComposeHash != hashA || *got.DeviceID != device1 || got.KMSInfo.Ref() != "kms-test-local" || got.Via != ProvisionLegacyPath {
		t.Fatalf("decoded %+v", got)
	}
	r := rec.all()[0]
	if r.Method != "POST" || r.Path != "/api/v1/cvms/provision" {
		t.Fatalf("sent %s %s", r.Method, r.Path)
	}
	jsonEqual(t, r.Body, `{"name":"trace-app-1","instance_type":"tdx.small",
	  "compose_file":{"docker_compose_file":"services:\n  web:\n    command: sh -c 'a && b'\n","allowed_envs":["GREETING"],"name":"","public_logs":true,"public_sysinfo":true},
	  "listed":false,"kms":"ETHEREUM","prefer_dev":false}`)
	if !strings.Contains(string(r.Body), "a && b") {
		t.Fatalf("body HTML-escaped: %s", r.Body)
	}

	t.Run("instance type not defaulted when vcpu is given", func(t *testing.T) {
		req := validProvisionRequest()
		req.VCPU = ptr(2)
		if _, err := c.Provision(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		all := rec.all()
		if m := objectKeys(t, all[len(all)-1].Body); m["instance_type"] != nil || string(m["vcpu"]) != "2" {
			t.Fatalf("body %s", all[len(all)-1].Body)
		}
	})
	t.Run("invalid request is refused before sending", func(t *testing.T) {
		before := rec.count()
		req := validProvisionRequest()
		req.Name = "x"
		if _, err := c.Provision(context.Background(), req); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("err = %v", err)
		}
		if rec.count() != before {
			t.Fatal("an invalid request was sent")
		}
	})
}

func TestCommit(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		writeJSON(w, 200, okCVM)
	})
	c, _ := newClient(t, srv)
	cvm, err := c.Commit(context.Background(), CommitRequest{
		AppID: appIDCS, ComposeHash: hashA, EncryptedEnv: "ab12", KMSID: "kms-test-local",
		ContractAddress: appIDCS, DeployerAddress: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := cvm.ID.Int(); !ok || n != 42 || *cvm.VMUUID != "2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55" || *cvm.TeepodID != 2 {
		t.Fatalf("decoded %+v", cvm)
	}
	r := rec.all()[0]
	if r.Method != "POST" || r.Path != "/api/v1/cvms" {
		t.Fatalf("sent %s %s", r.Method, r.Path)
	}
	jsonEqual(t, r.Body, `{"app_id":"`+appIDCS+`","compose_hash":"`+hashA+`","encrypted_env":"ab12","kms_id":"kms-test-local",
	  "contract_address":"`+appIDCS+`","deployer_address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"}`)

	for name, bad := range map[string]CommitRequest{
		"bad app id":           {AppID: "0x12", ComposeHash: hashA},
		"bad compose hash":     {AppID: appIDCS, ComposeHash: "abc"},
		"odd encrypted env":    {AppID: appIDCS, ComposeHash: hashA, EncryptedEnv: "abc"},
		"bad deployer address": {AppID: appIDCS, ComposeHash: hashA, DeployerAddress: "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"},
	} {
		t.Run(name, func(t *testing.T) {
			before := rec.count()
			if _, err := c.Commit(context.Background(), bad); !errors.Is(err, ErrInvalidInput) || rec.count() != before {
				t.Fatalf("err = %v, sent %d", err, rec.count()-before)
			}
		})
	}
}

func TestKMSEndpoints(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		switch {
		case r.URL.Path == "/api/v1/kms":
			writeJSON(w, 200, `{"items":[`+kmsInfoJSONDoc+`],"total":1,"page":1,"page_size":100,"pages":1}`)
		case strings.Contains(r.URL.Path, "/pubkey/"):
			writeJSON(w, 200, `{"public_key":"8f4a1d6e0c2b3a59687766554433221100ffeeddccbbaa998877665544332211","signature":"00"}`)
		default:
			writeJSON(w, 200, kmsInfoJSONDoc)
		}
	})
	c, _ := newClient(t, srv)
	ctx := context.Background()

	page, err := c.ListOnChainKMS(ctx)
	if err != nil || len(page.Items) != 1 || page.Items[0].Ref() != "kms-test-local" || page.Pages != 1 {
		t.Fatalf("ListOnChainKMS = %+v, %v", page, err)
	}
	if q := rec.all()[0].RawQuery; q != "is_onchain=true&page_size=100" {
		t.Fatalf("query %q", q)
	}

	k, err := c.GetKMS(ctx, "kms-test-local")
	if err != nil || *k.ChainID != 31337 {
		t.Fatalf("GetKMS = %+v, %v", k, err)
	}
	if p := rec.all()[1].Path; p != "/api/v1/kms/kms-test-local" {
		t.Fatalf("path %q", p)
	}

	pk, err := c.AppPubKey(ctx, "kms-test-local", appIDCS)
	if err != nil || pk.Signature != "00" {
		t.Fatalf("AppPubKey = %+v, %v", pk, err)
	}
	if p := rec.all()[2]; p.Method != "GET" || p.Path != "/api/v1/kms/kms-test-local/pubkey/"+appIDCS || len(p.Body) != 0 {
		t.Fatalf("sent %s %s %q", p.Method, p.Path, p.Body)
	}

	for name, call := range map[string]func() error{
		"empty slug":     func() error { _, err := c.GetKMS(ctx, " "); return err },
		"pubkey bad app": func() error { _, err := c.AppPubKey(ctx, "kms-test-local", "base"); return err },
		"pubkey no slug": func() error { _, err := c.AppPubKey(ctx, "", appIDCS); return err },
	} {
		t.Run(name, func(t *testing.T) {
			before := rec.count()
			if err := call(); !errors.Is(err, ErrInvalidInput) || rec.count() != before {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("path segments are escaped", func(t *testing.T) {
		if _, err := c.GetKMS(ctx, "../cvms"); err != nil {
			t.Fatal(err)
		}
		all := rec.all()
		if got := all[len(all)-1].RawPath; got != "/api/v1/kms/..%2Fcvms" {
			t.Fatalf("escaped path %q", got)
		}
	})
}

func TestCVMEndpointsNormaliseIDs(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		if strings.HasSuffix(r.URL.Path, "/state") {
			writeJSON(w, 200, `{"name":"trace-app-1","status":"running","uptime":"5s"}`)
			return
		}
		writeJSON(w, 200, okCVM)
	})
	c, _ := newClient(t, srv)
	ctx := context.Background()
	tests := []struct {
		id, wantPath string
	}{
		{"2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55", "/api/v1/cvms/2f0a1c1e7f434c869d8c3b7f3f1f0e55"},
		{"21db43cdd6fbd4998ff67af132f953747bfacb97", "/api/v1/cvms/app_21db43cdd6fbd4998ff67af132f953747bfacb97"},
		{"42", "/api/v1/cvms/42"},
		{"trace-app-1", "/api/v1/cvms/trace-app-1"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if _, err := c.GetCVM(ctx, tt.id); err != nil {
				t.Fatal(err)
			}
			st, err := c.CVMState(ctx, tt.id)
			if err != nil || st.Status != "running" {
				t.Fatalf("CVMState = %+v, %v", st, err)
			}
			all := rec.all()
			if all[len(all)-2].Path != tt.wantPath || all[len(all)-1].Path != tt.wantPath+"/state" {
				t.Fatalf("paths %q, %q", all[len(all)-2].Path, all[len(all)-1].Path)
			}
		})
	}
	if _, err := c.GetCVM(ctx, ""); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("empty id: %v", err)
	}
}

func registration465(status int) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		reg := ComposeHashRegistrationRequired{
			ComposeHash: hashA, AppID: "21db43cdd6fbd4998ff67af132f953747bfacb97", DeviceID: device1,
			KMSInfo:     &KMSInfo{ID: "kms_1", Slug: ptr("kms-test-local"), URL: "u", Version: "v", ChainID: ptr(int64(31337)), KMSContractAddress: ptr(kmsAddr)},
			CommitToken: "tok_1", CommitURL: "https://cloud.phala.com/commit/tok_1", APICommitURL: "/api/v1/cvms/x/commit-update",
			OnchainStatus: &OnchainStatus{ComposeHashAllowed: false, DeviceIDAllowed: true},
		}
		body, _ := json.Marshal(ErrorBody{Detail: StructuredError{ErrorCode: CodeHashRegistrationRequired, Message: "Compose hash must be registered on-chain", Details: reg.Details()}})
		writeJSON(w, status, body)
	}
}

func TestUpdateFlow(t *testing.T) {
	var mu sync.Mutex
	answer := func(w http.ResponseWriter) { writeJSON(w, 202, `{"correlation_id":"corr-1"}`) }
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		mu.Lock()
		a := answer
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/commit-update") {
			writeJSON(w, 200, `{"correlation_id":"corr-2","status":"in_progress"}`)
			return
		}
		a(w)
	})
	set := func(f func(w http.ResponseWriter)) { mu.Lock(); answer = f; mu.Unlock() }
	c, _ := newClient(t, srv)
	ctx := context.Background()
	last := func() recorded { all := rec.all(); return all[len(all)-1] }

	t.Run("accepted", func(t *testing.T) {
		set(func(w http.ResponseWriter) { writeJSON(w, 202, `{"correlation_id":"corr-1"}`) })
		res, err := c.UpdateCVM(ctx, "trace-app-1", PatchCVMRequest{DockerComposeFile: ptr("services: {}"), AllowedEnvs: []string{}}, UpdateOptions{})
		if err != nil || res.Accepted == nil || res.Accepted.CorrelationID != "corr-1" || res.Registration != nil {
			t.Fatalf("UpdateCVM = %+v, %v", res, err)
		}
		r := last()
		if r.Method != "PATCH" || r.Path != "/api/v1/cvms/trace-app-1" || r.Header.Get("X-Prepare-Only") != "" {
			t.Fatalf("sent %s %s %v", r.Method, r.Path, r.Header)
		}
		jsonEqual(t, r.Body, `{"docker_compose_file":"services: {}","allowed_envs":[]}`)
	})
	t.Run("465 becomes a typed registration request", func(t *testing.T) {
		set(registration465(465))
		res, err := c.UpdateCVM(ctx, "trace-app-1", PatchCVMRequest{DockerComposeFile: ptr("x")}, UpdateOptions{PrepareOnly: true})
		if err != nil || res.Accepted != nil || res.Registration == nil {
			t.Fatalf("UpdateCVM = %+v, %v", res, err)
		}
		if last().Header.Get("X-Prepare-Only") != "true" {
			t.Fatal("X-Prepare-Only not sent")
		}
		reg := res.Registration
		if reg.ComposeHash != hashA || reg.DeviceID != device1 || reg.CommitToken != "tok_1" || reg.APICommitURL == "" || reg.CommitURL == "" ||
			reg.KMSInfo == nil || reg.KMSInfo.Ref() != "kms-test-local" || reg.OnchainStatus == nil || !reg.OnchainStatus.DeviceIDAllowed || reg.OnchainStatus.IsAllowed {
			t.Fatalf("registration %+v", reg)
		}
	})
	t.Run("465 without compose_hash is a decode error", func(t *testing.T) {
		set(func(w http.ResponseWriter) {
			writeJSON(w, 465, `{"detail":{"error_code":"ERR-01-005","message":"m","details":[{"field":"app_id","value":"ab"}]}}`)
		})
		_, err := c.UpdateCVM(ctx, "trace-app-1", PatchCVMRequest{}, UpdateOptions{})
		var de *DecodeError
		if !errors.As(err, &de) || de.Status != 465 || de.Field != "compose_hash" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("465 on another call is a RegistrationRequiredError", func(t *testing.T) {
		set(registration465(465))
		_, err := c.ConfirmUpdate(ctx, "trace-app-1", hashA, AlreadyRegistered)
		var rr *RegistrationRequiredError
		if !errors.As(err, &rr) || rr.Required.ComposeHash != hashA || !errors.Is(err, ErrRegistrationRequired) {
			t.Fatalf("err = %v", err)
		}
		if ae, ok := AsAPIError(err); !ok || ae.Status != 465 {
			t.Fatalf("not an APIError: %v", err)
		}
	})
	t.Run("confirm sends headers and an empty object", func(t *testing.T) {
		set(func(w http.ResponseWriter) { writeJSON(w, 202, `{"correlation_id":"corr-3"}`) })
		tx := "0x" + strings.Repeat("ab", 32)
		acc, err := c.ConfirmUpdate(ctx, "trace-app-1", "0x"+hashA, tx)
		if err != nil || acc.CorrelationID != "corr-3" {
			t.Fatalf("ConfirmUpdate = %+v, %v", acc, err)
		}
		r := last()
		if r.Method != "PATCH" || string(r.Body) != "{}" || r.Header.Get("X-Compose-Hash") != hashA || r.Header.Get("X-Transaction-Hash") != tx {
			t.Fatalf("sent %s body %q headers %v", r.Method, r.Body, r.Header)
		}
	})
	for _, tt := range []struct {
		status   int
		sentinel error
	}{{466, ErrHashExpired}, {467, ErrTxVerificationFailed}, {468, ErrHashNotOnChain}} {
		t.Run(fmt.Sprintf("confirm %d", tt.status), func(t *testing.T) {
			set(func(w http.ResponseWriter) { writeJSON(w, tt.status, `{"detail":"nope"}`) })
			_, err := c.ConfirmUpdate(ctx, "trace-app-1", hashA, AlreadyRegistered)
			ae, ok := AsAPIError(err)
			if !errors.Is(err, tt.sentinel) || !ok || ae.Status != tt.status || ae.Message != "nope" {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("confirm input checks", func(t *testing.T) {
		before := rec.count()
		if _, err := c.ConfirmUpdate(ctx, "trace-app-1", hashA, "0x12"); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("bad tx: %v", err)
		}
		if _, err := c.ConfirmUpdate(ctx, "trace-app-1", "xyz", AlreadyRegistered); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("bad hash: %v", err)
		}
		if rec.count() != before {
			t.Fatal("invalid confirm was sent")
		}
	})
	t.Run("accepted without correlation_id is a decode error", func(t *testing.T) {
		set(func(w http.ResponseWriter) { writeJSON(w, 202, `{}`) })
		_, err := c.UpdateCVM(ctx, "trace-app-1", PatchCVMRequest{}, UpdateOptions{})
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != "correlation_id" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("commit-update needs no API key", func(t *testing.T) {
		nokey, _ := newClient(t, srv, func(c *Config) { c.APIKey = "" })
		tx := "0x" + strings.Repeat("cd", 32)
		res, err := nokey.CommitUpdate(ctx, "trace-app-1", CommitUpdateRequest{Token: "tok_1", ComposeHash: "0x" + hashA, TransactionHash: tx})
		if err != nil || res.CorrelationID != "corr-2" || res.Status != "in_progress" {
			t.Fatalf("CommitUpdate = %+v, %v", res, err)
		}
		r := last()
		if r.Path != "/api/v1/cvms/trace-app-1/commit-update" || r.Header.Get("X-API-Key") != "" {
			t.Fatalf("sent %s with key header %q", r.Path, r.Header.Get("X-API-Key"))
		}
		jsonEqual(t, r.Body, `{"token":"tok_1","compose_hash":"`+hashA+`","transaction_hash":"`+tx+`"}`)
		if _, err := nokey.CommitUpdate(ctx, "trace-app-1", CommitUpdateRequest{ComposeHash: hashA, TransactionHash: tx}); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("empty token: %v", err)
		}
	})
}

func TestIsAllowed(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		writeJSON(w, 200, `{"app_contract_address":"`+appIDCS+`","compose_hash":"`+hashA+`","device_id":"`+device1+`","compose_hash_allowed":true,"allow_any_device":false,"device_id_allowed":null,"is_allowed":false,"error":"device not allowed"}`)
	})
	c, _ := newClient(t, srv)
	res, err := c.IsAllowed(context.Background(), "trace-app-1", IsAllowedRequest{ComposeHash: "0x" + hashA, NodeID: ptr(int64(3))})
	if err != nil || !res.ComposeHashAllowed || res.IsAllowed || res.DeviceIDAllowed != nil || *res.Error != "device not allowed" {
		t.Fatalf("IsAllowed = %+v, %v", res, err)
	}
	r := rec.all()[0]
	if r.Method != "POST" || r.Path != "/api/v1/cvms/trace-app-1/is-allowed" {
		t.Fatalf("sent %s %s", r.Method, r.Path)
	}
	jsonEqual(t, r.Body, `{"compose_hash":"`+hashA+`","node_id":3}`)
}

func TestMissingAPIKeyIsRefusedBeforeSending(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) { writeJSON(w, 200, okCVM) })
	c, _ := newClient(t, srv, func(c *Config) { c.APIKey = "" })
	if _, err := c.GetCVM(context.Background(), "x1234"); !errors.Is(err, ErrMissingAPIKey) {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.WatchState(context.Background(), "x1234", "running", nil); !errors.Is(err, ErrMissingAPIKey) {
		t.Fatalf("watch err = %v", err)
	}
	if rec.count() != 0 {
		t.Fatal("a request was sent without a key")
	}
}

// TestErrorStatusesBothShapes drives every documented error status through
// a real call, with the FastAPI string shape and the structured shape.
func TestErrorStatusesBothShapes(t *testing.T) {
	type shape struct {
		name string
		body string
	}
	shapes := []shape{
		{"detail string", `{"detail":"something failed"}`},
		{"structured", `{"detail":{"error_code":"ERR-09-999","message":"something failed","details":[{"field":"f","value":1}],"suggestions":["try again"],"links":[{"label":"l","url":"u"}]}}`},
		{"structured top level", `{"error_code":"ERR-09-999","message":"something failed","suggestions":["try again"]}`},
	}
	statuses := []struct {
		status                          int
		auth, notFound, conflict, valid bool
	}{
		{401, true, false, false, false},
		{403, true, false, false, false},
		{404, false, true, false, false},
		{409, false, false, true, false},
		{422, false, false, false, true},
		{400, false, false, false, true},
		{418, false, false, false, false},
	}
	for _, st := range statuses {
		for _, sh := range shapes {
			t.Run(fmt.Sprintf("%d %s", st.status, sh.name), func(t *testing.T) {
				srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) { writeJSON(w, st.status, sh.body) })
				c, _ := newClient(t, srv)
				_, err := c.GetCVM(context.Background(), "trace-app-1")
				ae, ok := AsAPIError(err)
				if !ok {
					t.Fatalf("err = %T %v", err, err)
				}
				if ae.Status != st.status || ae.Message != "something failed" || ae.IsAuth() != st.auth || ae.IsNotFound() != st.notFound ||
					ae.IsConflict() != st.conflict || ae.IsValidation() != st.valid || ae.Method != "GET" || ae.Path != "/cvms/trace-app-1" {
					t.Fatalf("APIError %+v", ae)
				}
				if sh.name != "detail string" && (ae.ErrorCode != "ERR-09-999" || !strings.Contains(err.Error(), "(suggestion: try again)")) {
					t.Fatalf("structured fields lost: %v", err)
				}
				if rec.count() != 1 {
					t.Fatalf("a %d was retried (%d requests)", st.status, rec.count())
				}
			})
		}
	}
	t.Run("422 list", func(t *testing.T) {
		srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
			writeJSON(w, 422, `{"detail":[{"loc":["body","name"],"msg":"String should have at least 5 characters","type":"string_too_short","ctx":{"min_length":5}}]}`)
		})
		c, _ := newClient(t, srv)
		_, err := c.Commit(context.Background(), CommitRequest{AppID: appIDCS, ComposeHash: hashA})
		ae, ok := AsAPIError(err)
		if !ok || len(ae.ValidationErrors) != 1 || ae.ValidationErrors[0].Field() != "name" || !strings.Contains(err.Error(), "name: String should have at least 5 characters") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestMalformedSuccessBodies(t *testing.T) {
	tests := []struct {
		name, contentType, body, wantField, wantErr string
		call                                        func(c *Client) error
	}{
		{"HTML instead of JSON", "text/html", "<html>maintenance</html>", "", "not JSON", func(c *Client) error {
			_, err := c.GetCVM(context.Background(), "a1234")
			return err
		}},
		{"empty body", "application/json", "", "", "not JSON", func(c *Client) error {
			_, err := c.CVMState(context.Background(), "a1234")
			return err
		}},
		{"provision without compose_hash", "application/json", `{"app_id":null,"kms_info":` + kmsInfoJSONDoc + `}`, "compose_hash", "missing", func(c *Client) error {
			_, err := c.Provision(context.Background(), validProvisionRequest())
			return err
		}},
		{"kms_info without url", "application/json", `{"compose_hash":"` + hashA + `","kms_info":{"id":"k","slug":null,"version":"v","chain_id":1,"kms_contract_address":null,"gateway_app_id":null}}`, "url", "missing", func(c *Client) error {
			_, err := c.Provision(context.Background(), validProvisionRequest())
			return err
		}},
		{"commit answer with string vcpu", "application/json", `{"id":1,"name":"a","status":"s","vcpu":"1"}`, "vcpu", "cannot unmarshal", func(c *Client) error {
			_, err := c.Commit(context.Background(), CommitRequest{AppID: appIDCS, ComposeHash: hashA})
			return err
		}},
		{"pubkey answer as array", "application/json", `[]`, "", "expected a JSON object", func(c *Client) error {
			_, err := c.AppPubKey(context.Background(), "k", appIDCS)
			return err
		}},
		{"kms list without items", "application/json", `{"total":1}`, "items", "missing", func(c *Client) error {
			_, err := c.ListOnChainKMS(context.Background())
			return err
		}},
		{"is-allowed without is_allowed", "application/json", `{"app_contract_address":"a","compose_hash":"h","device_id":"d","compose_hash_allowed":true,"allow_any_device":false}`, "is_allowed", "missing", func(c *Client) error {
			_, err := c.IsAllowed(context.Background(), "a1234", IsAllowedRequest{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(200)
				w.Write([]byte(tt.body))
			})
			c, _ := newClient(t, srv)
			err := tt.call(c)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %T %v, want *DecodeError", err, err)
			}
			if de.Status != 200 || de.Field != tt.wantField || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeError %+v: %v", de, err)
			}
		})
	}
}

func TestRedirectsStayOnTheConfiguredHost(t *testing.T) {
	var otherHits int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits++
		writeJSON(w, 200, okCVM)
	}))
	defer other.Close()
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		if r.URL.Path == "/api/v1/cvms/same" {
			http.Redirect(w, r, "/api/v1/cvms/moved", http.StatusTemporaryRedirect)
			return
		}
		if r.URL.Path == "/api/v1/cvms/moved" {
			writeJSON(w, 200, okCVM)
			return
		}
		http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
	})
	c, _ := newClient(t, srv)
	if _, err := c.GetCVM(context.Background(), "same"); err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
	_, err := c.GetCVM(context.Background(), "elsewhere")
	ae, ok := AsAPIError(err)
	if !ok || ae.Status != http.StatusFound || !strings.Contains(err.Error(), "not followed") {
		t.Fatalf("err = %v", err)
	}
	if otherHits != 0 {
		t.Fatal("the client followed a redirect to another host (and would have sent the API key)")
	}
}

func TestAPIKeyNeverInErrorsOrLogs(t *testing.T) {
	var logs strings.Builder
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		fmt.Fprintf(&logs, format+"\n", args...)
		logMu.Unlock()
	}
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		key := r.Header.Get("X-API-Key")
		switch r.URL.Path {
		case "/api/v1/cvms/detail":
			writeJSON(w, 401, `{"detail":{"error_code":"ERR-05-001","message":"invalid key `+key+`","suggestions":["check `+key+`"],"details":[{"field":"key","value":"`+key+`"}]}}`)
		case "/api/v1/cvms/text":
			w.WriteHeader(500)
			fmt.Fprintf(w, "key %s rejected", key)
		case "/api/v1/cvms/decode":
			writeJSON(w, 200, `{"id":1,"name":"`+key+`"}`)
		}
	})
	c, _ := newClient(t, srv, func(c *Config) { c.Retries = -1; c.Logf = logf })
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	dead, _ := newClient(t, closed, func(c *Config) { c.Retries = -1; c.Logf = logf })

	var errs []error
	for _, id := range []string{"detail", "text", "decode"} {
		_, err := c.GetCVM(context.Background(), id)
		errs = append(errs, err)
	}
	_, err := dead.GetCVM(context.Background(), "x1234")
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), testKey) || strings.Contains(fmt.Sprintf("%+v", err), testKey) {
			t.Fatalf("error shows the API key: %v", err)
		}
		if ae, ok := AsAPIError(err); ok && strings.Contains(fmt.Sprintf("%#v", *ae), testKey) {
			t.Fatalf("APIError fields hold the API key: %#v", *ae)
		}
		var de *DecodeError
		if errors.As(err, &de) && strings.Contains(de.Body, testKey) {
			t.Fatalf("DecodeError body holds the API key: %q", de.Body)
		}
	}
	if logs.Len() == 0 || strings.Contains(logs.String(), testKey) {
		t.Fatalf("logs empty or show the key: %q", logs.String())
	}
}

// TestListOnChainKMSFollowsPages: the list follows the pages the server
// announces, in order, and stops at a bound when a server keeps announcing
// more.
func TestListOnChainKMSFollowsPages(t *testing.T) {
	item := func(n int) string {
		return fmt.Sprintf(`{"id":"kms-%d","slug":"kms-%d","url":"https://kms.example","version":"v0.5.3","chain_id":8453,"kms_contract_address":"0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C","gateway_app_id":null}`, n, n)
	}
	pageOf := func(page, pages, from, to int) string {
		var items []string
		for n := from; n < to; n++ {
			items = append(items, item(n))
		}
		return fmt.Sprintf(`{"items":[%s],"total":%d,"page":%d,"page_size":100,"pages":%d}`, strings.Join(items, ","), 250, page, pages)
	}
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		switch r.URL.Query().Get("page") {
		case "":
			writeJSON(w, 200, pageOf(1, 3, 0, 100))
		case "2":
			writeJSON(w, 200, pageOf(2, 3, 100, 200))
		default:
			writeJSON(w, 200, pageOf(3, 3, 200, 250))
		}
	})
	c, _ := newClient(t, srv)
	got, err := c.ListOnChainKMS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 250 || got.Items[0].Ref() != "kms-0" || got.Items[249].Ref() != "kms-249" {
		t.Fatalf("%d items, first %q", len(got.Items), got.Items[0].Ref())
	}
	var queries []string
	for _, r := range rec.all() {
		queries = append(queries, r.RawQuery)
	}
	want := []string{"is_onchain=true&page_size=100", "is_onchain=true&page=2&page_size=100", "is_onchain=true&page=3&page_size=100"}
	if strings.Join(queries, " ") != strings.Join(want, " ") {
		t.Fatalf("queries %q, want %q", queries, want)
	}

	endless, erec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		writeJSON(w, 200, pageOf(1, 1_000_000, 0, 1))
	})
	c, _ = newClient(t, endless)
	if _, err := c.ListOnChainKMS(context.Background()); err == nil || !strings.Contains(err.Error(), "pages") {
		t.Fatalf("err = %v, want a bound on the pages", err)
	}
	if n := erec.count(); n != maxKMSPages {
		t.Fatalf("%d requests to an endless list, want %d", n, maxKMSPages)
	}
}

package phala

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

const (
	pubkeyDoc   = `{"public_key":"` + hashA + `","signature":""}`
	contractDoc = `{"id":"kc_abc","slug":"base-main","contract_address":"0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C","chain_id":8453,"k256_pubkey":"0x02aa","node_count":3}`
)

// versionServer answers every path plausibly and records the version each
// request carried.
func versionServer(t *testing.T, refuse func(version string) (int, string)) (*Client, *recorder, *[]string) {
	t.Helper()
	var warnings []string
	var mu sync.Mutex
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		if refuse != nil {
			if st, body := refuse(r.Header.Get("X-Phala-Version")); st != 0 {
				writeJSON(w, st, body)
				return
			}
		}
		switch {
		case strings.Contains(r.URL.Path, "/pubkey/"):
			writeJSON(w, 200, pubkeyDoc)
		case r.URL.Path == "/api/v1/kms" && r.URL.Query().Get("is_onchain") != "":
			writeJSON(w, 200, `{"items":[`+kmsInfoJSONDoc+`],"total":1,"page":1,"page_size":100,"pages":1}`)
		case r.URL.Path == "/api/v1/kms":
			writeJSON(w, 200, `{"items":[`+contractDoc+`],"total":1,"page":1,"page_size":100,"pages":1}`)
		case strings.HasPrefix(r.URL.Path, "/api/v1/kms/"):
			writeJSON(w, 200, kmsInfoJSONDoc)
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/cvms/provision"):
			writeJSON(w, 200, okProvision)
		default:
			writeJSON(w, 200, okCVM)
		}
	})
	c, _ := newClient(t, srv, func(c *Config) {
		c.Warnf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			warnings = append(warnings, fmt.Sprintf(format, args...))
		}
	})
	return c, rec, &warnings
}

func lastVersion(rec *recorder) string {
	all := rec.all()
	return all[len(all)-1].Header.Get("X-Phala-Version")
}

// TestVersionPins: the node-keyed KMS calls go out as 2026-05-22 under a
// newer version (and under "latest"), everything else with the configured
// version; a configured version older than the pin is sent as is.
func TestVersionPins(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(c *Client) error{
		"ListOnChainKMS":   func(c *Client) error { _, err := c.ListOnChainKMS(ctx); return err },
		"GetKMS":           func(c *Client) error { _, err := c.GetKMS(ctx, "kms-test-local"); return err },
		"AppPubKey":        func(c *Client) error { _, err := c.AppPubKey(ctx, "kms-test-local", appIDCS); return err },
		"ListKMSContracts": func(c *Client) error { _, err := c.ListKMSContracts(ctx); return err },
		"GetCVM":           func(c *Client) error { _, err := c.GetCVM(ctx, "trace-app-1"); return err },
	}
	pinnedCalls := map[string]bool{"ListOnChainKMS": true, "GetKMS": true, "AppPubKey": true}
	for _, configured := range []string{"", Version20260623, VersionLatest, Version20260522, Version20260121, Version20251028} {
		for name, call := range calls {
			t.Run(configured+"/"+name, func(t *testing.T) {
				c, rec, _ := versionServer(t, nil)
				c.cfg.Version = configured
				if err := call(c); err != nil {
					t.Fatal(err)
				}
				want := configured
				if want == "" {
					want = DefaultVersion
				}
				if pinnedCalls[name] && versionAtLeast(want, NodeKeyedVersion) {
					want = NodeKeyedVersion
				}
				if got := lastVersion(rec); got != want {
					t.Fatalf("sent X-Phala-Version %q, want %q", got, want)
				}
			})
		}
	}
}

// TestVersionFallback: a server that refuses the version gets the request
// again with 2025-10-28, once; the client keeps that version, says so
// once, and never falls back on other errors.
func TestVersionFallback(t *testing.T) {
	refusals := map[string]func(string) (int, string){
		"400 detail": func(v string) (int, string) {
			if v == Version20251028 {
				return 0, ""
			}
			return 400, fmt.Sprintf(`{"detail":"Unsupported API version %q; supported: 2025-10-28"}`, v)
		},
		"422 at the header": func(v string) (int, string) {
			if v == Version20251028 {
				return 0, ""
			}
			return 422, `{"detail":[{"type":"enum","loc":["header","x-phala-version"],"msg":"Input should be '2025-10-28'","input":"` + v + `"}]}`
		},
		"structured": func(v string) (int, string) {
			if v == Version20251028 {
				return 0, ""
			}
			return 400, `{"detail":{"error_code":"ERR-00-004","message":"X-Phala-Version ` + v + ` is not a known version"}}`
		},
	}
	for name, refuse := range refusals {
		t.Run(name, func(t *testing.T) {
			c, rec, warnings := versionServer(t, refuse)
			cvm, err := c.Commit(context.Background(), CommitRequest{AppID: appIDCS, ComposeHash: hashA, Token: "ctk_secret_value"})
			if err != nil {
				t.Fatalf("commit: %v", err)
			}
			if n, _ := cvm.ID.Int(); n != 42 {
				t.Fatalf("decoded %+v", cvm)
			}
			all := rec.all()
			if len(all) != 2 || all[0].Header.Get("X-Phala-Version") != DefaultVersion || all[1].Header.Get("X-Phala-Version") != FallbackVersion {
				t.Fatalf("requests: %d, versions %v", len(all), versions(all))
			}
			if !c.FellBack() || c.Version() != FallbackVersion {
				t.Fatalf("the client does not keep the fallback: %q", c.Version())
			}
			if len(*warnings) != 1 || !strings.Contains((*warnings)[0], "retrying with 2025-10-28") || strings.Contains((*warnings)[0], "ctk_secret_value") {
				t.Fatalf("warnings %q", *warnings)
			}
			// Pinned calls too go out with the fallback now, in one request.
			before := rec.count()
			if _, err := c.AppPubKey(context.Background(), "kms-test-local", appIDCS); err != nil {
				t.Fatal(err)
			}
			if rec.count() != before+1 || lastVersion(rec) != FallbackVersion {
				t.Fatalf("after the fallback: %d requests, version %q", rec.count()-before, lastVersion(rec))
			}
			if len(*warnings) != 1 {
				t.Fatalf("said it again: %q", *warnings)
			}
		})
	}
	t.Run("NoFallback", func(t *testing.T) {
		c, rec, _ := versionServer(t, refusals["400 detail"])
		c.cfg.NoFallback = true
		_, err := c.GetCVM(context.Background(), "trace-app-1")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 400 || rec.count() != 1 {
			t.Fatalf("err = %v after %d requests", err, rec.count())
		}
	})
	t.Run("other errors do not fall back", func(t *testing.T) {
		for _, body := range []string{
			`{"detail":"compose_file: invalid YAML"}`,
			`{"detail":"OS image version dstack-0.5.9 not available"}`,
		} {
			c, rec, warnings := versionServer(t, func(string) (int, string) { return 400, body })
			if _, err := c.GetCVM(context.Background(), "trace-app-1"); err == nil {
				t.Fatal("no error")
			}
			if rec.count() != 1 || c.FellBack() || len(*warnings) != 0 {
				t.Fatalf("%s: %d requests, fell back %v", body, rec.count(), c.FellBack())
			}
		}
	})
}

func versions(rs []recorded) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Header.Get("X-Phala-Version"))
	}
	return out
}

// TestSamePathProvision: from 2026-05-22 the provision goes to POST /cvms
// and its token is kept; a server whose POST /cvms only commits is asked
// POST /cvms/provision instead, that time and every later time.
func TestSamePathProvision(t *testing.T) {
	t.Run("offered", func(t *testing.T) {
		srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
			if r.URL.Path != "/api/v1/cvms" {
				t.Errorf("%s %s", r.Method, r.URL.Path)
			}
			writeJSON(w, 200, strings.Replace(okProvision, `"app_id":null`, `"app_id":null,"token":"ctk_one_time","kms_contract_id":"kc_abc"`, 1))
		})
		c, _ := newClient(t, srv)
		got, err := c.Provision(context.Background(), validProvisionRequest())
		if err != nil {
			t.Fatal(err)
		}
		if got.Via != ProvisionSamePath || got.Token == nil || *got.Token != "ctk_one_time" || got.KMSContractID.String() != "kc_abc" {
			t.Fatalf("decoded %+v", got)
		}
		if r := rec.all()[0]; r.Method != "POST" || objectKeys(t, r.Body)["compose_file"] == nil {
			t.Fatalf("sent %s %s %s", r.Method, r.Path, r.Body)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
			if r.URL.Path == "/api/v1/cvms" {
				writeJSON(w, 422, `{"detail":[{"type":"missing","loc":["body","app_id"],"msg":"Field required","input":{}},{"type":"missing","loc":["body","compose_hash"],"msg":"Field required","input":{}}]}`)
				return
			}
			writeJSON(w, 200, okProvision)
		})
		c, _ := newClient(t, srv)
		for i := 0; i < 2; i++ {
			got, err := c.Provision(context.Background(), validProvisionRequest())
			if err != nil {
				t.Fatal(err)
			}
			if got.Via != ProvisionLegacyPath || got.Token != nil {
				t.Fatalf("decoded %+v", got)
			}
		}
		var paths []string
		for _, r := range rec.all() {
			paths = append(paths, r.Path)
		}
		if strings.Join(paths, " ") != "/api/v1/cvms /api/v1/cvms/provision /api/v1/cvms/provision" {
			t.Fatalf("paths %v", paths)
		}
	})
	t.Run("a real refusal is returned", func(t *testing.T) {
		srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
			writeJSON(w, 422, `{"detail":[{"type":"value_error","loc":["body","compose_file","docker_compose_file"],"msg":"bad YAML","input":"x"}]}`)
		})
		c, _ := newClient(t, srv)
		var ae *APIError
		if _, err := c.Provision(context.Background(), validProvisionRequest()); !errors.As(err, &ae) || ae.Status != 422 || rec.count() != 1 {
			t.Fatalf("err = %v after %d requests", err, rec.count())
		}
	})
}

// TestCommitTokenRedacted: a server that echoes the commit token (in a
// validation error's input, a message, a detail) never gets it into the
// error, whatever field is printed.
func TestCommitTokenRedacted(t *testing.T) {
	const token = "ctk_7f3e9a1b2c4d5e6f_one_commit_only"
	bodies := []struct {
		status int
		body   string
	}{
		{422, `{"detail":[{"type":"value_error","loc":["body","token"],"msg":"Value error, token ` + token + ` is for another app","input":{"token":"` + token + `","app_id":"x"}}]}`},
		{466, `{"detail":{"error_code":"ERR-01-006","message":"token ` + token + ` expired","details":[{"field":"token","value":"` + token + `"}],"suggestions":["provision again instead of ` + token + `"]}}`},
		{500, `<html>` + token + `</html>`},
		{200, `{"oops":"` + token + `"}`}, // not a CVM: a DecodeError with a body snippet
	}
	for _, b := range bodies {
		srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) { writeJSON(w, b.status, b.body) })
		c, _ := newClient(t, srv, func(c *Config) { c.Retries = -1 })
		_, err := c.Commit(context.Background(), CommitRequest{AppID: appIDCS, ComposeHash: hashA, Token: token})
		if err == nil {
			t.Fatalf("%d: no error", b.status)
		}
		dump, _ := json.Marshal(err)
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), string(dump)} {
			if strings.Contains(s, token) {
				t.Fatalf("HTTP %d: the token is in the error: %s", b.status, s)
			}
		}
		if ae, ok := AsAPIError(err); ok {
			if strings.Contains(fmt.Sprintf("%v %v %v %v", ae.Details, ae.ValidationErrors, ae.Suggestions, ae.Body), token) {
				t.Fatalf("HTTP %d: the token is in the error's fields", b.status)
			}
			if b.status == 466 && !errors.Is(err, ErrHashExpired) {
				t.Fatalf("466 is not ErrHashExpired: %v", err)
			}
		}
		var de *DecodeError
		if errors.As(err, &de) && strings.Contains(de.Body, token) {
			t.Fatal("the token is in the decode error's body")
		}
	}
}

// TestCVMShapes decodes the CVM object of every version and finds its KMS.
func TestCVMShapes(t *testing.T) {
	const (
		baseKMS = "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"
		uuid    = "2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55"
	)
	flat2026 := `"kms_info":{"chain_id":8453,"dstack_kms_address":"` + baseKMS + `","dstack_app_address":"0x21dB43cDD6FbD4998FF67Af132F953747BFaCb97","deployer_address":null,"rpc_endpoint":null,"encrypted_env_pubkey":"ab"}`
	tests := []struct {
		name   string
		doc    string
		id     string
		intID  bool
		vmUUID string
		kmsRef string
		kms    string // the DstackKms found ("" for none)
	}{
		{"2025-10-28 detail", okCVM[:len(okCVM)-1] + `,"kms_info":` + kmsInfoJSONDoc + `}`, "42", true, uuid, "kms-test-local", kmsAddr},
		{"2025-10-28 list item (hosted)", `{"hosted":{"id":"` + uuid + `","name":"a-app","status":"running","app_id":"21db43cdd6fbd4998ff67af132f953747bfacb97","instance_id":"ab"},"name":"a-app","status":"running","in_progress":false,"kms_info":` + kmsInfoJSONDoc + `}`, uuid, false, uuid, "kms-test-local", kmsAddr},
		{"2026-01-21 flat", `{"id":7,"name":"a-app","status":"running","user_id":3,"kms_id":"kms-base-1","kms_type":"base",` + flat2026 + `}`, "7", true, "", "kms-base-1", baseKMS},
		{"2026-05-22 flat", `{"id":"cvm_k3j2","name":"a-app","status":"running","user_id":"u_9","vm_uuid":"` + uuid + `",` + flat2026 + `}`, "cvm_k3j2", false, uuid, "", baseKMS},
		{"cloud KMS, 2026", `{"id":"cvm_k3j3","name":"a-app","status":"running","kms_info":{"chain_id":null,"dstack_kms_address":null,"dstack_app_address":null,"deployer_address":null,"rpc_endpoint":null,"encrypted_env_pubkey":"ab"}}`, "cvm_k3j3", false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c CVM
			if err := json.Unmarshal([]byte(tt.doc), &c); err != nil {
				t.Fatal(err)
			}
			if _, isInt := c.ID.Int(); c.ID.String() != tt.id || isInt != tt.intID {
				t.Fatalf("id %q (int %v)", c.ID.String(), isInt)
			}
			if got := deref(c.VMUUID); got != tt.vmUUID {
				t.Fatalf("vm_uuid %q", got)
			}
			k, ok := c.OnChainKMS()
			if ok != (tt.kms != "") || k.Contract != tt.kms || k.Ref != tt.kmsRef {
				t.Fatalf("OnChainKMS = %+v, %v", k, ok)
			}
		})
	}
	for _, bad := range []string{`{"name":"a","status":"x"}`, `{"hosted":{"name":"a"},"name":"a","status":"x"}`, `{"id":1,"name":"a","status":"x","kms_info":[1]}`} {
		var c CVM
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestKMSListings: the 2026-06-23 contract list is read as is; the node
// list of older versions is grouped by contract, counting nodes.
func TestKMSListings(t *testing.T) {
	node := func(slug string) string {
		return strings.Replace(kmsInfoJSONDoc, `"kms-test-local"`, `"`+slug+`"`, -1)
	}
	tests := []struct {
		name   string
		items  string
		legacy bool
		want   []string // ref@chain:nodes
	}{
		{"contracts", contractDoc + `,{"id":"kc_phala","contract_address":"phala","chain_id":0,"node_count":5}`, false, []string{"base-main@8453:3", "kc_phala@0:5"}},
		{"nodes", node("kms-a") + "," + node("kms-b") + `,{"id":"phala","slug":"phala","url":"https://x","version":"v1","chain_id":null,"kms_contract_address":null,"gateway_app_id":null}`, true, []string{"kms-a@31337:2", "phala@0:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
				writeJSON(w, 200, `{"items":[`+tt.items+`],"total":3,"page":1,"page_size":100,"pages":1}`)
			})
			c, _ := newClient(t, srv)
			got, err := c.ListKMSContracts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var refs []string
			for _, k := range got.Items {
				refs = append(refs, fmt.Sprintf("%s@%d:%d", k.Ref(), k.ChainID, k.NodeCount))
			}
			if got.Legacy != tt.legacy || strings.Join(refs, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("legacy %v, items %v", got.Legacy, refs)
			}
			if tt.legacy && (!got.Items[0].Matches("kms-b") || !got.Items[0].OnChain() || got.Items[1].OnChain()) {
				t.Fatalf("grouped %+v", got.Items)
			}
			if !tt.legacy && (!got.Items[0].Matches("kc_abc") || *got.Items[0].K256Pubkey != "0x02aa") {
				t.Fatalf("contract %+v", got.Items[0])
			}
		})
	}
}

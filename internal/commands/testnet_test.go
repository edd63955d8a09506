package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// lockedBuffer is written by the command while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startTestnetUp runs `cvmdeploy testnet up --json args...` in-process and
// returns its parsed document, its stderr, and a stop function that
// interrupts it and returns the exit code.
func startTestnetUp(t *testing.T, args ...string) (map[string]any, *lockedBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, append([]string{"cvmdeploy", "testnet", "up", "--json"}, args...), strings.NewReader(""), &stdout, &stderr)
	}()
	var once sync.Once
	code := -1
	stop := func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("testnet up did not stop after the interrupt")
			}
		})
		return code
	}
	deadline := time.After(3 * time.Minute) // a first run may install anvil
	for {
		var doc map[string]any
		if err := json.Unmarshal([]byte(stdout.String()), &doc); err == nil {
			t.Cleanup(func() { stop() })
			return doc, &stderr, stop
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("testnet up exited with %d before printing its document\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
		case <-deadline:
			cancel()
			t.Fatalf("testnet up printed no document\nstderr: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestTestnetUpJSON(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{{"anvil", nil}, {"embedded", []string{"--embedded"}}} {
		t.Run(mode.name, func(t *testing.T) {
			doc, stderr, stop := startTestnetUp(t, mode.args...)
			for _, k := range []string{"rpc_url", "chain_id", "kms_contract", "kms_id", "api_prefix", "api_key", "dev_account"} {
				if _, ok := doc[k]; !ok {
					t.Errorf("document lacks %q: %v", k, doc)
				}
			}
			prefix := doc["api_prefix"].(string)
			if !strings.HasPrefix(prefix, "http://127.0.0.1:") || !strings.HasSuffix(prefix, "/api/v1") {
				t.Errorf("api_prefix = %q", prefix)
			}
			if doc["chain_id"] != float64(31337) {
				t.Errorf("chain_id = %v, want 31337", doc["chain_id"])
			}
			if _, ok := doc["safe_service_url"]; ok != (mode.name == "anvil") {
				t.Errorf("%s testnet: safe_service_url present = %v", mode.name, ok)
			}
			for _, k := range []string{"adversary", "rogue_kms_contract", "safe_address"} {
				if _, ok := doc[k]; ok {
					t.Errorf("an honest testnet's document has %q: %v", k, doc)
				}
			}
			nodes, _ := doc["nodes"].([]any)
			devices := map[string]bool{}
			for i, n := range nodes {
				m := n.(map[string]any)
				if m["id"] != float64(i+1) || m["name"] == "" || len(fmt.Sprint(m["device_id"])) != 64 || devices[m["device_id"].(string)] {
					t.Errorf("node %d: %v", i, m)
				}
				devices[fmt.Sprint(m["device_id"])] = true
			}
			if len(nodes) != 1+cloud.ExtraNodes || nodes[0].(map[string]any)["device_id"] != doc["device_id"] {
				t.Errorf("nodes %v: want %d with distinct device ids, node 1's = device_id %v", nodes, 1+cloud.ExtraNodes, doc["device_id"])
			}

			req, _ := http.NewRequest("GET", prefix+"/kms?is_onchain=true", nil)
			req.Header.Set("X-API-Key", doc["api_key"].(string))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var page struct {
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != 200 || len(page.Items) != 1 {
				t.Fatalf("GET /kms?is_onchain=true: %d %s", resp.StatusCode, body)
			}
			item := page.Items[0]
			if !strings.EqualFold(item["kms_contract_address"].(string), doc["kms_contract"].(string)) || item["slug"] != doc["kms_id"] {
				t.Errorf("KMS item %v does not match the document %v", item, doc)
			}

			// The export lines are on stderr; no private key is printed.
			for _, want := range []string{"export ETH_RPC_URL=" + doc["rpc_url"].(string), "export PHALA_CLOUD_API_PREFIX=" + prefix,
				"export PHALA_CLOUD_API_KEY=" + doc["api_key"].(string)} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if strings.Contains(stderr.String()+doc["dev_account"].(string), "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80") {
				t.Errorf("the dev account's private key was printed")
			}

			if code := stop(); code != ExitOK {
				t.Fatalf("exit code after interrupt %d, want 0; stderr:\n%s", code, stderr.String())
			}
			if _, err := http.Get(doc["rpc_url"].(string)); err == nil {
				t.Errorf("the chain still answers after shutdown")
			}
			if _, err := http.Get(prefix + "/kms"); err == nil {
				t.Errorf("the cloud still answers after shutdown")
			}
		})
	}
}

// TestTestnetUpAdversary: --adversary reaches the cloud and the document
// says so; rogue-kms adds rogue_kms_contract, the KMS the cloud serves,
// while kms_contract stays the honest one. --inject-pre-launch reaches the
// cloud too.
func TestTestnetUpAdversary(t *testing.T) {
	script := "#!/bin/sh\necho injected by the test\n"
	file := filepath.Join(t.TempDir(), "pre-launch.sh")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range cloud.AdversaryModes {
		if mode != cloud.AdversaryCompose && mode != cloud.AdversaryRogueKMS {
			continue // the others start the same way; the cloud's tests cover each lie
		}
		t.Run(mode, func(t *testing.T) {
			doc, stderr, stop := startTestnetUp(t, "--embedded", "--adversary", mode, "--inject-pre-launch", file)
			if doc["adversary"] != mode {
				t.Errorf("adversary = %v, want %s", doc["adversary"], mode)
			}
			api := func(method, path string, body any) map[string]any {
				t.Helper()
				var rd io.Reader
				if body != nil {
					raw, _ := json.Marshal(body)
					rd = bytes.NewReader(raw)
				}
				req, _ := http.NewRequest(method, doc["api_prefix"].(string)+path, rd)
				req.Header.Set("X-API-Key", doc["api_key"].(string))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode != 200 {
					t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
				}
				return m
			}
			served := api("GET", "/kms/"+doc["kms_id"].(string), nil)["kms_contract_address"]
			rogue, hasRogue := doc["rogue_kms_contract"].(string)
			switch mode {
			case cloud.AdversaryRogueKMS:
				if !hasRogue || strings.EqualFold(rogue, doc["kms_contract"].(string)) || served != rogue {
					t.Errorf("rogue_kms_contract %v, kms_contract %v, served %v: want the cloud to serve a second KMS", rogue, doc["kms_contract"], served)
				}
			default:
				if hasRogue || !strings.EqualFold(fmt.Sprint(served), doc["kms_contract"].(string)) {
					t.Errorf("rogue_kms_contract %v, served %v: want the honest KMS", doc["rogue_kms_contract"], served)
				}
			}
			// The injected script is in an app-compose whose request had none.
			prov := api("POST", "/cvms/provision", map[string]any{"name": "inject-app", "kms": "PHALA",
				"compose_file": map[string]any{"docker_compose_file": "services:\n  web:\n    image: nginx\n"}})
			cvm := api("POST", "/cvms", map[string]any{"app_id": prov["app_id"], "compose_hash": prov["compose_hash"]})
			if got := api("GET", "/cvms/"+cvm["vm_uuid"].(string)+"/compose_file", nil)["pre_launch_script"]; got != script {
				t.Errorf("pre_launch_script = %#v, want the injected script", got)
			}
			for _, want := range []string{"msg=adversary mode=" + mode + " on=start", "WARNING: the local cloud is an adversary (" + mode + ")"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if code := stop(); code != ExitOK {
				t.Fatalf("exit code after interrupt %d, want 0", code)
			}
		})
	}
}

func TestTestnetUpUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr, when set
	}{
		{"embedded and fork", []string{"--embedded", "--fork-url", "http://127.0.0.1:1", "--kms-contract", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"}, ""},
		{"fork without kms", []string{"--fork-url", "http://127.0.0.1:1"}, ""},
		{"kms without fork", []string{"--kms-contract", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"}, ""},
		{"bad kms address", []string{"--fork-url", "http://127.0.0.1:1", "--kms-contract", "0x12"}, ""},
		{"bad block time", []string{"--block-time", "soon"}, ""},
		{"negative block time", []string{"--block-time", "-1"}, ""},
		{"fractional embedded block time", []string{"--embedded", "--block-time", "0.5"}, ""},
		{"public listen address", []string{"--listen", "0.0.0.0:8080"}, ""},
		{"unknown adversary", []string{"--adversary", "bogus"}, "compose, prelaunch, flip-public-logs, forged-key, rogue-kms"},
		{"missing pre-launch file", []string{"--inject-pre-launch", "/nonexistent/pre-launch.sh"}, "--inject-pre-launch"},
		{"bad safe shape", []string{"--safe", "3-of-2"}, "M-of-N"},
		{"too many safe owners", []string{"--safe", "2-of-9"}, "1 to 8 owners"},
		{"safe on the embedded chain", []string{"--embedded", "--safe", "2-of-3"}, "anvil"},
		{"public safe service address", []string{"--safe-service-listen", "0.0.0.0:8081"}, "loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), append([]string{"cvmdeploy", "testnet", "up"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %s", code, ExitUsage, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty on a usage error: %s", stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q: %s", tt.want, stderr.String())
			}
		})
	}
}

// TestTestnetUpSafe: --safe 2-of-3 creates the Safe of dev accounts 1-3 at
// the address the vectors predicted, and the document's safe_service_url
// serves it (GET /v1/safes/{safe}/ as api-kit's getSafeInfo asks).
func TestTestnetUpSafe(t *testing.T) {
	doc, stderr, stop := startTestnetUp(t, "--safe", "2-of-3")
	want := []string{"0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x90F79bf6EB2c4f870365E785982E1f101E93b906"}
	if doc["safe_address"] != "0x399c61b017A871181d8B6C418c93a8bB361E3Db8" || fmt.Sprint(doc["safe_owners"]) != fmt.Sprint(want) || doc["safe_threshold"] != float64(2) {
		t.Fatalf("document %v", doc)
	}
	url, _ := doc["safe_service_url"].(string)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/api") {
		t.Fatalf("safe_service_url = %q", url)
	}
	resp, err := http.Get(url + "/v1/safes/" + doc["safe_address"].(string) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var info struct {
		Threshold int      `json:"threshold"`
		Owners    []string `json:"owners"`
		Nonce     string   `json:"nonce"`
		Version   string   `json:"version"`
	}
	if err := json.Unmarshal(body, &info); err != nil || resp.StatusCode != 200 || info.Threshold != 2 || fmt.Sprint(info.Owners) != fmt.Sprint(want) || info.Nonce != "0" || info.Version != "1.4.1" {
		t.Fatalf("GET /v1/safes/{safe}/: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(stderr.String(), "export SAFE_SERVICE_URL="+url) {
		t.Errorf("stderr lacks the SAFE_SERVICE_URL export:\n%s", stderr.String())
	}
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d after interrupt", code)
	}
	if _, err := http.Get(url + "/v1/safes/" + doc["safe_address"].(string) + "/"); err == nil {
		t.Error("the Safe Transaction Service still answers after shutdown")
	}
}

package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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

func TestTestnetUpUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"embedded and fork", []string{"--embedded", "--fork-url", "http://127.0.0.1:1", "--kms-contract", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"}},
		{"fork without kms", []string{"--fork-url", "http://127.0.0.1:1"}},
		{"kms without fork", []string{"--kms-contract", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"}},
		{"bad kms address", []string{"--fork-url", "http://127.0.0.1:1", "--kms-contract", "0x12"}},
		{"bad block time", []string{"--block-time", "soon"}},
		{"negative block time", []string{"--block-time", "-1"}},
		{"fractional embedded block time", []string{"--embedded", "--block-time", "0.5"}},
		{"public listen address", []string{"--listen", "0.0.0.0:8080"}},
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
		})
	}
}

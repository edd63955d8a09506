package testnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// lockedLog collects the cloud's event log.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// installPhalaCLI runs install-phala-cli.sh (npm phala@1.1.18 into
// .tools/phala-cli/) and returns the executable. A missing npm fails the
// test: it never skips.
func installPhalaCLI(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "bash", "install-phala-cli.sh")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("install-phala-cli.sh: %v\n%s", err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("installer printed %q: %v", bin, err)
	}
	return bin
}

// TestOfficialCLIDeploy runs the official `phala deploy --kms ethereum`
// (CLI 1.1.18, reference §15) against a local testnet on anvil (chain 31337)
// with the example app, and checks that it succeeds and that the local
// cloud checked the app on-chain and decrypted the env.
func TestOfficialCLIDeploy(t *testing.T) {
	phala := installPhalaCLI(t)
	var log lockedLog
	l := startLocalnet(t, testnet.LocalnetConfig{ChainID: 31337, APIKey: "phak_test", Cloud: cloud.Config{Log: &log}})
	defer func() {
		if t.Failed() {
			t.Logf("cloud log:\n%s", log.String())
		}
	}()

	work := t.TempDir()
	for _, f := range []string{"docker-compose.yml", ".env"} {
		b, err := os.ReadFile(filepath.Join("example", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	name := "official-cli-app"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, phala, "deploy", "--kms", "ethereum",
		"--private-key", "0x"+common.Bytes2Hex(crypto.FromECDSA(l.DevAccount.PrivateKey)),
		"--rpc-url", l.RPCURL, "--json", "--no-dev-os", "-n", name, "-c", "docker-compose.yml", "-e", ".env")
	cmd.Dir = work
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"PHALA_CLOUD_API_PREFIX=" + l.APIPrefix,
		"PHALA_CLOUD_API_KEY=" + l.APIKey,
		"PHALA_DISABLE_UPDATE_CHECK=1",
		"CI=1",
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	// The command line holds the dev key; only the outputs are printed.
	if err != nil {
		t.Fatalf("phala deploy: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("phala deploy wall time against the local cloud: %s", wall.Round(time.Millisecond))

	// stdout is "Provisioning CVM <name>..." then the JSON document.
	out := stdout.String()
	i := strings.Index(out, "{")
	if i < 0 {
		t.Fatalf("no JSON in stdout:\n%s", out)
	}
	var res struct {
		Success bool   `json:"success"`
		VMUUID  string `json:"vm_uuid"`
		Name    string `json:"name"`
		AppID   string `json:"app_id"`
	}
	if err := json.Unmarshal([]byte(out[i:]), &res); err != nil {
		t.Fatalf("stdout JSON: %v\n%s", err, out)
	}
	if !res.Success || res.Name != name || len(res.AppID) != 40 || res.VMUUID == "" {
		t.Fatalf("phala deploy result %+v", res)
	}
	app := common.HexToAddress(res.AppID)

	// The cloud checked the app on-chain at boot and opened the env.
	waitLog(t, &log, "onchain check", "app="+app.Hex(), "registered=true", "allowed=true", `reason=""`)
	waitLog(t, &log, "decrypted env", "app=0x"+res.AppID, `keys="[APP_GREETING REDIS_PASSWORD SESSION_SECRET ADMIN_API_TOKEN]"`)
	waitLog(t, &log, "cvm running", "app="+res.AppID)
	for _, secret := range []string{"fake-redis-password-change-me", "fake-session-secret", "fake-admin-token"} {
		if strings.Contains(log.String(), secret) {
			t.Fatalf("the cloud log contains an env value")
		}
	}
	if c := l.Cloud.Counts(); c.CVMs != 1 {
		t.Errorf("cloud holds %d CVMs, want 1", c.CVMs)
	}
}

func waitLog(t *testing.T, log *lockedLog, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, line := range strings.Split(log.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cloud log line with %s", fmt.Sprintf("%q", parts))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

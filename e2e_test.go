package main_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// binary is the cvmdeploy built once for these tests, run as a user runs it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cvmdeploy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "cvmdeploy")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cvmdeploy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	code           int
	stdout, stderr string
}

// run executes the binary with exactly env (plus PATH, which env may
// override) in dir.
func run(t *testing.T, dir string, env []string, args ...string) proc {
	t.Helper()
	return runBinary(t, binary, dir, env, args...)
}

func runBinary(t *testing.T, bin, dir string, env []string, args ...string) proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	p := proc{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		p.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cvmdeploy: %v", err)
	}
	return p
}

// TestReadmeFirstCommand runs the README's first command on the throwaway
// testnet (anvil from .tools/, which test.sh installs; a fresh clone installs
// it on this first run): nothing but the binary, no account, no key.
func TestReadmeFirstCommand(t *testing.T) {
	home := t.TempDir()
	wd, _ := os.Getwd()
	p := run(t, wd, []string{"HOME=" + home},
		"deploy", "--dev", "--compose", "testnet/example/docker-compose.yml", "--env-file", "testnet/example/.env")
	if p.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", p.code, p.stderr)
	}
	for _, key := range []string{"app_id:", "contract_address:", "deployer_address:", "status:"} {
		if !strings.Contains(p.stdout, key) {
			t.Errorf("stdout lacks %q:\n%s", key, p.stdout)
		}
	}
	if !strings.Contains(p.stdout, "running") {
		t.Fatalf("the CVM is not running:\n%s", p.stdout)
	}
	if strings.Contains(p.stdout, "→") || strings.Contains(p.stdout, "✓") {
		t.Fatalf("progress lines leaked to stdout:\n%s", p.stdout)
	}
}

// chainEnv is a local testnet on anvil, with a user environment pointing at it.
type chainEnv struct {
	ln      *testnet.Localnet
	eth     *ethclient.Client
	dir     string // the user's working directory (compose, .env)
	home    string // HOME, TMPDIR and the journal live here
	env     []string
	keyHex  string
	secrets map[string]string
}

func newChainEnv(t *testing.T) *chainEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := testnet.LocalnetConfig{APIKey: "phak_e2e_api_key_5c0ffee5c0ffee"}
	cfg.Cloud.BootStep = 10 * time.Millisecond
	ln, err := testnet.StartLocalnet(ctx, cfg)
	if err != nil {
		t.Fatalf("start localnet: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	e := &chainEnv{ln: ln, dir: t.TempDir(), home: t.TempDir()}
	if e.eth, err = ethclient.Dial(ln.RPCURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.eth.Close)
	e.keyHex = hex.EncodeToString(crypto.FromECDSA(ln.DevAccount.PrivateKey))
	e.secrets = map[string]string{
		"private key":    e.keyHex,
		"API key":        ln.APIKey,
		"DB_PASSWORD":    "pw-Zq8v!e2e-never-print-me",
		"STRIPE_API_KEY": "sk_live_e2e_51HxQ2Z9NEVERPRINT",
	}
	compose := "services:\n  api:\n    image: ghcr.io/example/api:2\n    environment:\n      - DB_PASSWORD=${DB_PASSWORD}\n      - STRIPE_API_KEY=${STRIPE_API_KEY}\n"
	if err := os.WriteFile(filepath.Join(e.dir, "docker-compose.yml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	dotenv := "DB_PASSWORD=" + e.secrets["DB_PASSWORD"] + "\nSTRIPE_API_KEY=" + e.secrets["STRIPE_API_KEY"] + "\n"
	if err := os.WriteFile(filepath.Join(e.dir, ".env"), []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env = []string{
		"HOME=" + e.home,
		"TMPDIR=" + e.home,
		"XDG_STATE_HOME=" + filepath.Join(e.home, "state"),
		"PHALA_CLOUD_API_PREFIX=" + ln.APIPrefix,
		"PHALA_CLOUD_API_KEY=" + ln.APIKey,
		"ETH_RPC_URL=" + ln.RPCURL,
		"PRIVATE_KEY=0x" + e.keyHex,
	}
	return e
}

func (e *chainEnv) deployments(t *testing.T) int {
	t.Helper()
	n, err := e.ln.AppDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func deployArgs(name string) []string {
	return []string{"deploy", "--compose", "docker-compose.yml", "--env-file", ".env", "--name", name, "--kms", "ethereum", "--wait", "--json"}
}

// TestKillAtEveryJournalBoundary ends the process (as a kill would) right
// after each journaled step, then re-runs the same command: every run must
// end with exactly one AppAuth and one CVM.
func TestKillAtEveryJournalBoundary(t *testing.T) {
	e := newChainEnv(t)
	for i, step := range []string{"provision", "deploy-tx", "app", "pubkey", "commit", "running"} {
		t.Run(step, func(t *testing.T) {
			name := fmt.Sprintf("killed-app-%d", i)
			before, cvms := e.deployments(t), e.ln.Cloud.Counts().CVMs
			p := run(t, e.dir, append(e.env, "CVMDEPLOY_TEST_STOP_AFTER="+step+":exit"), deployArgs(name)...)
			if p.code != 99 {
				t.Fatalf("killed run: exit %d, want 99 (the test hook)\n%s", p.code, p.stderr)
			}
			p = run(t, e.dir, e.env, deployArgs(name)...)
			if p.code != 0 {
				t.Fatalf("rerun: exit %d\n%s", p.code, p.stderr)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(p.stdout), &doc); err != nil || doc["status"] != "running" {
				t.Fatalf("rerun result %v (%v)", doc, err)
			}
			if got := e.deployments(t) - before; got != 1 {
				t.Fatalf("%d AppAuths deployed, want exactly 1", got)
			}
			if got := e.ln.Cloud.Counts().CVMs - cvms; got != 1 {
				t.Fatalf("%d CVMs, want exactly 1", got)
			}
		})
	}
}

// TestNoSecretLeaves deploys with a known key, API key and env values, and
// scans stdout, stderr and every file the run wrote for them, raw, in hex
// and in base64.
func TestNoSecretLeaves(t *testing.T) {
	e := newChainEnv(t)
	p := run(t, e.dir, e.env, deployArgs("hygiene-app")...)
	if p.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", p.code, p.stderr)
	}
	// A failing run too: errors are where secrets like to slip out.
	bad := run(t, e.dir, append(e.env, "PHALA_CLOUD_API_KEY=phak_wrong_"+e.ln.APIKey), deployArgs("hygiene-app-2")...)
	if bad.code == 0 {
		t.Fatal("a wrong API key was accepted")
	}
	// Values passed as a bare --env NAME, taken from the environment as a
	// CI job passes its secrets: they must not leave either.
	fromEnv := run(t, e.dir, append(e.env, "DB_PASSWORD="+e.secrets["DB_PASSWORD"], "STRIPE_API_KEY="+e.secrets["STRIPE_API_KEY"]),
		"deploy", "--compose", "docker-compose.yml", "--env", "DB_PASSWORD", "--env", "STRIPE_API_KEY", "--name", "hygiene-app-3", "--kms", "ethereum", "--wait", "--json")
	if fromEnv.code != 0 {
		t.Fatalf("deploy with --env NAME: exit %d\n%s", fromEnv.code, fromEnv.stderr)
	}
	blobs := map[string]string{"stdout": p.stdout + bad.stdout + fromEnv.stdout, "stderr": p.stderr + bad.stderr + fromEnv.stderr}
	written := 0
	for _, root := range []string{e.home, e.dir} {
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(path) == ".env" {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			blobs[path] = string(data)
			written++
			return nil
		})
	}
	if written == 0 {
		t.Fatal("found no file written by the run (the journal at least should exist)")
	}
	for what, secret := range e.secrets {
		for _, form := range secretForms(secret) {
			for where, blob := range blobs {
				if strings.Contains(blob, form) {
					t.Errorf("the %s (form %q) appears in %s", what, form, where)
				}
			}
		}
	}
	t.Logf("scanned stdout, stderr and %d files for %d secrets in all their forms", written, len(e.secrets))
}

// secretForms are the ways a secret could be written out.
func secretForms(s string) []string {
	raw := []byte(s)
	forms := []string{s, hex.EncodeToString(raw), strings.ToUpper(hex.EncodeToString(raw)),
		base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)}
	if b, err := hex.DecodeString(strings.TrimPrefix(s, "0x")); err == nil && len(b) > 0 {
		// A hex secret (the private key) also as bytes re-encoded.
		forms = append(forms, strings.ToUpper(s), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
	}
	return forms
}

package cloud_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// syncBuffer is the cloud's event log, read by tests while the cloud writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The package's tests share one anvil + KMS + cloud: starting them per test
// would dominate the run time on two cores. Tests use fresh apps and names,
// so they do not see each other's CVMs.
var (
	shared   *testnet.Localnet
	rootKey  *ecdsa.PrivateKey
	cloudLog syncBuffer
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if rootKey, err = crypto.GenerateKey(); err != nil {
		fmt.Fprintln(os.Stderr, "root key:", err)
		return 1
	}
	shared, err = testnet.StartLocalnet(ctx, testnet.LocalnetConfig{
		APIKey:  "phak_test",
		RootKey: rootKey,
		Cloud:   cloud.Config{BootStep: 20 * time.Millisecond, Log: &cloudLog},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start localnet:", err)
		return 1
	}
	defer shared.Close()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "cloud log:\n%s\n", cloudLog.String())
	}
	return code
}

// api is a minimal raw client: the emulator is tested on the wire, with the
// exact bodies the official CLI sends and the shapes it requires.
type api struct {
	t       *testing.T
	prefix  string
	key     string
	version string
	server  *cloud.Server // set by newCloud
}

func newAPI(t *testing.T) *api {
	return &api{t: t, prefix: shared.APIPrefix, key: shared.APIKey, version: cloud.Version20251028}
}

// forTest returns a copy of a that reports to t (a subtest).
func (a *api) forTest(t *testing.T) *api {
	c := *a
	c.t = t
	return &c
}

type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (a *api) do(method, path string, body any, hdr ...string) reply {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.prefix+path, rd)
	if err != nil {
		a.t.Fatalf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if a.key != "" {
		req.Header.Set("X-API-Key", a.key)
	}
	if a.version != "" {
		req.Header.Set("X-Phala-Version", a.version)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("read body: %v", err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// must asserts the status and returns the decoded object.
func (r reply) must(t *testing.T, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.raw)
	}
	return r.body
}

// composeYAML is a small web app that reads two env keys.
const composeYAML = "services:\n  web:\n    image: nginx:1.27\n    environment:\n      - GREETING=${GREETING}\n      - DB_PASSWORD=${DB_PASSWORD}\n    ports:\n      - \"8080:80\"\n"

// provisionBody is what `phala deploy --kms ethereum` sends (reference §15.A).
func provisionBody(name string, allowed ...string) map[string]any {
	if allowed == nil {
		allowed = []string{"GREETING", "DB_PASSWORD"}
	}
	return map[string]any{
		"name": name,
		"compose_file": map[string]any{"allowed_envs": allowed, "docker_compose_file": composeYAML,
			"name": "", "public_logs": true, "public_sysinfo": true},
		"listed": false, "kms": "ETHEREUM", "prefer_dev": false, "instance_type": "tdx.small",
	}
}

var testEnv = []kms.EnvVar{{Key: "GREETING", Value: "hello world"}, {Key: "DB_PASSWORD", Value: "s3cr=t#1-never-logged"}}

// chain returns a deployer client on the shared chain and a signer for the
// dev account (the user).
func chain(t *testing.T) (*deployer.Client, deployer.Signer) {
	t.Helper()
	c, err := deployer.Dial(context.Background(), shared.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, deployer.NewKeySigner(shared.DevAccount.PrivateKey)
}

// deployApp registers an app through the KMS factory, like the CLI.
func deployApp(t *testing.T, deviceHex, hashHex string) common.Address {
	t.Helper()
	c, s := chain(t)
	d, err := c.DeployApp(context.Background(), s, deployer.DeployAppConfig{
		KMS: shared.KMSContract, DeviceID: common.HexToHash(deviceHex), ComposeHash: common.HexToHash(hashHex)}, deployer.TxOptions{})
	if err != nil {
		t.Fatalf("deploy app: %v", err)
	}
	return d.AppID
}

// pubkey fetches the app's env key and checks the strict shape.
func (a *api) pubkey(appID string) string {
	a.t.Helper()
	body := a.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+appID, nil).must(a.t, 200)
	if len(body) != 2 || body["public_key"] == nil || body["signature"] == nil {
		a.t.Fatalf("pubkey answer must be exactly {public_key, signature}: %v", body)
	}
	return body["public_key"].(string)
}

// waitStatus polls GET /cvms/{id}/state until a final status.
func (a *api) waitStatus(id string) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st := a.do("GET", "/cvms/"+id+"/state", nil).must(a.t, 200)
		switch st["status"] {
		case cloud.StatusRunning, cloud.StatusError:
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.t.Fatalf("CVM %s did not reach a final status", id)
	return nil
}

// logHas waits until the event log has a line containing every part.
func logHas(t *testing.T, parts ...string) string {
	t.Helper()
	return logHasIn(t, &cloudLog, parts...)
}

// logHasIn waits until log has a line containing every part.
func logHasIn(t *testing.T, log *syncBuffer, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(log.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", parts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cryptoKey() (*ecdsa.PrivateKey, error) { return crypto.GenerateKey() }

// newCloud starts a second cloud on the shared chain and KMS, with cfg
// edited by edit, and returns a client for it and its event log.
func newCloud(t *testing.T, edit func(*cloud.Config)) (*api, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	cfg := cloud.Config{APIKey: "phak_other", Chain: chainBackend(t), KMSContract: shared.KMSContract, RootKey: rootKey,
		OSImageHash: shared.OSImageHash, BootStep: 20 * time.Millisecond, Log: log}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := cloud.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("cloud.New: %v", err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close cloud: %v", err)
		}
		if t.Failed() {
			t.Logf("cloud log:\n%s", log.String())
		}
	})
	return &api{t: t, prefix: srv.APIPrefix(), key: cfg.APIKey, version: cloud.Version20251028, server: srv}, log
}

// cloudKMSCVM provisions body on the cloud (PHALA) KMS, commits it and
// returns the CVM's id, its compose hash and the stored app-compose's raw
// bytes (GET /cvms/{id}/compose_file). The cloud KMS needs no chain, so
// the template is seen without an app contract.
func (a *api) cloudKMSCVM(body map[string]any) (id, hash string, stored []byte) {
	a.t.Helper()
	body["kms"] = "PHALA"
	prov := a.do("POST", "/cvms/provision", body).must(a.t, 200)
	hash = prov["compose_hash"].(string)
	cvm := a.do("POST", "/cvms", map[string]any{"app_id": prov["app_id"], "compose_hash": hash}).must(a.t, 200)
	id = cvm["vm_uuid"].(string)
	cf := a.do("GET", "/cvms/"+id+"/compose_file", nil)
	if cf.status != 200 {
		a.t.Fatalf("compose_file: %d %s", cf.status, cf.raw)
	}
	return id, hash, cf.raw
}

// decode parses a JSON object or fails the test.
func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

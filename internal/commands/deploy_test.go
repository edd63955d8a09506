package commands_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

const flowCompose = `services:
  app:
    image: ghcr.io/example/app:1.0
    environment:
      - API_TOKEN=${API_TOKEN}
      - LOG_LEVEL=${LOG_LEVEL:-info}
`

const flowSecret = "tok_live_4b9f2c7e1d-not-for-logs"

// flowEnv is a local testnet (anvil + local cloud) with the environment a
// user would export, and an app folder.
type flowEnv struct {
	ln       *testnet.Localnet
	dir      string
	compose  string
	envFile  string
	eth      *ethclient.Client
	keyHex   string
	journals string
}

func newFlowEnv(t *testing.T) *flowEnv { return newFlowEnvOn(t, 0) }

// newFlowEnvOn runs the testnet with chainID (0: anvil's 31337).
func newFlowEnvOn(t *testing.T, chainID uint64) *flowEnv {
	return newFlowEnvWith(t, testnet.LocalnetConfig{ChainID: chainID})
}

// newFlowEnvWith runs the testnet cfg describes.
func newFlowEnvWith(t *testing.T, cfg testnet.LocalnetConfig) *flowEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cfg.Cloud.BootStep == 0 {
		cfg.Cloud.BootStep = 10 * time.Millisecond
	}
	ln, err := testnet.StartLocalnet(ctx, cfg)
	if err != nil {
		t.Fatalf("start localnet: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	dir := t.TempDir()
	f := &flowEnv{ln: ln, dir: dir, compose: filepath.Join(dir, "docker-compose.yml"), envFile: filepath.Join(dir, "prod.env"), journals: filepath.Join(dir, "state")}
	mustWrite(t, f.compose, flowCompose)
	mustWrite(t, f.envFile, "API_TOKEN="+flowSecret+"\n")
	if f.eth, err = ethclient.Dial(ln.RPCURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.eth.Close)
	f.keyHex = fmt.Sprintf("%x", crypto.FromECDSA(ln.DevAccount.PrivateKey))
	t.Setenv("PHALA_CLOUD_API_PREFIX", ln.APIPrefix)
	t.Setenv("PHALA_CLOUD_API_KEY", ln.APIKey)
	t.Setenv("ETH_RPC_URL", ln.RPCURL)
	t.Setenv("PRIVATE_KEY", f.keyHex)
	t.Setenv("CVMDEPLOY_STATE_DIR", f.journals)
	return f
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// jsonDoc parses stdout as exactly one JSON document.
func jsonDoc(t *testing.T, r cliRun) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", r.stdout)
	}
	return doc
}

func (f *flowEnv) deployments(t *testing.T) int {
	t.Helper()
	n, err := f.ln.AppDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *flowEnv) deployArgs(name string, extra ...string) []string {
	return append([]string{"deploy", "--compose", f.compose, "--env-file", f.envFile, "--name", name, "--kms", "ethereum", "--wait", "--json"}, extra...)
}

func TestCLIDeployOnChainJSON(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("cli-onchain")...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	doc := jsonDoc(t, r)
	for _, k := range []string{"app_id", "contract_address", "deployer_address", "compose_hash", "kms_id", "chain_id", "tx_hash", "cvm_id", "vm_uuid", "status", "dashboard_url"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("--json output lacks %q: %v", k, doc)
		}
	}
	if doc["status"] != "running" || doc["deployer_address"] != f.ln.DevAccount.Address.Hex() || doc["chain_id"] != float64(31337) {
		t.Fatalf("result %v", doc)
	}
	if !strings.Contains(r.stderr, "AppAuth transaction sent: "+doc["tx_hash"].(string)) {
		t.Fatalf("stderr does not show the tx hash as it was sent:\n%s", r.stderr)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, flowSecret) || strings.Contains(out, f.keyHex) || strings.Contains(out, f.ln.APIKey) {
			t.Fatal("a secret was printed")
		}
	}
}

func TestCLIDeployCloudKMSAndDryRun(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", "deploy", "--compose", f.compose, "--env-file", f.envFile, "--name", "cli-cloud", "--kms", "phala", "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("cloud KMS deploy: exit %d\n%s", r.code, r.stderr)
	}
	if doc := jsonDoc(t, r); doc["status"] != "running" || doc["tx_hash"] != nil {
		t.Fatalf("cloud KMS result %v", doc)
	}
	before := f.deployments(t)
	r = runCLI(t, "", f.deployArgs("cli-dry", "--dry-run")...)
	if r.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", r.code, r.stderr)
	}
	doc := jsonDoc(t, r)
	if doc["dry_run"] != true || !common.IsHexAddress(fmt.Sprint(doc["predicted_app_id"])) {
		t.Fatalf("dry run result %v", doc)
	}
	if req := doc["commit_request"].(map[string]any); req["encrypted_env"] != "(elided)" {
		t.Fatalf("dry run shows the encrypted env: %v", req)
	}
	if f.deployments(t) != before || f.ln.Cloud.Counts().CVMs != 1 {
		t.Fatal("the dry run deployed or committed something")
	}
}

// TestCLIResumeAfterEachStep injects a failure right after each journaled
// step through the test-only hook, then re-runs the same command.
func TestCLIResumeAfterEachStep(t *testing.T) {
	f := newFlowEnv(t)
	for i, step := range []string{"provision", "deploy-tx", "app", "pubkey", "commit"} {
		t.Run(step, func(t *testing.T) {
			name := fmt.Sprintf("cli-resume-%d", i)
			before, cvms := f.deployments(t), f.ln.Cloud.Counts().CVMs
			t.Setenv("CVMDEPLOY_TEST_STOP_AFTER", step)
			r := runCLI(t, "", f.deployArgs(name)...)
			if r.code == 0 || !strings.Contains(r.stderr, "re-run the same command") {
				t.Fatalf("first run: exit %d, want a failure with a resume hint\n%s", r.code, r.stderr)
			}
			t.Setenv("CVMDEPLOY_TEST_STOP_AFTER", "")
			r = runCLI(t, "", f.deployArgs(name)...)
			if r.code != 0 {
				t.Fatalf("resumed run: exit %d\n%s", r.code, r.stderr)
			}
			doc := jsonDoc(t, r)
			if doc["status"] != "running" || doc["resumed_steps"] == nil {
				t.Fatalf("resumed result %v", doc)
			}
			if got := f.deployments(t) - before; got != 1 {
				t.Fatalf("%d AppAuths deployed, want 1", got)
			}
			if got := f.ln.Cloud.Counts().CVMs - cvms; got != 1 {
				t.Fatalf("%d CVMs, want 1", got)
			}
		})
	}
}

func TestCLIUpdateAndPrepareOnly(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("cli-update")...)
	if r.code != 0 {
		t.Fatalf("deploy: %s", r.stderr)
	}
	cvmID := jsonDoc(t, r)["cvm_id"].(string)
	v2 := filepath.Join(f.dir, "v2.yml")
	mustWrite(t, v2, flowCompose+"  sidecar:\n    image: busybox:1.36\n")
	r = runCLI(t, "", "update", "--cvm", cvmID, "--compose", v2, "--env-file", f.envFile, "--json")
	if r.code != 0 {
		t.Fatalf("update: exit %d\n%s", r.code, r.stderr)
	}
	doc := jsonDoc(t, r)
	calls := doc["onchain_calls"].([]any)
	if len(calls) != 1 || calls[0].(map[string]any)["tx_hash"] == "" {
		t.Fatalf("update result %v", doc)
	}

	v3 := filepath.Join(f.dir, "v3.yml")
	mustWrite(t, v3, flowCompose+"  cache:\n    image: redis:7\n")
	safeFile := filepath.Join(f.dir, "safe.json")
	safe := "0x000000000000000000000000000000000000dEaD"
	r = runCLI(t, "", "update", "--cvm", cvmID, "--compose", v3, "--env-file", f.envFile, "--prepare-only", "--safe", safe, "--safe-file", safeFile, "--json")
	if r.code != 0 {
		t.Fatalf("prepare-only: exit %d\n%s", r.code, r.stderr)
	}
	prep := jsonDoc(t, r)
	token, hash := prep["commit_token"].(string), prep["compose_hash"].(string)
	batch, err := os.ReadFile(safeFile)
	if err != nil || !strings.Contains(string(batch), `"chainId": "31337"`) {
		t.Fatalf("safe file: %v\n%s", err, batch)
	}
	// The "Safe" executes the call: here the owner sends the calldata.
	call := prep["onchain_calls"].([]any)[0].(map[string]any)
	r = runCLI(t, "", "app", "compose", "add", "--app-id", call["to"].(string), "--compose-hash", hash, "--json")
	if r.code != 0 {
		t.Fatalf("app compose add: exit %d\n%s", r.code, r.stderr)
	}
	tx := jsonDoc(t, r)["tx_hash"].(string)
	r = runCLI(t, "", "commit-update", "--cvm", cvmID, "--token", token, "--compose-hash", hash, "--transaction-hash", tx, "--json")
	if r.code != 0 {
		t.Fatalf("commit-update: exit %d\n%s", r.code, r.stderr)
	}
	if jsonDoc(t, r)["correlation_id"] == "" {
		t.Fatal("no correlation id")
	}
}

func TestCLIDeployBadInput(t *testing.T) {
	f := newFlowEnv(t)
	big := filepath.Join(f.dir, "big.yml")
	mustWrite(t, big, "services: {}\n# "+strings.Repeat("x", 205*1024)+"\n")
	badEnv := filepath.Join(f.dir, "bad.env")
	mustWrite(t, badEnv, "API_TOKEN=x\nNOT A LINE\n")
	poorKey, _ := crypto.GenerateKey()

	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"missing compose", []string{"deploy", "--compose", filepath.Join(f.dir, "none.yml"), "--name", "bad-missing", "--kms", "ethereum"}, nil, commands.ExitUsage, "cannot read the compose file"},
		{"compose over 200 KiB", []string{"deploy", "--compose", big, "--name", "bad-big", "--kms", "ethereum"}, nil, commands.ExitUsage, "200 KiB"},
		{"env error", []string{"deploy", "--compose", f.compose, "--env-file", badEnv, "--name", "bad-env", "--kms", "ethereum"}, nil, commands.ExitUsage, "bad.env:2"},
		{"unknown kms", f.deployArgs("bad-kms", "--kms", "kms-nowhere"), nil, commands.ExitUsage, "no such KMS"},
		{"chain mismatch", f.deployArgs("bad-chain", "--chain", "base"), nil, commands.ExitVerify, "chain 8453"},
		{"no funds", f.deployArgs("bad-funds"), map[string]string{"PRIVATE_KEY": fmt.Sprintf("%x", crypto.FromECDSA(poorKey))}, commands.ExitVerify, "insufficient funds"},
		{"api key rejected", f.deployArgs("bad-apikey"), map[string]string{"PHALA_CLOUD_API_KEY": "phak_wrong"}, commands.ExitAuth, "401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			before := f.deployments(t)
			r := runCLI(t, "", tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if r.stdout != "" {
				t.Fatalf("stdout carries output on failure: %q", r.stdout)
			}
			if f.deployments(t) != before {
				t.Fatal("an AppAuth was deployed")
			}
		})
	}
}

func TestCLIDeployCommitConflict(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("cli-conflict")...)
	if r.code != 0 {
		t.Fatalf("deploy: %s", r.stderr)
	}
	doc := jsonDoc(t, r)
	// Commit another compose for the same app id by hand: the split-phase
	// commands make that possible, and the service answers 409.
	other := filepath.Join(f.dir, "other.yml")
	mustWrite(t, other, flowCompose+"  extra:\n    image: busybox\n")
	pf := filepath.Join(f.dir, "prov.json")
	r = runCLI(t, "", "provision", "--compose", other, "--env-file", f.envFile, "--name", "cli-conflict-2", "--kms", "ethereum", "--out", pf, "--json")
	if r.code != 0 {
		t.Fatalf("provision: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, "", "commit", "--provision", pf, "--app-id", doc["app_id"].(string), "--env-file", f.envFile, "--json")
	if r.code != commands.ExitAPI || !strings.Contains(r.stderr, "ERR-03-007") {
		t.Fatalf("conflicting commit: exit %d, want %d with ERR-03-007\n%s", r.code, commands.ExitAPI, r.stderr)
	}
}

func TestCLIDeployBootFailure(t *testing.T) {
	f := newFlowEnv(t)
	// Phase one and the AppAuth by hand, then commit a CVM whose app was
	// deployed with another compose hash allowed: it cannot boot.
	pf := filepath.Join(f.dir, "prov.json")
	r := runCLI(t, "", "provision", "--compose", f.compose, "--env-file", f.envFile, "--name", "cli-bootfail", "--kms", "ethereum", "--out", pf, "--json")
	if r.code != 0 {
		t.Fatalf("provision: %s", r.stderr)
	}
	prov := jsonDoc(t, r)
	wrongHash := strings.Repeat("ab", 32)
	r = runCLI(t, "", "app", "deploy", "--kms-contract", prov["kms_contract"].(string), "--compose-hash", wrongHash, "--device-id", prov["device_id"].(string), "--json")
	if r.code != 0 {
		t.Fatalf("app deploy: %s", r.stderr)
	}
	app := jsonDoc(t, r)
	r = runCLI(t, "", "commit", "--provision", pf, "--app-id", app["app_id"].(string), "--deployer-address", app["deployer_address"].(string), "--env-file", f.envFile, "--wait", "--json")
	if r.code != commands.ExitBoot || !strings.Contains(strings.ToLower(r.stderr), "compose hash") {
		t.Fatalf("exit %d, want %d (boot failure naming the compose hash)\n%s", r.code, commands.ExitBoot, r.stderr)
	}
}

// TestCLIMainnetNeedsYesOffTerminal runs a testnet that calls itself Base
// (chain 8453): its KMS is not Phala's pinned one, so it is refused unless
// named with --kms-contract; then, off a terminal, spending "mainnet" gas
// needs --yes.
func TestCLIMainnetNeedsYesOffTerminal(t *testing.T) {
	f := newFlowEnvOn(t, 8453)
	r := runCLI(t, "", f.deployArgs("cli-mainnet")...)
	if r.code != commands.ExitVerify || !strings.Contains(r.stderr, "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C") || !strings.Contains(r.stderr, f.ln.KMSContract.Hex()) {
		t.Fatalf("unpinned KMS on chain 8453: exit %d, want %d naming both contracts\n%s", r.code, commands.ExitVerify, r.stderr)
	}
	trusted := []string{"--kms-contract", f.ln.KMSContract.Hex()}
	r = runCLI(t, "", f.deployArgs("cli-mainnet", trusted...)...)
	if r.code != commands.ExitUsage || !strings.Contains(r.stderr, "without --yes") {
		t.Fatalf("exit %d, want %d asking for --yes\n%s", r.code, commands.ExitUsage, r.stderr)
	}
	if f.deployments(t) != 0 {
		t.Fatal("gas was spent without confirmation")
	}
	r = runCLI(t, "", f.deployArgs("cli-mainnet", append(trusted, "--yes")...)...)
	if r.code != 0 {
		t.Fatalf("with --yes: exit %d\n%s", r.code, r.stderr)
	}
	if doc := jsonDoc(t, r); doc["chain_id"] != float64(8453) || f.deployments(t) != 1 {
		t.Fatalf("result %v", doc)
	}
}

func TestCLIDeployBatch(t *testing.T) {
	f := newFlowEnv(t)
	var apps []string
	for i := 0; i < 3; i++ {
		compose := filepath.Join(f.dir, fmt.Sprintf("c%d.yml", i))
		mustWrite(t, compose, strings.Replace(flowCompose, "app:1.0", fmt.Sprintf("app:1.%d", i), 1))
		apps = append(apps, fmt.Sprintf(`{"name": "cli-batch-%d", "compose": "c%d.yml", "env_files": ["prod.env"]}`, i, i))
	}
	batch := filepath.Join(f.dir, "batch.json")
	mustWrite(t, batch, `{"apps": [`+strings.Join(apps, ",")+`]}`)

	// A dry run of the batch first: one document, every app, a total, and
	// nothing deployed.
	r := runCLI(t, "", "deploy", "--batch", batch, "--kms", "ethereum", "--dry-run", "--json")
	if r.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", r.code, r.stderr)
	}
	dry := jsonDoc(t, r)
	if dry["dry_run"] != true || len(dry["apps"].([]any)) != 3 || dry["estimated_cost_wei"] == nil || f.deployments(t) != 0 {
		t.Fatalf("batch dry run %v (%d AppAuths)", dry, f.deployments(t))
	}
	r = runCLI(t, "", "deploy", "--batch", batch, "--kms", "ethereum", "--dry-run")
	if r.code != 0 || strings.Count(r.stdout, "cli-batch-") != 3 || !strings.Contains(r.stdout, "nothing was sent") {
		t.Fatalf("batch dry run, text: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "", "deploy", "--batch", batch, "--kms", "ethereum", "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	doc := jsonDoc(t, r)
	if doc["succeeded"] != float64(3) || len(doc["apps"].([]any)) != 3 {
		t.Fatalf("batch result %v", doc)
	}
	for i, a := range doc["apps"].([]any) {
		got, want := a.(map[string]any)["app_id"], dry["apps"].([]any)[i].(map[string]any)["predicted_app_id"]
		if got == nil || got != want {
			t.Errorf("app %d: deployed %v, the dry run predicted %v", i, got, want)
		}
	}
	if f.deployments(t) != 3 {
		t.Fatal("want 3 AppAuths")
	}
	r = runCLI(t, "", "deploy", "--batch", batch, "--compose", f.compose)
	if r.code != commands.ExitUsage {
		t.Fatalf("--batch with --compose: exit %d", r.code)
	}
}

// TestCLIAppDeployCalldataOnlyForASafe prints the factory call as a Safe
// batch, "executes" it from another account, and checks the Safe owns the
// resulting app.
func TestCLIAppDeployCalldataOnlyForASafe(t *testing.T) {
	f := newFlowEnv(t)
	safe := "0x000000000000000000000000000000000000bEEF"
	t.Setenv("PRIVATE_KEY", "") // --calldata-only needs no key
	r := runCLI(t, "", "app", "deploy", "--calldata-only", "--safe", safe, "--chain", "anvil",
		"--kms-contract", f.ln.KMSContract.Hex(), "--compose-hash", strings.Repeat("11", 32), "--device-id", strings.Repeat("22", 32))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var batch struct {
		ChainID      string `json:"chainId"`
		Meta         struct{ CreatedFromSafeAddress string }
		Transactions []struct{ To, Value, Data string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &batch); err != nil {
		t.Fatalf("stdout is not a batch: %v\n%s", err, r.stdout)
	}
	if batch.ChainID != "31337" || len(batch.Transactions) != 1 || batch.Transactions[0].To != f.ln.KMSContract.Hex() || !strings.HasPrefix(batch.Transactions[0].Data, "0x8618169d") {
		t.Fatalf("batch %+v", batch)
	}
	// Whoever executes it, the Safe owns the app.
	chain, err := deployer.Dial(context.Background(), f.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	to := common.HexToAddress(batch.Transactions[0].To)
	rcpt, err := chain.Transact(context.Background(), deployer.NewKeySigner(f.ln.DevAccount.PrivateKey), deployer.TxRequest{To: &to, Data: common.FromHex(batch.Transactions[0].Data)}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := deployer.ParseAppDeployed(rcpt, f.ln.KMSContract)
	if err != nil {
		t.Fatal(err)
	}
	info, err := chain.AppInfo(context.Background(), deployer.AppInfoQuery{App: dep.AppID})
	if err != nil || info.Owner != common.HexToAddress(safe) {
		t.Fatalf("owner %v (%v), want the Safe", info.Owner, err)
	}
	// Admin calls too: addComposeHash for the Safe to run.
	r = runCLI(t, "", "app", "compose", "add", "--app-id", dep.AppID.Hex(), "--compose-hash", strings.Repeat("33", 32), "--calldata-only", "--chain", "anvil")
	if r.code != 0 || !strings.Contains(r.stdout, "0xdfc77223") {
		t.Fatalf("compose add --calldata-only: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestCLIReplacementFlagsValidated(t *testing.T) {
	key, _ := crypto.GenerateKey()
	t.Setenv("PRIVATE_KEY", fmt.Sprintf("%x", crypto.FromECDSA(key)))
	for _, args := range [][]string{
		{"app", "deploy", "--rpc-url", "http://127.0.0.1:1", "--kms-contract", "0x000000000000000000000000000000000000dEaD", "--replace-after", "soon"},
		{"app", "deploy", "--rpc-url", "http://127.0.0.1:1", "--kms-contract", "0x000000000000000000000000000000000000dEaD", "--max-fee", "lots"},
	} {
		r := runCLI(t, "", args...)
		flag := args[len(args)-2]
		if r.code != commands.ExitUsage || !strings.Contains(r.stderr, flag) {
			t.Errorf("%s %s: exit %d, want %d naming the flag\n%s", flag, args[len(args)-1], r.code, commands.ExitUsage, r.stderr)
		}
	}
}

// TestCLIDeployAPIAndKeyFailures covers the failures only the service or
// the chain can detect: a provision the API rejects (exit 6) and an env
// key not signed by the KMS root key on-chain (exit 7).
func TestCLIDeployAPIAndKeyFailures(t *testing.T) {
	f := newFlowEnv(t)
	r := runCLI(t, "", f.deployArgs("cli-bad-type", "--instance-type", "tdx.enormous")...)
	if r.code != commands.ExitAPI || !strings.Contains(r.stderr, "instance type") {
		t.Fatalf("rejected provision: exit %d, want %d naming the instance type\n%s", r.code, commands.ExitAPI, r.stderr)
	}
	if f.deployments(t) != 0 {
		t.Fatal("an AppAuth was deployed for a rejected provision")
	}

	// Point the on-chain root key elsewhere (as the KMS owner, impersonated
	// on anvil): the cloud's signature no longer matches the chain.
	other, _ := crypto.GenerateKey()
	data := bindings.NewDstackKms().PackSetKmsInfo(bindings.DstackKmsKmsInfo{K256Pubkey: crypto.CompressPubkey(&other.PublicKey), CaPubkey: []byte{}, Quote: []byte{}, Eventlog: []byte{}})
	rc := f.eth.Client()
	if err := rc.Call(nil, "anvil_impersonateAccount", f.ln.KMSOwner); err != nil {
		t.Fatal(err)
	}
	var h common.Hash
	if err := rc.Call(&h, "eth_sendTransaction", map[string]any{"from": f.ln.KMSOwner, "to": f.ln.KMSContract, "data": hexutil.Bytes(data)}); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "", f.deployArgs("cli-bad-key")...)
	if r.code != commands.ExitVerify || !strings.Contains(r.stderr, "not signed by the KMS root key") {
		t.Fatalf("unverified key: exit %d, want %d\n%s", r.code, commands.ExitVerify, r.stderr)
	}
	if !strings.Contains(r.stderr, "re-run the same command") {
		t.Fatalf("no resume hint after a failure past the AppAuth:\n%s", r.stderr)
	}
	if f.ln.Cloud.Counts().CVMs != 0 {
		t.Fatal("committed with an unverified key")
	}
}

func TestCLIStatus(t *testing.T) {
	f := newFlowEnv(t)
	args := f.deployArgs("cli-status")
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--wait" })
	r := runCLI(t, "", args...)
	if r.code != 0 {
		t.Fatalf("deploy: %s", r.stderr)
	}
	id := jsonDoc(t, r)["cvm_id"].(string)
	r = runCLI(t, "", "status", "--cvm", id, "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("status --wait: exit %d\n%s", r.code, r.stderr)
	}
	if doc := jsonDoc(t, r); doc["status"] != "running" || doc["app_id"] == nil {
		t.Fatalf("status %v", doc)
	}
	if r = runCLI(t, "", "status", "--cvm", "no-such-cvm"); r.code != commands.ExitAPI {
		t.Fatalf("unknown CVM: exit %d\n%s", r.code, r.stderr)
	}
	// The CVM as the argument, as users type it; the app id checksummed
	// although the cloud answers it as bare hex.
	r = runCLI(t, "", "status", id)
	if r.code != 0 || !strings.Contains(r.stdout, "status:") || !strings.Contains(r.stdout, "running") {
		t.Fatalf("status CVM_ID: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^app_id: +0x[0-9a-fA-F]{40}$`).MatchString(r.stdout) {
		t.Fatalf("status prints the app id unchecksummed:\n%s", r.stdout)
	}
	for _, bad := range [][]string{{"status", id, "--json"}, {"status", "--cvm", "other", id}, {"status", id, "extra"}} {
		if r = runCLI(t, "", bad...); r.code != commands.ExitUsage {
			t.Fatalf("%v: exit %d, want %d\n%s", bad, r.code, commands.ExitUsage, r.stderr)
		}
	}
}

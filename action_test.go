package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
)

// fakeReleases serves release assets as GitHub does
// (…/releases/download/TAG/NAME and …/releases/latest/download/NAME): each
// tag maps asset names to their bytes, SHA256SUMS included.
func fakeReleases(t *testing.T, tags map[string]map[string][]byte, latest string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tag, name string
		switch parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/releases/"), "/"); {
		case len(parts) == 3 && parts[0] == "latest" && parts[1] == "download":
			tag, name = latest, parts[2]
		case len(parts) == 3 && parts[0] == "download":
			tag, name = parts[1], parts[2]
		}
		data, ok := tags[tag][name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/releases"
}

// releaseOf is a release holding bin as this machine's asset, with sums
// as its SHA256SUMS (nil: the right ones).
func releaseOf(t *testing.T, bin []byte, sums []byte) map[string][]byte {
	t.Helper()
	name := releaseAsset(runtime.GOOS, runtime.GOARCH)
	if sums == nil {
		sum := sha256.Sum256(bin)
		sums = []byte(hex.EncodeToString(sum[:]) + "  " + name + "\n" + strings.Repeat("0", 64) + "  cvmdeploy-plan9-amd64\n")
	}
	return map[string][]byte{name: bin, "SHA256SUMS": sums}
}

// actionJob runs the action as one job of a workflow run would.
type actionJob struct {
	t         *testing.T
	action    *actionFile
	root      string
	workspace string
	env       []string
	cache     *actionCache
	runID     string
	temp      string // RUNNER_TEMP: the same path on every attempt, emptied
}

func newActionJob(t *testing.T, workspace string, env []string) *actionJob {
	t.Helper()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Go's effective settings (from the environment or its env file under
	// HOME, which the job replaces), so that a source build uses this
	// machine's module and build caches: the same module paths, the same
	// compile actions, only a link.
	env = append(env, "PATH="+os.Getenv("PATH"))
	keys := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN", "GONOSUMDB", "GOPRIVATE", "GOSUMDB"}
	vals, err := exec.Command("go", append([]string{"env"}, keys...)...).Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	for i, v := range strings.Split(strings.TrimRight(string(vals), "\n"), "\n") {
		if i < len(keys) {
			env = append(env, keys[i]+"="+v)
		}
	}
	return &actionJob{t: t, action: loadAction(t, filepath.Join(root, "action.yml")), root: root, workspace: workspace, env: env,
		cache: &actionCache{dir: t.TempDir()}, runID: "4242", temp: filepath.Join(t.TempDir(), "_temp")}
}

// run is one attempt of the job: a fresh machine (an empty RUNNER_TEMP at
// the same path, as on hosted runners), the same workflow run (the cache is
// shared between attempts, as on GitHub).
func (j *actionJob) run(attempt int, with map[string]string, env ...string) *actionResult {
	j.t.Helper()
	osName := map[string]string{"linux": "Linux", "darwin": "macOS", "windows": "Windows"}[runtime.GOOS]
	arch := map[string]string{"amd64": "X64", "arm64": "ARM64"}[runtime.GOARCH]
	if err := os.RemoveAll(j.temp); err != nil {
		j.t.Fatal(err)
	}
	if err := os.MkdirAll(j.temp, 0o755); err != nil {
		j.t.Fatal(err)
	}
	r := &actionRun{
		Action: j.action, ActionPath: j.root, Workspace: j.workspace, With: with,
		Env: append(append([]string{}, j.env...), env...),
		Runner: map[string]string{
			"RUNNER_TEMP": j.temp, "RUNNER_OS": osName, "RUNNER_ARCH": arch,
			"GITHUB_RUN_ID": j.runID, "GITHUB_RUN_ATTEMPT": fmt.Sprint(attempt), "GITHUB_JOB": "release",
			"GITHUB_WORKSPACE": j.workspace, "GITHUB_ACTIONS": "true",
		},
		Cache: j.cache, Artifacts: j.t.TempDir(),
	}
	res := r.run(j.t)
	j.t.Logf("attempt %d ran %v, skipped %v, failed %q", attempt, res.Steps, res.Skipped, res.Failed)
	return res
}

func hasStep(steps []string, name string) bool {
	for _, s := range steps {
		if s == name {
			return true
		}
	}
	return false
}

// TestActionDeploy runs action.yml's own steps against a local testnet
// (anvil, the local cloud): a release binary is downloaded and checked
// against SHA256SUMS, the job is killed right after the AppAuth was
// deployed, and the re-run of the job restores the journal from the cache
// and finishes without deploying a second AppAuth. Then an update prepared
// for a multisig (its commit token masked), the owner's call, commit-update
// with the token from the job's environment, and status.
func TestActionDeploy(t *testing.T) {
	e := newChainEnv(t)
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	releases := fakeReleases(t, map[string]map[string][]byte{"v9.9.9": releaseOf(t, bin, nil)}, "v9.9.9")
	// The job's environment: the secrets as a workflow maps them from its
	// secret store; the env input names two of them.
	env := append(append([]string{}, e.env...),
		"DB_PASSWORD="+e.secrets["DB_PASSWORD"], "STRIPE_API_KEY="+e.secrets["STRIPE_API_KEY"],
		"CVMDEPLOY_RELEASES_URL="+releases)
	job := newActionJob(t, e.dir, env)
	deploy := map[string]string{
		"compose": "docker-compose.yml",
		"env":     "DB_PASSWORD, STRIPE_API_KEY",
		"name":    "action-app",
		"kms":     "ethereum",
		"chain":   "anvil",
		"version": "v9.9.9",
	}
	var logs []string
	var cvmID string

	t.Run("killed job, re-run resumes", func(t *testing.T) {
		before, cvms := e.deployments(t), e.ln.Cloud.Counts().CVMs
		first := job.run(1, deploy, "CVMDEPLOY_TEST_STOP_AFTER=app:exit")
		logs = append(logs, first.Log)
		if first.Failed != "cvmdeploy deploy" {
			t.Fatalf("the killed attempt failed at %q, want the deploy step\n%s", first.Failed, first.Log)
		}
		if !strings.Contains(first.Log, "downloading "+releaseAsset(runtime.GOOS, runtime.GOARCH)+" (v9.9.9) from "+releases+"/download/v9.9.9") {
			t.Fatalf("the binary was not installed from the release:\n%s", first.Log)
		}
		if !hasStep(first.Steps, "Save the journal") || len(job.cache.entries) != 1 {
			t.Fatalf("the journal was not saved after the kill (cache %v)", job.cache.entries)
		}
		if hasStep(first.Steps, "Set up Go (cvmdeploy from source)") {
			t.Fatal("a release install set up Go")
		}
		if got := e.deployments(t) - before; got != 1 {
			t.Fatalf("the killed attempt deployed %d AppAuths, want 1", got)
		}

		second := job.run(2, deploy)
		logs = append(logs, second.Log)
		if second.Failed != "" {
			t.Fatalf("the re-run failed at %s:\n%s", second.Failed, second.Log)
		}
		if second.Restored != "cvmdeploy-journal-action-app-4242-1" {
			t.Fatalf("the re-run restored %q, want the killed attempt's journal", second.Restored)
		}
		if got := e.deployments(t) - before; got != 1 {
			t.Fatalf("%d AppAuths deployed in all, want exactly 1", got)
		}
		if got := e.ln.Cloud.Counts().CVMs - cvms; got != 1 {
			t.Fatalf("%d CVMs, want 1", got)
		}
		out := second.Outputs
		var doc map[string]any
		if err := json.Unmarshal([]byte(out["result"]), &doc); err != nil {
			t.Fatalf("output result is not the JSON result: %v\n%q", err, out["result"])
		}
		if !regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`).MatchString(out["app-id"]) || common.HexToAddress(out["app-id"]).Hex() != out["app-id"] {
			t.Fatalf("app-id %q is not a checksummed address", out["app-id"])
		}
		for name, key := range map[string]string{"app-id": "app_id", "contract-address": "contract_address", "deployer-address": "deployer_address",
			"cvm-id": "cvm_id", "compose-hash": "compose_hash", "tx-hash": "tx_hash", "status": "status", "dashboard-url": "dashboard_url",
			"compose-verified": "compose_verified", "kms-trust": "kms_trust"} {
			if out[name] == "" || fmt.Sprint(doc[key]) != out[name] {
				t.Errorf("output %s = %q, result %s = %v", name, out[name], key, doc[key])
			}
		}
		if out["status"] != "running" || out["deployer-address"] != e.ln.DevAccount.Address.Hex() || out["compose-verified"] != "predicted" || out["exit-code"] != "0" {
			t.Fatalf("outputs %v", out)
		}
		if out["cvmdeploy-path"] == "" || out["commit-token"] != "" || out["review-page"] != "" {
			t.Fatalf("outputs %v", out)
		}
		if resumed := fmt.Sprint(doc["resumed_steps"]); !strings.Contains(resumed, "app") {
			t.Fatalf("the re-run did not resume: resumed_steps %s", resumed)
		}
		for _, want := range []string{
			"### ✅ cvmdeploy deploy: running",
			"| App id | `" + out["app-id"] + "` |",
			"| Compose hash verified | **predicted** — cvmdeploy built the document from your inputs and the pinned server additions; its sha256 is the hash |",
			"| Transaction | `" + out["tx-hash"] + "` |",
			"| Env key | verified against the KMS root key on-chain |",
			"| Resumed | ",
		} {
			if !strings.Contains(second.Summary, want) {
				t.Errorf("the summary lacks %q:\n%s", want, second.Summary)
			}
		}
		cvmID = out["cvm-id"]
	})
	if cvmID == "" {
		t.FailNow()
	}

	t.Run("update prepared for a multisig, then commit-update", func(t *testing.T) {
		v2 := "services:\n  api:\n    image: ghcr.io/example/api:3\n    environment:\n      - DB_PASSWORD=${DB_PASSWORD}\n      - STRIPE_API_KEY=${STRIPE_API_KEY}\n"
		if err := os.WriteFile(filepath.Join(e.dir, "docker-compose.v2.yml"), []byte(v2), 0o644); err != nil {
			t.Fatal(err)
		}
		nonce, err := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
		if err != nil {
			t.Fatal(err)
		}
		with := map[string]string{"command": "update", "cvm": cvmID, "compose": "docker-compose.v2.yml", "env-file": ".env",
			"prepare-only": "true", "chain": "anvil", "version": "v9.9.9"}
		review := supportsReview(t)
		if review {
			with["review-page"] = "review.html"
		}
		prep := job.run(1, with)
		logs = append(logs, prep.Log)
		if prep.Failed != "" {
			t.Fatalf("prepare failed at %s:\n%s", prep.Failed, prep.Log)
		}
		if after, _ := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil); after != nonce {
			t.Fatal("a prepared update sent a transaction")
		}
		out := prep.Outputs
		token := out["commit-token"]
		if token == "" || out["status"] != "prepared" || out["compose-verified"] != "read" || out["app-id"] != common.HexToAddress(out["app-id"]).Hex() {
			t.Fatalf("outputs %v", out)
		}
		// The token is masked before anything prints it.
		mask := strings.Index(prep.Log, "::add-mask::"+token)
		if mask < 0 || strings.Index(prep.Log, token) < mask+len("::add-mask::") {
			t.Fatalf("the commit token is not masked before it is printed:\n%s", prep.Log)
		}
		var doc struct {
			Calls []struct{ Function, To, Data string } `json:"onchain_calls"`
		}
		if err := json.Unmarshal([]byte(out["result"]), &doc); err != nil || len(doc.Calls) != 1 || doc.Calls[0].Function != "addComposeHash" {
			t.Fatalf("calls %+v (%v)", doc.Calls, err)
		}
		for _, want := range []string{"#### On-chain calls for the owner", "1. `addComposeHash` on `" + common.HexToAddress(doc.Calls[0].To).Hex() + "`",
			doc.Calls[0].Data, "| Compose hash verified | **read** — ", "| Commit token | in the `commit-token` output (masked) |"} {
			if !strings.Contains(prep.Summary, want) {
				t.Errorf("the summary lacks %q:\n%s", want, prep.Summary)
			}
		}
		if strings.Contains(prep.Summary, token) {
			t.Fatal("the summary shows the commit token")
		}
		if review {
			if out["review-page"] != filepath.Join(e.dir, "review.html") || !hasStep(prep.Steps, "Attach the review page") ||
				!strings.Contains(prep.Summary, "**Review page:** [cvmdeploy-review-") {
				t.Fatalf("review page: output %q, steps %v\n%s", out["review-page"], prep.Steps, prep.Summary)
			}
		} else if hasStep(prep.Steps, "Attach the review page") {
			t.Fatal("attached a review page that was not asked for")
		}

		// The owner (here the dev key, as a Safe would) executes the call.
		p := run(t, e.dir, e.env, "app", "compose", "add", "--compose-hash", out["compose-hash"], "--json", doc.Calls[0].To)
		if p.code != 0 {
			t.Fatalf("app compose add: %s", p.stderr)
		}
		var sent struct {
			TxHash string `json:"tx_hash"`
		}
		if err := json.Unmarshal([]byte(p.stdout), &sent); err != nil {
			t.Fatal(err)
		}
		done := job.run(1, map[string]string{"command": "commit-update", "cvm": cvmID, "compose-hash": out["compose-hash"],
			"transaction-hash": sent.TxHash, "version": "v9.9.9"}, "CVMDEPLOY_COMMIT_TOKEN="+token)
		logs = append(logs, done.Log)
		if done.Failed != "" {
			t.Fatalf("commit-update failed at %s:\n%s", done.Failed, done.Log)
		}
		if !strings.Contains(done.Log, "--token *** ") || strings.Contains(strings.ReplaceAll(done.Log, "::add-mask::"+token, ""), token) {
			t.Fatalf("commit-update shows the token:\n%s", done.Log)
		}
		if done.Outputs["cvm-id"] != cvmID || done.Outputs["exit-code"] != "0" || !strings.Contains(done.Summary, "### ✅ cvmdeploy commit-update") {
			t.Fatalf("commit-update outputs %v\n%s", done.Outputs, done.Summary)
		}
	})

	t.Run("status, cvmdeploy built from the action's source", func(t *testing.T) {
		st := job.run(1, map[string]string{"command": "status", "cvm": cvmID, "version": "source"})
		logs = append(logs, st.Log)
		if st.Failed != "" {
			t.Fatalf("status failed at %s:\n%s", st.Failed, st.Log)
		}
		if !hasStep(st.Steps, "Set up Go (cvmdeploy from source)") || !strings.Contains(st.Log, "cvmdeploy source (commit ") {
			t.Fatalf("not built from source: steps %v\n%s", st.Steps, st.Log)
		}
		if hasStep(st.Steps, "Restore the journal (a re-run resumes)") || hasStep(st.Steps, "Save the journal") {
			t.Fatal("status cached a journal")
		}
		if st.Outputs["status"] != "running" || st.Outputs["cvm-id"] != cvmID {
			t.Fatalf("status outputs %v", st.Outputs)
		}
	})

	t.Run("a value in the env input is refused without printing it", func(t *testing.T) {
		bad := job.run(1, map[string]string{"compose": "docker-compose.yml", "name": "action-bad", "kms": "ethereum", "version": "v9.9.9",
			"env": "DB_PASSWORD=hunter2-never-print"})
		logs = append(logs, bad.Log)
		if bad.Failed != "cvmdeploy deploy" || !strings.Contains(bad.Log, "env: entry 1 (DB_PASSWORD=…) has a value") {
			t.Fatalf("failed at %q:\n%s", bad.Failed, bad.Log)
		}
		if strings.Contains(bad.Log, "hunter2") {
			t.Fatal("the refused value was printed")
		}
	})

	// No secret of the job's environment reaches a log, an output or a
	// summary, in any encoding.
	for what, secret := range e.secrets {
		for _, form := range secretForms(secret) {
			for i, l := range logs {
				if strings.Contains(l, form) {
					t.Errorf("the %s appears in job log %d", what, i+1)
				}
			}
		}
	}
}

// supportsReview reports whether this cvmdeploy has --review (the review
// page is built in parallel with the Action).
func supportsReview(t *testing.T) bool {
	out, _ := exec.Command(binary, "update", "--help").CombinedOutput()
	ok := strings.Contains(string(out), "--review")
	if !ok {
		t.Log("this cvmdeploy has no --review yet: the review-page input is not exercised")
	}
	return ok
}

// TestActionInstallChecksum: the install step runs nothing whose bytes do
// not match the release's SHA256SUMS, nor a binary the sums do not list.
func TestActionInstallChecksum(t *testing.T) {
	good := []byte("#!/bin/sh\necho 'cvmdeploy v1.0.0 (commit c0ffee, go, test)'\n")
	evil := []byte("#!/bin/sh\necho 'cvmdeploy evil'\n")
	sum := sha256.Sum256(good)
	name := releaseAsset(runtime.GOOS, runtime.GOARCH)
	releases := fakeReleases(t, map[string]map[string][]byte{
		"v1.0.0": releaseOf(t, good, nil),
		// The asset was swapped after the sums were published.
		"v1.0.1": releaseOf(t, evil, []byte(hex.EncodeToString(sum[:])+"  "+name+"\n")),
		// The sums do not list this platform.
		"v1.0.2": releaseOf(t, good, []byte(hex.EncodeToString(sum[:])+"  cvmdeploy-plan9-amd64\n")),
	}, "v1.0.0")
	job := newActionJob(t, t.TempDir(), []string{"HOME=" + t.TempDir(), "CVMDEPLOY_RELEASES_URL=" + releases})
	// status of a CVM on an API that is not there: the install is what is
	// tested, the command fails after it.
	with := func(version string) map[string]string {
		return map[string]string{"command": "status", "cvm": "app-1", "version": version}
	}
	for _, v := range []string{"v1.0.0", "latest"} {
		res := job.run(1, with(v))
		if !hasStep(res.Steps, "cvmdeploy status") || !strings.Contains(res.Log, "cvmdeploy v1.0.0 (commit c0ffee") {
			t.Fatalf("%s: the release was not installed and run (failed at %q):\n%s", v, res.Failed, res.Log)
		}
	}
	for _, v := range []string{"v1.0.1", "v1.0.2"} {
		res := job.run(1, with(v))
		if res.Failed != "Install cvmdeploy" || !strings.Contains(res.Log, "does not match SHA256SUMS of "+v) {
			t.Fatalf("%s: failed at %q, want the install step to refuse:\n%s", v, res.Failed, res.Log)
		}
		if strings.Contains(res.Log, "cvmdeploy evil") || hasStep(res.Steps, "cvmdeploy status") {
			t.Fatalf("%s: ran a binary that does not match its checksum:\n%s", v, res.Log)
		}
	}
}

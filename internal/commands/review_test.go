package commands_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
)

// chromium returns Debian's Chromium, installing it with the project's
// script when it is missing (test.sh runs the same script first).
func chromium(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "..", "testnet", "install-chromium.sh"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testnet/install-chromium.sh: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// browser is one headless Chromium with a fresh profile, started with the
// flags this machine needs (no background networking of its own).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start it now: tabs opened from ctx then share this browser (a child
	// of a context without one would start a browser of its own). No
	// timeout here: the browser lives as long as the context of this first
	// call (go test's own timeout bounds a hang).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// openedPage is what the browser saw of one page.
type openedPage struct {
	text     string   // the body's innerText: what is rendered, so visible
	added    []string // the diff's added and deleted lines
	deleted  []string
	scripts  int
	requests []string // every request the tab made
	shot     []byte
}

// open loads a file in a new tab of the browser and reads it.
func open(t *testing.T, browserCtx context.Context, path string) openedPage {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	defer cancelTimeout()
	if err := chromedp.Do(ctx); err != nil { // attaches the tab (and enables the network domain)
		t.Fatalf("open a tab: %v", err)
	}
	var mu sync.Mutex
	var p openedPage
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			p.requests = append(p.requests, ev.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+path)); err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	var err error
	if p.text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body"))); err != nil {
		t.Fatal(err)
	}
	lines := func(sel string) []string {
		out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(`+"`"+sel+"`"+`)).map(e => e.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	p.added, p.deleted = lines(".diff tr.add td.code"), lines(".diff tr.del td.code")
	if p.scripts, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.scripts.length`)); err != nil {
		t.Fatal(err)
	}
	if p.shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	p.requests = append([]string(nil), p.requests...)
	return p
}

// keepScreenshot saves a screenshot outside the repository (a temp folder
// kept after the test) and logs where, so a person can look at it.
func keepScreenshot(t *testing.T, dir, name string, shot []byte) {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil || cfg.Width < 800 || cfg.Height < 600 {
		t.Fatalf("screenshot is not a full-page PNG: %v %+v", err, cfg)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%dx%d)", path, cfg.Width, cfg.Height)
}

// TestCLIReviewPageInChromium prepares a real update on the local testnet
// with --review, opens the page in headless Chromium, and checks that the
// diff, the env names and the decoded calls are on screen, that markup in
// the compose file is shown as text, that nothing secret is on the page,
// and that the page made no request but its own file. The dry run of a
// deployment gets the same check.
func TestCLIReviewPageInChromium(t *testing.T) {
	f := newFlowEnv(t)
	oldEnv := filepath.Join(f.dir, "old.env")
	mustWrite(t, oldEnv, "API_TOKEN="+flowSecret+"\nOLD_FLAG=1\n")
	r := runCLI(t, "", "deploy", "--compose", f.compose, "--env-file", oldEnv, "--name", "cli-review", "--kms", "ethereum", "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	cvmID := jsonDoc(t, r)["cvm_id"].(string)

	v2 := filepath.Join(f.dir, "v2.yml")
	mustWrite(t, v2, strings.Replace(flowCompose, "app:1.0", "app:1.1", 1)+
		"  sidecar:\n    image: busybox:1.36\n    labels:\n      note: \"<script>alert(1)</script>\"\n")
	newEnv := filepath.Join(f.dir, "new.env")
	mustWrite(t, newEnv, "API_TOKEN="+flowSecret+"\nNEW_SETTING=2\n")
	out := t.TempDir()
	page := filepath.Join(out, "update-review.html")
	r = runCLI(t, "", "update", "--cvm", cvmID, "--compose", v2, "--env-file", newEnv, "--prepare-only", "--review", page, "--json")
	if r.code != 0 {
		t.Fatalf("update --prepare-only --review: exit %d\n%s", r.code, r.stderr)
	}
	doc := jsonDoc(t, r)
	if doc["review_page"] != page || doc["status"] != "prepared" {
		t.Fatalf("result %v", doc)
	}
	calls := doc["onchain_calls"].([]any)
	if len(calls) == 0 {
		t.Fatal("the prepared update needs no call: nothing to review")
	}

	keep, err := os.MkdirTemp("", "cvmdeploy-review-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx := browser(t)
	t.Logf("Chromium started in %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	p := open(t, ctx, page)
	t.Logf("update page opened, read and shot in %s", time.Since(start).Round(time.Millisecond))
	keepScreenshot(t, keep, "update-review.png", p.shot)

	if len(p.requests) != 1 || p.requests[0] != "file://"+page {
		t.Fatalf("the page made requests %q; want only its own file", p.requests)
	}
	// The control: a page that loads an image is seen doing it, so the
	// check above can fail.
	control := filepath.Join(out, "control.html")
	mustWrite(t, control, `<!DOCTYPE html><title>control</title><p>control</p><img src="pixel.png" alt="">`)
	if c := open(t, ctx, control); len(c.requests) != 2 || c.requests[1] != "file://"+filepath.Join(out, "pixel.png") {
		t.Fatalf("the control page's image load was not seen: requests %q", c.requests)
	}
	if p.scripts != 0 {
		t.Fatalf("the page has %d script elements", p.scripts)
	}
	wantAdded := []string{"    image: ghcr.io/example/app:1.1", "  sidecar:", `      note: "<script>alert(1)</script>"`}
	if strings.Join(p.deleted, "\n") != "    image: ghcr.io/example/app:1.0" || len(p.added) != 5 || !containsAll(p.added, wantAdded) {
		t.Fatalf("diff on screen: deleted %q added %q", p.deleted, p.added)
	}
	for _, c := range calls {
		call := c.(map[string]any)
		fn, data := call["function"].(string), call["data"].(string)
		if !strings.Contains(p.text, fn+"(bytes32)") || !strings.Contains(p.text, data) || !strings.Contains(p.text, call["to"].(string)) {
			t.Errorf("the page does not show %s with its target and calldata %s", fn, data)
		}
	}
	for _, want := range []string{
		"+ NEW_SETTING", "− OLD_FLAG", // env names, added and removed
		doc["compose_hash"].(string), "the new compose hash, checked above", "your current, on-chain-allowed document with exactly your changes", // the hash and how it was checked
		"an account with a key (EOA)", "cvmdeploy app compose add", "commit-update", // the owner and what it must do
		"not allowed yet", // the chain's state
	} {
		if !strings.Contains(p.text, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	for _, secret := range []string{flowSecret, doc["commit_token"].(string), f.ln.APIKey, f.keyHex} {
		if strings.Contains(p.text, secret) {
			t.Error("a secret is on the page")
		}
	}
	raw, _ := os.ReadFile(page)
	if bytes.Contains(raw, []byte(flowSecret)) || bytes.Contains(raw, []byte(doc["commit_token"].(string))) {
		t.Error("a secret is in the page's file")
	}

	// The dry run of a deployment.
	dry := filepath.Join(out, "deploy-review.html")
	r = runCLI(t, "", "deploy", "--compose", v2, "--env-file", newEnv, "--name", "cli-review-dry", "--kms", "ethereum", "--dry-run", "--review", dry, "--json")
	if r.code != 0 {
		t.Fatalf("deploy --dry-run --review: exit %d\n%s", r.code, r.stderr)
	}
	dryDoc := jsonDoc(t, r)
	start = time.Now()
	d := open(t, ctx, dry)
	t.Logf("dry-run page opened, read and shot in %s", time.Since(start).Round(time.Millisecond))
	keepScreenshot(t, keep, "deploy-review.png", d.shot)
	if len(d.requests) != 1 || d.requests[0] != "file://"+dry {
		t.Fatalf("the dry-run page made requests %q", d.requests)
	}
	for _, want := range []string{"deployAndRegisterApp(address,bool,bool,bytes32,bytes32)", dryDoc["predicted_app_id"].(string), "the compose hash, allowed from the start", "+ NEW_SETTING"} {
		if !strings.Contains(d.text, want) {
			t.Errorf("the dry-run page does not show %q", want)
		}
	}
	if !containsAll(d.added, append(wantAdded, "services:")) || len(d.deleted) != 0 {
		t.Fatalf("dry-run diff: added %q deleted %q", d.added, d.deleted)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestCLIReviewFlagErrors: --review is refused where it cannot apply,
// before anything is sent.
func TestCLIReviewFlagErrors(t *testing.T) {
	dir := t.TempDir()
	compose := filepath.Join(dir, "docker-compose.yml")
	mustWrite(t, compose, flowCompose)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--compose", compose, "--name", "review-bad", "--review", filepath.Join(dir, "r.html")}, "--review goes with --dry-run"},
		{[]string{"deploy", "--batch", filepath.Join(dir, "b.json"), "--dry-run", "--review", filepath.Join(dir, "r.html")}, "--review takes one app"},
		{[]string{"deploy", "--compose", compose, "--name", "review-bad", "--dry-run", "--review", filepath.Join(dir, "no", "r.html")}, "does not exist"},
		{[]string{"update", "--cvm", "x", "--compose", compose, "--prepare-only", "--review", filepath.Join(dir, "no", "r.html")}, "does not exist"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != commands.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q\n%s", strings.Join(tc.args, " "), r.code, commands.ExitUsage, tc.want, r.stderr)
		}
	}
}

package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nodePackages are go-ethereum's node: what the embedded dev chain links and
// the default binary must not (they triple its size and its cold build).
var nodePackages = []string{
	"github.com/ethereum/go-ethereum/node",
	"github.com/ethereum/go-ethereum/eth",
	"github.com/ethereum/go-ethereum/core/vm",
	"github.com/ethereum/go-ethereum/p2p",
}

// TestDefaultBuildLinksNoNode keeps the binary small: only the devchain build
// links go-ethereum's node.
func TestDefaultBuildLinksNoNode(t *testing.T) {
	deps := func(tags ...string) []string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, ".")...).Output()
		if err != nil {
			t.Fatalf("go %s: %v", strings.Join(args, " "), err)
		}
		return strings.Fields(string(out))
	}
	plain := deps()
	for _, p := range nodePackages {
		if slices.Contains(plain, p) {
			t.Errorf("the default build links %s (%d packages in all): only the devchain build may link go-ethereum's node", p, len(plain))
		}
	}
	// The check can fail: the devchain build does link them.
	if tagged := deps("-tags", "devchain"); !slices.Contains(tagged, nodePackages[0]) {
		t.Errorf("the devchain build does not link %s: is the embedded chain still wired in?", nodePackages[0])
	}
}

// userWithoutNpm is a user's working directory (holding the example app) and
// environment with neither npm nor anvil: an empty HOME (so an empty user
// cache to install anvil into), a working directory outside this repository
// (so not its .tools/anvil), and a PATH with only the tools
// install-anvil.sh runs before it looks for npm.
func userWithoutNpm(t *testing.T) (dir string, env []string) {
	t.Helper()
	bin := t.TempDir()
	for _, tool := range []string{"bash", "mkdir", "uname", "flock"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			if tool == "flock" {
				continue // the script falls back to a lock folder
			}
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	dir = t.TempDir()
	for _, f := range []string{"docker-compose.yml", ".env"} {
		data, err := os.ReadFile(filepath.Join("testnet", "example", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	return dir, []string{"PATH=" + bin, "HOME=" + home, "TMPDIR=" + home}
}

var devArgs = []string{"deploy", "--dev", "--compose", "docker-compose.yml", "--env-file", ".env"}

// TestDevWithoutNpm: the default build's --dev needs anvil, which it
// installs with npm; without npm it says so, and what to do instead.
func TestDevWithoutNpm(t *testing.T) {
	dir, env := userWithoutNpm(t)
	p := run(t, dir, env, devArgs...)
	if p.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	if p.stdout != "" {
		t.Errorf("a failed --dev printed a result:\n%s", p.stdout)
	}
	for _, want := range []string{"npm not found", "ANVIL_BIN", "go run -tags devchain . deploy --dev"} {
		if !strings.Contains(p.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.stderr)
		}
	}
}

// TestDevchainBuild: the build with the embedded chain runs --dev with
// nothing but the binary (no npm, no anvil) and serves testnet up
// --embedded, which the default build refuses with the way to get it.
func TestDevchainBuild(t *testing.T) {
	p := run(t, t.TempDir(), []string{"HOME=" + t.TempDir()}, "testnet", "up", "--embedded")
	if p.code != 2 || !strings.Contains(p.stderr, "-tags devchain") {
		t.Fatalf("default build, testnet up --embedded: exit %d (want 2), stderr:\n%s", p.code, p.stderr)
	}

	tagged := filepath.Join(t.TempDir(), "cvmdeploy-devchain")
	build := exec.Command("go", "build", "-tags", "devchain", "-o", tagged, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags devchain: %v\n%s", err, out)
	}
	dir, env := userWithoutNpm(t)
	p = runBinary(t, tagged, dir, env, devArgs...)
	if p.code != 0 {
		t.Fatalf("devchain build, deploy --dev without npm: exit %d\nstderr:\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stdout, "status:") || !strings.Contains(p.stdout, "running") {
		t.Errorf("the CVM is not running:\n%s", p.stdout)
	}
	if !strings.Contains(p.stderr, "embedded go-ethereum chain") {
		t.Errorf("stderr does not say the embedded chain ran:\n%s", p.stderr)
	}
}

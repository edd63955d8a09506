package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"
)

// lint runs actionlint (as a library: no network, no shellcheck) on one
// workflow document and fails the test on any finding.
func lint(t *testing.T, name string, content []byte) {
	t.Helper()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	proj, err := actionlint.NewProject(root)
	if err != nil {
		t.Fatal(err)
	}
	linter, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{WorkingDir: root})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := linter.Lint(name, content, proj)
	if err != nil {
		t.Fatalf("actionlint %s: %v", name, err)
	}
	for _, e := range errs {
		t.Errorf("actionlint: %s", e)
	}
}

// TestWorkflowsLint checks the repository's workflows, the README's
// workflow examples and the action's own steps with actionlint.
func TestWorkflowsLint(t *testing.T) {
	files, err := filepath.Glob(".github/workflows/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) < 2 {
		t.Fatalf("want ci.yml and release.yml in .github/workflows, found %v", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lint(t, f, data)
		})
	}

	examples := readmeWorkflows(t)
	if len(examples) == 0 {
		t.Fatal("README has no workflow example (a ```yaml block with jobs:)")
	}
	action := loadAction(t, "action.yml")
	usesAction := 0
	for i, ex := range examples {
		t.Run(fmt.Sprintf("README example %d", i+1), func(t *testing.T) {
			lint(t, fmt.Sprintf("README.md example %d", i+1), []byte(ex))
			// Examples that run the binary in their own steps (the Safe and
			// timelock workflows) are linted; those that use the action
			// must use it as action.yml defines it.
			if strings.Contains(ex, "uses: cvmdeploy/cvmdeploy@") {
				usesAction++
				checkActionUse(t, action, ex)
			}
		})
	}
	if usesAction == 0 {
		t.Error("no README workflow example uses the action (uses: cvmdeploy/cvmdeploy@…)")
	}

	// actionlint checks workflows, and of a local action only its metadata:
	// the action's steps are linted as the steps of a one-job workflow whose
	// dispatch inputs are the action's inputs and whose job outputs are the
	// action's outputs.
	t.Run("action.yml steps", func(t *testing.T) {
		lint(t, "action.yml (as a workflow)", actionAsWorkflow(t, action))
	})
}

// readmeWorkflows returns README's ```yaml blocks that are workflows.
func readmeWorkflows(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?ms)^```ya?ml\n(.*?)^```").FindAllSubmatch(readme, -1) {
		if regexp.MustCompile(`(?m)^jobs:`).Match(m[1]) {
			out = append(out, string(m[1]))
		}
	}
	return out
}

// checkActionUse checks the example's uses of this action: every with: key
// is an input, every steps.ID.outputs.NAME it reads is an output.
func checkActionUse(t *testing.T, action *actionFile, workflow string) {
	t.Helper()
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				ID   string         `yaml:"id"`
				Uses string         `yaml:"uses"`
				With map[string]any `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(workflow), &wf); err != nil {
		t.Fatal(err)
	}
	uses := 0
	ids := map[string]bool{}
	for _, job := range wf.Jobs {
		for _, st := range job.Steps {
			if !strings.HasPrefix(st.Uses, "cvmdeploy/cvmdeploy@") {
				continue
			}
			uses++
			ids[st.ID] = st.ID != ""
			for k := range st.With {
				if _, ok := action.Inputs[k]; !ok {
					t.Errorf("with: %s is not an input of action.yml", k)
				}
			}
		}
	}
	if uses == 0 {
		t.Fatal("the example does not use cvmdeploy/cvmdeploy@…")
	}
	for _, m := range regexp.MustCompile(`steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)`).FindAllStringSubmatch(workflow, -1) {
		if !ids[m[1]] {
			continue
		}
		if _, ok := action.Outputs[m[2]]; !ok {
			t.Errorf("the example reads output %s, which action.yml does not declare", m[2])
		}
	}
}

// actionAsWorkflow wraps the action's steps into a workflow for actionlint.
func actionAsWorkflow(t *testing.T, action *actionFile) []byte {
	t.Helper()
	data, err := os.ReadFile("action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	steps := lookup(t, doc.Content[0], "runs", "steps")
	inputs := map[string]any{}
	for name, in := range action.Inputs {
		inputs[name] = map[string]any{"type": "string", "default": in.Default, "description": in.Description}
	}
	outputs := map[string]string{}
	for name, o := range action.Outputs {
		outputs[name] = o.Value
	}
	wf := map[string]any{
		"name": "action.yml steps",
		"on":   map[string]any{"workflow_dispatch": map[string]any{"inputs": inputs}},
		"jobs": map[string]any{"action": map[string]any{
			"runs-on": "ubuntu-latest",
			"outputs": outputs,
			"steps":   steps,
		}},
	}
	out, err := yaml.Marshal(wf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lookup(t *testing.T, n *yaml.Node, path ...string) *yaml.Node {
	t.Helper()
	for _, key := range path {
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				n, found = n.Content[i+1], true
				break
			}
		}
		if !found {
			t.Fatalf("action.yml has no %s", strings.Join(path, "."))
		}
	}
	return n
}

// stepScript returns the run: script of the workflow step named name.
func stepScript(t *testing.T, workflow, name string) (script string, env map[string]string) {
	t.Helper()
	data, err := os.ReadFile(workflow)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Name string            `yaml:"name"`
				Run  string            `yaml:"run"`
				Env  map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	for _, job := range wf.Jobs {
		for _, st := range job.Steps {
			if st.Name == name {
				return st.Run, st.Env
			}
		}
	}
	t.Fatalf("%s has no step %q", workflow, name)
	return "", nil
}

// TestReleaseBuild runs release.yml's build script with a stand-in `go`
// that records each build and writes a small executable, and checks what
// a release publishes: the six platforms under the names action.yml
// downloads, each stamped with the tag and the commit, built with
// -trimpath and CGO off, and a SHA256SUMS that matches them.
func TestReleaseBuild(t *testing.T) {
	script, _ := stepScript(t, ".github/workflows/release.yml", "Build every platform")
	work := t.TempDir()
	fakeBin := t.TempDir()
	// The stand-in prints its environment and arguments into the file it
	// builds, so each asset says how it was built.
	fakeGo := `#!/usr/bin/env bash
set -eu
out=
prev=
for a in "$@"; do
  if [ "$prev" = -o ]; then out=$a; fi
  prev=$a
done
[ "$1" = build ] && [ -n "$out" ] || { echo "fake go: unexpected call: $*" >&2; exit 1; }
{
  echo '#!/bin/sh'
  echo "# GOOS=$GOOS GOARCH=$GOARCH CGO_ENABLED=$CGO_ENABLED"
  printf '# args:'; printf ' %s' "$@"; echo
  echo 'echo "cvmdeploy stand-in $0"'
} > "$out"
chmod +x "$out"
`
	if err := os.WriteFile(filepath.Join(fakeBin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+fakeBin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"VERSION=v9.8.7", "COMMIT=0123456789abcdef0123456789abcdef01234567")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release build script: %v\n%s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(work, "dist", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("SHA256SUMS line %q", l)
		}
		listed[strings.TrimPrefix(f[1], "*")] = f[0]
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		for _, goarch := range []string{"amd64", "arm64"} {
			name := releaseAsset(goos, goarch)
			data, err := os.ReadFile(filepath.Join(work, "dist", name))
			if err != nil {
				t.Errorf("the release lacks %s (the name action.yml downloads): %v", name, err)
				continue
			}
			sum := sha256.Sum256(data)
			if listed[name] != hex.EncodeToString(sum[:]) {
				t.Errorf("SHA256SUMS has %q for %s, the file hashes to %x", listed[name], name, sum)
			}
			for _, want := range []string{"GOOS=" + goos + " GOARCH=" + goarch + " CGO_ENABLED=0", " -trimpath ",
				"-X github.com/cvmdeploy/cvmdeploy/internal/commands.buildVersion=v9.8.7",
				"-X github.com/cvmdeploy/cvmdeploy/internal/commands.buildCommit=0123456789abcdef0123456789abcdef01234567"} {
				if !bytes.Contains(data, []byte(want)) {
					t.Errorf("%s was not built with %q:\n%s", name, want, data)
				}
			}
		}
	}
	if len(listed) != 6 {
		t.Errorf("SHA256SUMS lists %d files, want 6:\n%s", len(listed), sums)
	}
}

// releaseAsset is the asset name action.yml downloads for a platform.
func releaseAsset(goos, goarch string) string {
	name := "cvmdeploy-" + goos + "-" + goarch
	if goos == "windows" {
		name += ".exe"
	}
	return name
}

package main_test

// A runner for action.yml's composite steps, as GitHub's runner executes
// them, so that the action is tested here without GitHub: `${{ }}`
// expressions (parsed by actionlint's expression parser) in env, with, if
// and names; each run step in `bash --noprofile --norc -eo pipefail`, with
// fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files and GITHUB_ENV /
// GITHUB_PATH carried to later steps; `uses:` steps by small stand-ins
// (actions/cache with GitHub's key and restore-keys rules, upload-artifact
// copying the file). Anything the runner does not know fails the test.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"
)

type actionFile struct {
	Name        string                  `yaml:"name"`
	Description string                  `yaml:"description"`
	Author      string                  `yaml:"author"`
	Branding    map[string]string       `yaml:"branding"`
	Inputs      map[string]actionInput  `yaml:"inputs"`
	Outputs     map[string]actionOutput `yaml:"outputs"`
	Runs        struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionInput struct {
	Description string `yaml:"description"`
	Required    bool   `yaml:"required"`
	Default     string `yaml:"default"`
}

type actionOutput struct {
	Description string `yaml:"description"`
	Value       string `yaml:"value"`
}

type actionStep struct {
	ID    string            `yaml:"id"`
	Name  string            `yaml:"name"`
	If    string            `yaml:"if"`
	Shell string            `yaml:"shell"`
	Run   string            `yaml:"run"`
	Uses  string            `yaml:"uses"`
	Env   map[string]string `yaml:"env"`
	With  map[string]string `yaml:"with"`
}

func loadAction(t *testing.T, path string) *actionFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a actionFile
	// KnownFields: a key this runner would silently ignore fails instead.
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if a.Runs.Using != "composite" {
		t.Fatalf("%s: runs.using = %q, want composite", path, a.Runs.Using)
	}
	return &a
}

// actionCache stands in for GitHub's cache service: entries are immutable,
// an entry is only found with the same path (the service's "version"), a
// restore takes the exact key, else the newest entry whose key starts with
// a restore key.
type actionCache struct {
	dir     string
	entries []string // keys, oldest first
	paths   []string
}

func (c *actionCache) save(t *testing.T, key, path string) error {
	for _, k := range c.entries {
		if k == key {
			return fmt.Errorf("cache entry %s already exists", key)
		}
	}
	dst := filepath.Join(c.dir, strconv.Itoa(len(c.entries)))
	if err := copyTree(path, dst); err != nil {
		return err
	}
	c.entries = append(c.entries, key)
	c.paths = append(c.paths, path)
	return nil
}

func (c *actionCache) restore(key string, restoreKeys []string, path string) (string, error) {
	match := -1
	for i, k := range c.entries {
		if k == key && c.paths[i] == path {
			match = i
		}
	}
	for _, prefix := range restoreKeys {
		for i := len(c.entries) - 1; match < 0 && i >= 0; i-- {
			if strings.HasPrefix(c.entries[i], prefix) && c.paths[i] == path {
				match = i
			}
		}
	}
	if match < 0 {
		return "", nil
	}
	return c.entries[match], copyTree(filepath.Join(c.dir, strconv.Itoa(match)), path)
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}

// actionRun is one use of the action in a job.
type actionRun struct {
	Action     *actionFile
	ActionPath string            // github.action_path (the repository root)
	Workspace  string            // the job's working directory
	With       map[string]string // the step's with:
	Env        []string          // the job's and step's env (secrets included)
	Runner     map[string]string // RUNNER_*, GITHUB_RUN_ID, … values
	Cache      *actionCache
	Artifacts  string // where upload-artifact copies files
}

// actionResult is what the job saw.
type actionResult struct {
	Outputs  map[string]string
	Summary  string
	Log      string // every step's stdout and stderr, in order
	Failed   string // the first step that failed, "" if none
	Steps    []string
	Skipped  []string
	Restored string // the cache key a restore found
}

func (r *actionRun) run(t *testing.T) *actionResult {
	t.Helper()
	res := &actionResult{Outputs: map[string]string{}}
	inputs := map[string]string{}
	for name, in := range r.Action.Inputs {
		inputs[name] = in.Default
	}
	for k, v := range r.With {
		if _, ok := r.Action.Inputs[k]; !ok {
			t.Fatalf("with: %s is not an input of the action", k)
		}
		inputs[k] = v
	}
	steps := map[string]map[string]string{} // id → outputs
	outcomes := map[string]string{}
	githubEnv := map[string]string{}
	var paths []string
	failed := false
	var summary strings.Builder
	ctx := func() *exprContext {
		return &exprContext{t: t, inputs: inputs, steps: steps, outcomes: outcomes, failed: failed, github: map[string]string{
			"action_path": r.ActionPath, "action_ref": "", "action_repository": "", "workspace": r.Workspace,
		}, runner: r.Runner}
	}
	for i, st := range r.Action.Runs.Steps {
		label := st.ID
		if label == "" {
			label = fmt.Sprintf("step %d", i+1)
		}
		if st.Name != "" {
			label = ctx().interpolate(st.Name)
		}
		cond := strings.TrimSpace(st.If)
		if cond == "" {
			cond = "success()"
		}
		if !ctx().condition(cond) {
			res.Skipped = append(res.Skipped, label)
			if st.ID != "" {
				outcomes[st.ID] = "skipped"
			}
			continue
		}
		res.Steps = append(res.Steps, label)
		env := map[string]string{}
		for k, v := range st.Env {
			env[k] = ctx().interpolate(v)
		}
		with := map[string]string{}
		for k, v := range st.With {
			with[k] = ctx().interpolate(v)
		}
		outputs := map[string]string{}
		var err error
		switch {
		case st.Run != "":
			if st.Shell != "bash" {
				t.Fatalf("%s: shell %q: composite run steps must say shell: bash", label, st.Shell)
			}
			if strings.Contains(st.Run, "${{") {
				t.Fatalf("%s: an expression inside run: is a script injection risk; pass it through env:", label)
			}
			err = r.runScript(t, st.Run, env, githubEnv, &paths, outputs, &summary, res)
		case st.Uses != "":
			err = r.uses(t, st.Uses, with, outputs, res)
		default:
			t.Fatalf("%s: neither run nor uses", label)
		}
		outcome := "success"
		if err != nil {
			outcome = "failure"
			res.Log += fmt.Sprintf("##[error]%s: %v\n", label, err)
			if !failed {
				res.Failed = label
			}
			failed = true
		}
		if st.ID != "" {
			steps[st.ID] = outputs
			outcomes[st.ID] = outcome
		}
	}
	for name, o := range r.Action.Outputs {
		res.Outputs[name] = ctx().interpolate(o.Value)
	}
	res.Summary = summary.String()
	return res
}

func (r *actionRun) runScript(t *testing.T, script string, env, githubEnv map[string]string, paths *[]string, outputs map[string]string, summary *strings.Builder, res *actionResult) error {
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH"} {
		files[name] = filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(files[name], nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scriptFile := filepath.Join(dir, "step.sh")
	if err := os.WriteFile(scriptFile, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", scriptFile)
	cmd.Dir = r.Workspace
	vars := map[string]string{}
	for _, kv := range r.Env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for k, v := range r.Runner {
		vars[k] = v
	}
	for k, v := range githubEnv {
		vars[k] = v
	}
	for k, v := range env {
		vars[k] = v
	}
	for k, v := range files {
		vars[k] = v
	}
	if len(*paths) > 0 {
		vars["PATH"] = strings.Join(*paths, string(os.PathListSeparator)) + string(os.PathListSeparator) + vars["PATH"]
	}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sort.Strings(cmd.Env)
	out, runErr := cmd.CombinedOutput()
	res.Log += string(out)
	got, err := readOutputFile(files["GITHUB_OUTPUT"])
	if err != nil {
		t.Fatalf("GITHUB_OUTPUT: %v", err)
	}
	for k, v := range got {
		outputs[k] = v
	}
	ge, err := readOutputFile(files["GITHUB_ENV"])
	if err != nil {
		t.Fatalf("GITHUB_ENV: %v", err)
	}
	for k, v := range ge {
		githubEnv[k] = v
	}
	p, _ := os.ReadFile(files["GITHUB_PATH"])
	for _, l := range strings.Split(string(p), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			*paths = append([]string{l}, *paths...)
		}
	}
	s, _ := os.ReadFile(files["GITHUB_STEP_SUMMARY"])
	summary.Write(s)
	return runErr
}

// readOutputFile parses the GITHUB_OUTPUT / GITHUB_ENV format: NAME=value
// lines and NAME<<DELIMITER heredocs.
func readOutputFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var val []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				val = append(val, sc.Text())
			}
			if !closed {
				return nil, fmt.Errorf("%s: heredoc %s is not closed", name, delim)
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		out[name] = val
	}
	return out, sc.Err()
}

// uses runs the stand-in of an action the composite calls.
func (r *actionRun) uses(t *testing.T, uses string, with, outputs map[string]string, res *actionResult) error {
	name, _, _ := strings.Cut(uses, "@")
	switch name {
	case "actions/setup-go":
		// Go is on this machine; the test checks when the step runs.
		return nil
	case "actions/cache/restore":
		key, err := r.Cache.restore(with["key"], lines(with["restore-keys"]), with["path"])
		if err != nil {
			return err
		}
		res.Restored = key
		outputs["cache-hit"] = strconv.FormatBool(key == with["key"])
		outputs["cache-matched-key"] = key
		return nil
	case "actions/cache/save":
		return r.Cache.save(t, with["key"], with["path"])
	case "actions/upload-artifact":
		src := with["path"]
		if _, err := os.Stat(src); err != nil {
			if with["if-no-files-found"] == "error" {
				return fmt.Errorf("no files at %s", src)
			}
			return nil
		}
		dst := filepath.Join(r.Artifacts, with["name"])
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := copyTree(src, filepath.Join(dst, filepath.Base(src))); err != nil {
			return err
		}
		outputs["artifact-id"] = "1"
		outputs["artifact-url"] = "https://github.com/example/repo/actions/runs/1/artifacts/1"
		return nil
	}
	t.Fatalf("the test runner has no stand-in for uses: %s", uses)
	return nil
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// exprContext evaluates `${{ }}` expressions with GitHub's rules for the
// parts action.yml uses: contexts, property access, string and boolean
// literals, == and != (strings compare case-insensitively), && and ||
// (which return an operand), ! and the status functions.
type exprContext struct {
	t        *testing.T
	inputs   map[string]string
	steps    map[string]map[string]string
	outcomes map[string]string
	github   map[string]string
	runner   map[string]string
	failed   bool
}

func (c *exprContext) parse(src string) actionlint.ExprNode {
	c.t.Helper()
	node, err := actionlint.NewExprParser().Parse(actionlint.NewExprLexer(src + "}}"))
	if err != nil {
		c.t.Fatalf("expression %q: %v", src, err)
	}
	return node
}

// interpolate replaces every ${{ expr }} in s by its string value.
func (c *exprContext) interpolate(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${{")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			c.t.Fatalf("unterminated expression in %q", s)
		}
		b.WriteString(s[:i])
		b.WriteString(toString(c.eval(c.parse(s[i+3 : i+j]))))
		s = s[i+j+2:]
	}
}

// condition evaluates an if: (without ${{ }}); without a status function
// it is "success() && (cond)", as on GitHub.
func (c *exprContext) condition(cond string) bool {
	cond = strings.TrimSpace(cond)
	if strings.HasPrefix(cond, "${{") {
		cond = strings.TrimSuffix(strings.TrimPrefix(cond, "${{"), "}}")
	}
	node := c.parse(cond)
	if !usesStatusFunction(node) {
		return !c.failed && truthy(c.eval(node))
	}
	return truthy(c.eval(node))
}

func usesStatusFunction(n actionlint.ExprNode) bool {
	found := false
	actionlint.VisitExprNode(n, func(n, _ actionlint.ExprNode, entering bool) {
		if f, ok := n.(*actionlint.FuncCallNode); ok && entering {
			switch strings.ToLower(f.Callee) {
			case "always", "success", "failure", "cancelled":
				found = true
			}
		}
	})
	return found
}

func (c *exprContext) eval(n actionlint.ExprNode) any {
	switch n := n.(type) {
	case *actionlint.StringNode:
		return n.Value
	case *actionlint.BoolNode:
		return n.Value
	case *actionlint.NullNode:
		return nil
	case *actionlint.IntNode:
		return float64(n.Value)
	case *actionlint.VariableNode:
		switch strings.ToLower(n.Name) {
		case "inputs":
			return toAny(c.inputs)
		case "github":
			return toAny(c.github)
		case "runner":
			m := map[string]any{}
			for k, v := range c.runner {
				if strings.HasPrefix(k, "RUNNER_") {
					m[strings.ToLower(strings.TrimPrefix(k, "RUNNER_"))] = v
				}
			}
			return m
		case "steps":
			m := map[string]any{}
			for id, outs := range c.steps {
				m[id] = map[string]any{"outputs": toAny(outs), "outcome": c.outcomes[id], "conclusion": c.outcomes[id]}
			}
			for id, o := range c.outcomes {
				if _, ok := m[id]; !ok {
					m[id] = map[string]any{"outputs": map[string]any{}, "outcome": o, "conclusion": o}
				}
			}
			return m
		}
		c.t.Fatalf("the test runner does not know the context %q", n.Name)
	case *actionlint.ObjectDerefNode:
		m, _ := c.eval(n.Receiver).(map[string]any)
		for k, v := range m {
			if strings.EqualFold(k, n.Property) {
				return v
			}
		}
		return nil
	case *actionlint.CompareOpNode:
		l, r := c.eval(n.Left), c.eval(n.Right)
		switch n.Kind {
		case actionlint.CompareOpNodeKindEq:
			return looseEqual(l, r)
		case actionlint.CompareOpNodeKindNotEq:
			return !looseEqual(l, r)
		}
		c.t.Fatalf("the test runner does not evaluate comparison kind %v", n.Kind)
	case *actionlint.LogicalOpNode:
		l := c.eval(n.Left)
		switch n.Kind {
		case actionlint.LogicalOpNodeKindAnd:
			if !truthy(l) {
				return l
			}
			return c.eval(n.Right)
		case actionlint.LogicalOpNodeKindOr:
			if truthy(l) {
				return l
			}
			return c.eval(n.Right)
		}
	case *actionlint.NotOpNode:
		return !truthy(c.eval(n.Operand))
	case *actionlint.FuncCallNode:
		switch strings.ToLower(n.Callee) {
		case "always":
			return true
		case "success":
			return !c.failed
		case "failure":
			return c.failed
		case "cancelled":
			return false
		}
	}
	c.t.Fatalf("the test runner does not evaluate %T", n)
	return nil
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case bool:
		return v
	case float64:
		return v != 0
	}
	return true
}

func looseEqual(a, b any) bool {
	as, aok := a.(string)
	bs, bok := b.(string)
	if aok && bok {
		return strings.EqualFold(as, bs)
	}
	if a == nil || b == nil {
		return a == b || (a == nil && b == "") || (b == nil && a == "")
	}
	return toString(a) == toString(b)
}

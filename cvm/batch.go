package cvm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// MaxBatchApps bounds a batch: every AppAuth of a batch goes out in one
// preflight and one burst of transactions.
const MaxBatchApps = 200

// BatchApp is one app of a batch file. Paths are relative to the file.
type BatchApp struct {
	Name            string   `json:"name"`
	Compose         string   `json:"compose"`
	EnvFiles        []string `json:"env_files,omitempty"`
	PreLaunchScript string   `json:"pre_launch_script,omitempty"`
	InstanceType    string   `json:"instance_type,omitempty"`
	KMS             string   `json:"kms,omitempty"`
}

// LoadBatchFile reads {"apps": [{"name", "compose", "env_files", ...}]}.
func LoadBatchFile(path string) ([]BatchApp, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read the batch file: %v", ErrInvalidConfig, err)
	}
	var doc struct {
		Apps []BatchApp `json:"apps"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: batch file %s: %v (expected {\"apps\": [{\"name\", \"compose\", \"env_files\"}]})", ErrInvalidConfig, path, err)
	}
	if len(doc.Apps) == 0 {
		return nil, fmt.Errorf("%w: batch file %s lists no apps", ErrInvalidConfig, path)
	}
	if len(doc.Apps) > MaxBatchApps {
		return nil, fmt.Errorf("%w: batch file %s lists %d apps; at most %d per batch", ErrInvalidConfig, path, len(doc.Apps), MaxBatchApps)
	}
	base := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	seen := map[string]bool{}
	for i := range doc.Apps {
		a := &doc.Apps[i]
		if seen[a.Name] {
			return nil, fmt.Errorf("%w: batch file %s names %q twice", ErrInvalidConfig, path, a.Name)
		}
		seen[a.Name] = true
		a.Compose = rel(a.Compose)
		a.PreLaunchScript = rel(a.PreLaunchScript)
		for j := range a.EnvFiles {
			a.EnvFiles[j] = rel(a.EnvFiles[j])
		}
	}
	return doc.Apps, nil
}

// BatchResult is the outcome of every app of a batch, in file order.
type BatchResult struct {
	Apps []BatchAppResult `json:"apps"`
	// Succeeded and Failed count the apps.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// BatchAppResult is one app's outcome.
type BatchAppResult struct {
	*Result
	Error string `json:"error,omitempty"`
	err   error
}

// ErrBatchPartial: some apps of a batch failed; the others are done. A
// re-run of the same batch resumes the failed ones from their journals.
var ErrBatchPartial = errors.New("some apps of the batch failed")

// batchWorkers bounds the API calls of a batch running at once.
const batchWorkers = 8

// DeployBatch deploys every app with base's settings (name, compose, env,
// pre-launch script, instance type and KMS come from each app). It checks
// every app before anything is sent, provisions them, sends all AppAuth
// deployments with consecutive nonces without waiting in between, then
// verifies keys and commits each. Every app has its own journal, so a
// partial failure resumes app by app.
func (r *Runner) DeployBatch(ctx context.Context, base Config, apps []BatchApp) (*BatchResult, error) {
	runs, err := r.batchRuns(base, apps)
	if err != nil {
		return nil, err
	}
	for _, d := range runs {
		if err := d.openJournal(); err != nil {
			return nil, err
		}
	}
	out := &BatchResult{Apps: make([]BatchAppResult, len(runs))}
	for i, d := range runs {
		out.Apps[i].Result = d.res
	}
	fail := func(i int, err error) {
		out.Apps[i].err = err
		out.Apps[i].Error = err.Error()
	}
	alive := func() []int {
		var idx []int
		for i := range runs {
			if out.Apps[i].err == nil {
				idx = append(idx, i)
			}
		}
		return idx
	}

	// 1. Provision every app (server-side only: nothing is spent).
	parallel(alive(), func(i int) {
		if err := runs[i].provision(ctx); err != nil {
			fail(i, err)
		}
	})

	// 2. All AppAuths on one connection, in one burst of transactions.
	chain, err := r.deployBatchAppAuths(ctx, runs, alive(), fail)
	if chain != nil {
		defer chain.Close()
	}
	if err != nil {
		return out, err
	}

	// 3. Verified keys, local encryption, commits; then the waits.
	parallel(alive(), func(i int) {
		d := runs[i]
		pubKey := d.j.Provision.AppEnvEncryptKey
		if d.j.Provision.OnChain {
			var err error
			if pubKey, err = d.appKey(ctx); err != nil {
				fail(i, err)
				return
			}
		} else {
			d.res.AppID = d.j.Provision.AppID
		}
		if err := d.commitAndWait(ctx, pubKey); err != nil {
			fail(i, err)
		}
	})
	for _, a := range out.Apps {
		if a.err != nil {
			out.Failed++
		} else {
			out.Succeeded++
		}
	}
	if out.Failed > 0 {
		return out, fmt.Errorf("%w: %d of %d failed (re-run the same batch to resume them)", ErrBatchPartial, out.Failed, len(runs))
	}
	return out, nil
}

// batchRuns checks every app of a batch before anything is sent and
// returns one run per app, each with its own progress prefix. All problems
// are reported at once.
func (r *Runner) batchRuns(base Config, apps []BatchApp) ([]*run, error) {
	shared := r.serialisedProgress()
	runs := make([]*run, len(apps))
	var bad []error
	for i, a := range apps {
		cfg := a.config(base)
		in, err := cfg.load()
		if err != nil {
			bad = append(bad, fmt.Errorf("app %q: %w", a.Name, err))
			continue
		}
		if in.kms.onChain() && (r.Signer == nil || r.RPCURL == "") {
			bad = append(bad, fmt.Errorf("app %q: %w", a.Name, errNoSigner))
			continue
		}
		app := shared
		app.Progress = prefixed(shared.Progress, a.Name)
		runs[i] = &run{Runner: &app, cfg: cfg, in: in, res: &Result{Name: cfg.Name, Warnings: in.warnings}}
	}
	if len(bad) > 0 {
		return nil, errors.Join(bad...)
	}
	return runs, nil
}

// config is base with the app's own name, files, instance type and KMS.
func (a BatchApp) config(base Config) Config {
	cfg := base
	cfg.Name, cfg.ComposeFile, cfg.EnvFiles, cfg.EnvFlags = a.Name, a.Compose, a.EnvFiles, nil
	cfg.PreLaunchScriptFile = a.PreLaunchScript
	if a.InstanceType != "" {
		cfg.InstanceType = a.InstanceType
	}
	if a.KMS != "" {
		cfg.KMS = a.KMS
	}
	return cfg
}

// serialisedProgress is a copy of r whose progress lines, written by apps
// running concurrently, do not interleave.
func (r *Runner) serialisedProgress() Runner {
	shared := *r
	if r.Progress != nil {
		var mu sync.Mutex
		shared.Progress = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			r.Progress(format, args...)
		}
	}
	return shared
}

// deployBatchAppAuths finishes AppAuths journaled by an earlier run, then
// sends every missing one with consecutive nonces.
// The connection stays open for the key checks that follow.
func (r *Runner) deployBatchAppAuths(ctx context.Context, runs []*run, idx []int, fail func(int, error)) (*deployer.Client, error) {
	var onChain []int
	for _, i := range idx {
		if runs[i].j.Provision.OnChain {
			onChain = append(onChain, i)
		}
	}
	if len(onChain) == 0 {
		return nil, nil
	}
	chain, err := deployer.Dial(ctx, r.RPCURL)
	if err != nil {
		return nil, err
	}
	chainID := runs[onChain[0]].j.Provision.ChainID
	chain.ExpectChainID = chainID
	var fresh []int
	for _, i := range onChain {
		d := runs[i]
		d.chain = chain
		switch p := d.j.Provision; {
		case p.ChainID != chainID:
			fail(i, fmt.Errorf("%w: its KMS is on chain %d, the batch's first on-chain app on %d: deploy them in separate batches", ErrChainMismatch, p.ChainID, chainID))
		case d.j.App != nil || d.j.DeployTx != nil:
			// Done, or sent by an earlier run: the one-app path awaits it.
			if err := d.deployAppAuth(ctx); err != nil {
				fail(i, err)
			}
		default:
			fresh = append(fresh, i)
		}
	}
	if len(fresh) == 0 {
		return chain, nil
	}
	cfgs := make([]deployer.DeployAppConfig, 0, len(fresh))
	var todo []int
	for _, i := range fresh {
		c, err := runs[i].deployConfig(common.HexToAddress(runs[i].j.Provision.KMSContract))
		if err != nil {
			fail(i, err)
			continue
		}
		cfgs = append(cfgs, c)
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return chain, nil
	}
	if r.Confirm != nil {
		if err := r.Confirm(ctx, chainID, fmt.Sprintf("deploy %d AppAuths (paid by %s)", len(todo), r.Signer.Address().Hex())); err != nil {
			return chain, err
		}
	}
	opts := runs[todo[0]].cfg.Tx
	// Transactions are signed in cfgs order with consecutive nonces, and a
	// replacement reuses its original's nonce: the nonce names the app.
	var first *uint64
	var signMu sync.Mutex
	opts.OnSigned = func(tx *types.Transaction) error {
		signMu.Lock()
		defer signMu.Unlock()
		if first == nil {
			n := tx.Nonce()
			first = &n
		}
		k := tx.Nonce() - *first
		if tx.Nonce() < *first || k >= uint64(len(todo)) {
			return fmt.Errorf("signed a transaction with nonce %d outside the batch's %d..%d", tx.Nonce(), *first, *first+uint64(len(todo))-1)
		}
		d := runs[todo[k]]
		if d.j.DeployTx == nil || d.j.DeployTx.Nonce != tx.Nonce() {
			d.j.DeployTx = &TxStep{}
		}
		if err := d.j.DeployTx.AddVariant(tx, r.Signer.Address(), d.now().UTC()); err != nil {
			return err
		}
		return d.save(StepDeployTx)
	}
	opts.OnSent = func(h common.Hash) {}
	say := r.Progress
	if say == nil {
		say = func(string, ...any) {}
	}
	say("→ sending %d AppAuth deployments with consecutive nonces (no wait in between)", len(todo))
	results, err := chain.DeployApps(ctx, r.Signer, cfgs, opts)
	if results == nil && err != nil {
		for _, i := range todo {
			fail(i, fmt.Errorf("deploy AppAuth: %w", err))
		}
		return chain, nil
	}
	// One root-key read per KMS serves every app's key check (the one-app
	// path folds it into the preflight batch instead).
	roots := map[string][]byte{}
	for _, i := range todo {
		kms := runs[i].j.Provision.KMSContract
		if _, ok := roots[kms]; ok || runs[i].cfg.InsecureSkipKeyVerification {
			continue
		}
		if root, err := chain.KMSRootKey(ctx, common.HexToAddress(kms)); err == nil {
			roots[kms] = root
		}
	}
	for k, i := range todo {
		runs[i].kmsRootKey = roots[runs[i].j.Provision.KMSContract]
		if res := results[k]; res.Err != nil {
			fail(i, fmt.Errorf("deploy AppAuth: %w", res.Err))
		} else if err := runs[i].recordApp(res.Deployment); err != nil {
			fail(i, err)
		}
	}
	return chain, nil
}

// parallel runs f for every index with at most batchWorkers at once.
func parallel(idx []int, f func(i int)) {
	sem := make(chan struct{}, batchWorkers)
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}(i)
	}
	wg.Wait()
}

func prefixed(say func(string, ...any), name string) func(string, ...any) {
	if say == nil {
		return nil
	}
	return func(format string, args ...any) { say("[%s] "+format, append([]any{name}, args...)...) }
}

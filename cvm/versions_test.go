package cvm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// versioned is a runner whose client speaks version (and records what it
// would tell the user).
func (e *env) versioned(t *testing.T, version string) (*cvm.Runner, *warnings) {
	t.Helper()
	w := &warnings{}
	api, err := phala.New(phala.Config{BaseURL: e.ln.APIPrefix, APIKey: e.ln.APIKey, Version: version, Warnf: w.add})
	if err != nil {
		t.Fatal(err)
	}
	r := e.runner(t)
	r.API = api
	return r, w
}

type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) add(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, fmt.Sprintf(format, args...))
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

func (e *env) journal(t *testing.T, name string) *cvm.Journal {
	t.Helper()
	s := cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")}
	j, err := s.Load(s.Path(e.ln.APIPrefix, name))
	if err != nil || j == nil {
		t.Fatalf("journal of %s: %v", name, err)
	}
	return j
}

// TestFlowUnderEveryVersion runs deploy (on-chain and cloud KMS), an
// update with a new compose hash and status under every API version the
// client speaks, against one local cloud that answers each in its shapes:
// the legacy path and no token before 2026-05-22, the same-path provision
// and a token commit from it.
func TestFlowUnderEveryVersion(t *testing.T) {
	e := newEnv(t)
	for i, v := range phala.Versions {
		t.Run(v, func(t *testing.T) {
			r, w := e.versioned(t, v)
			ctx := context.Background()
			name := fmt.Sprintf("versions-app-%d", i)
			res, err := r.Deploy(ctx, e.config(name))
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			if res.Status != "running" || !res.KeyVerified || res.ComposeVerified != cvm.ComposePredicted {
				t.Fatalf("deploy result %+v", res)
			}
			p := e.journal(t, name).Provision
			samePath := v >= phala.Version20260522
			wantVia := phala.ProvisionLegacyPath
			if samePath {
				wantVia = phala.ProvisionSamePath
			}
			if p.Via != wantVia || (p.Token != "") != samePath {
				t.Fatalf("provisioned via %q with token %v under %s", p.Via, p.Token != "", v)
			}

			newCompose := filepath.Join(e.dir, name+"-v2.yml")
			writeFile(t, newCompose, testCompose+"  worker:\n    image: busybox:1.36\n")
			up, err := r.Update(ctx, cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: newCompose, EnvFiles: []string{e.envFile}, Wait: true})
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if up.Status != "running" || up.ComposeHash == res.ComposeHash || up.KMSTrust == "" || up.ComposeVerified != cvm.ComposeRead {
				t.Fatalf("update result %+v", up)
			}
			st, err := r.Status(ctx, cvm.StatusConfig{CVM: res.CVMID})
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if st.KMSTrust == "" || st.Attestation != cvm.AttestationMatches {
				t.Fatalf("status under %s: trust %q attestation %q", v, st.KMSTrust, st.Attestation)
			}
			if _, isInt := st.CVM.ID.Int(); isInt == (v >= phala.Version20260522) {
				t.Fatalf("CVM id %q under %s", st.CVM.ID.String(), v)
			}

			cfg := e.config(name + "-cloud")
			cfg.KMS = "phala"
			cr, err := r.Deploy(ctx, cfg)
			if err != nil || cr.Status != "running" {
				t.Fatalf("cloud-KMS deploy: %v %+v", err, cr)
			}
			if r.API.FellBack() || len(w.all()) != 0 {
				t.Fatalf("fell back under %s: %q", v, w.all())
			}
		})
	}
}

// TestVersionRefusedFallsBack: a version the server does not serve (here
// one from the future) is refused with 400; the client says so, falls back
// to 2025-10-28 and the whole deploy goes through on the legacy path.
func TestVersionRefusedFallsBack(t *testing.T) {
	e := newEnv(t)
	r, w := e.versioned(t, "2027-01-01")
	res, err := r.Deploy(context.Background(), e.config("fallback-app"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	got := w.all()
	if res.Status != "running" || !r.API.FellBack() || len(got) != 1 ||
		!strings.Contains(got[0], "refused X-Phala-Version 2027-01-01") || !strings.Contains(got[0], "retrying with 2025-10-28") {
		t.Fatalf("status %q, fell back %v, warnings %q", res.Status, r.API.FellBack(), got)
	}
	if p := e.journal(t, "fallback-app").Provision; p.Via != phala.ProvisionLegacyPath || p.Token != "" {
		t.Fatalf("provision %+v", p)
	}
}

// TestCommitAfterTokenExpired: when the prepared commit expired (466), the
// deployment provisions again, checks the new compose hash is the one the
// AppAuth allows, journals it and commits; a changed hash is refused with
// nothing committed. A cloud-KMS app takes the new provision's app and key.
func TestCommitAfterTokenExpired(t *testing.T) {
	e := newEnv(t)
	expireAfter := func(r *cvm.Runner, step string, then func()) {
		r.AfterStep = func(s string) error {
			if s == step {
				e.ln.Cloud.ExpirePrepared()
				if then != nil {
					then()
				}
			}
			return nil
		}
	}
	t.Run("same hash", func(t *testing.T) {
		r := e.runner(t)
		expireAfter(r, cvm.StepPubKey, nil)
		res, err := r.Deploy(context.Background(), e.config("expired-app"))
		if err != nil || res.Status != "running" {
			t.Fatalf("deploy: %v %+v", err, res)
		}
		p := e.journal(t, "expired-app").Provision
		if len(p.Reprovisioned) != 1 || p.Reprovisioned[0].ComposeHash != res.ComposeHash || !strings.Contains(p.Reprovisioned[0].Reason, "466") {
			t.Fatalf("journal %+v", p.Reprovisioned)
		}
	})
	t.Run("cloud KMS", func(t *testing.T) {
		r := e.runner(t)
		expireAfter(r, cvm.StepProvision, nil)
		cfg := e.config("expired-cloud")
		cfg.KMS = "phala"
		res, err := r.Deploy(context.Background(), cfg)
		if err != nil || res.Status != "running" {
			t.Fatalf("deploy: %v %+v", err, res)
		}
		if p := e.journal(t, "expired-cloud").Provision; p.AppID != res.AppID || len(p.Reprovisioned) != 1 {
			t.Fatalf("app %s, journal %+v", res.AppID, p)
		}
	})
	t.Run("changed hash", func(t *testing.T) {
		before := e.ln.Cloud.Counts().CVMs
		r := e.runner(t)
		expireAfter(r, cvm.StepPubKey, func() {
			if err := e.ln.Cloud.SetAdversary(cloud.AdversaryFlipPublicLogs); err != nil {
				t.Error(err)
			}
		})
		defer e.ln.Cloud.SetAdversary("")
		_, err := r.Deploy(context.Background(), e.config("expired-changed"))
		if !errors.Is(err, cvm.ErrComposeRule) || !strings.Contains(err.Error(), "466") {
			t.Fatalf("err = %v", err)
		}
		if n := e.ln.Cloud.Counts().CVMs; n != before {
			t.Fatalf("a CVM was committed (%d -> %d)", before, n)
		}
	})
}

// TestCommitRefused467And468: a token-era commit names the AppAuth's
// deployment transaction; a journal whose transaction does not prove the
// hash gets 467, a hash removed before the commit 468 — each with what to
// check and the resume hint, and a re-run after the fix commits. (Under
// 2025-10-28 no transaction is sent: TestBootFailureAfterHashRemoved.)
func TestCommitRefused467And468(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	chain, err := deployer.Dial(ctx, e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	stopAfterPubKey := func(r *cvm.Runner, then func(j *cvm.Journal)) {
		r.AfterStep = func(s string) error {
			if s != cvm.StepPubKey {
				return nil
			}
			then(nil)
			return errors.New("stopped after pubkey")
		}
	}
	store := cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")}

	t.Run("468", func(t *testing.T) {
		r := e.runner(t)
		name := "refused-468"
		removed := ""
		stopAfterPubKey(r, func(*cvm.Journal) {
			j := e.journal(t, name)
			tx, err := chain.RemoveComposeHash(ctx, r.Signer, common.HexToAddress(j.App.AppID), common.HexToHash(j.Provision.ComposeHash), deployer.TxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			removed = tx.TxHash.Hex()
		})
		if _, err := r.Deploy(ctx, e.config(name)); err == nil || removed == "" {
			t.Fatalf("first run: %v", err)
		}
		r.AfterStep = nil
		_, err := r.Deploy(ctx, e.config(name))
		if !errors.Is(err, phala.ErrHashNotOnChain) || !strings.Contains(err.Error(), "re-run the same command") || !strings.Contains(err.Error(), "cvmdeploy app info") {
			t.Fatalf("err = %v", err)
		}
		j := e.journal(t, name)
		if _, err := chain.AddComposeHash(ctx, r.Signer, common.HexToAddress(j.App.AppID), common.HexToHash(j.Provision.ComposeHash), deployer.TxOptions{}); err != nil {
			t.Fatal(err)
		}
		res, err := r.Deploy(ctx, e.config(name))
		if err != nil || res.Status != "running" {
			t.Fatalf("resume: %v %+v", err, res)
		}
	})
	t.Run("467", func(t *testing.T) {
		r := e.runner(t)
		name := "refused-467"
		stopAfterPubKey(r, func(*cvm.Journal) {})
		if _, err := r.Deploy(ctx, e.config(name)); err == nil {
			t.Fatal("first run did not stop")
		}
		// The journal names a transaction that added nothing to this app.
		j := e.journal(t, name)
		good := j.App.TxHash
		j.App.TxHash = "0x" + strings.Repeat("42", 32)
		if err := store.Save(store.Path(e.ln.APIPrefix, name), j); err != nil {
			t.Fatal(err)
		}
		r.AfterStep = nil
		_, err := r.Deploy(ctx, e.config(name))
		if !errors.Is(err, phala.ErrTxVerificationFailed) || !strings.Contains(err.Error(), j.App.TxHash) || !strings.Contains(err.Error(), "re-run the same command") {
			t.Fatalf("err = %v", err)
		}
		j = e.journal(t, name)
		j.App.TxHash = good
		if err := store.Save(store.Path(e.ln.APIPrefix, name), j); err != nil {
			t.Fatal(err)
		}
		if res, err := r.Deploy(ctx, e.config(name)); err != nil || res.Status != "running" {
			t.Fatalf("resume: %v %+v", err, res)
		}
	})
}

// TestCommitTokenRedactedFromCloudErrors: the local cloud, like FastAPI,
// echoes a token it refuses; the client's error never shows it.
func TestCommitTokenRedactedFromCloudErrors(t *testing.T) {
	e := newEnv(t)
	api := e.api(t, e.ln.APIKey)
	ctx := context.Background()
	req := phala.ProvisionRequest{Name: "token-echo", KMS: phala.KMSPhala,
		ComposeFile: phala.ComposeFile{DockerComposeFile: testCompose, AllowedEnvs: []string{"GREETING", "DB_PASSWORD"}}}
	prov, err := api.Provision(ctx, req)
	if err != nil || prov.Token == nil {
		t.Fatalf("provision: %v %+v", err, prov)
	}
	token := *prov.Token
	_, err = api.Commit(ctx, phala.CommitRequest{Token: token, AppID: strings.Repeat("ab", 20), ComposeHash: prov.ComposeHash})
	ae, ok := phala.AsAPIError(err)
	if !ok || ae.Status != 422 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(e.cloudLog.String()+ae.Body, "[redacted]") {
		t.Fatalf("the cloud did not echo the token (the test proves nothing): %s", ae.Body)
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", ae), fmt.Sprintf("%v", ae.ValidationErrors), ae.Body} {
		if strings.Contains(s, token) {
			t.Fatalf("the token is in the error: %s", s)
		}
	}
	// The journal is the one place that holds a token, and it is private.
	r := e.runner(t)
	res, err := r.Deploy(ctx, e.config("token-journal"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(res.Journal); err != nil || st.Mode().Perm() != 0o600 || e.journal(t, "token-journal").Provision.Token == "" {
		t.Fatalf("journal %v %v", st.Mode().Perm(), err)
	}
}

// TestUpdateCommitRefused467And468: commit-update answers 468 when the
// approved hash was removed before the commit, and 467 when the journaled
// approval transaction does not prove it; each says what to check and to
// re-run, and the re-run after the fix commits the update.
func TestUpdateCommitRefused467And468(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	chain, err := deployer.Dial(ctx, e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	store := cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")}
	for i, status := range []int{468, 467} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			r := e.runner(t)
			res, err := r.Deploy(ctx, e.config(fmt.Sprintf("update-refused-%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			newCompose := filepath.Join(e.dir, fmt.Sprintf("refused-%d.yml", i))
			writeFile(t, newCompose, testCompose+fmt.Sprintf("  worker%d:\n    image: busybox:1.36\n", i))
			cfg := cvm.UpdateConfig{CVM: res.CVMID, ComposeFile: newCompose, EnvFiles: []string{e.envFile}}
			app := common.HexToAddress(res.AppID)
			var hash common.Hash
			var goodTx string
			r.AfterStep = func(step string) error {
				if step != cvm.UpdateStepApprove {
					return nil
				}
				path := store.Path(e.ln.APIPrefix, "update-"+res.CVMID)
				var j cvm.UpdateJournal
				data, err := os.ReadFile(path)
				if err != nil || jsonUnmarshal(data, &j) != nil {
					t.Fatalf("update journal: %v", err)
				}
				hash = common.HexToHash(j.Prepared.ComposeHash)
				if status == 468 {
					_, err := chain.RemoveComposeHash(ctx, r.Signer, app, hash, deployer.TxOptions{})
					return err
				}
				return errors.New("stop after approve")
			}
			_, err = r.Update(ctx, cfg)
			if status == 467 {
				// Point the journaled approval at a transaction that proves nothing.
				path := store.Path(e.ln.APIPrefix, "update-"+res.CVMID)
				data, _ := os.ReadFile(path)
				var j cvm.UpdateJournal
				if err := jsonUnmarshal(data, &j); err != nil {
					t.Fatal(err)
				}
				goodTx = j.Approved.TxHash
				j.Approved.TxHash = "0x" + strings.Repeat("43", 32)
				writeJSONFile(t, path, &j)
				r.AfterStep = nil
				_, err = r.Update(ctx, cfg)
			}
			sentinel := map[int]error{467: phala.ErrTxVerificationFailed, 468: phala.ErrHashNotOnChain}[status]
			if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", status)) || !strings.Contains(err.Error(), "re-run the same command") {
				t.Fatalf("err = %v", err)
			}
			r.AfterStep = nil
			if status == 468 {
				if _, err := chain.AddComposeHash(ctx, r.Signer, app, hash, deployer.TxOptions{}); err != nil {
					t.Fatal(err)
				}
			} else {
				path := store.Path(e.ln.APIPrefix, "update-"+res.CVMID)
				data, _ := os.ReadFile(path)
				var j cvm.UpdateJournal
				if err := jsonUnmarshal(data, &j); err != nil {
					t.Fatal(err)
				}
				j.Approved.TxHash = goodTx
				writeJSONFile(t, path, &j)
			}
			up, err := r.Update(ctx, cfg)
			if err != nil || up.Status != "accepted" {
				t.Fatalf("resume: %v %+v", err, up)
			}
		})
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

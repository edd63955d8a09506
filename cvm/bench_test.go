package cvm_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// benchEnv is a local testnet (anvil automine + the local cloud with its
// default 2 × 50 ms boot, as `cvmdeploy testnet up` runs it) and the
// example app's files, for benchmarks.
type benchEnv struct {
	ln      *testnet.Localnet
	dir     string
	compose string
	envFile string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ln, err := testnet.StartLocalnet(ctx, testnet.LocalnetConfig{})
	if err != nil {
		b.Fatalf("start localnet: %v", err)
	}
	b.Cleanup(func() { ln.Close() })
	dir := b.TempDir()
	e := &benchEnv{ln: ln, dir: dir, compose: filepath.Join(dir, "docker-compose.yml"), envFile: filepath.Join(dir, ".env")}
	benchWrite(b, e.compose, testCompose)
	benchWrite(b, e.envFile, "GREETING="+secretGreeting+"\nDB_PASSWORD=\""+secretPassword+"\"\n")
	return e
}

func benchWrite(b *testing.B, path, content string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
}

func (e *benchEnv) runner(b *testing.B) *cvm.Runner {
	b.Helper()
	api, err := phala.New(phala.Config{BaseURL: e.ln.APIPrefix, APIKey: e.ln.APIKey})
	if err != nil {
		b.Fatal(err)
	}
	return &cvm.Runner{
		API:      api,
		RPCURL:   e.ln.RPCURL,
		Signer:   deployer.NewKeySigner(e.ln.DevAccount.PrivateKey),
		Journals: cvm.JournalStore{Dir: filepath.Join(e.dir, "journals")},
	}
}

// BenchmarkDeployOnChain is one whole on-chain deploy through the library,
// as `cvmdeploy deploy --kms ethereum` runs it minus the process start:
// provision, AppAuth through the KMS factory, env key verified on-chain,
// encryption, commit and, in the "wait" case, the wait until the CVM runs
// (the local cloud boots a CVM in about 100 ms). Each iteration deploys a
// new app under a fresh name.
func BenchmarkDeployOnChain(b *testing.B) {
	for _, bc := range []struct {
		name string
		wait bool
	}{{"wait", true}, {"no-wait", false}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newBenchEnv(b)
			r := e.runner(b)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				name := fmt.Sprintf("bench-onchain-%05d", i)
				res, err := r.Deploy(ctx, cvm.Config{
					Name: name, ComposeFile: e.compose, EnvFiles: []string{e.envFile},
					KMS: "ethereum", Wait: bc.wait, WaitTimeout: time.Minute,
				})
				if err != nil {
					b.Fatalf("deploy %s: %v", name, err)
				}
				if res.AppID == "" || res.CVMID == "" || !res.KeyVerified || (bc.wait && res.Status != "running") {
					b.Fatalf("deploy %s: result %+v", name, res)
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkDeployBatch10 is one `deploy --batch` of ten apps (each its own
// compose and env) through the library on anvil automine, waiting until
// every CVM runs: one preflight, ten AppAuth transactions with consecutive
// nonces, then ten key checks and commits.
func BenchmarkDeployBatch10(b *testing.B) {
	const n = 10
	e := newBenchEnv(b)
	r := e.runner(b)
	ctx := context.Background()
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		apps := make([]cvm.BatchApp, n)
		for i := range apps {
			sub := filepath.Join(e.dir, fmt.Sprintf("round%04d", round), fmt.Sprintf("app%02d", i))
			compose, envFile := filepath.Join(sub, "docker-compose.yml"), filepath.Join(sub, ".env")
			benchWrite(b, compose, fmt.Sprintf("services:\n  web:\n    image: ghcr.io/example/svc-%d:%d\n    environment:\n      - TOKEN=${TOKEN}\n", i, round))
			benchWrite(b, envFile, fmt.Sprintf("TOKEN=bench-token-%d-%d\n", round, i))
			apps[i] = cvm.BatchApp{Name: fmt.Sprintf("bench-batch-%04d-%02d", round, i), Compose: compose, EnvFiles: []string{envFile}}
		}
		b.StartTimer()
		res, err := r.DeployBatch(ctx, cvm.Config{KMS: "ethereum", Wait: true, WaitTimeout: time.Minute}, apps)
		if err != nil {
			b.Fatalf("batch %d: %v", round, err)
		}
		if res.Succeeded != n || res.Failed != 0 {
			b.Fatalf("batch %d: %d succeeded, %d failed", round, res.Succeeded, res.Failed)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
	b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N*n), "ms/app")
}

// BenchmarkComposeCheck compares the two ways a deploy establishes its
// compose hash on the default local cloud (2 × 50 ms boot): "predicted"
// (the document is built locally: one transaction, the AppAuth with the
// hash) and "approve-after-read" (the cloud injects its default pre-launch
// script: the AppAuth without a hash, commit, read and check the document,
// addComposeHash, and a restart of the CVM whose first boot was refused).
// It reports the wall time to "running" and the gas the signer spent.
func BenchmarkComposeCheck(b *testing.B) {
	script := "#!/bin/bash\necho benchmark default pre-launch script\n"
	for _, bc := range []struct {
		name   string
		inject *string
	}{{"predicted", nil}, {"approve-after-read", &script}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ln, err := testnet.StartLocalnet(ctx, testnet.LocalnetConfig{InjectPreLaunchScript: bc.inject})
			if err != nil {
				b.Fatalf("start localnet: %v", err)
			}
			b.Cleanup(func() { ln.Close() })
			e := &benchEnv{ln: ln, dir: b.TempDir()}
			e.compose, e.envFile = filepath.Join(e.dir, "docker-compose.yml"), filepath.Join(e.dir, ".env")
			benchWrite(b, e.compose, testCompose)
			benchWrite(b, e.envFile, "GREETING="+secretGreeting+"\nDB_PASSWORD=\""+secretPassword+"\"\n")
			r := e.runner(b)
			if bc.inject != nil {
				sum := sha256.Sum256([]byte(*bc.inject))
				extra, err := kms.ParsePins([]byte(`{"about": "bench", "app_compose": {"official_pre_launch_scripts": [{"version": "bench", "date": "2026-12-01", "form": "file", "sha256": "` + hex.EncodeToString(sum[:]) + `", "source": "benchmark"}]}}`))
				if err != nil {
					b.Fatal(err)
				}
				r.Trust.Pins = kms.DefaultPins().Merge(extra)
			}
			eth, err := ethclient.Dial(ln.RPCURL)
			if err != nil {
				b.Fatal(err)
			}
			defer eth.Close()
			var gas uint64
			i := 0
			for b.Loop() {
				i++
				res, err := r.Deploy(context.Background(), cvm.Config{
					Name: fmt.Sprintf("bench-check-%05d", i), ComposeFile: e.compose, EnvFiles: []string{e.envFile},
					KMS: "ethereum", Wait: true, WaitTimeout: time.Minute,
				})
				if err != nil {
					b.Fatal(err)
				}
				want := cvm.ComposePredicted
				if bc.inject != nil {
					want = cvm.ComposeApprovedAfterRead
				}
				if res.ComposeVerified != want || res.Status != "running" {
					b.Fatalf("compose_verified %q status %q", res.ComposeVerified, res.Status)
				}
				gas += res.GasUsed
				if res.ApproveTxHash != "" {
					rcpt, err := eth.TransactionReceipt(context.Background(), common.HexToHash(res.ApproveTxHash))
					if err != nil {
						b.Fatal(err)
					}
					gas += rcpt.GasUsed
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
			b.ReportMetric(float64(gas)/float64(b.N), "gas/op")
		})
	}
}

// BenchmarkDeployOnChainVersions is BenchmarkDeployOnChain/no-wait under
// each API version: the legacy path (provision, commit) against the
// same-path token flow, whose commit also has the cloud read the AppAuth
// deployment's receipt and policy.
func BenchmarkDeployOnChainVersions(b *testing.B) {
	e := newBenchEnv(b)
	runs := 0 // -count repeats a sub-benchmark in the same env: fresh names
	for _, v := range phala.Versions {
		b.Run(v, func(b *testing.B) {
			runs++
			r := e.runner(b)
			api, err := phala.New(phala.Config{BaseURL: e.ln.APIPrefix, APIKey: e.ln.APIKey, Version: v})
			if err != nil {
				b.Fatal(err)
			}
			r.API = api
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				name := fmt.Sprintf("bench-v%s-%d-%05d", v, runs, i)
				res, err := r.Deploy(ctx, cvm.Config{Name: name, ComposeFile: e.compose, EnvFiles: []string{e.envFile}, KMS: "ethereum"})
				if err != nil || !res.KeyVerified {
					b.Fatalf("deploy %s: %v %+v", name, err, res)
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
		})
	}
}

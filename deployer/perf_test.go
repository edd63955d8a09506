package deployer_test

import (
	"testing"
	"time"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// TestDeployAppHTTPRequests counts the HTTP requests one factory deploy makes
// against an automining anvil: the preflight batch (with the KMS root key),
// the send and the receipt poll, timed to come after anvil seals the block
// it answers the send before. The official CLI makes 6; the target is 4.
func TestDeployAppHTTPRequests(t *testing.T) {
	e := newChain(t, testnet.AnvilConfig{})
	p := newCountingProxy(t, e.anvil.RPCURL())
	c, err := deployer.Dial(ctxT(t), p.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		p.reset()
		d, err := c.DeployApp(ctxT(t), e.owner, deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(byte(i + 1)), DeviceID: hash32(9), ReadKMSRootKey: true}, deployer.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.AppID == d.KMS {
			t.Fatal("bad deployment")
		}
		n := p.count()
		t.Logf("app deploy %d: %d HTTP requests", i, n)
		if n > 4 {
			t.Fatalf("app deploy made %d HTTP requests, want at most 4", n)
		}
	}
}

// BenchmarkDeployApp measures one factory deploy round trip (preflight,
// send, receipt) on an automining anvil.
func BenchmarkDeployApp(b *testing.B) {
	e := newChain(b, testnet.AnvilConfig{})
	cfg := deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(1), DeviceID: hash32(2)}
	ctx := ctxT(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.client.DeployApp(ctx, e.owner, cfg, deployer.TxOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeployAppBlockTime1 measures a factory deploy on anvil with one
// block per second, and its HTTP requests (requests/op): after the send,
// the receipt poll waits until the next block is due instead of polling
// blindly.
func BenchmarkDeployAppBlockTime1(b *testing.B) {
	e := newChain(b, testnet.AnvilConfig{BlockTime: time.Second})
	p := newCountingProxy(b, e.anvil.RPCURL())
	c, err := deployer.Dial(ctxT(b), p.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := deployer.DeployAppConfig{KMS: e.kms.KMSContract, ComposeHash: hash32(1), ReadKMSRootKey: true}
	ctx := ctxT(b)
	p.reset()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.DeployApp(ctx, e.owner, cfg, deployer.TxOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(p.count())/float64(b.N), "requests/op")
}

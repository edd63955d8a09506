package deployer_test

import (
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// chainEnv is an anvil chain with a KMS deployed by DeployKMS.
type chainEnv struct {
	anvil  *testnet.Anvil
	client *deployer.Client
	owner  deployer.Signer // anvil account 0: deploys and owns the KMS
	other  deployer.Signer // anvil account 1
	kms    *deployer.KMSDeployment
	osHash [32]byte
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newChain starts anvil (automine unless cfg says otherwise), dials it and
// deploys a KMS with one allowed OS image.
func newChain(t testing.TB, cfg testnet.AnvilConfig) *chainEnv {
	t.Helper()
	a := testnet.NewTestAnvil(t, cfg)
	c, err := deployer.Dial(ctxT(t), a.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	accts := a.Accounts()
	e := &chainEnv{
		anvil: a, client: c,
		owner: deployer.NewKeySigner(accts[0].PrivateKey),
		other: deployer.NewKeySigner(accts[1].PrivateKey),
	}
	e.osHash = [32]byte{0x05, 0x0e}
	e.kms, err = c.DeployKMS(ctxT(t), e.owner, deployer.KMSDeployConfig{OSImageHashes: [][32]byte{e.osHash}}, deployer.TxOptions{})
	if err != nil {
		t.Fatalf("DeployKMS: %v", err)
	}
	return e
}

func (e *chainEnv) nonce(t testing.TB, a common.Address) uint64 {
	t.Helper()
	n, err := e.client.Eth().PendingNonceAt(ctxT(t), a)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *chainEnv) code(t testing.TB, a common.Address) []byte {
	t.Helper()
	c, err := e.client.Eth().CodeAt(ctxT(t), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deployApp deploys an app with a compose hash and a device through the factory.
func (e *chainEnv) deployApp(t testing.TB, s deployer.Signer, cfg deployer.DeployAppConfig) *deployer.AppDeployment {
	t.Helper()
	cfg.KMS = e.kms.KMSContract
	d, err := e.client.DeployApp(ctxT(t), s, cfg, deployer.TxOptions{})
	if err != nil {
		t.Fatalf("DeployApp: %v", err)
	}
	return d
}

// newFunded returns a fresh signer (zero balance) for the insufficient-funds case.
func newUnfunded(t testing.TB) deployer.Signer {
	k, _ := testKey(t)
	return deployer.NewKeySigner(k)
}

func hash32(b ...byte) [32]byte {
	var h [32]byte
	copy(h[:], b)
	return h
}

func gwei(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1_000_000_000)) }

// countingProxy forwards HTTP requests to upstream and counts them, with the
// JSON-RPC bodies' sizes, so tests can assert round trips.
type countingProxy struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
}

func newCountingProxy(t testing.TB, upstream string) *countingProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *countingProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	p.requests = 0
	p.mu.Unlock()
}

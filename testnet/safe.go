package testnet

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// installSafeContractsScript is install-safe-contracts.sh, embedded so a
// binary built from this repository installs the artifacts anywhere.
//
//go:embed install-safe-contracts.sh
var installSafeContractsScript string

var safeArtifactsCache struct {
	sync.Mutex
	dir string
}

// SafeArtifactsDir finds the build/artifacts/contracts folder of
// @safe-global/safe-contracts 1.4.1: $SAFE_CONTRACTS_DIR when set, else
// the install in the repository's .tools/safe-contracts (or the user cache
// outside a checkout), installing it with npm on first use.
func SafeArtifactsDir(ctx context.Context) (string, error) {
	if d := os.Getenv("SAFE_CONTRACTS_DIR"); d != "" {
		return d, nil
	}
	safeArtifactsCache.Lock()
	defer safeArtifactsCache.Unlock()
	if safeArtifactsCache.dir != "" {
		return safeArtifactsCache.dir, nil
	}
	dir, err := toolDir("safe-contracts")
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	cmd := exec.CommandContext(ctx, "bash", "-c", installSafeContractsScript, "install-safe-contracts.sh")
	cmd.Env = append(os.Environ(), "SAFE_CONTRACTS_INSTALL_DIR="+dir)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install @safe-global/safe-contracts %s into %s: %w (%s)", safe.Version, dir, err, lastLine(stderr.String()))
	}
	safeArtifactsCache.dir = strings.TrimSpace(stdout.String())
	return safeArtifactsCache.dir, nil
}

// toolDir is <repo>/.tools/name, or a folder in the user cache outside the
// repository.
func toolDir(name string) (string, error) {
	if root, ok := repoRoot(); ok {
		return filepath.Join(root, ".tools", name), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no repository and no user cache folder to install %s into: %w", name, err)
	}
	return filepath.Join(cache, "cvmdeploy", name), nil
}

// ErrSafeArtifact is wrapped when an artifact is missing or its init code
// is not the pinned one.
var ErrSafeArtifact = errors.New("Safe contract artifact refused")

// SafeInitCode reads an artifact's init code (its "bytecode" field) and
// checks its keccak256 against want: only the pinned bytes are deployed.
func SafeInitCode(dir, artifact string, want common.Hash) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(dir, artifact))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSafeArtifact, err)
	}
	var a struct {
		Bytecode string `json:"bytecode"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSafeArtifact, artifact, err)
	}
	code, err := hexutil.Decode(a.Bytecode)
	if err != nil || len(code) == 0 {
		return nil, fmt.Errorf("%w: %s has no bytecode", ErrSafeArtifact, artifact)
	}
	if got := crypto.Keccak256Hash(code); got != want {
		return nil, fmt.Errorf("%w: %s init code hashes to %s, the pinned v%s is %s", ErrSafeArtifact, artifact, got.Hex(), safe.Version, want.Hex())
	}
	return code, nil
}

// SafeContracts is what DeploySafeContracts found or deployed.
type SafeContracts struct {
	// Deployed lists the contracts this run deployed (the others were
	// there already, with the pinned code).
	Deployed []string
	// ProxyCreationCode is SafeProxy's init code (for address predictions).
	ProxyCreationCode []byte
}

// DeploySafeContracts makes the six canonical Safe v1.4.1 contracts exist
// at their canonical addresses: on anvil it installs the singleton
// factory's code (anvil_setCode) when missing, then deploys each missing
// contract through it (CREATE2, zero salt), all in one batch from funder.
// A contract already there must have the pinned runtime code (a fork of
// Base or Ethereum has them all). Every init code is checked against its
// pinned keccak before it is sent, every runtime code after.
func DeploySafeContracts(ctx context.Context, client *deployer.Client, funder deployer.Signer, artifacts string) (*SafeContracts, error) {
	out := &SafeContracts{}
	var err error
	if out.ProxyCreationCode, err = SafeInitCode(artifacts, safe.ProxyArtifact, safe.ProxyCreationCodeHash); err != nil {
		return nil, err
	}
	codeHash := func(a common.Address) (common.Hash, int, error) {
		var code hexutil.Bytes
		if err := client.RPC().CallContext(ctx, &code, "eth_getCode", a, "latest"); err != nil {
			return common.Hash{}, 0, err
		}
		return crypto.Keccak256Hash(code), len(code), nil
	}
	var reqs []deployer.TxRequest
	var names []string
	for _, c := range safe.Contracts() {
		h, n, err := codeHash(c.Address)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			if h != c.CodeHash {
				return nil, fmt.Errorf("%w: %s at %s has code hash %s, not the canonical %s", ErrSafeArtifact, c.Name, c.Address.Hex(), h.Hex(), c.CodeHash.Hex())
			}
			continue
		}
		init, err := SafeInitCode(artifacts, c.Artifact, c.InitCodeHash)
		if err != nil {
			return nil, err
		}
		if got := safe.Create2Address(init); got != c.Address {
			return nil, fmt.Errorf("%w: %s would land at %s, not %s", ErrSafeArtifact, c.Name, got.Hex(), c.Address.Hex())
		}
		f := safe.SingletonFactory
		reqs = append(reqs, deployer.TxRequest{To: &f, Data: append(make([]byte, 32), init...), Role: "the Safe singleton factory", SkipCodeCheck: true})
		names = append(names, c.Name)
	}
	if len(reqs) == 0 {
		return out, nil
	}
	if _, n, err := codeHash(safe.SingletonFactory); err != nil {
		return nil, err
	} else if n == 0 {
		if err := client.RPC().CallContext(ctx, nil, "anvil_setCode", safe.SingletonFactory, hexutil.Bytes(safe.SingletonFactoryRuntime)); err != nil {
			return nil, fmt.Errorf("install the Safe singleton factory (needs anvil's anvil_setCode): %w", err)
		}
	}
	if _, err := client.TransactAll(ctx, funder, reqs, deployer.TxOptions{}); err != nil {
		return nil, fmt.Errorf("deploy the Safe contracts: %w", err)
	}
	for _, c := range safe.Contracts() {
		h, _, err := codeHash(c.Address)
		if err != nil {
			return nil, err
		}
		if h != c.CodeHash {
			return nil, fmt.Errorf("%w: %s deployed at %s with code hash %s, not the canonical %s", ErrSafeArtifact, c.Name, c.Address.Hex(), h.Hex(), c.CodeHash.Hex())
		}
	}
	out.Deployed = names
	return out, nil
}

// CreateSafe creates an m-of-n Safe (SafeL2 singleton, the compatibility
// fallback handler, nothing else) through the canonical proxy factory with
// saltNonce, from funder, and returns its address. The same owners,
// threshold and salt give the same address on every chain; an existing
// Safe there is returned as is.
func CreateSafe(ctx context.Context, client *deployer.Client, funder deployer.Signer, proxyCreationCode []byte, owners []common.Address, threshold uint64, saltNonce *big.Int) (common.Address, error) {
	setup := safe.SetupData(owners, threshold, safe.FallbackHandler.Address)
	addr := safe.PredictProxy(safe.ProxyFactory.Address, proxyCreationCode, safe.SafeL2.Address, setup, saltNonce)
	var code hexutil.Bytes
	if err := client.RPC().CallContext(ctx, &code, "eth_getCode", addr, "latest"); err != nil {
		return common.Address{}, err
	}
	if len(code) == 0 {
		f := safe.ProxyFactory.Address
		r, err := client.Transact(ctx, funder, deployer.TxRequest{To: &f, Data: safe.CreateProxyData(safe.SafeL2.Address, setup, saltNonce), Role: "the Safe proxy factory"}, deployer.TxOptions{})
		if err != nil {
			return common.Address{}, fmt.Errorf("create the Safe: %w", err)
		}
		created := false
		for _, l := range r.Logs {
			if l.Address == f && len(l.Topics) == 2 && l.Topics[0] == safe.ProxyCreationTopic && common.BytesToAddress(l.Topics[1][:]) == addr {
				created = true
			}
		}
		if !created {
			return common.Address{}, fmt.Errorf("create the Safe: transaction %s did not create the predicted %s", r.TxHash.Hex(), addr.Hex())
		}
	}
	st, err := safe.ReadState(ctx, client.Eth(), addr)
	if err != nil {
		return common.Address{}, err
	}
	if st.Threshold != threshold || len(st.Owners) != len(owners) {
		return common.Address{}, fmt.Errorf("the Safe at %s is %d-of-%d, not %d-of-%d", addr.Hex(), st.Threshold, len(st.Owners), threshold, len(owners))
	}
	return addr, nil
}

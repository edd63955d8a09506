package testnet

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
	"github.com/cvmdeploy/cvmdeploy/testnet/safeservice"
)

// DefaultOSImageHash is the OS image the local node boots and the local KMS
// allows: a fixed stand-in for the digest of dstack-0.5.5.
var DefaultOSImageHash = common.Hash(sha256.Sum256([]byte("cvmdeploy local testnet / os image / " + cloud.DefaultOSImageName)))

// anvilTestKey0 is the first key of anvil's (and Hardhat's) public test
// mnemonic. It is not a secret: every Ethereum developer's local chain has
// it. The embedded chain funds its address, so the dev account is the same
// well-known account on anvil and on the embedded chain.
const anvilTestKey0 = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

// devFunding is what the embedded chain's dev account receives.
var devFunding = new(big.Int).Mul(big.NewInt(10_000), big.NewInt(params.Ether))

// EmbeddedChain starts an in-process chain for StartLocalnet: chainID zero
// means DefaultChainID, blockTime zero a block per transaction, and the
// first account is funded. Its implementation is devchain.ForLocalnet; this
// package does not import it, so that a program running anvil alone links no
// go-ethereum node (about 440 packages and 40 MB of binary).
type EmbeddedChain func(ctx context.Context, chainID uint64, blockTime time.Duration) (Chain, error)

// LocalnetConfig says how to start a local testnet: a chain with a DstackKms,
// and the local Phala Cloud in front of it. The zero value runs anvil
// (automine, chain 31337) with a fresh KMS.
type LocalnetConfig struct {
	// Embedded, when set, starts an in-process chain instead of anvil:
	// devchain.ForLocalnet, the go-ethereum dev chain.
	Embedded EmbeddedChain
	// ForkURL runs anvil as a fork of that chain and uses the existing KMS
	// at KMSContract there (fork mode). Not with Embedded.
	ForkURL string
	// KMSContract is the DstackKms on the forked chain (required with
	// ForkURL, refused without it).
	KMSContract common.Address
	// BlockTime mines a block every BlockTime; zero means automine (the
	// embedded chain takes whole seconds only).
	BlockTime time.Duration
	// ChainID of a fresh chain; zero means 31337 (a fork keeps its own id).
	ChainID uint64
	// APIKey is what the cloud accepts; empty means a random "phak_local_…".
	APIKey string
	// KMSSlug names the KMS (default "kms-local").
	KMSSlug string
	// RootKey is the KMS root key; nil means a fresh random one.
	RootKey *ecdsa.PrivateKey
	// OSImageHash is allowed on the KMS and booted by the node; zero means
	// DefaultOSImageHash.
	OSImageHash common.Hash
	// Addr is where the cloud listens; empty means 127.0.0.1 on a free port.
	Addr string
	// AnvilBinary overrides the anvil executable (default: AnvilBinary's choice).
	AnvilBinary string
	// Adversary makes the cloud lie about one thing (one of
	// cloud.AdversaryModes; "" is honest), to see a client's checks work.
	// With cloud.AdversaryRogueKMS a second DstackKms with its own fresh
	// root key is deployed on the same chain and served by the cloud;
	// Localnet.KMSContract still names the honest one and
	// Localnet.RogueKMSContract the rogue one.
	Adversary string
	// InjectPreLaunchScript is the pre-launch script the cloud injects when
	// a request has none (cloud.Config.InjectPreLaunchScript); nil injects
	// nothing.
	InjectPreLaunchScript *string
	// Safe deploys the canonical Safe v1.4.1 contracts (anvil only; a
	// fork keeps those it has) and serves a local Safe Transaction Service.
	Safe bool
	// SafeOwners, when positive, also creates a SafeThreshold-of-SafeOwners
	// Safe owned by anvil's dev accounts 1..SafeOwners (implies Safe).
	SafeOwners    int
	SafeThreshold int
	// SafeServiceAddr is where the service listens; empty means 127.0.0.1
	// on a free port.
	SafeServiceAddr string
	// Cloud carries the cloud's knobs (Latency, Rate429, Rate5xx, Seed,
	// BootStep, Log, ProvisionTTL, PortalURL, DefaultVersion, NodeName, ...).
	// Its chain, KMS, key and API-key fields are set by StartLocalnet, and
	// its Adversary and InjectPreLaunchScript by the fields above when set.
	Cloud cloud.Config
}

// Check reports contradictory settings.
func (c LocalnetConfig) Check() error {
	var errs []error
	if c.Embedded != nil && c.ForkURL != "" {
		errs = append(errs, errors.New("--embedded and --fork-url exclude each other: a fork needs anvil"))
	}
	if c.ForkURL != "" && c.KMSContract == (common.Address{}) {
		errs = append(errs, errors.New("--fork-url needs --kms-contract: the DstackKms on the forked chain"))
	}
	if c.ForkURL == "" && c.KMSContract != (common.Address{}) {
		errs = append(errs, errors.New("--kms-contract only applies with --fork-url; a fresh chain gets a fresh KMS"))
	}
	if c.BlockTime < 0 {
		errs = append(errs, fmt.Errorf("--block-time %v is negative", c.BlockTime))
	}
	if c.Embedded != nil && c.BlockTime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--block-time %v: the embedded chain mines in whole seconds", c.BlockTime))
	}
	if c.ForkURL != "" && c.ChainID != 0 {
		errs = append(errs, errors.New("a fork keeps the forked chain's id; do not set a chain id with --fork-url"))
	}
	if err := cloud.CheckAdversary(c.Adversary); err != nil {
		errs = append(errs, fmt.Errorf("--adversary: %w", err))
	}
	if (c.Safe || c.SafeOwners > 0) && c.Embedded != nil {
		errs = append(errs, errors.New("the Safe contracts need anvil (its anvil_setCode installs the Safe singleton factory): drop --embedded"))
	}
	if c.SafeOwners < 0 || c.SafeOwners > maxSafeOwners {
		errs = append(errs, fmt.Errorf("a local Safe has 1 to %d owners (anvil's dev accounts 1..%d), not %d", maxSafeOwners, maxSafeOwners, c.SafeOwners))
	} else if c.SafeOwners > 0 && (c.SafeThreshold < 1 || c.SafeThreshold > c.SafeOwners) {
		errs = append(errs, fmt.Errorf("a %d-owner Safe needs a threshold from 1 to %d, not %d", c.SafeOwners, c.SafeOwners, c.SafeThreshold))
	}
	if c.Adversary != "" && c.Cloud.Adversary != "" && c.Adversary != c.Cloud.Adversary {
		errs = append(errs, fmt.Errorf("adversary %q and Cloud.Adversary %q disagree", c.Adversary, c.Cloud.Adversary))
	}
	return errors.Join(errs...)
}

// Localnet is a running local testnet.
type Localnet struct {
	RPCURL      string
	ChainID     uint64
	KMSContract common.Address
	// KMSID is the KMS slug (and id) the cloud serves, e.g. "kms-local".
	KMSID string
	// APIPrefix is the cloud's base URL, ending in /api/v1.
	APIPrefix string
	APIKey    string
	// DevAccount is a funded account for the user (its key is for tests
	// and must never be printed).
	DevAccount DevAccount
	// KMSOwner owns the KMS contract (impersonated in fork mode).
	KMSOwner    common.Address
	OSImageHash common.Hash
	// DeviceID is node 1's device id; Nodes are all the cloud's nodes (node
	// 1 first), each with its own device id, for replicas.
	DeviceID      common.Hash
	Nodes         []cloud.Node
	RootPublicKey []byte
	Forked        bool
	// Adversary is the cloud's adversary mode ("" when honest).
	Adversary string
	// RogueKMSContract is the second DstackKms the rogue-kms adversary
	// serves (zero otherwise), and RogueRootPublicKey its root key.
	RogueKMSContract   common.Address
	RogueRootPublicKey []byte
	Cloud              *cloud.Server
	Chain              Chain
	// SafeServiceURL is the local Safe Transaction Service's base (what
	// api-kit takes as txServiceUrl), "" without LocalnetConfig.Safe.
	SafeServiceURL string
	SafeService    *safeservice.Server
	// Safe is the Safe created with SafeOwners (zero otherwise), owned by
	// SafeOwners (anvil's dev accounts 1..n, keys for tests only) with
	// SafeThreshold.
	Safe          common.Address
	SafeOwners    []DevAccount
	SafeThreshold int

	client *deployer.Client
}

// StartLocalnet starts the chain, deploys (or, in fork mode, takes over) the
// KMS with the cloud's root key and OS image, and starts the cloud. ctx
// bounds the start-up; everything runs until Close.
func StartLocalnet(ctx context.Context, cfg LocalnetConfig) (_ *Localnet, err error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	l := &Localnet{Forked: cfg.ForkURL != "", KMSID: cfg.KMSSlug, APIKey: cfg.APIKey, OSImageHash: cfg.OSImageHash}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	if l.KMSID == "" {
		l.KMSID = cloud.DefaultKMSSlug
	}
	if l.APIKey == "" {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("localnet: api key: %w", err)
		}
		l.APIKey = "phak_local_" + hex.EncodeToString(b[:])
	}
	if l.OSImageHash == (common.Hash{}) {
		l.OSImageHash = DefaultOSImageHash
	}
	root := cfg.RootKey
	if root == nil {
		if root, err = crypto.GenerateKey(); err != nil {
			return nil, fmt.Errorf("localnet: root key: %w", err)
		}
	}
	l.RootPublicKey = crypto.CompressPubkey(&root.PublicKey)

	var owner DevAccount
	switch {
	case cfg.Embedded != nil:
		dc, err := cfg.Embedded(ctx, cfg.ChainID, cfg.BlockTime)
		if err != nil {
			return nil, fmt.Errorf("localnet: %w", err)
		}
		l.Chain = dc
		accts := dc.Accounts()
		if len(accts) == 0 {
			return nil, errors.New("localnet: the embedded chain has no funded account")
		}
		owner = accts[0]
	default:
		a, err := StartAnvil(ctx, AnvilConfig{Binary: cfg.AnvilBinary, ChainID: cfg.ChainID, BlockTime: cfg.BlockTime, ForkURL: cfg.ForkURL})
		if err != nil {
			return nil, fmt.Errorf("localnet: %w", err)
		}
		l.Chain = a
		accts := a.Accounts()
		if len(accts) < 2 {
			return nil, fmt.Errorf("localnet: anvil reported %d dev accounts, need 2", len(accts))
		}
		// The first account is the user's (the one anvil prints first);
		// the last deploys and owns the KMS, so user nonces start at 0.
		l.DevAccount, owner = accts[0], accts[len(accts)-1]
	}
	l.RPCURL, l.ChainID = l.Chain.RPCURL(), l.Chain.ChainID()
	if l.client, err = deployer.Dial(ctx, l.RPCURL); err != nil {
		return nil, fmt.Errorf("localnet: %w", err)
	}
	if l.Forked {
		if err := l.takeOverKMS(ctx, cfg.KMSContract, l.RootPublicKey); err != nil {
			return nil, err
		}
	} else if err := l.deployKMS(ctx, owner, cfg.Embedded != nil); err != nil {
		return nil, err
	}
	if cfg.Embedded != nil {
		if l.DevAccount, err = l.fundDevAccount(ctx, owner); err != nil {
			return nil, err
		}
	}

	if cfg.Safe || cfg.SafeOwners > 0 {
		if err := l.startSafe(ctx, cfg, owner); err != nil {
			return nil, err
		}
	}

	cc := cfg.Cloud
	cc.APIKey, cc.Chain, cc.ChainID, cc.RPCURL = l.APIKey, l.client.Eth(), l.ChainID, l.RPCURL
	cc.KMSContract, cc.KMSSlug, cc.RootKey, cc.OSImageHash = l.KMSContract, l.KMSID, root, l.OSImageHash
	if cfg.Adversary != "" {
		cc.Adversary = cfg.Adversary
	}
	if cfg.InjectPreLaunchScript != nil {
		cc.InjectPreLaunchScript = cfg.InjectPreLaunchScript
	}
	l.Adversary = cc.Adversary
	if cc.Adversary == cloud.AdversaryRogueKMS {
		rogueRoot, err := crypto.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("localnet: rogue root key: %w", err)
		}
		l.RogueRootPublicKey = crypto.CompressPubkey(&rogueRoot.PublicKey)
		d, err := l.newKMS(ctx, owner, cfg.Embedded != nil, l.RogueRootPublicKey)
		if err != nil {
			return nil, fmt.Errorf("localnet: deploy the rogue KMS: %w", err)
		}
		l.RogueKMSContract = d.KMSContract
		cc.RogueKMSContract, cc.RogueRootKey = d.KMSContract, rogueRoot
	}
	srv, err := cloud.New(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("localnet: %w", err)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := srv.Start(addr); err != nil {
		return nil, fmt.Errorf("localnet: %w", err)
	}
	l.Cloud, l.APIPrefix, l.DeviceID, l.Nodes = srv, srv.APIPrefix(), srv.DeviceID(), srv.Nodes()
	return l, nil
}

// deployKMS deploys a fresh KMS with the cloud's root key and OS image.
func (l *Localnet) deployKMS(ctx context.Context, owner DevAccount, sequential bool) error {
	d, err := l.newKMS(ctx, owner, sequential, l.RootPublicKey)
	if err != nil {
		return fmt.Errorf("localnet: deploy KMS: %w", err)
	}
	l.KMSContract, l.KMSOwner = d.KMSContract, d.Owner
	return nil
}

// newKMS deploys a DstackKms owned by owner, storing rootPub as its root key
// and allowing the node's OS image. On anvil the five transactions go out
// as one batch. The embedded chain gets the setters as separate, estimated
// transactions after the deployment: a batch whose setters were sent before
// the proxy was mined was seen to revert there once under load, and the
// start-up cost is the same.
func (l *Localnet) newKMS(ctx context.Context, owner DevAccount, sequential bool, rootPub []byte) (*deployer.KMSDeployment, error) {
	signer := deployer.NewKeySigner(owner.PrivateKey)
	cfg := deployer.KMSDeployConfig{RootKey: rootPub, OSImageHashes: [][32]byte{l.OSImageHash}}
	if sequential {
		cfg = deployer.KMSDeployConfig{}
	}
	d, err := l.client.DeployKMS(ctx, signer, cfg, deployer.TxOptions{})
	if err != nil {
		return nil, err
	}
	if !sequential {
		return d, nil
	}
	kb := bindings.NewDstackKms()
	info := bindings.DstackKmsKmsInfo{K256Pubkey: rootPub, CaPubkey: []byte{}, Quote: []byte{}, Eventlog: []byte{}}
	for _, step := range []struct {
		what string
		data []byte
	}{{"setKmsInfo", kb.PackSetKmsInfo(info)}, {"addOsImageHash", kb.PackAddOsImageHash(l.OSImageHash)}} {
		kms := d.KMSContract
		if _, err := l.client.Transact(ctx, signer, deployer.TxRequest{To: &kms, Data: step.data, Role: "the new KMS"}, deployer.TxOptions{}); err != nil {
			return nil, fmt.Errorf("%s: %w", step.what, err)
		}
	}
	return d, nil
}

// fundDevAccount funds anvil's well-known first test account on the
// embedded chain from the chain's dev key.
func (l *Localnet) fundDevAccount(ctx context.Context, from DevAccount) (DevAccount, error) {
	key, err := crypto.HexToECDSA(anvilTestKey0)
	if err != nil {
		return DevAccount{}, fmt.Errorf("localnet: dev account: %w", err)
	}
	dev := DevAccount{Address: crypto.PubkeyToAddress(key.PublicKey), PrivateKey: key}
	_, err = l.client.Transact(ctx, deployer.NewKeySigner(from.PrivateKey),
		deployer.TxRequest{To: &dev.Address, Value: devFunding, Role: "the dev account", SkipCodeCheck: true}, deployer.TxOptions{})
	if err != nil {
		return DevAccount{}, fmt.Errorf("localnet: fund dev account: %w", err)
	}
	return dev, nil
}

// takeOverKMS points an existing DstackKms on a forked chain at the local
// cloud: it impersonates the KMS owner to store the cloud's root key
// (keeping the other kmsInfo fields) and to allow the local OS image.
func (l *Localnet) takeOverKMS(ctx context.Context, kms common.Address, rootPub []byte) error {
	kb := bindings.NewDstackKms()
	call := func(data []byte) ([]byte, error) {
		var out hexutil.Bytes
		err := l.client.RPC().CallContext(ctx, &out, "eth_call", map[string]any{"to": kms, "input": hexutil.Bytes(data)}, "latest")
		return out, err
	}
	out, err := call(kb.PackOwner())
	if err != nil {
		return fmt.Errorf("localnet: read owner() of KMS %s on the fork: %w", kms.Hex(), err)
	}
	owner, err := kb.UnpackOwner(out)
	if err != nil {
		return fmt.Errorf("localnet: %s does not answer owner() like a DstackKms: %w", kms.Hex(), err)
	}
	if owner == (common.Address{}) {
		return fmt.Errorf("localnet: KMS %s has no owner (renounced): it cannot be taken over", kms.Hex())
	}
	out, err = call(kb.PackKmsInfo())
	if err != nil {
		return fmt.Errorf("localnet: read kmsInfo() of KMS %s: %w", kms.Hex(), err)
	}
	current, err := kb.UnpackKmsInfo(out)
	if err != nil {
		return fmt.Errorf("localnet: %s does not answer kmsInfo() like a DstackKms: %w", kms.Hex(), err)
	}
	rpcc := l.client.RPC()
	if err := rpcc.CallContext(ctx, nil, "anvil_impersonateAccount", owner); err != nil {
		return fmt.Errorf("localnet: impersonate KMS owner %s: %w", owner.Hex(), err)
	}
	defer func() { _ = rpcc.CallContext(context.WithoutCancel(ctx), nil, "anvil_stopImpersonatingAccount", owner) }()
	balance := (*hexutil.Big)(new(big.Int).Mul(big.NewInt(1000), big.NewInt(params.Ether)))
	if err := rpcc.CallContext(ctx, nil, "anvil_setBalance", owner, balance); err != nil {
		return fmt.Errorf("localnet: fund KMS owner %s: %w", owner.Hex(), err)
	}
	info := bindings.DstackKmsKmsInfo{K256Pubkey: rootPub, CaPubkey: nonNil(current.CaPubkey), Quote: nonNil(current.Quote), Eventlog: nonNil(current.Eventlog)}
	for _, step := range []struct {
		what string
		data []byte
	}{
		{"setKmsInfo", kb.PackSetKmsInfo(info)},
		{"addOsImageHash", kb.PackAddOsImageHash(l.OSImageHash)},
	} {
		var h common.Hash
		tx := map[string]any{"from": owner, "to": kms, "input": hexutil.Bytes(step.data), "gas": hexutil.Uint64(500_000)}
		if err := rpcc.CallContext(ctx, &h, "eth_sendTransaction", tx); err != nil {
			return fmt.Errorf("localnet: %s as the impersonated owner: %w", step.what, err)
		}
		r, err := l.client.WaitReceipt(ctx, h, deployer.TxOptions{Timeout: time.Minute})
		if err != nil {
			return fmt.Errorf("localnet: %s: %w", step.what, err)
		}
		if r.Status != types.ReceiptStatusSuccessful {
			return fmt.Errorf("localnet: %s reverted (tx %s): is %s a DstackKms owned by %s?", step.what, h.Hex(), kms.Hex(), owner.Hex())
		}
	}
	l.KMSContract, l.KMSOwner = kms, owner
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ExportLines returns the shell lines that point the official CLI and
// cvmdeploy at this testnet.
func (l *Localnet) ExportLines() []string {
	return []string{
		"export ETH_RPC_URL=" + shellQuote(l.RPCURL),
		"export PHALA_CLOUD_API_PREFIX=" + shellQuote(l.APIPrefix),
		"export PHALA_CLOUD_API_KEY=" + shellQuote(l.APIKey),
	}
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// AppDeployments counts the AppAuths ever deployed through the testnet's
// KMS factory (its AppDeployedViaFactory logs). Tests use it to prove that
// a flow deployed exactly once.
func (l *Localnet) AppDeployments(ctx context.Context) (int, error) {
	logs, err := l.client.Eth().FilterLogs(ctx, ethereum.FilterQuery{
		FromBlock: big.NewInt(0),
		Addresses: []common.Address{l.KMSContract},
		Topics:    [][]common.Hash{{appDeployedViaFactoryTopic}},
	})
	if err != nil {
		return 0, fmt.Errorf("localnet: count app deployments: %w", err)
	}
	return len(logs), nil
}

var appDeployedViaFactoryTopic = crypto.Keccak256Hash([]byte("AppDeployedViaFactory(address,address)"))

// Close stops the cloud, then the chain. It is safe on a partly started
// testnet and more than once.
func (l *Localnet) Close() error {
	var errs []error
	if l.SafeService != nil {
		errs = append(errs, l.SafeService.Close())
		l.SafeService = nil
	}
	if l.Cloud != nil {
		errs = append(errs, l.Cloud.Close())
		l.Cloud = nil
	}
	if l.client != nil {
		l.client.Close()
		l.client = nil
	}
	if l.Chain != nil {
		errs = append(errs, l.Chain.Close())
		l.Chain = nil
	}
	return errors.Join(errs...)
}

// maxSafeOwners: a local Safe's owners are anvil's dev accounts 1..n; the
// first is the user's and the last owns the KMS.
const maxSafeOwners = 8

// startSafe deploys the Safe contracts from funder (the KMS owner, so the
// user's nonces stay at 0), creates the configured Safe and starts the
// local Transaction Service.
func (l *Localnet) startSafe(ctx context.Context, cfg LocalnetConfig, funder DevAccount) error {
	dir, err := SafeArtifactsDir(ctx)
	if err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	signer := deployer.NewKeySigner(funder.PrivateKey)
	sc, err := DeploySafeContracts(ctx, l.client, signer, dir)
	if err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	if cfg.SafeOwners > 0 {
		accts := l.Chain.Accounts()
		if len(accts) < cfg.SafeOwners+2 {
			return fmt.Errorf("localnet: a %d-owner Safe needs %d dev accounts, anvil has %d", cfg.SafeOwners, cfg.SafeOwners+2, len(accts))
		}
		l.SafeOwners = accts[1 : 1+cfg.SafeOwners]
		owners := make([]common.Address, len(l.SafeOwners))
		for i, a := range l.SafeOwners {
			owners[i] = a.Address
		}
		if l.Safe, err = CreateSafe(ctx, l.client, signer, sc.ProxyCreationCode, owners, uint64(cfg.SafeThreshold), new(big.Int)); err != nil {
			return fmt.Errorf("localnet: %w", err)
		}
		l.SafeThreshold = cfg.SafeThreshold
	}
	svc, err := safeservice.New(ctx, safeservice.Config{Chain: l.client.Eth(), Log: cfg.Cloud.Log})
	if err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	addr := cfg.SafeServiceAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := svc.Start(addr); err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	l.SafeService, l.SafeServiceURL = svc, svc.URL()
	return nil
}

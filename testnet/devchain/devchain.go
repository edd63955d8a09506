// Package devchain runs go-ethereum's dev mode in-process as a local chain
// that needs nothing but Go; it is its own package so that only programs that
// ask for it (tests, the devchain build of cvmdeploy) link a go-ethereum node.
package devchain

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/log"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// DefaultDevBalance funds the embedded chain's dev key: one million ether,
// plenty for any test and far from the uint256 edge that trips some tools.
var DefaultDevBalance = new(big.Int).Mul(big.NewInt(1_000_000), big.NewInt(params.Ether))

// Config says how to run the embedded chain. The zero value is chain
// 31337 that mines a block as soon as a transaction arrives.
//
// The chain starts at block 1, an empty block sealed at start (see
// settleTxIndex); anvil starts at block 0.
type Config struct {
	// ChainID is the chain id; zero means 31337.
	ChainID uint64
	// BlockPeriod mines a block every BlockPeriod, in whole seconds (block
	// timestamps are whole seconds; a faster rate would run them ahead of
	// the clock). Zero mines on demand: a block as soon as a transaction
	// reaches the pool, like anvil's automine.
	BlockPeriod time.Duration
	// Alloc funds extra accounts at genesis (wei).
	Alloc map[common.Address]*big.Int
	// DevBalance is the dev key's genesis balance in wei; nil means
	// DefaultDevBalance.
	DevBalance *big.Int
	// GasLimit is the block gas limit, kept for every block; zero means 30M,
	// as on anvil.
	GasLimit uint64
}

// Check reports a config the chain cannot run with.
func (c Config) Check() error {
	if c.BlockPeriod < 0 {
		return fmt.Errorf("dev chain block period %v is negative", c.BlockPeriod)
	}
	if c.BlockPeriod%time.Second != 0 {
		return fmt.Errorf("dev chain block period %v is not a whole number of seconds", c.BlockPeriod)
	}
	if c.DevBalance != nil && c.DevBalance.Sign() < 0 {
		return errors.New("dev chain dev balance is negative")
	}
	for addr, bal := range c.Alloc {
		if bal == nil || bal.Sign() < 0 {
			return fmt.Errorf("dev chain alloc for %s is nil or negative", addr)
		}
	}
	if c.GasLimit != 0 && c.GasLimit < params.MinGasLimit {
		return fmt.Errorf("dev chain gas limit %d is below the protocol minimum %d", c.GasLimit, params.MinGasLimit)
	}
	return nil
}

// Chain is an in-process go-ethereum dev chain (post-merge, every fork of
// go-ethereum's dev mode active, driven by the beacon simulator) serving
// JSON-RPC over HTTP on 127.0.0.1. It keeps everything in memory and needs
// nothing but Go.
type Chain struct {
	stack   *node.Node
	backend *eth.Ethereum
	beacon  *catalyst.SimulatedBeacon
	rpcURL  string
	chainID uint64
	devKey  *ecdsa.PrivateKey
	devAddr common.Address

	// The sealing loop is ours rather than the beacon simulator's, so Close
	// can stop it and wait before the node shuts down: go-ethereum's own
	// on-demand loop may still be sealing while the database closes, which
	// makes the chain call log.Crit and exit the whole process.
	mineReq  chan chan error // Mine's requests to the sealing loop
	quit     chan struct{}
	loopDone sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// maxSealsPerWake bounds the blocks sealed for one wake-up of the on-demand
// loop. A pending transaction the miner will not include yet (fee cap below
// the base fee) gets in after a few empty blocks lower the base fee; anything
// else stuck must not spin the loop forever.
const maxSealsPerWake = 64

// quietLogger drops the node's own log lines (HTTP server started, and so
// on). go-ethereum's package-level logs go to its root logger, which discards
// by default; a program that installs its own root logger sees them at the
// level it chose.
var quietLogger = log.NewLogger(log.DiscardHandler())

// Start starts the embedded chain with a freshly generated, funded
// dev key and returns once its HTTP JSON-RPC server answers. ctx bounds the
// start-up only; the chain runs until Close.
func Start(ctx context.Context, cfg Config) (*Chain, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start dev chain: %w", err)
	}
	key, err := crypto.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("start dev chain: generate dev key: %w", err)
	}
	d := &Chain{
		chainID: cmp.Or(cfg.ChainID, uint64(testnet.DefaultChainID)),
		devKey:  key,
		devAddr: crypto.PubkeyToAddress(key.PublicKey),
		mineReq: make(chan chan error),
		quit:    make(chan struct{}),
	}

	nodeConf := node.DefaultConfig
	nodeConf.DataDir = "" // in-memory databases, nothing written to disk
	nodeConf.IPCPath = ""
	nodeConf.P2P = p2p.Config{NoDiscovery: true, MaxPeers: 0, ListenAddr: ""}
	nodeConf.HTTPHost = "127.0.0.1"
	nodeConf.HTTPPort = 0 // the kernel picks a free port
	nodeConf.HTTPModules = []string{"eth", "net", "web3", "txpool", "debug", "evm"}
	nodeConf.WSHost = ""
	nodeConf.Logger = quietLogger
	if d.stack, err = node.New(&nodeConf); err != nil {
		return nil, fmt.Errorf("start dev chain: node: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = d.stack.Close()
		}
	}()

	ethConf := ethconfig.Defaults
	ethConf.Genesis = devGenesis(d.chainID, cfg, d.devAddr)
	ethConf.NetworkId = d.chainID
	ethConf.SyncMode = ethconfig.FullSync
	// The pool takes any tip of at least 1 wei (its floor); the miner must
	// take the same, or a transaction the pool accepted could wait forever.
	ethConf.Miner.GasPrice = big.NewInt(1)
	// Keep the block gas limit where genesis put it, as anvil does, rather
	// than drifting towards geth's default ceiling block by block.
	ethConf.Miner.GasCeil = ethConf.Genesis.GasLimit
	ethConf.TxPool.NoLocals = true
	// No background log indexer: a dev chain is short, and unindexed search
	// sees a block's logs the moment the block is in.
	ethConf.LogNoHistory = true
	if d.backend, err = eth.New(d.stack, &ethConf); err != nil {
		return nil, fmt.Errorf("start dev chain: eth: %w", err)
	}
	// eth_getLogs and the filter calls live outside eth.New.
	filterSystem := filters.NewFilterSystem(d.backend.APIBackend, filters.Config{
		LogCacheSize:  ethConf.FilterLogCacheSize,
		LogQueryLimit: ethConf.LogQueryLimit,
		RangeLimit:    ethConf.RangeLimit,
	})
	d.stack.RegisterAPIs([]rpc.API{
		{Namespace: "eth", Service: filters.NewFilterAPI(filterSystem)},
		// evm_mine, as on anvil, for tests that need blocks without
		// transactions (confirmations).
		{Namespace: "evm", Service: &evmAPI{d}},
	})

	// The beacon simulator plays the consensus client, as in geth --dev;
	// period 0 because our own loop (see Chain) decides when to seal.
	if d.beacon, err = catalyst.NewSimulatedBeacon(0, common.Address{}, d.backend); err != nil {
		return nil, fmt.Errorf("start dev chain: beacon: %w", err)
	}
	if err := d.stack.Start(); err != nil {
		return nil, fmt.Errorf("start dev chain: %w", err)
	}
	d.rpcURL = d.stack.HTTPEndpoint()
	if err := settleTxIndex(ctx, d.backend, d.beacon); err != nil {
		return nil, fmt.Errorf("start dev chain: %w", err)
	}
	d.startSealing(cfg.BlockPeriod)
	// The server is listening once Start returns; one call proves the
	// endpoint and the chain id end to end.
	err = checkChainID(ctx, d.rpcURL, d.chainID)
	if err != nil {
		d.stopSealing()
		return nil, fmt.Errorf("start dev chain: %w", err)
	}
	ok = true
	return d, nil
}

// checkChainID asks rpcURL for eth_chainId and compares it with want.
func checkChainID(ctx context.Context, rpcURL string, want uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := rpc.DialContext(ctx, rpcURL)
	if err != nil {
		return err
	}
	defer c.Close()
	var got hexutil.Uint64
	if err := c.CallContext(ctx, &got, "eth_chainId"); err != nil {
		return err
	}
	if uint64(got) != want {
		return fmt.Errorf("eth_chainId says %d, want %d", uint64(got), want)
	}
	return nil
}

// ForLocalnet starts the chain for testnet.StartLocalnet: it is what
// testnet.LocalnetConfig.Embedded takes.
func ForLocalnet(ctx context.Context, chainID uint64, blockTime time.Duration) (testnet.Chain, error) {
	d, err := Start(ctx, Config{ChainID: chainID, BlockPeriod: blockTime})
	if err != nil {
		return nil, err // not a nil *Chain in a non-nil interface
	}
	return d, nil
}

var (
	_ testnet.Chain         = (*Chain)(nil)
	_ testnet.EmbeddedChain = ForLocalnet
)

// settleTxIndex gets the chain past a go-ethereum quirk: the transaction
// indexer only records its progress after indexing a block above genesis, and
// until then eth_getTransactionReceipt answers an error ("transaction
// indexing is in progress") instead of null for any transaction not mined
// yet, which breaks the usual poll-until-non-null receipt wait. So the chain
// seals an empty block 1 at start, and start-up waits until the indexer is
// done with it; from then on it reports done at every new head.
func settleTxIndex(ctx context.Context, backend *eth.Ethereum, beacon *catalyst.SimulatedBeacon) error {
	// No sealing loop runs yet and nobody knows the RPC URL, so this is the
	// only sealer.
	beacon.Commit()
	chain := backend.BlockChain()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for chain.CurrentBlock().Number.Sign() == 0 || !chain.TxIndexDone() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for block 1 and the transaction index: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// startSealing runs the loop that seals blocks: every period, or (period 0)
// whenever transactions reach the pool, plus on Mine requests. It is the only
// caller of beacon.Commit from here on.
func (d *Chain) startSealing(period time.Duration) {
	var tick <-chan time.Time
	wake := make(chan struct{}, 1)
	if period > 0 {
		// Timed chains seal on the tick only, like anvil --block-time.
		ticker := time.NewTicker(period)
		tick = ticker.C
		d.loopDone.Go(func() {
			<-d.quit
			ticker.Stop()
		})
	} else {
		// The pool's event feed blocks until every subscriber takes the
		// event, and sealing waits on the pool (Sync), so a separate
		// goroutine turns events into a non-blocking wake-up.
		newTxs := make(chan core.NewTxsEvent, 16)
		sub := d.backend.TxPool().SubscribeTransactions(newTxs, true)
		d.loopDone.Go(func() {
			defer sub.Unsubscribe()
			for {
				select {
				case <-d.quit:
					return
				case <-sub.Err():
					return
				case <-newTxs:
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	d.loopDone.Go(func() {
		for {
			select {
			case <-d.quit:
				return
			case <-tick:
				d.beacon.Commit()
			case <-wake:
				d.sealPending()
			case reply := <-d.mineReq:
				chain := d.backend.BlockChain()
				before := chain.CurrentBlock().Number.Uint64()
				d.beacon.Commit()
				if after := chain.CurrentBlock().Number.Uint64(); after <= before {
					reply <- fmt.Errorf("sealing a block failed: head still at %d", after)
				} else {
					reply <- nil
				}
			}
		}
	})
}

// sealPending seals blocks until the pool has nothing executable left.
func (d *Chain) sealPending() {
	pool := d.backend.TxPool()
	for range maxSealsPerWake {
		// Sync lets the pool finish its reset after the last block, so
		// Stats no longer counts transactions that block included.
		if err := pool.Sync(); err != nil {
			return
		}
		if executable, _ := pool.Stats(); executable == 0 {
			return
		}
		select {
		case <-d.quit:
			return
		default:
		}
		d.beacon.Commit()
	}
}

func (d *Chain) stopSealing() {
	close(d.quit)
	d.loopDone.Wait()
}

// Mine seals one block now, with whatever transactions are pending. Blocks
// otherwise come only with transactions (or every BlockPeriod), so tests that
// wait for confirmations call it, or evm_mine over RPC.
func (d *Chain) Mine(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case d.mineReq <- reply:
	case <-d.quit:
		return errors.New("dev chain is closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// evmAPI serves evm_mine.
type evmAPI struct{ d *Chain }

// Mine is evm_mine; it answers "0x0" like anvil.
func (api *evmAPI) Mine(ctx context.Context) (string, error) {
	if err := api.d.Mine(ctx); err != nil {
		return "", err
	}
	return "0x0", nil
}

// devGenesis is geth's dev-mode genesis with our chain id, the system
// contracts the active forks call into, the dev key and cfg.Alloc funded.
func devGenesis(chainID uint64, cfg Config, dev common.Address) *core.Genesis {
	chainConfig := *params.AllDevChainProtocolChanges
	chainConfig.ChainID = new(big.Int).SetUint64(chainID)
	// Stop at Osaka, the fork Ethereum runs: geth's dev mode also enables
	// the next, unscheduled fork, whose gas repricing would make contract
	// deployments cost several times what they cost on Ethereum or Base
	// (and break fixed gas limits sized for those chains).
	chainConfig.BogotaTime = nil

	alloc := core.SystemContractAllocs()
	for addr, bal := range cfg.Alloc {
		alloc[addr] = types.Account{Balance: new(big.Int).Set(bal)}
	}
	devBalance := DefaultDevBalance
	if cfg.DevBalance != nil {
		devBalance = cfg.DevBalance
	}
	alloc[dev] = types.Account{Balance: new(big.Int).Set(devBalance)}

	return &core.Genesis{
		Config:     &chainConfig,
		Timestamp:  uint64(time.Now().Unix()),
		GasLimit:   cmp.Or(cfg.GasLimit, 30_000_000),
		BaseFee:    big.NewInt(params.InitialBaseFee),
		Difficulty: big.NewInt(0),
		Alloc:      alloc,
	}
}

// RPCURL is the chain's HTTP JSON-RPC endpoint, http://127.0.0.1:PORT.
func (d *Chain) RPCURL() string { return d.rpcURL }

// ChainID is the chain id.
func (d *Chain) ChainID() uint64 { return d.chainID }

// DevKey is the funded dev key generated at start. It exists only in memory
// and is never printed or logged.
func (d *Chain) DevKey() *ecdsa.PrivateKey { return d.devKey }

// Accounts returns the dev account, in the same shape as Anvil.Accounts.
func (d *Chain) Accounts() []testnet.DevAccount {
	return []testnet.DevAccount{{Address: d.devAddr, PrivateKey: d.devKey}}
}

// Close stops the chain and its HTTP server. It is safe to call more than
// once.
func (d *Chain) Close() error {
	d.closeOnce.Do(func() {
		// Stop sealing first: a block sealed while the node shuts down
		// would write to a closed database.
		d.stopSealing()
		d.closeErr = d.stack.Close()
	})
	return d.closeErr
}

// NewTest starts the embedded chain for a test and closes it in
// t.Cleanup.
func NewTest(t testnet.TB, cfg Config) *Chain {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start dev chain: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close dev chain: %v", err)
		}
	})
	return d
}

package commands

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{
			Name:  "testnet",
			Usage: "local chain with a DstackKms and a local Phala Cloud, to rehearse deployments",
			Subcommands: []*cli.Command{{
				Name:  "up",
				Usage: "start anvil (or an embedded chain, or a fork), deploy the KMS and serve the local cloud until interrupted",
				Description: "Starts anvil (installed from npm on first use), or with --embedded an in-process go-ethereum dev chain\n" +
					"that needs nothing but Go (in the devchain build only: go build -tags devchain); deploys DstackKms with\n" +
					"the local KMS root key and OS image; serves the Phala Cloud API on 127.0.0.1 under /api/v1. With\n" +
					"--fork-url it forks a live chain and takes over the KMS named by --kms-contract there (impersonating\n" +
					"its owner on the fork). Prints rpc_url, chain_id, kms_contract, kms_id, api_prefix, api_key,\n" +
					"dev_account and the nodes (id, name, device_id: replicas on another node need that node's device\n" +
					"allowed on-chain), then the export lines (on stderr with --json), and\n" +
					"runs until interrupted. The cloud's event log (on-chain checks, env keys; never values) goes to stderr.\n\n" +
					"On anvil it also deploys the Safe v1.4.1 contracts at their canonical addresses (from the pinned npm\n" +
					"package) and serves a local Safe Transaction Service (safe_service_url, the base @safe-global/api-kit\n" +
					"takes as txServiceUrl); --safe 2-of-3 creates a Safe owned by dev accounts 1-3 (safe_address,\n" +
					"safe_owners, safe_threshold).\n\n" +
					"--adversary MODE makes the local cloud lie about exactly one thing, to see cvmdeploy's checks catch it:\n" +
					"  compose           the stored app-compose gets a service mounting the dstack socket\n" +
					"  prelaunch         the app-compose gets a pre_launch_script the user never sent (or replaces theirs)\n" +
					"  flip-public-logs  public_logs is the opposite of what was requested\n" +
					"  forged-key        app env keys are signed by a key that is not the KMS root\n" +
					"  rogue-kms         a second DstackKms with its own root is deployed and named in every kms_info;\n" +
					"                    kms_contract still prints the honest one, rogue_kms_contract the rogue one\n" +
					"Each lie is logged as msg=adversary on stderr. Never point real deployments at an adversary.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "embedded", Usage: "run the in-process go-ethereum dev chain instead of anvil (the devchain build only: go build -tags devchain)"},
					&cli.StringFlag{Name: "fork-url", Usage: "fork this chain with anvil (e.g. a Base or Sepolia RPC) and use its KMS"},
					&cli.StringFlag{Name: "kms-contract", Usage: "the DstackKms on the forked chain (with --fork-url)"},
					&cli.StringFlag{Name: "block-time", Usage: "seconds between blocks (e.g. 1 or 0.5); default: a block per transaction"},
					&cli.Uint64Flag{Name: "chain-id", Usage: "chain id of a fresh chain (default 31337)"},
					&cli.StringFlag{Name: "api-key", Usage: "API key the local cloud accepts (default: a random phak_local_… key)"},
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "address of the local cloud (default: a free port on 127.0.0.1)"},
					&cli.StringFlag{Name: "adversary", Usage: "make the local cloud lie about one thing, to see cvmdeploy's checks work: one of " +
						strings.Join(cloud.AdversaryModes, ", ") + " (see the description)"},
					&cli.StringFlag{Name: "safe", Usage: "also create an M-of-N Safe owned by anvil's dev accounts 1..N, e.g. 2-of-3 (the Safe contracts and the local Safe Transaction Service run on every anvil testnet)"},
					&cli.StringFlag{Name: "safe-service-listen", Value: "127.0.0.1:0", Usage: "address of the local Safe Transaction Service"},
					&cli.StringFlag{Name: "inject-pre-launch", Usage: "a file with the pre-launch script the local cloud injects into an app-compose whose request has none, " +
						"as the real service injects its default (default: inject nothing)", TakesFile: true},
					jsonFlag(),
					quietFlag(),
				},
				Action: testnetUp,
			}},
		}}
	})
}

// testnetConfig reads the flags into a LocalnetConfig.
func testnetConfig(c *cli.Context) (testnet.LocalnetConfig, error) {
	cfg := testnet.LocalnetConfig{
		ForkURL:   strings.TrimSpace(c.String("fork-url")),
		ChainID:   c.Uint64("chain-id"),
		APIKey:    c.String("api-key"),
		Addr:      c.String("listen"),
		Adversary: strings.TrimSpace(c.String("adversary")),
	}
	if c.Bool("embedded") {
		if embeddedChain == nil {
			return cfg, &UsageError{Err: errors.New("--embedded: this cvmdeploy was built without the embedded go-ethereum chain, " +
				"which would make it three times larger; build it in with -tags devchain (go run -tags devchain . testnet up --embedded), " +
				"or leave out --embedded to run anvil")}
		}
		cfg.Embedded = embeddedChain
	}
	if path := c.String("inject-pre-launch"); c.IsSet("inject-pre-launch") {
		script, err := os.ReadFile(path)
		if err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--inject-pre-launch: %w", err)}
		}
		if len(script) > cloud.MaxComposeBytes {
			return cfg, &UsageError{Err: fmt.Errorf("--inject-pre-launch %s: %d bytes, over the %d-byte limit", path, len(script), cloud.MaxComposeBytes)}
		}
		s := string(script)
		cfg.InjectPreLaunchScript = &s
	}
	// The Safe contracts and the local Safe Transaction Service come with
	// every anvil testnet; the embedded chain cannot install the factory.
	cfg.Safe = cfg.Embedded == nil
	cfg.SafeServiceAddr = c.String("safe-service-listen")
	if s := c.String("safe"); s != "" {
		m, n, err := parseMofN(s)
		if err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--safe: %w", err)}
		}
		cfg.SafeThreshold, cfg.SafeOwners = m, n
	}
	if !isLoopback(cfg.SafeServiceAddr) {
		return cfg, &UsageError{Err: fmt.Errorf("--safe-service-listen %q: the local Safe Transaction Service serves loopback addresses only", cfg.SafeServiceAddr)}
	}
	if c.IsSet("kms-contract") {
		addr, err := parseAddress("kms-contract", c.String("kms-contract"))
		if err != nil {
			return cfg, err
		}
		cfg.KMSContract = addr
	}
	if s := c.String("block-time"); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs < 0 || secs > 3600 {
			return cfg, &UsageError{Err: fmt.Errorf("--block-time %q: want seconds between 0 and 3600", s)}
		}
		cfg.BlockTime = time.Duration(secs * float64(time.Second))
	}
	if !isLoopback(cfg.Addr) {
		return cfg, &UsageError{Err: fmt.Errorf("--listen %q: the local cloud serves loopback addresses only", cfg.Addr)}
	}
	if err := cfg.Check(); err != nil {
		return cfg, &UsageError{Err: err}
	}
	return cfg, nil
}

func isLoopback(addr string) bool {
	return strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost:") || strings.HasPrefix(addr, "[::1]:")
}

// parseMofN reads "2-of-3".
func parseMofN(s string) (m, n int, err error) {
	a, b, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "-of-")
	if ok {
		m, err1 := strconv.Atoi(a)
		n, err2 := strconv.Atoi(b)
		if err1 == nil && err2 == nil && m >= 1 && m <= n {
			return m, n, nil
		}
	}
	return 0, 0, fmt.Errorf("%q: want M-of-N with 1 <= M <= N, e.g. 2-of-3", s)
}

func testnetUp(c *cli.Context) error {
	cfg, err := testnetConfig(c)
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter
	var eventLog io.Writer = stderr
	if c.Bool("quiet") {
		eventLog = io.Discard
	}
	cfg.Cloud = cloud.Config{Log: eventLog}
	progress := newProgress(c)
	what := "anvil"
	switch {
	case cfg.Embedded != nil:
		what = "the embedded chain"
	case cfg.ForkURL != "":
		what = "anvil (fork)"
	}
	progress.Printf("starting %s, the KMS and the local cloud...", what)
	start := time.Now()
	if cfg.Embedded == nil {
		if cfg.AnvilBinary, err = findAnvil(c, progress); err != nil {
			return err
		}
	}
	ln, err := testnet.StartLocalnet(c.Context, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }()
	elapsed := time.Since(start)
	if err := printResult(c, testnetDoc(ln, elapsed)); err != nil {
		return err
	}
	// The export lines go with the human output on stdout; with --json,
	// stdout stays one document.
	exportTo := c.App.Writer
	if c.Bool("json") {
		exportTo = stderr
	}
	if !c.Bool("json") {
		fmt.Fprintln(exportTo)
	}
	for _, line := range ln.ExportLines() {
		fmt.Fprintln(exportTo, line)
	}
	if ln.SafeServiceURL != "" {
		fmt.Fprintln(exportTo, "export SAFE_SERVICE_URL="+ln.SafeServiceURL)
	}
	if !c.Bool("json") {
		fmt.Fprintln(exportTo, "# funded dev account "+ln.DevAccount.Address.Hex()+" is account 0 of anvil's public test mnemonic")
	}
	if ln.Adversary != "" {
		progress.Printf("WARNING: the local cloud is an adversary (%s): it lies, to show that cvmdeploy's checks catch it", ln.Adversary)
	}
	progress.Printf("testnet up in %s; press Ctrl-C to stop", elapsed.Round(time.Millisecond))

	var chainDone <-chan struct{}
	if a, ok := ln.Chain.(*testnet.Anvil); ok {
		chainDone = a.Done()
	}
	select {
	case <-c.Context.Done():
		progress.Printf("stopping the testnet")
		if err := ln.Close(); err != nil {
			return fmt.Errorf("testnet: shutting down: %w", err)
		}
		return nil
	case <-chainDone:
		return errors.New("testnet: the chain (anvil) exited unexpectedly")
	}
}

// testnetNode is one node of the local cloud as testnet up prints it.
type testnetNode struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	DeviceID string `json:"device_id"`
}

// nodeList prints one node per line in the human form; --json gets the
// array.
type nodeList []testnetNode

func (l nodeList) String() string {
	lines := make([]string, len(l))
	for i, n := range l {
		lines[i] = fmt.Sprintf("%d %s, device %s", n.ID, n.Name, n.DeviceID)
	}
	return strings.Join(lines, "\n    ")
}

func nodesOf(nodes []cloud.Node) nodeList {
	out := make(nodeList, len(nodes))
	for i, n := range nodes {
		out[i] = testnetNode{ID: n.ID, Name: n.Name, DeviceID: fmt.Sprintf("%x", n.DeviceID[:])}
	}
	return out
}

// testnetDoc is `testnet up`'s result as printed.
func testnetDoc(ln *testnet.Localnet, elapsed time.Duration) *result {
	r := newResult().
		set("rpc_url", ln.RPCURL).
		set("chain_id", ln.ChainID).
		set("kms_contract", ln.KMSContract.Hex()).
		set("kms_id", ln.KMSID).
		set("api_prefix", ln.APIPrefix).
		set("api_key", ln.APIKey).
		set("dev_account", ln.DevAccount.Address.Hex()).
		set("kms_owner", ln.KMSOwner.Hex()).
		set("device_id", fmt.Sprintf("%x", ln.DeviceID[:])).
		set("nodes", nodesOf(ln.Nodes)).
		set("os_image_hash", fmt.Sprintf("%x", ln.OSImageHash[:])).
		set("forked", ln.Forked)
	if ln.Adversary != "" {
		r.set("adversary", ln.Adversary)
	}
	if ln.RogueKMSContract != (common.Address{}) {
		r.set("rogue_kms_contract", ln.RogueKMSContract.Hex())
	}
	if ln.SafeServiceURL != "" {
		r.set("safe_service_url", ln.SafeServiceURL)
	}
	if ln.Safe != (common.Address{}) {
		owners := make(addressList, len(ln.SafeOwners))
		for i, o := range ln.SafeOwners {
			owners[i] = o.Address
		}
		r.set("safe_address", ln.Safe.Hex()).set("safe_owners", owners).set("safe_threshold", ln.SafeThreshold)
	}
	r.set("started_in_ms", elapsed.Milliseconds())
	return r
}

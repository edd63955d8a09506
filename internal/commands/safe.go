package commands

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safetx"
)

// safeAPIKeyEnv holds the Safe Transaction Service's API key; it is read
// from the environment only, never from a flag.
const safeAPIKeyEnv = "SAFE_API_KEY"

// safeRoutingFlags are the flags of commands whose owner calls may go to
// a Safe's queue.
func safeRoutingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "safe-propose", Usage: "when the AppAuth's owner is a Safe, propose the owner calls to its Safe Transaction Service, signed by the signer (an owner or a delegate), instead of only writing a Transaction Builder file; re-run the same command once the Safe executed them"},
		safeServiceFlag(),
	}
}

// safeServiceFlag overrides the chain's Safe Transaction Service.
func safeServiceFlag() cli.Flag {
	return &cli.StringFlag{Name: "safe-service", EnvVars: []string{"SAFE_SERVICE_URL"}, Usage: "Safe Transaction Service base URL (default: Safe's hosted service for the chain; testnet up prints safe_service_url); SAFE_API_KEY is sent as a bearer token"}
}

// safeRoutingFromFlags reads the Safe flags and SAFE_API_KEY.
func safeRoutingFromFlags(c *cli.Context) (cvm.SafeRouting, error) {
	r := cvm.SafeRouting{ServiceURL: strings.TrimSpace(c.String("safe-service")), APIKey: strings.TrimSpace(os.Getenv(safeAPIKeyEnv))}
	if c.IsSet("safe-propose") {
		r.Propose = c.Bool("safe-propose")
	}
	if r.ServiceURL != "" {
		u, err := url.Parse(r.ServiceURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return r, &UsageError{Err: fmt.Errorf("--safe-service %q is not an http(s) URL", r.ServiceURL)}
		}
		if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
			return r, &UsageError{Err: fmt.Errorf("--safe-service %q: plain http only to loopback (the API key and proposals would travel in clear)", r.ServiceURL)}
		}
	}
	return r, nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
}

// calldataFlags let owner-only commands print their transaction for a
// multisig instead of sending it.
func calldataFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "calldata-only", Usage: "print the transaction as a Safe Transaction Builder batch (JSON on stdout) instead of sending it; needs no key"},
		&cli.StringFlag{Name: "safe", Usage: "with --calldata-only: the Safe that will execute the batch (recorded in the file)"},
	}
}

// calldataChainID is --chain's id, or the node's when only --rpc-url is given.
func calldataChainID(c *cli.Context) (uint64, error) {
	if name := c.String("chain"); name != "" {
		ch, err := deployer.LookupChain(name)
		if err != nil {
			return 0, &UsageError{Err: fmt.Errorf("--chain: %w", err)}
		}
		return ch.ID, nil
	}
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return 0, &UsageError{Err: errors.New("--calldata-only needs the chain: pass --chain (or --rpc-url to ask the node)")}
	}
	cl, err := setup.dial(c.Context)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	id, err := cl.Eth().ChainID(c.Context)
	if err != nil {
		return 0, &deployer.RPCError{URL: cl.URL(), Method: "eth_chainId", Err: err}
	}
	return id.Uint64(), nil
}

// emitSafeBatch prints calls as a Transaction Builder batch on stdout.
func emitSafeBatch(c *cli.Context, name, description string, calls ...safetx.Call) error {
	chainID, err := calldataChainID(c)
	if err != nil {
		return err
	}
	var safe common.Address
	if s := c.String("safe"); s != "" {
		if safe, err = parseAddress("safe", s); err != nil {
			return err
		}
	}
	b, err := safetx.New(chainID, safe, name, description, time.Now(), calls...)
	if err != nil {
		return err
	}
	data, err := b.JSON()
	if err != nil {
		return err
	}
	newProgress(c).Printf("import this batch in Safe{Wallet} → Transaction Builder; nothing was sent")
	_, err = fmt.Fprintf(c.App.Writer, "%s\n", data)
	return err
}

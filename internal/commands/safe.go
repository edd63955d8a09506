package commands

import (
	"errors"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safetx"
)

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

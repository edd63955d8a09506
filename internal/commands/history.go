package commands

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{Name: "app", Subcommands: []*cli.Command{appHistoryCommand()}}}
	})
}

func appHistoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "show an app's on-chain history: compose hashes, devices, flags, owners, upgrades, KMS registration, timelock operations",
		ArgsUsage: "[APP_ID]",
		Description: `Reads the logs of the AppAuth (from its creation block, or --since), of the
KMS it is registered on (--kms-contract, else the pinned KMS of the chain), and
of any timelock that owns or owned it, and prints them in chain order with the
block, its time, the transaction and the account that sent it. Logs are read
in bounded eth_getLogs ranges (--log-range, halved when the node refuses a
range), block times and senders in batches.`,
		Flags: withCommon([]cli.Flag{
			appIDFlag(),
			&cli.StringFlag{Name: "since", Usage: "first block to read (default: the block that created the app)"},
			&cli.StringFlag{Name: "to", Usage: "last block to read (default: the latest)"},
			&cli.StringFlag{Name: "kms-contract", EnvVars: []string{"CVMDEPLOY_KMS_CONTRACT"}, Usage: "the KMS whose registration events to include (default: the pinned KMS of the chain)"},
			&cli.Uint64Flag{Name: "log-range", Value: deployer.DefaultLogRange, Usage: "most blocks one eth_getLogs request spans"},
		}, rpcFlags()),
		Action: appHistory,
	}
}

func appHistory(c *cli.Context) error {
	q := deployer.HistoryQuery{Range: c.Uint64("log-range")}
	var err error
	switch {
	case c.IsSet("app-id"):
		q.App, err = parseAppID("app-id", c.String("app-id"))
	case c.Args().Len() == 1:
		q.App, err = parseAppID("app id", c.Args().First())
	default:
		return &UsageError{Err: errors.New("give the app: --app-id 0xAPP, or `app history 0xAPP`")}
	}
	if err != nil {
		return err
	}
	if c.Args().Len() > 1 || (c.IsSet("app-id") && c.Args().Len() > 0) {
		return &UsageError{Err: fmt.Errorf("unexpected arguments %v (flags go before the app id)", c.Args().Slice())}
	}
	for flag, dst := range map[string]*uint64{"since": &q.Since, "to": &q.To} {
		if s := c.String(flag); s != "" {
			if *dst, err = strconv.ParseUint(s, 0, 64); err != nil {
				return &UsageError{Err: fmt.Errorf("--%s %q is not a block number", flag, s)}
			}
		}
	}
	if q.Range == 0 {
		return &UsageError{Err: errors.New("--log-range must be at least 1")}
	}
	if s := c.String("kms-contract"); s != "" {
		if q.KMS, err = parseAddress("kms-contract", s); err != nil {
			return err
		}
	}
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return err
	}
	cl, err := setup.dial(c.Context)
	if err != nil {
		return err
	}
	defer cl.Close()
	id, err := cl.Eth().ChainID(c.Context)
	if err != nil {
		return &deployer.RPCError{URL: cl.URL(), Method: "eth_chainId", Err: err}
	}
	if q.KMS == (common.Address{}) {
		if a, _, ok := kms.DefaultPins().KMSContract(id.Uint64()); ok {
			q.KMS = common.HexToAddress(a)
		} else if a, ok := setup.defaultKMS(); ok {
			q.KMS = a
		} else {
			newProgress(c).Printf("note: no KMS pinned for chain %d and no --kms-contract: the registration on the KMS is not shown", id.Uint64())
		}
	}
	if q.Since == 0 {
		newProgress(c).Printf("… finding the block that created app %s", q.App.Hex())
	}
	h, err := cl.AppHistory(c.Context, q)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		doc := map[string]any{
			"app_id": h.App.Hex(), "chain_id": id.Uint64(), "owner": h.Owner.Hex(),
			"from_block": h.FromBlock, "to_block": h.ToBlock, "events": h.Events,
		}
		if h.KMS != (common.Address{}) {
			doc["kms_contract"] = h.KMS.Hex()
		}
		tls := make([]string, len(h.Timelocks))
		for i, a := range h.Timelocks {
			tls[i] = a.Hex()
		}
		doc["timelocks"] = tls
		return writeJSON(c.App.Writer, doc)
	}
	return printHistory(c, h, id.Uint64())
}

// printHistory writes the events as a table, one line each, oldest first.
func printHistory(c *cli.Context, h *deployer.History, chainID uint64) error {
	w := c.App.Writer
	owner := h.Owner.Hex()
	for _, t := range h.Timelocks {
		if t == h.Owner {
			owner += " (a timelock)"
		}
	}
	fmt.Fprintf(w, "app %s on chain %d, owned by %s; blocks %d to %d: %d events\n", h.App.Hex(), chainID, owner, h.FromBlock, h.ToBlock, len(h.Events))
	if len(h.Events) == 0 {
		return nil
	}
	rows := [][]string{{"BLOCK", "TIME", "EVENT", "DETAILS", "ACTOR", "TX"}}
	for _, e := range h.Events {
		rows = append(rows, []string{strconv.FormatUint(e.Block, 10), e.Time, e.Kind, historyDetails(e), e.Actor, e.TxHash})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			width[i] = max(width[i], len(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			if i == len(r)-1 {
				b.WriteString(cell)
				break
			}
			fmt.Fprintf(&b, "%-*s  ", width[i], cell)
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(b.String(), " ")); err != nil {
			return err
		}
	}
	return nil
}

// historyDetails says what an event changed, in a few words.
func historyDetails(e deployer.HistoryEvent) string {
	switch e.Kind {
	case deployer.KindComposeHashAdded, deployer.KindComposeHashRemoved:
		return e.ComposeHash
	case deployer.KindDeviceAdded, deployer.KindDeviceRemoved:
		return e.DeviceID
	case deployer.KindAllowAnyDeviceSet, deployer.KindRequireTcbUpToDateSet:
		if e.Enabled != nil {
			return strconv.FormatBool(*e.Enabled)
		}
	case deployer.KindOwnershipTransferStart, deployer.KindOwnershipTransferred:
		return e.PreviousOwner + " -> " + e.NewOwner
	case deployer.KindUpgraded:
		return "implementation " + e.Implementation
	case deployer.KindInitialized:
		return "version " + strconv.FormatUint(e.Version, 10)
	case deployer.KindAppDeployedViaFactory:
		return "by " + e.Deployer
	case deployer.KindAppRegistered:
		return "on KMS " + e.Contract
	case deployer.KindTimelockCallScheduled:
		return fmt.Sprintf("operation %s #%d: %s, executable from %s", e.OperationID, derefIndex(e.Index), e.Call, e.ETA)
	case deployer.KindTimelockCallExecuted:
		return fmt.Sprintf("operation %s #%d: %s", e.OperationID, derefIndex(e.Index), e.Call)
	case deployer.KindTimelockCancelled:
		return "operation " + e.OperationID
	}
	return ""
}

func derefIndex(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

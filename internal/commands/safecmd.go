package commands

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{
			Name:  "safe",
			Usage: "confirm and execute Safe transactions queued in a Safe Transaction Service, and register proposers",
			Subcommands: []*cli.Command{
				safeSignCommand(),
				safeExecCommand(),
				{
					Name:  "delegate",
					Usage: "let a key (a CI key) propose transactions to a Safe; owners still confirm them",
					Subcommands: []*cli.Command{
						safeDelegateCommand("add", "register --delegate as a proposer of --safe (signed by an owner's key)", false),
						safeDelegateCommand("remove", "remove the registration", true),
					},
				},
			},
		}}
	})
}

// safeTxFlags name one queued Safe transaction.
func safeTxFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "safe", Usage: "the Safe's address (required)"},
		&cli.StringFlag{Name: "safe-tx-hash", Usage: "the Safe transaction's hash, as proposed (required)"},
		safeServiceFlag(),
	}
}

func safeSignCommand() *cli.Command {
	return &cli.Command{
		Name:  "sign",
		Usage: "confirm a proposed Safe transaction as an owner: checked, shown, signed offline (EIP-712) and posted to the service",
		Description: `Reads the transaction from the Safe Transaction Service and checks it before
signing: its fields must hash to --safe-tx-hash (by cvmdeploy and by the Safe
contract), it pays no gas refund, and a DELEGATECALL goes only into the
canonical MultiSendCallOnly. The calls are printed (decoded for AppAuth
functions) on stderr. Signing sends no transaction and costs no gas.`,
		Flags:  withCommon(safeTxFlags(), rpcFlags(), signerFlags()),
		Action: runSafeSign,
	}
}

func safeExecCommand() *cli.Command {
	flags := append(safeTxFlags(),
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before spending gas on a mainnet (required off a terminal)"},
		&cli.StringFlag{Name: "journal-dir", EnvVars: []string{"CVMDEPLOY_STATE_DIR"}, Usage: "where journals live (default ~/.local/state/cvmdeploy)"})
	return &cli.Command{
		Name:  "exec",
		Usage: "execute a proposed Safe transaction whose confirmations meet the threshold (execTransaction, paid by the signer)",
		Description: `Fetches the transaction and its confirmations, checks the transaction like
'safe sign' does, keeps the confirmations that are signatures of the hash by
current owners (a signer that is an owner adds its own approval), and sends
execTransaction with the signatures sorted by owner. The transaction is
journaled before it is broadcast: a re-run waits for it instead of sending
another. Exit 10 when the confirmations do not reach the threshold yet.`,
		Flags:  withCommon(flags, rpcFlags(), signerFlags(), txFlags()),
		Action: runSafeExec,
	}
}

// safeTxConfig reads --safe and --safe-tx-hash.
func safeTxConfig(c *cli.Context) (cvm.SafeTxConfig, error) {
	var cfg cvm.SafeTxConfig
	var err error
	if cfg.Safe, err = requiredAddress(c, "safe"); err != nil {
		return cfg, err
	}
	if !c.IsSet("safe-tx-hash") {
		return cfg, &UsageError{Err: errors.New("--safe-tx-hash is required")}
	}
	h, err := parseHash32("safe-tx-hash", c.String("safe-tx-hash"))
	if err != nil {
		return cfg, err
	}
	cfg.SafeTxHash = common.Hash(h)
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return cfg, err
	}
	if setup.chain != nil {
		cfg.ChainID = setup.chain.ID
	}
	return cfg, nil
}

// safeRunner is a Runner for the safe commands: chain, signer, service.
func safeRunner(c *cli.Context) (*cvm.Runner, error) {
	routing, err := safeRoutingFromFlags(c)
	if err != nil {
		return nil, err
	}
	signer, err := loadSigner(c)
	if err != nil {
		return nil, err
	}
	return &cvm.Runner{RPCURL: strings.TrimSpace(c.String("rpc-url")), Signer: signer, Safe: routing, Progress: newProgress(c).Printf, Explorer: explorerLink}, nil
}

func runSafeSign(c *cli.Context) error {
	cfg, err := safeTxConfig(c)
	if err != nil {
		return err
	}
	r, err := safeRunner(c)
	if err != nil {
		return err
	}
	res, err := r.SafeSign(c.Context, cfg)
	if err != nil {
		return err
	}
	return printSafeTx(c, res)
}

func runSafeExec(c *cli.Context) error {
	cfg, err := safeTxConfig(c)
	if err != nil {
		return err
	}
	if cfg.Tx, err = txOptionsFromFlags(c, nil); err != nil {
		return err
	}
	cfg.Tx.OnSent = nil // the flow prints the hash itself
	r, err := safeRunner(c)
	if err != nil {
		return err
	}
	r.Confirm = confirmSpend(c)
	dir := c.String("journal-dir")
	if dir == "" {
		if dir, err = cvm.DefaultJournalDir(); err != nil {
			return err
		}
	} else {
		dir = filepath.Join(dir, "deployments")
	}
	r.Journals = cvm.JournalStore{Dir: dir}
	res, err := r.SafeExec(c.Context, cfg)
	if err != nil {
		if res != nil && errors.Is(err, cvm.ErrApprovalPending) {
			res.Status = "awaiting-confirmations"
			if perr := printSafeTx(c, res); perr != nil {
				return errors.Join(err, perr)
			}
		}
		return err
	}
	return printSafeTx(c, res)
}

// safeCalls prints decoded calls one per line for people.
type safeCalls []cvm.SafeCall

func (l safeCalls) String() string {
	lines := make([]string, len(l))
	for i, c := range l {
		lines[i] = fmt.Sprintf("%s on %s", c.Function, c.To)
		if c.Value != "0" {
			lines[i] += fmt.Sprintf(" with %s wei", c.Value)
		}
	}
	return strings.Join(lines, "\n    ")
}

func printSafeTx(c *cli.Context, res *cvm.SafeTxResult) error {
	r := newResult().set("safe_address", res.Safe).set("safe_tx_hash", res.SafeTxHash).set("safe_nonce", res.Nonce).
		set("chain_id", res.ChainID).set("operation", res.Operation).set("calls", safeCalls(res.Calls))
	if res.Signer != "" {
		r.set("signer", res.Signer)
	}
	r.set("confirmations", res.Confirmations).set("threshold", res.Threshold).set("status", res.Status)
	if res.TxHash != "" {
		r.set("tx_hash", res.TxHash).set("block_number", res.BlockNumber)
		if res.GasUsed != 0 {
			r.set("gas_used", res.GasUsed)
		}
	}
	if res.AppURL != "" {
		r.set("safe_url", res.AppURL)
	}
	if res.Journal != "" {
		r.set("journal", res.Journal)
	}
	return printResult(c, r)
}

func safeDelegateCommand(name, usage string, remove bool) *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "safe", Usage: "the Safe's address (required)"},
		&cli.StringFlag{Name: "delegate", Usage: "the key that may propose, e.g. the CI key's address (required)"},
		safeServiceFlag(),
	}
	if !remove {
		flags = append(flags, &cli.StringFlag{Name: "label", Value: "cvmdeploy", Usage: "a name for the delegate (at most 50 characters)"})
	}
	return &cli.Command{
		Name:  name,
		Usage: usage,
		Flags: withCommon(flags, rpcFlags(), signerFlags()),
		Action: func(c *cli.Context) error {
			var cfg cvm.SafeDelegateConfig
			var err error
			if cfg.Safe, err = requiredAddress(c, "safe"); err != nil {
				return err
			}
			if cfg.Delegate, err = requiredAddress(c, "delegate"); err != nil {
				return err
			}
			if !remove {
				cfg.Label = c.String("label")
				if len(cfg.Label) > 50 {
					return &UsageError{Err: fmt.Errorf("--label: %d characters, at most 50", len(cfg.Label))}
				}
			}
			setup, err := chainSetupFromFlags(c)
			if err != nil {
				return err
			}
			if setup.chain != nil {
				cfg.ChainID = setup.chain.ID
			}
			r, err := safeRunner(c)
			if err != nil {
				return err
			}
			res, err := r.SafeDelegate(c.Context, cfg, remove)
			if err != nil {
				return err
			}
			out := newResult().set("safe_address", res.Safe).set("delegate", res.Delegate).set("delegator", res.Delegator)
			if res.Label != "" {
				out.set("label", res.Label)
			}
			return printResult(c, out.set("chain_id", res.ChainID).set("status", res.Status).set("safe_service_url", res.Service))
		},
	}
}

package commands

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/safetx"
)

// trustFlags name what a command trusts beyond the chain: the KMS contract
// and extra pinned data.
func trustFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "kms-contract", EnvVars: []string{"CVMDEPLOY_KMS_CONTRACT"}, Usage: "the DstackKms contract you trust: the cloud's kms_info must name exactly it (default: the pinned KMS of the chain)"},
		&cli.StringFlag{Name: "compose-pins", EnvVars: []string{"CVMDEPLOY_COMPOSE_PINS"}, Usage: "a JSON file of extra pins (official pre-launch script hashes, server fields, KMS contracts) added to the built-in reviewed list"},
	}
}

// composeCheckFlag selects how a compose hash is established before it is
// allowed on-chain.
func composeCheckFlag() cli.Flag {
	return &cli.StringFlag{Name: "compose-check", Value: cvm.ComposeCheckAuto, Usage: "how the compose hash is proven before it is allowed on-chain: auto (predict it, else allow it only after reading the committed document), predict (refuse a hash that is not predicted), after-commit (allow, read, revoke on a violation), off (DANGEROUS: no check)"}
}

// trustFromFlags reads the trust flags; commands without them get the
// built-in pins.
func trustFromFlags(c *cli.Context) (cvm.Trust, error) {
	var t cvm.Trust
	if s := strings.TrimSpace(c.String("kms-contract")); s != "" {
		a, err := parseAddress("kms-contract", s)
		if err != nil {
			return t, err
		}
		t.KMSContract = a
	}
	if path := c.String("compose-pins"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return t, &UsageError{Err: fmt.Errorf("--compose-pins: %w", err)}
		}
		extra, err := kms.ParsePins(data)
		if err != nil {
			return t, &UsageError{Err: fmt.Errorf("--compose-pins %s: %w", path, err)}
		}
		t.Pins = kms.DefaultPins().Merge(extra)
	}
	return t, nil
}

// composeWords says in a sentence what a compose_verified value means.
func composeWords(v string) string { return cvm.ComposeVerifiedMeaning(v) }

// kmsTrustWords says how a KMS contract was trusted.
func kmsTrustWords(v string) string { return cvm.KMSTrustMeaning(v) }

// callList prints owner calls one per line in the human form; --json gets
// the array.
type callList []cvm.OnChainCall

func (l callList) String() string {
	if len(l) == 0 {
		return "none"
	}
	lines := make([]string, len(l))
	for i, c := range l {
		line := c.Function + " on " + checksummed(c.To)
		switch {
		case c.TxHash != "":
			line += ", sent in " + c.TxHash
		case c.Skipped != "":
			line += ", skipped: " + c.Skipped
		}
		if c.Data != "" {
			line += ", calldata " + c.Data
		}
		lines[i] = line
	}
	return strings.Join(lines, "\n")
}

// printPending prints a result whose owner must still act, and writes the
// calls as a Safe Transaction Builder file (the owner may be a Safe).
func printPending(c *cli.Context, res *cvm.Result) error {
	if res.SafeProposal != nil {
		return printDeployResult(c, res) // the calls wait in the Safe's queue
	}
	if len(res.PendingCalls) > 0 {
		safe := res.Owner
		if res.Approver != "" {
			safe = res.Approver // a timelock's proposer schedules
		}
		if err := writeSafeFile(c, res.ChainID, safe, "cvmdeploy: "+res.PendingCalls[0].Function+" for "+res.Name,
			"Owner-only call(s) for the AppAuth of "+res.Name+". After executing, re-run the same cvmdeploy command to finish.", res.PendingCalls); err != nil {
			return err
		}
	}
	return printDeployResult(c, res)
}

// safeFileFlag is where owner calls are written for a Safe.
func safeFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "safe-file", Value: "safe-transactions.json", Usage: "where owner-only calls the signer cannot make are written as a Safe Transaction Builder file"}
}

// writeSafeFile writes calls as a Safe Transaction Builder file for the
// owner (recorded as the Safe) at --safe-file.
func writeSafeFile(c *cli.Context, chainID uint64, owner, name, description string, calls []cvm.OnChainCall) error {
	sc := make([]safetx.Call, len(calls))
	for i, oc := range calls {
		sc[i] = safetx.Call{To: common.HexToAddress(oc.To), Data: common.FromHex(oc.Data)}
	}
	var safe common.Address
	if common.IsHexAddress(owner) {
		safe = common.HexToAddress(owner)
	}
	b, err := safetx.New(chainID, safe, name, description, time.Now(), sc...)
	if err != nil {
		return err
	}
	data, err := b.JSON()
	if err != nil {
		return err
	}
	path := c.String("safe-file")
	if path == "" {
		path = "safe-transactions.json"
	}
	if err := writePrivateFile(path, data); err != nil {
		return err
	}
	newProgress(c).Printf("✓ the owner's call(s) written as a Safe Transaction Builder file: %s", path)
	return nil
}

// setSafeProposal adds a pending Safe proposal's fields to a result.
func setSafeProposal(r *result, sp *cvm.SafeProposalResult) {
	if sp == nil {
		return
	}
	r.set("safe_address", sp.Safe).set("safe_tx_hash", sp.SafeTxHash).set("safe_nonce", sp.Nonce).
		set("safe_confirmations", sp.Confirmations).set("safe_threshold", sp.Threshold).set("safe_service_url", sp.ServiceURL)
	if sp.AppURL != "" {
		r.set("safe_url", sp.AppURL)
	}
}

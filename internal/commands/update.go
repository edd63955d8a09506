package commands

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/safetx"
)

func updateCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "cvm", Usage: "the CVM to update: id, UUID, name or app id (required)"},
		&cli.StringFlag{Name: "compose", Usage: "the new docker-compose file"},
		&cli.StringFlag{Name: "pre-launch-script", Usage: "the new pre-launch script"},
		&cli.BoolFlag{Name: "prepare-only", Usage: "stop at the commit token and print the on-chain calls for a multisig owner (nothing is sent)"},
		&cli.BoolFlag{Name: "calldata-only", Usage: "--prepare-only, and write the calls as a Safe Transaction Builder file (--safe-file)"},
		&cli.StringFlag{Name: "safe", Usage: "with --prepare-only: the Safe that owns the AppAuth; writes a Safe Transaction Builder file"},
		&cli.StringFlag{Name: "safe-file", Value: "safe-transactions.json", Usage: "where --safe writes the Transaction Builder file"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until the CVM runs again"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before spending gas on a mainnet (required off a terminal)"},
		&cli.StringFlag{Name: "compose-check", Value: cvm.ComposeCheckAuto, Usage: "off (DANGEROUS) approves the cloud's new compose hash unchecked; any other value checks it is your current document with your changes"},
		&cli.BoolFlag{Name: "fresh", Usage: "forget the journal of an earlier, unfinished run of this update and start over"},
		&cli.StringFlag{Name: "journal-dir", EnvVars: []string{"CVMDEPLOY_STATE_DIR"}, Usage: "where journals live (default ~/.local/state/cvmdeploy)"},
		reviewFlag("the update (written once it is prepared, also when it waits for the owner or is applied)"),
	}
	flags = append(flags, waitApprovalFlags(true)...)
	flags = withCommon(flags, envFlags(), trustFlags(), apiFlags(), rpcFlags(), signerFlags(), txFlags(), safeRoutingFlags())
	return &cli.Command{
		Name:  "update",
		Usage: "update a CVM's compose file and/or env; allows the new compose hash on-chain when needed",
		Description: `Journaled steps: reads the CVM's current app-compose and checks that the chain
allows it; prepares the update (PATCH /cvms/{id} with X-Prepare-Only: the
service answers the new compose hash and a commit token); checks that the new
hash is exactly the current document with your changes; allows the node's
device (if needed) and the hash on the AppAuth; commits with the token. What
is already allowed on-chain is not sent again, and a re-run resumes without
approving or committing twice. An env-only update that keeps the key set
needs no transaction. --prepare-only prints the commit token and the calls for
a multisig; finish with 'cvmdeploy commit-update' or by re-running the update.
When the AppAuth's owner is a TimelockController, the calls are scheduled as
one operation (by the signer when it is a proposer, else printed for the
proposer) and exit 10 says "still waiting" until its ETA; re-run after it (or
pass --wait-approval) to execute it and commit.
--review FILE writes a self-contained HTML page of the update for the people
who approve it (compose diff, env names, decoded calls, owner, on-chain status).

When the AppAuth's owner is a Safe, --safe-propose proposes the calls to its
Safe Transaction Service (exit 10 with safe_tx_hash); once owners confirmed and
the Safe executed it, the same command finishes the update.`,
		Flags:  flags,
		Action: runUpdate,
	}
}

func runUpdate(c *cli.Context) error {
	cfg := cvm.UpdateConfig{
		CVM:                         c.String("cvm"),
		ComposeFile:                 c.String("compose"),
		PreLaunchScriptFile:         c.String("pre-launch-script"),
		PrepareOnly:                 c.Bool("prepare-only") || c.Bool("calldata-only"),
		Wait:                        c.Bool("wait"),
		AllowMissingEnv:             c.Bool("allow-missing-env"),
		InsecureSkipKeyVerification: c.Bool("insecure-skip-kms-key-verification"),
		ComposeCheck:                c.String("compose-check"),
		Fresh:                       c.Bool("fresh"),
	}
	cfg.EnvFiles, cfg.EnvFlags = envInputs(c)
	var err error
	if cfg.WaitApproval, cfg.PollInterval, err = approvalFromFlags(c); err != nil {
		return err
	}
	if cfg.WaitTimeout, err = waitTimeout(c); err != nil {
		return err
	}
	var safe common.Address
	if s := c.String("safe"); s != "" {
		if !cfg.PrepareOnly {
			return &UsageError{Err: errors.New("--safe goes with --prepare-only: the Safe executes the calls, not this tool")}
		}
		a, err := parseAddress("safe", s)
		if err != nil {
			return err
		}
		safe = a
	}
	if err := checkReviewPath(c); err != nil {
		return err
	}
	if cfg.PrepareOnly && c.Bool("safe-propose") {
		return &UsageError{Err: errors.New("--safe-propose proposes the calls to the Safe, --prepare-only stops before them: use one of them")}
	}
	if cfg.Tx, err = txOptionsFromFlags(c, nil); err != nil {
		return err
	}
	cfg.Tx.OnSent = nil // the flow prints each sent hash itself
	s, err := newFlowSetup(c, !cfg.PrepareOnly)
	if err != nil {
		return err
	}
	defer s.close()
	s.runner.Confirm = confirmSpend(c)
	s.runner.AfterStep = testStopAfter()
	if s.chain != nil {
		cfg.ChainID = s.chain.ID
	}
	if s.dev == nil {
		if s.runner.Journals, err = journalStore(c); err != nil {
			return err
		}
	}
	res, err := s.runner.Update(c.Context, cfg)
	if err != nil {
		if res != nil && errors.Is(err, cvm.ErrApprovalPending) {
			if safe == (common.Address{}) {
				safe = approverOf(res)
			}
			if perr := printUpdate(c, res, safe); perr != nil {
				return errors.Join(err, perr)
			}
		} else if res != nil && res.Journal != "" && exitCode(c.Context, err) != ExitUsage {
			newProgress(c).Printf("hint: progress is saved in %s; re-run the same command to continue (--fresh starts over)", res.Journal)
		}
		return err
	}
	return printUpdate(c, res, safe)
}

// printUpdate writes the calls as a Safe file when the owner must make
// them, and the review page when asked, then the result. A review page that
// cannot be written fails the command after the result is printed.
func printUpdate(c *cli.Context, res *cvm.UpdateResult, safe common.Address) error {
	safeFile := ""
	if res.SafeProposal == nil && (safe != (common.Address{}) || c.Bool("calldata-only")) && len(res.OnChain) > 0 {
		safeFile = c.String("safe-file")
		calls := make([]safetx.Call, len(res.OnChain))
		for i, oc := range res.OnChain {
			calls[i] = safetx.Call{To: common.HexToAddress(oc.To), Data: common.FromHex(oc.Data)}
		}
		desc := "Allows the new compose hash of CVM " + res.CVMID + " on its AppAuth. Then run: cvmdeploy commit-update --cvm " + res.CVMID + " --wait-approval on the machine that prepared it, or with --token <token> --compose-hash " + res.ComposeHash + " --transaction-hash <tx hash>"
		if res.Timelock != nil {
			desc = "Schedules the allowing of the new compose hash of CVM " + res.CVMID + " on timelock " + res.Timelock.Address + " (operation " + res.Timelock.OperationID + "). After its delay, run: cvmdeploy commit-update --cvm " + res.CVMID + " --wait-approval"
		}
		b, err := safetx.New(res.ChainID, safe, "cvmdeploy: allow compose hash "+res.ComposeHash[:12], desc, time.Now(), calls...)
		if err != nil {
			return err
		}
		data, err := b.JSON()
		if err != nil {
			return err
		}
		if err := writePrivateFile(c.String("safe-file"), data); err != nil {
			return err
		}
		newProgress(c).Printf("✓ Safe Transaction Builder file written: %s", c.String("safe-file"))
	}
	page, reviewErr := writeUpdateReview(c, res, safeFile)
	r := updateDoc(res)
	if page != "" {
		r.set("review_page", page)
	}
	return errors.Join(printResult(c, r), reviewErr)
}

// updateDoc is update's result as printed.
func updateDoc(res *cvm.UpdateResult) *result {
	r := newResult()
	r.set("cvm_id", res.CVMID)
	r.set("app_id", checksummed(res.AppID))
	r.set("status", res.Status)
	if res.ComposeHash != "" {
		r.set("compose_hash", res.ComposeHash)
	}
	if res.ComposeVerified != "" {
		r.set("compose_verified", res.ComposeVerified).note("compose_verified", composeWords(res.ComposeVerified))
	}
	if res.KMSTrust != "" {
		r.set("kms_trust", res.KMSTrust).note("kms_trust", kmsTrustWords(res.KMSTrust))
	}
	if res.KeyVerified {
		r.set("kms_key_verified", true)
	}
	if res.Owner != "" {
		r.set("owner", res.Owner)
	}
	if res.Approver != "" {
		r.set("approver", res.Approver)
	}
	if res.ApprovalTxHash != "" {
		r.set("approval_tx_hash", res.ApprovalTxHash)
	}
	setTimelockFields(r, res.Timelock)
	if res.CorrelationID != "" {
		r.set("correlation_id", res.CorrelationID)
	}
	if res.CommitToken != "" {
		r.set("commit_token", res.CommitToken)
	}
	if res.ChainID != 0 {
		r.set("chain_id", res.ChainID)
	}
	if len(res.OnChain) > 0 {
		r.set("onchain_calls", callList(res.OnChain))
	}
	if res.SafeProposal != nil {
		setSafeProposal(r, res.SafeProposal)
		r.set("calls", callList(res.OnChain))
	}
	if len(res.Resumed) > 0 {
		r.set("resumed_steps", res.Resumed)
	}
	if res.Journal != "" {
		r.set("journal", res.Journal)
	}
	if len(res.Warnings) > 0 {
		r.set("warnings", res.Warnings)
	}
	return r
}

func provisionCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "save the provision result to this file for 'cvmdeploy commit'"},
	}
	deploy := deployCommand()
	for _, f := range deploy.Flags {
		switch f.Names()[0] {
		case "compose", "name", "kms", "pre-launch-script", "instance-type", "node-id", "image", "region", "disk-size",
			"public-logs", "public-sysinfo", "listed", "env-file", "env", "allow-missing-env", "api-prefix", "api-version", "json", "quiet",
			"kms-contract", "compose-pins", "compose-check":
			flags = append(flags, f)
		}
	}
	return &cli.Command{
		Name:  "provision",
		Usage: "phase one only: provision the CVM and print (and save) the compose hash, device and KMS",
		Description: `For workflows that split the deploy: provision here, deploy the AppAuth
(e.g. from a Safe with 'cvmdeploy app deploy --calldata-only'), then
'cvmdeploy commit --provision FILE --app-id ...'.`,
		Flags:  flags,
		Action: runProvision,
	}
}

func runProvision(c *cli.Context) error {
	cfg, err := deployConfigFromFlags(c, false)
	if err != nil {
		return err
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	trust, err := trustFromFlags(c)
	if err != nil {
		return err
	}
	r := &cvm.Runner{API: api, Progress: newProgress(c).Printf, Trust: trust}
	pf, err := r.Provision(c.Context, cfg)
	if err != nil {
		return err
	}
	if out := c.String("out"); out != "" {
		if err := cvm.SaveProvisionFile(out, pf); err != nil {
			return err
		}
		newProgress(c).Printf("✓ saved to %s", out)
	}
	return printResult(c, provisionDoc(pf))
}

// provisionDoc is provision's result as printed.
func provisionDoc(pf *cvm.ProvisionFile) *result {
	p := pf.Provision
	res := newResult().set("name", pf.Name).set("compose_hash", p.ComposeHash).set("device_id", p.DeviceID).
		set("kms_id", p.KMSID).set("on_chain", p.OnChain).set("env_keys", pf.EnvKeys)
	if p.OnChain {
		res.set("chain_id", p.ChainID).set("kms_contract", p.KMSContract)
		res.set("kms_trust", p.KMSTrust).note("kms_trust", kmsTrustWords(p.KMSTrust))
	}
	res.set("compose_plan", p.ComposePlan)
	if !p.OnChain {
		res.set("app_id", p.AppID)
	}
	return res
}

func commitCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "provision", Aliases: []string{"p"}, Usage: "the file 'cvmdeploy provision --out' wrote (required)"},
		&cli.StringFlag{Name: "app-id", Usage: "the deployed AppAuth's address (on-chain KMS)"},
		&cli.StringFlag{Name: "contract-address", Usage: "the AppAuth contract (default: the app id)"},
		&cli.StringFlag{Name: "deployer-address", Usage: "the account that deployed the AppAuth"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until the CVM runs"},
		safeFileFlag(),
	}
	flags = withCommon(flags, envFlags(), trustFlags(), apiFlags(), rpcFlags(), signerFlags(), txFlags(), safeRoutingFlags())
	return &cli.Command{
		Name:   "commit",
		Usage:  "phase two only: verify the app's env key on-chain, encrypt the env and commit a provisioned CVM",
		Flags:  flags,
		Action: runCommit,
	}
}

func runCommit(c *cli.Context) error {
	if c.String("provision") == "" {
		return &UsageError{Err: errors.New("--provision is required: the file written by 'cvmdeploy provision --out'")}
	}
	pf, err := cvm.LoadProvisionFile(c.String("provision"))
	if err != nil {
		return err
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	if api.BaseURL() != pf.APIPrefix {
		return &UsageError{Err: fmt.Errorf("the provision file was made on %s, but the API prefix is %s", pf.APIPrefix, api.BaseURL())}
	}
	trust, err := trustFromFlags(c)
	if err != nil {
		return err
	}
	r := &cvm.Runner{API: api, RPCURL: c.String("rpc-url"), Progress: newProgress(c).Printf, Trust: trust, Explorer: explorerLink}
	if r.Safe, err = safeRoutingFromFlags(c); err != nil {
		return err
	}
	if signerGiven(c) {
		if r.Signer, err = loadSigner(c); err != nil {
			return err
		}
	}
	tx, err := txOptionsFromFlags(c, nil)
	if err != nil {
		return err
	}
	files, kvs := envInputs(c)
	res, err := r.Commit(c.Context, cvm.CommitConfig{
		Provision:                   pf,
		AppID:                       c.String("app-id"),
		ContractAddress:             c.String("contract-address"),
		DeployerAddress:             c.String("deployer-address"),
		EnvFiles:                    files,
		EnvFlags:                    kvs,
		Wait:                        c.Bool("wait"),
		InsecureSkipKeyVerification: c.Bool("insecure-skip-kms-key-verification"),
		Tx:                          tx,
	})
	if err != nil && res != nil && len(res.PendingCalls) > 0 {
		if perr := printPending(c, res); perr != nil {
			return errors.Join(err, perr)
		}
	}
	if err != nil {
		return err
	}
	return printDeployResult(c, res)
}

// writePrivateFile writes data readable by the owner only.
func writePrivateFile(path string, data []byte) error {
	if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

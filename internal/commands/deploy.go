package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{deployCommand(), updateCommand(), commitUpdateCommand(), provisionCommand(), commitCommand()}
	})
}

// apiFlags select the Phala Cloud API. The key is only read from the
// environment: a flag would leak it to shell history and ps.
func apiFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "api-prefix", EnvVars: []string{phala.EnvAPIPrefix}, Value: phala.DefaultBaseURL, Usage: "Phala Cloud API base URL (the key comes from " + phala.EnvAPIKey + ")"},
		&cli.StringFlag{Name: "api-version", EnvVars: []string{phala.EnvAPIVersion}, Value: phala.DefaultVersion, Usage: "X-Phala-Version header (calls naming a KMS node are pinned to " + phala.NodeKeyedVersion + "); a server that refuses it is asked again with " + phala.FallbackVersion + ", said on stderr"},
	}
}

func apiClient(c *cli.Context) (*phala.Client, error) {
	cfg := phala.Config{
		BaseURL: strings.TrimSpace(c.String("api-prefix")),
		APIKey:  strings.TrimSpace(os.Getenv(phala.EnvAPIKey)),
		Version: strings.TrimSpace(c.String("api-version")),
		Warnf:   apiWarnf(c),
	}
	cl, err := phala.New(cfg)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return cl, nil
}

// apiWarnf prints the client's warnings (a refused API version) on stderr,
// even with --quiet: they change what the run does.
func apiWarnf(c *cli.Context) func(format string, args ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(c.App.ErrWriter, format+"\n", args...)
	}
}

// envFlags are shared by deploy, update and commit: env input and key checking.
func envFlags() []cli.Flag {
	// No -e alias: urfave copies an aliased flag's String() between its
	// names after parsing, which would append a bogus "" to the list.
	return append(envInputFlags(),
		&cli.BoolFlag{Name: "allow-missing-env", Usage: "let ${VAR} references in the compose file through without a value"},
		&cli.BoolFlag{Name: "insecure-skip-kms-key-verification", Usage: "DANGEROUS: trust the API's env-encryption key without checking its signature against the KMS root key on-chain"},
	)
}

func deployCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "compose", Usage: "docker-compose file of the app (required)"},
		&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "CVM name (5-63 characters; default: the compose file's folder name)"},
		&cli.StringFlag{Name: "kms", Value: "phala", Usage: "KMS: base, ethereum, phala (cloud KMS), a KMS contract's slug or kc_ id (see `cvmdeploy kms list`), or a KMS node's slug"},
		&cli.StringFlag{Name: "pre-launch-script", Usage: "script run before the containers start"},
		&cli.StringFlag{Name: "instance-type", Aliases: []string{"t"}, Usage: "instance type, e.g. tdx.small (the default), tdx.medium"},
		&cli.Int64Flag{Name: "node-id", Usage: "node to deploy on (default: chosen by the service)"},
		&cli.StringFlag{Name: "image", Usage: "OS image, e.g. dstack-0.5.5 (default: chosen by the service)"},
		&cli.StringFlag{Name: "region", Usage: "region for automatic node selection"},
		&cli.IntFlag{Name: "disk-size", Usage: "disk size in GB"},
		&cli.BoolFlag{Name: "public-logs", Value: true, Usage: "make the container logs public"},
		&cli.BoolFlag{Name: "public-sysinfo", Value: true, Usage: "make the system information public"},
		&cli.BoolFlag{Name: "listed", Usage: "list the app on the Trust Center"},
		&cli.StringFlag{Name: "owner", Usage: "owner of the AppAuth contract (default: the signer; a Safe address works)"},
		&cli.BoolFlag{Name: "allow-any-device", Usage: "let the app boot on any node (default: only the provisioned node's device)"},
		&cli.BoolFlag{Name: "disable-upgrades", Usage: "make the AppAuth contract non-upgradeable"},
		&cli.BoolFlag{Name: "require-tcb-up-to-date", Usage: "only boot on nodes whose TCB status is UpToDate (6-argument factory)"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until the CVM runs (or fails to boot)"},
		&cli.StringFlag{Name: "wait-timeout", Value: "10m", Usage: "how long --wait (and --wait-approval) waits"},
		&cli.BoolFlag{Name: "dry-run", Usage: "provision, simulate the AppAuth deployment and encrypt, but send no transaction and commit nothing (with --batch: every app, each app's id in batch order and the batch's total cost)"},
		&cli.BoolFlag{Name: "fresh", Usage: "forget the journal of an earlier run of this deployment and start over"},
		&cli.StringFlag{Name: "journal-dir", EnvVars: []string{"CVMDEPLOY_STATE_DIR"}, Usage: "where deployment journals live (default ~/.local/state/cvmdeploy)"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before spending gas on a mainnet (required off a terminal)"},
		&cli.StringFlag{Name: "batch", Usage: "deploy several apps from a JSON file {\"apps\": [{\"name\", \"compose\", \"env_files\", \"pre_launch_script\", \"instance_type\", \"kms\"}]}: all AppAuths go out with consecutive nonces, then each app commits; other flags apply to every app"},
		&cli.BoolFlag{Name: "dev", Usage: "deploy on a throwaway local testnet (anvil, installed from npm on first use, + a local cloud): no account, no key"},
	}
	flags = append(flags, composeCheckFlag(), safeFileFlag(), reviewFlag("the deployment, with --dry-run"))
	flags = append(flags, timelockFlags()...)
	flags = append(flags, waitApprovalFlags(false)...)
	flags = withCommon(flags, envFlags(), trustFlags(), apiFlags(), rpcFlags(), signerFlags(), txFlags(), safeRoutingFlags())
	return &cli.Command{
		Name:  "deploy",
		Usage: "deploy a docker-compose app to a CVM: provision, AppAuth on-chain, verified env key, local encryption, commit",
		Description: `Runs the whole two-phase flow. Progress goes to stderr, the result to stdout.
Every step that changes something remotely is journaled first; re-running the
same command resumes where it stopped and never deploys or commits twice.`,
		Flags:  flags,
		Action: runDeploy,
	}
}

// flowSetup is what deploy-like commands share.
type flowSetup struct {
	runner *cvm.Runner
	dev    *testnet.Localnet
	chain  *deployer.Chain
}

func (s *flowSetup) close() {
	if s.dev != nil {
		s.dev.Close()
	}
}

// newFlowSetup builds the runner from the flags (or from a --dev testnet).
func newFlowSetup(c *cli.Context, needSigner bool) (*flowSetup, error) {
	p := newProgress(c)
	trust, err := trustFromFlags(c)
	if err != nil {
		return nil, err
	}
	s := &flowSetup{runner: &cvm.Runner{Progress: p.Printf, Explorer: explorerLink, Trust: trust}}
	if s.runner.Safe, err = safeRoutingFromFlags(c); err != nil {
		return nil, err
	}
	if name := c.String("chain"); name != "" {
		ch, err := deployer.LookupChain(name)
		if err != nil {
			return nil, &UsageError{Err: fmt.Errorf("--chain: %w", err)}
		}
		s.chain = &ch
	}
	if c.Bool("dev") {
		return s, s.startDev(c, p)
	}
	api, err := apiClient(c)
	if err != nil {
		return nil, err
	}
	s.runner.API = api
	s.runner.RPCURL = strings.TrimSpace(c.String("rpc-url"))
	if needSigner && signerGiven(c) {
		signer, err := loadSigner(c)
		if err != nil {
			return nil, err
		}
		s.runner.Signer = signer
	}
	return s, nil
}

// signerGiven reports whether any key source is configured; without one,
// the flow asks for it only if the KMS turns out to be on-chain.
func signerGiven(c *cli.Context) bool {
	return os.Getenv(privateKeyEnv) != "" || c.String("private-key-file") != "" || c.Bool("private-key-stdin") || c.String("keystore") != "" || c.String("account") != ""
}

func explorerLink(chainID uint64, h common.Hash) string {
	if ch, ok := deployer.ChainByID(chainID); ok {
		return ch.TxURL(h)
	}
	return ""
}

// confirmSpend asks before spending gas on a mainnet: on a terminal it
// prompts; off a terminal it refuses unless --yes (a CI job must say so).
func confirmSpend(c *cli.Context) func(ctx context.Context, chainID uint64, action string) error {
	return func(ctx context.Context, chainID uint64, action string) error {
		if c.Bool("yes") || (chainID != 1 && chainID != 8453) {
			return nil
		}
		ch, _ := deployer.ChainByID(chainID)
		if !stdinIsTerminal(c) {
			return &UsageError{Err: fmt.Errorf("refusing to %s on %s without --yes: it spends real gas, and there is no terminal to ask", action, ch)}
		}
		fmt.Fprintf(c.App.ErrWriter, "About to %s on %s. This spends real gas. Continue? [y/N] ", action, ch)
		line, _ := bufio.NewReader(c.App.Reader).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return &UsageError{Err: errors.New("cancelled: nothing was sent")}
		}
		return nil
	}
}

func runDeploy(c *cli.Context) error {
	cfg, err := deployConfigFromFlags(c, true)
	if err != nil {
		return err
	}
	if err := checkDeployReview(c); err != nil {
		return err
	}
	s, err := newFlowSetup(c, true)
	if err != nil {
		return err
	}
	defer s.close()
	r := s.runner
	r.Confirm = confirmSpend(c)
	r.AfterStep = testStopAfter()
	if s.dev != nil {
		if !c.IsSet("kms") {
			cfg.KMS = s.dev.KMSID
		}
		cfg.Wait = true
		// Each --dev run has a brand-new chain: a journal could not resume
		// anything, so it lives in a folder removed afterwards.
		dir, err := os.MkdirTemp("", "cvmdeploy-dev-journal-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		r.Journals = cvm.JournalStore{Dir: dir}
	} else if !cfg.DryRun {
		if r.Journals, err = journalStore(c); err != nil {
			return err
		}
	}
	if path := c.String("batch"); path != "" {
		return runBatch(c, r, cfg, path)
	}
	if cfg.DryRun {
		out, err := r.DryRun(c.Context, cfg)
		if err != nil {
			return err
		}
		page, reviewErr := writeDryRunReview(c, out)
		doc := dryRunDoc(out)
		if page != "" {
			doc.set("review_page", page)
		}
		return errors.Join(printResult(c, doc), reviewErr)
	}
	res, err := r.Deploy(c.Context, cfg)
	if err != nil && res != nil && (len(res.PendingCalls) > 0 || errors.Is(err, cvm.ErrApprovalPending)) {
		// The owner must act: the result (with the calls) goes to stdout and
		// the calls into a Safe Transaction Builder file, then the error.
		if perr := printPending(c, res); perr != nil {
			return errors.Join(err, perr)
		}
	}
	if err != nil {
		if res != nil && res.Journal != "" && exitCode(c.Context, err) != ExitUsage {
			newProgress(c).Printf("hint: progress is saved in %s; re-run the same command to continue (--fresh starts over)", res.Journal)
		}
		return err
	}
	if s.dev != nil {
		res.DashboardURL = "" // a local CVM has no page on the portal
		res.Journal = ""
	}
	if err := printDeployResult(c, res); err != nil {
		return err
	}
	if s.dev != nil {
		p := newProgress(c)
		p.Printf("")
		p.Printf("That was a rehearsal on a throwaway local testnet (stopped now). The same flow on Base:")
		p.Printf("  export PHALA_CLOUD_API_KEY=phak_… ETH_RPC_URL=https://… PRIVATE_KEY=0x…")
		p.Printf("  cvmdeploy deploy --kms base --chain base --compose %s --env-file … --dry-run   # then without --dry-run", cfg.ComposeFile)
	}
	return nil
}

// deployConfigFromFlags reads the deploy flags; withTx also reads the
// transaction flags (provision has none).
func deployConfigFromFlags(c *cli.Context, withTx bool) (cvm.Config, error) {
	cfg := cvm.Config{
		Name:                        c.String("name"),
		ComposeFile:                 c.String("compose"),
		PreLaunchScriptFile:         c.String("pre-launch-script"),
		KMS:                         c.String("kms"),
		InstanceType:                c.String("instance-type"),
		Image:                       c.String("image"),
		Region:                      c.String("region"),
		DiskSize:                    c.Int("disk-size"),
		PublicLogs:                  c.Bool("public-logs"),
		PublicSysinfo:               c.Bool("public-sysinfo"),
		Listed:                      c.Bool("listed"),
		AllowAnyDevice:              c.Bool("allow-any-device"),
		DisableUpgrades:             c.Bool("disable-upgrades"),
		RequireTcbUpToDate:          c.Bool("require-tcb-up-to-date"),
		Wait:                        c.Bool("wait"),
		DryRun:                      c.Bool("dry-run"),
		Fresh:                       c.Bool("fresh"),
		AllowMissingEnv:             c.Bool("allow-missing-env"),
		InsecureSkipKeyVerification: c.Bool("insecure-skip-kms-key-verification"),
		ComposeCheck:                c.String("compose-check"),
	}
	cfg.EnvFiles, cfg.EnvFlags = envInputs(c)
	batch := c.String("batch") != ""
	if batch && (cfg.ComposeFile != "" || cfg.Name != "" || len(cfg.EnvFiles) > 0 || len(cfg.EnvFlags) > 0) {
		return cfg, &UsageError{Err: errors.New("--batch takes names, compose files and env files from the batch file: drop --compose, --name, --env-file and --env")}
	}
	if cfg.ComposeFile == "" && !batch {
		return cfg, &UsageError{Err: errors.New("--compose is required: the docker-compose.yml of the app")}
	}
	if cfg.Name == "" && !batch {
		cfg.Name = defaultName(cfg.ComposeFile)
	}
	if c.IsSet("node-id") {
		n := c.Int64("node-id")
		cfg.NodeID = &n
	}
	if s := c.String("owner"); s != "" {
		a, err := parseAddress("owner", s)
		if err != nil {
			return cfg, err
		}
		cfg.Owner = a
	}
	if name := c.String("chain"); name != "" {
		ch, err := deployer.LookupChain(name)
		if err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--chain: %w", err)}
		}
		cfg.ChainID = ch.ID
	}
	if !withTx {
		return cfg, nil
	}
	d, err := time.ParseDuration(c.String("wait-timeout"))
	if err != nil || d <= 0 {
		return cfg, &UsageError{Err: fmt.Errorf("--wait-timeout %q: want a duration such as 10m", c.String("wait-timeout"))}
	}
	cfg.WaitTimeout = d
	if err := applyGovernanceFlags(c, &cfg); err != nil {
		return cfg, err
	}
	if cfg.Tx, err = txOptionsFromFlags(c, nil); err != nil {
		return cfg, err
	}
	cfg.Tx.OnSent = nil // the flow prints sent hashes itself, with the chain it knows
	return cfg, nil
}

// defaultName turns the compose file's folder into a CVM name, as the
// official CLI does with the working directory.
func defaultName(composePath string) string {
	abs, err := filepath.Abs(composePath)
	if err != nil {
		return ""
	}
	base := strings.ToLower(filepath.Base(filepath.Dir(abs)))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" || !(name[0] >= 'a' && name[0] <= 'z') {
		name = "app-" + name
	}
	for len(name) < 5 {
		name += "-app"
	}
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}

func printDeployResult(c *cli.Context, res *cvm.Result) error {
	return printResult(c, deployDoc(res))
}

// deployDoc is deploy's and commit's result as printed.
func deployDoc(res *cvm.Result) *result {
	r := newResult()
	r.set("name", res.Name)
	r.set("app_id", res.AppID)
	if res.ContractAddress != "" {
		r.set("contract_address", res.ContractAddress)
		r.set("deployer_address", res.DeployerAddress)
	}
	r.set("compose_hash", res.ComposeHash)
	r.set("kms_id", res.KMSID)
	if res.ChainID != 0 {
		r.set("chain_id", res.ChainID)
		r.set("kms_contract", res.KMSContract)
	}
	if res.TxHash != "" {
		r.set("tx_hash", res.TxHash)
		r.set("block_number", res.BlockNumber)
		r.set("gas_used", res.GasUsed)
	}
	r.set("kms_key_verified", res.KeyVerified)
	if res.KMSTrust != "" {
		r.set("kms_trust", res.KMSTrust).note("kms_trust", kmsTrustWords(res.KMSTrust))
	}
	if res.ComposeVerified != "" {
		r.set("compose_verified", res.ComposeVerified).note("compose_verified", composeWords(res.ComposeVerified))
	}
	if res.PreLaunch != "" {
		r.set("pre_launch_script", res.PreLaunch)
	}
	if res.ApproveTxHash != "" {
		r.set("approve_tx_hash", res.ApproveTxHash)
	}
	if res.RevokeTxHash != "" {
		r.set("revoke_tx_hash", res.RevokeTxHash)
	}
	if res.TimelockAddress != "" {
		r.set("timelock_address", res.TimelockAddress)
		r.set("timelock_delay", res.TimelockDelay)
		r.set("timelock_tx_hash", res.TimelockTxHash)
	}
	if res.Owner != "" && (len(res.PendingCalls) > 0 || res.TimelockAddress != "" || res.Timelock != nil) {
		r.set("owner", res.Owner)
	}
	if res.Approver != "" {
		r.set("approver", res.Approver)
	}
	if len(res.PendingCalls) > 0 {
		r.set("pending_calls", callList(res.PendingCalls))
	}
	setSafeProposal(r, res.SafeProposal)
	setTimelockFields(r, res.Timelock)
	if res.Attestation != "" {
		r.set("attestation", res.Attestation)
	}
	r.set("cvm_id", res.CVMID)
	r.set("vm_uuid", res.VMUUID)
	r.set("status", res.Status)
	if res.DashboardURL != "" {
		r.set("dashboard_url", res.DashboardURL)
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

// dryRunDoc is one app's dry run as printed, alone or in a batch.
func dryRunDoc(out *cvm.DryRunResult) *result {
	r := newResult()
	r.set("name", out.Name)
	r.set("dry_run", true)
	r.set("compose_hash", out.ComposeHash)
	r.set("kms_id", out.KMSID)
	r.set("on_chain", out.OnChain)
	if out.KMSTrust != "" {
		r.set("kms_trust", out.KMSTrust).note("kms_trust", kmsTrustWords(out.KMSTrust))
	}
	r.set("compose_verified", out.ComposeVerified).note("compose_verified", composeWords(out.ComposeVerified))
	if out.Simulation != nil {
		if out.PredictedAppID != "" {
			r.set("predicted_app_id", out.PredictedAppID)
		}
		r.set("chain_id", out.Simulation.ChainID)
		r.set("gas_limit", out.Simulation.GasLimit)
		r.set("estimated_cost_wei", out.EstimatedCostWei)
		r.set("estimated_cost_eth", out.EstimatedCostETH)
	}
	r.set("env_keys", out.EnvKeys)
	r.set("commit_request", out.CommitRequest)
	if len(out.Warnings) > 0 {
		r.set("warnings", out.Warnings)
	}
	return r
}

func printBatchDryRun(c *cli.Context, out *cvm.BatchDryRunResult) error {
	if c.Bool("json") {
		apps := make([]map[string]any, len(out.Apps))
		for i, a := range out.Apps {
			apps[i] = dryRunDoc(a).values
		}
		doc := map[string]any{"dry_run": true, "apps": apps}
		if out.EstimatedCostWei != "" {
			doc["estimated_cost_wei"], doc["estimated_cost_eth"] = out.EstimatedCostWei, out.EstimatedCostETH
		}
		return writeJSON(c.App.Writer, doc)
	}
	return writeBatchDryRunText(c.App.Writer, out)
}

// writeBatchDryRunText prints a batch dry run, one line per app.
func writeBatchDryRunText(w io.Writer, out *cvm.BatchDryRunResult) error {
	var b strings.Builder
	for _, a := range out.Apps {
		line := fmt.Sprintf("%-24s compose %s", a.Name, a.ComposeHash)
		switch {
		case a.PredictedAppID != "":
			line += "  app " + a.PredictedAppID + "  at most " + a.EstimatedCostETH + " ETH"
		case a.EstimatedCostETH != "":
			line += "  at most " + a.EstimatedCostETH + " ETH"
		default:
			line += "  no gas (cloud KMS)"
		}
		fmt.Fprintln(&b, line)
	}
	if out.EstimatedCostETH != "" {
		fmt.Fprintf(&b, "total: AppAuths at most %s ETH; nothing was sent\n", out.EstimatedCostETH)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// testStopEnv names a hook for tests only (documented as such in README.md):
// "STEP" makes deploy fail right after STEP is journaled, "STEP:exit" ends
// the process there with exit code 99, as a crash or a killed CI job would.
// STEP is one of provision, deploy-tx, app, pubkey, commit, running.
const testStopEnv = "CVMDEPLOY_TEST_STOP_AFTER"

func testStopAfter() func(step string) error {
	v := os.Getenv(testStopEnv)
	if v == "" {
		return nil
	}
	step, mode, _ := strings.Cut(v, ":")
	return func(s string) error {
		if s != step {
			return nil
		}
		if mode == "exit" {
			os.Exit(99)
		}
		return fmt.Errorf("stopped after step %s (%s is set)", s, testStopEnv)
	}
}

func runBatch(c *cli.Context, r *cvm.Runner, cfg cvm.Config, path string) error {
	apps, err := cvm.LoadBatchFile(path)
	if err != nil {
		return err
	}
	if cfg.DryRun {
		out, err := r.DryRunBatch(c.Context, cfg, apps)
		if err != nil {
			return err
		}
		return printBatchDryRun(c, out)
	}
	res, err := r.DeployBatch(c.Context, cfg, apps)
	if res == nil {
		return err
	}
	if c.Bool("json") {
		if perr := writeJSON(c.App.Writer, res); perr != nil {
			return perr
		}
	} else if werr := writeBatchText(c.App.Writer, res); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// journalStore is where journals live: --journal-dir (CVMDEPLOY_STATE_DIR)
// or the default state folder.
func journalStore(c *cli.Context) (cvm.JournalStore, error) {
	dir := c.String("journal-dir")
	if dir == "" {
		d, err := cvm.DefaultJournalDir()
		return cvm.JournalStore{Dir: d}, err
	}
	return cvm.JournalStore{Dir: filepath.Join(dir, "deployments")}, nil
}

// writeBatchText prints a batch's outcome, one line per app.
func writeBatchText(w io.Writer, res *cvm.BatchResult) error {
	var b strings.Builder
	for _, a := range res.Apps {
		line := fmt.Sprintf("%-24s %-42s %s", a.Name, checksummed(a.AppID), a.Status)
		if a.Error != "" {
			line += "  error: " + a.Error
		}
		fmt.Fprintln(&b, line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

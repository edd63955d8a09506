package commands

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
)

func init() {
	registerCommands(func() []*cli.Command { return []*cli.Command{replicateCommand(), commitReplicaCommand()} })
}

func replicateCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "cvm", Usage: "the CVM to replicate: id, UUID, name or app id (required)"},
		&cli.Int64Flag{Name: "node-id", Usage: "put every replica on this node (default: the service picks)"},
		&cli.IntFlag{Name: "count", Value: 1, Usage: "how many replicas"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until every replica runs (and check its attestation)"},
		&cli.StringFlag{Name: "wait-timeout", Value: "10m", Usage: "how long --wait waits"},
		&cli.BoolFlag{Name: "prepare-only", Usage: "stop with the commit tokens and the owner's calls (for a multisig owner); nothing is sent or created"},
		safeFileFlag(),
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before spending gas on a mainnet (required off a terminal)"},
		&cli.BoolFlag{Name: "fresh", Usage: "forget the journal of an earlier, unfinished run of this command and start over"},
		&cli.StringFlag{Name: "journal-dir", EnvVars: []string{"CVMDEPLOY_STATE_DIR"}, Usage: "where journals live (default ~/.local/state/cvmdeploy)"},
	}
	flags = withCommon(flags, envInputFlags(), []cli.Flag{
		&cli.BoolFlag{Name: "insecure-skip-kms-key-verification", Usage: "DANGEROUS: trust the API's env-encryption key without checking its signature against the KMS root key on-chain"},
	}, trustFlags(), apiFlags(), rpcFlags(), signerFlags(), txFlags())
	return &cli.Command{
		Name:  "replicate",
		Usage: "run more CVMs of an app (replicas) on other nodes; allows each new node's device on-chain when needed",
		Description: `Journaled steps: reads the CVM's current app-compose and checks that the chain
allows it; asks for each replica (POST /cvms/{id}/replicas with X-Prepare-Only:
the service answers the compose hash, the node's device and a commit token);
checks that the hash is the source's allowed one, the app and KMS are the
source's, and the device is the target node's in the API's node list; allows
the new devices (and the hash, if needed) on the AppAuth through its owner,
once for all replicas; commits each replica with its token (already-registered
when nothing had to change). A re-run resumes without approving or committing
twice. Without --env-file/--env a replica gets the source's env; with them the
env is encrypted to the app's key, verified on-chain. --prepare-only prints the
tokens and the calls for a multisig; finish by re-running the same command
once the calls are executed (or with 'cvmdeploy commit-replica').`,
		Flags:  flags,
		Action: runReplicate,
	}
}

func runReplicate(c *cli.Context) error {
	timeout, err := time.ParseDuration(c.String("wait-timeout"))
	if err != nil || timeout <= 0 {
		return &UsageError{Err: fmt.Errorf("--wait-timeout %q: want a duration such as 10m", c.String("wait-timeout"))}
	}
	cfg := cvm.ReplicateConfig{
		CVM:                         c.String("cvm"),
		Count:                       c.Int("count"),
		PrepareOnly:                 c.Bool("prepare-only"),
		Wait:                        c.Bool("wait"),
		WaitTimeout:                 timeout,
		InsecureSkipKeyVerification: c.Bool("insecure-skip-kms-key-verification"),
		Fresh:                       c.Bool("fresh"),
	}
	if c.IsSet("count") && cfg.Count <= 0 {
		return &UsageError{Err: fmt.Errorf("--count %d: ask for at least one replica", cfg.Count)}
	}
	if c.IsSet("node-id") {
		n := c.Int64("node-id")
		cfg.NodeID = &n
	}
	cfg.EnvFiles, cfg.EnvFlags = envInputs(c)
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
	dir := c.String("journal-dir")
	if dir == "" {
		if dir, err = cvm.DefaultJournalDir(); err != nil {
			return err
		}
	} else {
		dir = filepath.Join(dir, "deployments")
	}
	s.runner.Journals = cvm.JournalStore{Dir: dir}
	res, err := s.runner.Replicate(c.Context, cfg)
	if err != nil {
		if res != nil && errors.Is(err, cvm.ErrApprovalPending) {
			if perr := printReplicate(c, res); perr != nil {
				return errors.Join(err, perr)
			}
		} else if res != nil && res.Journal != "" && exitCode(c.Context, err) != ExitUsage {
			newProgress(c).Printf("hint: progress is saved in %s; re-run the same command to continue (--fresh starts over)", res.Journal)
		}
		return err
	}
	return printReplicate(c, res)
}

// printReplicate writes the owner's calls as a Safe Transaction Builder
// file when the owner must make them, then the result.
func printReplicate(c *cli.Context, res *cvm.ReplicateResult) error {
	if (res.Status == "prepared" || res.Status == "awaiting-approval") && len(res.OnChain) > 0 && res.OnChain[0].TxHash == "" {
		if err := writeSafeFile(c, res.ChainID, res.Owner, "cvmdeploy: allow the replicas' devices of app "+res.AppID,
			"Allows the node devices of new replicas of CVM "+res.SourceCVM+" on its AppAuth. After executing, re-run the same cvmdeploy replicate command to finish.", res.OnChain); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if res.Replicas == nil {
			res.Replicas = []cvm.ReplicaResult{}
		}
		return writeJSON(c.App.Writer, res)
	}
	r := newResult()
	r.set("source_cvm", res.SourceCVM)
	r.set("app_id", res.AppID)
	r.set("status", res.Status).note("status", replicateStatusWords(res.Status))
	if res.ComposeHash != "" {
		r.set("compose_hash", res.ComposeHash)
	}
	if res.ComposeVerified != "" {
		r.set("compose_verified", res.ComposeVerified).note("compose_verified", "every replica runs the source's current document, whose hash the chain allows")
	}
	if res.DeviceCheck != "" {
		r.set("device_check", res.DeviceCheck).note("device_check", deviceCheckWords(res.DeviceCheck))
	}
	if res.KMSTrust != "" {
		r.set("kms_trust", res.KMSTrust).note("kms_trust", kmsTrustWords(res.KMSTrust))
	}
	if res.KeyVerified != nil {
		r.set("kms_key_verified", *res.KeyVerified)
	}
	if res.Owner != "" {
		r.set("owner", res.Owner)
	}
	if res.ChainID != 0 {
		r.set("chain_id", res.ChainID)
	}
	r.set("replicas", replicaList(res.Replicas))
	if len(res.OnChain) > 0 {
		r.set("onchain_calls", callList(res.OnChain))
	}
	if len(res.Resumed) > 0 {
		r.set("resumed_steps", strings.Join(res.Resumed, ", "))
	}
	if res.Journal != "" {
		r.set("journal", res.Journal)
	}
	if len(res.Warnings) > 0 {
		r.set("warnings", strings.Join(res.Warnings, "; "))
	}
	return printResult(c, r)
}

func replicateStatusWords(s string) string {
	switch s {
	case "prepared":
		return "nothing sent or created: have the owner execute the calls, then re-run this command"
	case "awaiting-approval":
		return "the AppAuth's owner must execute the calls (Safe file written); then re-run this command"
	case "committed":
		return "every replica was created; without --wait they may still be booting"
	case "running":
		return "every replica runs"
	}
	return ""
}

func deviceCheckWords(s string) string {
	switch s {
	case cvm.DeviceCheckNodeList:
		return "each device allowed is its node's in the API's node list"
	case cvm.DeviceCheckUnlisted:
		return "the API lists no device for a node: taken as the service named it"
	}
	return ""
}

// replicaList prints one replica per line in the human form; --json gets
// the array.
type replicaList []cvm.ReplicaResult

func (l replicaList) String() string {
	lines := make([]string, len(l))
	for i, r := range l {
		var b strings.Builder
		fmt.Fprintf(&b, "%d. ", i+1)
		if r.CVMID != "" {
			fmt.Fprintf(&b, "CVM %s ", r.CVMID)
		}
		node := "a node the service picks"
		if r.NodeID != nil {
			node = fmt.Sprintf("node %d", *r.NodeID)
		}
		fmt.Fprintf(&b, "on %s", node)
		if r.DeviceID != "" {
			fmt.Fprintf(&b, " (device %s)", r.DeviceID)
		}
		fmt.Fprintf(&b, ": %s", r.Status)
		switch {
		case r.TxHash != "":
			fmt.Fprintf(&b, ", allowed by %s", r.TxHash)
		case r.CVMID != "":
			b.WriteString(", nothing had to be approved")
		}
		if r.CommitToken != "" {
			fmt.Fprintf(&b, ", commit token %s", r.CommitToken)
		}
		lines[i] = b.String()
	}
	return strings.Join(lines, "\n    ")
}

func commitReplicaCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "cvm", Usage: "the source CVM (required)"},
		&cli.StringFlag{Name: "token-file", EnvVars: []string{"CVMDEPLOY_COMMIT_TOKEN_FILE"}, Usage: "a file holding the commit token from replicate --prepare-only (or set CVMDEPLOY_COMMIT_TOKEN); never a flag value, it is a credential", TakesFile: true},
		&cli.StringFlag{Name: "compose-hash", Usage: "the replica's compose hash (required)"},
		&cli.StringFlag{Name: "transaction-hash", Value: "already-registered", Usage: "the transaction that allowed the replica's device, or already-registered"},
	}
	flags = withCommon(flags, apiFlags())
	return &cli.Command{
		Name:   "commit-replica",
		Usage:  "finish one replica prepared with replicate --prepare-only, once the owner executed the on-chain calls",
		Flags:  flags,
		Action: runCommitReplica,
	}
}

func runCommitReplica(c *cli.Context) error {
	token := strings.TrimSpace(os.Getenv("CVMDEPLOY_COMMIT_TOKEN"))
	if path := c.String("token-file"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--token-file: %w", err)}
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return &UsageError{Err: errors.New("no commit token: pass --token-file FILE or set CVMDEPLOY_COMMIT_TOKEN")}
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	r := &cvm.Runner{API: api}
	vm, err := r.CommitReplica(c.Context, c.String("cvm"), token, c.String("compose-hash"), c.String("transaction-hash"))
	if err != nil {
		return err
	}
	id := vm.ID.String()
	if vm.VMUUID != nil && *vm.VMUUID != "" {
		id = *vm.VMUUID
	}
	res := newResult().set("cvm_id", id).set("name", vm.Name).set("status", vm.Status)
	if n, ok := vm.NodeID(); ok {
		res.set("node_id", n)
	}
	return printResult(c, res)
}

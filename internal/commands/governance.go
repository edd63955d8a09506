package commands

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// waitApprovalFlags follow the chain until the owner approved, instead of
// stopping with exit 10.
func waitApprovalFlags(withTimeout bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "wait-approval", Usage: "when the AppAuth's owner is not the signer (a Safe, a timelock), follow the chain until it has allowed the change (executing a ready timelock operation when the signer may), then finish; bounded by --wait-timeout (exit 10 when it runs out)"},
		&cli.StringFlag{Name: "poll-interval", Value: cvm.DefaultApprovalPoll.String(), Usage: "how often --wait-approval reads the chain"},
	}
	if withTimeout {
		flags = append(flags, &cli.StringFlag{Name: "wait-timeout", Value: "10m", Usage: "how long --wait-approval waits"})
	}
	return flags
}

// timelockFlags make deploy create a TimelockController that owns the
// AppAuth.
func timelockFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "timelock", Usage: "deploy an OpenZeppelin TimelockController with this minimum delay (seconds, or a duration such as 48h) and make it the AppAuth's owner: open execution, no admin"},
		&cli.StringFlag{Name: "timelock-proposer", Usage: "the timelock's proposer, e.g. a Safe (default: --owner when given, else the signer)"},
	}
}

// parseDelay reads a delay as whole seconds ("3600") or a duration ("1h").
func parseDelay(flag, s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d%time.Second != 0 {
		return 0, &UsageError{Err: fmt.Errorf("--%s %q: want whole seconds (3600) or a duration (48h)", flag, s)}
	}
	return uint64(d / time.Second), nil
}

// approvalFromFlags reads --wait-approval and --poll-interval.
func approvalFromFlags(c *cli.Context) (wait bool, poll time.Duration, err error) {
	poll, err = time.ParseDuration(c.String("poll-interval"))
	if err != nil || poll <= 0 {
		return false, 0, &UsageError{Err: fmt.Errorf("--poll-interval %q: want a duration such as 5s", c.String("poll-interval"))}
	}
	return c.Bool("wait-approval"), poll, nil
}

// waitTimeout reads --wait-timeout.
func waitTimeout(c *cli.Context) (time.Duration, error) {
	d, err := time.ParseDuration(c.String("wait-timeout"))
	if err != nil || d <= 0 {
		return 0, &UsageError{Err: fmt.Errorf("--wait-timeout %q: want a duration such as 10m", c.String("wait-timeout"))}
	}
	return d, nil
}

// applyGovernanceFlags reads deploy's --timelock, --timelock-proposer and
// --wait-approval into cfg.
func applyGovernanceFlags(c *cli.Context, cfg *cvm.Config) error {
	var err error
	if cfg.WaitApproval, cfg.PollInterval, err = approvalFromFlags(c); err != nil {
		return err
	}
	if !c.IsSet("timelock") {
		if c.IsSet("timelock-proposer") {
			return &UsageError{Err: errors.New("--timelock-proposer goes with --timelock DELAY")}
		}
		return nil
	}
	if c.String("batch") != "" {
		return &UsageError{Err: errors.New("--timelock deploys one timelock per app: deploy the apps one by one")}
	}
	delay, err := parseDelay("timelock", c.String("timelock"))
	if err != nil {
		return err
	}
	cfg.Timelock = &cvm.TimelockConfig{Delay: delay}
	if s := c.String("timelock-proposer"); s != "" {
		if cfg.Timelock.Proposer, err = parseAddress("timelock-proposer", s); err != nil {
			return err
		}
		if cfg.Timelock.Proposer == (common.Address{}) {
			return &UsageError{Err: errors.New("--timelock-proposer: the zero address cannot propose")}
		}
	}
	return nil
}

// setTimelockFields adds a timelock operation to a result, flat (human
// output prints one line per field).
func setTimelockFields(r *result, st *cvm.TimelockStatus) {
	if st == nil {
		return
	}
	r.set("timelock_address", st.Address)
	r.set("timelock_operation_id", st.OperationID)
	if st.State != "" {
		r.set("timelock_state", st.State).note("timelock_state", timelockStateWords(st.State))
	}
	if st.ETA != "" {
		r.set("timelock_eta", st.ETA)
	}
	r.set("timelock_salt", st.Salt)
	r.set("timelock_delay", st.Delay)
	if st.ScheduleTx != "" {
		r.set("timelock_schedule_tx", st.ScheduleTx)
	}
	if st.ExecuteTx != "" {
		r.set("timelock_execute_tx", st.ExecuteTx)
	}
}

func timelockStateWords(s string) string {
	switch s {
	case "unset":
		return "not scheduled yet: the timelock's proposer must schedule it"
	case "waiting":
		return "scheduled; executable from timelock_eta"
	case "ready":
		return "executable now, by anyone allowed to execute"
	case "done":
		return "executed"
	}
	return ""
}

func commitUpdateCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "cvm", Usage: "the CVM, as the update named it (required)"},
		&cli.StringFlag{Name: "token", Usage: "the commit token from update --prepare-only (omit to take it from this machine's journal)"},
		&cli.StringFlag{Name: "compose-hash", Usage: "the compose hash that was allowed on-chain (with --token)"},
		&cli.StringFlag{Name: "transaction-hash", Usage: "the transaction that allowed it, or already-registered (with --token)"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until the CVM runs again"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before spending gas on a mainnet (executing a ready timelock operation)"},
		&cli.StringFlag{Name: "journal-dir", EnvVars: []string{"CVMDEPLOY_STATE_DIR"}, Usage: "where journals live (default ~/.local/state/cvmdeploy)"},
	}
	flags = append(flags, waitApprovalFlags(true)...)
	flags = withCommon(flags, trustFlags(), apiFlags(), rpcFlags(), signerFlags(), txFlags())
	return &cli.Command{
		Name:  "commit-update",
		Usage: "finish an update prepared with update --prepare-only once the owner allowed its compose hash",
		Description: `Without --token, the update prepared on this machine is finished from its
journal (same --cvm as the update): the chain is read to see that the owner
allowed the compose hash and the node's device, the transaction that allowed
them is taken from its log, and the update is committed. --wait-approval
follows the chain until then (a Safe executing the calls, a timelock
operation reaching its ETA: with a signer, a ready operation is executed,
since execution is open). Exit 10 means still waiting. With --token,
--compose-hash and --transaction-hash it commits exactly that.`,
		Flags:  flags,
		Action: runCommitUpdate,
	}
}

func runCommitUpdate(c *cli.Context) error {
	if c.IsSet("token") || c.IsSet("compose-hash") || c.IsSet("transaction-hash") {
		if c.Bool("wait-approval") {
			return &UsageError{Err: errors.New("--wait-approval finishes from the journal: drop --token, --compose-hash and --transaction-hash")}
		}
		api, err := apiClient(c)
		if err != nil {
			return err
		}
		r := &cvm.Runner{API: api}
		out, err := r.CommitUpdate(c.Context, c.String("cvm"), c.String("token"), c.String("compose-hash"), c.String("transaction-hash"))
		if err != nil {
			return err
		}
		return printResult(c, commitUpdateDoc(c.String("cvm"), out))
	}
	cfg := cvm.FinishConfig{CVM: c.String("cvm"), Wait: c.Bool("wait")}
	var err error
	if cfg.WaitApproval, cfg.PollInterval, err = approvalFromFlags(c); err != nil {
		return err
	}
	if cfg.WaitTimeout, err = waitTimeout(c); err != nil {
		return err
	}
	if cfg.Tx, err = txOptionsFromFlags(c, nil); err != nil {
		return err
	}
	cfg.Tx.OnSent = nil
	s, err := newFlowSetup(c, true)
	if err != nil {
		return err
	}
	defer s.close()
	s.runner.Confirm = confirmSpend(c)
	if s.chain != nil {
		cfg.ChainID = s.chain.ID
	}
	if s.runner.Journals, err = journalStore(c); err != nil {
		return err
	}
	res, err := s.runner.FinishUpdate(c.Context, cfg)
	if err != nil {
		if res != nil && errors.Is(err, cvm.ErrApprovalPending) {
			if perr := printUpdate(c, res, approverOf(res)); perr != nil {
				return errors.Join(err, perr)
			}
		}
		return err
	}
	return printUpdate(c, res, common.Address{})
}

// approverOf is who must make a pending update's calls: the timelock's
// proposer, else the owner (recorded as the Safe of the Transaction Builder
// file).
func approverOf(res *cvm.UpdateResult) common.Address {
	for _, a := range []string{res.Approver, res.Owner} {
		if common.IsHexAddress(a) {
			return common.HexToAddress(a)
		}
	}
	return common.Address{}
}

// commitUpdateDoc is commit-update's result as printed (the token path).
func commitUpdateDoc(cvmID string, out *phala.CommitUpdateResponse) *result {
	return newResult().set("cvm_id", cvmID).set("correlation_id", out.CorrelationID).set("status", out.Status)
}

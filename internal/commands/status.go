package commands

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

func init() {
	registerCommands(func() []*cli.Command { return []*cli.Command{statusCommand()} })
}

func statusCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "cvm", Usage: "the CVM: id, UUID, name or app id (required, unless --app-id)"},
		&cli.StringFlag{Name: "app-id", Usage: "list every CVM of this app with its node, the node's device and whether the AppAuth allows it (needs --rpc-url for the last)"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until the CVM runs (or fails to boot)"},
		&cli.StringFlag{Name: "wait-timeout", Value: "10m", Usage: "how long --wait waits"},
	}
	return &cli.Command{
		Name:      "status",
		ArgsUsage: "CVM_ID",
		Usage:     "show a CVM's status; with --wait, follow it until it runs (e.g. after deploy without --wait); with --app-id, every CVM of an app",
		Flags:     withCommon(flags, trustFlags(), apiFlags(), rpcFlags()),
		Action:    runStatus,
	}
}

func runStatus(c *cli.Context) error {
	if c.IsSet("app-id") {
		return runAppStatus(c)
	}
	id, err := flagOrArg(c, "cvm", "the CVM (id, UUID, name or app id)")
	if err != nil {
		return err
	}
	timeout, err := time.ParseDuration(c.String("wait-timeout"))
	if err != nil || timeout <= 0 {
		return &UsageError{Err: fmt.Errorf("--wait-timeout %q: want a duration such as 10m", c.String("wait-timeout"))}
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	trust, err := trustFromFlags(c)
	if err != nil {
		return err
	}
	r := &cvm.Runner{API: api, RPCURL: c.String("rpc-url"), Progress: newProgress(c).Printf, Trust: trust}
	out, err := r.Status(c.Context, cvm.StatusConfig{CVM: id, Wait: c.Bool("wait"), WaitTimeout: timeout})
	if err != nil {
		return err
	}
	return printResult(c, statusDoc(id, out))
}

// statusDoc is status's result as printed.
func statusDoc(id string, out *cvm.StatusResult) *result {
	info, st := out.CVM, out.State
	res := newResult().set("cvm_id", id).set("name", info.Name).set("status", st.Status)
	if info.AppID != nil {
		res.set("app_id", *info.AppID)
	}
	if info.VMUUID != nil {
		res.set("vm_uuid", *info.VMUUID)
		res.set("dashboard_url", phala.DashboardURL(*info.VMUUID))
	}
	if info.ComposeHash != nil {
		res.set("compose_hash", *info.ComposeHash)
	}
	if out.KMSTrust != "" {
		res.set("kms_trust", out.KMSTrust).note("kms_trust", kmsTrustWords(out.KMSTrust))
	}
	if out.Attestation != "" {
		res.set("attestation", out.Attestation)
	}
	if out.AllowedOnChain != nil {
		res.set("attested_hash_allowed_onchain", *out.AllowedOnChain)
	}
	if st.BootProgress != "" {
		res.set("boot_progress", st.BootProgress)
	}
	if st.BootError != "" {
		res.set("boot_error", st.BootError)
	}
	return res
}

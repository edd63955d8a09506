package commands

import (
	"context"
	"errors"
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
		&cli.StringFlag{Name: "cvm", Usage: "the CVM: id, UUID, name or app id (required)"},
		&cli.BoolFlag{Name: "wait", Usage: "wait until the CVM runs (or fails to boot)"},
		&cli.StringFlag{Name: "wait-timeout", Value: "10m", Usage: "how long --wait waits"},
	}
	return &cli.Command{
		Name:   "status",
		Usage:  "show a CVM's status; with --wait, follow it until it runs (e.g. after deploy without --wait)",
		Flags:  withCommon(flags, apiFlags()),
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	id := c.String("cvm")
	if id == "" {
		return &UsageError{Err: errors.New("--cvm is required: the CVM id, UUID, name or app id")}
	}
	timeout, err := time.ParseDuration(c.String("wait-timeout"))
	if err != nil || timeout <= 0 {
		return &UsageError{Err: fmt.Errorf("--wait-timeout %q: want a duration such as 10m", c.String("wait-timeout"))}
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	info, err := api.GetCVM(c.Context, id)
	if err != nil {
		return err
	}
	st, err := api.CVMState(c.Context, id)
	if err != nil {
		return err
	}
	if c.Bool("wait") && st.Status != "running" {
		ctx, cancel := context.WithTimeout(c.Context, timeout)
		defer cancel()
		r := &cvm.Runner{API: api, Progress: newProgress(c).Printf}
		if *st, err = r.WaitRunning(ctx, id); err != nil {
			return err
		}
	}
	r := newResult().set("cvm_id", id).set("name", info.Name).set("status", st.Status)
	if info.AppID != nil {
		r.set("app_id", *info.AppID)
	}
	if info.VMUUID != nil {
		r.set("vm_uuid", *info.VMUUID)
		r.set("dashboard_url", phala.DashboardURL(*info.VMUUID))
	}
	if info.ComposeHash != nil {
		r.set("compose_hash", *info.ComposeHash)
	}
	if st.BootProgress != "" {
		r.set("boot_progress", st.BootProgress)
	}
	if st.BootError != "" {
		r.set("boot_error", st.BootError)
	}
	return printResult(c, r)
}

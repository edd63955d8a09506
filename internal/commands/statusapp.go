package commands

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
)

// runAppStatus is status --app-id: every CVM of the app, its node and
// device, and whether the AppAuth allows the device (with --rpc-url).
func runAppStatus(c *cli.Context) error {
	if c.IsSet("cvm") || c.Bool("wait") {
		return &UsageError{Err: errors.New("--app-id lists an app's CVMs; it goes without --cvm and --wait")}
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	trust, err := trustFromFlags(c)
	if err != nil {
		return err
	}
	r := &cvm.Runner{API: api, RPCURL: strings.TrimSpace(c.String("rpc-url")), Progress: newProgress(c).Printf, Trust: trust}
	out, err := r.AppStatus(c.Context, c.String("app-id"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, out)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "app 0x%s has %d CVM(s).\n", out.AppID, len(out.CVMs))
	switch {
	case out.OnChainChecked:
		fmt.Fprintf(w, "Devices checked on chain %d (KMS %s: %s).\n", out.ChainID, out.KMSTrust, kmsTrustWords(out.KMSTrust))
		if out.AllowAnyDevice != nil && *out.AllowAnyDevice {
			fmt.Fprintln(w, "The AppAuth allows any device.")
		}
	default:
		fmt.Fprintln(w, "Devices unchecked: pass --rpc-url (or set ETH_RPC_URL) to read the AppAuth's allowed devices.")
	}
	if len(out.CVMs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CVM\tNAME\tSTATUS\tNODE\tDEVICE\tDEVICE ALLOWED")
	for _, v := range out.CVMs {
		node := "unknown"
		if v.NodeID != nil {
			node = fmt.Sprint(*v.NodeID)
			if v.NodeName != "" {
				node += " (" + v.NodeName + ")"
			}
		}
		device := v.DeviceID
		if device == "" {
			device = "not listed"
		}
		allowed := "unchecked"
		if v.DeviceAllowed != nil {
			allowed = "no"
			if *v.DeviceAllowed {
				allowed = "yes"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.CVMID, v.Name, v.Status, node, device, allowed)
	}
	return tw.Flush()
}

package cvm

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// AppStatusResult lists every CVM of an app with its node, the node's
// device, and whether the AppAuth allows that device.
type AppStatusResult struct {
	AppID    string `json:"app_id"`
	ChainID  uint64 `json:"chain_id,omitempty"`
	KMSTrust string `json:"kms_trust,omitempty"`
	// OnChainChecked is false without an RPC node (or for a cloud-KMS
	// app): device_allowed is then null for every CVM.
	OnChainChecked bool     `json:"onchain_checked"`
	AllowAnyDevice *bool    `json:"allow_any_device,omitempty"`
	CVMs           []AppCVM `json:"cvms"`
}

// AppCVM is one CVM of the app.
type AppCVM struct {
	CVMID    string `json:"cvm_id"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	NodeID   *int64 `json:"node_id"`
	NodeName string `json:"node_name,omitempty"`
	// DeviceID is the node's device from the API's node list ("" when the
	// API lists none for it).
	DeviceID string `json:"device_id"`
	// DeviceAllowed is read from the AppAuth (allowAnyDevice or
	// allowedDeviceIds); nil when not checked.
	DeviceAllowed *bool `json:"device_allowed"`
}

// AppStatus lists the app's CVMs (GET /cvms filtered by app id: the API
// documents no app filter) with their nodes and devices (GET
// /teepods/available), and, given an RPC node, whether the AppAuth allows
// each device.
func (r *Runner) AppStatus(ctx context.Context, appID string) (*AppStatusResult, error) {
	norm, err := phala.NormalizeAppID(appID)
	if err != nil {
		return nil, fmt.Errorf("%w: --app-id: %w", ErrInvalidConfig, err)
	}
	vms, err := r.API.AppCVMs(ctx, norm)
	if err != nil {
		return nil, fmt.Errorf("list app %s's CVMs: %w", appID, err)
	}
	out := &AppStatusResult{AppID: norm, CVMs: []AppCVM{}}
	nodes := map[int64]phala.Node{}
	if list, err := r.API.AvailableNodes(ctx); err == nil {
		for _, n := range list.Nodes {
			nodes[n.TeepodID] = n
		}
	} else if ae := (*phala.APIError)(nil); !errors.As(err, &ae) || !(ae.IsNotFound() || ae.Status == 405) {
		return nil, fmt.Errorf("list the nodes: %w", err)
	}
	for i := range vms {
		vm := &vms[i]
		c := AppCVM{CVMID: cvmRef(vm), Name: vm.Name, Status: vm.Status}
		if n, ok := vm.NodeID(); ok {
			c.NodeID = &n
			c.NodeName = nodes[n].Name
			c.DeviceID = nodes[n].DeviceID
			if c.NodeName == "" && vm.Teepod != nil {
				c.NodeName = vm.Teepod.Name
			}
		}
		out.CVMs = append(out.CVMs, c)
	}
	sort.SliceStable(out.CVMs, func(i, j int) bool { return nodeOrder(out.CVMs[i]) < nodeOrder(out.CVMs[j]) })

	var onChain *phala.CVM
	for i := range vms {
		if _, _, _, ok := kmsOf(&vms[i]); ok {
			onChain = &vms[i]
			break
		}
	}
	if onChain == nil || r.RPCURL == "" {
		return out, nil
	}
	contract, chainID, _, _ := kmsOf(onChain)
	if out.KMSTrust, err = r.trustKMS(chainID, contract); err != nil {
		return out, err
	}
	out.ChainID = chainID
	app, err := appAddress(norm)
	if err != nil {
		return out, err
	}
	chain, err := deployer.Dial(ctx, r.RPCURL)
	if err != nil {
		return out, err
	}
	defer chain.Close()
	chain.ExpectChainID = chainID
	allowed := map[string]bool{}
	for i := range out.CVMs {
		c := &out.CVMs[i]
		if c.DeviceID == "" {
			continue
		}
		ok, seen := allowed[c.DeviceID]
		if !seen {
			device, err := hexBytes32(c.DeviceID)
			if err != nil {
				return out, fmt.Errorf("node %s's device id: %w", c.NodeName, err)
			}
			info, err := chain.AppInfo(ctx, deployer.AppInfoQuery{App: app, DeviceID: &device})
			if err != nil {
				return out, fmt.Errorf("read AppAuth %s: %w", app.Hex(), err)
			}
			anyDevice := info.AllowAnyDevice
			out.AllowAnyDevice = &anyDevice
			ok = anyDevice || (info.DeviceAllowed != nil && *info.DeviceAllowed)
			allowed[c.DeviceID] = ok
		}
		c.DeviceAllowed = &ok
	}
	out.OnChainChecked = true
	return out, nil
}

func nodeOrder(c AppCVM) int64 {
	if c.NodeID == nil {
		return 1 << 62
	}
	return *c.NodeID
}

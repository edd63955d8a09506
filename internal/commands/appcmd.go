package commands

import (
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safetx"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{
			Name:  "app",
			Usage: "deploy and manage an app's on-chain AppAuth (DstackApp) contract",
			Subcommands: []*cli.Command{
				appDeployCommand(),
				appInfoCommand(),
				{
					Name:  "compose",
					Usage: "allow or disallow a compose hash",
					Subcommands: []*cli.Command{
						appHashCommand("add", "allow a compose hash (addComposeHash)", "compose-hash", deployer.AddComposeHashCall),
						appHashCommand("remove", "disallow a compose hash (removeComposeHash)", "compose-hash", deployer.RemoveComposeHashCall),
					},
				},
				{
					Name:  "device",
					Usage: "allow or disallow a device id",
					Subcommands: []*cli.Command{
						appHashCommand("add", "allow a device id (addDevice)", "device-id", deployer.AddDeviceCall),
						appHashCommand("remove", "disallow a device id (removeDevice)", "device-id", deployer.RemoveDeviceCall),
					},
				},
				appBoolCommand("allow-any-device", "allow", "let the app boot on any device, or only on allowed device ids (setAllowAnyDevice)", deployer.SetAllowAnyDeviceCall),
				appBoolCommand("require-tcb", "require", "require TCB status UpToDate at boot (setRequireTcbUpToDate)", deployer.SetRequireTcbUpToDateCall),
				appAdminCommand("disable-upgrades", "make the app contract's code permanent; cannot be undone (disableUpgrades)", nil,
					func(*cli.Context, *result) (deployer.AppCall, error) { return deployer.DisableUpgradesCall(), nil }),
				appAdminCommand("transfer-ownership", "start a two-step ownership transfer; the new owner runs accept-ownership",
					[]cli.Flag{&cli.StringFlag{Name: "new-owner", Usage: "address of the new owner"}},
					func(c *cli.Context, r *result) (deployer.AppCall, error) {
						to, err := requiredAddress(c, "new-owner")
						if err != nil {
							return deployer.AppCall{}, err
						}
						if to == (common.Address{}) {
							return deployer.AppCall{}, &UsageError{Err: errors.New("--new-owner: the zero address cannot own the app")}
						}
						r.set("pending_owner", to.Hex())
						return deployer.TransferOwnershipCall(to), nil
					}),
				appAdminCommand("accept-ownership", "accept a pending ownership transfer (sign with the new owner's key)", nil,
					func(*cli.Context, *result) (deployer.AppCall, error) { return deployer.AcceptOwnershipCall(), nil }),
			},
		}}
	})
}

// appIDFlag is the app contract address every admin command takes.
func appIDFlag() cli.Flag {
	return &cli.StringFlag{Name: "app-id", Usage: "app id = address of the app's AppAuth contract (0x optional)"}
}

func withCommon(flags ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, f := range flags {
		out = append(out, f...)
	}
	return append(out, jsonFlag(), quietFlag())
}

func appDeployCommand() *cli.Command {
	return &cli.Command{
		Name:  "deploy",
		Usage: "deploy and register an app's AppAuth through the KMS factory (deployAndRegisterApp)",
		Description: "Prints app_id, contract_address, deployer_address, tx_hash, block_number, gas_used and chain_id.\n" +
			"The 5-argument factory (every KMS since 2025-07) is used unless --require-tcb-up-to-date asks for the 6-argument one.\n" +
			"With --device-id, --allow-any-device is ignored (the same rule as Phala's SDK).",
		Flags: withCommon([]cli.Flag{
			&cli.StringFlag{Name: "kms-contract", Usage: "the DstackKms contract (default: Phala's KMS of --chain, when known)"},
			&cli.StringFlag{Name: "compose-hash", Usage: "initial allowed compose hash (32 bytes hex)"},
			&cli.StringFlag{Name: "device-id", Usage: "initial allowed device id (32 bytes hex)"},
			&cli.BoolFlag{Name: "allow-any-device", Usage: "let the app boot on any device"},
			&cli.BoolFlag{Name: "disable-upgrades", Usage: "make the app contract non-upgradeable from the start"},
			&cli.BoolFlag{Name: "require-tcb-up-to-date", Usage: "require TCB status UpToDate (uses the 6-argument factory)"},
			&cli.StringFlag{Name: "owner", Usage: "owner of the app contract, e.g. a Safe (default: the signer)"},
			&cli.BoolFlag{Name: "two-step", Usage: "deploy the app proxy yourself, then registerApp (for KMS without the factory)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "run every check and predict the app id; send nothing"},
		}, rpcFlags(), signerFlags(), txFlags(), calldataFlags()),
		Action: appDeploy,
	}
}

func appDeploy(c *cli.Context) error {
	var cfg deployer.DeployAppConfig
	var err error
	if c.IsSet("kms-contract") {
		if cfg.KMS, err = parseAddress("kms-contract", c.String("kms-contract")); err != nil {
			return err
		}
	}
	if c.IsSet("compose-hash") {
		if cfg.ComposeHash, err = parseHash32("compose-hash", c.String("compose-hash")); err != nil {
			return err
		}
	}
	if c.IsSet("device-id") {
		if cfg.DeviceID, err = parseHash32("device-id", c.String("device-id")); err != nil {
			return err
		}
	}
	if c.IsSet("owner") {
		if cfg.Owner, err = parseAddress("owner", c.String("owner")); err != nil {
			return err
		}
		if cfg.Owner == (common.Address{}) {
			return &UsageError{Err: errors.New(`--owner: the zero address cannot own an app (the factory reverts "Invalid owner address"): omit --owner to own it with the signer`)}
		}
	}
	cfg.AllowAnyDevice = c.Bool("allow-any-device")
	cfg.DisableUpgrades = c.Bool("disable-upgrades")
	cfg.RequireTcbUpToDate = c.Bool("require-tcb-up-to-date")
	if c.Bool("two-step") && c.Bool("dry-run") {
		return &UsageError{Err: errors.New("--dry-run covers the factory path only: drop --two-step or --dry-run")}
	}
	if c.Bool("calldata-only") {
		return appDeployCalldata(c, cfg)
	}
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return err
	}
	p := newProgress(c)
	if cfg.KMS == (common.Address{}) {
		kms, ok := setup.defaultKMS()
		if !ok {
			return &UsageError{Err: errors.New("--kms-contract is required (only --chain base has a known Phala KMS)")}
		}
		cfg.KMS = kms
		p.Printf("using Phala's KMS on %s: %s", setup.chain.Name, kms.Hex())
	}
	if cfg.AllowAnyDevice && cfg.DeviceID != ([32]byte{}) {
		p.Printf("warning: --allow-any-device is ignored because --device-id is given (Phala SDK rule); run `app allow-any-device` later if you want it")
	}
	signer, err := loadSigner(c)
	if err != nil {
		return err
	}
	var cl *deployer.Client
	opts, err := txOptionsFromFlags(c, func() *deployer.Client { return cl })
	if err != nil {
		return err
	}
	if cl, err = setup.dial(c.Context); err != nil {
		return err
	}
	defer cl.Close()

	if c.Bool("dry-run") {
		sim, err := cl.SimulateDeployApp(c.Context, signer.Address(), cfg, opts)
		if err != nil {
			return err
		}
		return printResult(c, appDeploySimDoc(sim, signer.Address()))
	}
	deploy := cl.DeployApp
	if c.Bool("two-step") {
		deploy = cl.DeployAppTwoStep
	}
	d, err := deploy(c.Context, signer, cfg, opts)
	if err != nil {
		return err
	}
	return printResult(c, appDeployDoc(d, txURL(cl, d.TxHash)))
}

// appDeploySimDoc is `app deploy --dry-run`'s result as printed.
func appDeploySimDoc(sim *deployer.AppDeploySimulation, from common.Address) *result {
	return newResult().
		set("dry_run", true).
		set("predicted_app_id", sim.PredictedAppID.Hex()).
		set("owner", sim.Owner.Hex()).
		set("deployer_address", from.Hex()).
		set("kms_contract", sim.KMS.Hex()).
		set("chain_id", sim.ChainID).
		set("nonce", sim.Nonce).
		set("gas_limit", sim.GasLimit).
		set("max_fee_per_gas_gwei", deployer.FormatGwei(sim.MaxFeePerGas)).
		set("max_cost_eth", deployer.FormatEther(sim.MaxCost)).
		set("to", sim.KMS.Hex()).
		set("data", hexutil.Encode(sim.Data))
}

// appDeployDoc is `app deploy`'s result as printed; url is the
// transaction's explorer link, if any.
func appDeployDoc(d *deployer.AppDeployment, url string) *result {
	r := newResult().
		set("app_id", d.AppID.Hex()).
		set("contract_address", d.ContractAddress.Hex()).
		set("deployer_address", d.DeployerAddress.Hex()).
		set("owner", d.Owner.Hex()).
		set("kms_contract", d.KMS.Hex()).
		set("tx_hash", d.TxHash.Hex())
	if d.ProxyTxHash != (common.Hash{}) {
		r.set("proxy_tx_hash", d.ProxyTxHash.Hex())
	}
	r.set("block_number", d.BlockNumber).set("gas_used", d.GasUsed).set("chain_id", d.ChainID)
	if url != "" {
		r.set("tx_url", url)
	}
	return r
}

func appInfoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "show an app contract's owner (an EOA, a Safe with its m-of-n, or another contract), flags, and whether a compose hash / device is allowed",
		ArgsUsage: "[APP_ID]",
		Description: "The app is --app-id or the one argument (flags go first: app info --json 0xAPP).\n" +
			"owner_kind says what the owner is, read from the chain: eoa, safe (with safe_version,\n" +
			"safe_threshold, safe_owners and safe_nonce), timelock, or contract.",
		Flags: withCommon([]cli.Flag{
			appIDFlag(),
			&cli.StringFlag{Name: "compose-hash", Usage: "also tell whether this compose hash is allowed"},
			&cli.StringFlag{Name: "device-id", Usage: "also tell whether this device id is allowed"},
			&cli.StringFlag{Name: "kms-contract", Usage: "also tell whether the app is registered on this KMS (default: Phala's KMS of --chain, when known)"},
		}, rpcFlags()),
		Action: appInfo,
	}
}

func appInfo(c *cli.Context) error {
	var q deployer.AppInfoQuery
	var err error
	if q.App, err = requiredAppID(c); err != nil {
		return err
	}
	if c.IsSet("compose-hash") {
		h, err := parseHash32("compose-hash", c.String("compose-hash"))
		if err != nil {
			return err
		}
		q.ComposeHash = &h
	}
	if c.IsSet("device-id") {
		h, err := parseHash32("device-id", c.String("device-id"))
		if err != nil {
			return err
		}
		q.DeviceID = &h
	}
	if c.IsSet("kms-contract") {
		if q.KMS, err = parseAddress("kms-contract", c.String("kms-contract")); err != nil {
			return err
		}
	}
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return err
	}
	if kms, ok := setup.defaultKMS(); ok && q.KMS == (common.Address{}) {
		q.KMS = kms
	}
	cl, err := setup.dial(c.Context)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.AppInfo(c.Context, q)
	if err != nil {
		return err
	}
	owner, err := cl.DescribeOwner(c.Context, info.Owner)
	if err != nil {
		return fmt.Errorf("read the owner %s: %w", info.Owner.Hex(), err)
	}
	return printResult(c, appInfoDoc(info, owner, c.Bool("json")))
}

// appInfoDoc is `app info`'s result as printed.
func appInfoDoc(info *deployer.AppInfo, owner *deployer.OwnerInfo, asJSON bool) *result {
	r := newResult().
		set("app_id", info.App.Hex()).
		set("chain_id", info.ChainID).
		set("owner", info.Owner.Hex())
	setOwnerInfo(r, owner)
	if info.PendingOwner != nil && *info.PendingOwner != (common.Address{}) {
		r.set("pending_owner", info.PendingOwner.Hex())
	}
	r.set("allow_any_device", info.AllowAnyDevice)
	r.set("require_tcb_up_to_date", optional(asJSON, info.RequireTcbUpToDate))
	r.set("upgrades_disabled", optional(asJSON, info.UpgradesDisabled))
	r.set("version", optional(asJSON, info.Version))
	r.set("implementation", info.Implementation.Hex())
	if info.ComposeHash != nil {
		r.set("compose_hash", info.ComposeHash.Hex()).set("compose_hash_allowed", optional(asJSON, info.ComposeHashAllowed))
	}
	if info.DeviceID != nil {
		r.set("device_id", info.DeviceID.Hex()).set("device_allowed", optional(asJSON, info.DeviceAllowed))
	}
	if info.Registered != nil {
		r.set("kms_contract", info.KMS.Hex()).set("registered", *info.Registered)
	}
	return r
}

// optional renders an unreadable value (older contract generations lack
// some getters) as null in JSON and "unknown" for people.
func optional[T any](asJSON bool, v *T) any {
	switch {
	case v != nil:
		return *v
	case asJSON:
		return nil
	default:
		return "unknown"
	}
}

// appHashCommand is compose add|remove and device add|remove.
func appHashCommand(name, usage, flag string, call func([32]byte) deployer.AppCall) *cli.Command {
	return appAdminCommand(name, usage, []cli.Flag{&cli.StringFlag{Name: flag, Usage: "32 bytes hex, 0x optional"}},
		func(c *cli.Context, r *result) (deployer.AppCall, error) {
			h, err := requiredHash32(c, flag)
			if err != nil {
				return deployer.AppCall{}, err
			}
			r.set(flagKey(flag), hexutil.Encode(h[:]))
			return call(h), nil
		})
}

// appBoolCommand is allow-any-device --allow and require-tcb --require.
func appBoolCommand(name, flag, usage string, call func(bool) deployer.AppCall) *cli.Command {
	return appAdminCommand(name, usage, []cli.Flag{&cli.BoolFlag{Name: flag, Value: true, Usage: "true or false (--" + flag + "=false)"}},
		func(c *cli.Context, r *result) (deployer.AppCall, error) {
			v := c.Bool(flag)
			r.set(flagKey(name), v)
			return call(v), nil
		})
}

func flagKey(flag string) string {
	out := []byte(flag)
	for i, b := range out {
		if b == '-' {
			out[i] = '_'
		}
	}
	return string(out)
}

// appAdminCommand builds an owner-only app command: validate every input,
// load the signer, then one batched preflight (with the owner check), send,
// wait, print.
func appAdminCommand(name, usage string, flags []cli.Flag, build func(*cli.Context, *result) (deployer.AppCall, error)) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "APP_ID",
		Flags:     withCommon(append([]cli.Flag{appIDFlag()}, flags...), rpcFlags(), signerFlags(), txFlags(), calldataFlags()),
		Action: func(c *cli.Context) error {
			app, err := requiredAppID(c)
			if err != nil {
				return err
			}
			r := newResult().set("app_id", app.Hex())
			call, err := build(c, r)
			if err != nil {
				return err
			}
			if c.Bool("calldata-only") {
				return emitSafeBatch(c, "cvmdeploy: "+call.Name, fmt.Sprintf("%s on AppAuth %s", call.Name, app.Hex()), safetx.Call{To: app, Data: call.Data})
			}
			setup, err := chainSetupFromFlags(c)
			if err != nil {
				return err
			}
			signer, err := loadSigner(c)
			if err != nil {
				return err
			}
			var cl *deployer.Client
			opts, err := txOptionsFromFlags(c, func() *deployer.Client { return cl })
			if err != nil {
				return err
			}
			if cl, err = setup.dial(c.Context); err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.SendAppCall(c.Context, signer, app, call, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", call.Name, err)
			}
			return printResult(c, appCallDoc(r, call.Name, signer.Address(), res, cl.ChainID(), txURL(cl, res.TxHash)))
		},
	}
}

// appDeployCalldata prints the factory call for a Safe to execute: the Safe
// pays and, unless --owner says otherwise, owns the new AppAuth.
func appDeployCalldata(c *cli.Context, cfg deployer.DeployAppConfig) error {
	if c.Bool("two-step") || c.Bool("dry-run") {
		return &UsageError{Err: errors.New("--calldata-only goes with the factory path only: drop --two-step and --dry-run")}
	}
	if cfg.Owner == (common.Address{}) {
		s := c.String("safe")
		if s == "" {
			return &UsageError{Err: errors.New("--calldata-only needs --owner or --safe: the account that will own the AppAuth (no signer is loaded)")}
		}
		owner, err := parseAddress("safe", s)
		if err != nil {
			return err
		}
		cfg.Owner = owner
	}
	if cfg.KMS == (common.Address{}) {
		if ch, err := deployer.LookupChain(c.String("chain")); err == nil && ch.KMS != (common.Address{}) {
			cfg.KMS = ch.KMS
		} else {
			return &UsageError{Err: errors.New("--kms-contract is required (only --chain base has a known Phala KMS)")}
		}
	}
	to, data, err := deployer.DeployAppCalldata(cfg)
	if err != nil {
		return &UsageError{Err: err}
	}
	return emitSafeBatch(c, "cvmdeploy: deploy AppAuth", fmt.Sprintf("deployAndRegisterApp on KMS %s; owner %s. The new app id is in the AppDeployedViaFactory event of the receipt.", to.Hex(), cfg.Owner.Hex()), safetx.Call{To: to, Data: data})
}

// appCallDoc completes an owner-only command's result (r holds the app id
// and the command's own input) once its transaction is mined.
func appCallDoc(r *result, function string, signer common.Address, res *deployer.TxResult, chainID uint64, url string) *result {
	r.set("function", function).
		set("signer", signer.Hex()).
		set("tx_hash", res.TxHash.Hex()).
		set("block_number", res.BlockNumber).
		set("gas_used", res.GasUsed).
		set("chain_id", chainID)
	if url != "" {
		r.set("tx_url", url)
	}
	return r
}

package commands

import (
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{
			Name:  "kms",
			Usage: "on-chain KMS contracts",
			Subcommands: []*cli.Command{{
				Name:  "deploy",
				Usage: "deploy a DstackKms proxy and the DstackApp implementation (local chains, testnets, self-hosted KMS)",
				Description: "Sends the App implementation, the KMS implementation, the KMS proxy and the optional setKmsInfo /\n" +
					"addOsImageHash calls with consecutive nonces, without waiting between them.\n" +
					"Prints kms_contract, app_implementation, kms_implementation, owner, chain_id and tx_hashes.",
				Flags: withCommon([]cli.Flag{
					&cli.StringFlag{Name: "owner", Usage: "owner of the KMS (default: the signer)"},
					&cli.StringFlag{Name: "root-key", Usage: "KMS root public key (secp256k1, 33 or 65 bytes hex) stored as kmsInfo.k256Pubkey"},
					&cli.StringSliceFlag{Name: "os-image-hash", Usage: "allow this OS image hash (32 bytes hex); repeatable"},
				}, rpcFlags(), signerFlags(), txFlags()),
				Action: kmsDeploy,
			}},
		}}
	})
}

func kmsDeploy(c *cli.Context) error {
	var cfg deployer.KMSDeployConfig
	var err error
	if c.IsSet("owner") {
		if cfg.Owner, err = parseAddress("owner", c.String("owner")); err != nil {
			return err
		}
		if cfg.Owner == (common.Address{}) {
			return &UsageError{Err: errors.New("--owner: the zero address cannot own the KMS: omit --owner to own it with the signer")}
		}
	}
	if s := c.String("root-key"); s != "" {
		b, err := decodeHex(s)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--root-key: %w", err)}
		}
		cfg.RootKey = b
	}
	for _, s := range c.StringSlice("os-image-hash") {
		h, err := parseHash32("os-image-hash", s)
		if err != nil {
			return err
		}
		cfg.OSImageHashes = append(cfg.OSImageHashes, h)
	}
	if err := cfg.Check(); err != nil {
		return &UsageError{Err: err}
	}
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return err
	}
	signer, err := loadSigner(c)
	if err != nil {
		return err
	}
	if cfg.Owner != (common.Address{}) && cfg.Owner != signer.Address() && (len(cfg.RootKey) > 0 || len(cfg.OSImageHashes) > 0) {
		return &UsageError{Err: errors.New("--root-key and --os-image-hash are set by the owner: drop --owner, or set them later with the owner's key")}
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
	d, err := cl.DeployKMS(c.Context, signer, cfg, opts)
	if err != nil {
		return err
	}
	return printResult(c, kmsDeployDoc(d))
}

// kmsDeployDoc is `kms deploy`'s result as printed.
func kmsDeployDoc(d *deployer.KMSDeployment) *result {
	hashes := make([]string, len(d.TxHashes))
	for i, h := range d.TxHashes {
		hashes[i] = h.Hex()
	}
	return newResult().
		set("kms_contract", d.KMSContract.Hex()).
		set("app_implementation", d.AppImplementation.Hex()).
		set("kms_implementation", d.KMSImplementation.Hex()).
		set("owner", d.Owner.Hex()).
		set("chain_id", d.ChainID).
		set("tx_hashes", hashes).
		set("block_number", d.BlockNumber).
		set("gas_used", d.GasUsed)
}

// decodeHex decodes hex with or without 0x.
func decodeHex(s string) ([]byte, error) {
	v := s
	if len(v) >= 2 && (v[:2] == "0x" || v[:2] == "0X") {
		v = v[2:]
	}
	if len(v)%2 != 0 || !isHex(v) {
		return nil, fmt.Errorf("%q is not hex", s)
	}
	return common.FromHex(v), nil
}

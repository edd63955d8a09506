package commands

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
)

func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{Name: "kms", Usage: "on-chain KMS contracts", Subcommands: []*cli.Command{kmsListCommand()}}}
	})
}

func kmsListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "the KMS contracts the API offers: chain, address, root key, nodes, whether each is the pinned one and holds the root key the API reports",
		Description: "Lists GET /kms (KMS contracts under API version 2026-06-23; the node listing of older versions is\n" +
			"grouped by contract). For the chain --rpc-url serves, each contract's kmsInfo().k256Pubkey is read\n" +
			"on-chain and compared with the root key the API reports; other chains say unchecked (null in --json).\n" +
			"Exit 7 when a contract's on-chain root key differs from the API's. --json prints\n" +
			"{contracts: [{slug, id, chain_id, contract_address, k256_pubkey, node_count, pinned, onchain_key_matches}]}.",
		Flags: withCommon([]cli.Flag{
			&cli.StringFlag{Name: "rpc-url", Aliases: []string{"r"}, EnvVars: []string{"ETH_RPC_URL"}, Usage: "JSON-RPC URL of one chain's node: its contracts get their on-chain root key checked"},
			&cli.StringFlag{Name: "chain", Aliases: []string{"c"}, EnvVars: []string{"CHAIN"}, Usage: "the chain --rpc-url must serve: name (ethereum, base, sepolia, base-sepolia, anvil) or id"},
		}, trustFlags(), apiFlags()),
		Action: runKMSList,
	}
}

func runKMSList(c *cli.Context) error {
	trust, err := trustFromFlags(c)
	if err != nil {
		return err
	}
	cfg := cvm.KMSListConfig{RPCURL: strings.TrimSpace(c.String("rpc-url"))}
	if name := c.String("chain"); name != "" {
		ch, err := deployer.LookupChain(name)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--chain: %w", err)}
		}
		if cfg.RPCURL == "" {
			return &UsageError{Err: fmt.Errorf("--chain %s needs --rpc-url: it names the chain of the node that checks root keys", name)}
		}
		cfg.ChainID = ch.ID
	}
	api, err := apiClient(c)
	if err != nil {
		return err
	}
	r := &cvm.Runner{API: api, Progress: newProgress(c).Printf, Trust: trust}
	res, err := r.ListKMS(c.Context, cfg)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		err = writeJSON(c.App.Writer, res)
	} else {
		err = printKMSList(c, res)
	}
	if err != nil {
		return err
	}
	var bad []string
	for _, k := range res.Contracts {
		if k.OnchainKeyMatches != nil && !*k.OnchainKeyMatches {
			bad = append(bad, fmt.Sprintf("%s (%s on chain %d)", kmsName(k), k.ContractAddress, k.ChainID))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: the API's root key is not the one on-chain for %s; do not trust what it reports for them", cvm.ErrKMSRootMismatch, strings.Join(bad, ", "))
	}
	return nil
}

func kmsName(k cvm.KMSContractStatus) string {
	switch {
	case k.Slug != "":
		return k.Slug
	case k.ID != nil:
		return *k.ID
	}
	return k.ContractAddress
}

// printKMSList writes one paragraph per contract, in sentences.
func printKMSList(c *cli.Context, res *cvm.KMSListResult) error {
	w := c.App.Writer
	if len(res.Contracts) == 0 {
		_, err := fmt.Fprintln(w, "The API lists no on-chain KMS contract.")
		return err
	}
	for i, k := range res.Contracts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		chain := fmt.Sprintf("chain %d", k.ChainID)
		if ch, ok := deployer.ChainByID(k.ChainID); ok {
			chain = ch.String()
		}
		id := "(no contract id: the API answered the node listing)"
		if k.ID != nil {
			id = *k.ID
		}
		fmt.Fprintf(w, "%s  %s\n", kmsName(k), id)
		fmt.Fprintf(w, "  contract     %s on %s, %d %s\n", k.ContractAddress, chain, k.NodeCount, plural(k.NodeCount, "node", "nodes"))
		key := "(none reported)"
		if k.K256Pubkey != nil {
			key = *k.K256Pubkey
		}
		fmt.Fprintf(w, "  root key     %s (as the API reports it)\n", key)
		switch {
		case k.Pinned:
			fmt.Fprintf(w, "  pinned       yes: the pinned KMS of %s\n", chain)
		case k.Pin != "":
			fmt.Fprintf(w, "  pinned       NO: the pinned KMS of %s is %s\n", chain, k.Pin)
		default:
			fmt.Fprintf(w, "  pinned       no: cvmdeploy pins no KMS on %s (name it with --kms-contract to use it)\n", chain)
		}
		switch {
		case k.OnchainKeyMatches == nil:
			fmt.Fprintf(w, "  on-chain key unchecked: no RPC node of %s (pass --rpc-url)\n", chain)
		case *k.OnchainKeyMatches:
			fmt.Fprintf(w, "  on-chain key matches: kmsInfo().k256Pubkey is the reported root key\n")
		default:
			fmt.Fprintf(w, "  on-chain key DOES NOT MATCH: %s\n", k.Note)
		}
	}
	if res.OffChain > 0 {
		fmt.Fprintf(w, "\n(plus Phala's off-chain cloud KMS, which has no contract)\n")
	}
	if res.Legacy {
		fmt.Fprintf(w, "(the API answered the node listing of an API version before 2026-06-23: contracts have no id)\n")
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

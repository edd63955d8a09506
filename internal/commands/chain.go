package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// privateKeyEnv is the variable the signing key is read from. Foundry reads
// no env var for the key; release workflows pass secrets as env, so we do.
const privateKeyEnv = "PRIVATE_KEY"

// rpcFlags are the node and chain flags of every chain command.
func rpcFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "rpc-url", Aliases: []string{"r"}, EnvVars: []string{"ETH_RPC_URL"}, Usage: "JSON-RPC URL of the chain's node"},
		&cli.StringFlag{Name: "chain", Aliases: []string{"c"}, EnvVars: []string{"CHAIN"}, Usage: "expected chain: name (ethereum, base, sepolia, base-sepolia, anvil) or id; checked against eth_chainId"},
		&cli.StringFlag{Name: "rpc-timeout", EnvVars: []string{"ETH_RPC_TIMEOUT"}, Value: "45", Usage: "timeout of one RPC request, in seconds or as a duration (30s)"},
	}
}

// signerFlags choose the signing key. The key itself is never a flag: it
// would leak to shell history and ps.
func signerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "private-key-file", Usage: "file holding the hex private key (default: the PRIVATE_KEY environment variable)"},
		&cli.BoolFlag{Name: "private-key-stdin", Usage: "read the hex private key from standard input"},
		&cli.StringFlag{Name: "keystore", EnvVars: []string{"ETH_KEYSTORE"}, Usage: "Web3 v3 keystore file"},
		&cli.StringFlag{Name: "account", EnvVars: []string{"ETH_KEYSTORE_ACCOUNT"}, Usage: "a keystore made by `cast wallet import NAME`: ~/.foundry/keystores/NAME"},
		&cli.StringFlag{Name: "password-file", EnvVars: []string{"ETH_PASSWORD"}, Usage: "file holding the keystore password (on a terminal it is asked for when omitted)"},
	}
}

// txFlags set fees, gas, nonce and waiting, with Foundry's names.
func txFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "gas-price", EnvVars: []string{"ETH_GAS_PRICE"}, Usage: "cap on maxFeePerGas (legacy: the gas price); wei or with a unit: 10gwei"},
		&cli.StringFlag{Name: "priority-gas-price", EnvVars: []string{"ETH_PRIORITY_GAS_PRICE"}, Usage: "priority fee (tip); wei or with a unit: 1gwei"},
		&cli.Uint64Flag{Name: "gas-limit", EnvVars: []string{"ETH_GAS_LIMIT"}, Usage: "fixed gas limit; skips estimation (and its revert check)"},
		&cli.BoolFlag{Name: "legacy", Usage: "send a legacy (type 0) transaction"},
		&cli.Uint64Flag{Name: "nonce", Usage: "nonce to use instead of the account's pending nonce"},
		&cli.Uint64Flag{Name: "confirmations", Value: 1, Usage: "blocks to wait for, counting the one holding the transaction"},
		&cli.StringFlag{Name: "timeout", EnvVars: []string{"ETH_TIMEOUT"}, Value: "120", Usage: "how long to wait for the receipt, in seconds or as a duration (2m)"},
		&cli.StringFlag{Name: "replace-after", Value: defaultReplaceAfter, Usage: "replace a transaction not mined after this long (seconds or a duration) with one at the same nonce and fees raised 12.5 %; 0 turns it off. Every variant is journaled first, and whichever is mined counts"},
		&cli.StringFlag{Name: "max-fee", Usage: "highest max fee per gas a replacement may pay; wei or with a unit: 50gwei (default: --gas-price if set, else 3 × the first transaction's max fee)"},
	}
}

// defaultReplaceAfter replaces a stuck transaction once within the default
// --timeout of 120 s: 5 blocks on Ethereum, 30 on Base, while the fee cap
// (2 × base fee + tip) only falls behind after a sustained fee spike.
const defaultReplaceAfter = "60"

// chainSetup is what the chain flags say, validated before any RPC.
type chainSetup struct {
	rpcURL     string
	chain      *deployer.Chain // nil without --chain
	rpcTimeout time.Duration
}

func chainSetupFromFlags(c *cli.Context) (*chainSetup, error) {
	s := &chainSetup{rpcURL: strings.TrimSpace(c.String("rpc-url"))}
	if s.rpcURL == "" {
		return nil, &UsageError{Err: errors.New("no RPC URL: pass --rpc-url or set ETH_RPC_URL")}
	}
	if name := c.String("chain"); name != "" {
		ch, err := deployer.LookupChain(name)
		if err != nil {
			return nil, &UsageError{Err: fmt.Errorf("--chain: %w", err)}
		}
		s.chain = &ch
	}
	d, err := parseSeconds(c.String("rpc-timeout"))
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("--rpc-timeout: %w", err)}
	}
	s.rpcTimeout = d
	return s, nil
}

// dial connects; with --chain, every preflight compares eth_chainId.
func (s *chainSetup) dial(ctx context.Context) (*deployer.Client, error) {
	cl, err := deployer.Dial(ctx, s.rpcURL)
	if err != nil {
		return nil, err
	}
	cl.CallTimeout = s.rpcTimeout
	if s.chain != nil {
		cl.ExpectChainID = s.chain.ID
	}
	return cl, nil
}

// defaultKMS is the known KMS of --chain, if any.
func (s *chainSetup) defaultKMS() (common.Address, bool) {
	if s.chain == nil || s.chain.KMS == (common.Address{}) {
		return common.Address{}, false
	}
	return s.chain.KMS, true
}

// loadSigner reads the key from the one source the flags or PRIVATE_KEY name.
func loadSigner(c *cli.Context) (deployer.Signer, error) {
	cfg := deployer.SignerConfig{
		PrivateKeyEnv: os.Getenv(privateKeyEnv),
		KeyFile:       c.String("private-key-file"),
		Keystore:      c.String("keystore"),
		PasswordFile:  c.String("password-file"),
	}
	if name := c.String("account"); name != "" {
		ks, err := foundryKeystore(name)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		if cfg.Keystore != "" {
			return nil, &UsageError{Err: errors.New("--account and --keystore both name a keystore: pass one")}
		}
		cfg.Keystore = ks
	}
	if c.Bool("private-key-stdin") {
		cfg.Stdin = c.App.Reader
	}
	// Like cast, ask for a keystore password on a terminal; off a terminal
	// the missing --password-file is an error, never a hang.
	if tty, ok := c.App.Reader.(*os.File); ok && cfg.Keystore != "" && cfg.PasswordFile == "" && stdinIsTerminal(c) {
		ks := cfg.Keystore
		cfg.PasswordPrompt = func() (string, error) {
			return readPassword(c.Context, tty, c.App.ErrWriter, fmt.Sprintf("Password for keystore %s: ", ks))
		}
	}
	s, err := deployer.LoadSigner(cfg)
	if errors.Is(err, context.Canceled) {
		return nil, err // Ctrl-C at the password prompt
	}
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return s, nil
}

// txOptionsFromFlags builds the transaction options; sent hashes are printed
// on stderr at once, with an explorer link on known chains.
func txOptionsFromFlags(c *cli.Context, cl func() *deployer.Client) (deployer.TxOptions, error) {
	var o deployer.TxOptions
	var err error
	if s := c.String("gas-price"); s != "" {
		if o.MaxFee, err = deployer.ParseWei(s); err != nil {
			return o, &UsageError{Err: fmt.Errorf("--gas-price: %w", err)}
		}
	}
	if s := c.String("priority-gas-price"); s != "" {
		if o.PriorityFee, err = deployer.ParseWei(s); err != nil {
			return o, &UsageError{Err: fmt.Errorf("--priority-gas-price: %w", err)}
		}
	}
	o.Legacy = c.Bool("legacy")
	o.GasLimit = c.Uint64("gas-limit")
	if c.IsSet("nonce") {
		n := c.Uint64("nonce")
		o.Nonce = &n
	}
	o.Confirmations = c.Uint64("confirmations")
	if o.Confirmations == 0 {
		return o, &UsageError{Err: errors.New("--confirmations must be at least 1")}
	}
	if o.Timeout, err = parseSeconds(c.String("timeout")); err != nil {
		return o, &UsageError{Err: fmt.Errorf("--timeout: %w", err)}
	}
	if s := strings.TrimSpace(c.String("replace-after")); s != "0" && s != "0s" && s != "off" {
		if o.ReplaceAfter, err = parseSeconds(s); err != nil {
			return o, &UsageError{Err: fmt.Errorf("--replace-after: %w (0 turns replacement off)", err)}
		}
	}
	if s := c.String("max-fee"); s != "" {
		if o.MaxFeeCap, err = deployer.ParseWei(s); err != nil {
			return o, &UsageError{Err: fmt.Errorf("--max-fee: %w", err)}
		}
	}
	if err := o.Check(); err != nil {
		return o, &UsageError{Err: err}
	}
	p := newProgress(c)
	o.OnEvent = func(e deployer.TxEvent) {
		if e.Kind != deployer.TxMined {
			p.Printf("%s", e)
		}
	}
	o.OnSent = func(h common.Hash) {
		line := "tx sent: " + h.Hex()
		if ch, ok := deployer.ChainByID(cl().ChainID()); ok && ch.TxURL(h) != "" {
			line += " (" + ch.TxURL(h) + ")"
		}
		p.Printf("%s", line)
	}
	return o, nil
}

// parseSeconds reads "120" (seconds, as Foundry) or a Go duration ("2m").
func parseSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n == 0 {
			return 0, errors.New("must be positive")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive number of seconds or a duration like 90s", s)
	}
	return d, nil
}

// parseAddress validates an address flag: 40 hex characters, 0x optional;
// mixed case must be a valid EIP-55 checksum (a typo guard).
func parseAddress(flag, s string) (common.Address, error) {
	v := strings.TrimSpace(s)
	if !common.IsHexAddress(v) {
		return common.Address{}, &UsageError{Err: fmt.Errorf("--%s: %q is not an address (40 hex characters, 0x optional)", flag, s)}
	}
	a := common.HexToAddress(v)
	body := strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
	if body != strings.ToLower(body) && body != strings.ToUpper(body) && "0x"+body != a.Hex() {
		return common.Address{}, &UsageError{Err: fmt.Errorf("--%s: %q has an invalid EIP-55 checksum: check for a typo, or write it in lower case", flag, s)}
	}
	return a, nil
}

// parseAppID accepts an app id as an address, with or without 0x, or with
// the app_ prefix the Phala Cloud API uses for CVM ids.
func parseAppID(flag, s string) (common.Address, error) {
	return parseAddress(flag, strings.TrimPrefix(strings.TrimSpace(s), "app_"))
}

// parseHash32 validates a 32-byte hex value (compose hash, device id, OS
// image hash): exactly 64 hex characters, 0x optional.
func parseHash32(flag, s string) ([32]byte, error) {
	v := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	var h [32]byte
	if len(v) != 64 {
		return h, &UsageError{Err: fmt.Errorf("--%s: %q is not 32 bytes of hex (64 hex characters, 0x optional)", flag, s)}
	}
	b := common.FromHex(v)
	if len(b) != 32 || !isHex(v) {
		return h, &UsageError{Err: fmt.Errorf("--%s: %q is not valid hex", flag, s)}
	}
	copy(h[:], b)
	return h, nil
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// requiredAddress reads a mandatory address flag.
func requiredAddress(c *cli.Context, flag string) (common.Address, error) {
	if !c.IsSet(flag) {
		return common.Address{}, &UsageError{Err: fmt.Errorf("--%s is required", flag)}
	}
	return parseAddress(flag, c.String(flag))
}

// requiredAppID reads the mandatory app id: `app info 0xAPP` or
// `app info --app-id 0xAPP`.
func requiredAppID(c *cli.Context) (common.Address, error) {
	s, err := flagOrArg(c, "app-id", "the app id (the app contract address)")
	if err != nil {
		return common.Address{}, err
	}
	return parseAppID("app-id", s)
}

// flagOrArg reads a value users give either as the command's one
// positional argument or with --flag. Flags must come before the argument
// (urfave/cli stops parsing flags at the first argument), so a flag found
// after it gets a hint instead of a confusing "unexpected argument".
func flagOrArg(c *cli.Context, flag, what string) (string, error) {
	args := c.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return "", &UsageError{Err: fmt.Errorf("%q comes after an argument: flags go before positional arguments (%s [flags] %s)", a, c.Command.HelpName, strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))}
		}
	}
	flagVal := strings.TrimSpace(c.String(flag))
	switch {
	case len(args) > 1:
		return "", &UsageError{Err: fmt.Errorf("want at most one argument (%s), got %d: %s", what, len(args), strings.Join(args, " "))}
	case len(args) == 1 && flagVal != "" && flagVal != strings.TrimSpace(args[0]):
		return "", &UsageError{Err: fmt.Errorf("%s given twice, as %q and --%s %q: give one", what, args[0], flag, flagVal)}
	case len(args) == 1:
		return strings.TrimSpace(args[0]), nil
	case flagVal != "":
		return flagVal, nil
	}
	return "", &UsageError{Err: fmt.Errorf("%s is required: give it as the argument or with --%s", what, flag)}
}

// requiredHash32 reads a mandatory 32-byte flag.
func requiredHash32(c *cli.Context, flag string) ([32]byte, error) {
	if !c.IsSet(flag) {
		return [32]byte{}, &UsageError{Err: fmt.Errorf("--%s is required", flag)}
	}
	return parseHash32(flag, c.String(flag))
}

// txURL is the explorer link of h on the client's chain, or "".
func txURL(cl *deployer.Client, h common.Hash) string {
	if ch, ok := deployer.ChainByID(cl.ChainID()); ok {
		return ch.TxURL(h)
	}
	return ""
}

// foundryKeystore is the file `cast wallet import NAME` writes, as Foundry's
// --account reads it.
func foundryKeystore(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("--account %q: a keystore name, as listed by `cast wallet list`", name)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("--account: %w", err)
	}
	return filepath.Join(home, ".foundry", "keystores", name), nil
}

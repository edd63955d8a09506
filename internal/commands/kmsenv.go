package commands

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/urfave/cli/v2"

	"github.com/cvmdeploy/cvmdeploy/kms"
)

// Commands of the kms package: `env encrypt` and `compose hash` work
// offline; `kms verify-pubkey` checks an env-encryption key against a KMS
// root key given on the command line or read from the chain.
//
// Exit codes: 2 for malformed input (nothing was encrypted or sent), 7 when
// the key was signed by another key, a v1 signature is stale, or a compose
// does not match --expect; chain errors as in chain.go.
func init() {
	registerCommands(func() []*cli.Command {
		return []*cli.Command{envCommand(), composeCommand()}
	})
	registerCommands(func() []*cli.Command {
		return []*cli.Command{{Name: "kms", Usage: "on-chain KMS contracts", Subcommands: []*cli.Command{kmsVerifyPubkeyCommand()}}}
	})
}

// listFlag collects every occurrence of a repeatable flag verbatim. urfave's
// StringSliceFlag would split "A=x,y" at the comma and trim spaces, which
// corrupts env values.
type listFlag struct{ values []string }

func (l *listFlag) Set(v string) error { l.values = append(l.values, v); return nil }
func (l *listFlag) String() string     { return "" }

// repeatableFlag is a GenericFlag holding a listFlag. urfave parses a
// subcommand's flags more than once with the same flag objects, so Apply
// installs a fresh list each time; otherwise every value would be counted
// twice.
type repeatableFlag struct{ cli.GenericFlag }

func (f *repeatableFlag) Apply(set *flag.FlagSet) error {
	f.Value = &listFlag{}
	return f.GenericFlag.Apply(set)
}

func newRepeatableFlag(name, usage string) cli.Flag {
	return &repeatableFlag{cli.GenericFlag{Name: name, Usage: usage, Value: &listFlag{}}}
}

// envInputFlags are the env flags of every command that sends an env:
// --env-file (repeatable) and --env KEY=VALUE (repeatable), later wins.
func envInputFlags() []cli.Flag {
	return []cli.Flag{
		newRepeatableFlag("env-file", "read variables from this .env file; repeatable, later files win"),
		newRepeatableFlag("env", "set KEY=VALUE, or KEY alone to take its value from the environment (wins over files); repeatable. Values on the command line are visible in ps: prefer KEY alone or --env-file"),
	}
}

// envInputs returns the --env-file and --env values, in command-line order.
func envInputs(c *cli.Context) (files, kvs []string) {
	if l, ok := c.Generic("env-file").(*listFlag); ok {
		files = l.values
	}
	if l, ok := c.Generic("env").(*listFlag); ok {
		kvs = l.values
	}
	return files, kvs
}

// loadEnvEntries reads and checks the env flags, warning on stderr about
// values that godotenv's $VAR expansion rewrote.
func loadEnvEntries(c *cli.Context) ([]kms.EnvEntry, error) {
	files, kvs := envInputs(c)
	entries, err := kms.LoadEnvEntries(files, kvs)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	p := newProgress(c)
	for _, e := range entries {
		if e.Interpolated {
			p.Printf("warning: %s: %s: $NAME / ${NAME} in the value was replaced (single-quote the value to keep '$' as is)", e.Source, e.Key)
		}
	}
	return entries, nil
}

func envCommand() *cli.Command {
	return &cli.Command{
		Name:  "env",
		Usage: "the app's environment variables (secrets)",
		Subcommands: []*cli.Command{{
			Name:  "encrypt",
			Usage: "encrypt variables to an app's env-encryption public key, as the official SDK does",
			Description: "Reads --env-file files in order, then --env KEY=VALUE flags, or --env KEY, which takes the\n" +
				"value from the environment (later wins; a key keeps the position where it first appeared),\n" +
				"checks the dstack limits, and prints the encrypted env (hex) on stdout. Verify the public key\n" +
				"first (kms verify-pubkey): this command trusts it.",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "pubkey", Usage: "the app's X25519 env-encryption public key, 32 bytes hex (0x optional)"},
			}, append(envInputFlags(), jsonFlag(), quietFlag())...),
			Action: envEncrypt,
		}},
	}
}

func envEncrypt(c *cli.Context) error {
	if c.NArg() > 0 {
		return &UsageError{Err: fmt.Errorf("unexpected argument %q: variables go in --env-file or --env", c.Args().First())}
	}
	pub := strings.TrimSpace(c.String("pubkey"))
	if pub == "" {
		return &UsageError{Err: errors.New("--pubkey is required: the app's env-encryption public key")}
	}
	if _, err := kms.ParseX25519PublicKey(pub); err != nil {
		return &UsageError{Err: fmt.Errorf("--pubkey: %w", err)}
	}
	entries, err := loadEnvEntries(c)
	if err != nil {
		return err
	}
	envs := kms.Vars(entries)
	enc, err := kms.EncryptEnv(envs, pub)
	if err != nil {
		if errors.Is(err, kms.ErrInvalidInput) {
			return &UsageError{Err: err}
		}
		return err
	}
	keys := kms.Keys(envs)
	newProgress(c).Printf("encrypted %d variable(s) [%s] to %s", len(keys), strings.Join(keys, " "), pub)
	if c.Bool("json") {
		return printResult(c, newResult().set("encrypted_env", enc).set("env_keys", keys))
	}
	_, err = fmt.Fprintln(c.App.Writer, enc)
	return err
}

// maxComposeBytes refuses files that cannot be an app compose (the API
// itself takes far less).
const maxComposeBytes = 64 << 20

func composeCommand() *cli.Command {
	return &cli.Command{
		Name:  "compose",
		Usage: "app compose manifests",
		Subcommands: []*cli.Command{{
			Name:      "hash",
			Usage:     "compute the compose hash of an app-compose.json, as the official getComposeHash does",
			ArgsUsage: "FILE.json (- for standard input)",
			Description: "For checking a compose the server returned: the hash to whitelist on chain is always the\n" +
				"compose_hash the server returns, which covers fields the server adds to your compose.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "normalize", Usage: "apply getComposeHash's normalisation (drop the unused runner's script, an empty pre_launch_script)"},
				&cli.StringFlag{Name: "expect", Usage: "fail (exit 7) unless the file hashes to this hash, with or without normalisation"},
				jsonFlag(),
			},
			Action: composeHash,
		}},
	}
}

func composeHash(c *cli.Context) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return &UsageError{Err: fmt.Errorf("%q comes after the file: flags go before it (cvmdeploy compose hash [flags] FILE)", a)}
		}
	}
	if c.NArg() != 1 {
		return &UsageError{Err: errors.New("want exactly one argument: the app-compose JSON file, or - for standard input")}
	}
	name := c.Args().First()
	data, err := readInput(c, name)
	if err != nil {
		return &UsageError{Err: err}
	}
	h, err := kms.ComposeHash(data, c.Bool("normalize"))
	if err != nil {
		return &UsageError{Err: fmt.Errorf("%s: %w", name, err)}
	}
	if want := c.String("expect"); want != "" {
		if err := kms.CheckComposeHash(data, want); err != nil {
			if errors.Is(err, kms.ErrInvalidInput) {
				return &UsageError{Err: fmt.Errorf("--expect: %w", err)}
			}
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if c.Bool("json") {
		return printResult(c, newResult().set("compose_hash", h))
	}
	_, err = fmt.Fprintln(c.App.Writer, h)
	return err
}

// readInput reads a file, or standard input for "-", up to maxComposeBytes.
func readInput(c *cli.Context, name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = c.App.Reader
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxComposeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxComposeBytes {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, maxComposeBytes>>20)
	}
	return data, nil
}

func kmsVerifyPubkeyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify-pubkey",
		Usage: "check that an app's env-encryption public key was signed by the KMS root key",
		Description: "Recovers the key that signed --pubkey for --app-id and compares it with the KMS root key:\n" +
			"--kms-root-key, or kmsInfo().k256Pubkey read from --kms-contract (default: Phala's KMS of --chain)\n" +
			"through --rpc-url. With --timestamp the signature is the v1 (timestamped) one and must be fresh.\n" +
			"Exit 0: verified; 7: signed by another key, or stale; 2: malformed input.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "app-id", Usage: "app id, 20 bytes hex (0x optional)"},
			&cli.StringFlag{Name: "pubkey", Usage: "the app's X25519 env-encryption public key, 32 bytes hex"},
			&cli.StringFlag{Name: "signature", Usage: "the KMS signature of the key, 65 bytes hex r‖s‖v"},
			&cli.StringFlag{Name: "timestamp", Usage: "signing time (Unix seconds) of a v1 signature; omit for the legacy signature"},
			&cli.DurationFlag{Name: "max-age", Value: kms.DefaultMaxAge, Usage: "oldest v1 signature accepted"},
			&cli.StringFlag{Name: "kms-root-key", Usage: "the KMS root key, secp256k1, 33 or 65 bytes hex (instead of reading it on-chain)"},
			&cli.StringFlag{Name: "kms-contract", Usage: "the DstackKms contract to read kmsInfo() from (default: Phala's KMS of --chain, when known)"},
		}, append(rpcFlags(), jsonFlag(), quietFlag())...),
		Action: kmsVerifyPubkey,
	}
}

func kmsVerifyPubkey(c *cli.Context) error {
	if c.NArg() > 0 {
		return &UsageError{Err: fmt.Errorf("unexpected argument %q", c.Args().First())}
	}
	p := kms.VerifyParams{
		AppID:     strings.TrimSpace(c.String("app-id")),
		PublicKey: strings.TrimSpace(c.String("pubkey")),
		Signature: strings.TrimSpace(c.String("signature")),
		MaxAge:    c.Duration("max-age"),
	}
	// Check every local input before any network access.
	for _, name := range []string{"app-id", "pubkey", "signature"} {
		if strings.TrimSpace(c.String(name)) == "" {
			return &UsageError{Err: fmt.Errorf("--%s is required", name)}
		}
	}
	if _, err := kms.ParseAppID(p.AppID); err != nil {
		return &UsageError{Err: fmt.Errorf("--app-id: %w", err)}
	}
	if _, err := kms.ParseX25519PublicKey(p.PublicKey); err != nil {
		return &UsageError{Err: fmt.Errorf("--pubkey: %w", err)}
	}
	if _, err := kms.ParseSignature(p.Signature); err != nil {
		return &UsageError{Err: fmt.Errorf("--signature: %w", err)}
	}
	if s := strings.TrimSpace(c.String("timestamp")); s != "" {
		ts, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--timestamp: %q is not Unix seconds", s)}
		}
		p.Timestamp = &ts
	}
	if p.MaxAge <= 0 {
		return &UsageError{Err: errors.New("--max-age must be positive")}
	}

	root, source, err := kmsRootKeyFromFlags(c)
	if err != nil {
		return err
	}
	p.RootKey = root
	if err := kms.VerifyAppKey(p); err != nil {
		if errors.Is(err, kms.ErrInvalidInput) {
			return &UsageError{Err: err}
		}
		return err
	}
	compressed, _ := kms.NormalizeRootKey(root) // VerifyAppKey checked it
	version := "legacy"
	if p.Timestamp != nil {
		version = "v1"
	}
	newProgress(c).Printf("✓ the env-encryption key is signed by the KMS root key (%s signature)", version)
	return printResult(c, verifyPubkeyDoc(compressed, source, version, p.Timestamp))
}

// verifyPubkeyDoc is `kms verify-pubkey`'s result as printed.
func verifyPubkeyDoc(rootKey []byte, source, version string, timestamp *uint64) *result {
	r := newResult().
		set("verified", true).
		set("kms_root_key", "0x"+common.Bytes2Hex(rootKey)).
		set("root_key_source", source).
		set("signature_version", version)
	if timestamp != nil {
		r.set("timestamp", *timestamp)
	}
	return r
}

// kmsRootKeyFromFlags returns the KMS root key from --kms-root-key, or reads
// kmsInfo().k256Pubkey on chain, and says where it came from.
func kmsRootKeyFromFlags(c *cli.Context) ([]byte, string, error) {
	rootHex := strings.TrimSpace(c.String("kms-root-key"))
	contract := strings.TrimSpace(c.String("kms-contract"))
	if rootHex != "" {
		if contract != "" {
			return nil, "", &UsageError{Err: errors.New("give --kms-root-key or --kms-contract, not both")}
		}
		b, err := decodeHex(rootHex)
		if err != nil {
			return nil, "", &UsageError{Err: fmt.Errorf("--kms-root-key: %w", err)}
		}
		if _, err := kms.NormalizeRootKey(b); err != nil {
			return nil, "", &UsageError{Err: fmt.Errorf("--kms-root-key: %w", err)}
		}
		return b, "--kms-root-key", nil
	}
	if contract == "" && c.String("chain") == "" {
		return nil, "", &UsageError{Err: errors.New("no KMS root key: pass --kms-root-key, or --rpc-url with --kms-contract (or --chain base)")}
	}
	setup, err := chainSetupFromFlags(c)
	if err != nil {
		return nil, "", err
	}
	var addr common.Address
	if contract != "" {
		if addr, err = parseAddress("kms-contract", contract); err != nil {
			return nil, "", err
		}
	} else {
		var ok bool
		if addr, ok = setup.defaultKMS(); !ok {
			return nil, "", &UsageError{Err: errors.New("--kms-contract is required (only --chain base has a known Phala KMS)")}
		}
	}
	cl, err := setup.dial(c.Context)
	if err != nil {
		return nil, "", err
	}
	defer cl.Close()
	newProgress(c).Printf("reading kmsInfo() of %s", addr.Hex())
	root, err := cl.KMSRootKey(c.Context, addr)
	if err != nil {
		return nil, "", err
	}
	if _, err := kms.NormalizeRootKey(root); err != nil {
		// Not the user's input: the chain holds no usable key.
		return nil, "", withCode(ExitVerify, fmt.Errorf("the KMS %s on chain: %w", addr.Hex(), err))
	}
	return root, fmt.Sprintf("kmsInfo() of %s on chain %d", addr.Hex(), cl.ChainID()), nil
}

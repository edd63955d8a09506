package deployer

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// Signer signs transactions for one address. SignTx takes a context because
// a remote signer (a KMS, a hardware wallet bridge) does I/O.
type Signer interface {
	Address() common.Address
	SignTx(ctx context.Context, tx *types.Transaction, chainID *big.Int) (*types.Transaction, error)
}

// ErrNoSigner is returned by SignerConfig.Check when no key source is set.
var ErrNoSigner = errors.New("no signer: set PRIVATE_KEY, or pass --private-key-file, --private-key-stdin or --keystore with --password-file")

// SignerConfig says where the signing key comes from. Exactly one of
// PrivateKeyEnv, KeyFile, Stdin and Keystore must be set. The struct holds
// secrets, so it never prints them: see Format.
type SignerConfig struct {
	// PrivateKeyEnv is the value of the PRIVATE_KEY variable (hex, 0x optional).
	PrivateKeyEnv string
	// KeyFile is a file holding the hex key; surrounding whitespace is ignored.
	KeyFile string
	// Stdin, when set, is read to the end for the hex key (--private-key-stdin).
	Stdin io.Reader
	// Keystore is a Web3 Secret Storage (v3) JSON file, decrypted with the
	// content of PasswordFile (trailing newline removed) or with Password.
	Keystore     string
	PasswordFile string
	Password     string
	// PasswordPrompt asks for the keystore password when neither
	// PasswordFile nor Password is set. The CLI sets it only when stdin is a
	// terminal, so a job off a terminal fails at once instead of hanging.
	PasswordPrompt func() (string, error)
}

// sources names the key sources that are set, in flag terms.
func (c SignerConfig) sources() []string {
	var s []string
	if c.PrivateKeyEnv != "" {
		s = append(s, "PRIVATE_KEY")
	}
	if c.KeyFile != "" {
		s = append(s, "--private-key-file")
	}
	if c.Stdin != nil {
		s = append(s, "--private-key-stdin")
	}
	if c.Keystore != "" {
		s = append(s, "--keystore")
	}
	return s
}

// Check verifies that exactly one key source is set and that a keystore has a
// password source. It reads no file.
func (c SignerConfig) Check() error {
	src := c.sources()
	switch {
	case len(src) == 0:
		return ErrNoSigner
	case len(src) > 1:
		return fmt.Errorf("several signers given (%s): use exactly one", strings.Join(src, ", "))
	}
	if c.Keystore == "" && (c.PasswordFile != "" || c.Password != "") {
		return errors.New("--password-file is only used with --keystore")
	}
	if c.Keystore != "" && c.PasswordFile == "" && c.Password == "" && c.PasswordPrompt == nil {
		return errors.New("--keystore needs --password-file (or ETH_PASSWORD naming the password file) when there is no terminal to type the password on")
	}
	return nil
}

// String describes the key source without any secret.
func (c SignerConfig) String() string {
	src := c.sources()
	if len(src) == 0 {
		return "SignerConfig{no source}"
	}
	return "SignerConfig{source: " + strings.Join(src, ", ") + "}"
}

// GoString is the %#v form; it hides secrets like String.
func (c SignerConfig) GoString() string { return c.String() }

// Format makes every fmt verb print String, so no verb (%x, %+v …) reaches
// the key or the password through reflection.
func (c SignerConfig) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// LoadSigner builds the signer cfg describes. Errors name the source and the
// problem, never the key material.
func LoadSigner(cfg SignerConfig) (Signer, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	switch {
	case cfg.PrivateKeyEnv != "":
		return keySignerFromHex(cfg.PrivateKeyEnv, "PRIVATE_KEY")
	case cfg.KeyFile != "":
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--private-key-file: %w", err)
		}
		return keySignerFromHex(string(b), "--private-key-file "+cfg.KeyFile)
	case cfg.Stdin != nil:
		// A hex key is 66 bytes; 4 KiB is plenty and bounds a mistaken pipe.
		b, err := io.ReadAll(io.LimitReader(cfg.Stdin, 4096))
		if err != nil {
			return nil, fmt.Errorf("--private-key-stdin: reading stdin: %w", err)
		}
		return keySignerFromHex(string(b), "--private-key-stdin")
	default:
		return keystoreSigner(cfg)
	}
}

func keystoreSigner(cfg SignerConfig) (Signer, error) {
	js, err := os.ReadFile(cfg.Keystore)
	if err != nil {
		return nil, fmt.Errorf("--keystore: %w", err)
	}
	pass := cfg.Password
	source := "the password"
	switch {
	case cfg.PasswordFile != "":
		source = "--password-file"
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		// Editors add a final newline; Foundry strips it too.
		pass = strings.TrimRight(string(b), "\r\n")
	case pass == "" && cfg.PasswordPrompt != nil:
		if pass, err = cfg.PasswordPrompt(); err != nil {
			return nil, fmt.Errorf("--keystore %s: reading the password: %w", cfg.Keystore, err)
		}
		source = "the password typed"
	}
	// DecryptKey avoids keystore.NewKeyStore, which starts a directory watcher.
	key, err := keystore.DecryptKey(js, pass)
	if err != nil {
		if errors.Is(err, keystore.ErrDecrypt) {
			return nil, fmt.Errorf("--keystore %s: wrong password (check %s)", cfg.Keystore, source)
		}
		// The error comes from JSON or KDF parameters, not from the key.
		return nil, fmt.Errorf("--keystore %s: not a Web3 v3 keystore file: %w", cfg.Keystore, err)
	}
	return &keySigner{addr: key.Address, key: key.PrivateKey}, nil
}

// keySignerFromHex parses a hex key. The error never includes the input or
// the parser's message (geth's names the offending character).
func keySignerFromHex(s, source string) (Signer, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) != 64 {
		return nil, fmt.Errorf("%s: a private key is 64 hex characters (32 bytes), with or without 0x; got %d characters", source, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: the private key is not valid hex", source)
	}
	key, err := crypto.ToECDSA(b)
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid secp256k1 private key", source)
	}
	return &keySigner{addr: crypto.PubkeyToAddress(key.PublicKey), key: key}, nil
}

// NewKeySigner wraps an in-memory key (tests, the local testnet).
func NewKeySigner(key *ecdsa.PrivateKey) Signer {
	return &keySigner{addr: crypto.PubkeyToAddress(key.PublicKey), key: key}
}

// keySigner signs with a local secp256k1 key.
type keySigner struct {
	addr common.Address
	key  *ecdsa.PrivateKey
}

func (s *keySigner) Address() common.Address { return s.addr }

func (s *keySigner) SignTx(ctx context.Context, tx *types.Transaction, chainID *big.Int) (*types.Transaction, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if chainID == nil || chainID.Sign() <= 0 {
		return nil, errors.New("sign: a chain id is required (EIP-155)")
	}
	return types.SignTx(tx, types.LatestSignerForChainID(chainID), s.key)
}

// SignHash signs a 32-byte digest: r ‖ s ‖ v with v 0 or 1. Safe owner
// signatures and delegate registrations are signed this way (no
// transaction, nothing sent).
func (s *keySigner) SignHash(ctx context.Context, h common.Hash) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return crypto.Sign(h[:], s.key)
}

// String shows the address only.
func (s *keySigner) String() string { return "signer(" + s.addr.Hex() + ")" }

// GoString is the %#v form.
func (s *keySigner) GoString() string { return s.String() }

// Format routes every verb to String so reflection never reaches the key.
func (s *keySigner) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

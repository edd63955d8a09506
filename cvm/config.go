package cvm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// ErrInvalidConfig is wrapped by every error about what the user supplied:
// flags, the compose file, the env. Nothing was sent when it is returned.
var ErrInvalidConfig = errors.New("invalid deployment input")

// Config is one deployment as the user asked for it.
type Config struct {
	// Name of the CVM (5 to 63 characters, hostname rules).
	Name string
	// ComposeFile is the docker-compose file's path.
	ComposeFile string
	// PreLaunchScriptFile is an optional script run before compose starts.
	PreLaunchScriptFile string
	// EnvFiles and EnvFlags ("KEY=VALUE") are the app's secrets; later wins.
	EnvFiles []string
	EnvFlags []string
	// KMS is "base", "ethereum", "phala", a KMS contract's slug or "kc_…" id,
	// or a KMS node's slug.
	KMS string

	InstanceType  string
	NodeID        *int64
	Image         string
	Region        string
	DiskSize      int // GB, 0 = the service's default
	PublicLogs    bool
	PublicSysinfo bool
	Listed        bool

	// Owner of the AppAuth; zero means the signer. A Safe address is fine:
	// the factory is permissionless and only later admin calls need the owner.
	Owner              common.Address
	AllowAnyDevice     bool
	DisableUpgrades    bool
	RequireTcbUpToDate bool

	// ChainID, when non-zero, is what --chain said; the KMS's chain must match.
	ChainID uint64
	Tx      deployer.TxOptions

	// Wait for the CVM to reach "running" (or fail to boot).
	Wait        bool
	WaitTimeout time.Duration

	// DryRun provisions, simulates the factory call and encrypts, but sends
	// no transaction and commits nothing.
	DryRun bool
	// Fresh forgets the journal of an earlier run of this deployment.
	Fresh bool
	// AllowMissingEnv lets ${VAR} references without a value through.
	AllowMissingEnv bool
	// InsecureSkipKeyVerification trusts the API's env-encryption key
	// without checking the KMS signature against the chain.
	InsecureSkipKeyVerification bool
	// ComposeCheck is how the compose hash is established (ComposeCheckModes;
	// "" is auto).
	ComposeCheck string

	// Timelock, when set, deploys an OpenZeppelin TimelockController first
	// (open execution, no admin) and makes it the AppAuth's owner, so that
	// every later change waits out its delay.
	Timelock *TimelockConfig
	// WaitApproval follows the chain until an owner that is not the signer
	// allowed what the deployment needs (approve-after-read), executing a
	// ready timelock operation itself; WaitTimeout bounds it. Without it
	// such an owner ends the run with ErrApprovalPending.
	WaitApproval bool
	// PollInterval is how often the chain is read while waiting for an
	// approval (0: DefaultApprovalPoll).
	PollInterval time.Duration
}

// TimelockConfig is the TimelockController `deploy --timelock` creates.
type TimelockConfig struct {
	// Delay is the minimum delay of every operation, in seconds.
	Delay uint64
	// Proposer schedules (and may cancel) operations; zero means Owner
	// when set (e.g. a Safe), else the signer.
	Proposer common.Address
}

// kmsChoice is what --kms resolves to in the provision request.
type kmsChoice struct {
	Type phala.KMSType
	Slug string // a specific KMS, when --kms named one
}

// onChain is false only for Phala's cloud KMS; a named slug may be either
// until the API says, so it counts as on-chain for the early checks.
func (k kmsChoice) onChain() bool { return k.Type != phala.KMSPhala || k.Slug != "" }

func parseKMS(s string) (kmsChoice, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "phala", "cloud":
		return kmsChoice{Type: phala.KMSPhala}, nil
	case "base":
		return kmsChoice{Type: phala.KMSBase}, nil
	case "ethereum", "eth", "mainnet":
		return kmsChoice{Type: phala.KMSEthereum}, nil
	}
	slug := strings.TrimSpace(s)
	for _, r := range slug {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return kmsChoice{}, fmt.Errorf("%w: --kms %q is not base, ethereum, phala, a KMS contract's slug or kc_ id, or a KMS node's slug (see `cvmdeploy kms list`)", ErrInvalidConfig, s)
		}
	}
	return kmsChoice{Slug: slug}, nil
}

// inputs are the checked local inputs of a deployment.
type inputs struct {
	compose   string
	preLaunch *string
	env       []kms.EnvVar
	envKeys   []string
	kms       kmsChoice
	// fingerprint ties a journal to these inputs (no env values: only keys).
	fingerprint string
	warnings    []string
}

// load reads and validates everything local. It sends nothing.
func (c Config) load() (*inputs, error) {
	if err := phala.CheckName(c.Name); err != nil {
		return nil, fmt.Errorf("%w: --name: %v", ErrInvalidConfig, err)
	}
	choice, err := parseKMS(c.KMS)
	if err != nil {
		return nil, err
	}
	if c.ComposeFile == "" {
		return nil, fmt.Errorf("%w: --compose is required (the docker-compose.yml of the app)", ErrInvalidConfig)
	}
	compose, preLaunch, err := readComposePayload(c.ComposeFile, c.PreLaunchScriptFile)
	if err != nil {
		return nil, err
	}
	in := &inputs{compose: compose, preLaunch: preLaunch, kms: choice}
	if strings.TrimSpace(in.compose) == "" {
		return nil, fmt.Errorf("%w: the compose file %s is empty", ErrInvalidConfig, c.ComposeFile)
	}
	env, err := kms.LoadEnv(c.EnvFiles, c.EnvFlags)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	in.env = env
	in.envKeys = kms.Keys(env)
	provided := map[string]bool{}
	for _, k := range in.envKeys {
		provided[k] = true
	}
	if missing := MissingComposeVars(in.compose, provided); len(missing) > 0 {
		msg := fmt.Sprintf("the compose file uses %s but no --env/--env-file provides %s; inside the CVM %s would be empty",
			strings.Join(missing, ", "), plural(len(missing), "it", "them"), plural(len(missing), "it", "they"))
		if !c.AllowMissingEnv {
			return nil, fmt.Errorf("%w: %s (pass them, give a default like ${VAR:-value}, or use --allow-missing-env)", ErrInvalidConfig, msg)
		}
		in.warnings = append(in.warnings, msg)
	}
	if c.Owner != (common.Address{}) && choice.Type == phala.KMSPhala && choice.Slug == "" {
		return nil, fmt.Errorf("%w: --owner applies to an on-chain KMS only (use --kms base or ethereum)", ErrInvalidConfig)
	}
	if err := c.Tx.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := checkComposeMode(c.ComposeCheck); err != nil {
		return nil, err
	}
	if c.Timelock != nil {
		if !choice.onChain() {
			return nil, fmt.Errorf("%w: --timelock applies to an on-chain KMS only (use --kms base or ethereum)", ErrInvalidConfig)
		}
		if c.Timelock.Delay == 0 {
			return nil, fmt.Errorf("%w: --timelock 0 gives no notice before a change: give a delay (e.g. 48h), or omit --timelock", ErrInvalidConfig)
		}
	}
	in.fingerprint = c.fingerprint(in)
	return in, nil
}

// readComposePayload reads the compose file and the optional pre-launch
// script (either path may be empty) and applies the service's 200 KiB limit
// on the two together.
func readComposePayload(composePath, preLaunchPath string) (compose string, preLaunch *string, err error) {
	size := 0
	if composePath != "" {
		b, err := os.ReadFile(composePath)
		if err != nil {
			return "", nil, fmt.Errorf("%w: cannot read the compose file: %v", ErrInvalidConfig, err)
		}
		compose, size = string(b), len(b)
	}
	if preLaunchPath != "" {
		b, err := os.ReadFile(preLaunchPath)
		if err != nil {
			return "", nil, fmt.Errorf("%w: cannot read the pre-launch script: %v", ErrInvalidConfig, err)
		}
		s := string(b)
		preLaunch, size = &s, size+len(b)
	}
	if size > phala.MaxComposePayload {
		return "", nil, fmt.Errorf("%w: the compose file (plus pre-launch script) is %d bytes; Phala Cloud accepts at most %d (200 KiB): move large content into the image", ErrInvalidConfig, size, phala.MaxComposePayload)
	}
	return compose, preLaunch, nil
}

// fingerprint hashes what decides the compose hash and the AppAuth: if any of
// it changes between runs, the journal no longer describes this deployment.
func (c Config) fingerprint(in *inputs) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(in.compose)
	if in.preLaunch != nil {
		field(*in.preLaunch)
	}
	field(strings.Join(in.envKeys, ","))
	field(string(in.kms.Type) + "/" + in.kms.Slug)
	field(c.InstanceType)
	field(c.Image)
	field(c.Region)
	if c.NodeID != nil {
		field(fmt.Sprint(*c.NodeID))
	}
	field(fmt.Sprint(c.DiskSize, c.PublicLogs, c.PublicSysinfo, c.Listed))
	field(c.Owner.Hex())
	field(fmt.Sprint(c.AllowAnyDevice, c.DisableUpgrades, c.RequireTcbUpToDate))
	if c.Timelock != nil {
		field(fmt.Sprintf("timelock=%d/%s", c.Timelock.Delay, c.Timelock.Proposer.Hex()))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

package cvm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
)

// JournalVersion is bumped when the journal's shape changes incompatibly.
const JournalVersion = 1

// Journal is what a deployment has done so far. It is written atomically
// after every step that changed something outside this machine, so that a
// re-run of the same command resumes instead of repeating a step. It holds
// no key, no env value and no API key; its one credential is the
// provision's one-time commit token, which is why the file is 0600.
type Journal struct {
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	APIPrefix string    `json:"api_prefix"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Fingerprint identifies the inputs (compose file, env key set, KMS and
	// placement options) the deployment was started with; a re-run with other
	// inputs must not silently continue it.
	Fingerprint string `json:"fingerprint"`

	Provision *ProvisionStep `json:"provision,omitempty"`
	// TimelockTx and Timelock are `deploy --timelock`'s TimelockController
	// creation, before the AppAuth it will own.
	TimelockTx *TxStep               `json:"timelock_tx,omitempty"`
	Timelock   *TimelockDeployedStep `json:"timelock,omitempty"`
	DeployTx   *TxStep               `json:"deploy_tx,omitempty"`
	App        *AppStep              `json:"app,omitempty"`
	PubKey     *PubKeyStep           `json:"pubkey,omitempty"`
	Commit     *CommitStep           `json:"commit,omitempty"`
	// ComposeRead, Approve and Approved are approve-after-read's steps
	// (Revoke after-commit's on a violation); Restarted is set once the
	// CVM refused at first boot was restarted.
	ComposeRead *ComposeReadStep `json:"compose_read,omitempty"`
	Approve     *OwnerCalls      `json:"approve,omitempty"`
	Approved    *ApprovedStep    `json:"approved,omitempty"`
	Revoke      *OwnerCalls      `json:"revoke,omitempty"`
	Restarted   bool             `json:"restarted,omitempty"`
	Status      string           `json:"status,omitempty"`
}

// ProvisionStep records the provision answer the rest of the flow relies on.
type ProvisionStep struct {
	ComposeHash        string    `json:"compose_hash"`
	DeviceID           string    `json:"device_id,omitempty"`
	OSImageHash        string    `json:"os_image_hash,omitempty"`
	KMSID              string    `json:"kms_id,omitempty"`
	ChainID            uint64    `json:"chain_id,omitempty"`
	KMSContract        string    `json:"kms_contract,omitempty"`
	AppID              string    `json:"app_id,omitempty"` // cloud KMS only
	AppEnvEncryptKey   string    `json:"app_env_encrypt_pubkey,omitempty"`
	OnChain            bool      `json:"on_chain"`
	ProvisionedAt      time.Time `json:"provisioned_at"`
	InstanceType       string    `json:"instance_type,omitempty"`
	ComposeHashChecked bool      `json:"compose_hash_checked,omitempty"`
	// KMSTrust says how the KMS contract was trusted (pinned, flag, unpinned).
	KMSTrust string `json:"kms_trust,omitempty"`
	// ComposePlan is how the compose hash is established: predicted,
	// approve-after-read (the AppAuth is deployed without it), after-commit
	// or off. It is decided before anything is sent.
	ComposePlan          string `json:"compose_plan,omitempty"`
	ComposeSerialization string `json:"compose_serialization,omitempty"`
	// Via is the path that provisioned (phala.ProvisionSamePath or
	// phala.ProvisionLegacyPath).
	Via string `json:"provisioned_via,omitempty"`
	// Token is the same-path provision's one-time commit token: a
	// credential for one commit, kept only here (mode 0600), never printed.
	Token string `json:"token,omitempty"`
	// KMSContractID is the KMS contract's id when --kms named one.
	KMSContractID string `json:"kms_contract_id,omitempty"`
	// Reprovisioned records each time the prepared commit expired (466)
	// and the deployment was provisioned again.
	Reprovisioned []Reprovision `json:"reprovisioned,omitempty"`
}

// Reprovision is one provisioning again after the service said the
// prepared compose hash (or its commit token) expired.
type Reprovision struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	// ComposeHash is what the new provision answered (equal to the
	// journaled one for an on-chain app, or the commit was refused).
	ComposeHash string `json:"compose_hash"`
	Via         string `json:"provisioned_via,omitempty"`
}

// TimelockDeployedStep records the TimelockController deployed to own the
// AppAuth, read from the receipt.
type TimelockDeployedStep struct {
	Address     string `json:"address"`
	Delay       uint64 `json:"delay"`
	Proposer    string `json:"proposer"`
	TxHash      string `json:"tx_hash"`
	BlockNumber uint64 `json:"block_number"`
	GasUsed     uint64 `json:"gas_used"`
}

// ComposeReadStep records the committed app-compose read back and checked.
type ComposeReadStep struct {
	Verified      string `json:"verified"` // approved-after-read or checked-after-commit
	Serialization string `json:"serialization"`
	PreLaunch     string `json:"pre_launch_script"`
}

// ApprovedStep records an owner call that landed (or was found done).
type ApprovedStep struct {
	TxHash      string `json:"tx_hash,omitempty"` // empty: already allowed, nothing sent
	BlockNumber uint64 `json:"block_number,omitempty"`
	Owner       string `json:"owner,omitempty"`
}

// TxStep records a transaction from the moment it is signed, before it is
// broadcast: the raw bytes let a resumed run re-broadcast exactly the same
// transaction (same nonce), which can never be mined twice. A stuck
// transaction may be replaced by variants with the same nonce and higher
// fees; each is recorded before it is broadcast, and any of them may be
// the one mined, so a resumed run looks for the receipts of all of them.
type TxStep struct {
	// Hash and RawTx are the newest variant.
	Hash string `json:"hash"`
	// Hashes are every variant signed for the nonce, oldest first (absent
	// in journals written before replacements existed: then just Hash).
	Hashes []string  `json:"hashes,omitempty"`
	From   string    `json:"from"`
	Nonce  uint64    `json:"nonce"`
	RawTx  string    `json:"raw_tx"`
	SentAt time.Time `json:"sent_at"`
}

// AddVariant records a newly signed transaction for this step (the first,
// or a replacement with the same nonce) before it is broadcast.
func (t *TxStep) AddVariant(tx *types.Transaction, from common.Address, at time.Time) error {
	raw, err := tx.MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode transaction %s: %w", tx.Hash().Hex(), err)
	}
	if t.Hash != "" && len(t.Hashes) == 0 {
		t.Hashes = []string{t.Hash}
	}
	t.Hash = tx.Hash().Hex()
	t.Hashes = append(t.Hashes, t.Hash)
	t.RawTx = hexutil.Encode(raw)
	t.From = from.Hex()
	t.Nonce = tx.Nonce()
	if t.SentAt.IsZero() {
		t.SentAt = at
	}
	return nil
}

// Variants are the hashes of every variant, oldest first.
func (t *TxStep) Variants() []common.Hash {
	hs := t.Hashes
	if len(hs) == 0 {
		hs = []string{t.Hash}
	}
	out := make([]common.Hash, len(hs))
	for i, h := range hs {
		out[i] = common.HexToHash(h)
	}
	return out
}

// Signed decodes the newest variant's raw bytes.
func (t *TxStep) Signed() (*types.Transaction, error) {
	raw, err := hexutil.Decode(t.RawTx)
	if err != nil {
		return nil, err
	}
	var tx types.Transaction
	if err := tx.UnmarshalBinary(raw); err != nil {
		return nil, err
	}
	if tx.Hash().Hex() != t.Hash {
		return nil, fmt.Errorf("the raw bytes hash to %s, not %s", tx.Hash().Hex(), t.Hash)
	}
	return &tx, nil
}

// AppStep records the deployed AppAuth, read from the receipt.
type AppStep struct {
	AppID           string `json:"app_id"`
	ContractAddress string `json:"contract_address"`
	DeployerAddress string `json:"deployer_address"`
	TxHash          string `json:"tx_hash,omitempty"`
	BlockNumber     uint64 `json:"block_number,omitempty"`
	GasUsed         uint64 `json:"gas_used,omitempty"`
}

// PubKeyStep records the app's env-encryption key and how it was checked.
type PubKeyStep struct {
	PublicKey string `json:"public_key"`
	Verified  bool   `json:"verified"`
	RootKey   string `json:"kms_root_key,omitempty"`
}

// CommitStep records the CVM the commit created.
type CommitStep struct {
	CVMID  string `json:"cvm_id"`
	VMUUID string `json:"vm_uuid,omitempty"`
	AppID  string `json:"app_id,omitempty"`
	Status string `json:"status,omitempty"`
}

// JournalStore keeps one journal file per deployment under Dir.
type JournalStore struct {
	Dir string
}

// DefaultJournalDir is $CVMDEPLOY_STATE_DIR, else $XDG_STATE_HOME/cvmdeploy,
// else ~/.local/state/cvmdeploy; journals live in its deployments/ folder.
func DefaultJournalDir() (string, error) {
	if d := os.Getenv("CVMDEPLOY_STATE_DIR"); d != "" {
		return filepath.Join(d, "deployments"), nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "cvmdeploy", "deployments"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a folder for deployment journals (set CVMDEPLOY_STATE_DIR): %w", err)
	}
	return filepath.Join(home, ".local", "state", "cvmdeploy", "deployments"), nil
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Path is the journal file of the deployment called name on apiPrefix.
func (s JournalStore) Path(apiPrefix, name string) string {
	sum := sha256.Sum256([]byte(strings.TrimRight(apiPrefix, "/") + "\n" + name))
	base := unsafeNameChars.ReplaceAllString(name, "_")
	return filepath.Join(s.Dir, fmt.Sprintf("%s-%s.json", base, hex.EncodeToString(sum[:6])))
}

// Load reads the journal at path; a missing file gives (nil, nil).
func (s JournalStore) Load(path string) (*Journal, error) {
	var j Journal
	found, err := s.load(path, &j, func() int { return j.Version })
	if err != nil || !found {
		return nil, err
	}
	return &j, nil
}

// load decodes the journal file at path into v and checks its version.
func (s JournalStore) load(path string, v any, version func() int) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read journal %s: %w", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("journal %s is damaged (%v): move it away or re-run with --fresh", path, err)
	}
	if version() != JournalVersion {
		return false, fmt.Errorf("journal %s has version %d, this cvmdeploy writes %d: finish it with the version that wrote it, or re-run with --fresh", path, version(), JournalVersion)
	}
	return true, nil
}

// Save writes j to path atomically (temp file, fsync, rename) with mode 0600.
func (s JournalStore) Save(path string, j *Journal) error {
	j.Version = JournalVersion
	j.UpdatedAt = time.Now().UTC()
	return s.saveJSON(path, j)
}

// saveJSON writes v to path atomically with mode 0600.
func (s JournalStore) saveJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create journal folder: %w", err)
	}
	data, err := marshalFile(v)
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".journal-*")
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write journal: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write journal: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write journal: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

// Remove deletes the journal at path (used by --fresh).
func (s JournalStore) Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal %s: %w", path, err)
	}
	return nil
}

// marshalFile encodes v as an indented JSON file without HTML escaping:
// compose files are full of `&&` and `<`, which a reader should see as such.
func marshalFile(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

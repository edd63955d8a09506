package phala

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// KMSType selects the KMS in a provision request.
type KMSType string

// KMS types accepted by POST /cvms/provision.
const (
	KMSPhala    KMSType = "PHALA"    // Phala's cloud KMS (the default)
	KMSEthereum KMSType = "ETHEREUM" // on-chain DstackKms on Ethereum
	KMSBase     KMSType = "BASE"     // on-chain DstackKms on Base
)

// MaxComposePayload is the limit on docker_compose_file plus
// pre_launch_script (200 KiB), enforced client-side by the SDK as well.
const MaxComposePayload = 200 * 1024

// ComposeFile is the compose_file object of a provision request.
type ComposeFile struct {
	DockerComposeFile string `json:"docker_compose_file"`
	// AllowedEnvs lists the env keys the CVM will accept; it is part of the
	// hashed app-compose. A nil list is sent as [] (the CLI always sends it).
	AllowedEnvs     []string `json:"allowed_envs"`
	PreLaunchScript *string  `json:"pre_launch_script,omitempty"`
	// Name is always sent; the CLI sends "".
	Name           string `json:"name"`
	KMSEnabled     *bool  `json:"kms_enabled,omitempty"`
	PublicLogs     *bool  `json:"public_logs,omitempty"`
	PublicSysinfo  *bool  `json:"public_sysinfo,omitempty"`
	PublicTcbinfo  *bool  `json:"public_tcbinfo,omitempty"`
	GatewayEnabled *bool  `json:"gateway_enabled,omitempty"`
	StorageFS      string `json:"storage_fs,omitempty"` // "ext4" or "zfs"
	Extra          Extra  `json:"-"`
}

type composeFileJSON ComposeFile

// MarshalJSON writes allowed_envs as [] when nil, plus Extra members.
func (c ComposeFile) MarshalJSON() ([]byte, error) {
	a := composeFileJSON(c)
	if a.AllowedEnvs == nil {
		a.AllowedEnvs = []string{}
	}
	return marshalObject(a, c.Extra)
}

// UnmarshalJSON keeps unknown members in Extra.
func (c *ComposeFile) UnmarshalJSON(data []byte) error {
	var a composeFileJSON
	_, err := unmarshalObject(data, &a, &a.Extra, "compose_file")
	if err != nil {
		return err
	}
	*c = ComposeFile(a)
	return nil
}

// ProvisionRequest is the body of POST /cvms/provision.
type ProvisionRequest struct {
	Name string `json:"name"`
	// InstanceType defaults to "tdx.small" when InstanceType, VCPU and
	// Memory are all unset (as the SDK does).
	InstanceType string `json:"instance_type,omitempty"`
	VCPU         *int   `json:"vcpu,omitempty"`      // deprecated in favour of InstanceType
	Memory       *int   `json:"memory,omitempty"`    // MB; deprecated in favour of InstanceType
	DiskSize     *int   `json:"disk_size,omitempty"` // GB
	// NodeID pins a node. SDK 0.2.9 (used by CLI 1.1.18) sends it as
	// teepod_id on the wire; decoding also accepts node_id.
	NodeID      *int64      `json:"teepod_id,omitempty"`
	Region      string      `json:"region,omitempty"`
	Image       string      `json:"image,omitempty"`
	ComposeFile ComposeFile `json:"compose_file"`
	Listed      bool        `json:"listed"`
	KMS         KMSType     `json:"kms,omitempty"`
	KMSID       string      `json:"kms_id,omitempty"`
	KMSContract string      `json:"kms_contract,omitempty"`
	// KMSContractID names the KMS contract by its id or slug (2026-06-23
	// listing), as an alternative to KMSContract.
	KMSContractID string `json:"kms_contract_id,omitempty"`
	// PreferDev is always sent, as by the CLI; it must be false for
	// ETHEREUM and BASE.
	PreferDev bool     `json:"prefer_dev"`
	EnvKeys   []string `json:"env_keys,omitempty"`
	Nonce     *int64   `json:"nonce,omitempty"`  // PHALA KMS only
	AppID     string   `json:"app_id,omitempty"` // custom app id
	Extra     Extra    `json:"-"`
}

type provisionRequestJSON ProvisionRequest

// MarshalJSON adds Extra members.
func (r ProvisionRequest) MarshalJSON() ([]byte, error) {
	return marshalObject(provisionRequestJSON(r), r.Extra)
}

// UnmarshalJSON accepts node_id as an alias of teepod_id and keeps unknown
// members in Extra.
func (r *ProvisionRequest) UnmarshalJSON(data []byte) error {
	var a provisionRequestJSON
	members, err := unmarshalObject(data, &a, &a.Extra, "provision request")
	if err != nil {
		return err
	}
	if raw, ok := members["node_id"]; ok && a.NodeID == nil && !isNull(raw) {
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return &fieldError{object: "provision request", field: "node_id", problem: "is not an integer"}
		}
		a.NodeID = &n
		delete(a.Extra, "node_id")
		if len(a.Extra) == 0 {
			a.Extra = nil
		}
	}
	*r = ProvisionRequest(a)
	return nil
}

// Check validates the request as the SDK does before sending it.
func (r ProvisionRequest) Check() error {
	if err := CheckName(r.Name); err != nil {
		return err
	}
	if strings.TrimSpace(r.ComposeFile.DockerComposeFile) == "" {
		return fmt.Errorf("%w: compose_file.docker_compose_file is empty", ErrInvalidInput)
	}
	size := len(r.ComposeFile.DockerComposeFile)
	if r.ComposeFile.PreLaunchScript != nil {
		size += len(*r.ComposeFile.PreLaunchScript)
	}
	if size > MaxComposePayload {
		return fmt.Errorf("%w: docker compose file plus pre-launch script is %d bytes, over the %d-byte (200 KiB) limit",
			ErrInvalidInput, size, MaxComposePayload)
	}
	switch r.KMS {
	case "", KMSPhala, KMSEthereum, KMSBase:
	default:
		return fmt.Errorf("%w: kms %q is not PHALA, ETHEREUM or BASE", ErrInvalidInput, truncate(string(r.KMS), 20))
	}
	if r.PreferDev && (r.KMS == KMSEthereum || r.KMS == KMSBase) {
		return fmt.Errorf("%w: prefer_dev must be false with an on-chain KMS", ErrInvalidInput)
	}
	switch r.ComposeFile.StorageFS {
	case "", "ext4", "zfs":
	default:
		return fmt.Errorf("%w: storage_fs %q is not ext4 or zfs", ErrInvalidInput, truncate(r.ComposeFile.StorageFS, 20))
	}
	for _, p := range []struct {
		name string
		v    *int
	}{{"vcpu", r.VCPU}, {"memory", r.Memory}, {"disk_size", r.DiskSize}} {
		if p.v != nil && *p.v <= 0 {
			return fmt.Errorf("%w: %s must be positive", ErrInvalidInput, p.name)
		}
	}
	for _, k := range r.ComposeFile.AllowedEnvs {
		if !isEnvKey(k) {
			return fmt.Errorf("%w: allowed env key %q does not match ^[A-Za-z_][A-Za-z0-9_]*$", ErrInvalidInput, truncate(k, 64))
		}
	}
	if r.AppID != "" {
		if _, err := NormalizeAppID(r.AppID); err != nil {
			return err
		}
	}
	return nil
}

// CheckName applies the CVM name rules: 5 to 63 characters, a leading
// letter, letters, digits and single hyphens, no trailing hyphen.
func CheckName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: CVM name %q %s (5-63 characters, a leading letter, letters, digits and single hyphens)",
			ErrInvalidInput, truncate(name, 70), why)
	}
	if len(name) < 5 || len(name) > 63 {
		return bad("has the wrong length")
	}
	if c := name[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return bad("does not start with a letter")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return bad("contains a character other than a letter, digit or hyphen")
		}
	}
	if strings.Contains(name, "--") {
		return bad("contains a double hyphen")
	}
	if name[len(name)-1] == '-' {
		return bad("ends with a hyphen")
	}
	return nil
}

func isEnvKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// KMSInfo describes a KMS: the kms_info object of a provision response and
// an item of GET /kms. All seven modelled keys are always written (null
// where unset): CLI 1.1.18 rejects a kms_info missing any of them. Decoding
// requires them too, as the SDK's schema does.
type KMSInfo struct {
	ID                 string  `json:"id"`
	Slug               *string `json:"slug"`
	URL                string  `json:"url"`
	Version            string  `json:"version"`
	ChainID            *int64  `json:"chain_id"` // a JSON number; "31337" is rejected
	KMSContractAddress *string `json:"kms_contract_address"`
	GatewayAppID       *string `json:"gateway_app_id"`
	Extra              Extra   `json:"-"` // e.g. k256_pubkey
}

type kmsInfoJSON KMSInfo

var kmsInfoKeys = []string{"id", "slug", "url", "version", "chain_id", "kms_contract_address", "gateway_app_id"}

// MarshalJSON writes all seven keys plus Extra members.
func (k KMSInfo) MarshalJSON() ([]byte, error) { return marshalObject(kmsInfoJSON(k), k.Extra) }

// UnmarshalJSON requires all seven keys, with non-null id, url and version.
func (k *KMSInfo) UnmarshalJSON(data []byte) error {
	var a kmsInfoJSON
	members, err := unmarshalObject(data, &a, &a.Extra, "kms_info", kmsInfoKeys...)
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "kms_info", "id", "url", "version"); err != nil {
		return err
	}
	*k = KMSInfo(a)
	return nil
}

// Ref is the KMS segment the API expects in /kms/{kms}/…: the slug, or the
// id when there is no slug (as the CLI does).
func (k KMSInfo) Ref() string {
	if k.Slug != nil && *k.Slug != "" {
		return *k.Slug
	}
	return k.ID
}

// OnChain reports whether the KMS is a contract on a chain.
func (k KMSInfo) OnChain() bool {
	return k.ChainID != nil && *k.ChainID != 0 && k.KMSContractAddress != nil && *k.KMSContractAddress != ""
}

// KMSPage is the answer of GET /kms.
type KMSPage struct {
	Items    []KMSInfo `json:"items"`
	Total    int       `json:"total"`
	Page     int       `json:"page"`
	PageSize int       `json:"page_size"`
	Pages    int       `json:"pages"`
}

type kmsPageJSON KMSPage

// MarshalJSON writes items as [] when empty.
func (p KMSPage) MarshalJSON() ([]byte, error) {
	a := kmsPageJSON(p)
	if a.Items == nil {
		a.Items = []KMSInfo{}
	}
	return marshalJSON(a)
}

// UnmarshalJSON requires items.
func (p *KMSPage) UnmarshalJSON(data []byte) error {
	var a kmsPageJSON
	if _, err := unmarshalObject(data, &a, nil, "KMS list", "items"); err != nil {
		return err
	}
	*p = KMSPage(a)
	return nil
}

// ProvisionResponse is the answer of POST /cvms/provision.
type ProvisionResponse struct {
	// AppID is null for an on-chain KMS, set for the PHALA KMS.
	AppID *string `json:"app_id"`
	// AppEnvEncryptPubkey is the X25519 env key (hex) for the PHALA KMS.
	AppEnvEncryptPubkey *string `json:"app_env_encrypt_pubkey,omitempty"`
	// ComposeHash is 64 lowercase hex characters; a "sha256:" or "0x"
	// prefix from the server is stripped on decode.
	ComposeHash  string   `json:"compose_hash"`
	KMSInfo      *KMSInfo `json:"kms_info,omitempty"`
	KMSID        *string  `json:"kms_id,omitempty"`
	FMSPC        *string  `json:"fmspc,omitempty"`
	DeviceID     *string  `json:"device_id,omitempty"` // 64 hex, no 0x (stripped on decode)
	OSImageHash  *string  `json:"os_image_hash,omitempty"`
	InstanceType *string  `json:"instance_type,omitempty"`
	// NodeID is teepod_id on the wire (the SDK renames it to node_id);
	// decoding accepts both.
	NodeID *int64 `json:"teepod_id,omitempty"`
	// ComposeHashRegistered appears in newer API versions.
	ComposeHashRegistered *bool `json:"compose_hash_registered,omitempty"`
	// Token is the one-time commit token of a same-path provision: a
	// credential for one commit, never to be printed or logged.
	Token *string `json:"token,omitempty"`
	// KMSContractID is the contract's id (2026-06-23), when answered.
	KMSContractID *ID `json:"kms_contract_id,omitempty"`
	// Via is the path that answered (ProvisionSamePath or
	// ProvisionLegacyPath); it is not part of the JSON.
	Via   string `json:"-"`
	Extra Extra  `json:"-"`
}

type provisionResponseJSON ProvisionResponse

// MarshalJSON writes app_id even when null, plus Extra members.
func (r ProvisionResponse) MarshalJSON() ([]byte, error) {
	return marshalObject(provisionResponseJSON(r), r.Extra)
}

// UnmarshalJSON requires compose_hash (64 hex after stripping a prefix),
// validates device_id and accepts node_id for teepod_id.
func (r *ProvisionResponse) UnmarshalJSON(data []byte) error {
	var a provisionResponseJSON
	members, err := unmarshalObject(data, &a, &a.Extra, "provision response", "compose_hash")
	if err != nil {
		return err
	}
	h, ok := normalizeHash32(a.ComposeHash)
	if !ok {
		return &fieldError{object: "provision response", field: "compose_hash", problem: "is not 64 hex characters"}
	}
	a.ComposeHash = h
	if a.DeviceID != nil {
		if *a.DeviceID == "" {
			a.DeviceID = nil
		} else if d, ok := normalizeHash32(*a.DeviceID); ok {
			a.DeviceID = &d
		} else {
			return &fieldError{object: "provision response", field: "device_id", problem: "is not 64 hex characters"}
		}
	}
	if raw, ok := members["node_id"]; ok && a.NodeID == nil && !isNull(raw) {
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return &fieldError{object: "provision response", field: "node_id", problem: "is not an integer"}
		}
		a.NodeID = &n
		delete(a.Extra, "node_id")
	}
	*r = ProvisionResponse(a)
	return nil
}

// OnChain applies the official CLI's rule for the on-chain branch: app_id
// null or absent, kms_info.chain_id set and kms_info.kms_contract_address set.
func (r ProvisionResponse) OnChain() bool {
	return (r.AppID == nil || *r.AppID == "") && r.KMSInfo != nil && r.KMSInfo.OnChain()
}

// CommitRequest is the body of POST /cvms (committing a provision).
type CommitRequest struct {
	// Token is the same-path provision's one-time commit token ("" after a
	// POST /cvms/provision). It is redacted from every error.
	Token string `json:"token,omitempty"`
	// AppID is the on-chain app id as returned by deployAndRegisterApp
	// ("0x" + checksummed hex, as the CLI sends it) or the PHALA KMS app id.
	AppID        string `json:"app_id"`
	ComposeHash  string `json:"compose_hash"`
	EncryptedEnv string `json:"encrypted_env,omitempty"` // hex, no 0x
	// EnvKeys is not sent by the CLI (the keys are in allowed_envs).
	EnvKeys         []string `json:"env_keys,omitempty"`
	KMSID           string   `json:"kms_id,omitempty"`           // kms_info.slug || kms_info.id
	ContractAddress string   `json:"contract_address,omitempty"` // the AppAuth address (== app id)
	DeployerAddress string   `json:"deployer_address,omitempty"`
	// TransactionHash appears in newer SDKs only.
	TransactionHash string `json:"transaction_hash,omitempty"`
	Extra           Extra  `json:"-"`
}

type commitRequestJSON CommitRequest

// MarshalJSON adds Extra members.
func (r CommitRequest) MarshalJSON() ([]byte, error) {
	return marshalObject(commitRequestJSON(r), r.Extra)
}

// UnmarshalJSON keeps unknown members in Extra.
func (r *CommitRequest) UnmarshalJSON(data []byte) error {
	var a commitRequestJSON
	if _, err := unmarshalObject(data, &a, &a.Extra, "commit request"); err != nil {
		return err
	}
	*r = CommitRequest(a)
	return nil
}

// Check validates ids, hashes and addresses before sending.
func (r CommitRequest) Check() error {
	if _, err := NormalizeAppID(r.AppID); err != nil {
		return err
	}
	if _, err := NormalizeComposeHash(r.ComposeHash); err != nil {
		return err
	}
	if r.EncryptedEnv != "" && (!isHex(r.EncryptedEnv) || len(r.EncryptedEnv)%2 != 0) {
		return fmt.Errorf("%w: encrypted_env is not hex", ErrInvalidInput)
	}
	for name, a := range map[string]string{"contract_address": r.ContractAddress, "deployer_address": r.DeployerAddress} {
		if a != "" && !isAddress(a) {
			return fmt.Errorf("%w: %s %q is not a 0x address", ErrInvalidInput, name, truncate(a, 50))
		}
	}
	return nil
}

// ID is a record id that is an integer in API versions up to 2026-01-21 and
// a hashed string such as "cvm_…" from 2026-05-22. It encodes back in the
// form it was decoded from (CLI 1.1.18 requires the integer form).
type ID struct {
	num   int64
	str   string
	isNum bool
	set   bool
}

// IntID returns an integer id.
func IntID(n int64) ID { return ID{num: n, isNum: true, set: true} }

// StringID returns a string id such as "cvm_abc".
func StringID(s string) ID { return ID{str: s, set: true} }

// Int returns the integer form, if the id is an integer.
func (id ID) Int() (int64, bool) { return id.num, id.isNum }

// IsZero reports an unset (or null) id.
func (id ID) IsZero() bool { return !id.set }

// String renders the id as text ("123" or "cvm_abc"); usable in /cvms/{id}.
func (id ID) String() string {
	switch {
	case !id.set:
		return ""
	case id.isNum:
		return strconv.FormatInt(id.num, 10)
	}
	return id.str
}

// MarshalJSON writes a number, a string, or null when unset.
func (id ID) MarshalJSON() ([]byte, error) {
	switch {
	case !id.set:
		return []byte("null"), nil
	case id.isNum:
		return []byte(strconv.FormatInt(id.num, 10)), nil
	}
	return marshalJSON(id.str)
}

// UnmarshalJSON accepts an integer, a string or null.
func (id *ID) UnmarshalJSON(data []byte) error {
	t := bytes.TrimSpace(data)
	switch {
	case string(t) == "null":
		*id = ID{}
		return nil
	case len(t) > 0 && t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return err
		}
		*id = StringID(s)
		return nil
	}
	n, err := strconv.ParseInt(string(t), 10, 64)
	if err != nil {
		return fmt.Errorf("id %s is neither an integer nor a string", truncate(string(t), 30))
	}
	*id = IntID(n)
	return nil
}

// Teepod is the node a CVM runs on.
type Teepod struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// CVM is the answer of POST /cvms (commit) and GET /cvms/{id}, in every
// API version's shape: integer or string ids, the legacy 2025-10-28 object
// (kms_info in the KmsInfo shape; GET /cvms items carry the VM in hosted)
// and the flat 2026 CvmInfo (kms_info {chain_id, dstack_kms_address, …},
// decoded into OnChainKMSInfo). The keys CLI 1.1.18 requires in the commit
// answer are always written (null where unset): id, name, status,
// teepod_id, teepod, user_id, app_id, vm_uuid, instance_id, base_image,
// vcpu, memory, disk_size, docker_compose_file, created_at.
type CVM struct {
	ID                     ID       `json:"id"`
	Name                   string   `json:"name"`
	Status                 string   `json:"status"`
	InProgress             *bool    `json:"in_progress,omitempty"`
	TeepodID               *int64   `json:"teepod_id"`
	Teepod                 *Teepod  `json:"teepod"`
	UserID                 *ID      `json:"user_id"`
	AppID                  *string  `json:"app_id"` // 40 lowercase hex, no 0x, from the real service
	VMUUID                 *string  `json:"vm_uuid"`
	InstanceID             *string  `json:"instance_id"`
	AppURL                 *string  `json:"app_url,omitempty"`
	BaseImage              *string  `json:"base_image"`
	VCPU                   int      `json:"vcpu"`
	Memory                 int      `json:"memory"`    // MB
	DiskSize               int      `json:"disk_size"` // GB
	ManifestVersion        *int     `json:"manifest_version,omitempty"`
	Version                *string  `json:"version,omitempty"`
	Runner                 *string  `json:"runner,omitempty"`
	DockerComposeFile      *string  `json:"docker_compose_file"`
	Features               []string `json:"features,omitempty"`
	CreatedAt              string   `json:"created_at"`
	EncryptedEnvPubkey     *string  `json:"encrypted_env_pubkey,omitempty"`
	AppAuthContractAddress *string  `json:"app_auth_contract_address,omitempty"`
	ContractAddress        *string  `json:"contract_address,omitempty"`
	DeployerAddress        *string  `json:"deployer_address,omitempty"`
	ComposeHash            *string  `json:"compose_hash,omitempty"`
	InstanceType           *string  `json:"instance_type,omitempty"`
	// KMSID is the KMS (node) slug some shapes carry beside kms_info.
	KMSID *string `json:"kms_id,omitempty"`
	// KMSType is phala, ethereum, base or legacy (2026 shapes).
	KMSType *string `json:"kms_type,omitempty"`
	// KMSInfo is the 2025-10-28 kms_info shape; another shape (2026-01-21
	// on) is kept in Extra["kms_info"] and decoded into OnChainKMSInfo.
	KMSInfo *KMSInfo `json:"kms_info,omitempty"`
	// OnChainKMSInfo is the 2026 kms_info, when the object has that shape.
	OnChainKMSInfo *CVMKMSInfo `json:"-"`
	Extra          Extra       `json:"-"`
}

type cvmJSON CVM

// MarshalJSON writes the keys the CLI requires, plus Extra members.
func (c CVM) MarshalJSON() ([]byte, error) { return marshalObject(cvmJSON(c), c.Extra) }

// UnmarshalJSON requires name, status and an id (top level, or hosted.id in
// the legacy list shape); it tolerates unknown members and decodes either
// kms_info shape.
func (c *CVM) UnmarshalJSON(data []byte) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil || probe == nil {
		return &fieldError{object: "CVM", problem: "expected a JSON object, got " + jsonKind(data)}
	}
	var otherKMS json.RawMessage
	var onChain *CVMKMSInfo
	if raw, ok := probe["kms_info"]; ok && !isNull(raw) {
		var k KMSInfo
		if json.Unmarshal(raw, &k) != nil {
			// Decode the rest without it; keep it verbatim.
			otherKMS = raw
			var flat CVMKMSInfo
			if err := json.Unmarshal(raw, &flat); err != nil {
				return &fieldError{object: "CVM", field: "kms_info", problem: "is neither the KmsInfo nor the 2026 shape"}
			}
			onChain = &flat
			delete(probe, "kms_info")
			data, _ = json.Marshal(probe)
		}
	}
	var hosted *hostedVM
	if _, hasID := probe["id"]; !hasID {
		if raw, ok := probe["hosted"]; ok && !isNull(raw) {
			hosted = &hostedVM{}
			if err := json.Unmarshal(raw, hosted); err != nil || hosted.ID.IsZero() {
				return &fieldError{object: "CVM", field: "hosted", problem: "has no id"}
			}
		}
	}
	required, nonNull := []string{"name", "status"}, []string{"status"}
	if hosted == nil {
		required, nonNull = append(required, "id"), append(nonNull, "id")
	}
	var a cvmJSON
	members, err := unmarshalObject(data, &a, &a.Extra, "CVM", required...)
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "CVM", nonNull...); err != nil {
		return err
	}
	if hosted != nil {
		hosted.fill((*CVM)(&a))
	}
	if otherKMS != nil {
		if a.Extra == nil {
			a.Extra = Extra{}
		}
		a.Extra["kms_info"] = otherKMS
		a.OnChainKMSInfo = onChain
	}
	*c = CVM(a)
	return nil
}

func strip0x(s string) string {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return s[2:]
	}
	return s
}

// CVMState is the answer of GET /cvms/{id}/state and the data of SSE
// "state" events.
type CVMState struct {
	ID               *ID    `json:"id,omitempty"`
	InstanceID       string `json:"instance_id,omitempty"`
	Name             string `json:"name"`
	Status           string `json:"status"`
	Uptime           string `json:"uptime,omitempty"`
	ExitedAt         string `json:"exited_at,omitempty"`
	BootProgress     string `json:"boot_progress,omitempty"`
	BootError        string `json:"boot_error,omitempty"`
	ShutdownProgress string `json:"shutdown_progress,omitempty"`
	Extra            Extra  `json:"-"`
}

type cvmStateJSON CVMState

// MarshalJSON adds Extra members; optional fields are omitted when empty
// (the SDK's schema allows them absent, not null).
func (s CVMState) MarshalJSON() ([]byte, error) { return marshalObject(cvmStateJSON(s), s.Extra) }

// UnmarshalJSON requires a non-null status.
func (s *CVMState) UnmarshalJSON(data []byte) error {
	var a cvmStateJSON
	members, err := unmarshalObject(data, &a, &a.Extra, "CVM state", "status")
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "CVM state", "status"); err != nil {
		return err
	}
	*s = CVMState(a)
	return nil
}

// AppPubKey is the answer of GET /kms/{kms}/pubkey/{app_id}: the app's
// X25519 env-encryption key and the KMS root key's signature over it.
// It encodes as exactly {"public_key","signature"} unless the optional v1
// members are set: CLI 1.1.18 rejects any other key. Decoding tolerates
// extra keys (the KMS itself also sends timestamp and signature_v1).
type AppPubKey struct {
	PublicKey string `json:"public_key"` // 64 hex, "0x" stripped on decode
	Signature string `json:"signature"`  // hex r‖s‖v (legacy); may be ""
	// Timestamp and SignatureV1 are the KMS's timestamped signature; the
	// Phala REST API does not pass them through today.
	Timestamp   *uint64 `json:"timestamp,omitempty"`
	SignatureV1 *string `json:"signature_v1,omitempty"`
}

type appPubKeyJSON AppPubKey

// UnmarshalJSON requires public_key (32 bytes of hex) and signature.
func (p *AppPubKey) UnmarshalJSON(data []byte) error {
	var a appPubKeyJSON
	members, err := unmarshalObject(data, &a, nil, "pubkey response", "public_key", "signature")
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "pubkey response", "public_key", "signature"); err != nil {
		return err
	}
	k := strip0x(a.PublicKey)
	if len(k) != 64 || !isHex(k) {
		return &fieldError{object: "pubkey response", field: "public_key", problem: "is not 32 bytes of hex"}
	}
	a.PublicKey = strings.ToLower(k)
	a.Signature = strip0x(a.Signature)
	if !isHex(a.Signature) || len(a.Signature)%2 != 0 {
		return &fieldError{object: "pubkey response", field: "signature", problem: "is not hex"}
	}
	*p = AppPubKey(a)
	return nil
}

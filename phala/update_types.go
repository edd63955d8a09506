package phala

import (
	"encoding/json"
	"fmt"
	"strings"
)

// GPUSpec is the gpus member of a PATCH /cvms/{id} body.
type GPUSpec struct {
	Count       int    `json:"count"`
	ProductName string `json:"product_name,omitempty"`
}

// PatchCVMRequest is the body of PATCH /cvms/{id}: only the members that
// are set are changed. Changing docker_compose_file, pre_launch_script or
// allowed_envs changes the compose hash, which an on-chain KMS must allow
// first (the 465 answer).
type PatchCVMRequest struct {
	DockerComposeFile *string `json:"docker_compose_file,omitempty"`
	PreLaunchScript   *string `json:"pre_launch_script,omitempty"`
	// AllowedEnvs replaces the allowed env keys when non-nil; an empty,
	// non-nil list is sent as [] (clearing them).
	AllowedEnvs     []string `json:"-"`
	EncryptedEnv    *string  `json:"encrypted_env,omitempty"`
	PublicLogs      *bool    `json:"public_logs,omitempty"`
	PublicSysinfo   *bool    `json:"public_sysinfo,omitempty"`
	PublicTcbinfo   *bool    `json:"public_tcbinfo,omitempty"`
	UserConfig      *string  `json:"user_config,omitempty"`
	GPUs            *GPUSpec `json:"gpus,omitempty"`
	VCPU            *int     `json:"vcpu,omitempty"`
	Memory          *int     `json:"memory,omitempty"`
	DiskSize        *int     `json:"disk_size,omitempty"`
	Image           *string  `json:"image,omitempty"`
	ShutdownTimeout *int     `json:"shutdown_timeout,omitempty"`
	AllowForceStop  *bool    `json:"allow_force_stop,omitempty"`
	Extra           Extra    `json:"-"`
}

// MarshalJSON sends allowed_envs only when it is non-nil.
func (r PatchCVMRequest) MarshalJSON() ([]byte, error) {
	type plain PatchCVMRequest // drops the methods, so no recursion
	a := struct {
		plain
		AllowedEnvs *[]string `json:"allowed_envs,omitempty"`
	}{plain: plain(r)}
	if r.AllowedEnvs != nil {
		envs := r.AllowedEnvs
		a.AllowedEnvs = &envs
	}
	return marshalObject(a, r.Extra)
}

// UnmarshalJSON keeps unknown members in Extra and tells an absent
// allowed_envs (nil) from an empty one.
func (r *PatchCVMRequest) UnmarshalJSON(data []byte) error {
	type plain PatchCVMRequest
	var a struct {
		plain
		AllowedEnvs *[]string `json:"allowed_envs"`
	}
	members, err := unmarshalObject(data, &a, nil, "PATCH body")
	if err != nil {
		return err
	}
	out := PatchCVMRequest(a.plain)
	if a.AllowedEnvs != nil {
		out.AllowedEnvs = *a.AllowedEnvs
		if out.AllowedEnvs == nil {
			out.AllowedEnvs = []string{}
		}
	}
	known := jsonKeys(typeOf[PatchCVMRequest]())
	for k, v := range members {
		if !known[k] && k != "allowed_envs" {
			if out.Extra == nil {
				out.Extra = Extra{}
			}
			out.Extra[k] = v
		}
	}
	*r = out
	return nil
}

// UpdateOptions tunes UpdateCVM.
type UpdateOptions struct {
	// PrepareOnly sends X-Prepare-Only: true: the service only answers 465
	// with a one-time commit token (multisig flows) and changes nothing.
	PrepareOnly bool
}

// UpdateAccepted is the 202 answer of PATCH /cvms/{id} and of its confirm.
type UpdateAccepted struct {
	CorrelationID string `json:"correlation_id"`
}

// UpdateResult is the outcome of UpdateCVM: either the update was accepted,
// or the new compose hash must first be registered on-chain.
type UpdateResult struct {
	// Accepted is set when the service started the update (HTTP 2xx).
	Accepted *UpdateAccepted
	// Registration is set on HTTP 465: register Registration.ComposeHash
	// (and the device if needed), then ConfirmUpdate or CommitUpdate.
	Registration *ComposeHashRegistrationRequired
}

// OnchainStatus is what the service found on-chain for the new hash.
type OnchainStatus struct {
	ComposeHashAllowed bool `json:"compose_hash_allowed"`
	DeviceIDAllowed    bool `json:"device_id_allowed"`
	IsAllowed          bool `json:"is_allowed"`
}

// ComposeHashRegistrationRequired is the typed content of a 465 answer's
// detail.details[] list of {field, value}.
type ComposeHashRegistrationRequired struct {
	ComposeHash   string // 64 lowercase hex, no 0x
	AppID         string
	DeviceID      string
	KMSInfo       *KMSInfo
	CommitToken   string
	CommitURL     string
	APICommitURL  string
	OnchainStatus *OnchainStatus
}

// Details renders r as the details list of a 465 answer, for servers (the
// local cloud) that must produce one.
func (r ComposeHashRegistrationRequired) Details() []ErrorDetail {
	d := []ErrorDetail{
		{Field: "compose_hash", Value: r.ComposeHash},
		{Field: "app_id", Value: r.AppID},
		{Field: "device_id", Value: r.DeviceID},
	}
	if r.KMSInfo != nil {
		d = append(d, ErrorDetail{Field: "kms_info", Value: *r.KMSInfo})
	}
	for _, p := range []struct{ f, v string }{
		{"commit_token", r.CommitToken}, {"commit_url", r.CommitURL}, {"api_commit_url", r.APICommitURL},
	} {
		if p.v != "" {
			d = append(d, ErrorDetail{Field: p.f, Value: p.v})
		}
	}
	if r.OnchainStatus != nil {
		d = append(d, ErrorDetail{Field: "onchain_status", Value: *r.OnchainStatus})
	}
	return d
}

// RegistrationRequiredError is an HTTP 465 answer: the compose hash must be
// registered on the app's contract before the update can go on. UpdateCVM
// turns it into an UpdateResult; other calls return it as an error.
type RegistrationRequiredError struct {
	*APIError
	Required ComposeHashRegistrationRequired
}

func (e *RegistrationRequiredError) Error() string {
	return fmt.Sprintf("%s: register compose hash 0x%s for app %s on-chain first", e.APIError.Error(), e.Required.ComposeHash, e.Required.AppID)
}

// Unwrap exposes the *APIError (and with it ErrRegistrationRequired).
func (e *RegistrationRequiredError) Unwrap() error { return e.APIError }

// registrationFromAPIError decodes the details of a 465 answer.
func registrationFromAPIError(ae *APIError) (*ComposeHashRegistrationRequired, error) {
	var r ComposeHashRegistrationRequired
	str := func(v any) string {
		switch t := v.(type) {
		case nil:
			return ""
		case string:
			return t
		case json.Number:
			return t.String()
		}
		return fmt.Sprint(v)
	}
	for _, d := range ae.Details {
		switch d.Field {
		case "compose_hash":
			r.ComposeHash = str(d.Value)
		case "app_id":
			r.AppID = str(d.Value)
		case "device_id":
			r.DeviceID = strings.ToLower(strip0x(str(d.Value)))
		case "commit_token":
			r.CommitToken = str(d.Value)
		case "commit_url":
			r.CommitURL = str(d.Value)
		case "api_commit_url":
			r.APICommitURL = str(d.Value)
		case "kms_info":
			if d.Value == nil {
				continue
			}
			raw, _ := json.Marshal(d.Value)
			var k KMSInfo
			if err := json.Unmarshal(raw, &k); err != nil {
				return nil, err
			}
			r.KMSInfo = &k
		case "onchain_status":
			if d.Value == nil {
				continue
			}
			raw, _ := json.Marshal(d.Value)
			var s OnchainStatus
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, &fieldError{object: "465 details", field: "onchain_status", problem: "is malformed"}
			}
			r.OnchainStatus = &s
		}
	}
	h, ok := normalizeHash32(r.ComposeHash)
	if !ok {
		if r.ComposeHash == "" {
			return nil, &fieldError{object: "465 details", field: "compose_hash", problem: "is missing"}
		}
		return nil, &fieldError{object: "465 details", field: "compose_hash", problem: "is not 64 hex characters"}
	}
	r.ComposeHash = h
	return &r, nil
}

// CommitUpdateRequest is the body of POST /cvms/{id}/commit-update, the
// token-based second phase of a prepare-only update.
type CommitUpdateRequest struct {
	Token           string `json:"token"`
	ComposeHash     string `json:"compose_hash"`
	TransactionHash string `json:"transaction_hash"`
}

// CommitUpdateResponse is the answer of POST /cvms/{id}/commit-update.
type CommitUpdateResponse struct {
	CorrelationID string `json:"correlation_id"`
	Status        string `json:"status"`
}

// AlreadyRegistered is the transaction hash to send when the compose hash
// is already allowed on-chain: the service then only checks the state.
const AlreadyRegistered = "already-registered"

func checkTxHash(tx string) error {
	if tx == AlreadyRegistered {
		return nil
	}
	if len(tx) != 66 || !strings.HasPrefix(tx, "0x") || !isHex(tx[2:]) {
		return fmt.Errorf("%w: transaction hash %q is not 0x + 64 hex characters or %q", ErrInvalidInput, truncate(tx, 70), AlreadyRegistered)
	}
	return nil
}

// IsAllowedRequest is the body of POST /cvms/{id}/is-allowed; every member
// is an optional override of the CVM's current value.
type IsAllowedRequest struct {
	ComposeHash string `json:"compose_hash,omitempty"`
	NodeID      *int64 `json:"node_id,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
}

// IsAllowedResponse is the on-chain check answered by POST /cvms/{id}/is-allowed.
type IsAllowedResponse struct {
	CVMID              *string `json:"cvm_id,omitempty"`
	AppContractAddress string  `json:"app_contract_address"`
	ComposeHash        string  `json:"compose_hash"`
	DeviceID           string  `json:"device_id"`
	ComposeHashAllowed bool    `json:"compose_hash_allowed"`
	AllowAnyDevice     bool    `json:"allow_any_device"`
	DeviceIDAllowed    *bool   `json:"device_id_allowed"`
	IsAllowed          bool    `json:"is_allowed"`
	Error              *string `json:"error"`
}

type isAllowedResponseJSON IsAllowedResponse

// UnmarshalJSON requires the members the SDK's schema requires.
func (r *IsAllowedResponse) UnmarshalJSON(data []byte) error {
	var a isAllowedResponseJSON
	members, err := unmarshalObject(data, &a, nil, "is-allowed response",
		"app_contract_address", "compose_hash", "device_id", "compose_hash_allowed", "allow_any_device", "is_allowed")
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "is-allowed response", "compose_hash_allowed", "allow_any_device", "is_allowed"); err != nil {
		return err
	}
	*r = IsAllowedResponse(a)
	return nil
}

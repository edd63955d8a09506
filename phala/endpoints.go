package phala

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// call sends r and decodes a 2xx answer into a T: the shape shared by
// every endpoint that answers one JSON document.
func call[T any](ctx context.Context, c *Client, r request) (*T, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var out T
	if err := c.decode(r, resp, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// cvmPath returns "/cvms/<normalized id>" plus suffix, or an input error.
func cvmPath(id, suffix string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", fmt.Errorf("%w: empty CVM id", ErrInvalidInput)
	}
	return "/cvms/" + url.PathEscape(NormalizeCVMID(id)) + suffix, nil
}

// Provision is the first phase of a deploy. Under API versions from
// 2026-05-22 it uses the same-path flow first: POST /cvms with the
// provision body, answered with the provision and a one-time commit token
// (ProvisionResponse.Token, a credential for one commit: keep it secret).
// A server that does not offer it (404/405, or a 422 from the commit schema
// asking for app_id or compose_hash) is asked POST /cvms/provision instead,
// and so is every later Provision of this client. Via says which path
// answered. Neither is retried on 5xx or timeouts (only on 429 and failed
// connections): a provision the server did process would be done twice.
// InstanceType defaults to "tdx.small" as in the SDK.
func (c *Client) Provision(ctx context.Context, req ProvisionRequest) (*ProvisionResponse, error) {
	if req.InstanceType == "" && req.VCPU == nil && req.Memory == nil {
		req.InstanceType = "tdx.small"
	}
	if err := req.Check(); err != nil {
		return nil, err
	}
	if !c.noSamePath.Load() && versionAtLeast(c.Version(), samePathVersion) {
		r := request{method: http.MethodPost, path: "/cvms", body: req, retry: retryUnsent}
		resp, err := call[ProvisionResponse](ctx, c, r)
		if err == nil {
			resp.Via = ProvisionSamePath
			return resp, nil
		}
		if !samePathRefused(err) {
			return nil, err
		}
		c.noSamePath.Store(true)
		c.logf("phala: POST /cvms does not provision on %s; using POST /cvms/provision", c.base.Host)
	}
	r := request{method: http.MethodPost, path: "/cvms/provision", body: req, retry: retryUnsent}
	resp, err := call[ProvisionResponse](ctx, c, r)
	if err != nil {
		return nil, err
	}
	resp.Via = ProvisionLegacyPath
	return resp, nil
}

// Paths a provision can come from (ProvisionResponse.Via).
const (
	ProvisionSamePath   = "POST /cvms"
	ProvisionLegacyPath = "POST /cvms/provision"
)

// samePathRefused reports an answer of a server whose POST /cvms only
// commits: no such route, or its commit schema missing app_id/compose_hash.
func samePathRefused(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return true
	case http.StatusUnprocessableEntity, http.StatusBadRequest:
		for _, v := range ae.ValidationErrors {
			switch v.Field() {
			case "app_id", "compose_hash", "token":
				return true
			}
		}
	}
	return false
}

// Commit calls POST /cvms, the second phase of a deploy, and returns the
// new CVM. With req.Token (the same-path provision's one-time token) the
// server takes the compose hash (and a cloud-KMS app id) from the token;
// app_id and compose_hash are sent as well and must match it. The token is
// redacted from every error. The service treats the same app_id +
// compose_hash as idempotent (it answers the existing CVM), so Commit is
// retried on 5xx, timeouts and cut connections like a read: that is what
// makes a lost answer safe to recover from. A different hash for the app
// is a 409 (CodeAppIDConflict); an expired token or provision is
// ErrHashExpired (466), a transaction that does not prove the app is
// ErrTxVerificationFailed (467), a hash not allowed on-chain
// ErrHashNotOnChain (468).
func (c *Client) Commit(ctx context.Context, req CommitRequest) (*CVM, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	r := request{method: http.MethodPost, path: "/cvms", body: req, retry: retryIdempotent, secrets: []string{req.Token}}
	return call[CVM](ctx, c, r)
}

// maxKMSPages bounds how many pages ListOnChainKMS follows, so a server that
// keeps announcing more pages cannot keep it busy.
const maxKMSPages = 20

// ListOnChainKMS calls GET /kms?is_onchain=true&page_size=100 and follows
// the pages the answer announces: the result holds every on-chain KMS node
// (one page covers all the service runs today). It is pinned to
// NodeKeyedVersion: from 2026-06-23 GET /kms lists contracts
// (ListKMSContracts).
func (c *Client) ListOnChainKMS(ctx context.Context) (*KMSPage, error) {
	var all *KMSPage
	for page := 1; ; page++ {
		q := url.Values{"is_onchain": {"true"}, "page_size": {"100"}}
		if page > 1 {
			q.Set("page", strconv.Itoa(page))
		}
		p, err := call[KMSPage](ctx, c, request{method: http.MethodGet, path: "/kms", query: q, retry: retryIdempotent, pin: NodeKeyedVersion})
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = p
		} else {
			all.Items = append(all.Items, p.Items...)
		}
		if page >= p.Pages || len(p.Items) == 0 {
			return all, nil
		}
		if page == maxKMSPages {
			return nil, fmt.Errorf("GET /kms announces %d pages; stopped after %d", p.Pages, maxKMSPages)
		}
	}
}

// GetKMS calls GET /kms/{id_or_slug} for a KMS node, pinned to
// NodeKeyedVersion (from 2026-06-23 the path names a contract).
func (c *Client) GetKMS(ctx context.Context, slug string) (*KMSInfo, error) {
	slug = strings.TrimSpace(slug)
	if slug == "" {
		return nil, fmt.Errorf("%w: empty KMS slug", ErrInvalidInput)
	}
	r := request{method: http.MethodGet, path: "/kms/" + url.PathEscape(slug), retry: retryIdempotent, pin: NodeKeyedVersion}
	return call[KMSInfo](ctx, c, r)
}

// AppPubKey calls GET /kms/{kms}/pubkey/{app_id} for an on-chain app's env
// encryption key. kmsRef is kms_info.slug or id (KMSInfo.Ref), never the
// KMS type; appID is sent as given (the CLI sends the checksummed 0x form)
// after checking it is an app id. The signature is not verified here. It
// is pinned to NodeKeyedVersion, as the official SDKs pin it.
func (c *Client) AppPubKey(ctx context.Context, kmsRef, appID string) (*AppPubKey, error) {
	kmsRef, appID = strings.TrimSpace(kmsRef), strings.TrimSpace(appID)
	if kmsRef == "" {
		return nil, fmt.Errorf("%w: empty KMS slug", ErrInvalidInput)
	}
	if _, err := NormalizeAppID(appID); err != nil {
		return nil, err
	}
	r := request{method: http.MethodGet, path: "/kms/" + url.PathEscape(kmsRef) + "/pubkey/" + url.PathEscape(appID), retry: retryIdempotent, pin: NodeKeyedVersion}
	return call[AppPubKey](ctx, c, r)
}

// GetCVM calls GET /cvms/{id}; id is normalised with NormalizeCVMID.
func (c *Client) GetCVM(ctx context.Context, id string) (*CVM, error) {
	p, err := cvmPath(id, "")
	if err != nil {
		return nil, err
	}
	r := request{method: http.MethodGet, path: p, retry: retryIdempotent}
	return call[CVM](ctx, c, r)
}

// CVMState calls GET /cvms/{id}/state once.
func (c *Client) CVMState(ctx context.Context, id string) (*CVMState, error) {
	p, err := cvmPath(id, "/state")
	if err != nil {
		return nil, err
	}
	r := request{method: http.MethodGet, path: p, retry: retryIdempotent}
	return call[CVMState](ctx, c, r)
}

// UpdateCVM calls PATCH /cvms/{id}. When the service accepts the update the
// result has Accepted; when the new compose hash must first be registered
// on-chain (HTTP 465) it has Registration and the error is nil. It is not
// retried on 5xx (an update could start twice).
func (c *Client) UpdateCVM(ctx context.Context, id string, req PatchCVMRequest, opts UpdateOptions) (*UpdateResult, error) {
	p, err := cvmPath(id, "")
	if err != nil {
		return nil, err
	}
	r := request{method: http.MethodPatch, path: p, body: req, retry: retryUnsent}
	resp, reg, err := c.doPreparable(ctx, r, opts.PrepareOnly)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		return &UpdateResult{Registration: reg}, nil
	}
	var out UpdateAccepted
	if err := c.decodeAccepted(r, resp, &out.CorrelationID); err != nil {
		return nil, err
	}
	return &UpdateResult{Accepted: &out}, nil
}

// ConfirmUpdate finishes an on-chain update after the compose hash was
// registered: PATCH /cvms/{id} with an empty body and the X-Compose-Hash and
// X-Transaction-Hash headers. txHash may be AlreadyRegistered. Errors 466
// (ErrHashExpired: start again), 467 (ErrTxVerificationFailed) and 468
// (ErrHashNotOnChain) match with errors.Is.
func (c *Client) ConfirmUpdate(ctx context.Context, id, composeHash, txHash string) (*UpdateAccepted, error) {
	p, err := cvmPath(id, "")
	if err != nil {
		return nil, err
	}
	h, err := NormalizeComposeHash(composeHash)
	if err != nil {
		return nil, err
	}
	if err := checkTxHash(txHash); err != nil {
		return nil, err
	}
	r := request{
		method: http.MethodPatch, path: p, body: struct{}{}, retry: retryUnsent,
		header: map[string]string{"X-Compose-Hash": h, "X-Transaction-Hash": txHash},
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var out UpdateAccepted
	if err := c.decodeAccepted(r, resp, &out.CorrelationID); err != nil {
		return nil, err
	}
	return &out, nil
}

// CommitUpdate calls POST /cvms/{id}/commit-update, the token-based second
// phase of a prepare-only update (multisig flows). The one-time token is
// the authorisation, so no API key is required. Not retried on 5xx: the
// token is consumed by the first attempt.
func (c *Client) CommitUpdate(ctx context.Context, id string, req CommitUpdateRequest) (*CommitUpdateResponse, error) {
	p, err := cvmPath(id, "/commit-update")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Token) == "" {
		return nil, fmt.Errorf("%w: empty commit token", ErrInvalidInput)
	}
	if req.ComposeHash, err = NormalizeComposeHash(req.ComposeHash); err != nil {
		return nil, err
	}
	if err := checkTxHash(req.TransactionHash); err != nil {
		return nil, err
	}
	r := request{method: http.MethodPost, path: p, body: req, retry: retryUnsent, noAuth: true, secrets: []string{req.Token}}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var out CommitUpdateResponse
	if err := c.decode(r, resp, &out); err != nil {
		return nil, err
	}
	if out.CorrelationID == "" {
		return nil, c.decodeError(r, resp, &fieldError{object: "commit-update response", field: "correlation_id", problem: "is missing"})
	}
	return &out, nil
}

// IsAllowed calls POST /cvms/{id}/is-allowed: the service's view of the
// app contract's isAppAllowed for the CVM (or for the overrides in req).
// It changes nothing, so it is retried like a read.
func (c *Client) IsAllowed(ctx context.Context, id string, req IsAllowedRequest) (*IsAllowedResponse, error) {
	p, err := cvmPath(id, "/is-allowed")
	if err != nil {
		return nil, err
	}
	if req.ComposeHash != "" {
		if req.ComposeHash, err = NormalizeComposeHash(req.ComposeHash); err != nil {
			return nil, err
		}
	}
	r := request{method: http.MethodPost, path: p, body: req, retry: retryIdempotent}
	return call[IsAllowedResponse](ctx, c, r)
}

// decodeAccepted reads {"correlation_id": …} from a 2xx answer.
func (c *Client) decodeAccepted(r request, resp *response, id *string) error {
	var out struct {
		CorrelationID *string `json:"correlation_id"`
	}
	if err := c.decode(r, resp, &out); err != nil {
		return err
	}
	if out.CorrelationID == nil || *out.CorrelationID == "" {
		return c.decodeError(r, resp, &fieldError{object: "update response", field: "correlation_id", problem: "is missing"})
	}
	*id = *out.CorrelationID
	return nil
}

// ComposeFile calls GET /cvms/{id}/compose_file and returns the answer's
// bytes: the app-compose the CVM measures, as JSON. It is returned raw
// because the caller must re-serialise and hash it itself; a decoded struct
// would drop fields the server added.
func (c *Client) ComposeFile(ctx context.Context, id string) ([]byte, error) {
	p, err := cvmPath(id, "/compose_file")
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: p, retry: retryIdempotent})
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}

// RestartCVM calls POST /cvms/{id}/restart: the CVM boots again, asking the
// KMS for its keys again (after its compose hash was allowed on-chain).
// Restarting twice is harmless, so it is retried like a read.
func (c *Client) RestartCVM(ctx context.Context, id string) error {
	p, err := cvmPath(id, "/restart")
	if err != nil {
		return err
	}
	_, err = c.do(ctx, request{method: http.MethodPost, path: p, body: map[string]any{}, retry: retryIdempotent})
	return err
}

// Attestation is the part of GET /cvms/{id}/attestation that cvmdeploy
// checks: the app-compose the running CVM measured, as the raw string.
type Attestation struct {
	IsOnline bool `json:"is_online"`
	IsPublic bool `json:"is_public"`
	TCBInfo  *struct {
		AppCompose string `json:"app_compose"`
	} `json:"tcb_info"`
}

// CVMAttestation calls GET /cvms/{id}/attestation.
func (c *Client) CVMAttestation(ctx context.Context, id string) (*Attestation, error) {
	p, err := cvmPath(id, "/attestation")
	if err != nil {
		return nil, err
	}
	return call[Attestation](ctx, c, request{method: http.MethodGet, path: p, retry: retryIdempotent})
}

// doPreparable sends a request that may answer HTTP 465 (an update or a
// replica whose compose hash or device must first be allowed on-chain),
// with X-Prepare-Only when asked. A 465 comes back decoded as the
// registration, not as an error.
func (c *Client) doPreparable(ctx context.Context, r request, prepareOnly bool) (*response, *ComposeHashRegistrationRequired, error) {
	if prepareOnly {
		r.header = map[string]string{"X-Prepare-Only": "true"}
	}
	resp, err := c.do(ctx, r)
	var reg *RegistrationRequiredError
	if errors.As(err, &reg) {
		return nil, &reg.Required, nil
	}
	return resp, nil, err
}

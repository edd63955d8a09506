package phala

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ReplicaRequest is the body of POST /cvms/{id}/replicas (reference B6).
// Every member is optional: without NodeID the service picks a node;
// without EncryptedEnv the replica gets the source's env.
type ReplicaRequest struct {
	NodeID       *int64 `json:"node_id,omitempty"`
	OSImage      string `json:"os_image,omitempty"`
	EncryptedEnv string `json:"encrypted_env,omitempty"` // hex, no 0x
	// ComposeHash pins the source's compose hash the replica must run.
	ComposeHash string `json:"compose_hash,omitempty"`
}

// ReplicaOptions tunes ReplicateCVM.
type ReplicaOptions struct {
	// PrepareOnly sends X-Prepare-Only: true: on an on-chain KMS the
	// service only answers 465 with a commit token and creates nothing.
	PrepareOnly bool
}

// ReplicaResult is the outcome of ReplicateCVM: the replica was created
// (a cloud-KMS app, or everything already allowed on-chain), or its node's
// device (and maybe the compose hash) must first be allowed on the AppAuth.
type ReplicaResult struct {
	CVM *CVM
	// Registration is the 465 answer: allow Registration.DeviceID (and
	// ComposeHash if needed), then CommitReplica with its CommitToken.
	Registration *ComposeHashRegistrationRequired
}

// ReplicateCVM calls POST /cvms/{id}/replicas. A 465 answer is decoded
// into the result as UpdateCVM does, not returned as an error. It is not
// retried on 5xx or timeouts: a replica could be created twice.
func (c *Client) ReplicateCVM(ctx context.Context, id string, req ReplicaRequest, opts ReplicaOptions) (*ReplicaResult, error) {
	p, err := cvmPath(id, "/replicas")
	if err != nil {
		return nil, err
	}
	if req.ComposeHash != "" {
		if req.ComposeHash, err = NormalizeComposeHash(req.ComposeHash); err != nil {
			return nil, err
		}
	}
	if req.EncryptedEnv != "" && (!isHex(req.EncryptedEnv) || len(req.EncryptedEnv)%2 != 0) {
		return nil, fmt.Errorf("%w: encrypted_env is not hex", ErrInvalidInput)
	}
	r := request{method: http.MethodPost, path: p, body: req, retry: retryUnsent}
	resp, reg, err := c.doPreparable(ctx, r, opts.PrepareOnly)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		return &ReplicaResult{Registration: reg}, nil
	}
	var vm CVM
	if err := c.decode(r, resp, &vm); err != nil {
		return nil, err
	}
	return &ReplicaResult{CVM: &vm}, nil
}

// CommitReplicaRequest is the body of POST /cvms/{id}/commit-replica.
type CommitReplicaRequest struct {
	Token           string `json:"token"`
	ComposeHash     string `json:"compose_hash"`
	TransactionHash string `json:"transaction_hash"` // or AlreadyRegistered
}

// CommitReplica calls POST /cvms/{id}/commit-replica, the second phase of
// an on-chain replica: the service checks the transaction (or, with
// AlreadyRegistered, only the chain's state) and creates the replica. 466
// (ErrHashExpired: the token is unknown, used or expired), 467
// (ErrTxVerificationFailed) and 468 (ErrHashNotOnChain) match with
// errors.Is. Not retried on 5xx: the token is consumed by the first
// attempt. The token is the authorisation, so no API key is required.
func (c *Client) CommitReplica(ctx context.Context, id string, req CommitReplicaRequest) (*CVM, error) {
	p, err := cvmPath(id, "/commit-replica")
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
	r := request{method: http.MethodPost, path: p, body: req, retry: retryUnsent, noAuth: true}
	return call[CVM](ctx, c, r)
}

// maxCVMPages bounds how many pages ListCVMs follows.
const maxCVMPages = 50

// ListCVMs calls GET /cvms and returns every CVM the API key sees. It
// accepts the plain list of the 2025-10-28 API and the page shape {items,
// total, page, page_size, pages}, whose pages it follows. The reference
// documents no app filter, so callers filter by app id themselves.
func (c *Client) ListCVMs(ctx context.Context) ([]CVM, error) {
	var all []CVM
	for page := 1; ; page++ {
		var q url.Values
		if page > 1 {
			q = url.Values{"page": {strconv.Itoa(page)}}
		}
		r := request{method: http.MethodGet, path: "/cvms", query: q, retry: retryIdempotent}
		resp, err := c.do(ctx, r)
		if err != nil {
			return nil, err
		}
		var list []CVM
		if err := json.Unmarshal(resp.body, &list); err == nil {
			return append(all, list...), nil
		}
		var pg struct {
			Items *[]CVM `json:"items"`
			Pages int    `json:"pages"`
		}
		if err := c.decode(r, resp, &pg); err != nil {
			return nil, err
		}
		if pg.Items == nil {
			return nil, c.decodeError(r, resp, &fieldError{object: "CVM list", field: "items", problem: "is missing"})
		}
		all = append(all, *pg.Items...)
		if page >= pg.Pages || len(*pg.Items) == 0 {
			return all, nil
		}
		if page == maxCVMPages {
			return nil, fmt.Errorf("GET /cvms announces %d pages; stopped after %d", pg.Pages, maxCVMPages)
		}
	}
}

// AppCVMs lists the CVMs of one app (ListCVMs filtered by app id).
func (c *Client) AppCVMs(ctx context.Context, appID string) ([]CVM, error) {
	want, err := NormalizeAppID(appID)
	if err != nil {
		return nil, err
	}
	all, err := c.ListCVMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []CVM
	for _, vm := range all {
		if vm.AppID == nil {
			continue
		}
		if got, err := NormalizeAppID(*vm.AppID); err == nil && got == want {
			out = append(out, vm)
		}
	}
	return out, nil
}

// NodeID is the node the CVM runs on: teepod_id, teepod.id, node_id, or
// node.id (the legacy GET /cvms item); false when the object names none.
func (c CVM) NodeID() (int64, bool) {
	switch {
	case c.TeepodID != nil:
		return *c.TeepodID, true
	case c.Teepod != nil && c.Teepod.ID != 0:
		return c.Teepod.ID, true
	}
	if raw, ok := c.Extra["node_id"]; ok {
		var n int64
		if json.Unmarshal(raw, &n) == nil && n != 0 {
			return n, true
		}
	}
	if raw, ok := c.Extra["node"]; ok {
		var n struct {
			ID int64 `json:"id"`
		}
		if json.Unmarshal(raw, &n) == nil && n.ID != 0 {
			return n.ID, true
		}
	}
	return 0, false
}

// Node is one entry of GET /teepods/available (the SDK's getAvailableNodes).
type Node struct {
	TeepodID          int64  `json:"teepod_id"`
	Name              string `json:"name"`
	DeviceID          string `json:"device_id"` // 64 lowercase hex, no 0x ("" when the node publishes none)
	SupportOnchainKMS bool   `json:"support_onchain_kms"`
	RegionIdentifier  string `json:"region_identifier"`
	Extra             Extra  `json:"-"`
}

// UnmarshalJSON requires teepod_id, tolerates nulls and normalises the
// device id.
func (n *Node) UnmarshalJSON(data []byte) error {
	var a struct {
		TeepodID          int64   `json:"teepod_id"`
		Name              *string `json:"name"`
		DeviceID          *string `json:"device_id"`
		SupportOnchainKMS *bool   `json:"support_onchain_kms"`
		RegionIdentifier  *string `json:"region_identifier"`
	}
	var extra Extra
	members, err := unmarshalObject(data, &a, &extra, "node", "teepod_id")
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "node", "teepod_id"); err != nil {
		return err
	}
	out := Node{TeepodID: a.TeepodID, Extra: extra}
	if a.Name != nil {
		out.Name = *a.Name
	}
	if a.DeviceID != nil && *a.DeviceID != "" {
		d, ok := normalizeHash32(*a.DeviceID)
		if !ok {
			return &fieldError{object: "node", field: "device_id", problem: "is not 64 hex characters"}
		}
		out.DeviceID = d
	}
	if a.SupportOnchainKMS != nil {
		out.SupportOnchainKMS = *a.SupportOnchainKMS
	}
	if a.RegionIdentifier != nil {
		out.RegionIdentifier = *a.RegionIdentifier
	}
	*n = out
	return nil
}

// AvailableNodes is the answer of GET /teepods/available.
type AvailableNodes struct {
	Nodes []Node `json:"nodes"`
}

// AvailableNodes calls GET /teepods/available: the nodes the API key may
// deploy to, each with its device id.
func (c *Client) AvailableNodes(ctx context.Context) (*AvailableNodes, error) {
	r := request{method: http.MethodGet, path: "/teepods/available", retry: retryIdempotent}
	out, err := call[AvailableNodes](ctx, c, r)
	if err != nil {
		return nil, err
	}
	if out.Nodes == nil {
		return nil, &DecodeError{Method: r.method, Path: r.path, Status: http.StatusOK, Field: "nodes", Err: errors.New("the node list has no nodes member")}
	}
	return out, nil
}

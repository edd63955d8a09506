package phala

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// CVMKMSInfo is the kms_info of a CVM object from 2026-01-21 on: where the
// app's keys come from, by contract instead of by KMS node.
type CVMKMSInfo struct {
	ChainID            *int64  `json:"chain_id"`
	DstackKMSAddress   *string `json:"dstack_kms_address"`
	DstackAppAddress   *string `json:"dstack_app_address"`
	DeployerAddress    *string `json:"deployer_address"`
	RPCEndpoint        *string `json:"rpc_endpoint"`
	EncryptedEnvPubkey *string `json:"encrypted_env_pubkey"`
}

// CVMKMS is the on-chain KMS a CVM object names, read from either kms_info
// shape.
type CVMKMS struct {
	ChainID uint64
	// Contract is the DstackKms address.
	Contract string
	// Ref is the KMS node's slug or id for /kms/{kms}/… paths: kms_info's
	// in the legacy shape, kms_id beside the 2026 shape, "" when the object
	// names none (then look the contract up in ListOnChainKMS).
	Ref string
}

// OnChainKMS returns the on-chain KMS the CVM names; ok is false for a
// cloud-KMS CVM or an object without kms_info.
func (c *CVM) OnChainKMS() (k CVMKMS, ok bool) {
	if ki := c.KMSInfo; ki != nil && ki.OnChain() {
		return CVMKMS{ChainID: uint64(*ki.ChainID), Contract: *ki.KMSContractAddress, Ref: ki.Ref()}, true
	}
	fk := c.OnChainKMSInfo
	if fk == nil || fk.ChainID == nil || *fk.ChainID <= 0 || fk.DstackKMSAddress == nil || !isAddress(*fk.DstackKMSAddress) {
		return CVMKMS{}, false
	}
	k = CVMKMS{ChainID: uint64(*fk.ChainID), Contract: *fk.DstackKMSAddress}
	if c.KMSID != nil {
		k.Ref = *c.KMSID
	}
	return k, true
}

// hostedVM is the hosted member of a legacy (2025-10-28) GET /cvms item:
// the VM itself, whose id is the CVM's.
type hostedVM struct {
	ID         ID     `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	AppID      string `json:"app_id"`
	InstanceID string `json:"instance_id"`
	VMUUID     string `json:"vm_uuid"`
}

// fill completes a CVM decoded without a top-level id from its hosted VM.
func (h *hostedVM) fill(c *CVM) {
	c.ID = h.ID
	set := func(dst **string, v string) {
		if *dst == nil && v != "" {
			*dst = &v
		}
	}
	set(&c.AppID, h.AppID)
	set(&c.InstanceID, h.InstanceID)
	uuid := h.VMUUID
	if s := h.ID.String(); uuid == "" && uuidLike(s) {
		uuid = s
	}
	set(&c.VMUUID, uuid)
}

// uuidLike matches a UUID with or without its dashes.
func uuidLike(s string) bool {
	s = strings.ReplaceAll(s, "-", "")
	return len(s) == 32 && isHex(s)
}

// KMSContract is a DstackKms contract as GET /kms lists it from 2026-06-23
// (or as the legacy node listing is grouped into): chain_id 0 and
// contract_address "phala" stand for Phala's off-chain cloud KMS.
type KMSContract struct {
	// ID is the contract's hashed id ("kc_…"); zero when read from the
	// legacy node listing, which has none.
	ID              ID      `json:"id"`
	Slug            *string `json:"slug,omitempty"`
	Label           *string `json:"label,omitempty"`
	ContractAddress string  `json:"contract_address"`
	ChainID         int64   `json:"chain_id"`
	// K256Pubkey is the KMS root key the API reports (hex, 33 bytes
	// compressed); not necessarily what the chain holds.
	K256Pubkey *string `json:"k256_pubkey,omitempty"`
	CAPubkey   *string `json:"ca_pubkey,omitempty"`
	NodeCount  int     `json:"node_count"`
	// Nodes are the node slugs of the legacy listing (nil otherwise).
	Nodes []string `json:"-"`
	Extra Extra    `json:"-"`
}

type kmsContractJSON KMSContract

// MarshalJSON adds Extra members.
func (k KMSContract) MarshalJSON() ([]byte, error) { return marshalObject(kmsContractJSON(k), k.Extra) }

// UnmarshalJSON requires id and contract_address; a null chain_id is 0.
func (k *KMSContract) UnmarshalJSON(data []byte) error {
	var a kmsContractJSON
	members, err := unmarshalObject(data, &a, &a.Extra, "KMS contract", "id", "contract_address")
	if err != nil {
		return err
	}
	if err := requireNonNull(members, "KMS contract", "id", "contract_address"); err != nil {
		return err
	}
	*k = KMSContract(a)
	return nil
}

// OnChain reports whether the entry is a contract on a chain (not the
// cloud KMS sentinel).
func (k KMSContract) OnChain() bool { return k.ChainID > 0 && isAddress(k.ContractAddress) }

// Ref is how the API names the contract: its slug, else its id.
func (k KMSContract) Ref() string {
	if k.Slug != nil && *k.Slug != "" {
		return *k.Slug
	}
	return k.ID.String()
}

// Matches reports whether ref names this contract: its slug, its id, its
// address, or (legacy listing) one of its nodes.
func (k KMSContract) Matches(ref string) bool {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return false
	}
	if (k.Slug != nil && *k.Slug == ref) || (!k.ID.IsZero() && k.ID.String() == ref) || strings.EqualFold(k.ContractAddress, ref) {
		return true
	}
	for _, n := range k.Nodes {
		if n == ref {
			return true
		}
	}
	return false
}

// KMSContracts is every KMS contract GET /kms lists.
type KMSContracts struct {
	Items []KMSContract
	// Legacy is set when the server answered the node listing of versions
	// before 2026-06-23 and the items were grouped by contract from it.
	Legacy bool
}

// kmsListItem decodes one item of either listing: a contract (2026-06-23)
// or a KMS node (the legacy KmsInfo).
type kmsListItem struct {
	contract *KMSContract
	node     *KMSInfo
}

func (it *kmsListItem) UnmarshalJSON(data []byte) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil || probe == nil {
		return &fieldError{object: "KMS list item", problem: "expected a JSON object, got " + jsonKind(data)}
	}
	if _, ok := probe["contract_address"]; ok {
		it.contract = &KMSContract{}
		return json.Unmarshal(data, it.contract)
	}
	it.node = &KMSInfo{}
	return json.Unmarshal(data, it.node)
}

// groupNodes turns the legacy node listing into contracts: one per chain
// and DstackKms address (the cloud KMS nodes into the "phala" sentinel),
// counting the nodes; the root key is a node's k256_pubkey when it has one.
func groupNodes(nodes []KMSInfo) []KMSContract {
	var out []KMSContract
	index := map[string]int{}
	for _, n := range nodes {
		key, addr, chain := "phala", "phala", int64(0)
		if n.OnChain() {
			addr, chain = *n.KMSContractAddress, *n.ChainID
			key = strings.ToLower(addr) + "@" + jsonInt(chain)
		}
		i, ok := index[key]
		if !ok {
			slug := n.Ref()
			out = append(out, KMSContract{ContractAddress: addr, ChainID: chain, Slug: &slug})
			i = len(out) - 1
			index[key] = i
		}
		c := &out[i]
		c.NodeCount++
		c.Nodes = append(c.Nodes, n.Ref())
		if raw, ok := n.Extra["k256_pubkey"]; ok && c.K256Pubkey == nil {
			var s string
			if json.Unmarshal(raw, &s) == nil && s != "" {
				c.K256Pubkey = &s
			}
		}
	}
	return out
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// ListKMSContracts calls GET /kms?page_size=100 (following the pages) with
// the client's version: from 2026-06-23 the service lists contracts; an
// older version (set, or fallen back to) lists nodes, which are grouped by
// contract (Legacy is then set).
func (c *Client) ListKMSContracts(ctx context.Context) (*KMSContracts, error) {
	type page struct {
		Items []kmsListItem `json:"items"`
		Pages int           `json:"pages"`
	}
	out := &KMSContracts{}
	var nodes []KMSInfo
	for n := 1; ; n++ {
		q := url.Values{"page_size": {"100"}}
		if n > 1 {
			q.Set("page", strconv.Itoa(n))
		}
		p, err := call[page](ctx, c, request{method: http.MethodGet, path: "/kms", query: q, retry: retryIdempotent})
		if err != nil {
			return nil, err
		}
		for _, it := range p.Items {
			if it.contract != nil {
				out.Items = append(out.Items, *it.contract)
			} else {
				nodes = append(nodes, *it.node)
			}
		}
		if n >= p.Pages || len(p.Items) == 0 {
			break
		}
		if n == maxKMSPages {
			return nil, fmt.Errorf("GET /kms announces %d pages; stopped after %d", p.Pages, maxKMSPages)
		}
	}
	if len(nodes) > 0 {
		out.Legacy = true
		out.Items = append(out.Items, groupNodes(nodes)...)
	}
	return out, nil
}

package cloud

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/crypto"
)

// What differs between the versions the emulator serves (reference B1):
//
//	2025-10-28  integer ids; kms_info in the KmsInfo (node) shape; GET /cvms
//	            items with the VM under "hosted"; POST /cvms only commits
//	2026-01-21  flat CvmInfo with integer ids and the 2026 kms_info
//	2026-05-22  string ids ("cvm_…", user "usr_…"); same-path provision on
//	            POST /cvms with a one-time commit token
//	2026-06-23  as 2026-05-22, and GET /kms lists KMS contracts,
//	            GET /kms/{slug|kc_id} is a contract, GET /kms/{slug}/nodes
//
// The node-keyed calls (GET /kms?is_onchain=, GET /kms/{slug} before
// 2026-06-23, GET /kms/{kms}/pubkey/{app}) answer the same under every
// version.

// userIDJSON is the (single) user's id in version's shape.
func userIDJSON(version string) any {
	if hashedIDs(version) {
		return "usr_" + shortHash("cvmdeploy-local-cloud/user/1")
	}
	return 1
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:8]))
}

// listItemJSON is a GET /cvms item: the CVM object, or under 2025-10-28 the
// legacy shape whose VM (id, name, status, app_id, instance_id) is under
// "hosted" (hosted.id is the VM UUID).
func (s *Server) listItemJSON(c *cvm, version string) map[string]any {
	m := s.cvmJSON(c, version)
	if version != Version20251028 {
		return m
	}
	return map[string]any{
		"hosted": map[string]any{"id": c.vmUUID, "name": c.name, "status": c.status, "app_id": c.appID,
			"instance_id": c.instanceID, "vm_uuid": c.vmUUID},
		"name": c.name, "status": c.status, "in_progress": c.inProgress, "kms_info": m["kms_info"],
		"listed": c.listed, "vcpu": c.vcpu, "memory": c.memory, "disk_size": c.disk,
		"node": map[string]any{"id": s.cfg.NodeID, "name": s.cfg.NodeName},
	}
}

// contractIDOf is the hashed id ("kc_…") of a KMS entry's contract.
func contractIDOf(k *kmsEntry) string {
	if !k.OnChain {
		return "kc_" + shortHash("cvmdeploy-local-cloud/kms-contract/phala")
	}
	return "kc_" + shortHash("cvmdeploy-local-cloud/kms-contract/"+strconv.FormatUint(*k.ChainID, 10)+"/"+strings.ToLower(k.Contract.Hex()))
}

// contractID is the on-chain KMS contract's id.
func (s *Server) contractID() string { return contractIDOf(s.onKMS) }

// contractMatches reports whether ref (slug, kc_ id or address) names k's
// contract.
func (s *Server) contractMatches(k *kmsEntry, ref string) bool {
	ref = strings.TrimSpace(ref)
	return ref != "" && (ref == contractIDOf(k) || ref == k.Slug || (k.OnChain && strings.EqualFold(ref, k.Contract.Hex())))
}

// contractByRef finds the contract ref names.
func (s *Server) contractByRef(ref string) *kmsEntry {
	for _, k := range []*kmsEntry{s.onKMS, s.phKMS} {
		if s.contractMatches(k, ref) {
			return k
		}
	}
	return nil
}

// reportedRootKey is the root key the API reports as k256_pubkey: the one
// the cloud's KMS signs with, or with MisreportRootKey another one (the
// lie is logged).
func (s *Server) reportedRootKey() []byte {
	root := s.keys.rootPublicKey()
	if !s.cfg.MisreportRootKey {
		return root
	}
	sum := sha256.Sum256(append([]byte("cvmdeploy-local-cloud/misreported-root/"), root...))
	fake, err := crypto.ToECDSA(sum[:])
	if err != nil { // not a valid scalar: practically impossible
		return root
	}
	reported := crypto.CompressPubkey(&fake.PublicKey)
	s.log.Warn("adversary", "mode", "misreport-root-key", "on", "kms", "lie",
		"k256_pubkey "+hex.EncodeToString(reported)+" reported for the KMS whose root is "+hex.EncodeToString(root))
	return reported
}

// contractJSON is a KmsContract (2026-06-23): the cloud KMS is the sentinel
// contract "phala" on chain 0.
func (s *Server) contractJSON(k *kmsEntry) map[string]any {
	m := map[string]any{
		"id": contractIDOf(k), "slug": k.Slug, "label": k.Slug, "contract_address": "phala", "chain_id": 0,
		"k256_pubkey": nil, "ca_pubkey": nil, "node_count": 1,
	}
	if k.OnChain {
		m["label"] = "DstackKms on chain " + strconv.FormatUint(*k.ChainID, 10)
		m["contract_address"] = k.Contract.Hex()
		m["chain_id"] = *k.ChainID
		m["k256_pubkey"] = "0x" + hex.EncodeToString(s.reportedRootKey())
		s.logKMSLie("kms")
	}
	return m
}

// kmsType is the kms_type of a node.
func (s *Server) kmsType(k *kmsEntry) string {
	switch {
	case !k.OnChain:
		return "phala"
	case *k.ChainID == 8453:
		return "base"
	}
	return "ethereum"
}

// handleKMSNodes serves GET /kms/{slug}/nodes (2026-06-23): the KMS nodes
// of a contract, {items:[{id,slug,url,version,kms_type}], total}. Older
// versions have no such route.
func (s *Server) handleKMSNodes(w http.ResponseWriter, r *http.Request) {
	if versionOf(r) != Version20260623 {
		writeDetail(w, http.StatusNotFound, "Not Found")
		return
	}
	ref := r.PathValue("kms")
	k := s.contractByRef(ref)
	if k == nil {
		writeKMSNotFound(w, ref)
		return
	}
	item := map[string]any{"id": k.ID, "slug": k.Slug, "url": k.URL, "version": k.Version, "kms_type": s.kmsType(k)}
	writeJSON(w, http.StatusOK, map[string]any{"items": []any{item}, "total": 1})
}

package cloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// deviceAddedTopic is topic0 of DstackApp.DeviceAdded(bytes32).
var deviceAddedTopic = appABI.GetABI().Events["DeviceAdded"].ID

// pendingReplica is a replica of an on-chain-KMS CVM waiting for its node's
// device (and its compose hash) to be allowed on the AppAuth: the answer of
// POST /cvms/{id}/replicas was 465 with its commit token.
type pendingReplica struct {
	token      string
	sourceID   int64
	app        string // lowercase 40 hex
	node       *Node
	instanceID string
	hash       string
	appCompose []byte
	input      composeInput
	allowed    []string
	encrypted  string
	envKeys    []string
	expires    time.Time
}

// handleReplicate serves POST /cvms/{id}/replicas {node_id?, os_image?,
// encrypted_env?, compose_hash?} (reference B6): a new CVM of the same app,
// with the same app-compose, on a node. A cloud-KMS app's replica is created
// at once (200, the VM). On an on-chain KMS the KMS must allow the node's
// device and the compose hash: unless both are already allowed (and the
// request is not X-Prepare-Only), the answer is 465 with the details of an
// update (compose_hash, app_id, device_id, kms_info, commit_token, ...),
// finished by POST /cvms/{id}/commit-replica. Without node_id the node with
// the fewest CVMs of the app (counting pending replicas) is chosen. Without
// encrypted_env the replica gets the source's.
func (s *Server) handleReplicate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	src := s.findLocked(id)
	s.mu.Unlock()
	if src == nil {
		writeCVMNotFound(w, id)
		return
	}
	body := map[string]any{}
	if r.ContentLength != 0 {
		var ok bool
		if body, ok = decodeObject(w, r); !ok {
			return
		}
	}
	v := &validator{}
	loc := []any{"body"}
	nodeID, hasNode := v.integer(body, loc, "node_id", 1, 1<<31)
	if n, ok := v.integer(body, loc, "teepod_id", 1, 1<<31); ok && !hasNode {
		nodeID, hasNode = n, true
	}
	image, hasImage := v.str(body, loc, "os_image", false)
	encrypted, hasEnv := v.str(body, loc, "encrypted_env", false)
	encrypted = strings.TrimPrefix(encrypted, "0x")
	if hasEnv && !isHex(encrypted) {
		v.add("value_error", at(loc, "encrypted_env"), "Value error, encrypted_env must be hex", "<redacted>", nil)
	}
	wantHash, hasHash := v.hexField(body, loc, "compose_hash", 32, false)
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	if hasImage && image != s.cfg.OSImageName {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeImageNotFound,
			Message: fmt.Sprintf("OS image %q not available; available: %s", image, s.cfg.OSImageName),
			Details: []detailItem{{Field: "os_image", Value: image}}})
		return
	}

	s.mu.Lock()
	s.dropExpiredReplicasLocked(time.Now())
	p := &pendingReplica{sourceID: src.id, app: src.appID, instanceID: randomHex(20), hash: src.composeHash,
		appCompose: src.appCompose, input: src.input, allowed: slices.Clone(src.allowedEnvs),
		encrypted: src.encryptedEnv, envKeys: slices.Clone(src.envKeys), expires: time.Now().Add(s.cfg.ProvisionTTL)}
	if hasNode {
		p.node = s.node(nodeID)
	} else {
		p.node = s.leastLoadedLocked(src.appID)
	}
	onChain := src.kms.OnChain
	s.mu.Unlock()
	if p.node == nil {
		s.writeNodeNotFound(w, nodeID)
		return
	}
	if hasHash && wantHash != p.hash {
		writeValidation(w, []fieldError{{Type: "value_error", Loc: at(loc, "compose_hash"),
			Msg: fmt.Sprintf("Value error, compose_hash is not CVM %s's current compose hash %s", id, p.hash), Input: wantHash}})
		return
	}
	if hasEnv {
		keys, errs := s.envCheck(p.app, encrypted, p.allowed, nil, loc)
		if errs != nil {
			writeValidation(w, errs)
			return
		}
		p.encrypted, p.envKeys = encrypted, keys
		s.log.Info("decrypted env", "app", "0x"+p.app, "keys", keys)
	}
	lie := s.lieAboutReplica(p)
	version := versionOf(r)
	if !onChain {
		s.createReplica(w, src, p, version, false)
		return
	}
	policy, err := s.readPolicy(r.Context(), common.HexToAddress(src.appID), common.HexToHash(p.hash), p.node.DeviceID, common.HexToAddress(p.instanceID))
	if err != nil {
		writeDetail(w, http.StatusBadGateway, "could not read the app's on-chain policy: "+err.Error())
		return
	}
	prepareOnly := strings.EqualFold(r.Header.Get("X-Prepare-Only"), "true")
	if policy.IsAllowed && !prepareOnly && lie == nil {
		s.createReplica(w, src, p, version, false)
		return
	}
	p.token = randomHex(24)
	s.mu.Lock()
	s.replicas[p.token] = p
	s.mu.Unlock()
	app, device := p.app, hex.EncodeToString(p.node.DeviceID[:])
	if lie != nil {
		app, device = lie.app, lie.device
		s.log.Warn("adversary", "mode", s.cfg.Adversary, "on", "replica", "cvm", src.id, "lie", lie.what)
	}
	base := "http://" + r.Host + s.cfg.PathPrefix
	ref := fmt.Sprint(src.idJSON(version))
	s.log.Info("replica needs on-chain approval", "cvm", src.id, "app", "0x"+src.appID, "node", p.node.ID,
		"device_id", hex.EncodeToString(p.node.DeviceID[:]), "compose_hash", p.hash,
		"compose_hash_allowed", policy.ComposeHashAllowed, "device_id_allowed", policy.DeviceIDAllowed, "prepare_only", prepareOnly)
	writeStructured(w, StatusHashRegistrationRequired, apiError{
		ErrorCode: codeHashRegistrationRequired,
		Message:   fmt.Sprintf("The replica on node %s needs its device (and the compose hash) allowed on the app contract first", p.node.Name),
		Details: []detailItem{
			{Field: "compose_hash", Value: p.hash},
			{Field: "app_id", Value: app},
			{Field: "device_id", Value: device},
			{Field: "kms_info", Value: src.kms.info()},
			{Field: "commit_token", Value: p.token},
			{Field: "commit_url", Value: s.cfg.PortalURL + "/dashboard/cvms/" + src.vmUUID + "/commit-replica?token=" + p.token},
			{Field: "api_commit_url", Value: base + "/cvms/" + ref + "/commit-replica"},
			{Field: "onchain_status", Value: map[string]any{"compose_hash_allowed": policy.ComposeHashAllowed,
				"device_id_allowed": policy.DeviceIDAllowed, "is_allowed": policy.IsAllowed}},
		},
		Suggestions: []string{
			fmt.Sprintf("Call addDevice(0x%s) on the app contract 0x%s (and addComposeHash(0x%s) if it is not allowed)", device, app, p.hash),
			"Then POST /cvms/{id}/commit-replica with the token, the compose hash and the transaction hash (or \"already-registered\")",
		},
	})
}

// PendingReplicas is the number of replicas waiting for their commit
// (unexpired tokens); tests use it to check that a 465 created nothing.
func (s *Server) PendingReplicas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpiredReplicasLocked(time.Now())
	return len(s.replicas)
}

// dropExpiredReplicasLocked forgets expired replica tokens; s.mu held.
func (s *Server) dropExpiredReplicasLocked(now time.Time) {
	for t, p := range s.replicas {
		if now.After(p.expires) {
			delete(s.replicas, t)
		}
	}
}

// leastLoadedLocked picks the node with the fewest CVMs and pending
// replicas of app, the first such node on a tie; s.mu must be held.
func (s *Server) leastLoadedLocked(app string) *Node {
	load := map[int64]int{}
	for _, c := range s.cvms {
		if c.appID == app {
			load[c.node.ID]++
		}
	}
	for _, p := range s.replicas {
		if p.app == app {
			load[p.node.ID]++
		}
	}
	best := &s.cfg.Nodes[0]
	for i := range s.cfg.Nodes {
		if n := &s.cfg.Nodes[i]; load[n.ID] < load[best.ID] {
			best = n
		}
	}
	return best
}

// handleCommitReplica serves POST /cvms/{id}/commit-replica {token,
// compose_hash, transaction_hash}: the replica prepared with the token is
// created once the chain allows its node's device and the compose hash.
// transaction_hash must be a mined transaction of the app contract that
// emitted DeviceAdded(the node's device) or ComposeHashAdded(the hash) (467
// otherwise), or "already-registered" (or "", as the CLI sends it) for a
// state-only check; either way the chain must then allow both (468). An
// unknown, used or expired token is 466. Like commit-update, the token is
// the authorisation.
func (s *Server) handleCommitReplica(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	src := s.findLocked(id)
	s.mu.Unlock()
	if src == nil {
		writeCVMNotFound(w, id)
		return
	}
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	v := &validator{}
	loc := []any{"body"}
	token, _ := v.str(body, loc, "token", true)
	rawHash, _ := v.str(body, loc, "compose_hash", false)
	rawTx, _ := v.str(body, loc, "transaction_hash", false)
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	var hash string
	if rawHash != "" {
		h, err := parseComposeHash(rawHash)
		if err != nil {
			writeValidation(w, []fieldError{{Type: "value_error", Loc: at(loc, "compose_hash"), Msg: "Value error, expected 64 hex characters", Input: rawHash}})
			return
		}
		hash = h
	}
	var tx common.Hash
	stateOnly := rawTx == "" || rawTx == AlreadyRegistered
	if !stateOnly {
		h, err := parseHexID(rawTx, 32)
		if err != nil {
			writeValidation(w, []fieldError{{Type: "value_error", Loc: at(loc, "transaction_hash"),
				Msg: "Value error, expected a 32-byte transaction hash or \"already-registered\"", Input: rawTx}})
			return
		}
		tx = common.HexToHash(h)
	}
	s.mu.Lock()
	s.dropExpiredReplicasLocked(time.Now())
	p := s.replicas[token]
	if p != nil && (p.sourceID != src.id || (hash != "" && hash != p.hash)) {
		p = nil
	}
	s.mu.Unlock()
	if p == nil {
		writeStructured(w, StatusHashExpired, apiError{ErrorCode: codeHashInvalidOrExpired,
			Message:     "The commit token is unknown, used or expired for this CVM (or names another compose hash)",
			Details:     []detailItem{{Field: "compose_hash", Value: hash}},
			Suggestions: []string{"Ask for the replica again with POST /cvms/{id}/replicas"}})
		return
	}
	app := common.HexToAddress(p.app)
	ctx, cancel := context.WithTimeout(r.Context(), chainTimeout)
	defer cancel()
	if !stateOnly {
		if err := s.verifyReplicaTx(ctx, tx, app, p.node.DeviceID, common.HexToHash(p.hash)); err != nil {
			status := StatusTxVerificationFailed
			if !errors.Is(err, errTxNotVerified) {
				status = http.StatusBadGateway
			}
			s.log.Info("replica tx rejected", "cvm", src.id, "tx", tx.Hex(), "err", err)
			writeStructured(w, status, apiError{ErrorCode: codeTxVerificationFailed, Message: err.Error(),
				Details: []detailItem{{Field: "transaction_hash", Value: tx.Hex()}, {Field: "compose_hash", Value: p.hash}}})
			return
		}
	}
	policy, err := s.readPolicy(ctx, app, common.HexToHash(p.hash), p.node.DeviceID, common.HexToAddress(p.instanceID))
	if err != nil {
		writeDetail(w, http.StatusBadGateway, "could not read the app's on-chain policy: "+err.Error())
		return
	}
	if !policy.IsAllowed {
		writeStructured(w, StatusHashNotOnChain, apiError{ErrorCode: codeHashNotAllowed,
			Message: fmt.Sprintf("app 0x%s does not allow the replica on node %s (device %x, compose hash %s): %s", p.app, p.node.Name, p.node.DeviceID[:], p.hash, policy.Reason),
			Details: []detailItem{{Field: "compose_hash", Value: p.hash}, {Field: "device_id", Value: hex.EncodeToString(p.node.DeviceID[:])},
				{Field: "onchain_status", Value: map[string]any{"compose_hash_allowed": policy.ComposeHashAllowed,
					"device_id_allowed": policy.DeviceIDAllowed, "is_allowed": false}}}})
		return
	}
	s.mu.Lock()
	if s.replicas[token] != p { // a concurrent commit used the token
		s.mu.Unlock()
		writeStructured(w, StatusHashExpired, apiError{ErrorCode: codeHashInvalidOrExpired, Message: "The commit token was used by another request"})
		return
	}
	delete(s.replicas, token)
	s.mu.Unlock()
	s.createReplica(w, src, p, versionOf(r), !stateOnly)
}

// createReplica adds the replica CVM, starts its boot and answers the VM.
func (s *Server) createReplica(w http.ResponseWriter, src *cvm, p *pendingReplica, version string, viaTx bool) {
	s.mu.Lock()
	c := &cvm{vmUUID: newUUID(), instanceID: p.instanceID, appID: p.app, kms: src.kms, kmsType: src.kmsType, node: p.node,
		appCompose: p.appCompose, input: p.input, composeHash: p.hash, allowedEnvs: p.allowed, encryptedEnv: p.encrypted, envKeys: p.envKeys,
		instanceType: src.instanceType, vcpu: src.vcpu, memory: src.memory, disk: src.disk, listed: src.listed, deployer: src.deployer,
		status: StatusCreating, inProgress: true, bootProgress: "allocating resources", createdAt: time.Now(), correlationID: newUUID()}
	c.id = s.nextID
	s.nextID++
	c.hashID = hashID(c.id)
	c.name = replicaName(src.name, c.id)
	s.cvms = append(s.cvms, c)
	s.startBootLocked(c)
	resp := s.cvmJSON(c, version)
	s.mu.Unlock()
	s.log.Info("replica created", "cvm", c.id, "name", c.name, "source", src.id, "app", "0x"+c.appID, "node", c.node.ID,
		"device_id", hex.EncodeToString(c.node.DeviceID[:]), "compose_hash", c.composeHash, "confirmed_onchain", viaTx)
	writeJSON(w, http.StatusOK, resp)
}

// replicaName is "<source>-replica-<id>", within the 63-character limit.
func replicaName(source string, id int64) string {
	suffix := "-replica-" + strconv.FormatInt(id, 10)
	if len(source)+len(suffix) > 63 {
		source = strings.TrimRight(source[:63-len(suffix)], "-")
	}
	return source + suffix
}

// verifyReplicaTx checks that tx is mined, succeeded and emitted, from the
// app contract, DeviceAdded(device) or ComposeHashAdded(hash): something a
// replica on that node needed.
func (s *Server) verifyReplicaTx(ctx context.Context, tx common.Hash, app common.Address, device, hash common.Hash) error {
	rcpt, err := s.cfg.Chain.TransactionReceipt(ctx, tx)
	if err != nil {
		if errors.Is(err, ethereum.NotFound) {
			return fmt.Errorf("%w: transaction %s not found or not mined", errTxNotVerified, tx.Hex())
		}
		return fmt.Errorf("read receipt %s: %w", tx.Hex(), err)
	}
	if rcpt.Status != types.ReceiptStatusSuccessful {
		return fmt.Errorf("%w: transaction %s reverted", errTxNotVerified, tx.Hex())
	}
	for _, l := range rcpt.Logs {
		if l.Address != app || len(l.Topics) == 0 {
			continue
		}
		if (l.Topics[0] == deviceAddedTopic && bytes.Equal(l.Data, device[:])) || (l.Topics[0] == composeHashAddedTopic && bytes.Equal(l.Data, hash[:])) {
			return nil
		}
	}
	return fmt.Errorf("transaction %s emitted neither DeviceAdded(%s) nor ComposeHashAdded(%s) from app %s: %w", tx.Hex(), device.Hex(), hash.Hex(), app.Hex(), errTxNotVerified)
}

// replicaLie is what a replica adversary names in the 465 instead of the
// truth.
type replicaLie struct {
	app, device, what string
}

// lieAboutReplica applies the replica adversary modes to a prepared
// replica: replica-compose makes the replica run the source's input with
// the sidecar added (the 465 names that document's hash, consistently);
// replica-app names another app id, replica-device a device that is no
// node's (a host the operator controls). nil when honest.
func (s *Server) lieAboutReplica(p *pendingReplica) *replicaLie {
	switch s.cfg.Adversary {
	case AdversaryReplicaCompose:
		in := p.input
		in.dockerCompose = addSidecar(in.dockerCompose)
		doc, hash, _, err := s.appCompose(in)
		if err != nil {
			return nil
		}
		p.input, p.appCompose, p.hash = in, doc, hash
		return &replicaLie{app: p.app, device: hex.EncodeToString(p.node.DeviceID[:]),
			what: "the replica runs the source's compose with a service mounting /var/run/dstack.sock (compose hash " + hash + ")"}
	case AdversaryReplicaApp:
		other := sha256.Sum256([]byte("cvmdeploy local cloud / another app / " + p.app))
		app := hex.EncodeToString(other[:20])
		return &replicaLie{app: app, device: hex.EncodeToString(p.node.DeviceID[:]), what: "the 465 names app 0x" + app + " instead of 0x" + p.app}
	case AdversaryReplicaDevice:
		rogue := sha256.Sum256([]byte("cvmdeploy local cloud / the operator's own host / " + p.token + p.instanceID))
		d := hex.EncodeToString(rogue[:])
		return &replicaLie{app: p.app, device: d, what: "the 465 names device " + d + ", which is no node's, instead of node " + strconv.FormatInt(p.node.ID, 10) + "'s"}
	}
	return nil
}

package cloud

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// AlreadyRegistered is the transaction hash value that asks for a state-only
// check: the compose hash was registered earlier (reference §11).
const AlreadyRegistered = "already-registered"

// pendingUpdate is a compose update waiting for its on-chain registration.
type pendingUpdate struct {
	token        string
	cvmID        int64
	hash         string
	appCompose   []byte
	input        composeInput
	allowedEnvs  []string
	encryptedEnv *string
	envKeys      []string
	res          resources
	expires      time.Time
}

// resources are the non-hashed settings a PATCH may change.
type resources struct {
	vcpu, memory, disk *int64
}

// updateRequest is a validated PATCH /cvms/{id} body.
type updateRequest struct {
	dockerCompose *string
	preLaunch     *string
	allowedEnvs   []string
	hasAllowed    bool
	publics       map[string]bool
	encryptedEnv  *string
	envKeys       []string
	res           resources
	any           bool
}

func readUpdate(v *validator, body map[string]any, image string) updateRequest {
	loc := []any{"body"}
	var u updateRequest
	if s, ok := v.str(body, loc, "docker_compose_file", false); ok {
		if strings.TrimSpace(s) == "" {
			v.add("string_too_short", at(loc, "docker_compose_file"), "String should have at least 1 character", s, map[string]any{"min_length": 1})
		}
		u.dockerCompose, u.any = &s, true
	}
	if s, ok := v.str(body, loc, "pre_launch_script", false); ok {
		u.preLaunch, u.any = &s, true
	}
	if keys, ok := v.strList(body, loc, "allowed_envs"); ok {
		checkEnvKeys(v, at(loc, "allowed_envs"), keys)
		u.allowedEnvs, u.hasAllowed, u.any = keys, true, true
	}
	u.publics = map[string]bool{}
	for _, key := range []string{"public_logs", "public_sysinfo", "public_tcbinfo"} {
		if b, ok := v.boolean(body, loc, key); ok {
			u.publics[key], u.any = b, true
		}
	}
	if s, ok := v.str(body, loc, "encrypted_env", false); ok {
		s = strings.TrimPrefix(s, "0x")
		if !isHex(s) {
			v.add("value_error", at(loc, "encrypted_env"), "Value error, encrypted_env must be hex", "<redacted>", nil)
		}
		u.encryptedEnv, u.any = &s, true
	}
	if keys, ok := v.strList(body, loc, "env_keys"); ok {
		checkEnvKeys(v, at(loc, "env_keys"), keys)
		u.envKeys = keys
	}
	if n, ok := v.integer(body, loc, "vcpu", 1, 64); ok {
		u.res.vcpu, u.any = &n, true
	}
	if n, ok := v.integer(body, loc, "memory", 512, 262144); ok {
		u.res.memory, u.any = &n, true
	}
	if n, ok := v.integer(body, loc, "disk_size", 10, 2048); ok {
		u.res.disk, u.any = &n, true
	}
	if s, ok := v.str(body, loc, "image", false); ok {
		if s != image {
			v.add("value_error", at(loc, "image"), "Value error, OS image not available; available: "+image, s, nil)
		}
		u.any = true
	}
	if _, ok := v.integer(body, loc, "shutdown_timeout", 0, 3600); ok {
		u.any = true
	}
	if _, ok := v.boolean(body, loc, "allow_force_stop"); ok {
		u.any = true
	}
	if _, ok := v.str(body, loc, "user_config", false); ok {
		u.any = true
	}
	if _, ok := lookup(body, "gpus"); ok {
		u.any = true
	}
	if pre, ok := u.preLaunch, u.dockerCompose != nil; ok || pre != nil {
		size := 0
		if u.dockerCompose != nil {
			size += len(*u.dockerCompose)
		}
		if pre != nil {
			size += len(*pre)
		}
		if size > MaxComposeBytes {
			v.add("value_error", at(loc, "docker_compose_file"),
				fmt.Sprintf("Value error, docker_compose_file and pre_launch_script are %d bytes together, over the %d-byte (200 KiB) limit", size, MaxComposeBytes),
				fmt.Sprintf("<%d bytes>", size), map[string]any{"max_length": MaxComposeBytes})
		}
	}
	return u
}

// apply returns the user's compose input with u's changes.
func (u updateRequest) apply(in composeInput) composeInput {
	if u.dockerCompose != nil {
		in.dockerCompose = *u.dockerCompose
	}
	if u.preLaunch != nil {
		script := *u.preLaunch
		in.preLaunch = &script
	}
	if u.hasAllowed {
		in.allowedEnvs = slices.Clone(u.allowedEnvs)
	}
	for k, b := range u.publics {
		b := b
		switch k {
		case "public_logs":
			in.publicLogs = &b
		case "public_sysinfo":
			in.publicSysinfo = &b
		case "public_tcbinfo":
			in.publicTcbinfo = &b
		}
	}
	return in
}

// handlePatch serves PATCH /cvms/{id}: the generic update, its 465
// "register the new hash on-chain first" answer, and the confirmation with
// X-Compose-Hash and X-Transaction-Hash.
//
// Decisions: an update that keeps the compose hash (resources, or env with
// the same key set) applies at once with 202. A changed hash on an on-chain
// KMS answers 465 unless the hash is already allowed on-chain; with
// X-Prepare-Only: true a changed hash always answers 465 with a commit token.
func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	c := s.findLocked(id)
	s.mu.Unlock()
	if c == nil {
		writeCVMNotFound(w, id)
		return
	}
	hHash, hTx := r.Header.Get("X-Compose-Hash"), r.Header.Get("X-Transaction-Hash")
	if hHash != "" || hTx != "" {
		s.confirmUpdate(w, r, c, "", hHash, hTx)
		return
	}
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	v := &validator{}
	u := readUpdate(v, body, s.cfg.OSImageName)
	if v.ok() && !u.any {
		v.add("missing", []any{"body"}, "Field required: at least one updatable field", body, nil)
	}
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	s.mu.Lock()
	input, currentHash, appID := u.apply(c.input), c.composeHash, c.appID
	s.mu.Unlock()
	// The update rebuilds the app-compose from the template, as provision
	// does.
	appCompose, hash, lie, err := s.appCompose(input)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	if lie != "" {
		s.log.Warn("adversary", "mode", s.cfg.Adversary, "on", "update", "cvm", c.id, "lie", lie, "compose_hash", hash)
	}
	allowed := input.allowedEnvs
	if allowed == nil {
		allowed = []string{}
	}
	var envKeys []string
	if u.encryptedEnv != nil {
		keys, errs := s.envCheck(appID, *u.encryptedEnv, allowed, u.envKeys, []any{"body"})
		if errs != nil {
			writeValidation(w, errs)
			return
		}
		envKeys = keys
		s.log.Info("decrypted env", "app", "0x"+appID, "keys", keys)
	}
	pending := &pendingUpdate{cvmID: c.id, hash: hash, appCompose: appCompose, input: input, allowedEnvs: allowed,
		encryptedEnv: u.encryptedEnv, envKeys: envKeys, res: u.res, expires: time.Now().Add(s.cfg.ProvisionTTL)}
	prepareOnly := strings.EqualFold(r.Header.Get("X-Prepare-Only"), "true")
	if hash == currentHash || !c.kms.OnChain {
		s.applyUpdate(w, c, pending, false)
		return
	}
	policy, err := s.readPolicy(r.Context(), common.HexToAddress(appID), common.HexToHash(hash), c.node.DeviceID, common.HexToAddress(c.instanceID))
	if err != nil {
		writeDetail(w, http.StatusBadGateway, "could not read the app's on-chain policy: "+err.Error())
		return
	}
	if policy.IsAllowed && !prepareOnly {
		s.applyUpdate(w, c, pending, false)
		return
	}
	pending.token = randomHex(24)
	s.mu.Lock()
	s.dropExpiredLocked(time.Now())
	s.updates[pending.token] = pending
	s.mu.Unlock()
	base := "http://" + r.Host + s.cfg.PathPrefix
	cvmRef := fmt.Sprint(c.idJSON(versionOf(r)))
	s.log.Info("update needs on-chain registration", "cvm", c.id, "app", "0x"+appID, "compose_hash", hash,
		"compose_hash_allowed", policy.ComposeHashAllowed, "device_id_allowed", policy.DeviceIDAllowed, "prepare_only", prepareOnly)
	writeStructured(w, StatusHashRegistrationRequired, apiError{
		ErrorCode: codeHashRegistrationRequired,
		Message:   "The new compose hash must be registered on the app contract before the update can be applied",
		Details: []detailItem{
			{Field: "compose_hash", Value: hash},
			{Field: "app_id", Value: appID},
			{Field: "device_id", Value: hex.EncodeToString(c.node.DeviceID[:])},
			{Field: "kms_info", Value: c.kms.info()},
			{Field: "commit_token", Value: pending.token},
			{Field: "commit_url", Value: s.cfg.PortalURL + "/dashboard/cvms/" + c.vmUUID + "/commit-update?token=" + pending.token},
			{Field: "api_commit_url", Value: base + "/cvms/" + cvmRef + "/commit-update"},
			{Field: "onchain_status", Value: map[string]any{"compose_hash_allowed": policy.ComposeHashAllowed,
				"device_id_allowed": policy.DeviceIDAllowed, "is_allowed": policy.IsAllowed}},
		},
		Suggestions: []string{
			fmt.Sprintf("Call addComposeHash(0x%s) on the app contract 0x%s", hash, appID),
			"Then confirm with PATCH /cvms/{id} and headers X-Compose-Hash and X-Transaction-Hash, or POST /cvms/{id}/commit-update",
		},
	})
}

// handleCommitUpdate serves POST /cvms/{id}/commit-update
// {token, compose_hash, transaction_hash}.
func (s *Server) handleCommitUpdate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	c := s.findLocked(id)
	s.mu.Unlock()
	if c == nil {
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
	hash, _ := v.str(body, loc, "compose_hash", true)
	tx, _ := v.str(body, loc, "transaction_hash", true)
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	s.confirmUpdate(w, r, c, token, hash, tx)
}

// confirmUpdate finishes a pending update once its hash is registered.
// With token "" the pending update is found by CVM and hash.
func (s *Server) confirmUpdate(w http.ResponseWriter, r *http.Request, c *cvm, token, rawHash, rawTx string) {
	var errs []fieldError
	hash, err := parseComposeHash(rawHash)
	if err != nil {
		errs = append(errs, fieldError{Type: "value_error", Loc: []any{"body", "compose_hash"}, Msg: "Value error, expected 64 hex characters", Input: rawHash})
	}
	var tx common.Hash
	if rawTx != AlreadyRegistered {
		h, err := parseHexID(rawTx, 32)
		if err != nil {
			errs = append(errs, fieldError{Type: "value_error", Loc: []any{"body", "transaction_hash"},
				Msg: "Value error, expected a 32-byte transaction hash or \"already-registered\"", Input: rawTx})
		}
		tx = common.HexToHash(h)
	}
	if len(errs) > 0 {
		writeValidation(w, errs)
		return
	}
	s.mu.Lock()
	s.dropExpiredLocked(time.Now())
	var p *pendingUpdate
	if token != "" {
		if cand := s.updates[token]; cand != nil && cand.cvmID == c.id && cand.hash == hash {
			p = cand
		}
	} else {
		for _, cand := range s.updates {
			if cand.cvmID == c.id && cand.hash == hash && (p == nil || cand.expires.After(p.expires)) {
				p = cand
			}
		}
	}
	s.mu.Unlock()
	if p == nil {
		writeStructured(w, StatusHashExpired, apiError{ErrorCode: codeHashInvalidOrExpired,
			Message:     "The compose hash (or commit token) is unknown or expired for this CVM",
			Details:     []detailItem{{Field: "compose_hash", Value: hash}},
			Suggestions: []string{"Restart the update with PATCH /cvms/{id}"}})
		return
	}
	app := common.HexToAddress(c.appID)
	if rawTx != AlreadyRegistered {
		if err := s.verifyComposeTx(r.Context(), tx, app, common.HexToHash(hash)); err != nil {
			status := StatusTxVerificationFailed
			if !errors.Is(err, errTxNotVerified) {
				status = http.StatusBadGateway
			}
			s.log.Info("update tx rejected", "cvm", c.id, "tx", tx.Hex(), "err", err)
			writeStructured(w, status, apiError{ErrorCode: codeTxVerificationFailed, Message: err.Error(),
				Details: []detailItem{{Field: "transaction_hash", Value: tx.Hex()}, {Field: "compose_hash", Value: hash}}})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), chainTimeout)
	defer cancel()
	policy, err := s.readPolicy(ctx, app, common.HexToHash(hash), c.node.DeviceID, common.HexToAddress(c.instanceID))
	if err != nil {
		writeDetail(w, http.StatusBadGateway, "could not read the app's on-chain policy: "+err.Error())
		return
	}
	if !policy.IsAllowed {
		writeStructured(w, StatusHashNotOnChain, apiError{ErrorCode: codeHashNotAllowed,
			Message: fmt.Sprintf("compose hash %s is not allowed on-chain for app 0x%s: %s", hash, c.appID, policy.Reason),
			Details: []detailItem{{Field: "compose_hash", Value: hash}, {Field: "onchain_status", Value: map[string]any{
				"compose_hash_allowed": policy.ComposeHashAllowed, "device_id_allowed": policy.DeviceIDAllowed, "is_allowed": false}}}})
		return
	}
	s.mu.Lock()
	delete(s.updates, p.token)
	s.mu.Unlock()
	s.applyUpdate(w, c, p, true)
}

// applyUpdate changes the CVM and reboots it: 202 {correlation_id, status}.
func (s *Server) applyUpdate(w http.ResponseWriter, c *cvm, p *pendingUpdate, confirmed bool) {
	s.mu.Lock()
	c.appCompose, c.input, c.composeHash, c.allowedEnvs = p.appCompose, p.input, p.hash, p.allowedEnvs
	if p.encryptedEnv != nil {
		c.encryptedEnv, c.envKeys = *p.encryptedEnv, p.envKeys
	}
	if p.res.vcpu != nil {
		c.vcpu = *p.res.vcpu
	}
	if p.res.memory != nil {
		c.memory = *p.res.memory
	}
	if p.res.disk != nil {
		c.disk = *p.res.disk
	}
	c.correlationID = newUUID()
	c.status, c.bootProgress = StatusRestarting, "applying update"
	s.startBootLocked(c)
	corr := c.correlationID
	s.mu.Unlock()
	s.log.Info("update accepted", "cvm", c.id, "compose_hash", p.hash, "confirmed_onchain", confirmed)
	writeJSON(w, http.StatusAccepted, map[string]any{"correlation_id": corr, "status": "in_progress"})
}

// handleIsAllowed serves POST /cvms/{id}/is-allowed
// {compose_hash?, node_id?, device_id?}.
func (s *Server) handleIsAllowed(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	c := s.findLocked(id)
	s.mu.Unlock()
	if c == nil {
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
	hash, hasHash := v.hexField(body, loc, "compose_hash", 32, false)
	device, hasDevice := v.hexField(body, loc, "device_id", 32, false)
	node, hasNode := v.integer(body, loc, "node_id", 1, 1<<31)
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	deviceID := c.node.DeviceID
	if hasNode {
		n := s.node(node)
		if n == nil {
			s.writeNodeNotFound(w, node)
			return
		}
		deviceID = n.DeviceID
	}
	if !c.kms.OnChain {
		writeStructured(w, http.StatusBadRequest, apiError{ErrorCode: codeNotOnChain,
			Message: "this CVM uses the cloud KMS; is-allowed applies to on-chain KMS apps only"})
		return
	}
	s.mu.Lock()
	if !hasHash {
		hash = c.composeHash
	}
	s.mu.Unlock()
	if hasDevice {
		deviceID = common.HexToHash(device)
	}
	app := common.HexToAddress(c.appID)
	policy, err := s.readPolicy(r.Context(), app, common.HexToHash(hash), deviceID, common.HexToAddress(c.instanceID))
	if err != nil {
		writeDetail(w, http.StatusBadGateway, "could not read the app's on-chain policy: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"app_contract_address": app.Hex(),
		"compose_hash":         hash,
		"device_id":            hex.EncodeToString(deviceID[:]),
		"compose_hash_allowed": policy.ComposeHashAllowed,
		"allow_any_device":     policy.AllowAnyDevice,
		"device_id_allowed":    policy.DeviceIDAllowed,
		"is_allowed":           policy.IsAllowed,
		"error":                nilIfEmpty(policy.Reason),
	})
}

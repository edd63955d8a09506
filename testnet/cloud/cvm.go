package cloud

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/kms"
)

// CVM statuses the emulator uses. A boot that the KMS refuses ends in
// StatusError with boot_error set (reference §10 lists "failed"/"error";
// the emulator uses "error").
const (
	StatusCreating   = "creating"
	StatusStarting   = "starting"
	StatusRunning    = "running"
	StatusRestarting = "restarting"
	StatusError      = "error"
)

// cvm is one created CVM.
type cvm struct {
	id            int64
	hashID        string
	name          string
	vmUUID        string // with dashes
	instanceID    string // 40 lowercase hex
	appID         string // 40 lowercase hex
	kms           *kmsEntry
	kmsType       string // "phala", "ethereum" or "base"
	appCompose    []byte
	input         composeInput // what the user asked for; appCompose is rebuilt from it
	composeHash   string
	allowedEnvs   []string
	encryptedEnv  string
	envKeys       []string
	instanceType  string
	vcpu          int64
	memory        int64
	disk          int64
	listed        bool
	deployer      string
	status        string
	inProgress    bool
	bootProgress  string
	bootError     string
	correlationID string
	createdAt     time.Time
	startedAt     time.Time
	exitedAt      time.Time
	gen           int // boot generation; a newer boot makes older ones stop
}

// composeDoc decodes the stored app-compose for rendering.
func (c *cvm) composeDoc() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(c.appCompose, &m)
	return m
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// findLocked resolves every CVM id form of reference §1: the integer id, a
// hashed "cvm_…" id, a UUID with or without dashes, "app_<hex>", 40 hex
// (with or without 0x), or the name. s.mu must be held.
func (s *Server) findLocked(raw string) *cvm {
	match := func(pred func(*cvm) bool) *cvm {
		for i := len(s.cvms) - 1; i >= 0; i-- {
			if pred(s.cvms[i]) {
				return s.cvms[i]
			}
		}
		return nil
	}
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
		if c := match(func(c *cvm) bool { return c.id == n }); c != nil {
			return c
		}
	}
	if strings.HasPrefix(raw, "cvm_") {
		if c := match(func(c *cvm) bool { return c.hashID == raw }); c != nil {
			return c
		}
	}
	if uuidRE.MatchString(raw) {
		want := strings.ToLower(strings.ReplaceAll(raw, "-", ""))
		if c := match(func(c *cvm) bool { return strings.ReplaceAll(c.vmUUID, "-", "") == want }); c != nil {
			return c
		}
	}
	if app, err := parseHexID(strings.TrimPrefix(raw, "app_"), 20); err == nil {
		if c := match(func(c *cvm) bool { return c.appID == app }); c != nil {
			return c
		}
	}
	return match(func(c *cvm) bool { return c.name == raw })
}

func writeCVMNotFound(w http.ResponseWriter, id string) {
	writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeCVMNotFound,
		Message: fmt.Sprintf("CVM %q not found", id),
		Details: []detailItem{{Field: "cvm_id", Value: id}}})
}

// idJSON renders the CVM id for the request's API version.
func (c *cvm) idJSON(version string) any {
	if hashedIDs(version) {
		return c.hashID
	}
	return c.id
}

func hashID(id int64) string {
	sum := sha256.Sum256([]byte("cvmdeploy-local-cloud/cvm-id/" + strconv.FormatInt(id, 10)))
	return "cvm_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:8]))
}

// cvmJSON renders the CVM object: every key the official CLI requires
// (reference §15.B) plus the documented optional ones.
func (s *Server) cvmJSON(c *cvm, version string) map[string]any {
	doc := c.composeDoc()
	pub := ""
	if id, err := appIDBytes(c.appID); err == nil {
		if key, err := s.keys.appEnvKey(id); err == nil {
			pub = hex.EncodeToString(key.PublicKey().Bytes())
		}
	}
	var contract, deployer any
	if c.kms.OnChain {
		contract = common.HexToAddress(c.appID).Hex()
	}
	if c.deployer != "" {
		deployer = c.deployer
	}
	m := map[string]any{
		"id":                        c.idJSON(version),
		"name":                      c.name,
		"status":                    c.status,
		"in_progress":               c.inProgress,
		"teepod_id":                 s.cfg.NodeID,
		"teepod":                    map[string]any{"id": s.cfg.NodeID, "name": s.cfg.NodeName},
		"node_id":                   s.cfg.NodeID,
		"user_id":                   userIDJSON(version),
		"app_id":                    c.appID,
		"vm_uuid":                   c.vmUUID,
		"instance_id":               c.instanceID,
		"app_url":                   "https://" + c.appID + ".apps.local.invalid",
		"base_image":                s.cfg.OSImageName,
		"vcpu":                      c.vcpu,
		"memory":                    c.memory,
		"disk_size":                 c.disk,
		"instance_type":             c.instanceType,
		"manifest_version":          doc["manifest_version"],
		"version":                   strings.TrimPrefix(s.cfg.OSImageName, "dstack-"),
		"runner":                    doc["runner"],
		"docker_compose_file":       doc["docker_compose_file"],
		"features":                  doc["features"],
		"public_logs":               doc["public_logs"],
		"public_sysinfo":            doc["public_sysinfo"],
		"listed":                    c.listed,
		"compose_hash":              c.composeHash,
		"created_at":                c.createdAt.UTC().Format(time.RFC3339),
		"encrypted_env_pubkey":      pub,
		"app_auth_contract_address": contract,
		"deployer_address":          deployer,
		"kms_id":                    c.kms.Slug,
		"kms_type":                  c.kmsType,
		"boot_progress":             c.bootProgress,
		"boot_error":                nilIfEmpty(c.bootError),
	}
	if version == Version20251028 {
		m["kms_info"] = c.kms.info()
	} else {
		m["progress"] = map[string]any{"target": StatusRunning, "started_at": c.createdAt.UTC().Format(time.RFC3339), "correlation_id": nilIfEmpty(c.correlationID)}
		info := map[string]any{"chain_id": nil, "dstack_kms_address": nil, "dstack_app_address": nil,
			"deployer_address": deployer, "rpc_endpoint": nilIfEmpty(s.cfg.RPCURL), "encrypted_env_pubkey": pub}
		if c.kms.OnChain {
			info["chain_id"] = *c.kms.ChainID
			info["dstack_kms_address"] = c.kms.Contract.Hex()
			info["dstack_app_address"] = contract
		}
		m["kms_info"] = info
	}
	return m
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// stateJSON renders GET /cvms/{id}/state.
func (c *cvm) stateJSON(version string) map[string]any {
	uptime := ""
	if c.status == StatusRunning && !c.startedAt.IsZero() {
		uptime = time.Since(c.startedAt).Truncate(time.Second).String()
	}
	exited := ""
	if !c.exitedAt.IsZero() {
		exited = c.exitedAt.UTC().Format(time.RFC3339)
	}
	return map[string]any{
		"id":                c.idJSON(version),
		"instance_id":       c.instanceID,
		"name":              c.name,
		"status":            c.status,
		"uptime":            uptime,
		"exited_at":         nilIfEmpty(exited),
		"boot_progress":     c.bootProgress,
		"boot_error":        nilIfEmpty(c.bootError),
		"shutdown_progress": nil,
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("crypto/rand: %w", err)) // cannot happen on supported platforms
	}
	return hex.EncodeToString(b)
}

func newUUID() string {
	h := randomHex(16)
	b, _ := hex.DecodeString(h)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h = hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// envCheck decrypts encryptedHex with the app's key and checks its keys
// against allowed (and, when given, against envKeys). The returned keys are
// for the log; values never leave this function.
func (s *Server) envCheck(appID string, encryptedHex string, allowed, envKeys []string, loc []any) ([]string, []fieldError) {
	if encryptedHex == "" {
		if len(envKeys) > 0 {
			return nil, []fieldError{{Type: "value_error", Loc: at(loc, "env_keys"), Msg: "Value error, env_keys given without encrypted_env", Input: envKeys}}
		}
		return []string{}, nil
	}
	id, err := appIDBytes(appID)
	if err != nil {
		return nil, []fieldError{{Type: "value_error", Loc: at(loc, "app_id"), Msg: "Value error, invalid app id", Input: appID}}
	}
	key, err := s.keys.appEnvKey(id)
	if err != nil {
		return nil, []fieldError{{Type: "value_error", Loc: at(loc, "encrypted_env"), Msg: "Value error, could not derive the app key", Input: "<redacted>"}}
	}
	vars, err := kms.DecryptEnv(encryptedHex, key.Bytes())
	if err != nil {
		return nil, []fieldError{{Type: "value_error", Loc: at(loc, "encrypted_env"),
			Msg: "Value error, encrypted_env cannot be decrypted with this app's env key (encrypt to GET /kms/{kms}/pubkey/{app_id})", Input: "<redacted>"}}
	}
	keys := make([]string, 0, len(vars))
	var outside []string
	for _, v := range vars {
		keys = append(keys, v.Key)
		if !slices.Contains(allowed, v.Key) {
			outside = append(outside, v.Key)
		}
	}
	if len(outside) > 0 {
		return nil, []fieldError{{Type: "value_error", Loc: at(loc, "encrypted_env"),
			Msg:   fmt.Sprintf("Value error, env keys not in the compose's allowed_envs: %s (allowed: %s)", strings.Join(outside, ", "), strings.Join(allowed, ", ")),
			Input: "<redacted>", Ctx: map[string]any{"keys": outside}}}
	}
	if envKeys != nil {
		a, b := slices.Clone(keys), slices.Clone(envKeys)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			return nil, []fieldError{{Type: "value_error", Loc: at(loc, "env_keys"),
				Msg: "Value error, env_keys does not list the keys inside encrypted_env", Input: envKeys}}
		}
	}
	return keys, nil
}

func isHex(s string) bool {
	if len(s)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// commit serves the commit phase of POST /cvms: create the CVM from a
// provision, named by its one-time token or by app_id and compose_hash.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, body map[string]any) {
	token := ""
	if _, ok := lookup(body, "token"); ok {
		if token, ok = s.resolveToken(w, body); !ok {
			return
		}
	}
	v := &validator{}
	loc := []any{"body"}
	appID, _ := v.hexField(body, loc, "app_id", 20, true)
	hash, _ := v.hexField(body, loc, "compose_hash", 32, true)
	encrypted, hasEnv := v.str(body, loc, "encrypted_env", false)
	encrypted = strings.TrimPrefix(encrypted, "0x")
	if hasEnv && !isHex(encrypted) {
		v.add("value_error", at(loc, "encrypted_env"), "Value error, encrypted_env must be hex", "<redacted>", nil)
	}
	envKeys, hasEnvKeys := v.strList(body, loc, "env_keys")
	if hasEnvKeys {
		checkEnvKeys(v, at(loc, "env_keys"), envKeys)
	} else {
		envKeys = nil
	}
	kmsID, hasKMSID := v.str(body, loc, "kms_id", false)
	contract, hasContract := v.hexField(body, loc, "contract_address", 20, false)
	deployer, hasDeployer := v.hexField(body, loc, "deployer_address", 20, false)
	rawTx, hasTx := v.str(body, loc, "transaction_hash", false)
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}

	s.mu.Lock()
	s.dropExpiredLocked(time.Now())
	p := s.provisions[hash]
	var existing *cvm
	for _, c := range s.cvms {
		if c.appID == appID {
			existing = c
		}
	}
	s.mu.Unlock()
	if p == nil {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeHashInvalidOrExpired,
			Message:     fmt.Sprintf("no provision for compose_hash %s: it was never provisioned here or it expired", hash),
			Details:     []detailItem{{Field: "compose_hash", Value: hash}},
			Suggestions: []string{"Call POST /cvms/provision again and commit with the compose_hash it returns"}})
		return
	}
	if hasKMSID && !p.kms.matches(kmsID) {
		v.add("value_error", at(loc, "kms_id"), fmt.Sprintf("Value error, the compose was provisioned for KMS %q", p.kms.Slug), kmsID, nil)
	}
	if hasContract && contract != appID {
		v.add("value_error", at(loc, "contract_address"), "Value error, contract_address must equal app_id (the app id is the DstackApp address)", body["contract_address"], nil)
	}
	if !p.kms.OnChain && appID != p.appID {
		v.add("value_error", at(loc, "app_id"), "Value error, app_id does not match the provisioned app id", body["app_id"], nil)
	}
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	version := versionOf(r)
	if existing != nil {
		if existing.composeHash == hash {
			s.mu.Lock()
			resp := s.cvmJSON(existing, version)
			s.mu.Unlock()
			s.log.Info("commit replayed", "app", "0x"+appID, "cvm", existing.id)
			writeJSON(w, http.StatusOK, resp)
			return
		}
		writeStructured(w, http.StatusConflict, apiError{ErrorCode: codeAppIDConflict,
			Message: fmt.Sprintf("app %s already has CVM %q with a different compose hash", appID, existing.name),
			Details: []detailItem{{Field: "app_id", Value: appID}, {Field: "compose_hash", Value: hash},
				{Field: "existing_compose_hash", Value: existing.composeHash}, {Field: "cvm_id", Value: existing.idJSON(version)}},
			Suggestions: []string{"Update the existing CVM with PATCH /cvms/{id}", "Deploy a new app contract for a second CVM"}})
		return
	}
	if hasTx && p.kms.OnChain && !s.checkCommitTx(r.Context(), w, appID, hash, rawTx) {
		return
	}
	keys, errs := s.envCheck(appID, encrypted, p.allowedEnvs, envKeys, loc)
	if errs != nil {
		s.log.Info("commit rejected", "app", "0x"+appID, "reason", errs[0].Msg)
		writeValidation(w, errs)
		return
	}
	s.log.Info("decrypted env", "app", "0x"+appID, "keys", keys)

	kmsType := "phala"
	if p.kms.OnChain {
		kmsType = "ethereum"
		if s.cfg.ChainID == 8453 {
			kmsType = "base"
		}
	}
	c := &cvm{name: p.name, vmUUID: newUUID(), instanceID: randomHex(20), appID: appID, kms: p.kms, kmsType: kmsType,
		appCompose: p.appCompose, input: p.input, composeHash: hash, allowedEnvs: p.allowedEnvs, encryptedEnv: encrypted, envKeys: keys,
		instanceType: p.instanceType, vcpu: p.vcpu, memory: p.memory, disk: p.disk, listed: p.listed,
		status: StatusCreating, inProgress: true, bootProgress: "allocating resources", createdAt: time.Now(),
		correlationID: newUUID()}
	if hasDeployer {
		c.deployer = common.HexToAddress(deployer).Hex()
	}
	s.mu.Lock()
	// A concurrent commit for the same app may have won the race.
	for _, other := range s.cvms {
		if other.appID == appID {
			s.mu.Unlock()
			writeStructured(w, http.StatusConflict, apiError{ErrorCode: codeAppIDConflict,
				Message: fmt.Sprintf("app %s already has a CVM", appID), Details: []detailItem{{Field: "app_id", Value: appID}}})
			return
		}
	}
	c.id = s.nextID
	s.nextID++
	c.hashID = hashID(c.id)
	s.cvms = append(s.cvms, c)
	s.consumeTokenLocked(token, appID, hash)
	s.startBootLocked(c)
	resp := s.cvmJSON(c, version)
	s.mu.Unlock()
	s.log.Info("cvm created", "cvm", c.id, "name", c.name, "app", "0x"+appID, "compose_hash", hash, "kms", p.kms.Slug)
	writeJSON(w, http.StatusOK, resp)
}

// startBootLocked starts (or restarts) the boot state machine; s.mu held.
func (s *Server) startBootLocked(c *cvm) {
	c.gen++
	gen := c.gen
	c.inProgress = true
	c.bootError = ""
	c.exitedAt = time.Time{}
	s.notifyLocked()
	s.wg.Add(1)
	go s.boot(c, gen)
}

// boot moves a CVM through creating/restarting → starting → running, or
// to error with boot_error when the KMS (the chain) refuses the app.
func (s *Server) boot(c *cvm, gen int) {
	defer s.wg.Done()
	if !s.sleep(s.cfg.BootStep) {
		return
	}
	s.mu.Lock()
	if c.gen != gen {
		s.mu.Unlock()
		return
	}
	c.status, c.bootProgress = StatusStarting, "requesting app keys from the KMS"
	s.notifyLocked()
	appID, hash, instance, onChain := c.appID, c.composeHash, c.instanceID, c.kms.OnChain
	s.mu.Unlock()

	failure := ""
	if onChain {
		ctx, cancel := context.WithTimeout(s.ctx, chainTimeout)
		res, err := s.checkBoot(ctx, common.HexToAddress(appID), common.HexToHash(hash), common.HexToAddress(instance))
		cancel()
		switch {
		case s.ctx.Err() != nil:
			return
		case err != nil:
			failure = "KMS could not check the app on-chain: " + err.Error()
			s.log.Warn("onchain check failed", "app", common.HexToAddress(appID).Hex(), "err", err)
		default:
			s.log.Info("onchain check", "app", common.HexToAddress(appID).Hex(), "compose_hash", hash,
				"device_id", hex.EncodeToString(s.cfg.DeviceID[:]), "registered", res.Registered, "allowed", res.Allowed, "reason", res.Reason)
			if !res.Allowed {
				reason := res.Reason
				if reason == "" {
					reason = "app not allowed"
				}
				failure = fmt.Sprintf("KMS refused to release app keys: %s (app 0x%s, compose hash %s, device %x)", reason, appID, hash, s.cfg.DeviceID[:])
			}
		}
	} else {
		s.log.Info("cloud kms boot", "app", appID, "compose_hash", hash)
	}

	if failure == "" && !s.sleep(s.cfg.BootStep) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen != gen {
		return
	}
	c.inProgress = false
	if failure != "" {
		c.status, c.bootError, c.bootProgress, c.exitedAt = StatusError, failure, "boot failed", time.Now()
		s.log.Info("cvm boot failed", "cvm", c.id, "app", appID, "boot_error", failure)
	} else {
		c.status, c.bootProgress, c.startedAt = StatusRunning, "done", time.Now()
		s.log.Info("cvm running", "cvm", c.id, "app", appID, "compose_hash", hash)
	}
	s.notifyLocked()
}

// handleRestart serves POST /cvms/{id}/restart {force?} (the SDK's
// restartCvm): the boot state machine starts again — restarting →
// starting → running, or error with boot_error — so a CVM whose compose
// hash the owner allowed after the commit boots now. The answer is the CVM
// object with status "restarting" (the SDK parses a VM; the status code is
// not documented, so 200). A boot in progress is abandoned for the new one.
func (s *Server) handleRestart(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body := map[string]any{}
	if r.ContentLength != 0 {
		var ok bool
		if body, ok = decodeObject(w, r); !ok {
			return
		}
	}
	v := &validator{}
	force, _ := v.boolean(body, []any{"body"}, "force")
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}
	s.mu.Lock()
	c := s.findLocked(id)
	if c == nil {
		s.mu.Unlock()
		writeCVMNotFound(w, id)
		return
	}
	prev := c.status
	c.status, c.bootProgress, c.startedAt = StatusRestarting, "restarting", time.Time{}
	c.correlationID = newUUID()
	s.startBootLocked(c)
	resp := s.cvmJSON(c, versionOf(r))
	s.mu.Unlock()
	s.log.Info("cvm restart", "cvm", c.id, "app", c.appID, "from", prev, "force", force)
	writeJSON(w, http.StatusOK, resp)
}

// sleep waits d or until Close; it reports whether to go on.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *Server) handleGetCVM(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.findLocked(r.PathValue("id"))
	if c == nil {
		writeCVMNotFound(w, r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, s.cvmJSON(c, versionOf(r)))
}

// handleListCVMs serves GET /cvms as a plain list; under 2025-10-28 its
// items have the legacy shape with the VM under hosted.
func (s *Server) handleListCVMs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := make([]map[string]any, 0, len(s.cvms))
	for _, c := range s.cvms {
		items = append(items, s.listItemJSON(c, versionOf(r)))
	}
	writeJSON(w, http.StatusOK, items)
}

// handleComposeFile serves GET /cvms/{id}/compose_file: the app-compose whose
// sha256 is the CVM's compose_hash.
func (s *Server) handleComposeFile(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c := s.findLocked(r.PathValue("id"))
	var doc []byte
	if c != nil {
		doc = c.appCompose
	}
	s.mu.Unlock()
	if c == nil {
		writeCVMNotFound(w, r.PathValue("id"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}

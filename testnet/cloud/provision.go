package cloud

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/kms"
)

// instanceTypes are the sizes the one node offers.
var instanceTypes = map[string]struct{ vcpu, memory, disk int64 }{
	"tdx.small":   {1, 2048, 20},
	"tdx.medium":  {2, 4096, 40},
	"tdx.large":   {4, 8192, 80},
	"tdx.xlarge":  {8, 16384, 160},
	"tdx.2xlarge": {16, 32768, 320},
}

// DefaultPreLaunchScript is a stand-in for the real service's default
// pre-launch script, for tests that want the cloud to inject one
// (Config.InjectPreLaunchScript). The cloud injects nothing unless told to:
// the real default's bytes are held server-side (reference A4), so a
// test that wants injection pins the text it injects. Its exact text is ours.
const DefaultPreLaunchScript = `#!/bin/bash
# Default pre-launch script added by the cvmdeploy local cloud.
set -e
echo "pre-launch: $(date -u +%Y-%m-%dT%H:%M:%SZ) starting containers"
`

// DefaultFeatures is app-compose "features" as the service fills it.
var DefaultFeatures = []string{"kms", "tproxy-net"}

// kmsEntry is a KMS the cloud offers; the JSON is the KmsInfo shape whose
// every key the official CLI requires (nulls allowed).
type kmsEntry struct {
	ID           string
	Slug         string
	URL          string
	Version      string
	ChainID      *uint64
	Contract     *common.Address
	GatewayAppID *string
	OnChain      bool
}

func (k *kmsEntry) info() map[string]any {
	m := map[string]any{
		"id":                   k.ID,
		"slug":                 k.Slug,
		"url":                  k.URL,
		"version":              k.Version,
		"chain_id":             nil,
		"kms_contract_address": nil,
		"gateway_app_id":       nil,
	}
	if k.ChainID != nil {
		m["chain_id"] = *k.ChainID
	}
	if k.Contract != nil {
		m["kms_contract_address"] = k.Contract.Hex()
	}
	if k.GatewayAppID != nil {
		m["gateway_app_id"] = *k.GatewayAppID
	}
	return m
}

// provision is a cached POST /cvms/provision, keyed by compose hash.
type provision struct {
	hash         string
	name         string
	appCompose   []byte // canonical JSON; its sha256 is hash
	input        composeInput
	allowedEnvs  []string
	kms          *kmsEntry
	appID        string // PHALA KMS only: lowercase 40 hex
	instanceType string
	vcpu         int64
	memory       int64
	disk         int64
	listed       bool
	expires      time.Time
}

// composeInput is the part of a request that ends up in the app-compose:
// what the user asked for. The stored app-compose is rebuilt from it (plus
// the server's fields, an injected pre-launch script and, in an adversary
// mode, the lie) on provision and on every update.
type composeInput struct {
	name           string // compose_file.name as sent (the CLI sends "")
	dockerCompose  string
	preLaunch      *string
	allowedEnvs    []string
	publicLogs     *bool
	publicSysinfo  *bool
	publicTcbinfo  *bool
	gatewayEnabled *bool
	secureTime     *bool
	storageFS      string
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// buildAppCompose turns a request into the app-compose the CVM will measure,
// following the 2026 server template (reference A3): compact JSON with
// sorted keys and exactly allowed_envs (default []), docker_compose_file,
// features ["kms","tproxy-net"], gateway_enabled (default true, or the
// deprecated tproxy_enabled), kms_enabled true, local_key_provider_enabled
// false, manifest_version 2, name (compose_file.name, default ""),
// no_instance_id false, pre_launch_script (only when in has one),
// public_logs/public_sysinfo/public_tcbinfo (default true), runner
// "docker-compose", secure_time (default false), storage_fs (default "zfs")
// and tproxy_enabled (= gateway_enabled). key_provider appears only when
// requested on the real service; this cloud takes no such request.
func buildAppCompose(in composeInput) ([]byte, string, error) {
	allowed := in.allowedEnvs
	if allowed == nil {
		allowed = []string{}
	}
	gateway := boolOr(in.gatewayEnabled, true)
	storage := in.storageFS
	if storage == "" {
		storage = "zfs"
	}
	doc := map[string]any{
		"allowed_envs":               allowed,
		"docker_compose_file":        in.dockerCompose,
		"features":                   DefaultFeatures,
		"gateway_enabled":            gateway,
		"kms_enabled":                true,
		"local_key_provider_enabled": false,
		"manifest_version":           2,
		"name":                       in.name,
		"no_instance_id":             false,
		"public_logs":                boolOr(in.publicLogs, true),
		"public_sysinfo":             boolOr(in.publicSysinfo, true),
		"public_tcbinfo":             boolOr(in.publicTcbinfo, true),
		"runner":                     "docker-compose",
		"secure_time":                boolOr(in.secureTime, false),
		"storage_fs":                 storage,
		"tproxy_enabled":             gateway,
	}
	if in.preLaunch != nil {
		doc["pre_launch_script"] = *in.preLaunch
	}
	return canonicalCompose(doc)
}

// appCompose builds the app-compose this cloud stores for in: the template,
// with the configured pre-launch script when in has none, and the
// adversary's lie, if any. lie describes the lie for the event log ("" when
// honest).
func (s *Server) appCompose(in composeInput) (doc []byte, hash, lie string, err error) {
	if in.preLaunch == nil && s.cfg.InjectPreLaunchScript != nil {
		script := *s.cfg.InjectPreLaunchScript
		in.preLaunch = &script
	}
	in, lie = s.lieAboutCompose(in)
	doc, hash, err = buildAppCompose(in)
	return doc, hash, lie, err
}

// canonicalCompose serialises an app-compose in the canonical form of
// getComposeHash (so the stored bytes hash to the compose hash) and hashes it.
func canonicalCompose(doc map[string]any) ([]byte, string, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, "", fmt.Errorf("encode app-compose: %w", err)
	}
	v, err := kms.ParseJSON(raw)
	if err != nil {
		return nil, "", fmt.Errorf("decode app-compose: %w", err)
	}
	canon, err := kms.CanonicalJSON(v)
	if err != nil {
		return nil, "", fmt.Errorf("canonicalise app-compose: %w", err)
	}
	hash, err := kms.ComposeHash(canon, false)
	if err != nil {
		return nil, "", fmt.Errorf("hash app-compose: %w", err)
	}
	return canon, hash, nil
}

// readComposeFile validates a compose_file object (provision) into v.
func readComposeFile(v *validator, cf map[string]any, loc []any) composeInput {
	var in composeInput
	if s, ok := v.str(cf, loc, "docker_compose_file", true); ok {
		if strings.TrimSpace(s) == "" {
			v.add("string_too_short", at(loc, "docker_compose_file"), "String should have at least 1 character", s, map[string]any{"min_length": 1})
		}
		in.dockerCompose = s
	}
	if s, ok := v.str(cf, loc, "pre_launch_script", false); ok {
		in.preLaunch = &s
	}
	if keys, ok := v.strList(cf, loc, "allowed_envs"); ok {
		checkEnvKeys(v, at(loc, "allowed_envs"), keys)
		in.allowedEnvs = keys
	}
	if s, ok := v.str(cf, loc, "name", false); ok {
		in.name = s
	}
	for key, dst := range map[string]**bool{
		"public_logs": &in.publicLogs, "public_sysinfo": &in.publicSysinfo, "public_tcbinfo": &in.publicTcbinfo,
		"gateway_enabled": &in.gatewayEnabled, "secure_time": &in.secureTime,
	} {
		if b, ok := v.boolean(cf, loc, key); ok {
			b := b
			*dst = &b
		}
	}
	// tproxy_enabled is the deprecated name of gateway_enabled.
	if b, ok := v.boolean(cf, loc, "tproxy_enabled"); ok && in.gatewayEnabled == nil {
		in.gatewayEnabled = &b
	}
	if b, ok := v.boolean(cf, loc, "kms_enabled"); ok && !b {
		v.add("value_error", at(loc, "kms_enabled"), "Value error, kms_enabled cannot be false: every CVM on this cloud gets its keys from a KMS", b, nil)
	}
	if fs, ok := v.enum(cf, loc, "storage_fs", "ext4", "zfs"); ok {
		in.storageFS = fs
	}
	size := len(in.dockerCompose)
	if in.preLaunch != nil {
		size += len(*in.preLaunch)
	}
	if size > MaxComposeBytes {
		v.add("value_error", at(loc, "docker_compose_file"),
			fmt.Sprintf("Value error, docker_compose_file and pre_launch_script are %d bytes together, over the %d-byte (200 KiB) limit", size, MaxComposeBytes),
			fmt.Sprintf("<%d bytes>", size), map[string]any{"max_length": MaxComposeBytes})
	}
	return in
}

func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	s.provision(w, r, body, false)
}

// provision serves phase one: POST /cvms/provision, or POST /cvms under
// the same-path flow (samePath), whose answer adds a one-time commit token.
func (s *Server) provision(w http.ResponseWriter, r *http.Request, body map[string]any, samePath bool) {
	v := &validator{}
	loc := []any{"body"}
	name, hasName := v.str(body, loc, "name", true)
	if hasName {
		checkName(v, at(loc, "name"), name)
	}
	var in composeInput
	if cf, ok := v.object(body, loc, "compose_file", true); ok {
		in = readComposeFile(v, cf, at(loc, "compose_file"))
	}
	kmsType := "PHALA"
	if k, ok := v.enum(body, loc, "kms", "PHALA", "ETHEREUM", "BASE"); ok {
		kmsType = k
	}
	_, hasKMS := lookup(body, "kms")
	kmsID, hasKMSID := v.str(body, loc, "kms_id", false)
	kmsContract, hasKMSContract := v.str(body, loc, "kms_contract", false)
	contractID, hasContractID := v.str(body, loc, "kms_contract_id", false)
	if hasKMSContract {
		if _, err := parseHexID(kmsContract, 20); err != nil {
			v.add("value_error", at(loc, "kms_contract"), "Value error, expected a 20-byte address", kmsContract, nil)
			hasKMSContract = false
		}
	}
	instanceType, hasType := v.str(body, loc, "instance_type", false)
	if hasType {
		if _, known := instanceTypes[instanceType]; !known {
			names := make([]string, 0, len(instanceTypes))
			for n := range instanceTypes {
				names = append(names, n)
			}
			sort.Strings(names)
			v.add("value_error", at(loc, "instance_type"), "Value error, unknown instance type; available: "+strings.Join(names, ", "), instanceType, nil)
		}
	}
	vcpu, hasVCPU := v.integer(body, loc, "vcpu", 1, 64)
	memory, hasMem := v.integer(body, loc, "memory", 512, 262144)
	disk, hasDisk := v.integer(body, loc, "disk_size", 10, 2048)
	nodeID, hasNode := v.integer(body, loc, "teepod_id", 1, 1<<31)
	if n, ok := v.integer(body, loc, "node_id", 1, 1<<31); ok {
		nodeID, hasNode = n, true
	}
	v.str(body, loc, "region", false)
	image, hasImage := v.str(body, loc, "image", false)
	listed, _ := v.boolean(body, loc, "listed")
	v.boolean(body, loc, "prefer_dev")
	if keys, ok := v.strList(body, loc, "env_keys"); ok {
		checkEnvKeys(v, at(loc, "env_keys"), keys)
	}
	_, hasNonce := v.integer(body, loc, "nonce", 0, 1<<53)
	customAppID, hasAppID := v.hexField(body, loc, "app_id", 20, false)
	if hasNonce && kmsType != "PHALA" {
		v.add("value_error", at(loc, "nonce"), "Value error, nonce is only supported with the PHALA KMS", body["nonce"], nil)
	}
	if !v.ok() {
		writeValidation(w, v.errs)
		return
	}

	// Resolve the KMS: the deprecated kms_id alone selects it as well.
	entry := s.phKMS
	if kmsType != "PHALA" || (!hasKMS && hasKMSID && s.onKMS.matches(kmsID)) || (!hasKMS && hasContractID) {
		entry = s.onKMS
	}
	if hasContractID && !s.contractMatches(entry, contractID) {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeKMSNotFound,
			Message:     fmt.Sprintf("KMS contract %q not found for kms type %s", contractID, kmsType),
			Details:     []detailItem{{Field: "kms_contract_id", Value: contractID}},
			Suggestions: []string{"List the KMS contracts with GET /kms (X-Phala-Version 2026-06-23)"}})
		return
	}
	if hasKMSID && !entry.matches(kmsID) {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeKMSNotFound,
			Message:     fmt.Sprintf("KMS %q not found for kms type %s", kmsID, kmsType),
			Details:     []detailItem{{Field: "kms_id", Value: kmsID}},
			Suggestions: []string{"List the on-chain KMS instances with GET /kms?is_onchain=true"}})
		return
	}
	if hasKMSContract && (entry.Contract == nil || !strings.EqualFold(strings.TrimPrefix(strings.ToLower(kmsContract), "0x"), strings.ToLower(strings.TrimPrefix(entry.Contract.Hex(), "0x")))) {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeKMSNotFound,
			Message: fmt.Sprintf("no KMS with contract %s", kmsContract),
			Details: []detailItem{{Field: "kms_contract", Value: kmsContract}}})
		return
	}
	if hasNode && nodeID != s.cfg.NodeID {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeNodeNotFound,
			Message: fmt.Sprintf("node %d not found; this cloud has node %d (%s)", nodeID, s.cfg.NodeID, s.cfg.NodeName),
			Details: []detailItem{{Field: "node_id", Value: nodeID}}})
		return
	}
	if hasImage && image != s.cfg.OSImageName {
		writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeImageNotFound,
			Message: fmt.Sprintf("OS image %q not available on node %s; available: %s", image, s.cfg.NodeName, s.cfg.OSImageName),
			Details: []detailItem{{Field: "image", Value: image}}})
		return
	}

	// Size: instance_type wins; otherwise vcpu/memory; default tdx.small.
	if !hasType {
		instanceType = "tdx.small"
	}
	size := instanceTypes[instanceType]
	if hasType || (!hasVCPU && !hasMem) {
		vcpu, memory = size.vcpu, size.memory
	} else {
		instanceType = "custom"
		if !hasVCPU {
			vcpu = 1
		}
		if !hasMem {
			memory = 2048
		}
	}
	if !hasDisk {
		disk = size.disk
	}

	appCompose, hash, lie, err := s.appCompose(in)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	if lie != "" {
		s.log.Warn("adversary", "mode", s.cfg.Adversary, "on", "provision", "name", name, "lie", lie, "compose_hash", hash)
	}
	p := &provision{hash: hash, name: name, appCompose: appCompose, input: in, allowedEnvs: in.allowedEnvs, kms: entry,
		instanceType: instanceType, vcpu: vcpu, memory: memory, disk: disk, listed: listed,
		expires: time.Now().Add(s.cfg.ProvisionTTL)}
	if !entry.OnChain {
		if hasAppID {
			p.appID = customAppID
		} else {
			var b [20]byte
			if _, err := rand.Read(b[:]); err != nil {
				writeDetail(w, http.StatusInternalServerError, "could not allocate an app id")
				return
			}
			p.appID = hex.EncodeToString(b[:])
		}
	}

	resp := map[string]any{
		"app_id":                  nil,
		"app_env_encrypt_pubkey":  nil,
		"compose_hash":            hash,
		"kms_info":                entry.info(),
		"kms_id":                  entry.Slug,
		"fmspc":                   "B0C06F000000",
		"device_id":               hex.EncodeToString(s.cfg.DeviceID[:]),
		"os_image_hash":           hex.EncodeToString(s.cfg.OSImageHash[:]),
		"instance_type":           instanceType,
		"teepod_id":               s.cfg.NodeID,
		"compose_hash_registered": false,
	}
	if entry.OnChain && versionOf(r) == Version20260623 {
		resp["kms_contract_id"] = s.contractID()
	}
	if !entry.OnChain {
		id, _ := appIDBytes(p.appID)
		key, err := s.keys.appEnvKey(id)
		if err != nil {
			writeDetail(w, http.StatusInternalServerError, "could not derive the app key")
			return
		}
		resp["app_id"] = p.appID
		resp["app_env_encrypt_pubkey"] = hex.EncodeToString(key.PublicKey().Bytes())
	}

	s.mu.Lock()
	s.dropExpiredLocked(time.Now())
	s.provisions[hash] = p
	s.mu.Unlock()
	if samePath {
		resp["token"] = s.newToken(p)
	}
	s.log.Info("provisioned", "name", name, "compose_hash", hash, "kms", entry.Slug, "allowed_envs", in.allowedEnvs,
		"device_id", hex.EncodeToString(s.cfg.DeviceID[:]), "same_path", samePath)
	if entry.OnChain {
		s.logKMSLie("provision", "name", name)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (k *kmsEntry) matches(idOrSlug string) bool {
	return idOrSlug != "" && (idOrSlug == k.ID || idOrSlug == k.Slug)
}

// dropExpiredLocked forgets expired provisions and update tokens.
func (s *Server) dropExpiredLocked(now time.Time) {
	for h, p := range s.provisions {
		if now.After(p.expires) {
			delete(s.provisions, h)
		}
	}
	for t, u := range s.updates {
		if now.After(u.expires) {
			delete(s.updates, t)
		}
	}
	s.dropExpiredTokensLocked(now)
}

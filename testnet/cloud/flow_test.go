package cloud_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestOnChainDeployFlow drives the whole on-chain create flow by hand, as
// the official CLI does it: provision, deployAndRegisterApp with the
// provisioned device id and compose hash, pubkey, verification against the
// on-chain root key, encryption, commit, and a watch to running.
func TestOnChainDeployFlow(t *testing.T) {
	a := newAPI(t)
	prov := a.do("POST", "/cvms/provision", provisionBody("flow-app-1")).must(t, 200)

	// The provision answer has what the CLI needs to take the on-chain branch.
	if prov["app_id"] != nil {
		t.Fatalf("app_id = %v, want null for an on-chain KMS", prov["app_id"])
	}
	info, _ := prov["kms_info"].(map[string]any)
	for _, k := range []string{"id", "slug", "url", "version", "chain_id", "kms_contract_address", "gateway_app_id"} {
		if _, ok := info[k]; !ok {
			t.Errorf("kms_info lacks %q: %v", k, info)
		}
	}
	if id, ok := info["chain_id"].(float64); !ok || uint64(id) != shared.ChainID {
		t.Errorf("kms_info.chain_id = %#v, want the number %d", info["chain_id"], shared.ChainID)
	}
	if !strings.EqualFold(fmt.Sprint(info["kms_contract_address"]), shared.KMSContract.Hex()) {
		t.Errorf("kms_contract_address = %v, want %s", info["kms_contract_address"], shared.KMSContract.Hex())
	}
	hash, device := prov["compose_hash"].(string), prov["device_id"].(string)
	if len(hash) != 64 || len(device) != 64 || strings.HasPrefix(device, "0x") {
		t.Fatalf("compose_hash %q / device_id %q: want 64 hex without 0x", hash, device)
	}

	app := deployApp(t, device, hash)

	// The pubkey endpoint takes the checksummed form the CLI sends, plain
	// 40 hex and 0x-lowercase, and gives the same key for each.
	pub := a.pubkey(app.Hex())
	for _, form := range []string{strings.ToLower(app.Hex()[2:]), strings.ToLower(app.Hex())} {
		if got := a.pubkey(form); got != pub {
			t.Errorf("pubkey for %s = %s, want %s", form, got, pub)
		}
	}
	sigBody := a.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+app.Hex(), nil).must(t, 200)
	c, _ := chain(t)
	root, err := c.KMSRootKey(context.Background(), shared.KMSContract)
	if err != nil {
		t.Fatal(err)
	}
	if err := kms.VerifyAppKey(kms.VerifyParams{AppID: app.Hex(), PublicKey: pub, Signature: sigBody["signature"].(string), RootKey: root}); err != nil {
		t.Fatalf("legacy signature does not verify against the on-chain root key: %v", err)
	}
	v1 := a.do("GET", "/kms/"+shared.KMSID+"/pubkey/"+app.Hex()+"?v1=true", nil).must(t, 200)
	ts := uint64(v1["timestamp"].(float64))
	if err := kms.VerifyAppKey(kms.VerifyParams{AppID: app.Hex(), PublicKey: pub, Signature: v1["signature_v1"].(string), Timestamp: &ts, RootKey: root}); err != nil {
		t.Fatalf("v1 signature does not verify: %v", err)
	}

	enc, err := kms.EncryptEnv(testEnv, pub)
	if err != nil {
		t.Fatal(err)
	}
	commit := map[string]any{"app_id": app.Hex(), "encrypted_env": enc, "compose_hash": hash, "kms_id": shared.KMSID,
		"contract_address": app.Hex(), "deployer_address": shared.DevAccount.Address.Hex()}
	cvm := a.do("POST", "/cvms", commit).must(t, 200)
	checkCVMShape(t, cvm)
	if cvm["app_id"] != strings.ToLower(app.Hex()[2:]) {
		t.Errorf("app_id = %v, want 40 lowercase hex", cvm["app_id"])
	}
	id := fmt.Sprint(int64(cvm["id"].(float64)))

	events := watch(t, a, id, "running")
	if last := events[len(events)-1]; last.name != "complete" {
		t.Fatalf("last event %q %v, want complete", last.name, last.data)
	}
	var seen []string
	for _, e := range events {
		if e.name == "state" {
			seen = append(seen, fmt.Sprint(e.data["status"]))
		}
	}
	if seen[len(seen)-1] != cloud.StatusRunning {
		t.Errorf("state events %v do not end in running", seen)
	}

	// Every id form of reference §1 finds the CVM.
	uuid := cvm["vm_uuid"].(string)
	for _, form := range []string{id, uuid, strings.ReplaceAll(uuid, "-", ""), "app_" + cvm["app_id"].(string), cvm["app_id"].(string), "flow-app-1"} {
		got := a.do("GET", "/cvms/"+form, nil).must(t, 200)
		if got["vm_uuid"] != uuid || got["status"] != cloud.StatusRunning {
			t.Errorf("GET /cvms/%s = %v/%v", form, got["vm_uuid"], got["status"])
		}
	}

	// The log shows the on-chain check and the env keys, never the values.
	logHas(t, "onchain check", "app="+app.Hex(), "registered=true", "allowed=true", `reason=""`)
	logHas(t, "decrypted env", "keys=\"[GREETING DB_PASSWORD]\"")
	for _, v := range testEnv {
		if strings.Contains(cloudLog.String(), v.Value) {
			t.Fatalf("the cloud log contains an env value")
		}
	}

	// The stored app-compose hashes to the compose hash and carries the
	// server-side fields.
	cf := a.do("GET", "/cvms/"+id+"/compose_file", nil)
	if err := kms.CheckComposeHash(cf.raw, hash); err != nil {
		t.Errorf("compose_file does not hash to compose_hash: %v", err)
	}
	for k, want := range map[string]any{"manifest_version": float64(2), "name": "", "runner": "docker-compose",
		"kms_enabled": true, "gateway_enabled": true} {
		if cf.body[k] != want {
			t.Errorf("app-compose %s = %#v, want %#v", k, cf.body[k], want)
		}
	}
	if _, ok := cf.body["pre_launch_script"]; ok {
		t.Errorf("app-compose has a pre_launch_script the request did not send")
	}

	// Committing again is idempotent.
	again := a.do("POST", "/cvms", commit).must(t, 200)
	if again["id"] != cvm["id"] {
		t.Errorf("replayed commit gave CVM %v, want %v", again["id"], cvm["id"])
	}
}

// checkCVMShape asserts the keys and types the official CLI's schema
// requires of a commit answer (reference §15.B).
func checkCVMShape(t *testing.T, cvm map[string]any) {
	t.Helper()
	isNum := func(v any) bool { _, ok := v.(float64); return ok }
	isStrOrNil := func(v any) bool { _, ok := v.(string); return ok || v == nil }
	checks := map[string]func(any) bool{
		"id": isNum, "teepod_id": isNum, "vcpu": isNum, "memory": isNum, "disk_size": isNum,
		"name":       func(v any) bool { _, ok := v.(string); return ok },
		"status":     func(v any) bool { _, ok := v.(string); return ok },
		"created_at": func(v any) bool { _, ok := v.(string); return ok },
		"user_id":    func(v any) bool { return v == nil || isNum(v) },
		"teepod": func(v any) bool {
			m, ok := v.(map[string]any)
			return v == nil || ok && isNum(m["id"]) && m["name"] != nil
		},
		"app_id": isStrOrNil, "vm_uuid": isStrOrNil, "instance_id": isStrOrNil, "base_image": isStrOrNil, "docker_compose_file": isStrOrNil,
	}
	for k, ok := range checks {
		v, present := cvm[k]
		if !present || !ok(v) {
			t.Errorf("CVM field %s = %#v (present %v) does not fit the CLI's schema", k, v, present)
		}
	}
	if id := cvm["id"].(float64); id != math.Trunc(id) {
		t.Errorf("id %v is not an integer", id)
	}
}

type sseEvent struct {
	name string
	data map[string]any
}

// watch reads the SSE state stream until it closes.
func watch(t *testing.T, a *api, id, target string) []sseEvent {
	t.Helper()
	req, _ := http.NewRequest("GET", a.prefix+"/cvms/"+id+"/state?target="+target+"&interval=5&timeout=30", nil)
	req.Header.Set("X-API-Key", a.key)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE status %d content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var events []sseEvent
	var name string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil {
				t.Fatalf("SSE data %q: %v", line, err)
			}
			events = append(events, sseEvent{name: name, data: m})
		}
	}
	if len(events) == 0 {
		t.Fatal("no SSE events")
	}
	return events
}

// commitFor provisions name, optionally deploys the app (or uses app), and
// commits with testEnv; it returns the CVM.
func commitFor(t *testing.T, a *api, name string, app common.Address) (map[string]any, string) {
	t.Helper()
	prov := a.do("POST", "/cvms/provision", provisionBody(name)).must(t, 200)
	hash := prov["compose_hash"].(string)
	enc, err := kms.EncryptEnv(testEnv, a.pubkey(app.Hex()))
	if err != nil {
		t.Fatal(err)
	}
	cvm := a.do("POST", "/cvms", map[string]any{"app_id": app.Hex(), "compose_hash": hash, "encrypted_env": enc,
		"kms_id": shared.KMSID, "contract_address": app.Hex()}).must(t, 200)
	return cvm, hash
}

// TestBootErrors covers the failures the KMS finds at boot: the CVM is
// created, then ends in error with boot_error, as on the real service.
func TestBootErrors(t *testing.T) {
	a := newAPI(t)
	device := fmt.Sprintf("%x", shared.DeviceID[:])
	tests := []struct {
		name   string
		app    func(hash string) common.Address
		reason string
	}{
		{"unregistered-app", func(string) common.Address {
			return common.HexToAddress("0x00000000000000000000000000000000deadbeef")
		}, "App not registered"},
		{"hash-not-allowed", func(string) common.Address {
			return deployApp(t, device, "0x"+strings.Repeat("ab", 32))
		}, "Compose hash not allowed"},
		{"device-not-allowed", func(hash string) common.Address {
			return deployApp(t, "0x"+strings.Repeat("cd", 32), hash)
		}, "Device not allowed"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("boot-err-%d", i)
			prov := a.do("POST", "/cvms/provision", provisionBody(name)).must(t, 200)
			app := tt.app(prov["compose_hash"].(string))
			cvm, _ := commitFor(t, a, name, app)
			st := a.waitStatus(fmt.Sprint(int64(cvm["id"].(float64))))
			if st["status"] != cloud.StatusError || !strings.Contains(fmt.Sprint(st["boot_error"]), tt.reason) {
				t.Fatalf("state = %v / %v, want error with %q", st["status"], st["boot_error"], tt.reason)
			}
			logHas(t, "onchain check", "app="+app.Hex(), "allowed=false", tt.reason)
		})
	}
}

// TestBootErrorStream: the SSE watch ends with an error event.
func TestBootErrorStream(t *testing.T) {
	a := newAPI(t)
	cvm, _ := commitFor(t, a, "boot-err-sse", common.HexToAddress("0x00000000000000000000000000000000000000e5"))
	events := watch(t, a, fmt.Sprint(int64(cvm["id"].(float64))), "running")
	last := events[len(events)-1]
	if last.name != "error" || !strings.Contains(fmt.Sprint(last.data["error"]), "App not registered") {
		t.Fatalf("last event %s %v, want error App not registered", last.name, last.data)
	}
}

// TestStateStreamTimeout: a watch for a status the CVM never reaches ends
// with a timeout event (the shortest timeout the API takes is 10 s).
func TestStateStreamTimeout(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	id, _, _ := runningCVM(t, a, "sse-timeout-app")
	req, _ := http.NewRequest("GET", a.prefix+"/cvms/"+id+"/state?target=stopped&interval=5&timeout=10", nil)
	req.Header.Set("X-API-Key", a.key)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var names []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			names = append(names, name)
		}
	}
	if len(names) < 2 || names[0] != "state" || names[len(names)-1] != "timeout" {
		t.Fatalf("events %v, want state ... timeout", names)
	}
	for _, q := range []string{"interval=1", "interval=31", "timeout=9", "timeout=601", "interval=x"} {
		r := a.do("GET", "/cvms/"+id+"/state?"+q, nil, "Accept", "text/event-stream")
		if r.status != 422 {
			t.Errorf("?%s: status %d, want 422", q, r.status)
		}
	}
	if r := a.do("GET", "/cvms/no-such-cvm/state", nil); r.status != 404 {
		t.Errorf("unknown CVM: status %d, want 404", r.status)
	}
}

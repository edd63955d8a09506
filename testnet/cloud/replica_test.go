package cloud_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// nodeDevices reads GET /teepods/available: node id -> device id.
func nodeDevices(t *testing.T, a *api) map[int64]string {
	t.Helper()
	body := a.do("GET", "/teepods/available", nil).must(t, 200)
	out := map[int64]string{}
	for _, n := range body["nodes"].([]any) {
		m := n.(map[string]any)
		out[int64(m["teepod_id"].(float64))] = m["device_id"].(string)
	}
	return out
}

// TestNodesHaveDistinctDevices: the cloud has node 1 (the configured device)
// and two more, each with its own device id, listed as the SDK's
// getAvailableNodes reads them; provision places a CVM on the node asked for.
func TestNodesHaveDistinctDevices(t *testing.T) {
	a := newAPI(t)
	devices := nodeDevices(t, a)
	if len(devices) != 1+cloud.ExtraNodes {
		t.Fatalf("%d nodes, want %d: %v", len(devices), 1+cloud.ExtraNodes, devices)
	}
	if devices[1] != hex.EncodeToString(shared.DeviceID[:]) {
		t.Errorf("node 1's device %s, want the configured %x", devices[1], shared.DeviceID[:])
	}
	seen := map[string]bool{}
	for id, d := range devices {
		if seen[d] {
			t.Errorf("node %d shares device %s", id, d)
		}
		seen[d] = true
	}
	body := provisionBody("node-three-app")
	body["node_id"] = 3
	prov := a.do("POST", "/cvms/provision", body).must(t, 200)
	if prov["device_id"] != devices[3] || prov["teepod_id"].(float64) != 3 {
		t.Fatalf("provision on node 3 answered device %v node %v", prov["device_id"], prov["teepod_id"])
	}
}

// TestBootChecksTheNodesDevice: a CVM on node 3 of an app that allows only
// node 1's device is refused at boot, naming node 3's device.
func TestBootChecksTheNodesDevice(t *testing.T) {
	a := newAPI(t)
	devices := nodeDevices(t, a)
	body := provisionBody("node-three-boot")
	body["node_id"] = 3
	prov := a.do("POST", "/cvms/provision", body).must(t, 200)
	hash := prov["compose_hash"].(string)
	app := deployApp(t, devices[1], hash)
	enc, err := kms.EncryptEnv(testEnv, a.pubkey(app.Hex()))
	if err != nil {
		t.Fatal(err)
	}
	cvm := a.do("POST", "/cvms", map[string]any{"app_id": app.Hex(), "compose_hash": hash, "encrypted_env": enc}).must(t, 200)
	if cvm["teepod_id"].(float64) != 3 {
		t.Fatalf("committed on node %v, want 3", cvm["teepod_id"])
	}
	st := a.waitStatus(cvm["vm_uuid"].(string))
	if st["status"] != cloud.StatusError || !strings.Contains(fmt.Sprint(st["boot_error"]), devices[3]) {
		t.Fatalf("boot %v; want an error naming node 3's device %s", st, devices[3])
	}
}

// TestReplicaOnAnotherNode walks the on-chain replica flow on the wire: 465
// naming node 2's device; a commit whose transaction did not add it is 467,
// already-registered before it is allowed is 468; after addDevice the
// commit creates a running replica on node 2; a used token is 466; a second
// replica on node 2 needs nothing and is created at once.
func TestReplicaOnAnotherNode(t *testing.T) {
	a := newAPI(t)
	devices := nodeDevices(t, a)
	id, app, hash := runningCVM(t, a, "replica-source")
	before, pending := shared.Cloud.Counts(), shared.Cloud.PendingReplicas()

	d := details465(t, a.do("POST", "/cvms/"+id+"/replicas", map[string]any{"node_id": 2}))
	if d["device_id"] != devices[2] || d["compose_hash"] != hash || !strings.EqualFold(fmt.Sprint(d["app_id"]), strings.TrimPrefix(app.Hex(), "0x")) {
		t.Fatalf("465 details %v; want node 2's device %s, hash %s, app %s", d, devices[2], hash, app.Hex())
	}
	if st := d["onchain_status"].(map[string]any); st["device_id_allowed"] != false || st["compose_hash_allowed"] != true {
		t.Fatalf("onchain_status %v", st)
	}
	if !strings.HasSuffix(d["api_commit_url"].(string), "/cvms/"+id+"/commit-replica") {
		t.Errorf("api_commit_url %v", d["api_commit_url"])
	}
	token := d["commit_token"].(string)
	if c := shared.Cloud.Counts(); c.CVMs != before.CVMs || shared.Cloud.PendingReplicas() != pending+1 {
		t.Fatalf("counts %+v after a 465 (before %+v): nothing may be created", c, before)
	}

	commit := func(tx string) reply {
		return a.do("POST", "/cvms/"+id+"/commit-replica", map[string]any{"token": token, "compose_hash": hash, "transaction_hash": tx})
	}
	if r := commit(cloud.AlreadyRegistered); r.status != cloud.StatusHashNotOnChain {
		t.Fatalf("already-registered before addDevice: %d %s", r.status, r.raw)
	}
	// A transaction of the app that adds another device does not do it.
	c, s := chain(t)
	other, err := c.AddDevice(context.Background(), s, app, common.HexToHash(devices[3]), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := commit(other.TxHash.Hex()); r.status != cloud.StatusTxVerificationFailed {
		t.Fatalf("commit with another device's tx: %d %s", r.status, r.raw)
	}
	added, err := c.AddDevice(context.Background(), s, app, common.HexToHash(devices[2]), deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vm := commit(added.TxHash.Hex()).must(t, 200)
	if vm["teepod_id"].(float64) != 2 || vm["app_id"] != strings.ToLower(strings.TrimPrefix(app.Hex(), "0x")) || vm["vm_uuid"] == nil {
		t.Fatalf("replica %v", vm)
	}
	if st := a.waitStatus(vm["vm_uuid"].(string)); st["status"] != cloud.StatusRunning {
		t.Fatalf("replica boot %v", st)
	}
	if r := commit(added.TxHash.Hex()); r.status != cloud.StatusHashExpired {
		t.Fatalf("second commit with the used token: %d %s", r.status, r.raw)
	}

	// Node 2 is allowed now: a replica there is created at once, and a
	// prepared one commits with already-registered.
	at := a.do("POST", "/cvms/"+id+"/replicas", map[string]any{"node_id": 2}).must(t, 200)
	if at["teepod_id"].(float64) != 2 {
		t.Fatalf("direct replica %v", at)
	}
	d = details465(t, a.do("POST", "/cvms/"+id+"/replicas", map[string]any{"node_id": 2}, "X-Prepare-Only", "true"))
	token = d["commit_token"].(string)
	a.do("POST", "/cvms/"+id+"/commit-replica", map[string]any{"token": token, "compose_hash": "", "transaction_hash": ""}).must(t, 200)
}

// TestReplicaRequests covers the request's own checks: an unknown node, a
// compose hash that is not the CVM's, another OS image, and a cloud-KMS
// app's replica, which is created at once with the source's env.
func TestReplicaRequests(t *testing.T) {
	a := newAPI(t)
	id, _, hash := runningCVM(t, a, "replica-requests")
	if r := a.do("POST", "/cvms/"+id+"/replicas", map[string]any{"node_id": 99}); r.status != 404 || !strings.Contains(string(r.raw), "ERR-02-001") {
		t.Errorf("unknown node: %d %s", r.status, r.raw)
	}
	other := strings.Repeat("ab", 32)
	if other == hash {
		other = strings.Repeat("cd", 32)
	}
	if r := a.do("POST", "/cvms/"+id+"/replicas", map[string]any{"compose_hash": other}); r.status != 422 {
		t.Errorf("another compose hash: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/cvms/"+id+"/replicas", map[string]any{"os_image": "dstack-9.9.9"}); r.status != 404 {
		t.Errorf("unknown image: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/cvms/no-such-cvm/replicas", map[string]any{}); r.status != 404 {
		t.Errorf("unknown CVM: %d %s", r.status, r.raw)
	}

	cloudID, _, _ := a.cloudKMSCVM(provisionBody("replica-cloud-kms"))
	vm := a.do("POST", "/cvms/"+cloudID+"/replicas", nil).must(t, 200)
	if vm["teepod_id"].(float64) == 1 {
		t.Errorf("without node_id the replica went to node 1, where its source runs: %v", vm["teepod_id"])
	}
	if st := a.waitStatus(vm["vm_uuid"].(string)); st["status"] != cloud.StatusRunning {
		t.Fatalf("cloud-KMS replica %v", st)
	}
}

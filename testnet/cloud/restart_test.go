package cloud_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestRestartAfterAllowingTheHash: a commit made before the owner allowed
// the compose hash boots to error ("Compose hash not allowed"); once the
// owner adds the hash on-chain, POST /cvms/{id}/restart boots it again,
// through restarting and starting, to running.
func TestRestartAfterAllowingTheHash(t *testing.T) {
	a := newAPI(t)
	prov := a.do("POST", "/cvms/provision", provisionBody("restart-app")).must(t, 200)
	hash := prov["compose_hash"].(string)
	// The app allows the device but another compose hash.
	app := deployApp(t, prov["device_id"].(string), "0x"+strings.Repeat("ef", 32))
	cvm, _ := commitFor(t, a, "restart-app", app)
	id := fmt.Sprint(int64(cvm["id"].(float64)))
	st := a.waitStatus(id)
	if st["status"] != cloud.StatusError || !strings.Contains(fmt.Sprint(st["boot_error"]), "Compose hash not allowed") {
		t.Fatalf("before the hash is allowed: %v / %v, want error with Compose hash not allowed", st["status"], st["boot_error"])
	}

	addComposeHash(t, app, hash)
	got := a.do("POST", "/cvms/"+id+"/restart", map[string]any{"force": false}).must(t, 200)
	checkCVMShape(t, got)
	if got["status"] != cloud.StatusRestarting || got["id"] != cvm["id"] || got["boot_error"] != nil {
		t.Errorf("restart answer: status %v id %v boot_error %v, want restarting, %v, null", got["status"], got["id"], got["boot_error"], cvm["id"])
	}
	events := watch(t, a, id, cloud.StatusRunning)
	var seen []string
	for _, e := range events {
		if e.name == "state" && (len(seen) == 0 || seen[len(seen)-1] != e.data["status"]) {
			seen = append(seen, fmt.Sprint(e.data["status"]))
		}
	}
	order := []string{cloud.StatusRestarting, cloud.StatusStarting, cloud.StatusRunning}
	if last := events[len(events)-1]; last.name != "complete" || seen[len(seen)-1] != cloud.StatusRunning {
		t.Fatalf("after restart: events end %s, statuses %v; want complete in running", last.name, seen)
	}
	for i := 1; i < len(seen); i++ {
		if slices.Index(order, seen[i-1]) >= slices.Index(order, seen[i]) {
			t.Errorf("statuses %v are not in the order %v", seen, order)
		}
	}
	logHas(t, "onchain check", "app="+app.Hex(), "compose_hash="+hash, "allowed=true")
	logHas(t, "cvm restart", "from=error")

	// A running CVM restarts to running again; the CVM keeps its hash.
	a.do("POST", "/cvms/"+id+"/restart", nil).must(t, 200)
	if st := a.waitStatus(id); st["status"] != cloud.StatusRunning {
		t.Fatalf("second restart: %v", st)
	}
	if got := a.do("GET", "/cvms/"+id, nil).must(t, 200); got["compose_hash"] != hash {
		t.Errorf("compose_hash after restart %v, want %s", got["compose_hash"], hash)
	}
}

func TestRestartErrors(t *testing.T) {
	a := newAPI(t)
	id, _, _ := a.cloudKMSCVM(map[string]any{"name": "restart-errors-app", "compose_file": map[string]any{"docker_compose_file": composeYAML}})
	tests := []struct {
		name   string
		id     string
		body   any
		status int
	}{
		{"unknown CVM", "no-such-cvm", nil, 404},
		{"force not a boolean", id, map[string]any{"force": "yes"}, 422},
		{"body not an object", id, "[1]", 422},
		{"GET is not served", id, nil, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "POST"
			if tt.status == 405 {
				method = "GET"
			}
			if r := a.forTest(t).do(method, "/cvms/"+tt.id+"/restart", tt.body); r.status != tt.status {
				t.Errorf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
		})
	}
}

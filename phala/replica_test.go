package phala

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

const replicaVM = `{"id":7,"name":"app-replica-7","status":"creating","teepod_id":2,"teepod":{"id":2,"name":"node-2"},"user_id":1,
"app_id":"21db43cdd6fbd4998ff67af132f953747bfacb97","vm_uuid":"0b6f1f5e-3b0a-4c5e-9d0e-2f0c9b8a7d61","instance_id":null,
"base_image":"dstack-0.5.5","vcpu":1,"memory":2048,"disk_size":20,"docker_compose_file":null,"created_at":"2026-05-01T00:00:00Z"}`

func TestReplicaFlow(t *testing.T) {
	var mu sync.Mutex
	answer := func(w http.ResponseWriter) { writeJSON(w, 200, replicaVM) }
	srv, rec := newServer(t, func(w http.ResponseWriter, _ *http.Request, _ recorded) {
		mu.Lock()
		a := answer
		mu.Unlock()
		a(w)
	})
	set := func(f func(w http.ResponseWriter)) { mu.Lock(); answer = f; mu.Unlock() }
	c, _ := newClient(t, srv)
	ctx := context.Background()
	last := func() recorded { all := rec.all(); return all[len(all)-1] }

	t.Run("created at once", func(t *testing.T) {
		set(func(w http.ResponseWriter) { writeJSON(w, 200, replicaVM) })
		res, err := c.ReplicateCVM(ctx, "trace-app-1", ReplicaRequest{NodeID: ptr(int64(2))}, ReplicaOptions{})
		if err != nil || res.CVM == nil || res.Registration != nil {
			t.Fatalf("ReplicateCVM = %+v, %v", res, err)
		}
		if n, ok := res.CVM.NodeID(); !ok || n != 2 {
			t.Fatalf("node %d %v", n, ok)
		}
		r := last()
		if r.Method != "POST" || r.Path != "/api/v1/cvms/trace-app-1/replicas" || r.Header.Get("X-Prepare-Only") != "" {
			t.Fatalf("sent %s %s %v", r.Method, r.Path, r.Header)
		}
		jsonEqual(t, r.Body, `{"node_id":2}`)
	})
	t.Run("465 is decoded like an update's", func(t *testing.T) {
		set(registration465(465))
		res, err := c.ReplicateCVM(ctx, "trace-app-1", ReplicaRequest{ComposeHash: "0x" + hashA}, ReplicaOptions{PrepareOnly: true})
		if err != nil || res.CVM != nil || res.Registration == nil {
			t.Fatalf("ReplicateCVM = %+v, %v", res, err)
		}
		if last().Header.Get("X-Prepare-Only") != "true" {
			t.Fatal("X-Prepare-Only not sent")
		}
		jsonEqual(t, last().Body, `{"compose_hash":"`+hashA+`"}`)
		if reg := res.Registration; reg.DeviceID != device1 || reg.CommitToken != "tok_1" || reg.ComposeHash != hashA {
			t.Fatalf("registration %+v", reg)
		}
	})
	t.Run("commit-replica needs no API key", func(t *testing.T) {
		set(func(w http.ResponseWriter) { writeJSON(w, 200, replicaVM) })
		nokey, _ := newClient(t, srv, func(c *Config) { c.APIKey = "" })
		vm, err := nokey.CommitReplica(ctx, "trace-app-1", CommitReplicaRequest{Token: "tok_1", ComposeHash: "0x" + hashA, TransactionHash: AlreadyRegistered})
		if err != nil || vm.Name != "app-replica-7" {
			t.Fatalf("CommitReplica = %+v, %v", vm, err)
		}
		r := last()
		if r.Path != "/api/v1/cvms/trace-app-1/commit-replica" || r.Header.Get("X-API-Key") != "" {
			t.Fatalf("sent %s with key %q", r.Path, r.Header.Get("X-API-Key"))
		}
		jsonEqual(t, r.Body, `{"token":"tok_1","compose_hash":"`+hashA+`","transaction_hash":"already-registered"}`)
	})
	for _, tt := range []struct {
		status   int
		sentinel error
	}{{466, ErrHashExpired}, {467, ErrTxVerificationFailed}, {468, ErrHashNotOnChain}} {
		t.Run(fmt.Sprintf("commit-replica %d", tt.status), func(t *testing.T) {
			set(func(w http.ResponseWriter) { writeJSON(w, tt.status, `{"detail":"nope"}`) })
			before := rec.count()
			_, err := c.CommitReplica(ctx, "trace-app-1", CommitReplicaRequest{Token: "tok_1", ComposeHash: hashA, TransactionHash: AlreadyRegistered})
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v", err)
			}
			if rec.count() != before+1 {
				t.Fatal("a consumed token was retried")
			}
		})
	}
	t.Run("input checks send nothing", func(t *testing.T) {
		before := rec.count()
		if _, err := c.CommitReplica(ctx, "x", CommitReplicaRequest{ComposeHash: hashA, TransactionHash: AlreadyRegistered}); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("empty token: %v", err)
		}
		if _, err := c.CommitReplica(ctx, "x", CommitReplicaRequest{Token: "t", ComposeHash: hashA, TransactionHash: "0x12"}); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("bad tx: %v", err)
		}
		if _, err := c.ReplicateCVM(ctx, "x", ReplicaRequest{EncryptedEnv: "zz"}, ReplicaOptions{}); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("bad env: %v", err)
		}
		if rec.count() != before {
			t.Fatal("invalid input was sent")
		}
	})
}

// TestListCVMsShapes: the plain list and the page shape (followed page by
// page) decode; AppCVMs keeps one app's CVMs, whatever form its id has.
func TestListCVMsShapes(t *testing.T) {
	vm := func(id int, app string) string {
		return strings.Replace(strings.Replace(replicaVM, `"id":7`, fmt.Sprintf(`"id":%d`, id), 1), "21db43cdd6fbd4998ff67af132f953747bfacb97", app, 1)
	}
	other := strings.Repeat("ab", 20)
	for _, tt := range []struct {
		name  string
		pages []string
	}{
		{"plain list", []string{"[" + vm(1, "21db43cdd6fbd4998ff67af132f953747bfacb97") + "," + vm(2, other) + "," + vm(3, "0x21DB43cdd6fbd4998ff67af132f953747bfacb97") + "]"}},
		{"pages", []string{
			`{"items":[` + vm(1, "21db43cdd6fbd4998ff67af132f953747bfacb97") + "," + vm(2, other) + `],"total":3,"page":1,"page_size":2,"pages":2}`,
			`{"items":[` + vm(3, "0x21DB43cdd6fbd4998ff67af132f953747bfacb97") + `],"total":3,"page":2,"page_size":2,"pages":2}`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
				page := 1
				fmt.Sscan(r.URL.Query().Get("page"), &page)
				writeJSON(w, 200, tt.pages[page-1])
			})
			c, _ := newClient(t, srv)
			all, err := c.ListCVMs(context.Background())
			if err != nil || len(all) != 3 {
				t.Fatalf("ListCVMs = %d, %v", len(all), err)
			}
			mine, err := c.AppCVMs(context.Background(), "0x21db43cdd6fbd4998ff67af132f953747bfacb97")
			if err != nil || len(mine) != 2 || mine[0].ID.String() != "1" || mine[1].ID.String() != "3" {
				t.Fatalf("AppCVMs = %+v, %v", mine, err)
			}
			if rec.count() != 2*len(tt.pages) {
				t.Fatalf("%d requests for %d pages twice", rec.count(), len(tt.pages))
			}
		})
	}
}

func TestAvailableNodes(t *testing.T) {
	srv, _ := newServer(t, func(w http.ResponseWriter, _ *http.Request, _ recorded) {
		writeJSON(w, 200, `{"tier":"free","nodes":[{"teepod_id":1,"name":"n1","device_id":"0x`+strings.ToUpper(device1)+`","support_onchain_kms":true,"region_identifier":null,"fmspc":null},
{"teepod_id":2,"name":"n2","device_id":null}],"kms_list":[]}`)
	})
	c, _ := newClient(t, srv)
	out, err := c.AvailableNodes(context.Background())
	if err != nil || len(out.Nodes) != 2 {
		t.Fatalf("AvailableNodes = %+v, %v", out, err)
	}
	if n := out.Nodes[0]; n.TeepodID != 1 || n.DeviceID != device1 || !n.SupportOnchainKMS || n.Name != "n1" || n.Extra["fmspc"] == nil {
		t.Fatalf("node 1 %+v", n)
	}
	if n := out.Nodes[1]; n.DeviceID != "" || n.TeepodID != 2 {
		t.Fatalf("node 2 %+v", n)
	}

	bad, _ := newServer(t, func(w http.ResponseWriter, _ *http.Request, _ recorded) {
		writeJSON(w, 200, `{"nodes":[{"teepod_id":1,"device_id":"abcd"}]}`)
	})
	c, _ = newClient(t, bad)
	var de *DecodeError
	if _, err := c.AvailableNodes(context.Background()); !errors.As(err, &de) {
		t.Fatalf("short device id: %v", err)
	}
}

// TestCVMNodeID reads the node from every shape that names it.
func TestCVMNodeID(t *testing.T) {
	for _, tt := range []struct {
		doc  string
		want int64
	}{
		{`{"id":1,"name":"a","status":"running","teepod_id":4}`, 4},
		{`{"id":1,"name":"a","status":"running","teepod_id":null,"teepod":{"id":5,"name":"n"}}`, 5},
		{`{"id":"cvm_x","name":"a","status":"running","node_id":6}`, 6},
		{`{"id":1,"name":"a","status":"running","node":{"id":7,"name":"n"}}`, 7},
	} {
		var vm CVM
		if err := json.Unmarshal([]byte(tt.doc), &vm); err != nil {
			t.Fatal(err)
		}
		if n, ok := vm.NodeID(); !ok || n != tt.want {
			t.Errorf("NodeID of %s = %d %v, want %d", tt.doc, n, ok, tt.want)
		}
	}
}

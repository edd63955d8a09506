package cloud_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestAttestation: GET /cvms/{id}/attestation carries tcb_info only for a
// running CVM whose app-compose has public_tcbinfo; its app_compose is the
// stored document byte for byte, so its sha256 is the compose hash, which
// the compose-hash event of the RTMR3 log also carries.
func TestAttestation(t *testing.T) {
	a := newAPI(t)
	tests := []struct {
		name   string
		cvm    func(t *testing.T) (id string)
		online bool
		public bool
	}{
		{"running on-chain CVM, public by default", func(t *testing.T) string {
			id, _, _ := runningCVM(t, a.forTest(t), "attest-app")
			return id
		}, true, true},
		{"running CVM with public_tcbinfo false", func(t *testing.T) string {
			id, _, _ := a.forTest(t).cloudKMSCVM(map[string]any{"name": "attest-private-app", "compose_file": map[string]any{
				"docker_compose_file": composeYAML, "public_tcbinfo": false}})
			if st := a.forTest(t).waitStatus(id); st["status"] != cloud.StatusRunning {
				t.Fatalf("CVM %v", st)
			}
			return id
		}, true, false},
		{"CVM that failed to boot", func(t *testing.T) string {
			cvm, _ := commitFor(t, a.forTest(t), "attest-failed-app", common.HexToAddress("0x00000000000000000000000000000000000000a7"))
			id := fmt.Sprint(int64(cvm["id"].(float64)))
			if st := a.forTest(t).waitStatus(id); st["status"] != cloud.StatusError {
				t.Fatalf("CVM %v", st)
			}
			return id
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := a.forTest(t)
			id := tt.cvm(t)
			cvm := a.do("GET", "/cvms/"+id, nil).must(t, 200)
			stored := a.do("GET", "/cvms/"+id+"/compose_file", nil).raw
			att := a.do("GET", "/cvms/"+id+"/attestation", nil).must(t, 200)
			if att["is_online"] != tt.online || att["is_public"] != tt.public || att["compose_hash"] != cvm["compose_hash"] {
				t.Errorf("is_online %v is_public %v compose_hash %v; want %v %v %v", att["is_online"], att["is_public"], att["compose_hash"],
					tt.online, tt.public, cvm["compose_hash"])
			}
			if certs, ok := att["app_certificates"].([]any); !ok || len(certs) != 0 {
				t.Errorf("app_certificates = %#v, want []", att["app_certificates"])
			}
			if (att["error"] == nil) != tt.online {
				t.Errorf("error = %v with is_online %v", att["error"], tt.online)
			}
			if !tt.online || !tt.public {
				if att["tcb_info"] != nil {
					t.Errorf("tcb_info = %v, want null", att["tcb_info"])
				}
				return
			}
			tcb, _ := att["tcb_info"].(map[string]any)
			appCompose, _ := tcb["app_compose"].(string)
			if appCompose != string(stored) {
				t.Errorf("tcb_info.app_compose differs from compose_file:\n%s\n%s", appCompose, stored)
			}
			sum := sha256.Sum256([]byte(appCompose))
			if hex.EncodeToString(sum[:]) != cvm["compose_hash"] {
				t.Errorf("sha256(app_compose) = %x, want compose_hash %v", sum, cvm["compose_hash"])
			}
			// The RTMR3 log: each digest is dstack's, the replay is rtmr3, and
			// the compose-hash event carries the hash.
			rtmr := make([]byte, 48)
			var composeEvent map[string]any
			for _, raw := range tcb["event_log"].([]any) {
				e := raw.(map[string]any)
				payload, err := hex.DecodeString(e["event_payload"].(string))
				if err != nil {
					t.Fatalf("event_payload %v", e["event_payload"])
				}
				h := sha512.New384()
				h.Write(binary.LittleEndian.AppendUint32(nil, uint32(e["event_type"].(float64))))
				h.Write([]byte(":" + e["event"].(string) + ":"))
				h.Write(payload)
				if digest := hex.EncodeToString(h.Sum(nil)); digest != e["digest"] || e["imr"] != float64(3) || e["event_type"] != float64(cloud.RuntimeEventType) {
					t.Errorf("event %v: digest %s, imr %v, type %v", e["event"], digest, e["imr"], e["event_type"])
				}
				r := sha512.New384()
				r.Write(rtmr)
				r.Write(h.Sum(nil))
				rtmr = r.Sum(nil)
				if e["event"] == "compose-hash" {
					composeEvent = e
				}
			}
			if composeEvent == nil || composeEvent["event_payload"] != cvm["compose_hash"] {
				t.Errorf("compose-hash event %v, want payload %v", composeEvent, cvm["compose_hash"])
			}
			if hex.EncodeToString(rtmr) != tcb["rtmr3"] {
				t.Errorf("rtmr3 %v is not the replay of the event log (%x)", tcb["rtmr3"], rtmr)
			}
			for _, k := range []string{"mrtd", "rtmr0", "rtmr1", "rtmr2"} {
				if v, _ := tcb[k].(string); len(v) != 96 {
					t.Errorf("tcb_info.%s = %q, want 48 bytes of hex", k, v)
				}
			}
		})
	}
	if r := a.do("GET", "/cvms/"+strings.Repeat("0", 40)+"/attestation", nil); r.status != 404 {
		t.Errorf("unknown CVM: status %d, want 404", r.status)
	}
}

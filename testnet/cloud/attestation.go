package cloud

import (
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
)

// RuntimeEventType is the event type dstack gives the runtime events it
// extends into RTMR3 (cc-eventlog DSTACK_RUNTIME_EVENT_TYPE).
const RuntimeEventType = 0x08000001

// runtimeEvent is one RTMR3 entry of tcb_info.event_log.
type runtimeEvent struct {
	name    string
	payload []byte
}

// digest is dstack's runtime event digest:
// sha384(event_type as u32 little-endian ‖ ":" ‖ event ‖ ":" ‖ payload).
func (e runtimeEvent) digest() []byte {
	h := sha512.New384()
	h.Write(binary.LittleEndian.AppendUint32(nil, RuntimeEventType))
	h.Write([]byte(":" + e.name + ":"))
	h.Write(e.payload)
	return h.Sum(nil)
}

// replayRTMR folds event digests into a register as TDX extends it:
// rtmr = sha384(rtmr ‖ digest), from 48 zero bytes.
func replayRTMR(events []runtimeEvent) []byte {
	rtmr := make([]byte, sha512.Size384)
	for _, e := range events {
		h := sha512.New384()
		h.Write(rtmr)
		h.Write(e.digest())
		rtmr = h.Sum(nil)
	}
	return rtmr
}

// measurement is a fixed stand-in for a boot-time register of the node's
// OS image (nothing checks those against hardware here).
func (s *Server) measurement(label string) string {
	sum := sha512.Sum384([]byte("cvmdeploy local cloud / " + label + " / " + s.cfg.OSImageName))
	return hex.EncodeToString(sum[:])
}

// tcbInfo renders tcb_info for a running CVM: fixed boot registers, the
// RTMR3 runtime events dstack emits (app-id, compose-hash, instance-id,
// os-image-hash, key-provider, ...), RTMR3 as their replay, and app_compose,
// the stored app-compose verbatim (its sha256 is the compose-hash event).
func (s *Server) tcbInfo(c *cvm) map[string]any {
	app, _ := hex.DecodeString(c.appID)
	hash, _ := hex.DecodeString(c.composeHash)
	instance, _ := hex.DecodeString(c.instanceID)
	provider, _ := json.Marshal(map[string]string{"name": "kms", "id": hex.EncodeToString(s.keys.rootPublicKey())})
	events := []runtimeEvent{
		{"system-preparing", nil},
		{"app-id", app},
		{"compose-hash", hash},
		{"instance-id", instance},
		{"boot-mr-done", nil},
		{"os-image-hash", s.cfg.OSImageHash[:]},
		{"key-provider", provider},
		{"system-ready", nil},
	}
	log := make([]map[string]any, 0, len(events))
	for _, e := range events {
		log = append(log, map[string]any{"imr": 3, "event_type": RuntimeEventType, "digest": hex.EncodeToString(e.digest()),
			"event": e.name, "event_payload": hex.EncodeToString(e.payload)})
	}
	return map[string]any{
		"mrtd":        s.measurement("mrtd"),
		"rtmr0":       s.measurement("rtmr0"),
		"rtmr1":       s.measurement("rtmr1"),
		"rtmr2":       s.measurement("rtmr2"),
		"rtmr3":       hex.EncodeToString(replayRTMR(events)),
		"event_log":   log,
		"app_compose": string(c.appCompose),
	}
}

// handleAttestation serves GET /cvms/{id}/attestation in the SDK's
// CvmAttestation shape {name, is_online, is_public, error,
// app_certificates, tcb_info, compose_file} plus compose_hash. tcb_info is
// there only while the CVM runs and its app-compose has public_tcbinfo
// true (absent counts as true, dstack's default); is_public is that
// setting, is_online whether the CVM runs. app_certificates is empty (no
// RA-TLS certificates here) and compose_file null.
func (s *Server) handleAttestation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.findLocked(id)
	if c == nil {
		writeCVMNotFound(w, id)
		return
	}
	public := true
	if b, ok := c.composeDoc()["public_tcbinfo"].(bool); ok {
		public = b
	}
	online := c.status == StatusRunning
	resp := map[string]any{
		"name":             c.name,
		"is_online":        online,
		"is_public":        public,
		"error":            nil,
		"app_certificates": []any{},
		"tcb_info":         nil,
		"compose_file":     nil,
		"compose_hash":     c.composeHash,
	}
	switch {
	case !online:
		resp["error"] = fmt.Sprintf("CVM is not running (status %s)", c.status)
	case public:
		resp["tcb_info"] = s.tcbInfo(c)
	}
	writeJSON(w, http.StatusOK, resp)
}

package cloud

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// handleListKMS serves GET /kms?is_onchain=&page=&page_size= in the page
// shape {items, total, page, page_size, pages}: KMS nodes (KmsInfo), or
// under 2026-06-23 KMS contracts (KmsContract).
func (s *Server) handleListKMS(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs []fieldError
	intParam := func(name string, def, lo, hi int) int {
		raw := q.Get(name)
		if raw == "" {
			return def
		}
		n, err := strconv.Atoi(raw)
		switch {
		case err != nil:
			errs = append(errs, fieldError{Type: "int_parsing", Loc: []any{"query", name}, Msg: "Input should be a valid integer, unable to parse string as an integer", Input: raw})
		case n < lo:
			errs = append(errs, fieldError{Type: "greater_than_equal", Loc: []any{"query", name}, Msg: fmt.Sprintf("Input should be greater than or equal to %d", lo), Input: raw, Ctx: map[string]any{"ge": lo}})
		case n > hi:
			errs = append(errs, fieldError{Type: "less_than_equal", Loc: []any{"query", name}, Msg: fmt.Sprintf("Input should be less than or equal to %d", hi), Input: raw, Ctx: map[string]any{"le": hi}})
		}
		return n
	}
	page := intParam("page", 1, 1, 1<<20)
	pageSize := intParam("page_size", 50, 1, 100)
	var onchain *bool
	if raw := q.Get("is_onchain"); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			errs = append(errs, fieldError{Type: "bool_parsing", Loc: []any{"query", "is_onchain"}, Msg: "Input should be a valid boolean, unable to interpret input", Input: raw})
		}
		onchain = &b
	}
	if len(errs) > 0 {
		writeValidation(w, errs)
		return
	}
	var all []map[string]any
	for _, k := range []*kmsEntry{s.onKMS, s.phKMS} {
		switch {
		case onchain != nil && *onchain != k.OnChain:
		case versionOf(r) == Version20260623:
			all = append(all, s.contractJSON(k))
		default:
			all = append(all, k.info())
		}
	}
	total := len(all)
	start := (page - 1) * pageSize
	items := []map[string]any{}
	if start < total {
		end := min(start+pageSize, total)
		items = all[start:end]
	}
	pages := (total + pageSize - 1) / pageSize
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": total, "page": page, "page_size": pageSize, "pages": pages})
}

func (s *Server) kmsByName(name string) *kmsEntry {
	for _, k := range []*kmsEntry{s.onKMS, s.phKMS} {
		if k.matches(name) {
			return k
		}
	}
	return nil
}

func writeKMSNotFound(w http.ResponseWriter, name string) {
	writeStructured(w, http.StatusNotFound, apiError{ErrorCode: codeKMSNotFound,
		Message:     fmt.Sprintf("KMS %q not found", name),
		Details:     []detailItem{{Field: "kms", Value: name}},
		Suggestions: []string{"Use the KMS slug or id from kms_info (not the kms type such as \"base\")", "List KMS instances with GET /kms?is_onchain=true"}})
}

// handleGetKMS serves GET /kms/{id_or_slug}: a KMS node, or under
// 2026-06-23 a KMS contract (by slug or kc_ id).
func (s *Server) handleGetKMS(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("kms")
	if versionOf(r) == Version20260623 {
		k := s.contractByRef(name)
		if k == nil {
			writeKMSNotFound(w, name)
			return
		}
		writeJSON(w, http.StatusOK, s.contractJSON(k))
		return
	}
	k := s.kmsByName(name)
	if k == nil {
		writeKMSNotFound(w, name)
		return
	}
	info := k.info()
	if k.OnChain {
		// Extra, optional key: the root key clients verify signatures against.
		info["k256_pubkey"] = "0x" + hex.EncodeToString(s.reportedRootKey())
		s.logKMSLie("kms")
	}
	writeJSON(w, http.StatusOK, info)
}

// handlePubkey serves GET /kms/{kms}/pubkey/{app_id}. The answer is exactly
// {public_key, signature} (the official CLI's schema is strict), with the
// legacy signature. With ?v1=true it adds timestamp and signature_v1 (the
// KMS's timestamped signature), which strict clients must not ask for.
func (s *Server) handlePubkey(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("kms")
	k := s.kmsByName(name)
	if k == nil {
		writeKMSNotFound(w, name)
		return
	}
	raw := r.PathValue("app_id")
	app, err := parseHexID(raw, 20)
	if err != nil {
		writeValidation(w, []fieldError{{Type: "value_error", Loc: []any{"path", "app_id"},
			Msg: "Value error, app_id must be 40 hex characters, optionally with 0x", Input: raw}})
		return
	}
	var wantV1 bool
	if v := r.URL.Query().Get("v1"); v != "" {
		if wantV1, err = strconv.ParseBool(v); err != nil {
			writeValidation(w, []fieldError{{Type: "bool_parsing", Loc: []any{"query", "v1"}, Msg: "Input should be a valid boolean, unable to interpret input", Input: v}})
			return
		}
	}
	id, _ := appIDBytes(app)
	key, err := s.keys.appEnvKey(id)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, "could not derive the app key")
		return
	}
	pub := key.PublicKey().Bytes()
	sig, err := s.keys.signPubkey(id, pub, 0, false)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, "could not sign the app key")
		return
	}
	resp := map[string]any{"public_key": hex.EncodeToString(pub), "signature": hex.EncodeToString(sig)}
	if wantV1 {
		ts := uint64(time.Now().Unix())
		sigV1, err := s.keys.signPubkey(id, pub, ts, true)
		if err != nil {
			writeDetail(w, http.StatusInternalServerError, "could not sign the app key")
			return
		}
		resp["timestamp"] = ts
		resp["signature_v1"] = hex.EncodeToString(sigV1)
	}
	s.log.Info("served app env pubkey", "kms", k.Slug, "app", "0x"+app, "v1", wantV1)
	if k.OnChain {
		s.logKMSLie("pubkey", "app", "0x"+app)
	}
	writeJSON(w, http.StatusOK, resp)
}

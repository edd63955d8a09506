package cloud

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
)

// maxBodyBytes bounds every request body; the compose limit (200 KiB) is
// checked separately so that it gets its own error.
const maxBodyBytes = 4 << 20

// validator collects pydantic-style field errors over a decoded JSON object.
// Types are checked strictly: a number is not accepted for a string, a
// string is not accepted for a number or a boolean. JSON null counts as
// "absent" for optional fields, as pydantic does for Optional[...] = None.
type validator struct{ errs []fieldError }

func (v *validator) add(typ string, loc []any, msg string, input any, ctx map[string]any) {
	v.errs = append(v.errs, fieldError{Type: typ, Loc: append([]any(nil), loc...), Msg: msg, Input: input, Ctx: ctx})
}

func (v *validator) ok() bool { return len(v.errs) == 0 }

func at(loc []any, key any) []any {
	out := append([]any(nil), loc...)
	return append(out, key)
}

// decodeObject reads the request body as one JSON object. It answers 422 and
// returns false on anything else.
func decodeObject(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		writeDetail(w, http.StatusBadRequest, "could not read the request body")
		return nil, false
	}
	if len(body) > maxBodyBytes {
		writeDetail(w, http.StatusRequestEntityTooLarge, "request body too large")
		return nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeValidation(w, []fieldError{{Type: "missing", Loc: []any{"body"}, Msg: "Field required", Input: nil}})
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil || dec.More() {
		msg := "JSON decode error"
		ctxErr := "invalid JSON"
		if err != nil {
			ctxErr = err.Error()
		}
		writeValidation(w, []fieldError{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: msg, Input: map[string]any{}, Ctx: map[string]any{"error": ctxErr}}})
		return nil, false
	}
	obj, isObj := raw.(map[string]any)
	if !isObj {
		writeValidation(w, []fieldError{{Type: "model_attributes_type", Loc: []any{"body"}, Msg: "Input should be a valid dictionary or object to extract fields from", Input: raw}})
		return nil, false
	}
	return obj, true
}

// lookup returns obj[key] and whether it is present and not null.
func lookup(obj map[string]any, key string) (any, bool) {
	val, ok := obj[key]
	if !ok || val == nil {
		return nil, false
	}
	return val, true
}

func (v *validator) str(obj map[string]any, loc []any, key string, required bool) (string, bool) {
	val, ok := lookup(obj, key)
	if !ok {
		if required {
			v.add("missing", at(loc, key), "Field required", nil, nil)
		}
		return "", false
	}
	s, isStr := val.(string)
	if !isStr {
		v.add("string_type", at(loc, key), "Input should be a valid string", val, nil)
		return "", false
	}
	return s, true
}

func (v *validator) boolean(obj map[string]any, loc []any, key string) (bool, bool) {
	val, ok := lookup(obj, key)
	if !ok {
		return false, false
	}
	b, isBool := val.(bool)
	if !isBool {
		v.add("bool_type", at(loc, key), "Input should be a valid boolean", val, nil)
		return false, false
	}
	return b, true
}

// integer checks an optional integer within [lo, hi].
func (v *validator) integer(obj map[string]any, loc []any, key string, lo, hi int64) (int64, bool) {
	val, ok := lookup(obj, key)
	if !ok {
		return 0, false
	}
	n, isNum := val.(json.Number)
	if !isNum {
		v.add("int_type", at(loc, key), "Input should be a valid integer", val, nil)
		return 0, false
	}
	f, err := n.Float64()
	if err != nil || math.Trunc(f) != f || math.Abs(f) > 1<<53 {
		v.add("int_from_float", at(loc, key), "Input should be a valid integer, got a number with a fractional part", val, nil)
		return 0, false
	}
	i := int64(f)
	if i < lo {
		v.add("greater_than_equal", at(loc, key), fmt.Sprintf("Input should be greater than or equal to %d", lo), val, map[string]any{"ge": lo})
		return 0, false
	}
	if i > hi {
		v.add("less_than_equal", at(loc, key), fmt.Sprintf("Input should be less than or equal to %d", hi), val, map[string]any{"le": hi})
		return 0, false
	}
	return i, true
}

func (v *validator) strList(obj map[string]any, loc []any, key string) ([]string, bool) {
	val, ok := lookup(obj, key)
	if !ok {
		return nil, false
	}
	list, isList := val.([]any)
	if !isList {
		v.add("list_type", at(loc, key), "Input should be a valid list", val, nil)
		return nil, false
	}
	out := make([]string, 0, len(list))
	good := true
	for i, item := range list {
		s, isStr := item.(string)
		if !isStr {
			v.add("string_type", at(at(loc, key), i), "Input should be a valid string", item, nil)
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

func (v *validator) object(obj map[string]any, loc []any, key string, required bool) (map[string]any, bool) {
	val, ok := lookup(obj, key)
	if !ok {
		if required {
			v.add("missing", at(loc, key), "Field required", nil, nil)
		}
		return nil, false
	}
	m, isObj := val.(map[string]any)
	if !isObj {
		v.add("model_type", at(loc, key), "Input should be a valid dictionary or object", val, nil)
		return nil, false
	}
	return m, true
}

func (v *validator) enum(obj map[string]any, loc []any, key string, allowed ...string) (string, bool) {
	s, ok := v.str(obj, loc, key, false)
	if !ok {
		return "", false
	}
	for _, a := range allowed {
		if s == a {
			return s, true
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = "'" + a + "'"
	}
	msg := "Input should be " + strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	v.add("enum", at(loc, key), msg, s, map[string]any{"expected": strings.Join(quoted, ", ")})
	return "", false
}

// CVM name rules (reference §1): 5–63 characters, a letter first, letters,
// digits and single hyphens, no trailing hyphen. Go's regexp has no
// look-ahead, so "--" is checked separately.
var nameRE = regexp.MustCompile(`^[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

func checkName(v *validator, loc []any, name string) {
	switch {
	case len(name) < 5:
		v.add("string_too_short", loc, "String should have at least 5 characters", name, map[string]any{"min_length": 5})
	case len(name) > 63:
		v.add("string_too_long", loc, "String should have at most 63 characters", name, map[string]any{"max_length": 63})
	case !nameRE.MatchString(name) || strings.Contains(name, "--"):
		v.add("string_pattern_mismatch", loc, "String should match pattern '^[a-zA-Z](?!.*--)([a-zA-Z0-9-]*[a-zA-Z0-9])?$'", name,
			map[string]any{"pattern": "^[a-zA-Z](?!.*--)([a-zA-Z0-9-]*[a-zA-Z0-9])?$"})
	}
}

// envKeyRE is the guest's rule for env var names (reference §7).
var envKeyRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func checkEnvKeys(v *validator, loc []any, keys []string) {
	seen := map[string]bool{}
	for i, k := range keys {
		switch {
		case len(k) > 255 || !envKeyRE.MatchString(k):
			v.add("string_pattern_mismatch", at(loc, i), "String should match pattern '^[a-zA-Z_][a-zA-Z0-9_]*$' (at most 255 characters)", k,
				map[string]any{"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"})
		case seen[k]:
			v.add("value_error", at(loc, i), "Value error, duplicate env key "+k, k, nil)
		}
		seen[k] = true
	}
	if len(keys) > 1024 {
		v.add("too_long", loc, "List should have at most 1024 items after validation", len(keys), map[string]any{"max_length": 1024})
	}
}

var errNotHex = errors.New("not a hex string of the expected length")

// parseHexID accepts n bytes of hex with an optional 0x/0X prefix, any case,
// and returns them lowercase without prefix.
func parseHexID(s string, n int) (string, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(t) != 2*n {
		return "", errNotHex
	}
	if _, err := hex.DecodeString(t); err != nil {
		return "", errNotHex
	}
	return strings.ToLower(t), nil
}

// parseComposeHash accepts 64 hex characters with an optional 0x or sha256:
// prefix (old docs show the latter).
func parseComposeHash(s string) (string, error) {
	return parseHexID(strings.TrimPrefix(s, "sha256:"), 32)
}

// hexField checks an optional hex id field of n bytes.
func (v *validator) hexField(obj map[string]any, loc []any, key string, n int, required bool) (string, bool) {
	s, ok := v.str(obj, loc, key, required)
	if !ok {
		return "", false
	}
	parse := func(s string) (string, error) { return parseHexID(s, n) }
	if key == "compose_hash" {
		parse = parseComposeHash
	}
	h, err := parse(s)
	if err != nil {
		v.add("value_error", at(loc, key), fmt.Sprintf("Value error, expected %d hex characters with an optional 0x prefix", 2*n), s, nil)
		return "", false
	}
	return h, true
}

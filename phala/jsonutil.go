package phala

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Extra holds JSON object members a type does not model. It is filled on
// decode and written back on encode, so unknown server fields pass through
// (the SDK's schemas are passthrough too) and callers can send fields this
// package does not know yet. Members that clash with modelled fields are
// ignored on encode.
type Extra map[string]json.RawMessage

// fieldError reports a missing or malformed member of a JSON object.
type fieldError struct {
	object, field, problem string
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.object + ": " + e.problem
	}
	return fmt.Sprintf("%s: field %q %s", e.object, e.field, e.problem)
}

// marshalJSON encodes v without HTML escaping (compose files are full of
// `&&`, and the official clients send them verbatim).
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// marshalObject encodes the struct v (an alias type without methods) and
// appends the members of extra that the encoding does not already hold, in
// sorted order.
func marshalObject(v any, extra Extra) ([]byte, error) {
	b, err := marshalJSON(v)
	if err != nil {
		return nil, err
	}
	if len(extra) == 0 {
		return b, nil
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(b, &present); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if _, dup := present[k]; !dup {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return b, nil
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // drop the closing brace
	sep := len(b) > 2       // "{}" has no members yet
	for _, k := range keys {
		val := extra[k]
		if !json.Valid(val) {
			return nil, fmt.Errorf("extra member %q is not valid JSON", k)
		}
		if sep {
			buf.WriteByte(',')
		}
		sep = true
		kb, _ := marshalJSON(k)
		buf.Write(kb)
		buf.WriteByte(':')
		if err := json.Compact(&buf, val); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// unmarshalObject decodes the JSON object data into the struct pointer v
// (an alias type), stores unmodelled members in *extra (when extra is not
// nil) and checks that every member named in required is present.
func unmarshalObject(data []byte, v any, extra *Extra, object string, required ...string) (map[string]json.RawMessage, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil || members == nil {
		return nil, &fieldError{object: object, field: "", problem: "expected a JSON object, got " + jsonKind(data)}
	}
	for _, k := range required {
		if _, ok := members[k]; !ok {
			return nil, &fieldError{object: object, field: k, problem: "is missing"}
		}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, err
	}
	if extra != nil {
		known := jsonKeys(reflect.TypeOf(v))
		var ex Extra
		for k, val := range members {
			if !known[k] {
				if ex == nil {
					ex = Extra{}
				}
				ex[k] = val
			}
		}
		*extra = ex
	}
	return members, nil
}

// requireNonNull fails when a present member is JSON null.
func requireNonNull(members map[string]json.RawMessage, object string, keys ...string) error {
	for _, k := range keys {
		if v, ok := members[k]; ok && isNull(v) {
			return &fieldError{object: object, field: k, problem: "is null"}
		}
	}
	return nil
}

func isNull(v json.RawMessage) bool {
	return string(bytes.TrimSpace(v)) == "null"
}

// jsonKind names the JSON type of a document, for error messages.
func jsonKind(data []byte) string {
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return "an empty body"
	}
	switch t[0] {
	case '{':
		return "an invalid object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	if t[0] == '-' || t[0] >= '0' && t[0] <= '9' {
		return "a number"
	}
	return "non-JSON text"
}

func typeOf[T any]() reflect.Type { return reflect.TypeOf((*T)(nil)).Elem() }

var jsonKeyCache sync.Map // reflect.Type -> map[string]bool

// jsonKeys lists the object member names a struct type encodes.
func jsonKeys(t reflect.Type) map[string]bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if m, ok := jsonKeyCache.Load(t); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		m[name] = true
	}
	jsonKeyCache.Store(t, m)
	return m
}

package kms

import (
	"bytes"
	"fmt"
)

// Serialization is a byte format a server has written app-compose.json in.
// The compose hash is SHA-256 of the very bytes the server wrote, so a
// document read back is only established once one of these formats
// reproduces them.
type Serialization string

const (
	// SerializationCompact is the 2026 format: keys sorted, no whitespace,
	// exactly CanonicalJSON.
	SerializationCompact Serialization = "compact"
	// SerializationIndent4 is the 2025 format of @phala/cloud's
	// dumpAppCompose: JSON.stringify(sorted, null, 4).replace(/": /g, '":').
	SerializationIndent4 Serialization = "indent4"
)

// knownSerialization reports whether this package can write s.
func knownSerialization(s Serialization) bool {
	return s == SerializationCompact || s == SerializationIndent4
}

// SerializeAppCompose writes an app-compose object in s (no trailing
// newline). Both formats sort keys and escape strings as CanonicalJSON does
// and refuse what it refuses.
//
// For indent4 the replacement of `": ` by `":` runs over the whole text, as
// JavaScript's String.prototype.replace does: it also shortens string values
// that contain a quote followed by ": " (written \": ), so those values come
// out changed. That is what the server's bytes hold, and what the CVM reads.
func SerializeAppCompose(doc map[string]any, s Serialization) ([]byte, error) {
	switch s {
	case SerializationCompact:
		return marshalJS(doc, false)
	case SerializationIndent4:
		out, err := marshalJS(doc, true)
		if err != nil {
			return nil, err
		}
		return bytes.ReplaceAll(out, []byte(`": `), []byte(`":`)), nil
	}
	return nil, fmt.Errorf("%w: unknown app-compose serialization %q", ErrInvalidInput, s)
}

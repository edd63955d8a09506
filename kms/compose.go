package kms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting CanonicalJSON follows, so that a value that
// contains itself (possible with Go maps) fails instead of overflowing the
// stack. encoding/json refuses deeper documents anyway.
const maxJSONDepth = 10000

// ParseJSON decodes one JSON document the way CanonicalJSON expects its input:
// objects as map[string]any, arrays as []any, numbers as json.Number (so no
// precision is lost before the JavaScript conversion), strings, booleans and
// nil. Like JSON.parse, a repeated object key keeps its last value.
//
// Two inputs that JSON.parse accepts are refused here because Go strings
// cannot carry them and a silent replacement would change the hash: invalid
// UTF-8 and \u escapes of lone UTF-16 surrogates.
func ParseJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not valid UTF-8 (first bad byte at offset %d)", ErrInvalidJSON, invalidUTF8Offset(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrInvalidJSON)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidJSON, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more data after the JSON value (offset %d)", ErrInvalidJSON, dec.InputOffset())
	}
	if off, ok := loneSurrogateEscape(data); ok {
		return nil, fmt.Errorf("%w: \\u escape of a lone UTF-16 surrogate at offset %d cannot be represented", ErrInvalidJSON, off)
	}
	return v, nil
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// loneSurrogateEscape finds a \uD800-\uDFFF escape that is not part of a
// high+low pair inside a string of the (already validated) JSON document.
func loneSurrogateEscape(data []byte) (int, bool) {
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			u, ok := hexEscape(data, i)
			if !ok {
				i++ // a one-character escape such as \" or \\
				continue
			}
			switch {
			case u >= 0xD800 && u <= 0xDBFF:
				if low, ok := hexEscape(data, i+6); ok && low >= 0xDC00 && low <= 0xDFFF {
					i += 11 // the pair
					continue
				}
				return i, true
			case u >= 0xDC00 && u <= 0xDFFF:
				return i, true
			}
			i += 5
		}
	}
	return 0, false
}

// hexEscape decodes a \uXXXX escape starting at data[i].
func hexEscape(data []byte, i int) (rune, bool) {
	if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}

// CanonicalJSON serialises v exactly as the official getComposeHash does:
// JSON.stringify of the value with every object's keys sorted, compact, with
// JavaScript string escaping and number formatting. v is what ParseJSON
// returns (map[string]any, []any, string, json.Number, bool, nil); float64
// and int values are accepted too.
//
// Object keys come out as a JavaScript object enumerates them: array-index
// keys ("0".."4294967294") first in numeric order, then the rest in UTF-16
// code-unit order. Two quirks of the SDK's sortObject are reproduced: a key
// "__proto__" is dropped (assigning it sets the prototype instead of adding a
// property), and an object with a "constructor" key is refused, because the
// SDK leaves such an object unsorted, in an insertion order a Go map does not
// keep.
func CanonicalJSON(v any) ([]byte, error) {
	return marshalJS(v, false)
}

// marshalJS is CanonicalJSON, or with indent JSON.stringify(sortObject(v),
// null, 4), under the same key order and the same refusals.
func marshalJS(v any, indent bool) ([]byte, error) {
	out, err := appendJSValue(nil, v, 0, indent)
	if err != nil {
		var ce *canonError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w at $%s", ce.err, ce.path)
		}
		return nil, err
	}
	return out, nil
}

// canonError carries the JSON path of a failure up the recursion; the path
// is built only when something fails, so encoding stays allocation-light.
type canonError struct {
	path string
	err  error
}

func (e *canonError) Error() string { return e.err.Error() }

func atPath(err error, segment string) error {
	if ce, ok := err.(*canonError); ok {
		ce.path = segment + ce.path
		return ce
	}
	return &canonError{path: segment, err: err}
}

// appendJSValue appends v as JSON.stringify(sortObject(v)) writes it: compact
// when indent is false, and with JSON.stringify(…, null, 4)'s layout when it
// is true (each member on its own line, indented four spaces per level, ": "
// after keys, empty arrays and objects as [] and {}). depth is the nesting
// level of v, which is also its indentation level.
func appendJSValue(dst []byte, v any, depth int, indent bool) ([]byte, error) {
	if depth > maxJSONDepth {
		return nil, &canonError{err: fmt.Errorf("%w: nested deeper than %d levels", ErrInvalidJSON, maxJSONDepth)}
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case string:
		if !utf8.ValidString(x) {
			return nil, &canonError{err: fmt.Errorf("%w: string is not valid UTF-8", ErrInvalidJSON)}
		}
		return appendJSString(dst, x), nil
	case json.Number:
		f, err := jsonNumberFloat(x)
		if err != nil {
			return nil, &canonError{err: err}
		}
		return appendJSNumber(dst, f), nil
	case float64:
		return appendJSNumber(dst, x), nil
	case int:
		return appendJSNumber(dst, float64(x)), nil
	case int64:
		return appendJSNumber(dst, float64(x)), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendNewline(dst, depth+1, indent)
			var err error
			if dst, err = appendJSValue(dst, e, depth+1, indent); err != nil {
				return nil, atPath(err, "["+strconv.Itoa(i)+"]")
			}
		}
		if len(x) > 0 {
			dst = appendNewline(dst, depth, indent)
		}
		return append(dst, ']'), nil
	case map[string]any:
		if _, ok := x["constructor"]; ok {
			return nil, &canonError{err: fmt.Errorf("%w: object has a \"constructor\" key; the official getComposeHash leaves such objects unsorted, in an order that cannot be reproduced", ErrInvalidJSON)}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			if !utf8.ValidString(k) {
				return nil, &canonError{err: fmt.Errorf("%w: object key is not valid UTF-8", ErrInvalidJSON)}
			}
			if k == "__proto__" {
				continue
			}
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareJSKeys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendNewline(dst, depth+1, indent)
			dst = appendJSString(dst, k)
			dst = append(dst, ':')
			if indent {
				dst = append(dst, ' ')
			}
			var err error
			if dst, err = appendJSValue(dst, x[k], depth+1, indent); err != nil {
				return nil, atPath(err, "."+k)
			}
		}
		if len(keys) > 0 {
			dst = appendNewline(dst, depth, indent)
		}
		return append(dst, '}'), nil
	default:
		return nil, &canonError{err: fmt.Errorf("%w: unsupported Go type %T", ErrInvalidJSON, v)}
	}
}

// appendNewline starts a line at the given indentation level (four spaces
// each) in the indented layout, and does nothing in the compact one.
func appendNewline(dst []byte, level int, indent bool) []byte {
	if !indent {
		return dst
	}
	dst = append(dst, '\n')
	for range level {
		dst = append(dst, "    "...)
	}
	return dst
}

// jsonNumberFloat converts a JSON number literal to the double JSON.parse
// yields: correctly rounded, ±Infinity when too large (JSON.stringify then
// prints null), and zero when too small.
func jsonNumberFloat(n json.Number) (float64, error) {
	s := string(n)
	if !isJSONNumber(s) {
		return 0, fmt.Errorf("%w: %q is not a JSON number", ErrInvalidJSON, s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%w: number %q: %w", ErrInvalidJSON, s, err)
	}
	return f, nil // on ErrRange, f is ±Inf or 0: what JavaScript gets too
}

// isJSONNumber checks the RFC 8259 number grammar, which is stricter than
// strconv.ParseFloat (no "Inf", hex, underscores, leading '+' or zeros).
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// NormalizeAppCompose applies getComposeHash's optional normalisation to a
// top-level app compose object and returns a shallow copy: docker_compose_file
// is dropped when runner is "bash", bash_script when runner is
// "docker-compose" (SDK 0.5.8 knows no other runner), and pre_launch_script
// when it is falsy in JavaScript terms (null, false, "", 0).
func NormalizeAppCompose(appCompose map[string]any) map[string]any {
	out := make(map[string]any, len(appCompose))
	for k, v := range appCompose {
		out[k] = v
	}
	switch out["runner"] {
	case "bash":
		delete(out, "docker_compose_file")
	case "docker-compose":
		delete(out, "bash_script")
	}
	if v, ok := out["pre_launch_script"]; ok && jsFalsy(v) {
		delete(out, "pre_launch_script")
	}
	return out
}

// jsFalsy reports whether a JSON value is falsy in JavaScript. Objects and
// arrays, even empty ones, are truthy.
func jsFalsy(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case json.Number:
		f, err := jsonNumberFloat(x)
		return err == nil && (f == 0 || math.IsNaN(f))
	case float64:
		return x == 0 || math.IsNaN(x)
	case int:
		return x == 0
	case int64:
		return x == 0
	}
	return false
}

// ComposeHash returns the compose hash of an app-compose.json document as the
// official getComposeHash(appCompose, normalize) computes it: lowercase hex
// of SHA-256 over the canonical JSON. The document must be a JSON object.
//
// This is for checking a compose the server returns against its
// compose_hash; the hash to whitelist on chain is always the server's.
func ComposeHash(appCompose []byte, normalize bool) (string, error) {
	v, err := ParseJSON(appCompose)
	if err != nil {
		return "", err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("%w: an app compose must be a JSON object", ErrInvalidJSON)
	}
	return ComposeHashValue(obj, normalize)
}

// ComposeHashValue is ComposeHash for an already decoded object (see
// ParseJSON for the value types).
func ComposeHashValue(appCompose map[string]any, normalize bool) (string, error) {
	if normalize {
		appCompose = NormalizeAppCompose(appCompose)
	}
	canon, err := CanonicalJSON(appCompose)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// ComposeHashMismatchError says that a compose document does not hash to the
// compose_hash it came with: under either normalisation setting
// (CheckComposeHash), or in any pinned serialization (VerifyAppCompose, which
// fills Tried).
type ComposeHashMismatchError struct {
	Want          string // the hash that came with the document, normalised to lowercase hex
	Got           string // getComposeHash(doc, false)
	GotNormalized string // getComposeHash(doc, true)
	// Tried lists the hash of each serialization VerifyAppCompose wrote the
	// document in, in the order tried.
	Tried []SerializedHash
}

// SerializedHash is the compose hash of a document written in one
// Serialization.
type SerializedHash struct {
	Serialization Serialization
	Hash          string
}

func (e *ComposeHashMismatchError) Error() string {
	if len(e.Tried) > 0 {
		parts := make([]string, len(e.Tried))
		for i, t := range e.Tried {
			parts[i] = t.Hash + " as " + string(t.Serialization)
		}
		return fmt.Sprintf("compose hash mismatch: expected %s, the document hashes to %s", e.Want, strings.Join(parts, ", "))
	}
	if e.Got == e.GotNormalized {
		return fmt.Sprintf("compose hash mismatch: expected %s, the document hashes to %s", e.Want, e.Got)
	}
	return fmt.Sprintf("compose hash mismatch: expected %s, the document hashes to %s (normalized: %s)", e.Want, e.Got, e.GotNormalized)
}

// CheckComposeHash recomputes the hash of appCompose and compares it with
// want (hex, optionally prefixed by "0x" or "sha256:"). Either normalisation
// setting may match, since servers and SDK versions differ in which they use.
// A mismatch returns *ComposeHashMismatchError; callers warn, and keep using
// the server's hash.
func CheckComposeHash(appCompose []byte, want string) error {
	w, err := parseComposeHash(want)
	if err != nil {
		return err
	}
	got, err := ComposeHash(appCompose, false)
	if err != nil {
		return err
	}
	if got == w {
		return nil
	}
	gotNorm, err := ComposeHash(appCompose, true)
	if err != nil {
		return err
	}
	if gotNorm == w {
		return nil
	}
	return &ComposeHashMismatchError{Want: w, Got: got, GotNormalized: gotNorm}
}

// parseComposeHash normalises a compose hash to lowercase hex: 32 bytes of
// hex, optionally prefixed by "0x" or "sha256:", in any letter case.
func parseComposeHash(want string) (string, error) {
	w := strings.ToLower(strings.TrimSpace(want))
	w = strings.TrimPrefix(strings.TrimPrefix(w, "sha256:"), "0x")
	if b, err := hex.DecodeString(w); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%w: compose hash %q is not 32 bytes of hex", ErrInvalidInput, want)
	}
	return w, nil
}

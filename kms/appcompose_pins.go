package kms

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/ethereum/go-ethereum/crypto"
)

// pinsJSON is the reviewed trust data. It is data rather than code so that a
// change of Phala's template is a reviewable one-entry change with its source.
//
//go:embed pins.json
var pinsJSON []byte

// Pins is the reviewed trust data: KMS contracts per chain and the rules for
// the app-compose documents cvmdeploy lets on chain. Every entry carries the
// source it was taken from. Treat a Pins as read-only; Merge returns a new one.
type Pins struct {
	About        string           `json:"about"`
	KMSContracts []KMSContractPin `json:"kms_contracts"`
	AppCompose   AppComposePins   `json:"app_compose"`
}

// KMSContractPin is the KMS contract cvmdeploy trusts on one chain.
type KMSContractPin struct {
	ChainID uint64 `json:"chain_id"`
	Chain   string `json:"chain"`
	Address string `json:"address"` // EIP-55 checksummed
	Source  string `json:"source"`
}

// AppComposePins says which app-compose documents the server may write.
type AppComposePins struct {
	// Serializations are the byte formats the server has been seen to use,
	// tried in this order.
	Serializations []SerializationPin `json:"serializations"`
	// Templates are the server's additions for Predict, one document each.
	Templates []ComposeTemplate `json:"templates"`
	// ServerFields are the fields (and their values) a document read back may
	// carry beyond the user's input. Entries for the same field add up.
	ServerFields []ServerFieldPin `json:"server_fields"`
	// OfficialPreLaunchScripts are Phala's default scripts, by SHA-256.
	OfficialPreLaunchScripts []PreLaunchScriptPin `json:"official_pre_launch_scripts"`
}

// SerializationPin names a Serialization the server has written.
type SerializationPin struct {
	Name   Serialization `json:"name"`
	Source string        `json:"source"`
}

// ComposeTemplate is one full server template: which user fields it writes
// and the fixed values of its own fields.
type ComposeTemplate struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	// UserFields are the user-decided keys the template writes (from the
	// expectation); pre_launch_script is written only when the user gave one.
	UserFields []string `json:"user_fields"`
	// ServerFields are the keys the server adds, with their values (the
	// ParseJSON types).
	ServerFields map[string]any `json:"server_fields"`
}

// ServerFieldPin allows a server field to hold one of Values, or a string
// matching Pattern (the whole string, RE2 syntax); exactly one is set.
type ServerFieldPin struct {
	Field   string `json:"field"`
	Values  []any  `json:"values,omitempty"`
	Pattern string `json:"pattern,omitempty"`
	Source  string `json:"source"`

	re *regexp.Regexp
}

// PreLaunchScriptPin is one official Phala pre-launch script in one of the
// byte forms the server has carried it in.
type PreLaunchScriptPin struct {
	Version string `json:"version"`
	Date    string `json:"date,omitempty"`
	// Form is how the bytes relate to the published prelaunch.sh: "file"
	// (identical), "continuations-joined" (every backslash-newline removed)
	// or "leading-newline" ("\n" + file, the 2025 server copy).
	Form   string `json:"form"`
	SHA256 string `json:"sha256"` // lowercase hex
	Source string `json:"source"`
}

var preLaunchForms = map[string]string{
	"file":                 "",
	"continuations-joined": ", line continuations joined",
	"leading-newline":      ", with a leading newline",
}

// userFields are the app-compose keys whose values the user decides; they
// are checked against the expectation, never against pins.
var userFields = []string{
	"allowed_envs", "docker_compose_file", "gateway_enabled", "name",
	"pre_launch_script", "public_logs", "public_sysinfo", "public_tcbinfo",
}

func isUserField(f string) bool { return slices.Contains(userFields, f) }

// DefaultPins returns the built-in pins, parsed from the embedded
// kms/pins.json. It panics only if that file is broken, which a test rules
// out; each call returns a fresh copy.
func DefaultPins() *Pins {
	p, err := ParsePins(pinsJSON)
	if err != nil {
		panic("kms: embedded pins.json is invalid: " + err.Error())
	}
	return p
}

// ParsePins reads a pins file strictly: unknown or repeated keys, entries
// without a source, malformed hashes, addresses that are not EIP-55
// checksummed and patterns that do not compile are all refused, because a
// reviewer must be able to trust that what they read is what is enforced.
func ParsePins(data []byte) (*Pins, error) {
	if _, err := ParseJSON(data); err != nil { // UTF-8, surrogates, one value
		return nil, fmt.Errorf("pins: %w", err)
	}
	if err := duplicateKey(data); err != nil {
		return nil, fmt.Errorf("pins: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var p Pins
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: pins: %w", ErrInvalidInput, err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("%w: pins: %w", ErrInvalidInput, err)
	}
	return &p, nil
}

// duplicateKey refuses an object with a repeated key anywhere: a reviewer
// would read the first, encoding/json would keep the last.
func duplicateKey(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		seen   map[string]bool
		object bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidJSON, err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if k, ok := tok.(string); ok {
				if top.seen[k] {
					return fmt.Errorf("%w: key %q appears twice in one object", ErrInvalidJSON, k)
				}
				top.seen[k] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{seen: map[string]bool{}, object: true, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true // a value ended; a key follows
		}
	}
}

func (p *Pins) validate() error {
	chains := map[uint64]bool{}
	for i, k := range p.KMSContracts {
		at := fmt.Sprintf("kms_contracts[%d]", i)
		if k.Source == "" {
			return fmt.Errorf("%s has no source", at)
		}
		if k.ChainID == 0 {
			return fmt.Errorf("%s has no chain_id", at)
		}
		if chains[k.ChainID] {
			return fmt.Errorf("%s: chain %d is pinned twice", at, k.ChainID)
		}
		chains[k.ChainID] = true
		if sum, err := checksumAddress(k.Address); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		} else if sum != k.Address {
			return fmt.Errorf("%s: address %s is not EIP-55 checksummed (%s)", at, k.Address, sum)
		}
	}
	ac := &p.AppCompose
	for i, s := range ac.Serializations {
		at := fmt.Sprintf("app_compose.serializations[%d]", i)
		if s.Source == "" {
			return fmt.Errorf("%s has no source", at)
		}
		if !knownSerialization(s.Name) {
			return fmt.Errorf("%s: unknown serialization %q (known: %s, %s)", at, s.Name, SerializationCompact, SerializationIndent4)
		}
		if slices.ContainsFunc(ac.Serializations[:i], func(o SerializationPin) bool { return o.Name == s.Name }) {
			return fmt.Errorf("%s: %s is listed twice", at, s.Name)
		}
	}
	for i, t := range ac.Templates {
		at := fmt.Sprintf("app_compose.templates[%d]", i)
		if t.Source == "" {
			return fmt.Errorf("%s has no source", at)
		}
		if t.Name == "" {
			return fmt.Errorf("%s has no name", at)
		}
		if slices.ContainsFunc(ac.Templates[:i], func(o ComposeTemplate) bool { return o.Name == t.Name }) {
			return fmt.Errorf("%s: template %q is listed twice", at, t.Name)
		}
		for j, f := range t.UserFields {
			if !isUserField(f) {
				return fmt.Errorf("%s.user_fields: %q is not a user field (%s)", at, f, strings.Join(userFields, ", "))
			}
			if slices.Contains(t.UserFields[:j], f) {
				return fmt.Errorf("%s.user_fields: %q is listed twice", at, f)
			}
		}
		for f := range t.ServerFields {
			if isUserField(f) {
				return fmt.Errorf("%s.server_fields: %q is a user field; its value comes from the user", at, f)
			}
		}
	}
	for i := range ac.ServerFields {
		f := &ac.ServerFields[i]
		at := fmt.Sprintf("app_compose.server_fields[%d]", i)
		if f.Source == "" {
			return fmt.Errorf("%s has no source", at)
		}
		if f.Field == "" {
			return fmt.Errorf("%s has no field", at)
		}
		if isUserField(f.Field) {
			return fmt.Errorf("%s: %q is a user field; it is checked against the user's input, not pinned", at, f.Field)
		}
		if (len(f.Values) > 0) == (f.Pattern != "") {
			return fmt.Errorf("%s (%s) needs exactly one of a non-empty \"values\" and a \"pattern\"", at, f.Field)
		}
		if f.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + f.Pattern + `)$`)
			if err != nil {
				return fmt.Errorf("%s (%s): pattern: %w", at, f.Field, err)
			}
			f.re = re
		}
	}
	for i, s := range ac.OfficialPreLaunchScripts {
		at := fmt.Sprintf("app_compose.official_pre_launch_scripts[%d]", i)
		if s.Source == "" {
			return fmt.Errorf("%s has no source", at)
		}
		if s.Version == "" {
			return fmt.Errorf("%s has no version", at)
		}
		if _, ok := preLaunchForms[s.Form]; !ok {
			return fmt.Errorf("%s: unknown form %q (file, continuations-joined, leading-newline)", at, s.Form)
		}
		if !isLowerHex(s.SHA256, sha256.Size) {
			return fmt.Errorf("%s: sha256 %q is not 64 lowercase hex digits", at, s.SHA256)
		}
		if slices.ContainsFunc(ac.OfficialPreLaunchScripts[:i], func(o PreLaunchScriptPin) bool { return o.SHA256 == s.SHA256 }) {
			return fmt.Errorf("%s: sha256 %s is listed twice", at, s.SHA256)
		}
	}
	return nil
}

func isLowerHex(s string, size int) bool {
	if len(s) != 2*size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// checksumAddress returns the EIP-55 form of a 0x-prefixed 20-byte address
// given in any letter case.
func checksumAddress(addr string) (string, error) {
	lower := strings.ToLower(strings.TrimPrefix(addr, "0x"))
	if !strings.HasPrefix(addr, "0x") || !isLowerHex(lower, 20) {
		return "", fmt.Errorf("address %q is not 0x and 40 hex digits", addr)
	}
	h := crypto.Keccak256([]byte(lower))
	out := []byte("0x" + lower)
	for i := 0; i < 40; i++ {
		nibble := h[i/2] >> 4
		if i%2 == 1 {
			nibble = h[i/2] & 0xf
		}
		if c := out[2+i]; c >= 'a' && nibble >= 8 {
			out[2+i] = c - 'a' + 'A'
		}
	}
	return string(out), nil
}

// Merge returns the pins of p plus those of extra (a user's or a test's
// file): official scripts, server-field values and serializations are added;
// a KMS contract for a chain p already pins, or a template of the same name,
// is replaced by extra's, since the user named it explicitly. Neither input
// is changed.
func (p *Pins) Merge(extra *Pins) *Pins {
	out := &Pins{About: p.About}
	out.KMSContracts = slices.Clone(p.KMSContracts)
	ac := &out.AppCompose
	ac.Serializations = slices.Clone(p.AppCompose.Serializations)
	ac.Templates = slices.Clone(p.AppCompose.Templates)
	ac.ServerFields = slices.Clone(p.AppCompose.ServerFields)
	ac.OfficialPreLaunchScripts = slices.Clone(p.AppCompose.OfficialPreLaunchScripts)
	if extra == nil {
		return out
	}
	for _, k := range extra.KMSContracts {
		if i := slices.IndexFunc(out.KMSContracts, func(o KMSContractPin) bool { return o.ChainID == k.ChainID }); i >= 0 {
			out.KMSContracts[i] = k
		} else {
			out.KMSContracts = append(out.KMSContracts, k)
		}
	}
	x := &extra.AppCompose
	for _, s := range x.Serializations {
		if !slices.ContainsFunc(ac.Serializations, func(o SerializationPin) bool { return o.Name == s.Name }) {
			ac.Serializations = append(ac.Serializations, s)
		}
	}
	for _, t := range x.Templates {
		if i := slices.IndexFunc(ac.Templates, func(o ComposeTemplate) bool { return o.Name == t.Name }); i >= 0 {
			ac.Templates[i] = t
		} else {
			ac.Templates = append(ac.Templates, t)
		}
	}
	ac.ServerFields = append(ac.ServerFields, x.ServerFields...)
	for _, s := range x.OfficialPreLaunchScripts {
		if !slices.ContainsFunc(ac.OfficialPreLaunchScripts, func(o PreLaunchScriptPin) bool { return o.SHA256 == s.SHA256 }) {
			ac.OfficialPreLaunchScripts = append(ac.OfficialPreLaunchScripts, s)
		}
	}
	return out
}

// KMSContract returns the pinned KMS contract on chainID (EIP-55
// checksummed) and where the pin comes from.
func (p *Pins) KMSContract(chainID uint64) (address string, source string, ok bool) {
	for _, k := range p.KMSContracts {
		if k.ChainID == chainID {
			return k.Address, k.Source, true
		}
	}
	return "", "", false
}

// OfficialPreLaunch reports whether script is an official Phala pre-launch
// script, byte for byte by SHA-256, and names it, e.g.
// "Phala pre-launch v0.0.14 (sha256 22ee71…)".
func (p *Pins) OfficialPreLaunch(script string) (label string, ok bool) {
	sum := sha256.Sum256([]byte(script))
	h := hex.EncodeToString(sum[:])
	for _, s := range p.AppCompose.OfficialPreLaunchScripts {
		if s.SHA256 == h {
			return fmt.Sprintf("Phala pre-launch v%s%s (sha256 %s…)", s.Version, preLaunchForms[s.Form], h[:6]), true
		}
	}
	return "", false
}

// serverFieldPins returns the entries for field, in file order.
func (p *Pins) serverFieldPins(field string) []ServerFieldPin {
	var out []ServerFieldPin
	for _, f := range p.AppCompose.ServerFields {
		if f.Field == field {
			out = append(out, f)
		}
	}
	return out
}

// allows reports whether v is one of the entry's values (compared as
// CanonicalJSON, so 2 and 2.0 are the same number, as in JavaScript) or a
// string matching its pattern.
func (f ServerFieldPin) allows(v any) bool {
	if f.Pattern != "" {
		s, ok := v.(string)
		if !ok {
			return false
		}
		re := f.re
		if re == nil { // a Pins built by hand rather than parsed
			var err error
			if re, err = regexp.Compile(`^(?:` + f.Pattern + `)$`); err != nil {
				return false
			}
		}
		return re.MatchString(s)
	}
	for _, want := range f.Values {
		if jsonEqual(v, want) {
			return true
		}
	}
	return false
}

// anyAllows reports whether one of the entries for a field allows v.
func anyAllows(pins []ServerFieldPin, v any) bool {
	return slices.ContainsFunc(pins, func(f ServerFieldPin) bool { return f.allows(v) })
}

// jsonEqual compares two decoded JSON values as their canonical forms.
func jsonEqual(a, b any) bool {
	ca, errA := CanonicalJSON(a)
	cb, errB := CanonicalJSON(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

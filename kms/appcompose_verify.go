package kms

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrComposeRule is wrapped by *ComposeRuleError.
var ErrComposeRule = errors.New("app-compose breaks the rule")

// ComposeRuleError says that an app-compose document breaks the rule: some
// field is neither the user's input nor a pinned server addition, or a
// pre_launch_script is neither the user's nor official. Violations lists
// every problem found, each in words a user can act on.
type ComposeRuleError struct {
	Hash       string
	Violations []string
}

func (e *ComposeRuleError) Error() string {
	return fmt.Sprintf("the cloud's app-compose (hash %s) breaks the rule: %s", e.Hash, strings.Join(e.Violations, "; "))
}

func (e *ComposeRuleError) Unwrap() error { return ErrComposeRule }

// ComposeVerdict says how a document read from the server was established.
type ComposeVerdict struct {
	Hash          string // lowercase hex, == want
	Serialization Serialization
	Doc           map[string]any // decoded from Raw (ParseJSON types)
	Raw           []byte         // the re-serialized bytes whose sha256 is Hash
	PreLaunch     string         // "none", "yours", or the official label
}

// VerifyAppCompose checks an app-compose document the server returned (JSON
// bytes: GET /cvms/{id}/compose_file, or the raw tcb_info.app_compose)
// against the compose hash want and the rule.
//
// The document is decoded and written again in each pinned serialization;
// one must hash to want, or the result is *ComposeHashMismatchError. The
// fields are then read back from those bytes, since they are what the CVM
// will get (the indent4 format can change string values, and a repeated key
// collapses). Every field must be the user's input as exp says, or a pinned
// server field with a pinned value; an absent field counts as dstack's
// default. Any other outcome is a *ComposeRuleError listing every violation.
// A malformed want wraps ErrInvalidInput.
func (p *Pins) VerifyAppCompose(doc []byte, want string, exp ComposeExpectation) (*ComposeVerdict, error) {
	w, err := parseComposeHash(want)
	if err != nil {
		return nil, err
	}
	v, err := ParseJSON(doc)
	if err != nil {
		return nil, &ComposeRuleError{Hash: w, Violations: []string{"the document is not valid JSON: " + err.Error()}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &ComposeRuleError{Hash: w, Violations: []string{"the document is " + jsonKind(v) + ", not a JSON object"}}
	}
	var tried []SerializedHash
	var serr error
	for _, s := range p.AppCompose.Serializations {
		raw, err := SerializeAppCompose(obj, s.Name)
		if err != nil {
			serr = err
			continue
		}
		sum := sha256.Sum256(raw)
		h := hex.EncodeToString(sum[:])
		tried = append(tried, SerializedHash{Serialization: s.Name, Hash: h})
		if h != w {
			continue
		}
		back, err := ParseJSON(raw)
		if err != nil { // our own output; cannot happen
			return nil, fmt.Errorf("re-reading the %s form: %w", s.Name, err)
		}
		measured := back.(map[string]any)
		violations, preLaunch := p.checkAppCompose(measured, exp)
		if len(violations) > 0 {
			return nil, &ComposeRuleError{Hash: w, Violations: violations}
		}
		return &ComposeVerdict{Hash: w, Serialization: s.Name, Doc: measured, Raw: raw, PreLaunch: preLaunch}, nil
	}
	switch {
	case len(tried) > 0:
		got, _ := ComposeHashValue(obj, false)
		gotNorm, _ := ComposeHashValue(obj, true)
		return nil, &ComposeHashMismatchError{Want: w, Got: got, GotNormalized: gotNorm, Tried: tried}
	case serr != nil:
		return nil, &ComposeRuleError{Hash: w, Violations: []string{"the document cannot be written in any pinned serialization: " + serr.Error()}}
	}
	return nil, &ComposeRuleError{Hash: w, Violations: []string{"no serialization is pinned, so no document can be established"}}
}

// dstackDefaults are the values dstack's AppCompose takes for absent keys
// (reference A2 schema table; dstack-types AppCompose). gateway_enabled is
// derived instead (see checkGateway).
var dstackDefaults = map[string]any{
	"allowed_envs":               []any{},
	"features":                   []any{},
	"kms_enabled":                false,
	"local_key_provider_enabled": false,
	"no_instance_id":             false,
	"public_logs":                false,
	"public_sysinfo":             false,
	"public_tcbinfo":             true,
	"secure_time":                true,
	"storage_fs":                 "zfs", // absent (null) means zfs
	"tproxy_enabled":             false,
}

// dstackRequired are the keys without which dstack refuses the document.
var dstackRequired = []string{"manifest_version", "name", "runner"}

// ruleCheck collects violations, at most one per field, so that one wrong
// value is reported once, by the check that explains it best (the first).
type ruleCheck struct {
	p          *Pins
	doc        map[string]any
	exp        ComposeExpectation
	violations []string
	flagged    map[string]bool
}

func (c *ruleCheck) fail(field, format string, args ...any) {
	if c.flagged[field] {
		return
	}
	c.flagged[field] = true
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
}

// checkAppCompose applies the rule to a decoded document and returns the
// violations and how the pre_launch_script was established.
func (p *Pins) checkAppCompose(doc map[string]any, exp ComposeExpectation) ([]string, string) {
	c := &ruleCheck{p: p, doc: doc, exp: exp, flagged: map[string]bool{}}
	c.checkCompose()
	preLaunch := c.checkPreLaunch()
	c.checkName()
	c.checkAllowedEnvs()
	c.checkBool("public_logs", exp.PublicLogs)
	c.checkBool("public_sysinfo", exp.PublicSysinfo)
	c.checkBool("public_tcbinfo", exp.PublicTcbinfo)
	c.checkGateway()
	c.checkKeyProvider()
	c.checkServerFields()
	return c.violations, preLaunch
}

func (c *ruleCheck) checkCompose() {
	const f = "docker_compose_file"
	v, ok := c.doc[f]
	if !ok {
		c.fail(f, "docker_compose_file is absent, so the CVM would not run your compose file")
		return
	}
	s, ok := v.(string)
	if !ok {
		c.fail(f, "docker_compose_file is %s, not a string", render(v))
		return
	}
	if s != c.exp.DockerCompose {
		c.fail(f, "docker_compose_file differs from your compose file (first difference at %s)", firstLineDiff(s, c.exp.DockerCompose))
	}
}

func (c *ruleCheck) checkPreLaunch() string {
	const f = "pre_launch_script"
	v, present := c.doc[f]
	if !present {
		if c.exp.PreLaunchScript != nil {
			c.fail(f, "pre_launch_script is absent, but you sent one")
		}
		return "none"
	}
	s, ok := v.(string)
	if !ok {
		c.fail(f, "pre_launch_script is %s, not a string", render(v))
		return ""
	}
	label, official := c.p.OfficialPreLaunch(s)
	if c.exp.PreLaunchScript != nil {
		if s != *c.exp.PreLaunchScript {
			c.fail(f, "pre_launch_script differs from yours (first difference at %s)", firstLineDiff(s, *c.exp.PreLaunchScript))
			return ""
		}
		if official {
			return label
		}
		return "yours"
	}
	if !official {
		sum := sha256.Sum256([]byte(s))
		c.fail(f, "pre_launch_script is present but you sent none, and its sha256 %x is not an official Phala script", sum)
		return ""
	}
	return label
}

func (c *ruleCheck) checkName() {
	names := c.exp.Names
	if len(names) == 0 {
		names = []string{""} // what cvmdeploy sends as compose_file.name
	}
	v, ok := c.doc["name"]
	if !ok {
		c.fail("name", "name is absent; dstack requires it")
		return
	}
	if s, isString := v.(string); isString && slices.Contains(names, s) {
		return
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	c.fail("name", "name is %s, expected %s", render(v), strings.Join(quoted, " or "))
}

func (c *ruleCheck) checkAllowedEnvs() {
	const f = "allowed_envs"
	want := make([]any, len(c.exp.AllowedEnvs))
	for i, e := range c.exp.AllowedEnvs {
		want[i] = e
	}
	v, ok := c.doc[f]
	if !ok {
		if len(want) > 0 {
			c.fail(f, "allowed_envs is absent (dstack's default [] lets no env into the containers), you sent %s", render(want))
		}
		return
	}
	if !jsonEqual(v, want) {
		c.fail(f, "allowed_envs is %s, you sent %s", render(v), render(want))
	}
}

// boolField reads a boolean field, with dstack's default when absent. A
// present non-boolean is a violation (dstack would refuse to parse it), and
// ok is false.
func (c *ruleCheck) boolField(f string) (val, present, ok bool) {
	v, present := c.doc[f]
	if !present {
		def, _ := dstackDefaults[f].(bool)
		return def, false, true
	}
	b, isBool := v.(bool)
	if !isBool {
		c.fail(f, "%s is %s, not a boolean", f, render(v))
		return false, true, false
	}
	return b, true, true
}

func (c *ruleCheck) checkBool(f string, want bool) {
	got, present, ok := c.boolField(f)
	switch {
	case !ok || got == want:
	case present:
		c.fail(f, "%s is %v, you asked for %v", f, got, want)
	default:
		c.fail(f, "%s is absent, so dstack's default %v applies; you asked for %v", f, got, want)
	}
}

// checkGateway applies dstack's gateway rule: the gateway is on when
// gateway_enabled or tproxy_enabled is true or features has "tproxy-net".
func (c *ruleCheck) checkGateway() {
	const f = "gateway_enabled"
	want := c.exp.GatewayEnabled
	gw, gwPresent, ok := c.boolField(f)
	if !ok {
		return
	}
	if gwPresent && gw != want {
		c.fail(f, "gateway_enabled is %v, you asked for %v", gw, want)
		return
	}
	var on []string
	if gw {
		on = append(on, "gateway_enabled is true")
	}
	if c.doc["tproxy_enabled"] == true {
		on = append(on, "tproxy_enabled is true")
	}
	if features, _ := c.doc["features"].([]any); slices.Contains(features, any("tproxy-net")) {
		on = append(on, `features include "tproxy-net"`)
	}
	switch {
	case len(on) > 0 && !want:
		c.fail(f, "the gateway is on (%s), but you turned it off", strings.Join(on, ", "))
	case len(on) == 0 && want:
		c.fail(f, "the gateway is off (no gateway_enabled or tproxy_enabled true, no \"tproxy-net\" feature), but you asked for it")
	}
}

// checkKeyProvider applies dstack's key-provider rule: key_provider when
// present, else kms when kms_enabled, else local when
// local_key_provider_enabled, else none. The local provider is never
// acceptable: its keys come from the host, not from the KMS the app's
// contract governs.
func (c *ruleCheck) checkKeyProvider() {
	local, _, localOK := c.boolField("local_key_provider_enabled")
	if localOK && local {
		c.fail("local_key_provider_enabled", "local_key_provider_enabled is true, so the app's keys could come from the host's local key provider instead of the KMS")
	}
	kmsOn, kmsPresent, kmsOK := c.boolField("kms_enabled")
	if !kmsOK {
		return
	}
	field, provider := "kms_enabled", "none"
	switch {
	case c.doc["key_provider"] != nil:
		field = "key_provider"
		s, ok := c.doc["key_provider"].(string)
		if !ok || !slices.Contains([]string{"none", "kms", "local", "tpm"}, s) {
			c.fail(field, "key_provider is %s, not a key provider dstack knows", render(c.doc["key_provider"]))
			return
		}
		provider = s
	case kmsOn:
		provider = "kms"
	case local:
		provider = "local"
	}
	if (provider == "kms") == c.exp.KMSEnabled {
		return
	}
	what := fmt.Sprintf("key_provider is %q", provider)
	if field == "kms_enabled" {
		what = fmt.Sprintf("kms_enabled is %v", kmsOn)
		if !kmsPresent {
			what = "kms_enabled is absent (dstack's default false)"
		}
	}
	if c.exp.KMSEnabled {
		c.fail(field, "%s, so the app's keys would not come from the KMS (key provider %s)", what, provider)
	} else {
		c.fail(field, "%s, so the app's keys would come from a KMS, which you did not ask for", what)
	}
}

// checkServerFields checks every key that is not the user's against the
// pins, then the pinned keys that are absent against dstack's defaults.
func (c *ruleCheck) checkServerFields() {
	keys := make([]string, 0, len(c.doc))
	for k := range c.doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if isUserField(k) || c.flagged[k] {
			continue
		}
		pins := c.p.serverFieldPins(k)
		if len(pins) == 0 {
			c.fail(k, "field %q is neither your input nor a pinned server field", k)
			continue
		}
		if !anyAllows(pins, c.doc[k]) {
			c.fail(k, "%s is %s, which is not a pinned value (pinned: %s)", k, render(c.doc[k]), describePins(pins))
		}
	}
	for _, k := range dstackRequired {
		if _, ok := c.doc[k]; !ok {
			c.fail(k, "%s is absent; dstack requires it", k)
		}
	}
	var pinned []string
	for _, f := range c.p.AppCompose.ServerFields {
		if !slices.Contains(pinned, f.Field) {
			pinned = append(pinned, f.Field)
		}
	}
	slices.Sort(pinned)
	for _, k := range pinned {
		if _, present := c.doc[k]; present {
			continue
		}
		def, hasDefault := dstackDefaults[k]
		if !hasDefault { // not a dstack field: its absence changes nothing
			continue
		}
		if pins := c.p.serverFieldPins(k); !anyAllows(pins, def) {
			c.fail(k, "%s is absent, so dstack's default %s applies, which is not a pinned value (pinned: %s)", k, render(def), describePins(pins))
		}
	}
}

// describePins lists what the entries allow, for a message.
func describePins(pins []ServerFieldPin) string {
	var parts []string
	for _, f := range pins {
		if f.Pattern != "" {
			parts = append(parts, "a string matching "+f.Pattern)
			continue
		}
		for _, v := range f.Values {
			parts = append(parts, render(v))
		}
	}
	return strings.Join(parts, ", ")
}

// render shows a decoded JSON value as JSON, shortened for a message.
func render(v any) string {
	b, err := CanonicalJSON(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return shorten(string(b), 120)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "a number"
}

// firstLineDiff locates the first line where got (the cloud's) and want (the
// user's) differ, as `line N: cloud "…", yours "…"`; the texts must differ.
func firstLineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	return fmt.Sprintf("line %d: cloud %s, yours %s", i+1, lineAt(g, i), lineAt(w, i))
}

func lineAt(lines []string, i int) string {
	if i >= len(lines) {
		return "(end of text)"
	}
	return fmt.Sprintf("%q", shorten(lines[i], 100))
}

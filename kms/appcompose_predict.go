package kms

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ComposeExpectation is what the user asked for: every app-compose field the
// user decides. Everything else in a document must be a pinned server field.
type ComposeExpectation struct {
	DockerCompose string
	// PreLaunchScript is the user's script; nil means the user sent none, and
	// then the document has none or an official one (known by hash).
	PreLaunchScript *string
	// AllowedEnvs are the env keys exactly as sent (order matters for the
	// hash); nil and empty both mean none.
	AllowedEnvs []string
	// Names are the acceptable "name" values. cvmdeploy sends
	// compose_file.name "", and nil means just that.
	Names                                    []string
	PublicLogs, PublicSysinfo, PublicTcbinfo bool
	GatewayEnabled                           bool // true unless the user turned the gateway off
	KMSEnabled                               bool // true for any KMS-backed app (on-chain KMS)
}

// ComposeCandidate is one document cvmdeploy predicts the server may write.
type ComposeCandidate struct {
	Serialization Serialization
	Template      string // the pinned template it follows, e.g. "phala-2026"
	Doc           []byte
	Hash          string // lowercase hex sha256 of Doc
}

// ErrNoPrediction says that no pinned template and serialization yields a
// document that meets the expectation and keeps the rule (for example, the
// gateway turned off while every pinned template turns it on).
var ErrNoPrediction = errors.New("no pinned server template yields the app-compose you asked for")

// Predict builds the documents fully determined by exp and the pinned server
// additions: each pinned template, for each acceptable name, in each pinned
// serialization. Each candidate is checked against the rule as a document
// read back would be, and one that fails is left out (for instance indent4
// when the global `": ` replacement would change the user's compose file); if
// none is left the error wraps ErrNoPrediction and says why each failed.
//
// When exp.PreLaunchScript is nil the candidates have no pre_launch_script
// key: the server's default is known only by its hash, so it cannot be
// predicted, and a document that carries it is established by
// VerifyAppCompose instead.
func (p *Pins) Predict(exp ComposeExpectation) ([]ComposeCandidate, error) {
	names := exp.Names
	if len(names) == 0 {
		names = []string{""}
	}
	var cands []ComposeCandidate
	var dropped []string
	seen := map[string]bool{}
	for _, t := range p.AppCompose.Templates {
		for _, name := range names {
			doc := t.build(exp, name)
			for _, s := range p.AppCompose.Serializations {
				raw, err := SerializeAppCompose(doc, s.Name)
				if err != nil {
					dropped = append(dropped, fmt.Sprintf("%s as %s: %v", t.Name, s.Name, err))
					continue
				}
				back, err := ParseJSON(raw)
				if err != nil { // our own output; cannot happen
					return nil, fmt.Errorf("re-reading the %s form: %w", s.Name, err)
				}
				if violations, _ := p.checkAppCompose(back.(map[string]any), exp); len(violations) > 0 {
					dropped = append(dropped, fmt.Sprintf("%s as %s: %s", t.Name, s.Name, strings.Join(violations, "; ")))
					continue
				}
				sum := sha256.Sum256(raw)
				h := hex.EncodeToString(sum[:])
				if seen[h] {
					continue
				}
				seen[h] = true
				cands = append(cands, ComposeCandidate{Serialization: s.Name, Template: t.Name, Doc: raw, Hash: h})
			}
		}
	}
	if len(cands) == 0 {
		if len(dropped) == 0 {
			return nil, fmt.Errorf("%w: no template or no serialization is pinned", ErrNoPrediction)
		}
		return nil, fmt.Errorf("%w: %s", ErrNoPrediction, strings.Join(dropped, " | "))
	}
	return cands, nil
}

// build writes the template's document for exp with the given name.
func (t ComposeTemplate) build(exp ComposeExpectation, name string) map[string]any {
	doc := make(map[string]any, len(t.ServerFields)+len(t.UserFields))
	for k, v := range t.ServerFields {
		doc[k] = deepCopyJSON(v)
	}
	for _, f := range t.UserFields {
		switch f {
		case "allowed_envs":
			envs := make([]any, len(exp.AllowedEnvs))
			for i, e := range exp.AllowedEnvs {
				envs[i] = e
			}
			doc[f] = envs
		case "docker_compose_file":
			doc[f] = exp.DockerCompose
		case "gateway_enabled":
			doc[f] = exp.GatewayEnabled
		case "name":
			doc[f] = name
		case "pre_launch_script":
			if exp.PreLaunchScript != nil {
				doc[f] = *exp.PreLaunchScript
			}
		case "public_logs":
			doc[f] = exp.PublicLogs
		case "public_sysinfo":
			doc[f] = exp.PublicSysinfo
		case "public_tcbinfo":
			doc[f] = exp.PublicTcbinfo
		}
	}
	return doc
}

// MatchPrediction returns the candidate whose Hash equals want (hex, with an
// optional 0x or sha256: prefix, any case), or nil.
func MatchPrediction(cands []ComposeCandidate, want string) *ComposeCandidate {
	w, err := parseComposeHash(want)
	if err != nil {
		return nil
	}
	for i := range cands {
		if cands[i].Hash == w {
			return &cands[i]
		}
	}
	return nil
}

// deepCopyJSON copies a decoded JSON value, so that documents built from
// pins or from an approved base never share arrays or objects with them.
func deepCopyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopyJSON(e)
		}
		return out
	}
	return v
}

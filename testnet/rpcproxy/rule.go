package rpcproxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidRule is wrapped by every error about a malformed rule or rule string.
var ErrInvalidRule = errors.New("rpcproxy: invalid rule")

// Rule says which faults to inject into HTTP requests carrying a matching JSON-RPC method.
//
// The four probabilities are mutually exclusive outcomes of a single draw, so their
// sum must not exceed 1; whatever is left is the probability that the request is
// forwarded normally. Delay (plus a uniform random part up to DelayJitter) is
// applied to every matching request before the fault, if any, takes effect.
type Rule struct {
	// Method is "*" (every request), an exact JSON-RPC method name, or a prefix
	// ending in "*" such as "eth_get*".
	Method string

	// Drop is the probability of closing the connection without any response
	// (the client sees EOF).
	Drop float64
	// Reset is the probability of aborting the connection with a TCP RST
	// (the client sees "connection reset by peer").
	Reset float64
	// TooMany is the probability of answering 429 Too Many Requests with Retry-After: 0.
	TooMany float64
	// ServerError is the probability of answering ServerErrorStatus.
	ServerError float64
	// ServerErrorStatus is the HTTP status used for ServerError: 500-599, 0 means 503.
	ServerErrorStatus int

	// Delay is added before forwarding every matching request.
	Delay time.Duration
	// DelayJitter adds a uniformly drawn extra delay in [0, DelayJitter).
	DelayJitter time.Duration

	// DropAfterForward makes drops happen after the request has been forwarded and
	// the upstream has answered: the upstream acted on it (a transaction was really
	// sent) but the client never hears back.
	DropAfterForward bool
}

// status returns the HTTP status used for ServerError faults.
func (r Rule) status() int {
	if r.ServerErrorStatus == 0 {
		return 503
	}
	return r.ServerErrorStatus
}

// Check reports whether the rule is well formed.
func (r Rule) Check() error {
	if r.Method == "" {
		return fmt.Errorf("%w: empty method", ErrInvalidRule)
	}
	if i := strings.IndexByte(r.Method, '*'); i >= 0 && i != len(r.Method)-1 {
		return fmt.Errorf("%w: method %q: '*' is only allowed at the end", ErrInvalidRule, r.Method)
	}
	if strings.ContainsAny(r.Method, ":;,= \t\n") {
		return fmt.Errorf("%w: method %q contains a separator or space", ErrInvalidRule, r.Method)
	}
	sum := 0.0
	for _, p := range []struct {
		name string
		v    float64
	}{{"drop", r.Drop}, {"reset", r.Reset}, {"429", r.TooMany}, {"5xx", r.ServerError}} {
		// The negated comparison also rejects NaN.
		if !(p.v >= 0 && p.v <= 1) {
			return fmt.Errorf("%w: %s: %s=%v is not a probability in [0,1]", ErrInvalidRule, r.Method, p.name, p.v)
		}
		sum += p.v
	}
	// Allow for rounding of values such as 0.1+0.2+0.3+0.4.
	if sum > 1+1e-9 {
		return fmt.Errorf("%w: %s: fault probabilities add up to %v, more than 1", ErrInvalidRule, r.Method, sum)
	}
	if r.ServerErrorStatus != 0 && (r.ServerErrorStatus < 500 || r.ServerErrorStatus > 599) {
		return fmt.Errorf("%w: %s: server error status %d is not 5xx", ErrInvalidRule, r.Method, r.ServerErrorStatus)
	}
	if r.Delay < 0 || r.DelayJitter < 0 {
		return fmt.Errorf("%w: %s: negative delay", ErrInvalidRule, r.Method)
	}
	if r.DropAfterForward && r.Drop == 0 {
		// Almost certainly a typo in a test: the flag changes nothing without drops.
		return fmt.Errorf("%w: %s: after-forward without drop", ErrInvalidRule, r.Method)
	}
	return nil
}

// Matches reports whether the rule's Method pattern matches the JSON-RPC method name.
func (r Rule) Matches(method string) bool {
	if prefix, ok := strings.CutSuffix(r.Method, "*"); ok {
		return strings.HasPrefix(method, prefix)
	}
	return r.Method == method
}

// String formats the rule in the syntax accepted by ParseRules.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Method)
	sep := byte(':')
	add := func(s string) {
		b.WriteByte(sep)
		sep = ','
		b.WriteString(s)
	}
	prob := func(name string, v float64) {
		if v != 0 {
			add(name + "=" + strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	prob("drop", r.Drop)
	if r.DropAfterForward {
		add("after-forward")
	}
	prob("reset", r.Reset)
	prob("429", r.TooMany)
	if r.ServerError != 0 {
		name := "5xx"
		if r.ServerErrorStatus != 0 {
			name = strconv.Itoa(r.ServerErrorStatus)
		}
		prob(name, r.ServerError)
	}
	if r.Delay != 0 {
		add("delay=" + r.Delay.String())
	}
	if r.DelayJitter != 0 {
		add("jitter=" + r.DelayJitter.String())
	}
	if sep == ':' {
		// A rule without settings still matches (and is counted as matching): keep it parseable.
		b.WriteByte(':')
	}
	return b.String()
}

// FormatRules formats rules in the syntax accepted by ParseRules.
func FormatRules(rules []Rule) string {
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, ";")
}

// ParseRules parses the rule syntax used by the rpcproxy command:
//
//	rules   = [ rule *( ";" rule ) ]
//	rule    = method ":" [ setting *( "," setting ) ]
//	method  = "*" | name | prefix "*"
//	setting = "drop=" P | "reset=" P | "429=" P | "5xx=" P | "5NN=" P
//	        | "delay=" DURATION | "jitter=" DURATION | "after-forward"
//
// P is a probability, either a number in [0,1] or a percentage such as "5%".
// "5xx" answers 503; "500".."599" choose the status. DURATION uses Go syntax ("50ms").
// "after-forward" sets DropAfterForward. Spaces around tokens are ignored, and an
// empty string means no rules. Example:
//
//	eth_sendRawTransaction:drop=0.1,after-forward,delay=50ms;*:429=0.05,503=0.05,reset=0.05
func ParseRules(s string) ([]Rule, error) {
	var rules []Rule
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		r, err := parseRule(part)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(s string) (Rule, error) {
	method, settings, ok := strings.Cut(s, ":")
	if !ok {
		return Rule{}, fmt.Errorf("%w: %q: want method:setting,...", ErrInvalidRule, s)
	}
	r := Rule{Method: strings.TrimSpace(method)}
	seen := map[string]bool{}
	for _, set := range strings.Split(settings, ",") {
		set = strings.TrimSpace(set)
		if set == "" {
			continue
		}
		key, val, hasVal := strings.Cut(set, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		canon := key
		if isStatus5xx(key) {
			canon = "5xx"
		}
		if seen[canon] {
			return Rule{}, fmt.Errorf("%w: %q: %s given twice", ErrInvalidRule, s, key)
		}
		seen[canon] = true
		if key == "after-forward" {
			if hasVal {
				return Rule{}, fmt.Errorf("%w: %q: after-forward takes no value", ErrInvalidRule, s)
			}
			r.DropAfterForward = true
			continue
		}
		if !hasVal {
			return Rule{}, fmt.Errorf("%w: %q: %s needs =value", ErrInvalidRule, s, key)
		}
		var err error
		switch {
		case key == "drop":
			r.Drop, err = parseProb(val)
		case key == "reset":
			r.Reset, err = parseProb(val)
		case key == "429":
			r.TooMany, err = parseProb(val)
		case key == "5xx":
			r.ServerError, err = parseProb(val)
		case isStatus5xx(key):
			r.ServerError, err = parseProb(val)
			r.ServerErrorStatus, _ = strconv.Atoi(key)
		case key == "delay":
			r.Delay, err = time.ParseDuration(val)
		case key == "jitter":
			r.DelayJitter, err = time.ParseDuration(val)
		default:
			return Rule{}, fmt.Errorf("%w: %q: unknown setting %q", ErrInvalidRule, s, key)
		}
		if err != nil {
			return Rule{}, fmt.Errorf("%w: %q: %s: %w", ErrInvalidRule, s, key, err)
		}
	}
	if err := r.Check(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func isStatus5xx(key string) bool {
	n, err := strconv.Atoi(key)
	return err == nil && len(key) == 3 && n >= 500 && n <= 599
}

func parseProb(s string) (float64, error) {
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		return v / 100, err
	}
	return strconv.ParseFloat(s, 64)
}

package rpcproxy

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParseRules(t *testing.T) {
	tests := []struct {
		in   string
		want []Rule
	}{
		{"", nil},
		{"  ;  ", nil},
		{"eth_sendRawTransaction:drop=0.1,delay=50ms;*:429=0.05,500=0.05,reset=0.05", []Rule{
			{Method: "eth_sendRawTransaction", Drop: 0.1, Delay: 50 * time.Millisecond},
			{Method: "*", TooMany: 0.05, ServerError: 0.05, ServerErrorStatus: 500, Reset: 0.05},
		}},
		{"eth_sendRawTransaction: drop = 10% , after-forward", []Rule{
			{Method: "eth_sendRawTransaction", Drop: 0.1, DropAfterForward: true},
		}},
		{"eth_get*:5xx=0.2,jitter=1s", []Rule{{Method: "eth_get*", ServerError: 0.2, DelayJitter: time.Second}}},
		{"*:503=1", []Rule{{Method: "*", ServerError: 1, ServerErrorStatus: 503}}},
		{"eth_chainId:", []Rule{{Method: "eth_chainId"}}},
		{"*:drop=0.25,reset=0.25,429=0.25,502=0.25", []Rule{
			{Method: "*", Drop: 0.25, Reset: 0.25, TooMany: 0.25, ServerError: 0.25, ServerErrorStatus: 502},
		}},
	}
	for _, tc := range tests {
		got, err := ParseRules(tc.in)
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseRules(%q) =\n %+v\nwant\n %+v", tc.in, got, tc.want)
		}
		// String/FormatRules produce the same syntax back.
		again, err := ParseRules(FormatRules(got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("round trip of %q via %q = %+v, %v", tc.in, FormatRules(got), again, err)
		}
	}
}

func TestParseRulesRejects(t *testing.T) {
	for _, in := range []string{
		"eth_chainId",                  // no colon
		":drop=0.1",                    // empty method
		"eth_*Id:drop=0.1",             // star not at the end
		"*:drop=1.5",                   // not a probability
		"*:drop=-0.1",                  // negative
		"*:drop=NaN",                   // not a number
		"*:drop=abc",                   // not a number
		"*:drop=0.6,reset=0.6",         // sum above 1
		"*:drop",                       // missing value
		"*:after-forward",              // flag without drop
		"*:drop=0.1,after-forward=yes", // flag with a value
		"*:drop=0.1,drop=0.2",          // repeated
		"*:500=0.1,503=0.1",            // two 5xx statuses
		"*:5xx=0.1,502=0.1",            // two 5xx settings
		"*:404=0.1",                    // not a 5xx
		"*:600=0.1",                    // not a 5xx
		"*:delay=fast",                 // bad duration
		"*:delay=-1s",                  // negative duration
		"*:slow=1",                     // unknown setting
	} {
		if _, err := ParseRules(in); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("ParseRules(%q) = %v, want ErrInvalidRule", in, err)
		}
	}
}

func TestRuleCheckAllowsRoundingInSum(t *testing.T) {
	r := Rule{Method: "*", Drop: 0.1, Reset: 0.2, TooMany: 0.3, ServerError: 0.4}
	if err := r.Check(); err != nil {
		t.Errorf("probabilities summing to 1 (with float rounding) rejected: %v", err)
	}
}

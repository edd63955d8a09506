package kms

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestAppendJSNumber(t *testing.T) {
	point1, point2 := 0.1, 0.2 // variables: constants would add exactly
	// Expected strings follow ECMAScript Number::toString (checked in node).
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-1, "-1"},
		{0.5, "0.5"},
		{123.456, "123.456"},
		{1e20, "100000000000000000000"},
		{1e21, "1e+21"},
		{1.5e21, "1.5e+21"},
		{123456789012345680000, "123456789012345680000"},
		{1e-6, "0.000001"},
		{1.5e-6, "0.0000015"},
		{1e-7, "1e-7"},
		{1.23e-18, "1.23e-18"},
		{1.5e300, "1.5e+300"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{9007199254740993, "9007199254740992"},
		{point1 + point2, "0.30000000000000004"},
		{-2.5e-8, "-2.5e-8"},
		{math.Inf(1), "null"},
		{math.Inf(-1), "null"},
		{math.NaN(), "null"},
	}
	for _, tt := range tests {
		if got := string(appendJSNumber(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSNumber(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAppendJSString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`quote " backslash \ slash /`, `"quote \" backslash \\ slash /"`},
		{"\b\t\n\f\r", `"\b\t\n\f\r"`},
		{"\x00\x01\x0b\x1f", `"\u0000\u0001\u000b\u001f"`},
		{"\x7f <>& \u2028\u2029 é 😀", "\"\x7f <>& \u2028\u2029 é 😀\""},
	}
	for _, tt := range tests {
		if got := string(appendJSString(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestArrayIndex(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0", 0, true},
		{"9", 9, true},
		{"10", 10, true},
		{"4294967294", 4294967294, true},
		{"4294967295", 0, false},
		{"9999999999", 0, false},
		{"01", 0, false},
		{"-1", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{" 1", 0, false},
		{"", 0, false},
		{"٣", 0, false},
	}
	for _, tt := range tests {
		got, ok := arrayIndex(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("arrayIndex(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCompareJSKeys(t *testing.T) {
	// Each key sorts strictly before the next: array indexes numerically,
	// then UTF-16 code-unit order, where a string sorts after its prefixes.
	ordered := []string{"0", "2", "10", "4294967294", "", "01", "4294967295", "A", "B", "_", "a", "ab", "é", "😀", "😀\x00", "😁", "\ue000", "！", "\uffff"}
	for i := 0; i+1 < len(ordered); i++ {
		a, b := ordered[i], ordered[i+1]
		if compareJSKeys(a, b) >= 0 || compareJSKeys(b, a) <= 0 {
			t.Errorf("%q should sort before %q", a, b)
		}
	}
	if compareJSKeys("x", "x") != 0 || compareJSKeys("7", "7") != 0 {
		t.Error("equal keys do not compare equal")
	}
	// Go's byte order disagrees on this pair, JavaScript's is the one wanted.
	if !(compareUTF16("😀", "！") < 0 && strings.Compare("😀", "！") > 0) {
		t.Error("astral vs U+FF01 not in UTF-16 order")
	}
}

func TestCanonicalJSONQuirks(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"__proto__ dropped", `{"b":1,"__proto__":{"x":1},"a":[{"__proto__":null,"c":2}]}`, `{"a":[{"c":2}],"b":1}`},
		{"arrays keep order", `[3,1,{"b":1,"a":2},[]]`, `[3,1,{"a":2,"b":1},[]]`},
		{"index keys first", `{"b":1,"10":2,"9":3,"01":4,"4294967295":5}`, `{"9":3,"10":2,"01":4,"4294967295":5,"b":1}`},
		{"numbers as JavaScript reads them", `[1.0,1e2,-0,0.0000001,1E21,12345678901234567890,1e400,-1e400,1e-400]`, `[1,100,0,1e-7,1e+21,12345678901234567000,null,null,0]`},
		{"duplicate keys keep the last", `{"a":1,"a":2}`, `{"a":2}`},
		{"scalars", `"x\u2028<"`, "\"x\u2028<\""},
		{"surrogate pair escape", `"\ud83d\ude00"`, `"😀"`},
		{"escaped backslash before u", `"\\ud800"`, `"\\ud800"`},
		{"whitespace dropped", " {\n\t\"a\" : [ 1 , 2 ] }\r\n", `{"a":[1,2]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseJSON([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseJSON: %v", err)
			}
			got, err := CanonicalJSON(v)
			if err != nil {
				t.Fatalf("CanonicalJSON: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseJSONBadInput(t *testing.T) {
	for _, tt := range []struct{ name, in string }{
		{"empty", ""},
		{"only space", "  \n"},
		{"syntax", `{"a":}`},
		{"trailing comma", `{"a":1,}`},
		{"two values", `{} {}`},
		{"trailing garbage", `{"a":1}x`},
		{"single quotes", `{'a':1}`},
		{"NaN", `[NaN]`},
		{"BOM", "\ufeff{}"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}"},
		{"lone high surrogate", `{"a":"\ud800"}`},
		{"lone low surrogate", `["x\udc00"]`},
		{"high surrogate then letter", `["\ud83dx"]`},
		{"two high surrogates", `["\ud83d\ud83d"]`},
		{"lone surrogate in a key", `{"\udfff":1}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := ParseJSON([]byte(tt.in)); !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("got %v, %v; want ErrInvalidJSON", v, err)
			}
		})
	}
}

func TestCanonicalJSONBadValues(t *testing.T) {
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	for _, tt := range []struct {
		name string
		v    any
		path string
	}{
		{"constructor key", map[string]any{"a": map[string]any{"constructor": 1, "b": 2}}, "$.a"},
		{"bad json.Number", []any{json.Number("0x10")}, "$[0]"},
		{"Inf literal", []any{json.Number("Infinity")}, "$[0]"},
		{"unsupported type", map[string]any{"a": []string{"x"}}, "$.a"},
		{"invalid UTF-8 string", map[string]any{"k": []any{"\xff"}}, "$.k[0]"},
		{"invalid UTF-8 key", map[string]any{"\xff": 1}, "$"},
		{"cycle", cyclic, "$.self.self"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := CanonicalJSON(tt.v)
			if out != nil || !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("got %s, %v; want ErrInvalidJSON", out, err)
			}
			if !strings.Contains(err.Error(), "at "+tt.path) {
				t.Errorf("message %q does not name %s", err, tt.path)
			}
		})
	}
}

func TestCanonicalJSONGoNumbers(t *testing.T) {
	got, err := CanonicalJSON(map[string]any{"f": 1e21, "i": 42, "j": int64(-7), "n": json.Number("1.50")})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"f":1e+21,"i":42,"j":-7,"n":1.5}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestComposeHashBadInput(t *testing.T) {
	for _, in := range []string{`[]`, `"x"`, `null`, `1`, `{`, ``} {
		if h, err := ComposeHash([]byte(in), false); h != "" || !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("ComposeHash(%q) = %q, %v; want ErrInvalidJSON", in, h, err)
		}
	}
}

func TestNormalizeAppComposeKeepsInput(t *testing.T) {
	in := map[string]any{"runner": "bash", "docker_compose_file": "x", "bash_script": "y", "pre_launch_script": ""}
	out := NormalizeAppCompose(in)
	if len(in) != 4 {
		t.Errorf("input changed: %v", in)
	}
	if _, ok := out["docker_compose_file"]; ok {
		t.Error("docker_compose_file kept for runner bash")
	}
	if _, ok := out["pre_launch_script"]; ok {
		t.Error("empty pre_launch_script kept")
	}
	if out["bash_script"] != "y" {
		t.Error("bash_script dropped for runner bash")
	}
}

func TestNormalizeFalsyPreLaunchScript(t *testing.T) {
	for _, tt := range []struct {
		value   string
		dropped bool
	}{
		{`""`, true}, {`null`, true}, {`false`, true}, {`0`, true}, {`-0`, true}, {`0.0`, true}, {`1e-400`, true},
		{`"x"`, false}, {`"0"`, false}, {`true`, false}, {`1`, false}, {`[]`, false}, {`{}`, false},
	} {
		v, err := ParseJSON([]byte(`{"runner":"docker-compose","pre_launch_script":` + tt.value + `}`))
		if err != nil {
			t.Fatal(err)
		}
		_, kept := NormalizeAppCompose(v.(map[string]any))["pre_launch_script"]
		if kept == tt.dropped {
			t.Errorf("pre_launch_script %s: kept=%v, want dropped=%v", tt.value, kept, tt.dropped)
		}
	}
}

func TestCheckComposeHash(t *testing.T) {
	doc := []byte(`{"runner":"bash","bash_script":"x","docker_compose_file":"y"}`)
	plain, err := ComposeHash(doc, false)
	if err != nil {
		t.Fatal(err)
	}
	norm, err := ComposeHash(doc, true)
	if err != nil {
		t.Fatal(err)
	}
	if plain == norm {
		t.Fatal("fixture should hash differently when normalised")
	}
	for _, want := range []string{plain, norm, "0x" + plain, "sha256:" + norm, strings.ToUpper(plain), " " + plain + "\n"} {
		if err := CheckComposeHash(doc, want); err != nil {
			t.Errorf("CheckComposeHash(%q): %v", want, err)
		}
	}
	other := strings.Repeat("ab", 32)
	err = CheckComposeHash(doc, other)
	var me *ComposeHashMismatchError
	if !errors.As(err, &me) || me.Want != other || me.Got != plain || me.GotNormalized != norm {
		t.Fatalf("got %v, want a *ComposeHashMismatchError", err)
	}
	if !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), plain) {
		t.Errorf("message %q lacks the hashes", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("zz", 32), strings.Repeat("ab", 31)} {
		if err := CheckComposeHash(doc, bad); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("CheckComposeHash(%q): got %v, want ErrInvalidInput", bad, err)
		}
	}
}

package kms

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// secret is planted in values so tests can check it never reaches an error.
const secret = "s3cr3t-VALUE-do-not-print"

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseDotenvSyntax(t *testing.T) {
	src := strings.Join([]string{
		"# a comment",
		"",
		"PLAIN=hello world",
		"export EXPORTED=yes",
		"SINGLE='a $HOME \\n b'",
		`DOUBLE="line1\nline2"`,
		"YAML_STYLE: colon",
		`MULTI="first`,
		`second"`,
		"EMPTY=",
		"INLINE=value # trailing comment",
		"EQUALS=a=b=c",
		"REF=pre-${PLAIN}",
		"DOLLAR=pa$$word",
		"\tINDENTED = spaced  ",
		"CRLF=x\r",
		"",
	}, "\n")
	got, err := ParseDotenv("app.env", []byte(src))
	if err != nil {
		t.Fatalf("ParseDotenv: %v", err)
	}
	want := []struct {
		key, value   string
		line         int
		interpolated bool
	}{
		{"PLAIN", "hello world", 3, false},
		{"EXPORTED", "yes", 4, false},
		{"SINGLE", `a $HOME \n b`, 5, false},
		{"DOUBLE", "line1\nline2", 6, false},
		{"YAML_STYLE", "colon", 7, false},
		{"MULTI", "first\nsecond", 8, false},
		{"EMPTY", "", 10, false},
		{"INLINE", "value", 11, false},
		{"EQUALS", "a=b=c", 12, false},
		{"REF", "pre-hello world", 13, true},
		{"DOLLAR", "pa$$word", 14, false},
		{"INDENTED", "spaced", 15, false},
		{"CRLF", "x", 16, false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Key != w.key || g.Value != w.value || g.Source.Line != w.line || g.Source.File != "app.env" || g.Interpolated != w.interpolated {
			t.Errorf("entry %d = {%q %q line %d interpolated %v}, want {%q %q line %d interpolated %v}",
				i, g.Key, g.Value, g.Source.Line, g.Interpolated, w.key, w.value, w.line, w.interpolated)
		}
	}
}

func TestParseDotenvCRLFLines(t *testing.T) {
	got, err := ParseDotenv("w.env", []byte("A=1\r\n\r\nB=2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Source.Line != 1 || got[1].Source.Line != 3 || got[1].Value != "2" {
		t.Fatalf("got %+v", got)
	}
}

func TestParseDotenvBadInput(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		line    int
		wantErr error
	}{
		{"no equals", "GOOD=1\n" + secret + "\n", 2, ErrMalformedLine},
		{"no equals at end of file", "GOOD=1\nNOEQUALS", 2, ErrMalformedLine},
		{"dash in key", "GOOD=1\n\nBAD-KEY=" + secret + "\n", 3, ErrMalformedLine},
		{"unterminated double quote", "A=1\nB=\"" + secret + "\nC=3\n", 2, ErrMalformedLine},
		{"unterminated single quote", "A='" + secret, 1, ErrMalformedLine},
		{"export alone", "A=1\nexport   ", 2, ErrMalformedLine},
		{"duplicate key", "A=1\nB=" + secret + "\n# x\nA=" + secret + "\n", 4, ErrDuplicateKey},
		{"duplicate via export", "export A=1\nA=2\n", 2, ErrDuplicateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDotenv("x.env", []byte(tt.src))
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			var ee *EnvError
			if !errors.As(err, &ee) || ee.Source.File != "x.env" || ee.Source.Line != tt.line {
				t.Fatalf("got %#v, want an *EnvError at x.env:%d", err, tt.line)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("x.env:%d", tt.line)) {
				t.Errorf("message %q does not name x.env:%d", err, tt.line)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:6]) {
				t.Errorf("message leaks the value: %q", err)
			}
		})
	}
}

func TestParseDotenvDuplicateNamesBothLines(t *testing.T) {
	_, err := ParseDotenv("x.env", []byte("A=1\nB=2\nA=3\n"))
	if err == nil || !strings.Contains(err.Error(), "x.env:3") || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("got %v", err)
	}
}

func TestCheckEnvLimits(t *testing.T) {
	big := func(n int) string { return strings.Repeat("x", n) }
	many := func(n, valueLen int) []EnvVar {
		out := make([]EnvVar, n)
		for i := range out {
			out[i] = EnvVar{Key: fmt.Sprintf("K%04d", i), Value: big(valueLen)}
		}
		return out
	}
	tests := []struct {
		name    string
		envs    []EnvVar
		wantErr error // nil: accepted
		index   int   // 1-based position named in the error
	}{
		{"empty list", nil, nil, 0},
		{"ordinary", []EnvVar{{"A", "1"}, {"_b9", ""}, {"lower_Case", secret}}, nil, 0},
		{"key at limit", []EnvVar{{"K" + big(MaxEnvKeyBytes-1), "v"}}, nil, 0},
		{"value at limit", []EnvVar{{"V", big(MaxEnvValueBytes)}}, nil, 0},
		{"1024 variables", many(MaxEnvVars, 0), nil, 0},
		{"leading digit", []EnvVar{{"OK", "1"}, {"1ABC", secret}}, ErrInvalidKey, 2},
		{"dash", []EnvVar{{"A-B", secret}}, ErrInvalidKey, 1},
		{"space", []EnvVar{{"A B", secret}}, ErrInvalidKey, 1},
		{"empty key", []EnvVar{{"", secret}}, ErrInvalidKey, 1},
		{"non-ASCII key", []EnvVar{{"ÄB", secret}}, ErrInvalidKey, 1},
		{"key too long", []EnvVar{{"K" + big(MaxEnvKeyBytes), secret}}, ErrKeyTooLong, 1},
		{"value too large", []EnvVar{{"A", "1"}, {"BIG", secret + big(MaxEnvValueBytes)}}, ErrValueTooLarge, 2},
		{"too many variables", many(MaxEnvVars+1, 0), ErrTooManyVars, MaxEnvVars + 1},
		{"total too large", many(9, 120<<10), ErrEnvTooLarge, 9},
		{"value not UTF-8", []EnvVar{{"A", secret + "\xff"}}, ErrInvalidUTF8, 1},
		{"key not UTF-8", []EnvVar{{"A\xc3", secret}}, ErrInvalidUTF8, 1},
		{"duplicate", []EnvVar{{"A", "1"}, {"B", "2"}, {"A", secret}}, ErrDuplicateKey, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckEnv(tt.envs)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckEnv: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			var ee *EnvError
			if !errors.As(err, &ee) || ee.Source.Index != tt.index {
				t.Fatalf("got %v, want an *EnvError for variable #%d", err, tt.index)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("variable #%d", tt.index)) {
				t.Errorf("message %q does not name variable #%d", err, tt.index)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:6]) {
				t.Errorf("message leaks the value: %q", err)
			}
		})
	}
}

func TestCheckEnvTotalBoundary(t *testing.T) {
	// Values of up to 128 KiB filling exactly 1 MiB with their keys, then
	// one byte more.
	build := func(extra int) []EnvVar {
		var envs []EnvVar
		total := 0
		for i := 0; total < MaxEnvTotalBytes; i++ {
			k := fmt.Sprintf("K%d", i)
			n := min(MaxEnvValueBytes, MaxEnvTotalBytes-total-len(k))
			envs = append(envs, EnvVar{k, strings.Repeat("v", n)})
			total += len(k) + n
		}
		envs[len(envs)-1].Value += strings.Repeat("v", extra)
		return envs
	}
	if err := CheckEnv(build(0)); err != nil {
		t.Errorf("exactly 1 MiB refused: %v", err)
	}
	if err := CheckEnv(build(1)); !errors.Is(err, ErrEnvTooLarge) {
		t.Errorf("1 MiB + 1 byte: got %v, want ErrEnvTooLarge", err)
	}
}

func TestCheckEnvReportsEveryProblemCapped(t *testing.T) {
	var envs []EnvVar
	for i := 0; i < 30; i++ {
		envs = append(envs, EnvVar{fmt.Sprintf("%d-bad", i), secret})
	}
	err := CheckEnv(envs)
	msg := err.Error()
	if n := strings.Count(msg, "invalid key"); n != maxEnvErrors {
		t.Errorf("%d problems reported, want %d", n, maxEnvErrors)
	}
	if !strings.Contains(msg, "and 10 more problems") {
		t.Errorf("no summary of the rest: %q", msg)
	}
}

func TestLoadEnvMergeOrder(t *testing.T) {
	base := writeFile(t, "base.env", "A=base-a\nB=base-b\nC=base-c\n")
	prod := writeFile(t, "prod.env", "D=prod-d\nB=prod-b\n")
	entries, err := LoadEnvEntries([]string{base, prod}, []string{"E=flag-e", "A=flag-a"})
	if err != nil {
		t.Fatalf("LoadEnvEntries: %v", err)
	}
	want := []EnvVar{{"A", "flag-a"}, {"B", "prod-b"}, {"C", "base-c"}, {"D", "prod-d"}, {"E", "flag-e"}}
	if got := Vars(entries); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Each variable's source is the one that set its final value.
	wantSrc := []string{"--env #2", prod + ":2", base + ":3", prod + ":1", "--env #1"}
	for i, e := range entries {
		if e.Source.String() != wantSrc[i] {
			t.Errorf("%s from %s, want %s", e.Key, e.Source, wantSrc[i])
		}
	}
	plain, err := LoadEnv([]string{base, prod}, []string{"E=flag-e", "A=flag-a"})
	if err != nil || !reflect.DeepEqual(plain, want) {
		t.Errorf("LoadEnv = %v, %v", plain, err)
	}
	if got := Keys(plain); !reflect.DeepEqual(got, []string{"A", "B", "C", "D", "E"}) {
		t.Errorf("Keys = %v", got)
	}
}

// TestEnvFlagFromEnvironment: a bare --env KEY takes the value of KEY from
// the process environment (a CI secret stays out of argv), in flag order,
// and an empty but set variable is an empty value, not an error.
func TestEnvFlagFromEnvironment(t *testing.T) {
	t.Setenv("CVMDEPLOY_TEST_TOKEN", "from-the-environment")
	t.Setenv("CVMDEPLOY_TEST_EMPTY", "")
	file := writeFile(t, "base.env", "CVMDEPLOY_TEST_TOKEN=from-the-file\nA=1\n")
	entries, err := LoadEnvEntries([]string{file}, []string{"B=2", "CVMDEPLOY_TEST_TOKEN", "CVMDEPLOY_TEST_EMPTY"})
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{{"CVMDEPLOY_TEST_TOKEN", "from-the-environment"}, {"A", "1"}, {"B", "2"}, {"CVMDEPLOY_TEST_EMPTY", ""}}
	if got := Vars(entries); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if src := entries[0].Source.String(); src != "--env #2" {
		t.Errorf("source %s, want --env #2 (the flag overrides the file)", src)
	}
}

func TestLoadEnvBadInput(t *testing.T) {
	good := writeFile(t, "good.env", "A=1\n")
	badKey := writeFile(t, "badkey.env", "A=1\n\nmy.key="+secret+"\n")
	nonUTF8 := writeFile(t, "latin1.env", "A=1\nB=caf\xe9 "+secret+"\n")
	huge := writeFile(t, "huge.env", "A="+strings.Repeat("x", MaxEnvValueBytes+1)+"\n")
	tests := []struct {
		name    string
		files   []string
		flags   []string
		wantErr error
		where   string
	}{
		{"invalid key in file", []string{good, badKey}, nil, ErrInvalidKey, badKey + ":3"},
		{"non-UTF-8 value in file", []string{nonUTF8}, nil, ErrInvalidUTF8, nonUTF8 + ":2"},
		{"oversize value in file", []string{huge}, nil, ErrValueTooLarge, huge + ":1"},
		{"flag without equals", []string{good}, []string{"B=2", secret}, ErrMalformedLine, "--env #2"},
		{"invalid key in flag", nil, []string{"B=2", "1X=" + secret}, ErrInvalidKey, "--env #2"},
		{"duplicate flag", nil, []string{"B=2", "C=3", "B=" + secret}, ErrDuplicateKey, "--env #3"},
		{"bare key not in the environment", nil, []string{"B=2", "ghp_" + secret[:6]}, ErrUnsetVar, "--env #2: the variable it names is not set"},
		{"bare key set twice", nil, []string{"CVMDEPLOY_TEST_FROM_ENV", "CVMDEPLOY_TEST_FROM_ENV=" + secret}, ErrDuplicateKey, "--env #2"},
		{"missing file", []string{filepath.Join(t.TempDir(), "nope.env")}, nil, ErrInvalidInput, "nope.env"},
	}
	t.Setenv("CVMDEPLOY_TEST_FROM_ENV", secret)
	os.Unsetenv("ghp_" + secret[:6])
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs, err := LoadEnv(tt.files, tt.flags)
			if envs != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, %v; want %v", envs, err, tt.wantErr)
			}
			var ee *EnvError
			if !errors.As(err, &ee) {
				t.Fatalf("got %T, want *EnvError", err)
			}
			if !strings.Contains(err.Error(), tt.where) {
				t.Errorf("message %q does not name %s", err, tt.where)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:6]) {
				t.Errorf("message leaks the value: %q", err)
			}
		})
	}
}

func TestEnvSourceString(t *testing.T) {
	for _, tt := range []struct {
		s    EnvSource
		want string
	}{
		{EnvSource{File: "a.env", Line: 3}, "a.env:3"},
		{EnvSource{File: "a.env"}, "a.env"},
		{EnvSource{Flag: 2}, "--env #2"},
		{EnvSource{Index: 5}, "env variable #5"},
		{EnvSource{}, "env"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestDisplayKeyQuotesAndShortens(t *testing.T) {
	if got := displayKey("GOOD_KEY"); got != "GOOD_KEY" {
		t.Errorf("valid key shown as %q", got)
	}
	if got := displayKey("a b"); got != `"a b"` {
		t.Errorf("invalid key shown as %s", got)
	}
	long := strings.Repeat("é", 100)
	got := displayKey(long)
	if !strings.HasSuffix(got, "…") || len(got) > 80 {
		t.Errorf("long key shown as %s", got)
	}
}

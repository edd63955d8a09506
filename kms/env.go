package kms

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// The limits the dstack guest applies when it decrypts an env; anything
// beyond them would be sent, paid for and then fail at boot, so they are
// checked before encryption.
const (
	MaxEnvKeyBytes   = 255       // bytes in one key
	MaxEnvValueBytes = 128 << 10 // bytes in one value
	MaxEnvVars       = 1024      // variables in one env
	// MaxEnvTotalBytes bounds the sum of len(key)+len(value) over all
	// variables.
	MaxEnvTotalBytes = 1 << 20

	// maxEnvFileBytes refuses to read a file that cannot hold a valid env
	// even with generous quoting and comments (a mistyped path to a log, say).
	maxEnvFileBytes = 8 << 20
	// maxEnvErrors caps how many problems one error reports.
	maxEnvErrors = 20
)

// EnvVar is one environment variable for the app, as the SDK and the guest
// see it.
type EnvVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// EnvSource says where a variable came from, for error messages.
type EnvSource struct {
	File  string // the .env file, if it came from one
	Line  int    // 1-based line in File where its statement starts
	Flag  int    // 1-based position among the --env KEY=VALUE flags, if it came from one
	Index int    // 1-based position in the list given to CheckEnv, otherwise
}

func (s EnvSource) String() string {
	switch {
	case s.File != "" && s.Line > 0:
		return fmt.Sprintf("%s:%d", s.File, s.Line)
	case s.File != "":
		return s.File
	case s.Flag > 0:
		return fmt.Sprintf("--env #%d", s.Flag)
	case s.Index > 0:
		return fmt.Sprintf("env variable #%d", s.Index)
	}
	return "env"
}

// EnvEntry is a variable with its origin.
type EnvEntry struct {
	EnvVar
	Source EnvSource
	// Interpolated is set when godotenv rewrote the value: it contained
	// $NAME, ${NAME} or "$(" outside single quotes. Callers should warn, as a
	// '$' in a password is more often literal than a reference.
	Interpolated bool
}

// EnvError is a problem with one variable or .env line. Its message names
// the source and the key, never the value.
type EnvError struct {
	Source EnvSource
	Key    string // the variable's key, when known
	Reason string // what is wrong, in words
	Err    error  // ErrMalformedLine, ErrDuplicateKey, ErrInvalidKey, …
}

func (e *EnvError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source.String())
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(displayKey(e.Key))
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

func (e *EnvError) Unwrap() error { return e.Err }

// displayKey shows a key in an error: as is when it is a valid name, quoted
// (so odd characters are visible) otherwise, and cut short when long.
func displayKey(k string) string {
	const max = 64
	cut := ""
	if len(k) > max {
		n := max
		for n > 0 && !utf8.RuneStart(k[n]) {
			n--
		}
		k, cut = k[:n], "…"
	}
	if validKeyName(k) {
		return k + cut
	}
	return fmt.Sprintf("%q%s", k, cut)
}

// validKeyName matches ^[A-Za-z_][A-Za-z0-9_]*$, the guest's key pattern.
func validKeyName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// CheckEnv enforces the dstack limits on envs: every key matches
// ^[A-Za-z_][A-Za-z0-9_]*$ and has at most 255 bytes, every value at most
// 128 KiB, at most 1024 variables and 1 MiB of keys and values in all,
// everything valid UTF-8, and no key twice. Problems name the variable by
// its position; LoadEnv reports file lines and flags instead. The error
// joins up to 20 *EnvError.
func CheckEnv(envs []EnvVar) error {
	entries := make([]EnvEntry, len(envs))
	for i, e := range envs {
		entries[i] = EnvEntry{EnvVar: e, Source: EnvSource{Index: i + 1}}
	}
	return checkEntries(entries)
}

func checkEntries(entries []EnvEntry) error {
	var errs []error
	add := func(e *EnvError) { errs = append(errs, e) }
	if len(entries) > MaxEnvVars {
		add(&EnvError{
			Source: entries[MaxEnvVars].Source,
			Key:    entries[MaxEnvVars].Key,
			Reason: fmt.Sprintf("too many variables: %d, the limit is %d", len(entries), MaxEnvVars),
			Err:    ErrTooManyVars,
		})
	}
	seen := make(map[string]EnvSource, len(entries))
	total := 0
	for _, e := range entries {
		switch {
		case !utf8.ValidString(e.Key):
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: "key is not valid UTF-8", Err: ErrInvalidUTF8})
		case len(e.Key) > MaxEnvKeyBytes:
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: fmt.Sprintf("key is %d bytes, the limit is %d", len(e.Key), MaxEnvKeyBytes), Err: ErrKeyTooLong})
		case !validKeyName(e.Key):
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: "invalid key: it must match ^[A-Za-z_][A-Za-z0-9_]*$", Err: ErrInvalidKey})
		}
		if first, dup := seen[e.Key]; dup {
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: "set again (first set at " + first.String() + ")", Err: ErrDuplicateKey})
		} else {
			seen[e.Key] = e.Source
		}
		if !utf8.ValidString(e.Value) {
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: fmt.Sprintf("value is not valid UTF-8 (bad byte at offset %d)", invalidUTF8Offset([]byte(e.Value))), Err: ErrInvalidUTF8})
		}
		if len(e.Value) > MaxEnvValueBytes {
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: fmt.Sprintf("value is %d bytes, the limit is %d (128 KiB)", len(e.Value), MaxEnvValueBytes), Err: ErrValueTooLarge})
		}
		before := total
		total += len(e.Key) + len(e.Value)
		if before <= MaxEnvTotalBytes && total > MaxEnvTotalBytes {
			add(&EnvError{Source: e.Source, Key: e.Key, Reason: fmt.Sprintf("keys and values pass the %d-byte (1 MiB) total here", MaxEnvTotalBytes), Err: ErrEnvTooLarge})
		}
	}
	switch {
	case len(errs) == 0:
		return nil
	case len(errs) == 1:
		return errs[0]
	case len(errs) > maxEnvErrors:
		more := len(errs) - maxEnvErrors
		errs = append(errs[:maxEnvErrors], fmt.Errorf("and %d more problems", more))
	}
	return errors.Join(errs...)
}

// ParseEnvFlags turns --env arguments into entries. KEY=VALUE splits at the
// first '='; a bare KEY takes its value from the process environment, as
// docker run -e does, so a CI secret never has to appear in argv. A key given
// twice, a bare KEY that is unset, or an argument that is neither form is an
// error.
func ParseEnvFlags(kvs []string) ([]EnvEntry, error) {
	entries := make([]EnvEntry, 0, len(kvs))
	seen := make(map[string]int, len(kvs))
	for i, kv := range kvs {
		src := EnvSource{Flag: i + 1}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			if !validKeyName(kv) {
				// Neither form: it may well be a pasted secret, so it is
				// not repeated.
				return nil, &EnvError{Source: src, Reason: "expected KEY=VALUE, or a bare KEY to take the value from the environment", Err: ErrMalformedLine}
			}
			if v, ok = os.LookupEnv(kv); !ok {
				// A token like ghp_… is a valid name too: the argument is
				// not repeated in case it was a pasted value.
				return nil, &EnvError{Source: src, Reason: "the variable it names is not set in the environment (a bare --env NAME takes its value from there)", Err: ErrUnsetVar}
			}
			k = kv
		}
		if first, dup := seen[k]; dup {
			return nil, &EnvError{Source: src, Key: k, Reason: fmt.Sprintf("set again (first set by --env #%d)", first), Err: ErrDuplicateKey}
		}
		seen[k] = i + 1
		entries = append(entries, EnvEntry{EnvVar: EnvVar{Key: k, Value: v}, Source: src})
	}
	return entries, nil
}

// LoadEnvEntries reads the .env files in order, then the --env KEY=VALUE
// flags, merges them and checks the result with the dstack limits.
//
// A later source overrides an earlier one (a second file over the first,
// flags over files). The merged list keeps the order in which keys first
// appeared: an overridden variable stays at its original position and takes
// the later value and source. Within one file, or among the flags, a key set
// twice is an error rather than an override, since that is almost always a
// mistake.
func LoadEnvEntries(files []string, kvs []string) ([]EnvEntry, error) {
	var all []EnvEntry
	for _, name := range files {
		data, err := readEnvFile(name)
		if err != nil {
			return nil, err
		}
		entries, err := ParseDotenv(name, data)
		if err != nil {
			return nil, err
		}
		all = append(all, entries...)
	}
	flags, err := ParseEnvFlags(kvs)
	if err != nil {
		return nil, err
	}
	all = append(all, flags...)

	pos := make(map[string]int, len(all))
	merged := make([]EnvEntry, 0, len(all))
	for _, e := range all {
		if i, ok := pos[e.Key]; ok {
			merged[i] = e
			continue
		}
		pos[e.Key] = len(merged)
		merged = append(merged, e)
	}
	if err := checkEntries(merged); err != nil {
		return nil, err
	}
	return merged, nil
}

// LoadEnv is LoadEnvEntries without the sources.
func LoadEnv(files []string, kvs []string) ([]EnvVar, error) {
	entries, err := LoadEnvEntries(files, kvs)
	if err != nil {
		return nil, err
	}
	return Vars(entries), nil
}

// Vars returns the variables of entries, in order.
func Vars(entries []EnvEntry) []EnvVar {
	out := make([]EnvVar, len(entries))
	for i, e := range entries {
		out[i] = e.EnvVar
	}
	return out
}

// Keys returns the keys of envs, in order (the env_keys of API requests).
func Keys(envs []EnvVar) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.Key
	}
	return out
}

func readEnvFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, &EnvError{Source: EnvSource{File: name}, Reason: "cannot open: " + pathErrReason(err), Err: fmt.Errorf("%w: %w", ErrInvalidInput, err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFileBytes+1))
	if err != nil {
		return nil, &EnvError{Source: EnvSource{File: name}, Reason: "cannot read: " + pathErrReason(err), Err: fmt.Errorf("%w: %w", ErrInvalidInput, err)}
	}
	if len(data) > maxEnvFileBytes {
		return nil, &EnvError{Source: EnvSource{File: name}, Reason: fmt.Sprintf("file is larger than %d MiB; no valid env is", maxEnvFileBytes>>20), Err: ErrEnvTooLarge}
	}
	return data, nil
}

// pathErrReason drops the path from an *os.PathError, which EnvError
// already names.
func pathErrReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

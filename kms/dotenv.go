package kms

import (
	"bytes"
	"fmt"
	"regexp"
	"unicode"

	"github.com/joho/godotenv"
)

// The values of a .env file come from godotenv (quotes, escapes, `export`,
// comments and its ${VAR} expansion). godotenv returns only an unordered map
// and error messages that quote the file's text, so this file walks the same
// statements itself, following godotenv v1.5.1's rules, to learn each key's
// line, the file order and any duplicate, and to report errors without
// echoing a value. The two walks must agree on the keys; FuzzParseDotenv
// checks that they do.

// dotenvStatement is one KEY=VALUE statement found by scanDotenv.
type dotenvStatement struct {
	key   string
	line  int  // 1-based line where the statement starts
	quote byte // 0 for an unquoted value, else '"' or '\''
	raw   []byte
}

// dotenvSyntaxError is a statement godotenv would refuse.
type dotenvSyntaxError struct {
	line   int
	reason string
}

// godotenvSpace is godotenv's notion of in-line space (no line breaks). It
// is applied both to decoded runes and, in the key loop, to single bytes.
func godotenvSpace(r rune) bool {
	switch r {
	case '\t', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}

func notUnicodeSpace(r rune) bool { return !unicode.IsSpace(r) }

func isLineBreak(r rune) bool { return r == '\n' || r == '\r' }

// scanDotenv splits src, with CRLF already turned into LF, into statements.
func scanDotenv(src []byte) ([]dotenvStatement, *dotenvSyntaxError) {
	var stmts []dotenvStatement
	pos, line, counted := 0, 1, 0
	for {
		// Skip blank space (line breaks included) and whole-line comments.
		for {
			i := bytes.IndexFunc(src[pos:], notUnicodeSpace)
			if i < 0 {
				return stmts, nil
			}
			pos += i
			if src[pos] != '#' {
				break
			}
			nl := bytes.IndexByte(src[pos:], '\n')
			if nl < 0 {
				return stmts, nil
			}
			pos += nl
		}
		line += bytes.Count(src[counted:pos], []byte{'\n'})
		counted = pos

		// The key: an optional "export " prefix, then bytes up to '=' or ':'.
		s := bytes.TrimLeftFunc(src[pos:], godotenvSpace)
		if rest, ok := bytes.CutPrefix(s, []byte("export")); ok && bytes.IndexFunc(rest, godotenvSpace) == 0 {
			s = bytes.TrimLeftFunc(rest, godotenvSpace)
		}
		if len(s) == 0 {
			return nil, &dotenvSyntaxError{line, "\"export\" with no variable"}
		}
		sep := -1
		for i := 0; i < len(s) && sep < 0; i++ {
			c := s[i]
			r := rune(c) // godotenv looks at bytes here, not at UTF-8 runes
			switch {
			case c == '=' || c == ':':
				sep = i
			case godotenvSpace(r), c == '_', c == '.', unicode.IsLetter(r), unicode.IsNumber(r):
			default:
				if c == '\n' {
					return nil, &dotenvSyntaxError{line, "no '=' after the variable name"}
				}
				return nil, &dotenvSyntaxError{line, "unexpected character in the variable name"}
			}
		}
		if sep < 0 {
			// godotenv takes a last line without '=' as a value with an
			// empty name; no such variable can be valid.
			return nil, &dotenvSyntaxError{line, "no '=' after the variable name"}
		}
		key := string(bytes.TrimRightFunc(s[:sep], unicode.IsSpace))
		rest := bytes.TrimLeftFunc(s[sep+1:], godotenvSpace)

		// The value: quoted up to the first unescaped matching quote (which
		// may be lines further on), or unquoted up to the end of the line.
		st := dotenvStatement{key: key, line: line}
		var next []byte
		if len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
			q := rest[0]
			end := -1
			for i := 1; i < len(rest); i++ {
				if rest[i] == q && rest[i-1] != '\\' {
					end = i
					break
				}
			}
			if end < 0 {
				return nil, &dotenvSyntaxError{line, "quoted value is never closed"}
			}
			st.quote, st.raw, next = q, rest[1:end], rest[end+1:]
		} else {
			end := bytes.IndexFunc(rest, isLineBreak)
			if end < 0 {
				end = len(rest)
			}
			st.raw, next = rest[:end], rest[end:]
		}
		stmts = append(stmts, st)
		pos = len(src) - len(next)
	}
}

// expansionRef matches what godotenv's expansion rewrites when not preceded
// by a backslash: $NAME and ${NAME} (NAME in [A-Z0-9_]) become NAME's value,
// and "$(" loses its '$'.
var expansionRef = regexp.MustCompile(`(^|[^\\])\$(\(|\{?[A-Z0-9_])`)

// ParseDotenv parses the contents of one .env file named name (used in
// errors only). Values are godotenv's: single quotes keep the text literally;
// double quotes turn \n and \r into line breaks; unquoted values end at the
// line break, lose a trailing " #comment" and surrounding space; "export "
// and "KEY: value" are accepted; and $NAME / ${NAME} in unquoted and
// double-quoted values are replaced with the value of NAME set earlier in
// the same file, or with nothing (see EnvEntry.Interpolated).
//
// Entries come in file order. A file that is not UTF-8, a key set twice in
// the file and every line godotenv would refuse are errors; each names the
// file and line and never includes a value.
func ParseDotenv(name string, data []byte) ([]EnvEntry, error) {
	// godotenv would silently turn invalid UTF-8 in unquoted values into
	// U+FFFD, so a Latin-1 file would send altered secrets.
	if off := invalidUTF8Offset(data); off >= 0 {
		return nil, &EnvError{
			Source: EnvSource{File: name, Line: 1 + bytes.Count(data[:off], []byte{'\n'})},
			Reason: "not valid UTF-8 (save the file as UTF-8)",
			Err:    ErrInvalidUTF8,
		}
	}
	src := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	stmts, serr := scanDotenv(src)
	if serr != nil {
		return nil, &EnvError{
			Source: EnvSource{File: name, Line: serr.line},
			Reason: serr.reason + " (expected KEY=VALUE)",
			Err:    ErrMalformedLine,
		}
	}
	values, err := godotenv.UnmarshalBytes(data)
	if err != nil {
		// godotenv's message quotes the file's text, which may hold a
		// secret: report only that the file was refused.
		return nil, &EnvError{
			Source: EnvSource{File: name},
			Reason: "the .env parser refused the file (expected KEY=VALUE lines)",
			Err:    ErrMalformedLine,
		}
	}
	seen := make(map[string]int, len(stmts))
	entries := make([]EnvEntry, 0, len(stmts))
	for _, st := range stmts {
		if first, dup := seen[st.key]; dup {
			return nil, &EnvError{
				Source: EnvSource{File: name, Line: st.line},
				Key:    st.key,
				Reason: fmt.Sprintf("set again (first set on line %d)", first),
				Err:    ErrDuplicateKey,
			}
		}
		seen[st.key] = st.line
		v, ok := values[st.key]
		if !ok {
			return nil, parserDisagreement(name, st.line)
		}
		entries = append(entries, EnvEntry{
			EnvVar:       EnvVar{Key: st.key, Value: v},
			Source:       EnvSource{File: name, Line: st.line},
			Interpolated: st.quote != '\'' && expansionRef.Match(st.raw),
		})
	}
	if len(values) != len(entries) {
		return nil, parserDisagreement(name, 0)
	}
	return entries, nil
}

func parserDisagreement(name string, line int) error {
	return &EnvError{
		Source: EnvSource{File: name, Line: line},
		Reason: "cannot tell where this statement starts (the file confuses the parser); please simplify its quoting",
		Err:    ErrMalformedLine,
	}
}

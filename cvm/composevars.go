package cvm

import (
	"regexp"
	"sort"
	"strings"
)

// composeVarRef matches docker compose interpolation: $VAR, ${VAR} and the
// forms with a default or an error message (${VAR:-x}, ${VAR-x}, ${VAR:?x},
// ${VAR?x}, ${VAR:+x}, ${VAR+x}). "$$" is an escaped dollar sign.
var composeVarRef = regexp.MustCompile(`\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)((:?[-?+])[^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))`)

// MissingComposeVars lists the variables the compose file interpolates
// without a default and that no env entry provides. Docker compose would
// silently replace them with an empty string inside the CVM, a mistake users
// otherwise only discover once the app misbehaves.
func MissingComposeVars(compose string, provided map[string]bool) []string {
	missing := map[string]bool{}
	for _, m := range composeVarRef.FindAllStringSubmatch(stripYAMLComments(compose), -1) {
		if m[1] == "$" {
			continue // "$$" escapes a literal dollar
		}
		name, op := m[2], m[4]
		if name == "" {
			name = m[5]
		}
		switch op {
		case ":-", "-", ":+", "+":
			continue // a default (or an alternative) is given
		}
		if !provided[name] {
			missing[name] = true
		}
	}
	out := make([]string, 0, len(missing))
	for k := range missing {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stripYAMLComments drops YAML comments, which compose does not interpolate:
// a '#' at the start of a line or after white space, outside quotes.
func stripYAMLComments(doc string) string {
	lines := strings.Split(doc, "\n")
	for i, line := range lines {
		var quote rune
		for j, r := range line {
			switch {
			case quote != 0:
				if r == quote {
					quote = 0
				}
			case r == '\'' || r == '"':
				quote = r
			case r == '#' && (j == 0 || line[j-1] == ' ' || line[j-1] == '\t'):
				lines[i] = line[:j]
			}
			if lines[i] != line {
				break
			}
		}
	}
	return strings.Join(lines, "\n")
}

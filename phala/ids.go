package phala

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// NormalizeCVMID turns a user-supplied CVM identifier into the form the API
// expects in /cvms/{id} paths, exactly as the official SDK (@phala/cloud) does:
//
//   - a version-4 UUID, with or without dashes, is sent with the dashes removed;
//   - a bare 40-character hex string (an app id) becomes "app_<hex>";
//   - anything else (a name, "app_…", "instance_…", a numeric or "cvm_…" id,
//     and also a "0x"-prefixed app id) is returned unchanged.
//
// Case is preserved, as in the SDK. A "0x…" app id is deliberately not
// rewritten, because the SDK does not do it either; use NormalizeAppID and
// prefix "app_" to address a CVM by an 0x-form app id.
func NormalizeCVMID(id string) string {
	if isUUIDv4(id) {
		return strings.ReplaceAll(id, "-", "")
	}
	if len(id) == 40 && isHex(id) {
		return "app_" + id
	}
	return id
}

// isUUIDv4 matches the SDK's pattern
// ^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$ (case-insensitive):
// each dash is optional on its own.
func isUUIDv4(s string) bool {
	groups := []int{8, 4, 4, 4, 12}
	for gi, n := range groups {
		if gi > 0 && strings.HasPrefix(s, "-") {
			s = s[1:]
		}
		if len(s) < n || !isHex(s[:n]) {
			return false
		}
		switch gi {
		case 2:
			if s[0] != '4' {
				return false
			}
		case 3:
			if !strings.ContainsRune("89abAB", rune(s[0])) {
				return false
			}
		}
		s = s[n:]
	}
	return s == ""
}

// NormalizeAppID returns the 40 lowercase hex characters of an app id given
// as "0x<hex>", "app_<hex>" or bare hex, in any case. The API answers app ids
// in this form; render it with "0x" for chain calls.
func NormalizeAppID(id string) (string, error) {
	s := strings.TrimSpace(id)
	switch {
	case strings.HasPrefix(s, "0x"), strings.HasPrefix(s, "0X"):
		s = s[2:]
	case strings.HasPrefix(s, "app_"):
		s = s[4:]
	}
	if len(s) != 40 || !isHex(s) {
		return "", fmt.Errorf("%w: app id %q is not 40 hex characters (optionally prefixed with 0x or app_)", ErrInvalidInput, truncate(id, 64))
	}
	return strings.ToLower(s), nil
}

// normalizeHash32 strips an optional "sha256:" or "0x" prefix from a 32-byte
// hash and returns it as 64 lowercase hex characters.
func normalizeHash32(s string) (string, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "sha256:")
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s = s[2:]
	}
	if len(s) != 64 || !isHex(s) {
		return "", false
	}
	return strings.ToLower(s), true
}

// NormalizeComposeHash returns a compose hash as the API sends it: 64
// lowercase hex characters without "0x". It accepts the "0x" form used on
// chain and the "sha256:" form seen in old docs.
func NormalizeComposeHash(h string) (string, error) {
	n, ok := normalizeHash32(h)
	if !ok {
		return "", fmt.Errorf("%w: compose hash %q is not 64 hex characters", ErrInvalidInput, truncate(h, 80))
	}
	return n, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// isAddress reports whether s is "0x" followed by 40 hex characters.
func isAddress(s string) bool {
	return len(s) == 42 && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")) && isHex(s[2:])
}

// DefaultCloudURL is the Phala Cloud portal used in printed links.
const DefaultCloudURL = "https://cloud.phala.com"

// DashboardURL returns the portal page of a CVM, as the official CLI prints
// it: <CLOUD_URL or https://cloud.phala.com>/dashboard/cvms/<vm_uuid>.
func DashboardURL(vmUUID string) string {
	base := strings.TrimRight(os.Getenv("CLOUD_URL"), "/")
	if base == "" {
		base = DefaultCloudURL
	}
	return base + "/dashboard/cvms/" + url.PathEscape(vmUUID)
}

// truncate shortens user-supplied text quoted in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

package kms

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// This file reproduces the parts of JavaScript's JSON.stringify and property
// enumeration that the official SDK's output depends on. Go's encoding/json
// differs from JavaScript in each of them (HTML escaping, U+2028/U+2029,
// number formatting, map key order), so none of it can be delegated.

const lowerHex = "0123456789abcdef"

// appendJSString appends s quoted exactly as JSON.stringify quotes a string:
// only '"', '\\' and the control characters below U+0020 are escaped, the
// latter as \b \t \n \f \r or \u00xx with lowercase hex; everything else,
// including '<', '>', '&', U+007F and U+2028/U+2029, is copied as is.
// JSON.stringify also escapes lone UTF-16 surrogates, which valid UTF-8
// cannot contain, so s must be valid UTF-8 (callers check).
func appendJSString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSNumber appends f formatted as JSON.stringify formats a number:
// Number.prototype.toString for finite values (shortest round-trip digits,
// plain notation for 1e-7 < |f| < 1e21, exponent form "1e+21" / "1.5e-7"
// otherwise, and "0" for both zeros), and "null" for NaN and ±Infinity.
func appendJSNumber(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f == 0 {
		return append(dst, '0') // also -0: JavaScript prints it as "0"
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// strconv's shortest 'e' form gives the digits and the exponent that the
	// ECMAScript algorithm calls s (k digits) and n-1.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	mantEnd := 0
	for mantEnd < len(e) && e[mantEnd] != 'e' {
		mantEnd++
	}
	var digits [24]byte
	k := 0
	for _, c := range e[:mantEnd] {
		if c != '.' {
			digits[k] = c
			k++
		}
	}
	exp, _ := strconv.Atoi(string(e[mantEnd+1:])) // strconv wrote it; cannot fail
	n := exp + 1

	switch {
	case k <= n && n <= 21: // integer: digits then n-k zeros
		dst = append(dst, digits[:k]...)
		for i := k; i < n; i++ {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21: // decimal point inside the digits
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:k]...)
	case -6 < n && n <= 0: // 0.000ddd
		dst = append(dst, '0', '.')
		for i := n; i < 0; i++ {
			dst = append(dst, '0')
		}
		dst = append(dst, digits[:k]...)
	default: // exponent form
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:k]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

// arrayIndex reports whether key is a canonical array index, the property
// names ("0", "1", …, "4294967294") that JavaScript enumerates before all
// other keys of an object, in numeric order, whatever their insertion order.
func arrayIndex(key string) (uint32, bool) {
	if key == "" || len(key) > 10 || (key[0] == '0' && len(key) > 1) {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > math.MaxUint32-1 {
		return 0, false
	}
	return uint32(v), true
}

// firstUTF16Unit is the first UTF-16 code unit of r: r itself in the BMP,
// the high surrogate otherwise.
func firstUTF16Unit(r rune) rune {
	if r < 0x10000 {
		return r
	}
	return 0xD800 + (r-0x10000)>>10
}

// compareUTF16 orders valid UTF-8 strings as JavaScript compares strings: by
// UTF-16 code units. This differs from byte (code point) order when a
// character above U+FFFF meets one in U+E000..U+FFFF: "😀" (D83D DE00) sorts
// before "！" (U+FF01) in JavaScript but after it in Go.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := firstUTF16Unit(ra), firstUTF16Unit(rb)
			if ua != ub {
				return int(ua) - int(ub)
			}
			// Both above U+FFFF with the same high surrogate: the low
			// surrogates, and so the code points, decide.
			return int(ra) - int(rb)
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

// compareJSKeys orders object keys as JSON.stringify emits the object the SDK
// builds: array-index keys first in numeric order, then the others in
// Array.prototype.sort order (UTF-16 code units).
func compareJSKeys(a, b string) int {
	ia, aIdx := arrayIndex(a)
	ib, bIdx := arrayIndex(b)
	switch {
	case aIdx && bIdx:
		switch {
		case ia < ib:
			return -1
		case ia > ib:
			return 1
		}
		return 0
	case aIdx:
		return -1
	case bIdx:
		return 1
	}
	return compareUTF16(a, b)
}

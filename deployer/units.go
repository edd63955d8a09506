package deployer

import (
	"fmt"
	"math/big"
	"strings"
)

// units are the accepted suffixes, longest first so "gwei" wins over "wei"
// and "ether" over "eth".
var units = []struct {
	name string
	exp  int
}{
	{"finney", 15}, {"szabo", 12}, {"ether", 18}, {"kwei", 3}, {"mwei", 6}, {"gwei", 9}, {"eth", 18}, {"wei", 0},
}

// ParseWei parses an amount like "10gwei", "1.5ether", "0.1 eth" or a plain
// integer number of wei ("1000"), as Foundry's --gas-price does. The result
// must be a whole number of wei.
func ParseWei(s string) (*big.Int, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	num, exp := in, 0
	for _, u := range units {
		if strings.HasSuffix(in, u.name) {
			num, exp = strings.TrimSpace(strings.TrimSuffix(in, u.name)), u.exp
			break
		}
	}
	if num == "" || strings.HasPrefix(num, "-") || strings.HasPrefix(num, "+") {
		return nil, fmt.Errorf("invalid amount %q: use a whole number of wei or a number with a unit (10gwei, 1.5ether)", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok || strings.ContainsAny(num, "/eE") {
		return nil, fmt.Errorf("invalid amount %q: use a whole number of wei or a number with a unit (10gwei, 1.5ether)", s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() {
		return nil, fmt.Errorf("invalid amount %q: smaller than 1 wei (too many decimals)", s)
	}
	return new(big.Int).Set(r.Num()), nil
}

// FormatEther renders wei as a decimal ether amount with no trailing zeros,
// e.g. "0.0012" (exact; no float rounding).
func FormatEther(wei *big.Int) string {
	if wei == nil {
		return "0"
	}
	neg := wei.Sign() < 0
	s := new(big.Int).Abs(wei).String()
	if len(s) <= 18 {
		s = strings.Repeat("0", 19-len(s)) + s
	}
	whole, frac := s[:len(s)-18], strings.TrimRight(s[len(s)-18:], "0")
	out := whole
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// FormatGwei renders wei as gwei with up to 9 decimals, e.g. "1.5".
func FormatGwei(wei *big.Int) string {
	if wei == nil {
		return "0"
	}
	// Reuse FormatEther's exact decimal rendering by scaling up 10^9.
	return FormatEther(new(big.Int).Mul(wei, big.NewInt(1_000_000_000)))
}

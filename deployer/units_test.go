package deployer_test

import (
	"math/big"
	"strings"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

func TestParseWei(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"1000", "1000"},
		{"10gwei", "10000000000"},
		{"10 gwei", "10000000000"},
		{"1.5ether", "1500000000000000000"},
		{"0.1eth", "100000000000000000"},
		{"2wei", "2"},
		{"1.5GWEI", "1500000000"},
		{"3kwei", "3000"},
		{"1finney", "1000000000000000"},
	}
	for _, tc := range cases {
		got, err := deployer.ParseWei(tc.in)
		if err != nil {
			t.Fatalf("ParseWei(%q): %v", tc.in, err)
		}
		if got.String() != tc.want {
			t.Fatalf("ParseWei(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "gwei", "-1", "1.5", "0.5wei", "1e9", "ten", "1/2ether", "1.2.3gwei"} {
		if v, err := deployer.ParseWei(bad); err == nil {
			t.Fatalf("ParseWei(%q) = %s, want an error", bad, v)
		}
	}
}

func TestFormatEther(t *testing.T) {
	cases := map[string]string{
		"0":                    "0",
		"1":                    "0.000000000000000001",
		"1000000000000000000":  "1",
		"1500000000000000000":  "1.5",
		"12345000000000000000": "12.345",
		"-2000000000000000":    "-0.002",
	}
	for in, want := range cases {
		v, _ := new(big.Int).SetString(in, 10)
		if got := deployer.FormatEther(v); got != want {
			t.Fatalf("FormatEther(%s) = %s, want %s", in, got, want)
		}
	}
	if got := deployer.FormatGwei(big.NewInt(1_500_000_000)); got != "1.5" {
		t.Fatalf("FormatGwei = %s", got)
	}
}

func TestLookupChain(t *testing.T) {
	cases := []struct {
		in   string
		id   uint64
		name string
	}{
		{"base", 8453, "base"}, {"8453", 8453, "base"}, {"Base", 8453, "base"},
		{"mainnet", 1, "ethereum"}, {"ethereum", 1, "ethereum"}, {"1", 1, "ethereum"},
		{"sepolia", 11155111, "sepolia"}, {"base-sepolia", 84532, "base-sepolia"},
		{"anvil", 31337, "anvil"}, {"31337", 31337, "anvil"},
		{"2035", 2035, "chain-2035"},
	}
	for _, tc := range cases {
		c, err := deployer.LookupChain(tc.in)
		if err != nil || c.ID != tc.id || c.Name != tc.name {
			t.Fatalf("LookupChain(%q) = %+v, %v; want %s %d", tc.in, c, err, tc.name, tc.id)
		}
	}
	base, _ := deployer.LookupChain("base")
	if base.KMS.Hex() != "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C" {
		t.Fatalf("base KMS = %s", base.KMS.Hex())
	}
	if base.Explorer == "" || !strings.HasPrefix(base.TxURL([32]byte{1}), "https://basescan.org/tx/0x01") {
		t.Fatalf("base TxURL = %q", base.TxURL([32]byte{1}))
	}
	anvil, _ := deployer.LookupChain("anvil")
	if anvil.TxURL([32]byte{}) != "" {
		t.Fatalf("anvil has no explorer")
	}
	for _, bad := range []string{"", "0", "basee", "-1"} {
		if _, err := deployer.LookupChain(bad); err == nil {
			t.Fatalf("LookupChain(%q): want an error", bad)
		}
	}
}

func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuv":       "https://eth-mainnet.g.alchemy.com/v2/***",
		"https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef":     "https://mainnet.infura.io/v3/***",
		"https://user:pass@node.example:8545/rpc":                           "https://***@node.example:8545/rpc",
		"https://rpc.example/?apikey=SECRETSECRET":                          "https://rpc.example?***",
		"http://127.0.0.1:8545":                                             "http://127.0.0.1:8545",
		"wss://base.quiknode.pro/0123456789abcdef0123456789abcdef01234567/": "wss://base.quiknode.pro/***",
		"/tmp/geth.ipc": "/tmp/geth.ipc",
	}
	for in, want := range cases {
		if got := deployer.RedactURL(in); got != want {
			t.Fatalf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTxOptionsCheck(t *testing.T) {
	gwei := func(n int64) *big.Int { return big.NewInt(n * 1_000_000_000) }
	cases := []struct {
		name string
		o    deployer.TxOptions
		err  string
	}{
		{"zero", deployer.TxOptions{}, ""},
		{"caps", deployer.TxOptions{MaxFee: gwei(10), PriorityFee: gwei(1)}, ""},
		{"legacy + tip", deployer.TxOptions{Legacy: true, PriorityFee: gwei(1)}, "--priority-gas-price has no meaning with --legacy"},
		{"tip above cap", deployer.TxOptions{MaxFee: gwei(1), PriorityFee: gwei(2)}, "above --gas-price"},
		{"zero price", deployer.TxOptions{MaxFee: big.NewInt(0)}, "must be positive"},
	}
	for _, tc := range cases {
		err := tc.o.Check()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Fatalf("%s: Check() = %v, want %q", tc.name, err, tc.err)
		}
	}
}

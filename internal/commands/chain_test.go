package commands

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

func TestParseAddress(t *testing.T) {
	good := map[string]string{
		"0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C": "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C",
		"2f83172a49584c017f2b256f0fb2dca14126ba9c":   "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C",
		"0X2F83172A49584C017F2B256F0FB2DCA14126BA9C": "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C",
	}
	for in, want := range good {
		a, err := parseAddress("kms-contract", in)
		if err != nil || a.Hex() != want {
			t.Fatalf("parseAddress(%q) = %s, %v", in, a.Hex(), err)
		}
	}
	bad := map[string]string{
		"0x123": "is not an address",
		"0x2f83172A49584C017F2B256F0FB2Dca14126Ba9Z": "is not an address",
		"0x2F83172A49584C017F2B256F0FB2Dca14126Ba9C": "invalid EIP-55 checksum",
		"": "is not an address",
	}
	for in, want := range bad {
		_, err := parseAddress("kms-contract", in)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--kms-contract: ") || !strings.Contains(err.Error(), want) {
			t.Fatalf("parseAddress(%q) = %v, want a usage error with %q", in, err, want)
		}
	}
	if a, err := parseAppID("app-id", "app_2f83172a49584c017f2b256f0fb2dca14126ba9c"); err != nil || a != deployer.BaseKMS {
		t.Fatalf("parseAppID with app_ prefix: %s, %v", a, err)
	}
}

func TestParseHash32(t *testing.T) {
	h := "0x" + fmt.Sprintf("%064x", 0xabc)
	for _, in := range []string{h, h[2:], " " + h + " "} {
		got, err := parseHash32("compose-hash", in)
		if err != nil || common.Hash(got) != common.HexToHash(h) {
			t.Fatalf("parseHash32(%q) = %x, %v", in, got, err)
		}
	}
	for in, want := range map[string]string{
		"0x12":             "is not 32 bytes of hex",
		h + "00":           "is not 32 bytes of hex",
		"0x" + h[3:] + "g": "is not valid hex",
	} {
		_, err := parseHash32("compose-hash", in)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--compose-hash: ") || !strings.Contains(err.Error(), want) {
			t.Fatalf("parseHash32(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"120": 2 * time.Minute, "90s": 90 * time.Second, "1m30s": 90 * time.Second} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Fatalf("parseSeconds(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"0", "-1", "soon", "", "-5s"} {
		if _, err := parseSeconds(in); err == nil {
			t.Fatalf("parseSeconds(%q): want an error", in)
		}
	}
}

package safe

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ethereum/go-ethereum/common"
)

// shortNames are the EIP-3770 short names Safe uses in its service and
// app URLs (api-kit 5.0.3's networks table).
var shortNames = map[uint64]string{
	1:        "eth",
	8453:     "base",
	11155111: "sep",
	84532:    "basesep",
}

// ShortName is chainID's EIP-3770 short name ("" when Safe hosts no
// service for it).
func ShortName(chainID uint64) string { return shortNames[chainID] }

// ServiceURL is Safe's hosted Transaction Service for chainID, the base
// api-kit uses (paths such as /v2/safes/… go after it); "" when none.
func ServiceURL(chainID uint64) string {
	n := shortNames[chainID]
	if n == "" {
		return ""
	}
	return "https://api.safe.global/tx-service/" + n + "/api"
}

// IsHostedService reports whether base is Safe's hosted service, which
// asks for an API key (api-kit refuses to talk to it without one).
func IsHostedService(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	h := strings.ToLower(u.Hostname())
	return h == "api.safe.global" || h == "api.5afe.dev" || strings.HasSuffix(h, ".safe.global")
}

// AppURL is the transaction's page in Safe{Wallet} ("" for chains the
// hosted app does not serve).
func AppURL(chainID uint64, safe common.Address, safeTxHash common.Hash) string {
	n := shortNames[chainID]
	if n == "" {
		return ""
	}
	return fmt.Sprintf("https://app.safe.global/transactions/tx?safe=%s:%s&id=multisig_%s_%s", n, safe.Hex(), safe.Hex(), safeTxHash.Hex())
}

package phala

import (
	"errors"
	"fmt"
	"strings"
)

// API versions (X-Phala-Version) this client decodes, oldest first.
const (
	// Version20251028 has the legacy CVM shapes (integer ids, kms_info in
	// the KmsInfo shape, GET /cvms items with a hosted object); the
	// official CLI 1.1.18 pins it for deploy.
	Version20251028 = "2025-10-28"
	// Version20260121 has the flat CvmInfo with integer ids and the 2026
	// kms_info {chain_id, dstack_kms_address, dstack_app_address, …}.
	Version20260121 = "2026-01-21"
	// Version20260522 has hashed string ids ("cvm_…"); the node-keyed KMS
	// calls stay pinned to it under newer versions.
	Version20260522 = "2026-05-22"
	// Version20260623 lists KMS contracts on GET /kms; CVM and commit
	// shapes are 2026-05-22's.
	Version20260623 = "2026-06-23"
	// VersionLatest asks the server for its newest version.
	VersionLatest = "latest"
)

// Versions are the dated versions this client decodes, oldest first.
var Versions = []string{Version20251028, Version20260121, Version20260522, Version20260623}

// DefaultVersion is the newest version the client fully implements: its
// listings, CVM shapes and the token commit.
const DefaultVersion = Version20260623

// FallbackVersion is what the client retries with, once, when a server
// refuses the version it asked for; every later request of the client then
// uses it too.
const FallbackVersion = Version20251028

// NodeKeyedVersion is the version of the calls that name a KMS node rather
// than a contract (GET /kms?is_onchain=, GET /kms/{slug},
// GET /kms/{kms}/pubkey/{app_id}), as the official SDKs pin them: from
// 2026-06-23 on, /kms names contracts.
const NodeKeyedVersion = Version20260522

// samePathVersion is the first version under which the client tries the
// same-path provision (POST /cvms answering a commit token).
const samePathVersion = Version20260522

// versionAtLeast reports whether v is min or newer. Dates compare as
// strings (YYYY-MM-DD); "latest" is newer than every date.
func versionAtLeast(v, min string) bool {
	if strings.EqualFold(v, VersionLatest) {
		return true
	}
	if strings.EqualFold(min, VersionLatest) {
		return false
	}
	return v >= min
}

// pinned is the version a request pinned to pin is sent with: pin, unless
// the client speaks an older version (then that one, which predates the
// change the pin protects against).
func pinned(v, pin string) string {
	if pin == "" || !versionAtLeast(v, pin) {
		return v
	}
	return pin
}

// refusesVersion reports whether an error answer says the server does not
// serve the X-Phala-Version sent: a 4xx whose message names the version
// header (or the version sent) together with the word "version", or a
// validation error located at the header. Auth failures, rate limits and
// the compose-update statuses never count.
func refusesVersion(err error, sent string) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.IsAuth() || ae.IsRateLimited() || ae.Status >= StatusRegistrationRequired {
		return false
	}
	for _, v := range ae.ValidationErrors {
		for _, l := range v.Loc {
			if strings.EqualFold(fmt.Sprint(l), "x-phala-version") {
				return true
			}
		}
	}
	text := strings.ToLower(ae.Message + " " + ae.ErrorCode + " " + ae.summary())
	if !strings.Contains(text, "version") {
		return false
	}
	return strings.Contains(text, "x-phala-version") || strings.Contains(text, "api version") ||
		(sent != "" && strings.Contains(text, strings.ToLower(sent)))
}

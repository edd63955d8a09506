package cvm

import (
	"context"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
)

// What kind of account owns an AppAuth: it decides how the owner approves
// the calls (OwnerKind in the review data).
const (
	// OwnerEOA is a key: it sends the calls itself.
	OwnerEOA = "eoa"
	// OwnerContract has code of a kind not recognised (yet): it must make
	// the calls as its own transactions.
	OwnerContract = "contract"
	// OwnerSafe and OwnerTimelock are set once the owner routing (issue 8)
	// recognises them; the review page already says what each must do.
	OwnerSafe     = "safe"
	OwnerTimelock = "timelock"
)

// UpdateReview is what a review page shows beyond the result: the documents
// before and after the update and the chain's state as read. It is not in
// --json: the documents can be large, and the JSON carries their hashes.
type UpdateReview struct {
	// BaseComposeHash is the current document's hash, which the chain
	// allows ("" when not read).
	BaseComposeHash string
	// OldCompose and NewCompose are the docker-compose file of the current
	// and of the new document; nil when not known (--compose-check=off
	// reads no current document).
	OldCompose, NewCompose *string
	// OldPreLaunch and NewPreLaunch are the pre-launch scripts (nil: none).
	OldPreLaunch, NewPreLaunch *string
	// OldEnvKeys and NewEnvKeys are the allowed env names (never values)
	// before and after; OldKnown says the current document was read, and
	// EnvChanged that the update replaces the env.
	OldEnvKeys, NewEnvKeys []string
	OldKnown               bool
	EnvChanged             bool
	// DeviceID is the node's device the service named.
	DeviceID string
	// Chain is the AppAuth's state as read before the calls (nil when it
	// was not read: a resumed update whose calls were already made).
	Chain *deployer.AppInfo
	// OwnerKind is OwnerEOA, OwnerContract, OwnerSafe or OwnerTimelock
	// ("" when not read: the signer owns the AppAuth and sent the calls).
	OwnerKind string
	// OwnerDetail is one sentence about the owner's setup when known (a
	// Safe's threshold, a timelock's delay).
	OwnerDetail string
}

// DryRunReview is what a review page of a dry-run deployment shows beyond
// the result: the compose file and pre-launch script the app is provisioned
// with, and who signs.
type DryRunReview struct {
	Compose   string
	PreLaunch *string
	Signer    string
	// OwnerKind is the kind of the AppAuth's future owner (--owner).
	OwnerKind string
}

// fillReviewDocs records the documents before and after the update (no
// request: the base is journaled).
func (u *update) fillReviewDocs() {
	rv := &UpdateReview{EnvChanged: u.envGive}
	u.res.Review = rv
	if p := u.j.Prepared; p != nil {
		rv.DeviceID = p.DeviceID
	}
	if u.envGive {
		rv.NewEnvKeys = append([]string{}, u.patch.AllowedEnvs...)
	}
	if u.patch.DockerComposeFile != nil {
		s := *u.patch.DockerComposeFile
		rv.NewCompose = &s
	}
	rv.NewPreLaunch = u.patch.PreLaunchScript
	if u.j.Base == nil {
		return
	}
	base, err := parseComposeObject([]byte(u.j.Base.Doc))
	if err != nil {
		return // verifyNew reports a damaged base
	}
	rv.OldKnown = true
	rv.BaseComposeHash = u.j.Base.ComposeHash
	next := kms.ApplyComposeChanges(base, u.changes)
	rv.OldCompose, rv.NewCompose = docString(base, "docker_compose_file"), docString(next, "docker_compose_file")
	rv.OldPreLaunch, rv.NewPreLaunch = docString(base, "pre_launch_script"), docString(next, "pre_launch_script")
	rv.OldEnvKeys = docStrings(base, "allowed_envs")
	rv.NewEnvKeys = docStrings(next, "allowed_envs")
}

// fillReviewChain records the AppAuth's state as the calls were computed,
// and the owner's kind when the owner is not the signer (it must act). A
// failed read leaves the kind unknown, with a warning: it only shapes the
// instructions, and the calls are the same for every owner.
func (u *update) fillReviewChain(ctx context.Context, info *deployer.AppInfo) {
	if u.res.Review == nil {
		u.fillReviewDocs()
	}
	u.res.Review.Chain = info
	if u.Signer != nil && info.Owner == u.Signer.Address() {
		return
	}
	kind, detail, err := ownerKind(ctx, u.chain, info.Owner)
	if err != nil {
		u.res.Warnings = append(u.res.Warnings, err.Error())
		return
	}
	u.res.Review.OwnerKind, u.res.Review.OwnerDetail = kind, detail
}

// ownerKind says what kind of account owner is, for the instructions of
// the review page: an account without code is a key (EOA); one with code
// is a contract.
//
// A TimelockController is OwnerTimelock with its minimum delay.
// HOOK (issue 8): the owner routing's Safe detection (a deployer function)
// belongs here: return OwnerSafe with "N of M owners" instead of
// OwnerContract.
func ownerKind(ctx context.Context, chain *deployer.Client, owner common.Address) (kind, detail string, err error) {
	code, err := chain.Eth().CodeAt(ctx, owner, nil)
	if err != nil {
		return "", "", fmt.Errorf("read the owner %s's code: %w", owner.Hex(), err)
	}
	if len(code) == 0 {
		return OwnerEOA, "", nil
	}
	if ok, err := chain.IsTimelock(ctx, owner); err != nil {
		return "", "", fmt.Errorf("read the owner %s: %w", owner.Hex(), err)
	} else if ok {
		st, err := chain.TimelockOpState(ctx, owner, common.Hash{}, common.Address{})
		if err != nil {
			return "", "", fmt.Errorf("read timelock %s: %w", owner.Hex(), err)
		}
		exec := "only its executors may execute"
		if st.OpenExecution {
			exec = "anyone may execute"
		}
		return OwnerTimelock, fmt.Sprintf("minimum delay %s; %s", time.Duration(st.MinDelay)*time.Second, exec), nil
	}
	return OwnerContract, fmt.Sprintf("%d bytes of code", len(code)), nil
}

func docString(doc map[string]any, key string) *string {
	s, ok := doc[key].(string)
	if !ok {
		return nil
	}
	return &s
}

func docStrings(doc map[string]any, key string) []string {
	list, _ := doc[key].([]any)
	out := []string{}
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ComposeVerifiedMeaning says in a sentence what a compose_verified value
// (or a dry run's plan) means, for people reading a result.
func ComposeVerifiedMeaning(v string) string {
	switch v {
	case ComposePredicted:
		return "cvmdeploy built the document from your inputs and the pinned server additions; its sha256 is the hash"
	case ComposeRead:
		return "the hash is your current, on-chain-allowed document with exactly your changes"
	case ComposeApprovedAfterRead:
		return "allowed on-chain only after the committed document was read and every field checked"
	case planApproveAfterRead:
		return "the document cannot be predicted: the AppAuth is deployed without the hash, which is allowed only after the committed document is read and every field checked"
	case ComposeCheckedAfterCommit:
		return "allowed first, then the committed document was read and every field checked"
	case ComposeUnchecked, planOff:
		return "NOT checked: the hash is the cloud's word"
	case composePending:
		return "not allowed yet: waiting for the checked approval"
	}
	return ""
}

// KMSTrustMeaning says how a KMS contract was trusted (kms_trust).
func KMSTrustMeaning(v string) string {
	switch v {
	case KMSTrustPinned:
		return "the cloud named the KMS pinned for this chain"
	case KMSTrustFlag:
		return "the cloud named the KMS you named: --kms-contract, or the --dev testnet's own"
	case KMSTrustUnpinned:
		return "a testnet or local KMS taken as the cloud named it"
	}
	return ""
}

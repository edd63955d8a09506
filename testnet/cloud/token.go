package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// The same-path flow (reference B2): from 2026-05-22, POST /cvms both
// provisions and commits. The reference leaves open how the service tells
// the phases apart; this emulator decides by the body:
//
//   - a body with "token" is a commit by token;
//   - a body with "app_id" and "compose_hash" is a commit (the legacy pair);
//   - otherwise, a body with "compose_file" is a provision (phase one),
//     answered like POST /cvms/provision plus a one-time commit "token".
//
// Under 2025-10-28 and 2026-01-21 POST /cvms only commits, as before the
// flow existed: a provision body gets the commit schema's 422 (app_id and
// compose_hash missing), which is how clients see the flow is not offered.

// usedToken remembers what a consumed token committed, so that a commit
// retried after a lost answer gets the same CVM instead of a 466.
type usedToken struct {
	appID, hash string
}

// hashedIDs reports whether version answers string ids ("cvm_…").
func hashedIDs(version string) bool {
	return version == Version20260522 || version == Version20260623
}

// samePath reports whether version offers provisioning on POST /cvms.
func samePath(version string) bool { return hashedIDs(version) }

// handlePostCVMs serves POST /cvms: a provision or a commit (see above).
func (s *Server) handlePostCVMs(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	_, hasToken := lookup(body, "token")
	_, hasApp := lookup(body, "app_id")
	_, hasHash := lookup(body, "compose_hash")
	_, hasCompose := lookup(body, "compose_file")
	if samePath(versionOf(r)) && !hasToken && !(hasApp && hasHash) && hasCompose {
		s.provision(w, r, body, true)
		return
	}
	s.commit(w, r, body)
}

// newToken registers p under a fresh one-time commit token.
func (s *Server) newToken(p *provision) string {
	token := "ctk_" + randomHex(24)
	s.mu.Lock()
	s.tokens[token] = p
	s.mu.Unlock()
	return token
}

// resolveToken fills a token commit's body with what the token stands for
// (compose_hash; app_id for the cloud KMS, whose app id the provision
// chose) after checking what the body says agrees with it. An unknown or
// expired token is 466 — unless it was used by a commit for the same app,
// which is then replayed. It writes the error answer itself.
func (s *Server) resolveToken(w http.ResponseWriter, body map[string]any) (token string, ok bool) {
	v := &validator{}
	loc := []any{"body"}
	token, _ = v.str(body, loc, "token", true)
	appID, hasApp := v.hexField(body, loc, "app_id", 20, false)
	hash, hasHash := v.hexField(body, loc, "compose_hash", 32, false)
	if !v.ok() {
		writeValidation(w, v.errs)
		return "", false
	}
	s.mu.Lock()
	s.dropExpiredLocked(time.Now())
	p := s.tokens[token]
	used, wasUsed := s.usedTokens[token]
	s.mu.Unlock()
	var tokHash, tokApp string
	switch {
	case p != nil:
		tokHash, tokApp = p.hash, p.appID
	case wasUsed && hasApp && appID == used.appID:
		tokHash, tokApp = used.hash, used.appID
	default:
		writeStructured(w, StatusHashExpired, apiError{ErrorCode: codeHashInvalidOrExpired,
			Message:     "The commit token is unknown, used or expired: the prepared compose hash is gone",
			Suggestions: []string{"Provision again (POST /cvms with the same body) and commit with the new token"}})
		return "", false
	}
	if hasHash && hash != tokHash {
		v.add("value_error", at(loc, "compose_hash"), "Value error, compose_hash does not match the commit token's", body["compose_hash"], nil)
	}
	if hasApp && tokApp != "" && appID != tokApp {
		// FastAPI echoes the input; here that is the token (clients must
		// keep it out of their errors).
		v.add("value_error", at(loc, "token"), "Value error, the commit token "+token+" was issued for another app id", token, nil)
	}
	if !hasApp && tokApp == "" {
		v.add("missing", at(loc, "app_id"), "Field required: an on-chain app's id (the AppAuth address) is not in the token", nil, nil)
	}
	if !v.ok() {
		writeValidation(w, v.errs)
		return "", false
	}
	body["compose_hash"] = tokHash
	if !hasApp {
		body["app_id"] = tokApp
	}
	return token, true
}

// consumeToken makes token unusable for another commit; s.mu held.
func (s *Server) consumeTokenLocked(token, appID, hash string) {
	if token == "" {
		return
	}
	delete(s.tokens, token)
	s.usedTokens[token] = usedToken{appID: appID, hash: hash}
}

// checkCommitTx verifies the transaction a commit names (the Go SDK's
// transaction_hash): it must have added the compose hash on the app
// (467 otherwise), and the app must then allow the hash on this node (468
// otherwise). "already-registered" asks only for the second check. A
// commit without transaction_hash is checked at boot, as before. It
// writes the error answer itself.
func (s *Server) checkCommitTx(ctx context.Context, w http.ResponseWriter, appID, hash, rawTx string) bool {
	app, h := common.HexToAddress(appID), common.HexToHash(hash)
	if rawTx != AlreadyRegistered {
		tx, err := parseHexID(rawTx, 32)
		if err != nil {
			writeValidation(w, []fieldError{{Type: "value_error", Loc: []any{"body", "transaction_hash"},
				Msg: "Value error, expected a 32-byte transaction hash or \"already-registered\"", Input: rawTx}})
			return false
		}
		if err := s.verifyComposeTx(ctx, common.HexToHash(tx), app, h); err != nil {
			status := StatusTxVerificationFailed
			if !errors.Is(err, errTxNotVerified) {
				status = http.StatusBadGateway
			}
			s.log.Info("commit tx rejected", "app", app.Hex(), "tx", "0x"+tx, "err", err)
			writeStructured(w, status, apiError{ErrorCode: codeTxVerificationFailed, Message: err.Error(),
				Details: []detailItem{{Field: "transaction_hash", Value: "0x" + tx}, {Field: "compose_hash", Value: hash}}})
			return false
		}
	}
	ctx, cancel := context.WithTimeout(ctx, chainTimeout)
	defer cancel()
	policy, err := s.readPolicy(ctx, app, h, s.cfg.DeviceID, common.Address{})
	if err != nil {
		writeDetail(w, http.StatusBadGateway, "could not read the app's on-chain policy: "+err.Error())
		return false
	}
	if !policy.ComposeHashAllowed {
		writeStructured(w, StatusHashNotOnChain, apiError{ErrorCode: codeHashNotAllowed,
			Message: fmt.Sprintf("compose hash %s is not allowed on-chain for app %s", hash, app.Hex()),
			Details: []detailItem{{Field: "compose_hash", Value: hash}, {Field: "onchain_status", Value: map[string]any{
				"compose_hash_allowed": false, "device_id_allowed": policy.DeviceIDAllowed, "is_allowed": false}}}})
		return false
	}
	return true
}

// dropExpiredTokensLocked forgets tokens whose provision expired; s.mu held.
func (s *Server) dropExpiredTokensLocked(now time.Time) {
	for t, p := range s.tokens {
		if now.After(p.expires) {
			delete(s.tokens, t)
		}
	}
}

// ExpirePrepared forgets every cached provision, unused commit token and
// pending update, as if ProvisionTTL had passed: the next commit with one
// of them gets 466 (tests of the clients' "prepare again" path).
func (s *Server) ExpirePrepared() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.provisions)
	clear(s.tokens)
	clear(s.updates)
	s.log.Info("expired every provision, commit token and pending update")
}

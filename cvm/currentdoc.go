package cvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/kms"
)

// docForm is a document in one known serialization and what the chain
// says of its hash.
type docForm struct {
	Serialization kms.Serialization
	Bytes         []byte
	Hash          string // lowercase hex sha256 of Bytes
	Allowed       bool
}

// currentDoc is a CVM's current app-compose (GET /cvms/{id}/compose_file)
// re-serialized in each known serialization, each hash checked on the
// AppAuth: the base update and replicate build on, which the chain must
// allow.
type currentDoc struct {
	Doc   map[string]any
	Forms []docForm
}

// readCurrentDoc reads and checks cvmID's current app-compose. With
// firstAllowed it stops at the first form the AppAuth allows (one read
// fewer when the 2026 form is the one). A document that does not parse
// or serialize is a compose-rule violation.
func (r *Runner) readCurrentDoc(ctx context.Context, chain *deployer.Client, app common.Address, cvmID string, firstAllowed bool) (*currentDoc, error) {
	raw, err := r.API.ComposeFile(ctx, cvmID)
	if err != nil {
		return nil, fmt.Errorf("read CVM %s's current app-compose: %w", cvmID, err)
	}
	doc, err := parseComposeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: CVM %s's current app-compose: %w", ErrComposeRule, cvmID, err)
	}
	cur := &currentDoc{Doc: doc}
	for _, s := range []kms.Serialization{kms.SerializationCompact, kms.SerializationIndent4} {
		b, err := kms.SerializeAppCompose(doc, s)
		if err != nil {
			return nil, fmt.Errorf("%w: CVM %s's current app-compose: %w", ErrComposeRule, cvmID, err)
		}
		sum := sha256.Sum256(b)
		hash := [32]byte(sum)
		info, err := chain.AppInfo(ctx, deployer.AppInfoQuery{App: app, ComposeHash: &hash})
		if err != nil {
			return nil, fmt.Errorf("read AppAuth %s: %w", app.Hex(), err)
		}
		f := docForm{Serialization: s, Bytes: b, Hash: hex.EncodeToString(sum[:]), Allowed: info.ComposeHashAllowed != nil && *info.ComposeHashAllowed}
		cur.Forms = append(cur.Forms, f)
		if f.Allowed && firstAllowed {
			break
		}
	}
	return cur, nil
}

// allowed is the first form the AppAuth allows, or nil.
func (c *currentDoc) allowed() *docForm {
	for i := range c.Forms {
		if c.Forms[i].Allowed {
			return &c.Forms[i]
		}
	}
	return nil
}

// tried lists every form's hash, for the refusal when none is allowed.
func (c *currentDoc) tried() string {
	out := make([]string, len(c.Forms))
	for i, f := range c.Forms {
		out[i] = fmt.Sprintf("%s (%s)", f.Hash, f.Serialization)
	}
	return strings.Join(out, " or ")
}

package deployer

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/core/types"
)

// BatchDeployment is one app of DeployApps: its deployment, or why it failed.
type BatchDeployment struct {
	Deployment *AppDeployment
	Err        error
}

// DeployApps deploys several AppAuths through their KMS factories at once:
// one batched preflight (every call estimated), then every transaction
// signed and sent with consecutive nonces without waiting in between, then
// all receipts awaited together. A team deploying fifty apps waits about one
// block, not fifty. opts.OnSigned sees the transactions in cfgs order with
// consecutive nonces; a replacement comes later with its original's nonce.
//
// The error is for the batch as a whole (nothing or only part was sent);
// per-app outcomes of what was sent, including reverts, are in the results.
func (c *Client) DeployApps(ctx context.Context, signer Signer, cfgs []DeployAppConfig, opts TxOptions) ([]BatchDeployment, error) {
	if len(cfgs) == 0 {
		return nil, nil
	}
	from := signer.Address()
	reqs := make([]TxRequest, len(cfgs))
	normalized := make([]DeployAppConfig, len(cfgs))
	for i, cfg := range cfgs {
		if err := cfg.Check(); err != nil {
			return nil, fmt.Errorf("app %d: %w", i+1, err)
		}
		cfg = cfg.Normalized()
		req, err := deployAppRequest(cfg, cfg.owner(from))
		if err != nil {
			return nil, fmt.Errorf("app %d: %w", i+1, err)
		}
		reqs[i], normalized[i] = req, cfg
	}
	p, err := c.preflight(ctx, from, reqs, opts, nil)
	if err != nil {
		return nil, err
	}
	sent, err := c.sendAll(ctx, signer, p, opts)
	if len(sent) == 0 {
		return nil, err
	}
	sendErr := err
	out := make([]BatchDeployment, len(cfgs))
	for i := len(sent); i < len(cfgs); i++ {
		out[i].Err = fmt.Errorf("not sent: %w", sendErr)
	}
	rs, err := c.waitMined(ctx, signer, p, sent, opts)
	if rs == nil {
		// The wait itself failed (timeout, node gone): every sent app is
		// still pending; its journaled transaction is what to resume.
		for i := range sent {
			out[i].Err = err
		}
		return out, sendErr
	}
	for i, r := range rs {
		if r.Status != types.ReceiptStatusSuccessful {
			out[i].Err = c.revertError(ctx, from, sent[i].variantOf(r.TxHash), r)
			continue
		}
		d, err := ParseAppDeployed(r, normalized[i].KMS)
		if err != nil {
			out[i].Err = err
			continue
		}
		d.Owner = normalized[i].owner(from)
		d.ChainID = c.chainIDOf(r)
		out[i].Deployment = d
	}
	return out, sendErr
}

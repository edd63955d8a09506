package cvm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// StepReprovision names the journal boundary after provisioning again
// because the prepared commit expired (466).
const StepReprovision = "reprovision"

// commit is steps 4 and 5: encrypt the env locally and POST /cvms, with
// the provision's one-time token when it has one. When the service says the
// prepared compose hash (or the token) expired (466), the deployment is
// provisioned again, once: an on-chain app's AppAuth allows exactly the
// journaled hash, so the new provision must answer that same hash or
// nothing is committed; the journal records it (Reprovisioned). 467 and 468
// end with what to check and the resume hint.
func (d *run) commit(ctx context.Context, pubKey string) error {
	if c := d.j.Commit; c != nil {
		d.res.Resumed = append(d.res.Resumed, StepCommit)
		d.say("✓ committed earlier: CVM %s", c.CVMID)
		d.fillFromCommit()
		return nil
	}
	for again := false; ; again = true {
		req, err := d.commitRequest(pubKey)
		if err != nil {
			return err
		}
		d.say("→ committing the CVM")
		cvm, err := d.API.Commit(ctx, req)
		if err == nil {
			d.j.Commit = &CommitStep{CVMID: cvmRef(cvm), Status: cvm.Status}
			if cvm.VMUUID != nil {
				d.j.Commit.VMUUID = *cvm.VMUUID
			}
			if cvm.AppID != nil {
				d.j.Commit.AppID = *cvm.AppID
			}
			d.fillFromCommit()
			d.say("✓ committed: CVM %s, status %s", d.j.Commit.CVMID, cvm.Status)
			return d.save(StepCommit)
		}
		if again || !errors.Is(err, phala.ErrHashExpired) {
			return d.commitError(req, err)
		}
		if err := d.reprovision(ctx); err != nil {
			return err
		}
		if !d.j.Provision.OnChain {
			// A cloud-KMS provision chooses a new app and key.
			pubKey = d.j.Provision.AppEnvEncryptKey
			d.res.AppID = d.j.Provision.AppID
		}
	}
}

// commitRequest builds the POST /cvms body: the token (when provisioned on
// the same path), the app and compose hash, the env encrypted locally to
// pubKey, and — to a token-era service, as the SDKs of that era send it —
// the AppAuth's deployment transaction when that transaction allowed the
// hash, which the service may check (467, 468). CLI 1.1.18's era sends no
// transaction: there the chain is only asked at boot.
func (d *run) commitRequest(pubKey string) (phala.CommitRequest, error) {
	p := d.j.Provision
	req := phala.CommitRequest{Token: p.Token, ComposeHash: p.ComposeHash, KMSID: p.KMSID}
	if p.OnChain {
		req.AppID = d.j.App.AppID
		req.ContractAddress = d.j.App.ContractAddress
		req.DeployerAddress = d.j.App.DeployerAddress
		req.EnvKeys = d.in.envKeys
		if p.Token != "" && d.j.App.TxHash != "" && d.plan() != planApproveAfterRead {
			req.TransactionHash = d.j.App.TxHash
		}
	} else {
		req.AppID = p.AppID
	}
	// The on-chain branch always encrypts (even an empty list) as the
	// official CLI does; the cloud KMS gets an env only when there is one.
	if p.OnChain || len(d.in.env) > 0 {
		enc, err := kms.EncryptEnv(d.in.env, pubKey)
		if err != nil {
			return req, fmt.Errorf("encrypt the env: %w", err)
		}
		req.EncryptedEnv = enc
		d.say("✓ env encrypted locally (%d %s: %s)", len(d.in.env), plural(len(d.in.env), "variable", "variables"), strings.Join(d.in.envKeys, ", "))
	}
	return req, nil
}

// reprovision asks for the same deployment again after a 466 and journals
// the new answer (its token, for a cloud-KMS app its new app id and key),
// refusing an on-chain answer whose compose hash or KMS is not the one the
// AppAuth was deployed for.
func (d *run) reprovision(ctx context.Context) error {
	old := d.j.Provision
	if d.in.compose == "" {
		// The commit command has the provision file, not the inputs.
		return fmt.Errorf("commit: the prepared compose hash %s (or its commit token) expired (HTTP 466): run `cvmdeploy provision --out` again with the same inputs, check it answers the same compose hash, and commit with the new file", old.ComposeHash)
	}
	d.say("… the prepared commit expired (HTTP 466: compose hash or commit token no longer known): provisioning %q again", d.cfg.Name)
	req, err := d.provisionRequest(ctx)
	if err != nil {
		return err
	}
	resp, err := d.API.Provision(ctx, req)
	if err != nil {
		return fmt.Errorf("provision again after 466: %w", err)
	}
	if old.OnChain {
		if resp.ComposeHash != old.ComposeHash {
			return fmt.Errorf("%w: provisioning again after the commit expired (466) answered compose hash %s, not %s, which AppAuth %s allows; nothing was committed. The cloud's document changed: run a fresh deployment (--fresh) or an update", ErrComposeRule, resp.ComposeHash, old.ComposeHash, d.j.App.AppID)
		}
		ki := resp.KMSInfo
		if !resp.OnChain() || ki == nil || !strings.EqualFold(*ki.KMSContractAddress, old.KMSContract) || uint64(*ki.ChainID) != old.ChainID {
			return fmt.Errorf("%w: provisioning again after 466 named another KMS than contract %s on chain %d; nothing was committed", ErrKMSUntrusted, old.KMSContract, old.ChainID)
		}
		if resp.DeviceID != nil && old.DeviceID != "" && *resp.DeviceID != old.DeviceID {
			d.say("warning: the new provision is on device %s, but AppAuth %s was deployed for device %s: the CVM boots only once the owner allows that device", shortHex(*resp.DeviceID), d.j.App.AppID, shortHex(old.DeviceID))
		}
	} else {
		if resp.AppID == nil || resp.AppEnvEncryptPubkey == nil {
			return fmt.Errorf("provisioning again after 466 answered no cloud-KMS app id and key")
		}
		old.AppID, old.AppEnvEncryptKey = *resp.AppID, *resp.AppEnvEncryptPubkey
	}
	old.Token = ""
	if resp.Token != nil {
		old.Token = *resp.Token
	}
	old.Via = resp.Via
	old.Reprovisioned = append(old.Reprovisioned, Reprovision{
		At: d.now().UTC(), Reason: "commit answered 466: the prepared compose hash or its commit token expired",
		ComposeHash: resp.ComposeHash, Via: resp.Via,
	})
	if old.OnChain {
		d.say("✓ provisioned again (%s): the same compose hash %s%s", resp.Via, shortHex(resp.ComposeHash), tokenNote(old))
	} else {
		old.ComposeHash = resp.ComposeHash
		d.say("✓ provisioned again (%s): compose hash %s, cloud-KMS app %s%s", resp.Via, shortHex(resp.ComposeHash), old.AppID, tokenNote(old))
	}
	d.fillFromProvision()
	return d.save(StepReprovision)
}

// commitError explains a refused commit: what the status means, what to
// check, and that re-running the same command resumes here.
func (d *run) commitError(req phala.CommitRequest, err error) error {
	const resume = "re-run the same command to try the commit again (the journal keeps every step before it)"
	app := req.AppID
	switch {
	case errors.Is(err, phala.ErrHashExpired):
		return fmt.Errorf("commit: the prepared compose hash %s expired again right after provisioning it anew (HTTP 466); %s: %w", req.ComposeHash, resume, err)
	case errors.Is(err, phala.ErrTxVerificationFailed):
		return fmt.Errorf("commit: the service could not verify that transaction %s deployed AppAuth %s with compose hash %s (HTTP 467): check it on an explorer (mined? on chain %d?), then %s: %w",
			req.TransactionHash, app, req.ComposeHash, d.j.Provision.ChainID, resume, err)
	case errors.Is(err, phala.ErrHashNotOnChain):
		return fmt.Errorf("commit: the service finds compose hash %s not allowed on-chain for app %s (HTTP 468): check with `cvmdeploy app info --app-id %s --compose-hash 0x%s` (the owner may have removed it, or the node has not seen the block yet), allow it if needed, then %s: %w",
			req.ComposeHash, app, common.HexToAddress(app).Hex(), req.ComposeHash, resume, err)
	}
	return fmt.Errorf("commit: %w", err)
}

// tokenNote says, without the token, that a commit token is kept.
func tokenNote(p *ProvisionStep) string {
	if p.Token == "" {
		return ""
	}
	return "; one-time commit token kept in the journal"
}

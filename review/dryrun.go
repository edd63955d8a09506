package review

import (
	"fmt"
	"slices"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// FromDryRun is the review page of a dry-run deployment: what the same
// command without --dry-run sends and commits.
func FromDryRun(res *cvm.DryRunResult, o Options) *Page {
	rv := res.Review
	if rv == nil {
		rv = &cvm.DryRunReview{}
	}
	sim := res.Simulation
	var ex explorer
	if sim != nil {
		ex = newExplorer(sim.ChainID)
	}
	p := &Page{
		Title:        "Deployment of " + res.Name + " (dry run)",
		Summary:      "A rehearsal: the CVM was provisioned (that spends nothing), the AppAuth's deployment simulated and the env encrypted; nothing was sent on-chain and nothing was committed. The same command without --dry-run does what this page shows.",
		Created:      o.now(),
		ExplorerNote: ex.note(),
		Warnings:     res.Warnings,
	}
	p.Facts = append(p.Facts, Fact{Name: "name", Value: res.Name}, Fact{Name: "KMS", Value: res.KMSID})
	if sim != nil {
		p.Facts = append(p.Facts,
			Fact{Name: "chain", Value: ex.name()},
			Fact{Name: "KMS contract", Value: sim.KMS.Hex(), URL: ex.addr(sim.KMS.Hex()), Mono: true})
		if res.PredictedAppID != "" {
			p.Facts = append(p.Facts, Fact{Name: "app id (predicted)", Value: res.PredictedAppID, Mono: true})
		}
	}
	p.Facts = append(p.Facts, Fact{Name: "compose hash", Value: res.ComposeHash, Mono: true})
	if res.DeviceID != "" {
		p.Facts = append(p.Facts, Fact{Name: "node device", Value: res.DeviceID, Mono: true})
	}
	if sim != nil {
		p.Facts = append(p.Facts, Fact{Name: "cost", Value: fmt.Sprintf("at most %s ETH (gas limit %d)", res.EstimatedCostETH, sim.GasLimit)})
	}

	compose := NewFileDiff("docker-compose file (a new app: every line is new)", "", rv.Compose)
	compose.Full = ""
	p.Files = append(p.Files, compose)
	if rv.PreLaunch != nil {
		pre := NewFileDiff("pre-launch script", "", *rv.PreLaunch)
		pre.Full = ""
		p.Files = append(p.Files, pre)
	}
	p.Env = EnvChange{Added: append([]string{}, res.EnvKeys...)}
	slices.Sort(p.Env.Added)
	if len(p.Env.Added) == 0 {
		p.Env = EnvChange{Note: "No env variables."}
	}
	p.Verification = Verification{
		ComposeHash: res.ComposeHash, Verified: orNone(res.ComposeVerified), Meaning: cvm.ComposeVerifiedMeaning(res.ComposeVerified),
		KMSTrust: res.KMSTrust, KMSMeaning: cvm.KMSTrustMeaning(res.KMSTrust),
	}

	if sim == nil {
		p.CallsNote = "None: the cloud KMS (" + res.KMSID + ") holds the app's keys, so nothing is approved on-chain."
		p.Owner = Owner{Address: "—", KindWords: "no AppAuth: the cloud KMS decides"}
		p.StatusNote = "Nothing on-chain."
		return p
	}
	owner := sim.Owner.Hex()
	call := Call{To: sim.KMS.Hex(), ToURL: ex.addr(sim.KMS.Hex()), From: rv.Signer, Data: hexutil.Encode(sim.Data),
		Note: fmt.Sprintf("Sent by the signer; gas limit %d, at most %s ETH. It creates the AppAuth (predicted at %s) and registers it with the KMS.", sim.GasLimit, res.EstimatedCostETH, orNone(res.PredictedAppID))}
	decodeInto(&call, deployer.DecodeKMSCall, call.Data, func(a *Arg) {
		switch {
		case sameHex(a.Value, owner):
			a.Note = "the AppAuth's owner"
		case sameHex(a.Value, res.ComposeHash):
			a.Note = "the compose hash, allowed from the start"
		case res.DeviceID != "" && sameHex(a.Value, res.DeviceID):
			a.Note = "the node's device, as the service named it"
		case a.Type == "bytes32" && sameHex(a.Value, common.Hash{}.Hex()):
			a.Note = "none"
		}
	})
	p.Calls = []Call{call}

	p.Owner = Owner{Address: owner, URL: ex.addr(owner), Kind: rv.OwnerKind, KindWords: kindWords(rv.OwnerKind)}
	if sameHex(owner, rv.Signer) {
		p.Owner.KindWords = "the signer: this deployment's own key (EOA)"
		p.Owner.Steps = []Step{{Text: "Run the same command without --dry-run: the signer deploys the AppAuth through the KMS factory and owns it (on a mainnet off a terminal, add --yes)."}}
	} else {
		p.Owner.Steps = []Step{{Text: "Run the same command without --dry-run: the signer " + rv.Signer + " pays for the AppAuth (the factory is permissionless) and " + owner + " owns it from the start; every later change needs this owner."}}
	}
	if res.ComposeVerified == "approve-after-read" {
		p.Owner.Steps = append(p.Owner.Steps, Step{Text: "The compose hash is not in the factory call: after the commit, cvmdeploy reads the committed document, checks every field, and only then has the owner send addComposeHash (an owner that is not the signer gets the call and a Safe Transaction Builder file, exit 10; re-run once it is executed)."})
	}
	p.Status = []StatusRow{
		{Name: "KMS contract", Value: orNone(res.KMSTrust), State: kmsState(res.KMSTrust), Note: cvm.KMSTrustMeaning(res.KMSTrust)},
		{Name: "AppAuth", Value: "not deployed yet", State: "unknown", Note: "predicted at " + orNone(res.PredictedAppID), Mono: true},
	}
	p.StatusNote = "As simulated against the chain when this page was made; another deployment through the same KMS first would change the predicted app id."
	return p
}

func kmsState(trust string) string {
	switch trust {
	case cvm.KMSTrustPinned, cvm.KMSTrustFlag:
		return "ok"
	}
	return "unknown"
}

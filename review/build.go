package review

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// Options is what the command knows beyond the result.
type Options struct {
	// Now stamps the page (zero: time.Now).
	Now time.Time
	// SafeFile is the Safe Transaction Builder file written with the
	// calls, "" when none was.
	SafeFile string
}

func (o Options) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// explorer links addresses and transactions of one chain.
type explorer struct {
	chain deployer.Chain
	known bool
}

func newExplorer(chainID uint64) explorer {
	c, ok := deployer.ChainByID(chainID)
	if !ok {
		c = deployer.Chain{Name: fmt.Sprintf("chain %d", chainID), ID: chainID}
	}
	return explorer{chain: c, known: ok}
}

func (e explorer) addr(a string) string {
	if !common.IsHexAddress(a) {
		return ""
	}
	return e.chain.AddressURL(common.HexToAddress(a))
}

func (e explorer) tx(h string) string {
	if len(strings.TrimPrefix(h, "0x")) != 64 {
		return ""
	}
	return e.chain.TxURL(common.HexToHash(h))
}

func (e explorer) note() string {
	switch {
	case e.chain.ID == 0:
		return ""
	case e.chain.Explorer != "":
		return "Addresses and transactions link to " + e.chain.Explorer + "."
	}
	return fmt.Sprintf("Chain %d has no known block explorer: nothing is linked.", e.chain.ID)
}

func (e explorer) name() string {
	if e.known {
		return e.chain.String()
	}
	return e.chain.Name
}

// checksummed writes an address (with or without 0x) in EIP-55 form.
func checksummed(a string) string {
	if !strings.HasPrefix(a, "0x") && !strings.HasPrefix(a, "0X") {
		a = "0x" + a
	}
	if !common.IsHexAddress(a) {
		return a
	}
	return common.HexToAddress(a).Hex()
}

// sameHex compares two hex strings with or without 0x, case-insensitively.
func sameHex(a, b string) bool {
	trim := func(s string) string { return strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")) }
	return a != "" && b != "" && trim(a) == trim(b)
}

func orNone(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// FromUpdate is the review page of an update: prepared (--prepare-only),
// waiting for the owner, or applied.
func FromUpdate(res *cvm.UpdateResult, o Options) *Page {
	ex := newExplorer(res.ChainID)
	rv := res.Review
	if rv == nil {
		rv = &cvm.UpdateReview{}
	}
	app := checksummed(res.AppID)
	p := &Page{
		Title:        "Update of CVM " + res.CVMID,
		Created:      o.now(),
		ExplorerNote: ex.note(),
		Warnings:     res.Warnings,
	}
	switch res.Status {
	case "prepared":
		p.Summary = "Prepared, not applied. The new compose hash is checked; the AppAuth's owner must make the on-chain calls below, then the update is committed with its commit token. Nothing was sent on-chain."
	case "awaiting-approval":
		p.Summary = "Waiting for the owner's approval. The new compose hash is checked; the AppAuth's owner must make the on-chain calls below, then the same update command, run again, finishes it."
	default:
		p.Summary = "Applied: the update was committed (status " + res.Status + "). This page records what changed and what was approved."
	}
	p.Facts = append(p.Facts, Fact{Name: "CVM", Value: res.CVMID, Mono: true})
	if res.AppID != "" {
		p.Facts = append(p.Facts, Fact{Name: "app (AppAuth)", Value: app, URL: ex.addr(app), Mono: true})
	}
	if res.ChainID != 0 {
		p.Facts = append(p.Facts, Fact{Name: "chain", Value: ex.name()})
	}
	p.Facts = append(p.Facts, Fact{Name: "status", Value: res.Status})
	if res.ComposeHash != "" {
		p.Facts = append(p.Facts, Fact{Name: "new compose hash", Value: res.ComposeHash, Mono: true})
	}
	if rv.BaseComposeHash != "" {
		p.Facts = append(p.Facts, Fact{Name: "current compose hash", Value: rv.BaseComposeHash, Mono: true})
	}
	if rv.DeviceID != "" {
		p.Facts = append(p.Facts, Fact{Name: "node device", Value: rv.DeviceID, Mono: true})
	}

	switch {
	case rv.OldCompose != nil && rv.NewCompose != nil:
		p.Files = append(p.Files, NewFileDiff("docker-compose file", *rv.OldCompose, *rv.NewCompose))
	case rv.NewCompose != nil:
		p.Files = append(p.Files, FileDiff{Title: "docker-compose file", Note: notRead(res) + ", so there is no diff: the new file is below.", Full: *rv.NewCompose})
	default:
		p.Files = append(p.Files, FileDiff{Title: "docker-compose file", Note: "Unchanged by this update, or not read."})
	}
	if !equalPtr(rv.OldPreLaunch, rv.NewPreLaunch) && (rv.OldKnown || rv.NewPreLaunch != nil) {
		p.Files = append(p.Files, NewFileDiff("pre-launch script", deref(rv.OldPreLaunch), deref(rv.NewPreLaunch)))
	}
	p.Env = envChange(rv, notRead(res))

	p.Verification = Verification{
		ComposeHash: res.ComposeHash, Verified: orNone(res.ComposeVerified), Meaning: cvm.ComposeVerifiedMeaning(res.ComposeVerified),
		KMSTrust: res.KMSTrust, KMSMeaning: cvm.KMSTrustMeaning(res.KMSTrust),
	}

	for _, c := range res.OnChain {
		call := Call{Function: c.Function, To: checksummed(c.To), Data: c.Data, TxHash: c.TxHash, TxURL: ex.tx(c.TxHash), Note: c.Skipped}
		call.ToURL = ex.addr(call.To)
		if c.Data != "" {
			decodeInto(&call, deployer.DecodeAppCall, c.Data, func(a *Arg) {
				switch {
				case sameHex(a.Value, res.ComposeHash):
					a.Note = "the new compose hash, checked above"
				case sameHex(a.Value, rv.DeviceID):
					a.Note = "the node's device, as the service named it"
				}
			})
		} else if c.TxHash != "" {
			call.Note = "Sent and mined."
		}
		p.Calls = append(p.Calls, call)
	}
	if len(p.Calls) == 0 {
		switch {
		case res.ChainID == 0:
			p.CallsNote = "None: the CVM uses the cloud KMS, so nothing is approved on-chain."
		default:
			p.CallsNote = "None: the new compose hash and the node's device are already allowed on-chain."
		}
	}

	p.Owner = updateOwner(res, rv, ex, o)
	p.Status, p.StatusNote = updateStatus(res, rv)
	return p
}

func equalPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// notRead says why an update has no current document to compare with.
func notRead(res *cvm.UpdateResult) string {
	if res.ChainID == 0 {
		return "The CVM uses the cloud KMS, whose updates approve nothing on-chain: its current app-compose was not read"
	}
	return "The current app-compose was not read (--compose-check=off)"
}

// envChange compares the env names before and after; why says why the
// current names are unknown, when they are.
func envChange(rv *cvm.UpdateReview, why string) EnvChange {
	if !rv.EnvChanged {
		return EnvChange{Note: "Unchanged: this update keeps the current env."}
	}
	if !rv.OldKnown {
		return EnvChange{Note: "The update replaces the env; the new names are " + orNone(strings.Join(rv.NewEnvKeys, ", ")) + ". " + why + ", so the current names are not shown."}
	}
	var ch EnvChange
	for _, k := range rv.NewEnvKeys {
		if slices.Contains(rv.OldEnvKeys, k) {
			ch.Kept = append(ch.Kept, k)
		} else {
			ch.Added = append(ch.Added, k)
		}
	}
	for _, k := range rv.OldEnvKeys {
		if !slices.Contains(rv.NewEnvKeys, k) {
			ch.Removed = append(ch.Removed, k)
		}
	}
	slices.Sort(ch.Added)
	slices.Sort(ch.Removed)
	slices.Sort(ch.Kept)
	return ch
}

// decodeInto decodes data into call's signature and arguments; note
// annotates each argument.
func decodeInto(call *Call, decode func([]byte) (*deployer.DecodedCall, error), data string, note func(*Arg)) {
	raw, err := hexutil.Decode(data)
	if err != nil {
		call.DecodeError = "not hex: " + err.Error()
		return
	}
	d, err := decode(raw)
	if err != nil {
		call.DecodeError = err.Error()
		return
	}
	if call.Function != "" && d.Method != call.Function {
		call.DecodeError = fmt.Sprintf("the calldata is %s, not %s", d.Signature, call.Function)
	}
	call.Function, call.Signature, call.Contract = d.Method, d.Signature, d.Contract
	for _, a := range d.Args {
		arg := Arg{Name: a.Name, Type: a.Type, Value: a.Value}
		note(&arg)
		call.Args = append(call.Args, arg)
	}
}

func kindWords(kind string) string {
	switch kind {
	case cvm.OwnerEOA:
		return "an account with a key (EOA)"
	case cvm.OwnerSafe:
		return "a Safe multisig"
	case cvm.OwnerTimelock:
		return "a timelock (OpenZeppelin TimelockController)"
	case cvm.OwnerContract:
		return "a contract that cvmdeploy does not recognise as a Safe or a timelock"
	}
	return "not read"
}

func callNames(calls []cvm.OnChainCall) string {
	names := make([]string, len(calls))
	for i, c := range calls {
		names[i] = c.Function
	}
	return strings.Join(names, " and ")
}

// updateOwner says who approves the calls and how, by the owner's kind.
func updateOwner(res *cvm.UpdateResult, rv *cvm.UpdateReview, ex explorer, o Options) Owner {
	owner := res.Owner
	if owner == "" && rv.Chain != nil {
		owner = rv.Chain.Owner.Hex()
	}
	w := Owner{Address: orNone(checksummed(owner)), URL: ex.addr(owner), Kind: rv.OwnerKind, KindWords: kindWords(rv.OwnerKind), Detail: rv.OwnerDetail}
	if owner == "" {
		w.Address = "not read"
	}
	pending := res.Status == "prepared" || res.Status == "awaiting-approval"
	if !pending {
		if rv.OwnerKind == "" && len(res.OnChain) > 0 {
			w.KindWords = "the signer: this update's own key"
			w.Steps = []Step{{Text: "The signer owned the AppAuth and sent the calls itself; nothing is left to do."}}
		}
		return w
	}
	app := checksummed(res.AppID)
	finish := Step{
		Text:     "Then finish the update: run the same update command again without --prepare-only (it resumes from its journal, sees the calls made and commits), or:",
		Commands: []string{"cvmdeploy commit-update --cvm " + res.CVMID + " --token <the commit_token of the update's output> --compose-hash " + res.ComposeHash + " --transaction-hash <the transaction that made the last call>"},
	}
	if res.Status == "awaiting-approval" {
		finish = Step{Text: "Then run the same update command again: it sees the calls made on-chain and commits the update."}
	}
	if len(res.OnChain) == 0 {
		finish.Text = "Nothing to approve on-chain. " + finish.Text
		w.Steps = []Step{finish}
		return w
	}
	names := callNames(res.OnChain)
	safeFile := "the Safe Transaction Builder file (written by update --prepare-only --safe SAFE or --calldata-only)"
	if o.SafeFile != "" {
		safeFile = "the Safe Transaction Builder file " + o.SafeFile
	}
	switch rv.OwnerKind {
	case cvm.OwnerEOA:
		var cmds []string
		for _, c := range res.OnChain {
			switch c.Function {
			case "addDevice":
				cmds = append(cmds, "cvmdeploy app device add --app-id "+app+" --device-id "+rv.DeviceID)
			case "addComposeHash":
				cmds = append(cmds, "cvmdeploy app compose add --app-id "+app+" --compose-hash "+res.ComposeHash)
			}
		}
		step := Step{Text: "With the owner's key (" + w.Address + "), send " + names + " to the AppAuth " + app + " with the calldata below."}
		if len(cmds) == len(res.OnChain) {
			step.Text += " With cvmdeploy (each command reads owner() first and refuses any other key):"
			step.Commands = cmds
		}
		w.Steps = []Step{step, finish}
	case cvm.OwnerSafe:
		w.Steps = []Step{
			{Text: "Open the Safe " + w.Address + " in the Safe app on " + ex.name() + ": Apps → Transaction Builder → import " + safeFile + ", or enter the calls below by hand."},
			{Text: "Check that each transaction shows the target, function, arguments and calldata below, then sign it; once enough owners signed, execute it."},
			finish,
		}
	case cvm.OwnerTimelock:
		w.Steps = []Step{
			{Text: "A proposer of the timelock " + w.Address + " schedules the calls below: schedule(target, 0, calldata, predecessor 0x0, salt, delay) for each, or one scheduleBatch for all, with a delay of at least the timelock's minimum delay."},
			{Text: "After the delay, an executor calls execute (or executeBatch) with exactly the same targets, values, calldata, predecessor and salt."},
			finish,
		}
	case cvm.OwnerContract:
		w.Steps = []Step{
			{Text: "The owner is a contract: have it make " + names + " below as its own transactions. A Safe: import " + safeFile + " in the Safe app's Transaction Builder, sign and execute. A timelock: schedule the calls, wait out its delay, then execute them."},
			finish,
		}
	default:
		w.Steps = []Step{{Text: "The owner must send " + names + " below to the AppAuth " + app + "."}, finish}
	}
	return w
}

func allowed(b *bool, yes, no string) (string, string) {
	switch {
	case b == nil:
		return "not read", "unknown"
	case *b:
		return yes, "ok"
	}
	return no, "no"
}

// updateStatus is the AppAuth's state as read before the calls.
func updateStatus(res *cvm.UpdateResult, rv *cvm.UpdateReview) ([]StatusRow, string) {
	if rv.Chain == nil {
		if res.ChainID == 0 {
			return nil, "The CVM uses the cloud KMS: there is no AppAuth on-chain."
		}
		return nil, "Not read in this run: the calls were made by an earlier run of this update."
	}
	info := rv.Chain
	var rows []StatusRow
	if rv.BaseComposeHash != "" {
		rows = append(rows, StatusRow{Name: "current compose hash", Value: "allowed", State: "ok", Note: rv.BaseComposeHash, Mono: true})
	}
	v, st := allowed(info.ComposeHashAllowed, "allowed", "not allowed yet")
	rows = append(rows, StatusRow{Name: "new compose hash", Value: v, State: st, Note: res.ComposeHash, Mono: true})
	switch {
	case info.AllowAnyDevice:
		rows = append(rows, StatusRow{Name: "node device", Value: "any device allowed", State: "ok", Note: "setAllowAnyDevice(true): the device list is not consulted"})
	case info.DeviceID != nil:
		v, st := allowed(info.DeviceAllowed, "allowed", "not allowed yet")
		rows = append(rows, StatusRow{Name: "node device", Value: v, State: st, Note: rv.DeviceID, Mono: true})
	}
	if info.PendingOwner != nil && *info.PendingOwner != (common.Address{}) {
		rows = append(rows, StatusRow{Name: "pending owner", Value: "ownership transfer pending", State: "unknown", Note: info.PendingOwner.Hex() + " has not accepted it yet", Mono: true})
	}
	note := "As read from the chain before the calls above were made."
	if res.Status == "prepared" || res.Status == "awaiting-approval" {
		note = "As read from the chain when this page was made, before the calls above."
	}
	return rows, note
}

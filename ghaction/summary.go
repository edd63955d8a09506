package ghaction

import (
	"fmt"
	"html"
	"strings"
)

// Summary is the job summary (Markdown) of the run: what happened, a table
// of the result with explorer links, the on-chain calls, and how the
// compose hash and the KMS were trusted.
func (r Report) Summary() string {
	doc := r.doc()
	var b strings.Builder
	status := r.Status()
	switch {
	case r.ExitCode == 10:
		fmt.Fprintf(&b, "### ⏳ cvmdeploy %s: waiting for the owner's approval\n\n", r.Command)
	case r.ExitCode != 0:
		fmt.Fprintf(&b, "### ❌ cvmdeploy %s failed (exit %d", r.Command, r.ExitCode)
		if r.ExitMeaning != "" {
			b.WriteString(": " + text(r.ExitMeaning))
		}
		b.WriteString(")\n\n")
		if r.Error != "" {
			b.WriteString("> " + text(r.Error) + "\n\n")
		}
		b.WriteString("Details are in the step's log.")
		if j := str(doc, "journal"); j != "" || r.Command == "deploy" || r.Command == "update" {
			b.WriteString(" Progress is journaled: re-running this job resumes where it stopped.")
		}
		b.WriteString("\n\n")
	default:
		fmt.Fprintf(&b, "### ✅ cvmdeploy %s: %s\n\n", r.Command, text(status))
	}
	if doc == nil {
		return b.String()
	}
	chainID := uint64(0)
	if v, ok := doc["chain_id"].(float64); ok && v > 0 {
		chainID = uint64(v)
	}
	explorer := ""
	if r.Explorer != nil && chainID != 0 {
		explorer = r.Explorer(chainID)
	}
	addr := func(v string) string { return link(code(v), explorer, "/address/", v) }
	tx := func(v string) string { return link(code(v), explorer, "/tx/", v) }

	b.WriteString("| | |\n| --- | --- |\n")
	row := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "| %s | %s |\n", label, value)
		}
	}
	row("Name", text(str(doc, "name")))
	row("Status", text(str(doc, "status")))
	if id := str(doc, "cvm_id"); id != "" {
		cell := code(id)
		if u := str(doc, "dashboard_url"); safeURL(u) {
			cell += " · [dashboard](" + u + ")"
		}
		row("CVM", cell)
	}
	row("App id", addr(str(doc, "app_id")))
	row("Predicted app id", addr(str(doc, "predicted_app_id")))
	if c := str(doc, "contract_address"); c != "" && !strings.EqualFold(c, str(doc, "app_id")) {
		row("AppAuth contract", addr(c))
	}
	row("Deployer", addr(str(doc, "deployer_address")))
	row("Owner", addr(str(doc, "owner")))
	row("Compose hash", code(str(doc, "compose_hash")))
	row("Compose hash verified", r.explained("compose_verified", str(doc, "compose_verified")))
	kms := code(str(doc, "kms_id"))
	if c := str(doc, "kms_contract"); c != "" {
		if kms != "" {
			kms += " · "
		}
		kms += addr(c)
	}
	row("KMS", kms)
	row("KMS trusted", r.explained("kms_trust", str(doc, "kms_trust")))
	if v, ok := doc["kms_key_verified"].(bool); ok {
		if v {
			row("Env key", "verified against the KMS root key on-chain")
		} else {
			row("Env key", "**not verified** against the KMS root key")
		}
	}
	row("Attestation", text(str(doc, "attestation")))
	if chainID != 0 {
		row("Chain", text(str(doc, "chain_id")))
	}
	row("Transaction", tx(str(doc, "tx_hash")))
	if g := str(doc, "gas_used"); g != "" {
		row("Gas used", text(g))
	}
	row("Approval", tx(str(doc, "approve_tx_hash")))
	row("Revocation", tx(str(doc, "revoke_tx_hash")))
	row("Estimated cost", text(joinNonEmpty(str(doc, "estimated_cost_eth"), " ETH at most")))
	if list := strList(doc["resumed_steps"]); len(list) > 0 {
		row("Resumed", text(strings.Join(list, ", ")))
	}
	if str(doc, "commit_token") != "" {
		row("Commit token", "in the `commit-token` output (masked)")
	}
	if r.ReviewPage != "" {
		row("Review page", "attached to this run as an artifact (see below)")
	}
	b.WriteString("\n")

	if calls, pending := r.calls(); len(calls) > 0 {
		switch owner := addr(str(doc, "owner")); {
		case str(doc, "commit_token") != "":
			b.WriteString("#### On-chain calls for the owner\n\n")
			fmt.Fprintf(&b, "The AppAuth's owner %s must execute the calls below that were not sent; then finish with `commit-update` (token in the `commit-token` output), or re-run this job.\n\n", owner)
		case pending || r.ExitCode == 10:
			b.WriteString("#### On-chain calls for the owner\n\n")
			fmt.Fprintf(&b, "The AppAuth's owner %s must execute these calls (cvmdeploy wrote them as a Safe Transaction Builder file); then re-run this job.\n\n", owner)
		default:
			b.WriteString("#### On-chain calls\n\n")
		}
		for i, c := range calls {
			fmt.Fprintf(&b, "%d. `%s` on %s", i+1, plain(c.Function), addr(c.To))
			switch {
			case c.TxHash != "":
				b.WriteString(" — sent in " + tx(c.TxHash))
			case c.Skipped != "":
				b.WriteString(" — skipped: " + text(c.Skipped))
			}
			b.WriteString("\n")
			if c.Data != "" {
				b.WriteString("   <details><summary>calldata</summary>\n\n   ```\n   " + plain(c.Data) + "\n   ```\n   </details>\n")
			}
		}
		b.WriteString("\n")
	}
	if w := strList(doc["warnings"]); len(w) > 0 {
		b.WriteString("#### Warnings\n\n")
		for _, s := range w {
			b.WriteString("- " + text(s) + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// explained is "**value** — what it means".
func (r Report) explained(field, value string) string {
	if value == "" {
		return ""
	}
	s := "**" + text(value) + "**"
	if r.Explain != nil {
		if w := r.Explain(field, value); w != "" {
			s += " — " + text(w)
		}
	}
	return s
}

// text makes a value safe in a table cell: no Markdown or HTML of its own
// (results carry strings the cloud chose).
func text(s string) string {
	s = html.EscapeString(strings.Join(strings.Fields(s), " "))
	r := strings.NewReplacer("|", `\|`, "[", `\[`, "]", `\]`, "`", "'", "*", `\*`, "_", `\_`)
	return r.Replace(s)
}

// plain keeps letters, digits and a few punctuation marks: for values
// printed inside code spans and blocks (function names, hex).
func plain(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-_.:/()", r):
			return r
		}
		return -1
	}, s)
}

// code is an inline code span, or "" for an empty value.
func code(s string) string {
	if p := plain(s); p != "" {
		return "`" + p + "`"
	}
	return ""
}

// link wraps label in an explorer link when there is an explorer.
func link(label, explorer, kind, value string) string {
	if label == "" || explorer == "" || !safeURL(explorer) {
		return label
	}
	return "[" + label + "](" + explorer + kind + plain(value) + ")"
}

func safeURL(u string) bool {
	return (strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")) && !strings.ContainsAny(u, " ()<>\"'`\n")
}

func strList(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func joinNonEmpty(v, suffix string) string {
	if v == "" {
		return ""
	}
	return v + suffix
}

package review_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/review"
)

const (
	hash   = "9f3c2a1b0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
	device = "2200000000000000000000000000000000000000000000000000000000000000"
	token  = "ct_secret_commit_token_0123456789"
)

func ptr(s string) *string { return &s }

// preparedUpdate is an update prepared for a Safe owner on Base, with a
// compose file that carries markup: names and files come from users and
// the cloud.
func preparedUpdate() *cvm.UpdateResult {
	app := common.HexToAddress("0x959922bE3CAee4b8Cd9a407cc3ac1C251C2007B1")
	owner := common.HexToAddress("0x399c61b017A871181d8B6C418c93a8bB361E3Db8")
	oldCompose := "services:\n  app:\n    image: ghcr.io/example/app:1.0\n"
	newCompose := "services:\n  app:\n    image: ghcr.io/example/app:1.1\n    labels:\n      note: \"<script>alert('x')</script> & <b>bold</b>\"\n"
	h := common.HexToHash(hash)
	d := common.HexToHash(device)
	no := false
	return &cvm.UpdateResult{
		CVMID: "cvm-<i>1</i>", AppID: strings.ToLower(strings.TrimPrefix(app.Hex(), "0x")), ComposeHash: hash,
		ChainID: 8453, Owner: owner.Hex(), KMSTrust: cvm.KMSTrustPinned, ComposeVerified: cvm.ComposeRead,
		Status: "prepared", CommitToken: token,
		OnChain: []cvm.OnChainCall{
			{Function: "addDevice", To: app.Hex(), Data: hexutil.Encode(deployer.AddDeviceCall(d).Data)},
			{Function: "addComposeHash", To: app.Hex(), Data: hexutil.Encode(deployer.AddComposeHashCall(h).Data)},
		},
		Review: &cvm.UpdateReview{
			BaseComposeHash: strings.Repeat("ab", 32),
			OldCompose:      &oldCompose, NewCompose: &newCompose,
			OldEnvKeys: []string{"API_TOKEN", "OLD_KEY"}, NewEnvKeys: []string{"API_TOKEN", "NEW_<KEY>"},
			OldKnown: true, EnvChanged: true, DeviceID: device,
			Chain:     &deployer.AppInfo{App: app, Owner: owner, ComposeHashAllowed: &no, DeviceID: &d, DeviceAllowed: &no},
			OwnerKind: cvm.OwnerSafe, OwnerDetail: "2 of 3 owners",
		},
	}
}

func stepText(steps []review.Step) string {
	var lines []string
	for _, s := range steps {
		lines = append(lines, s.Text)
		lines = append(lines, s.Commands...)
	}
	return strings.Join(lines, "\n")
}

func render(t *testing.T, p *review.Page) string {
	t.Helper()
	var b bytes.Buffer
	if err := review.Render(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPageEscapesEverything: markup in the compose file, the CVM id and
// an env name is text on the page, never markup; the page has no script
// and loads nothing.
func TestPageEscapesEverything(t *testing.T) {
	page := render(t, review.FromUpdate(preparedUpdate(), review.Options{Now: time.Unix(1796155984, 0)}))
	for _, bad := range []string{"<script", "<b>bold", "<i>1</i>", "NEW_<KEY>"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page carries %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;", "cvm-&lt;i&gt;1&lt;/i&gt;", "NEW_&lt;KEY&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks the escaped text %q", want)
		}
	}
	// Nothing that fetches: no src= at all, stylesheets inline only, and a
	// policy that blocks whatever might slip in.
	if regexp.MustCompile(`(?i)\ssrc\s*=|<link[^>]+stylesheet|@import|url\(`).MatchString(page) {
		t.Error("the page references an external resource")
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'`) {
		t.Error("the page has no Content-Security-Policy blocking requests")
	}
	if strings.Contains(page, token) {
		t.Error("the page carries the commit token (a credential)")
	}
}

// TestPageContents: the diff, the env names, the decoded calls with what
// their arguments are, the owner's steps and the chain's state.
func TestPageContents(t *testing.T) {
	res := preparedUpdate()
	p := review.FromUpdate(res, review.Options{SafeFile: "safe-tx.json"})
	if len(p.Files) != 1 || p.Files[0].Added != 3 || p.Files[0].Removed != 1 {
		t.Fatalf("compose diff %+v", p.Files)
	}
	if got := strings.Join(p.Env.Added, ",") + "|" + strings.Join(p.Env.Removed, ",") + "|" + strings.Join(p.Env.Kept, ","); got != "NEW_<KEY>|OLD_KEY|API_TOKEN" {
		t.Fatalf("env added|removed|kept = %s", got)
	}
	if len(p.Calls) != 2 || p.Calls[0].Signature != "addDevice(bytes32)" || p.Calls[1].Signature != "addComposeHash(bytes32)" {
		t.Fatalf("calls %+v", p.Calls)
	}
	if a := p.Calls[1].Args[0]; a.Value != "0x"+hash || !strings.Contains(a.Note, "new compose hash") {
		t.Fatalf("addComposeHash argument %+v", a)
	}
	if p.Calls[0].ToURL != "https://basescan.org/address/0x959922bE3CAee4b8Cd9a407cc3ac1C251C2007B1" {
		t.Fatalf("explorer link %q", p.Calls[0].ToURL)
	}
	steps := stepText(p.Owner.Steps)
	if !strings.Contains(steps, "Transaction Builder → import the Safe Transaction Builder file safe-tx.json") || !strings.Contains(steps, "commit-update") || strings.Contains(steps, token) {
		t.Fatalf("Safe owner steps:\n%s", steps)
	}
	if len(p.Status) < 3 || p.Status[1].State != "no" || p.Status[2].State != "no" {
		t.Fatalf("status %+v", p.Status)
	}

	// Each owner kind gets its own instructions.
	for kind, want := range map[string]string{
		cvm.OwnerEOA:      "cvmdeploy app compose add --app-id 0x959922bE3CAee4b8Cd9a407cc3ac1C251C2007B1 --compose-hash " + hash,
		cvm.OwnerTimelock: "scheduleBatch",
		cvm.OwnerContract: "The owner is a contract",
	} {
		res.Review.OwnerKind = kind
		if steps := stepText(review.FromUpdate(res, review.Options{}).Owner.Steps); !strings.Contains(steps, want) {
			t.Errorf("%s owner: steps lack %q:\n%s", kind, want, steps)
		}
	}
}

// TestPageDecodeMismatch: calldata that is not the call it is named as is
// flagged, not silently shown under the wrong name.
func TestPageDecodeMismatch(t *testing.T) {
	res := preparedUpdate()
	res.OnChain[1].Data = hexutil.Encode(deployer.RemoveComposeHashCall(common.HexToHash(hash)).Data)
	p := review.FromUpdate(res, review.Options{})
	if !strings.Contains(p.Calls[1].DecodeError, "removeComposeHash(bytes32), not addComposeHash") {
		t.Fatalf("decode error %q", p.Calls[1].DecodeError)
	}
	res.OnChain[1].Data = "0xdeadbeef"
	if p := review.FromUpdate(res, review.Options{}); p.Calls[1].DecodeError == "" {
		t.Fatal("unknown calldata decoded")
	}
}

// TestWritePage writes atomically, readable by all (it holds no secret).
func TestWritePage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "review.html")
	if err := review.Write(path, review.FromUpdate(preparedUpdate(), review.Options{})); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("stat %v, %v", st, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".review-*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
	if err := review.Write(filepath.Join(path, "nope", "x.html"), &review.Page{}); err == nil {
		t.Fatal("writing under a missing folder succeeded")
	}
}

func TestFileDiffHunks(t *testing.T) {
	var before, after strings.Builder
	for i := 1; i <= 30; i++ {
		line := "line " + strings.Repeat("x", i%3) + "\n"
		before.WriteString(line)
		if i == 5 || i == 25 {
			line = "changed\n"
		}
		after.WriteString(line)
	}
	fd := review.NewFileDiff("f", before.String(), after.String())
	if len(fd.Hunks) != 2 || fd.Hunks[0].Header != "@@ -2,7 +2,7 @@" || fd.Hunks[1].Header != "@@ -22,7 +22,7 @@" {
		t.Fatalf("hunks %d: %+v", len(fd.Hunks), fd.Hunks)
	}
	if fd := review.NewFileDiff("f", "", "a\nb"); fd.Hunks[0].Header != "@@ -0,0 +1,2 @@" || !fd.Hunks[0].Lines[1].NoEOL {
		t.Fatalf("new file: %+v", fd.Hunks)
	}
	if fd := review.NewFileDiff("f", "a\r\n", "a\r\n"); !fd.Unchanged || len(fd.Hunks) != 0 {
		t.Fatalf("same file: %+v", fd)
	}
	if fd := review.NewFileDiff("f", "a\r\n", "a\n"); !fd.Hunks[0].Lines[0].CR || fd.Hunks[0].Lines[1].CR {
		t.Fatalf("CRLF → LF: %+v", fd.Hunks)
	}
}

// TestPageAppliedUpdateAndCloudDryRun: an update the signer applied links
// its transactions; a cloud-KMS dry run has no call and says why.
func TestPageAppliedUpdateAndCloudDryRun(t *testing.T) {
	res := preparedUpdate()
	tx := "0x" + strings.Repeat("12", 32)
	res.Status, res.CommitToken = "accepted", ""
	res.OnChain = []cvm.OnChainCall{{Function: "addComposeHash", To: res.OnChain[1].To, TxHash: tx}}
	res.Review.OwnerKind = ""
	p := review.FromUpdate(res, review.Options{})
	if c := p.Calls[0]; c.TxURL != "https://basescan.org/tx/"+tx || c.Note != "Sent and mined." {
		t.Fatalf("applied call %+v", c)
	}
	if !strings.Contains(p.Owner.KindWords, "the signer") || !strings.HasPrefix(p.Summary, "Applied") {
		t.Fatalf("applied update: owner %+v, summary %q", p.Owner, p.Summary)
	}

	dry := review.FromDryRun(&cvm.DryRunResult{Name: "cloud-app", KMSID: "phala-prod", ComposeHash: hash, EnvKeys: []string{"B", "A"},
		Review: &cvm.DryRunReview{Compose: "services: {}\n"}}, review.Options{})
	if len(dry.Calls) != 0 || !strings.Contains(dry.CallsNote, "cloud KMS") || strings.Join(dry.Env.Added, ",") != "A,B" || dry.Files[0].Added != 1 {
		t.Fatalf("cloud dry run %+v", dry)
	}
	if page := render(t, dry); !strings.Contains(page, "cloud-app") {
		t.Fatal("the cloud dry-run page does not render its name")
	}
}

// TestPageUnreadBase: without the current document (a cloud-KMS CVM, or
// --compose-check=off) the page shows the new file and says why there is
// no diff.
func TestPageUnreadBase(t *testing.T) {
	compose := "services: {}\n"
	for _, tc := range []struct {
		chainID uint64
		why     string
	}{{0, "cloud KMS"}, {8453, "--compose-check=off"}} {
		res := &cvm.UpdateResult{CVMID: "c1", Status: "accepted", ChainID: tc.chainID,
			Review: &cvm.UpdateReview{NewCompose: &compose, NewEnvKeys: []string{"K"}, EnvChanged: true}}
		p := review.FromUpdate(res, review.Options{})
		if f := p.Files[0]; !strings.Contains(f.Note, tc.why) || f.Full != compose || len(f.Hunks) != 0 {
			t.Errorf("chain %d: compose %+v", tc.chainID, f)
		}
		if !strings.Contains(p.Env.Note, tc.why) || !strings.Contains(p.Env.Note, "the new names are K") {
			t.Errorf("chain %d: env note %q", tc.chainID, p.Env.Note)
		}
	}
}

package safeservice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/safe"
)

// installAPIKit runs install-api-kit.sh (npm ci of apikit/package-lock.json
// into .tools/safe-api-kit) and returns the folder. A missing npm fails
// the test: it never skips.
func installAPIKit(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "bash", "install-api-kit.sh")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("install-api-kit.sh: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// apiKit runs check.cjs in mode with input on stdin and decodes its output.
func apiKit(t *testing.T, dir, mode string, input any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, _ := json.Marshal(input)
	cmd := exec.CommandContext(ctx, "node", "apikit/check.cjs", mode)
	cmd.Env = append(cmd.Environ(), "API_KIT_DIR="+dir)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node check.cjs %s: %v\n%s", mode, err, stderr.String())
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("check.cjs printed %q: %v", stdout.String(), err)
	}
	return out
}

func keyHex(s deployer.Signer, e *env) string {
	for _, a := range e.ln.Chain.Accounts() {
		if a.Address == s.Address() {
			return hexutil.Encode(crypto.FromECDSA(a.PrivateKey))
		}
	}
	return ""
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// TestAPIKitAgainstLocalService: the official client, with its own hashing
// and signing (viem), registers a delegate, has it propose, confirms as an
// owner and lists the queue through the local service; the service refuses
// api-kit's wrong hash and a stranger's proposal as the real one does
// (HttpError with the real status and message); after the Go side executes
// the confirmations on the Safe, api-kit sees the execution.
func TestAPIKitAgainstLocalService(t *testing.T) {
	dir := installAPIKit(t)
	e := newEnv(t)
	ctx := context.Background()
	owner1, owner2, owner3 := e.owners[0], e.owners[1], e.owners[2]
	ci, stranger := e.others[0], e.others[1]
	target := e.ln.DevAccount.Address
	data := []byte{0xca, 0xfe}
	input := map[string]any{
		"url": e.ln.SafeServiceURL, "chainId": e.ln.ChainID, "rpcUrl": e.ln.RPCURL, "safe": e.ln.Safe.Hex(),
		"keys": map[string]string{"owner1": keyHex(owner1, e), "owner2": keyHex(owner2, e), "delegate": keyHex(ci, e), "stranger": keyHex(stranger, e)},
		"tx":   map[string]string{"to": target.Hex(), "data": hexutil.Encode(data)},
	}
	out := apiKit(t, dir, "propose", input)

	var owners []string
	for _, o := range e.owners {
		owners = append(owners, o.Address().Hex())
	}
	info := out["info"].(map[string]any)
	gotOwners := fmt.Sprint(info["owners"])
	if gotOwners != fmt.Sprint(owners) || info["threshold"] != float64(2) || info["nonce"] != "0" || info["singleton"] != safe.SafeL2.Address.Hex() || info["version"] != "1.4.1" {
		t.Errorf("getSafeInfo = %v", info)
	}
	if field(out, "addDelegate", "delegate") != ci.Address().Hex() || fmt.Sprint(out["delegates"]) != "["+ci.Address().Hex()+"]" {
		t.Errorf("delegate registration: %v / %v", out["addDelegate"], out["delegates"])
	}
	// viem's EIP-712 hash is this package's hash.
	tx := safe.Tx{To: target, Data: data, Nonce: 0}
	h := tx.Hash(e.ln.ChainID, e.ln.Safe)
	if !strings.EqualFold(fmt.Sprint(out["safeTxHash"]), h.Hex()) {
		t.Fatalf("api-kit/viem hash %v, Go hash %s", out["safeTxHash"], h.Hex())
	}
	if field(out, "wrongHash", "statusCode") != float64(422) || !strings.Contains(fmt.Sprint(field(out, "wrongHash", "message")), "does not match provided contract-tx-hash") {
		t.Errorf("wrong hash: %v", out["wrongHash"])
	}
	if field(out, "stranger", "statusCode") != float64(422) || !strings.Contains(fmt.Sprint(field(out, "stranger", "message")), "is not an owner or delegate") {
		t.Errorf("stranger: %v", out["stranger"])
	}
	if _, ok := out["proposed"]; ok {
		t.Errorf("proposeTransaction returned %v; the 201 is empty, so api-kit returns undefined", out["proposed"])
	}
	got := out["got"].(map[string]any)
	if got["proposer"] != owner1.Address().Hex() || got["proposedByDelegate"] != ci.Address().Hex() || got["confirmations"] != float64(0) ||
		got["confirmationsRequired"] != float64(2) || got["nonce"] != "0" || got["isExecuted"] != false || got["origin"] != "api-kit check" {
		t.Errorf("getTransaction = %v", got)
	}
	if field(out, "delegateConfirm", "statusCode") != float64(400) || field(out, "delegateConfirm", "message") != "Bad Request" {
		t.Errorf("a delegate's confirmation: %v", out["delegateConfirm"])
	}
	s2, _ := safe.Sign(ctx, hashSigner(t, owner2), h)
	if field(out, "confirmed", "signature") != hexutil.Encode(s2.Static) {
		t.Errorf("confirmTransaction returned %v; owner2's signature is %x (viem and go-ethereum sign deterministically)", out["confirmed"], s2.Static)
	}
	if p := out["pending"].(map[string]any); p["count"] != float64(1) || fmt.Sprint(p["hashes"]) != "["+h.Hex()+"]" || fmt.Sprint(p["confirmations"]) != "[1]" {
		t.Errorf("getPendingTransactions = %v", p)
	}
	if out["nextNonce"] != "1" {
		t.Errorf("getNextNonce = %v, want 1 (one pending at nonce 0)", out["nextNonce"])
	}

	// The Go client confirms as owner 3, and executes what the service holds.
	s3, _ := safe.Sign(ctx, hashSigner(t, owner3), h)
	if err := e.svc.Confirm(ctx, h, s3.Static); err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Transaction(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	var sigs []safe.Signature
	for _, c := range st.Confirmations {
		b, _ := hexutil.Decode(c.Signature)
		p, _ := safe.Parse(h, b)
		sigs = append(sigs, p...)
	}
	safeAddr := e.ln.Safe
	r, err := e.chain.Transact(ctx, ci, deployer.TxRequest{To: &safeAddr, Data: tx.ExecData(safe.Pack(sigs))}, deployer.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := safe.Sign(ctx, hashSigner(t, owner1), h)
	input["safeTxHash"] = h.Hex()
	input["lateSignature"] = hexutil.Encode(s1.Static)
	after := apiKit(t, dir, "after", input)
	if after["isExecuted"] != true || after["isSuccessful"] != true || after["transactionHash"] != r.TxHash.Hex() || after["confirmations"] != float64(2) ||
		after["pending"] != float64(0) || after["nextNonce"] != "1" {
		t.Errorf("after execution api-kit sees %v (tx %s)", after, r.TxHash.Hex())
	}
	if field(after, "lateConfirm", "statusCode") != float64(400) {
		t.Errorf("a confirmation after execution: %v", after["lateConfirm"])
	}
}

package commands_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
	"github.com/cvmdeploy/cvmdeploy/testnet"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestCLILyingCloudExits9: each compose-side lie ends the deploy with exit
// 9 and a message naming what was wrong; the text output says how the
// hash was (not) established.
func TestCLILyingCloudExits9(t *testing.T) {
	for _, tc := range []struct{ mode, says string }{
		{cloud.AdversaryCompose, "docker_compose_file differs"},
		{cloud.AdversaryPreLaunch, "pre_launch_script"},
		{cloud.AdversaryFlipPublicLogs, "public_logs"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f := newFlowEnvWith(t, testnet.LocalnetConfig{Adversary: tc.mode})
			r := runCLI(t, "", f.deployArgs("cli-lied-to")...)
			if r.code != commands.ExitCompose || !strings.Contains(r.stderr, tc.says) || !strings.Contains(r.stderr, "nothing was approved") {
				t.Fatalf("exit %d, want %d saying %q and that nothing was approved\n%s", r.code, commands.ExitCompose, tc.says, r.stderr)
			}
		})
	}
	t.Run("rogue-kms", func(t *testing.T) {
		f := newFlowEnvWith(t, testnet.LocalnetConfig{Adversary: cloud.AdversaryRogueKMS})
		r := runCLI(t, "", f.deployArgs("cli-rogue", "--kms-contract", f.ln.KMSContract.Hex())...)
		if r.code != commands.ExitVerify || !strings.Contains(r.stderr, f.ln.RogueKMSContract.Hex()) {
			t.Fatalf("exit %d, want %d naming the rogue KMS\n%s", r.code, commands.ExitVerify, r.stderr)
		}
	})
}

// TestCLIApprovalPendingExits10: the AppAuth's owner is another account and
// the document needs approve-after-read: the deploy stops with exit 10, the
// call on stdout and in a Safe Transaction Builder file; once the owner
// made it, the same command finishes.
func TestCLIApprovalPendingExits10(t *testing.T) {
	script := "#!/bin/bash\necho official\n"
	f := newFlowEnvWith(t, testnet.LocalnetConfig{InjectPreLaunchScript: &script})
	sum := sha256.Sum256([]byte(script))
	pins := filepath.Join(f.dir, "pins.json")
	mustWrite(t, pins, `{"about": "test", "app_compose": {"official_pre_launch_scripts": [{"version": "9.9.9", "date": "2026-12-01", "form": "file", "sha256": "`+hex.EncodeToString(sum[:])+`", "source": "this test"}]}}`)
	// The owner: another account, funded on anvil.
	ownerKey, _ := crypto.GenerateKey()
	owner := crypto.PubkeyToAddress(ownerKey.PublicKey)
	if err := f.eth.Client().Call(nil, "anvil_setBalance", owner, "0xde0b6b3a7640000"); err != nil {
		t.Fatal(err)
	}
	safeFile := filepath.Join(f.dir, "safe.json")
	args := f.deployArgs("cli-owned", "--owner", owner.Hex(), "--compose-pins", pins, "--safe-file", safeFile)
	r := runCLI(t, "", args...)
	if r.code != commands.ExitPending {
		t.Fatalf("exit %d, want %d\n%s", r.code, commands.ExitPending, r.stderr)
	}
	doc := jsonDoc(t, r)
	calls, _ := doc["pending_calls"].([]any)
	if doc["status"] != "awaiting-approval" || len(calls) != 1 || !strings.Contains(r.stderr, owner.Hex()) {
		t.Fatalf("result %v\n%s", doc, r.stderr)
	}
	if b, err := os.ReadFile(safeFile); err != nil || !strings.Contains(string(b), "transactions") {
		t.Fatalf("safe file: %v %s", err, b)
	}
	// The owner makes the call (here: its key, through the app command).
	call := calls[0].(map[string]any)
	t.Setenv("PRIVATE_KEY", hex.EncodeToString(crypto.FromECDSA(ownerKey)))
	hash := doc["compose_hash"].(string)
	if r := runCLI(t, "", "app", "compose", "add", "--app-id", call["to"].(string), "--compose-hash", hash, "--json"); r.code != 0 {
		t.Fatalf("owner's call: %s", r.stderr)
	}
	t.Setenv("PRIVATE_KEY", f.keyHex)
	r = runCLI(t, "", args...)
	if r.code != 0 {
		t.Fatalf("re-run: exit %d\n%s", r.code, r.stderr)
	}
	if doc := jsonDoc(t, r); doc["status"] != "running" || doc["compose_verified"] != "approved-after-read" {
		t.Fatalf("re-run result %v", doc)
	}
}

package safetx

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

func TestBatchShape(t *testing.T) {
	safe := common.HexToAddress("0x00000000000000000000000000000000000000aa")
	app := common.HexToAddress("0x00000000000000000000000000000000000000bb")
	b, err := New(8453, safe, "allow compose hash", "cvmdeploy update", time.UnixMilli(1700000000123),
		Call{To: app, Data: []byte{0xdf, 0xc7, 0x72, 0x23, 0x01}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != "1.0" || doc["chainId"] != "8453" || doc["createdAt"] != float64(1700000000123) {
		t.Fatalf("header = %v", doc)
	}
	meta := doc["meta"].(map[string]any)
	if meta["createdFromSafeAddress"] != safe.Hex() || meta["name"] != "allow compose hash" {
		t.Fatalf("meta = %v", meta)
	}
	txs := doc["transactions"].([]any)
	tx := txs[0].(map[string]any)
	if tx["to"] != app.Hex() || tx["value"] != "0" || tx["data"] != "0xdfc7722301" {
		t.Fatalf("transaction = %v", tx)
	}
	if v, ok := tx["contractMethod"]; !ok || v != nil {
		t.Fatalf("contractMethod must be present and null for raw calldata, got %v", v)
	}
}

func TestBatchRejectsEmptyInput(t *testing.T) {
	if _, err := New(0, common.Address{}, "x", "", time.Now(), Call{}); err == nil {
		t.Fatal("chain id 0 accepted")
	}
	if _, err := New(1, common.Address{}, "x", "", time.Now()); err == nil {
		t.Fatal("empty batch accepted")
	}
}

// The update's description names the next command with <token> and
// <safe tx hash> placeholders: the file must show them as typed, not as
// \u003c escapes that the Transaction Builder displays verbatim.
func TestBatchKeepsAngleBrackets(t *testing.T) {
	desc := "Then run: cvmdeploy commit-update --token <token> && check > log"
	b, err := New(1, common.Address{}, "a <b> & c", desc, time.Now(), Call{To: common.HexToAddress("0x01")})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"a <b> & c"`, `--token <token> && check > log`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("file lacks %s:\n%s", want, raw)
		}
	}
	if strings.Contains(string(raw), `\u003c`) || strings.Contains(string(raw), `\u0026`) {
		t.Errorf("file HTML-escapes:\n%s", raw)
	}
	var back Batch
	if err := json.Unmarshal(raw, &back); err != nil || back.Meta.Description != desc {
		t.Fatalf("round trip: %v, %q", err, back.Meta.Description)
	}
	if raw[len(raw)-1] == '\n' {
		t.Error("JSON() ends with a newline; callers add their own")
	}
}

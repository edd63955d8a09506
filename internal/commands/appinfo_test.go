package commands_test

import (
	"strings"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
)

// TestAppInfoOwnerKind: app info reads what the owner is from the chain
// (an EOA, another contract; the Safe case is in the Safe end-to-end
// test), and takes the app id as the argument too.
func TestAppInfoOwnerKind(t *testing.T) {
	c := newCLIChain(t)
	kms := c.deployKMS(t)
	eoaOwned := c.deployApp(t, kms)["app_id"].(string)
	contractOwned := c.deployApp(t, kms, "--owner", kms)["app_id"].(string)

	info, _ := jsonOut(t, "app", "info", "--rpc-url", c.url, "--json", eoaOwned)
	if info["owner_kind"] != "eoa" || info["owner"] != c.owner.Hex() {
		t.Fatalf("EOA-owned app: %v", info)
	}
	for _, k := range []string{"safe_threshold", "safe_owners"} {
		if _, ok := info[k]; ok {
			t.Errorf("an EOA owner has %s", k)
		}
	}
	info, _ = jsonOut(t, "app", "info", "--rpc-url", c.url, "--app-id", contractOwned, "--json")
	if info["owner_kind"] != "contract" {
		t.Fatalf("contract-owned app: %v", info)
	}
	r := runCLI(t, "", "app", "info", "--rpc-url", c.url, eoaOwned)
	if r.code != 0 || !strings.Contains(r.stdout, "owner_kind:") || !strings.Contains(r.stdout, "eoa (an account whose key signs)") {
		t.Fatalf("human output: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"--app-id", eoaOwned, contractOwned},
		{eoaOwned, contractOwned},
	} {
		r := runCLI(t, "", append([]string{"app", "info", "--rpc-url", c.url}, args...)...)
		if r.code != commands.ExitUsage {
			t.Errorf("app info %v: exit %d, want %d", args, r.code, commands.ExitUsage)
		}
	}
}

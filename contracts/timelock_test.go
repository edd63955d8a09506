package contracts_test

import (
	"bytes"
	"encoding/json"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

// TestTimelockControllerBehaviour: OpenZeppelin's TimelockController as
// compiled here is the one of the governance vectors (same runtime size,
// same roles after the constructor TimelockController(60, [proposer],
// [0x0], 0x0)), and it enforces the delay: scheduled by the proposer only,
// executable by anyone only once the delay is over.
func TestTimelockControllerBehaviour(t *testing.T) {
	raw, err := os.ReadFile("../testdata/governance/timelock.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		RuntimeCodeBytes int               `json:"runtimeCodeBytes"`
		Roles            map[string]string `json:"roles"`
		After            map[string]bool   `json:"rolesAfterConstructor"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	c, accts := newChain(t, 3)
	deployer, proposer, anyone := accts[0], accts[1], accts[2]
	tb := bindings.NewTimelockController()
	tl, _ := c.deploy(t, deployer, bindings.TimelockControllerMetaData.Bin,
		tb.PackConstructor(big.NewInt(60), []common.Address{proposer.addr}, []common.Address{{}}, common.Address{}), "TimelockController")
	code, err := c.client.CodeAt(c.ctx, tl, nil)
	if err != nil || len(code) != v.RuntimeCodeBytes {
		t.Fatalf("runtime code %d bytes (%v), vectors say %d", len(code), err, v.RuntimeCodeBytes)
	}
	role := func(name string) [32]byte { return common.HexToHash(v.Roles[name]) }
	for what, got := range map[string]bool{
		"proposerIsProposer":  call(t, c, tl, tb.PackHasRole(role("PROPOSER_ROLE"), proposer.addr), tb.UnpackHasRole),
		"proposerIsCanceller": call(t, c, tl, tb.PackHasRole(role("CANCELLER_ROLE"), proposer.addr), tb.UnpackHasRole),
		"zeroIsExecutor":      call(t, c, tl, tb.PackHasRole(role("EXECUTOR_ROLE"), common.Address{}), tb.UnpackHasRole),
		"timelockIsAdmin":     call(t, c, tl, tb.PackHasRole(role("DEFAULT_ADMIN_ROLE"), tl), tb.UnpackHasRole),
		"deployerIsAdmin":     call(t, c, tl, tb.PackHasRole(role("DEFAULT_ADMIN_ROLE"), deployer.addr), tb.UnpackHasRole),
	} {
		if got != v.After[what] {
			t.Errorf("%s = %v, vectors say %v", what, got, v.After[what])
		}
	}
	if d := call(t, c, tl, tb.PackGetMinDelay(), tb.UnpackGetMinDelay); d.Uint64() != 60 {
		t.Fatalf("getMinDelay %v", d)
	}
	// The timelock calls itself here (updateDelay), so the operation needs
	// no other contract.
	data := tb.PackUpdateDelay(big.NewInt(120))
	var salt [32]byte
	schedule := tb.PackSchedule(tl, new(big.Int), data, [32]byte{}, salt, big.NewInt(60))
	id := call(t, c, tl, tb.PackHashOperation(tl, new(big.Int), data, [32]byte{}, salt), tb.UnpackHashOperation)
	denied := c.revert(t, anyone, tl, schedule, "schedule by a non-proposer")
	if !bytes.Equal(denied[:4], crypto.Keccak256([]byte("AccessControlUnauthorizedAccount(address,bytes32)"))[:4]) {
		t.Fatalf("schedule by a non-proposer: revert %x", denied)
	}
	c.send(t, proposer, tl, schedule, "schedule")
	execute := tb.PackExecute(tl, new(big.Int), data, [32]byte{}, salt)
	early := c.revert(t, anyone, tl, execute, "execute before the delay")
	want := append(crypto.Keccak256([]byte("TimelockUnexpectedOperationState(bytes32,bytes32)"))[:4], id[:]...)
	want = append(want, common.LeftPadBytes([]byte{4}, 32)...) // expected: Ready (1 << 2)
	if !bytes.Equal(early, want) {
		t.Fatalf("execute before the delay: revert %x, want %x", early, want)
	}
	c.adjust(61 * time.Second)
	c.send(t, anyone, tl, execute, "execute by anyone")
	if d := call(t, c, tl, tb.PackGetMinDelay(), tb.UnpackGetMinDelay); d.Uint64() != 120 {
		t.Fatalf("getMinDelay after the operation %v, want 120", d)
	}
	if ts := call(t, c, tl, tb.PackGetTimestamp(id), tb.UnpackGetTimestamp); ts.Uint64() != 1 {
		t.Fatalf("getTimestamp of a done operation %v, want 1", ts)
	}
}

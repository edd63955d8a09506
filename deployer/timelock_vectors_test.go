package deployer_test

import (
	"bytes"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/cvmdeploy/cvmdeploy/bindings"
	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// timelockVectors is testdata/governance/timelock.json (made with
// OpenZeppelin 5.4.0 on anvil and ethers; copied unchanged from the shared
// vectors).
type timelockVectors struct {
	RuntimeCodeBytes int               `json:"runtimeCodeBytes"`
	Roles            map[string]string `json:"roles"`
	Selectors        map[string]string `json:"selectors"`
	EventTopic0      map[string]string `json:"eventTopic0"`
	Errors           struct {
		Selectors    map[string]string `json:"selectors"`
		ObservedData map[string]struct {
			Data string `json:"data"`
		} `json:"observedRevertData"`
	} `json:"errors"`
	EOA struct {
		Accept   vectorOp `json:"opAcceptOwnership"`
		AddHash  vectorOp `json:"opAddComposeHash"`
		Schedule []struct {
			Topics []string `json:"topics"`
			Data   string   `json:"data"`
			Name   string   `json:"name"`
		} `json:"scheduleLogs"`
		MinDelay uint64 `json:"minDelay"`
	} `json:"eoaProposerRun"`
	Safe struct {
		Timelock string `json:"timelock"`
		App      string `json:"app"`
		Steps    []struct {
			Step   string `json:"step"`
			SafeTx *struct {
				To   string `json:"to"`
				Data string `json:"data"`
			} `json:"safeTx"`
			OperationID string `json:"operationId"`
			Salt        string `json:"salt"`
			DeviceID    string `json:"deviceId"`
			ComposeHash string `json:"composeHash"`
		} `json:"steps"`
	} `json:"safeAsProposer"`
}

type vectorOp struct {
	Target      string `json:"target"`
	Value       string `json:"value"`
	Data        string `json:"data"`
	Predecessor string `json:"predecessor"`
	Salt        string `json:"salt"`
	ID          string `json:"id"`
	Preimage    string `json:"abiEncodedPreimage"`
}

func (v vectorOp) op(t *testing.T) deployer.TimelockOp {
	t.Helper()
	value, ok := new(big.Int).SetString(v.Value, 10)
	if !ok {
		t.Fatalf("value %q", v.Value)
	}
	return deployer.TimelockOp{
		Calls:       []deployer.TimelockCall{{Target: common.HexToAddress(v.Target), Value: value, Data: common.FromHex(v.Data)}},
		Predecessor: common.HexToHash(v.Predecessor), Salt: common.HexToHash(v.Salt),
	}
}

func loadTimelockVectors(t *testing.T) timelockVectors {
	t.Helper()
	raw, err := os.ReadFile("../testdata/governance/timelock.json")
	if err != nil {
		t.Fatal(err)
	}
	var v timelockVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTimelockVectorsIDsAndCalldata reproduces the vectors' operation ids,
// their ABI preimage and the schedule/scheduleBatch calldata a Safe sent,
// byte for byte.
func TestTimelockVectorsIDsAndCalldata(t *testing.T) {
	v := loadTimelockVectors(t)
	for name, vo := range map[string]vectorOp{"acceptOwnership": v.EOA.Accept, "addComposeHash": v.EOA.AddHash} {
		op := vo.op(t)
		if got := op.ID().Hex(); got != vo.ID {
			t.Errorf("%s: id %s, want %s", name, got, vo.ID)
		}
		if vo.Preimage != "" && hexutil.Encode(op.Preimage()) != vo.Preimage {
			t.Errorf("%s: preimage\n%s\nwant\n%s", name, hexutil.Encode(op.Preimage()), vo.Preimage)
		}
	}
	// The Safe-as-proposer run: step 2 schedules acceptOwnership, step 3 a
	// batch of addDevice and addComposeHash after it.
	app := common.HexToAddress(v.Safe.App)
	accept := deployer.TimelockOp{Calls: []deployer.TimelockCall{{Target: app, Data: deployer.AcceptOwnershipCall().Data}}}
	s2, s3 := v.Safe.Steps[1], v.Safe.Steps[2]
	if got := hexutil.Encode(accept.ScheduleData(60)); got != s2.SafeTx.Data {
		t.Errorf("schedule calldata\n%s\nwant\n%s", got, s2.SafeTx.Data)
	}
	if accept.ID().Hex() != s2.OperationID {
		t.Errorf("schedule id %s, want %s", accept.ID().Hex(), s2.OperationID)
	}
	batch := deployer.TimelockOp{
		Calls: []deployer.TimelockCall{
			{Target: app, Data: deployer.AddDeviceCall(common.HexToHash(s3.DeviceID)).Data},
			{Target: app, Data: deployer.AddComposeHashCall(common.HexToHash(s3.ComposeHash)).Data},
		},
		Predecessor: accept.ID(), Salt: common.HexToHash(s3.Salt),
	}
	if got := hexutil.Encode(batch.ScheduleData(60)); got != s3.SafeTx.Data {
		t.Errorf("scheduleBatch calldata\n%s\nwant\n%s", got, s3.SafeTx.Data)
	}
	if batch.ID().Hex() != s3.OperationID {
		t.Errorf("batch id %s, want %s", batch.ID().Hex(), s3.OperationID)
	}
	if !strings.EqualFold(s3.SafeTx.To, v.Safe.Timelock) || !batch.Batch() || accept.Batch() {
		t.Error("the batch form is chosen by the number of calls")
	}
	// The execute calldata starts with the selectors of the vectors.
	if got := hexutil.Encode(accept.ExecuteData()[:4]); got != v.Selectors["execute(address,uint256,bytes,bytes32,bytes32)"] {
		t.Errorf("execute selector %s", got)
	}
	if got := hexutil.Encode(batch.ExecuteData()[:4]); got != v.Selectors["executeBatch(address[],uint256[],bytes[],bytes32,bytes32)"] {
		t.Errorf("executeBatch selector %s", got)
	}
}

// TestTimelockVectorsABI: roles, every selector, event topic and error of
// the vectors are the bindings' (the reference compiled the same source).
func TestTimelockVectorsABI(t *testing.T) {
	v := loadTimelockVectors(t)
	roles := map[string]common.Hash{"PROPOSER_ROLE": deployer.ProposerRole, "EXECUTOR_ROLE": deployer.ExecutorRole, "CANCELLER_ROLE": deployer.CancellerRole, "DEFAULT_ADMIN_ROLE": deployer.DefaultAdminRole}
	for name, want := range v.Roles {
		if roles[name].Hex() != want {
			t.Errorf("%s = %s, want %s", name, roles[name].Hex(), want)
		}
	}
	a, err := bindings.TimelockControllerMetaData.ParseABI()
	if err != nil {
		t.Fatal(err)
	}
	sigs := map[string]string{}
	for _, m := range a.Methods {
		sigs[m.Sig] = hexutil.Encode(m.ID)
	}
	for sig, want := range v.Selectors {
		if sigs[sig] != want {
			t.Errorf("%s: selector %q, want %s", sig, sigs[sig], want)
		}
	}
	for name, want := range v.EventTopic0 {
		if got := a.Events[name].ID.Hex(); got != want {
			t.Errorf("event %s: topic %s, want %s", name, got, want)
		}
	}
	for sig, want := range v.Errors.Selectors {
		name := sig[:strings.IndexByte(sig, '(')]
		if id := a.Errors[name].ID; hexutil.Encode(id[:4]) != want {
			t.Errorf("error %s: %x, want %s", sig, id[:4], want)
		}
	}
	// The reverts the vectors observed decode to the timelock's errors.
	for name, want := range map[string]string{
		"executeBeforeDelay":    "TimelockUnexpectedOperationState(" + v.EOA.Accept.ID + ", 0x0000000000000000000000000000000000000000000000000000000000000004)",
		"scheduleByNonProposer": "AccessControlUnauthorizedAccount(0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65, " + v.Roles["PROPOSER_ROLE"] + ")",
		"delayBelowMin":         "TimelockInsufficientDelay(59, 60)",
		"predecessorNotDone":    "TimelockUnexecutedPredecessor(" + v.EOA.Accept.ID + ")",
	} {
		if got := deployer.DecodeRevert(common.FromHex(v.Errors.ObservedData[name].Data)); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	// The CallScheduled log of the EOA run carries the addComposeHash call.
	l := v.EOA.Schedule[0]
	vals, err := a.Events["CallScheduled"].Inputs.NonIndexed().Unpack(common.FromHex(l.Data))
	if err != nil {
		t.Fatal(err)
	}
	op := v.EOA.AddHash.op(t)
	if vals[0].(common.Address) != op.Calls[0].Target || !bytes.Equal(vals[2].([]byte), op.Calls[0].Data) ||
		common.Hash(vals[3].([32]byte)) != op.Predecessor || vals[4].(*big.Int).Uint64() != v.EOA.MinDelay || l.Topics[1] != op.ID().Hex() {
		t.Errorf("CallScheduled log %v does not carry the operation", vals)
	}
}

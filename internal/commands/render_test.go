package commands

import (
	"bytes"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// A fixed result for every command, every field set (nested values
// included), rendered by the real printers.
var (
	fixApp      = "0x5fbdb2315678afecb367f032d93f642f64180aa3" // lower case on purpose
	fixAppBare  = "5fbdb2315678afecb367f032d93f642f64180aa3"   // as the cloud answers it
	fixAppSum   = common.HexToAddress(fixApp).Hex()
	fixHash     = "0x" + strings.Repeat("ab", 32)
	fixTx       = common.HexToHash("0x" + strings.Repeat("cd", 32))
	fixSafe     = common.HexToAddress("0x00000000000000000000000000000000000000aa")
	fixCalls    = []cvm.OnChainCall{{Function: "addDevice", To: fixApp, Data: "0x3bf5e9d6" + strings.Repeat("11", 32), TxHash: fixTx.Hex()}, {Function: "addComposeHash", To: fixAppBare, Data: "0x3a2e1b1b" + strings.Repeat("ab", 32)}}
	fixWarnings = []string{"the KMS is not pinned", "a second warning"}
	fixBool     = true
	fixVersion  = uint64(2)
)

func fixedDocs() map[string]func() *result {
	str := func(s string) *string { return &s }
	return map[string]func() *result{
		"deploy": func() *result {
			return deployDoc(&cvm.Result{Name: "my-app", AppID: fixAppBare, ContractAddress: fixApp, DeployerAddress: fixApp, Owner: fixSafe.Hex(),
				ComposeHash: fixHash, KMSID: "kms-base", KMSContract: fixApp, ChainID: 8453, TxHash: fixTx.Hex(), BlockNumber: 7, GasUsed: 260000,
				CVMID: "123", VMUUID: "uuid", Status: "running", DashboardURL: "https://cloud.phala.com/x", KeyVerified: true, KMSTrust: cvm.KMSTrustPinned,
				ComposeVerified: cvm.ComposeApprovedAfterRead, PreLaunch: "official", ApproveTxHash: fixTx.Hex(), RevokeTxHash: fixTx.Hex(),
				PendingCalls: fixCalls, Attestation: "matches", Resumed: []string{"provision", "app"}, Journal: "/j.json", Warnings: fixWarnings})
		},
		"deploy --dry-run": func() *result {
			return dryRunDoc(&cvm.DryRunResult{Name: "my-app", DryRun: true, ComposeHash: fixHash, KMSID: "kms-base", OnChain: true, KMSTrust: cvm.KMSTrustFlag,
				ComposeVerified: cvm.ComposePredicted, PredictedAppID: fixApp, EstimatedCostWei: "1", EstimatedCostETH: "0.000000000000000001",
				Simulation:    &deployer.AppDeploySimulation{PredictedAppID: common.HexToAddress(fixApp), ChainID: 8453, GasLimit: 1, MaxFeePerGas: big.NewInt(1), MaxCost: big.NewInt(1)},
				CommitRequest: map[string]any{"app_id": fixApp, "compose_file": map[string]any{"name": "my-app", "allowed_envs": []string{"A", "B"}, "features": []any{map[string]any{"x": 1}}}, "node_id": 3, "empty": map[string]any{}},
				EnvKeys:       []string{"A", "B"}, Warnings: fixWarnings})
		},
		"update": func() *result {
			return updateDoc(&cvm.UpdateResult{CVMID: "123", AppID: fixAppBare, ComposeHash: fixHash, CorrelationID: "corr", OnChain: fixCalls,
				CommitToken: "tok", ChainID: 8453, Owner: fixSafe.Hex(), KMSTrust: cvm.KMSTrustPinned, ComposeVerified: cvm.ComposeRead, Status: "prepared",
				Resumed: []string{"prepare"}, Journal: "/j.json", Warnings: fixWarnings})
		},
		"commit-update": func() *result {
			return commitUpdateDoc("123", &phala.CommitUpdateResponse{CorrelationID: "corr", Status: "accepted"})
		},
		"provision": func() *result {
			return provisionDoc(&cvm.ProvisionFile{Name: "my-app", EnvKeys: []string{"A"}, Provision: &cvm.ProvisionStep{ComposeHash: fixHash, DeviceID: fixHash,
				KMSID: "kms-base", ChainID: 8453, KMSContract: fixApp, OnChain: true, KMSTrust: cvm.KMSTrustPinned, ComposePlan: "predicted"}})
		},
		"provision (cloud KMS)": func() *result {
			return provisionDoc(&cvm.ProvisionFile{Name: "my-app", Provision: &cvm.ProvisionStep{ComposeHash: fixHash, AppID: fixAppBare}})
		},
		"status": func() *result {
			return statusDoc("123", &cvm.StatusResult{CVM: &phala.CVM{Name: "my-app", AppID: str(fixAppBare), VMUUID: str("uuid"), ComposeHash: str(fixHash)},
				State: phala.CVMState{Status: "running", BootProgress: "done", BootError: "none"}, KMSTrust: cvm.KMSTrustPinned, Attestation: "matches", AllowedOnChain: &fixBool})
		},
		"app deploy": func() *result {
			return appDeployDoc(&deployer.AppDeployment{AppID: common.HexToAddress(fixApp), ContractAddress: common.HexToAddress(fixApp), DeployerAddress: fixSafe,
				Owner: fixSafe, KMS: fixSafe, TxHash: fixTx, ProxyTxHash: fixTx, BlockNumber: 1, GasUsed: 2, ChainID: 8453}, "https://basescan.org/tx/x")
		},
		"app deploy --dry-run": func() *result {
			return appDeploySimDoc(&deployer.AppDeploySimulation{PredictedAppID: common.HexToAddress(fixApp), Owner: fixSafe, KMS: fixSafe, ChainID: 8453,
				GasLimit: 1, MaxFeePerGas: big.NewInt(1e9), MaxCost: big.NewInt(1e15), Nonce: 3, Data: []byte{1, 2}}, fixSafe)
		},
		"app info": func() *result {
			h := common.HexToHash(fixHash)
			return appInfoDoc(&deployer.AppInfo{App: common.HexToAddress(fixApp), ChainID: 8453, Owner: fixSafe, PendingOwner: &fixSafe, AllowAnyDevice: true,
				RequireTcbUpToDate: &fixBool, Implementation: fixSafe, Version: &fixVersion, ComposeHash: &h, ComposeHashAllowed: &fixBool,
				DeviceID: &h, DeviceAllowed: nil, KMS: fixSafe, Registered: &fixBool},
				&deployer.OwnerInfo{Address: fixSafe, Kind: deployer.OwnerTimelock, Timelock: &deployer.TimelockInfo{Address: fixSafe, MinDelay: 60, OpenExecution: true, Proposers: []common.Address{fixSafe}}}, false)
		},
		"app compose add": func() *result {
			r := newResult().set("app_id", fixApp).set("compose_hash", fixHash)
			return appCallDoc(r, "addComposeHash", fixSafe, &deployer.TxResult{TxHash: fixTx, BlockNumber: 1, GasUsed: 2}, 8453, "https://basescan.org/tx/x")
		},
		"kms deploy": func() *result {
			return kmsDeployDoc(&deployer.KMSDeployment{KMSContract: fixSafe, AppImplementation: fixSafe, KMSImplementation: fixSafe, Owner: fixSafe,
				ChainID: 31337, TxHashes: []common.Hash{fixTx, fixTx}, GasUsed: 1, BlockNumber: 2})
		},
		"kms verify-pubkey": func() *result {
			ts := uint64(1700000000)
			return verifyPubkeyDoc([]byte{2, 3}, "kmsInfo() of 0x… on chain 8453", "v1", &ts)
		},
		"testnet up": func() *result {
			return testnetDoc(&testnet.Localnet{RPCURL: "http://127.0.0.1:8545", ChainID: 31337, KMSContract: fixSafe, KMSID: "kms-local", APIPrefix: "http://127.0.0.1:1/api/v1",
				APIKey: "phak_local_x", DevAccount: testnet.DevAccount{Address: fixSafe}, KMSOwner: fixSafe, Adversary: "rogue-kms", RogueKMSContract: fixSafe}, time.Second)
		},
	}
}

// goValueMarks are what fmt prints for maps, slices of structs, pointers to
// structs and formatting mistakes: none may reach a person.
var goValueMarks = []string{"map[", "[{", "&{", "%!"}

func TestTextOutputHasNoGoValues(t *testing.T) {
	for name, doc := range fixedDocs() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeResult(&b, false, doc()); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, m := range goValueMarks {
				if strings.Contains(out, m) {
					t.Errorf("text output holds %q:\n%s", m, out)
				}
			}
			// Every address is 0x-checksummed, whatever form it came in.
			if strings.Contains(out, fixAppBare) {
				t.Errorf("text output holds an address that is not checksummed:\n%s", out)
			}
		})
	}
	var b bytes.Buffer
	if err := writeBatchDryRunText(&b, &cvm.BatchDryRunResult{Apps: []*cvm.DryRunResult{{Name: "a", ComposeHash: fixHash, PredictedAppID: fixApp, EstimatedCostETH: "1"}, {Name: "b", ComposeHash: fixHash}}, EstimatedCostETH: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := writeBatchText(&b, &cvm.BatchResult{Apps: []cvm.BatchAppResult{{Result: &cvm.Result{Name: "a", AppID: fixAppBare, Status: "running"}, Error: "x"}}}); err != nil {
		t.Fatal(err)
	}
	b.WriteString(currentBuild().String())
	for _, m := range goValueMarks {
		if strings.Contains(b.String(), m) {
			t.Errorf("batch/version output holds %q:\n%s", m, b.String())
		}
	}
}

// The human forms of nested values: the dry run's commit request as
// indented lines, the calls one per line, lists joined.
func TestTextOutputForms(t *testing.T) {
	docs := fixedDocs()
	var b bytes.Buffer
	if err := writeResult(&b, false, docs["deploy --dry-run"]()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\ncommit_request:\n    app_id: " + fixAppSum + "\n    compose_file:\n      allowed_envs: A, B\n",
		"      features:\n        - x: 1\n",
		"    empty: none\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, b.String())
		}
	}
	hasLine(t, b.String(), "env_keys", "A, B")
	hasLine(t, b.String(), "warnings", "the KMS is not pinned, a second warning")
	b.Reset()
	if err := writeResult(&b, false, docs["update"]()); err != nil {
		t.Fatal(err)
	}
	hasLine(t, b.String(), "app_id", fixAppSum)
	for _, want := range []string{
		"onchain_calls:\n    addDevice on " + fixAppSum + ", sent in " + fixTx.Hex() + ", calldata 0x3bf5e9d6",
		"\n    addComposeHash on " + fixAppSum + ", calldata 0x3a2e1b1b",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("update output lacks %q:\n%s", want, b.String())
		}
	}
	hasLine(t, b.String(), "compose_verified", "read (the hash is your current, on-chain-allowed document with exactly your changes)")
	// JSON keeps the machine forms: the calls as an array, the address
	// checksummed there too.
	b.Reset()
	if err := writeResult(&b, true, docs["update"]()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"app_id": "`+fixAppSum+`"`) || !strings.Contains(b.String(), `"onchain_calls": [`) {
		t.Errorf("update JSON:\n%s", b.String())
	}
}

// hasLine checks that out holds the line "key:  value" (any alignment).
func hasLine(t *testing.T, out, key, value string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key && strings.TrimSpace(v) == value {
			return
		}
	}
	t.Errorf("output lacks the line %s: %s\n%s", key, value, out)
}

func TestChecksummed(t *testing.T) {
	for in, want := range map[string]string{
		fixApp:                  fixAppSum,
		fixAppBare:              fixAppSum,
		strings.ToUpper(fixApp): fixAppSum,
		"":                      "",
		"(assigned when the AppAuth is deployed)": "(assigned when the AppAuth is deployed)",
		"0x1234": "0x1234",
	} {
		if got := checksummed(in); got != want {
			t.Errorf("checksummed(%q) = %q, want %q", in, got, want)
		}
	}
}

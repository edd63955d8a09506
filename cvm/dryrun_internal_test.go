package cvm

import (
	"context"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/testnet"
)

// TestPredictBatchAppIDs: ids follow the KMS's CREATE nonce per KMS, in
// batch order; where the simulation contradicts that rule, no id is
// predicted rather than a wrong one.
func TestPredictBatchAppIDs(t *testing.T) {
	a := testnet.NewTestAnvil(t, testnet.AnvilConfig{})
	ctx := context.Background()
	chain, err := deployer.Dial(ctx, a.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	// Two "KMS" addresses with no transactions: nonce 0 on anvil.
	kmsA, kmsB, other := common.HexToAddress("0xA0"), common.HexToAddress("0xB0"), common.HexToAddress("0xC0")
	app := func(kms, predicted common.Address) *DryRunResult {
		return &DryRunResult{Simulation: &deployer.AppDeploySimulation{KMS: kms, PredictedAppID: predicted}, CommitRequest: map[string]any{}}
	}
	apps := []*DryRunResult{
		app(kmsA, crypto.CreateAddress(kmsA, 0)),
		app(kmsB, other), // a factory that does not follow the rule
		app(kmsA, crypto.CreateAddress(kmsA, 0)),
		app(kmsB, other),
	}
	if err := predictBatchAppIDs(ctx, chain, apps); err != nil {
		t.Fatal(err)
	}
	want := []string{crypto.CreateAddress(kmsA, 0).Hex(), "", crypto.CreateAddress(kmsA, 1).Hex(), ""}
	for i, dr := range apps {
		if dr.PredictedAppID != want[i] {
			t.Errorf("app %d: predicted %q, want %q", i, dr.PredictedAppID, want[i])
		}
		wantCommit := any(want[i])
		if want[i] == "" {
			wantCommit = appIDAssigned
		}
		if dr.CommitRequest["app_id"] != wantCommit || dr.CommitRequest["contract_address"] != wantCommit {
			t.Errorf("app %d: commit request %v, want app_id %v", i, dr.CommitRequest, wantCommit)
		}
	}
}

package cvm_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/cvm"
	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

var deviceAddedTopic = crypto.Keccak256Hash([]byte("DeviceAdded(bytes32)"))

// deviceAdds counts the app's DeviceAdded(device) logs.
func (e *env) deviceAdds(t *testing.T, app string, device common.Hash) int {
	t.Helper()
	logs, err := e.eth.FilterLogs(context.Background(), ethereum.FilterQuery{
		FromBlock: big.NewInt(0), Addresses: []common.Address{common.HexToAddress(app)}, Topics: [][]common.Hash{{deviceAddedTopic}},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range logs {
		if common.BytesToHash(l.Data) == device {
			n++
		}
	}
	return n
}

func (e *env) nonce(t *testing.T) uint64 {
	t.Helper()
	n, err := e.eth.NonceAt(context.Background(), e.ln.DevAccount.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// node returns the local cloud's node with id.
func (e *env) node(t *testing.T, id int64) cloud.Node {
	t.Helper()
	for _, n := range e.ln.Nodes {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("no node %d in %v", id, e.ln.Nodes)
	return cloud.Node{}
}

// appCVMs counts the app's CVMs on the cloud.
func (e *env) appCVMs(t *testing.T, app string) int {
	t.Helper()
	vms, err := e.api(t, e.ln.APIKey).AppCVMs(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	return len(vms)
}

func nodeID(n int64) *int64 { return &n }

// TestReplicaOnSecondNode: a replica on node 2 gets node 2's device allowed
// on-chain once, its commit lands and it runs; a second replica on node 2
// sends no transaction; two more without a node go where the cloud puts
// them, and only the new node's device is approved, once. status --app-id
// sees every CVM with its node's device allowed.
func TestReplicaOnSecondNode(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	r.Trust.KMSContract = e.ln.KMSContract
	src, err := r.Deploy(context.Background(), e.config("replica-src"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	node2, node3 := e.node(t, 2), e.node(t, 3)

	res, err := r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2), Wait: true, WaitTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("replicate: %v", err)
	}
	if len(res.Replicas) != 1 || res.Status != "running" {
		t.Fatalf("result %+v", res)
	}
	rep := res.Replicas[0]
	if rep.Status != "running" || rep.NodeID == nil || *rep.NodeID != 2 || rep.DeviceID != hex.EncodeToString(node2.DeviceID[:]) || rep.TxHash == "" || rep.CVMID == "" {
		t.Fatalf("replica %+v", rep)
	}
	if rep.Attestation != cvm.AttestationMatches {
		t.Errorf("attestation %q", rep.Attestation)
	}
	if res.ComposeVerified != cvm.ComposeRead || res.DeviceCheck != cvm.DeviceCheckNodeList || res.KMSTrust != cvm.KMSTrustFlag || res.ComposeHash != src.ComposeHash {
		t.Fatalf("checks: compose %q device %q kms %q hash %s", res.ComposeVerified, res.DeviceCheck, res.KMSTrust, res.ComposeHash)
	}
	if n := e.deviceAdds(t, src.AppID, node2.DeviceID); n != 1 {
		t.Fatalf("%d DeviceAdded(node 2) logs, want 1", n)
	}
	if res.Journal != "" {
		t.Errorf("a finished run keeps its journal %s", res.Journal)
	}

	nonce := e.nonce(t)
	again, err := r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2), Wait: true})
	if err != nil {
		t.Fatalf("second replica: %v", err)
	}
	if e.nonce(t) != nonce || again.Replicas[0].TxHash != "" || again.Replicas[0].Status != "running" || len(again.OnChain) != 0 {
		t.Fatalf("second replica on node 2 sent a transaction or did not run: %+v", again)
	}

	// Two more, placed by the cloud: node 3 (no CVM yet) and node 1.
	more, err := r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, Count: 2, Wait: true})
	if err != nil {
		t.Fatalf("two more replicas: %v", err)
	}
	nodes := map[int64]bool{}
	for _, rp := range more.Replicas {
		if rp.NodeID == nil || rp.Status != "running" {
			t.Fatalf("replica %+v", rp)
		}
		nodes[*rp.NodeID] = true
	}
	if !nodes[3] || !nodes[1] || e.nonce(t) != nonce+1 || e.deviceAdds(t, src.AppID, node3.DeviceID) != 1 {
		t.Fatalf("replicas on %v, %d transactions: want nodes 1 and 3 and one addDevice", nodes, e.nonce(t)-nonce)
	}

	st, err := r.AppStatus(context.Background(), src.AppID)
	if err != nil {
		t.Fatalf("app status: %v", err)
	}
	if len(st.CVMs) != 5 || !st.OnChainChecked {
		t.Fatalf("app status %+v", st)
	}
	for _, c := range st.CVMs {
		if c.NodeID == nil || c.DeviceID != strings.TrimPrefix(e.node(t, *c.NodeID).DeviceID.Hex(), "0x") || c.DeviceAllowed == nil || !*c.DeviceAllowed {
			t.Errorf("CVM %+v", c)
		}
	}
	r.RPCURL = ""
	if st, err = r.AppStatus(context.Background(), src.AppID); err != nil || st.OnChainChecked || st.CVMs[0].DeviceAllowed != nil {
		t.Fatalf("without an RPC node: %+v, %v", st, err)
	}
}

// TestLyingCloudReplica: a cloud honest at deploy time lies in a replica's
// 465; the replica is refused before anything is approved or created.
func TestLyingCloudReplica(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want error
	}{
		{cloud.AdversaryReplicaCompose, cvm.ErrComposeRule},
		{cloud.AdversaryReplicaApp, cvm.ErrComposeRule},
		{cloud.AdversaryReplicaDevice, cvm.ErrDeviceMismatch},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnv(t)
			r := e.runner(t)
			src, err := r.Deploy(context.Background(), e.config("lied-replica"))
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			if err := e.ln.Cloud.SetAdversary(tc.mode); err != nil {
				t.Fatal(err)
			}
			nonce := e.nonce(t)
			_, err = r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("replicate: %v; want %v", err, tc.want)
			}
			if e.nonce(t) != nonce || e.deviceAdds(t, src.AppID, e.node(t, 2).DeviceID) != 0 || e.composeHashAdds(t, src.AppID) != 1 {
				t.Fatal("something was approved for a lie")
			}
			if n := e.appCVMs(t, src.AppID); n != 1 {
				t.Fatalf("%d CVMs of the app, want only the source", n)
			}
		})
	}
}

// TestReplicateResumesAtEveryStep stops a replicate run right after each
// journaled step and re-runs it: it finishes with one replica, the device
// is added once, and nothing is approved or committed twice.
func TestReplicateResumesAtEveryStep(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	node2 := e.node(t, 2).DeviceID
	for _, stop := range []string{cvm.ReplicateStepBase, cvm.ReplicateStepPrepare, cvm.ReplicateStepTx, cvm.ReplicateStepApprove,
		cvm.ReplicateStepCommitSent, cvm.ReplicateStepCommit, cvm.ReplicateStepRunning} {
		t.Run(stop, func(t *testing.T) {
			src, err := r.Deploy(context.Background(), e.config("resume-"+strings.TrimPrefix(stop, "replicate-")))
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			cfg := cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2), Wait: true}
			crash := e.runner(t)
			crash.AfterStep = func(step string) error {
				if step == stop {
					return errStop
				}
				return nil
			}
			if _, err := crash.Replicate(context.Background(), cfg); !errors.Is(err, errStop) {
				t.Fatalf("first run: %v", err)
			}
			res, err := r.Replicate(context.Background(), cfg)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if res.Replicas[0].Status != "running" || len(res.Resumed) == 0 {
				t.Fatalf("resumed %+v", res)
			}
			if n := e.deviceAdds(t, src.AppID, node2); n != 1 {
				t.Fatalf("%d DeviceAdded logs, want 1", n)
			}
			if n := e.appCVMs(t, src.AppID); n != 2 {
				t.Fatalf("%d CVMs of the app, want the source and one replica", n)
			}
		})
	}
}

// TestReplicateAdoptsALostCommit: the commit reached the service but its
// answer was lost (here: the run stopped after marking the commit as sent,
// and the commit is made with the journal's token). The re-run finds the
// replica among the app's CVMs instead of making a second one.
func TestReplicateAdoptsALostCommit(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	src, err := r.Deploy(context.Background(), e.config("lost-commit"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	cfg := cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2)}
	crash := e.runner(t)
	crash.AfterStep = func(step string) error {
		if step == cvm.ReplicateStepCommitSent {
			return errStop
		}
		return nil
	}
	first, err := crash.Replicate(context.Background(), cfg)
	if !errors.Is(err, errStop) {
		t.Fatalf("first run: %v", err)
	}
	raw, err := os.ReadFile(first.Journal)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(first.Journal); st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v: it holds commit tokens", st.Mode().Perm())
	}
	var j cvm.ReplicateJournal
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	rp := j.Replicas[0]
	if _, err := e.api(t, e.ln.APIKey).CommitReplica(context.Background(), src.CVMID, phala.CommitReplicaRequest{
		Token: rp.CommitToken, ComposeHash: rp.ComposeHash, TransactionHash: rp.TxHash}); err != nil {
		t.Fatalf("commit behind the run's back: %v", err)
	}
	res, err := r.Replicate(context.Background(), cfg)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if n := e.appCVMs(t, src.AppID); n != 2 || res.Replicas[0].CVMID == "" {
		t.Fatalf("%d CVMs, replica %+v: want the lost one adopted", n, res.Replicas[0])
	}
}

// TestReplicateOwnerIsNotTheSigner: an AppAuth owned by another account gets
// the pending addDevice (ErrApprovalPending) and nothing is sent; once the
// owner made the call, the same command commits with already-registered.
// --prepare-only hands over the calls and the token and creates nothing.
func TestReplicateOwnerIsNotTheSigner(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	owner := e.ln.Chain.Accounts()[1]
	cfg := e.config("owned-elsewhere")
	cfg.Owner = owner.Address
	src, err := r.Deploy(context.Background(), cfg)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	node2 := e.node(t, 2).DeviceID
	rcfg := cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2), Wait: true}

	prep, err := r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2), PrepareOnly: true})
	if err != nil {
		t.Fatalf("prepare-only: %v", err)
	}
	if prep.Status != "prepared" || prep.Replicas[0].CommitToken == "" || len(prep.OnChain) != 1 || prep.OnChain[0].Function != "addDevice" || prep.Owner != owner.Address.Hex() {
		t.Fatalf("prepared %+v", prep)
	}

	nonce := e.nonce(t)
	res, err := r.Replicate(context.Background(), rcfg)
	if !errors.Is(err, cvm.ErrApprovalPending) {
		t.Fatalf("replicate: %v; want the owner's approval pending", err)
	}
	if res.Status != "awaiting-approval" || len(res.OnChain) != 1 || res.OnChain[0].Data == "" || res.Replicas[0].CommitToken != "" {
		t.Fatalf("pending result %+v", res)
	}
	if e.nonce(t) != nonce || e.appCVMs(t, src.AppID) != 1 {
		t.Fatal("the signer sent something or a replica exists before the owner approved")
	}

	chain, err := deployer.Dial(context.Background(), e.ln.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	if _, err := chain.AddDevice(context.Background(), deployer.NewKeySigner(owner.PrivateKey), common.HexToAddress(src.AppID), node2, deployer.TxOptions{}); err != nil {
		t.Fatalf("the owner's addDevice: %v", err)
	}
	done, err := r.Replicate(context.Background(), rcfg)
	if err != nil {
		t.Fatalf("after the owner's call: %v", err)
	}
	if done.Replicas[0].Status != "running" || done.Replicas[0].TxHash != "" || e.nonce(t) != nonce {
		t.Fatalf("finished %+v", done)
	}
}

// TestReplicateWithNewEnv: --env re-encrypts to the app's verified key; a
// key outside the document's allowed_envs is refused before anything is
// sent.
func TestReplicateWithNewEnv(t *testing.T) {
	e := newEnv(t)
	r := e.runner(t)
	src, err := r.Deploy(context.Background(), e.config("replica-env"))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	res, err := r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(1), Wait: true,
		EnvFlags: []string{"GREETING=replica-greeting", "DB_PASSWORD=replica-password"}})
	if err != nil {
		t.Fatalf("replicate: %v", err)
	}
	if res.KeyVerified == nil || !*res.KeyVerified || res.Replicas[0].Status != "running" || res.Replicas[0].TxHash != "" {
		t.Fatalf("result %+v", res)
	}
	nonce := e.nonce(t)
	_, err = r.Replicate(context.Background(), cvm.ReplicateConfig{CVM: src.CVMID, NodeID: nodeID(2), EnvFlags: []string{"OTHER=x"}, Fresh: true})
	if !errors.Is(err, cvm.ErrInvalidConfig) || !strings.Contains(err.Error(), "OTHER") {
		t.Fatalf("env key outside allowed_envs: %v", err)
	}
	if e.nonce(t) != nonce || e.appCVMs(t, src.AppID) != 2 {
		t.Fatal("something was sent for a refused env")
	}
}

// TestReplicateUnderEveryVersion: replicate and status --app-id work under
// every API version the client speaks, against one local cloud answering
// each in its shapes (integer or hashed ids, legacy or flat CVM objects,
// legacy GET /cvms items).
func TestReplicateUnderEveryVersion(t *testing.T) {
	e := newEnv(t)
	for i, v := range phala.Versions {
		t.Run(v, func(t *testing.T) {
			r, _ := e.versioned(t, v)
			ctx := context.Background()
			src, err := r.Deploy(ctx, e.config(fmt.Sprintf("replica-versions-%d", i)))
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			node := int64(2 + i%2)
			res, err := r.Replicate(ctx, cvm.ReplicateConfig{CVM: src.CVMID, NodeID: &node, Wait: true})
			if err != nil {
				t.Fatalf("replicate: %v", err)
			}
			rep := res.Replicas[0]
			if rep.Status != "running" || rep.NodeID == nil || *rep.NodeID != node || res.KMSTrust == "" || res.DeviceCheck != cvm.DeviceCheckNodeList {
				t.Fatalf("replicate under %s: %+v", v, res)
			}
			st, err := r.AppStatus(ctx, src.AppID)
			if err != nil || len(st.CVMs) != 2 || !st.OnChainChecked {
				t.Fatalf("app status under %s: %+v, %v", v, st, err)
			}
			for _, c := range st.CVMs {
				if c.NodeID == nil || c.DeviceAllowed == nil || !*c.DeviceAllowed {
					t.Fatalf("CVM under %s: %+v", v, c)
				}
			}
		})
	}
}

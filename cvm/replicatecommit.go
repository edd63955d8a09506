package cvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/cvmdeploy/cvmdeploy/deployer"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

// Topics of the AppAuth events that show what an owner call allowed.
var (
	deviceAddedTopic      = crypto.Keccak256Hash([]byte("DeviceAdded(bytes32)"))
	composeHashAddedTopic = crypto.Keccak256Hash([]byte("ComposeHashAdded(bytes32)"))
)

// pendingReplicas are the prepared replicas not created yet.
func (p *replicate) pendingReplicas() []*ReplicaStep {
	var out []*ReplicaStep
	for _, rp := range p.j.Replicas {
		if rp.CVMID == "" && rp.CommitToken != "" {
			out = append(out, rp)
		}
	}
	return out
}

// neededCalls reads from the chain what the prepared replicas still miss:
// each distinct device not allowed (unless the app allows any device), and
// the compose hash if it is not allowed. The chain, not the service's
// onchain_status, decides what is sent.
func (p *replicate) neededCalls(ctx context.Context) ([]deployer.AppCall, common.Address, error) {
	var calls []deployer.AppCall
	var owner common.Address
	devices := map[string]bool{}
	hashes := map[string]bool{}
	var hashCalls []deployer.AppCall
	for _, rp := range p.pendingReplicas() {
		q := deployer.AppInfoQuery{App: p.app}
		device, err := hexBytes32(rp.DeviceID)
		if err != nil {
			return nil, owner, fmt.Errorf("the journal's device id: %w", err)
		}
		hash, err := hexBytes32(rp.ComposeHash)
		if err != nil {
			return nil, owner, fmt.Errorf("the journal's compose hash: %w", err)
		}
		if !devices[rp.DeviceID] {
			q.DeviceID = &device
		}
		if !hashes[rp.ComposeHash] {
			q.ComposeHash = &hash
		}
		if q.DeviceID == nil && q.ComposeHash == nil {
			continue
		}
		info, err := p.chain.AppInfo(ctx, q)
		if err != nil {
			return nil, owner, fmt.Errorf("read AppAuth %s: %w", p.app.Hex(), err)
		}
		owner = info.Owner
		if q.DeviceID != nil {
			devices[rp.DeviceID] = true
			if !info.AllowAnyDevice && (info.DeviceAllowed == nil || !*info.DeviceAllowed) {
				calls = append(calls, deployer.AddDeviceCall(device))
			}
		}
		if q.ComposeHash != nil {
			hashes[rp.ComposeHash] = true
			if info.ComposeHashAllowed == nil || !*info.ComposeHashAllowed {
				hashCalls = append(hashCalls, deployer.AddComposeHashCall(hash))
			}
		}
	}
	calls = append(calls, hashCalls...)
	p.res.Owner = owner.Hex()
	p.res.OnChain = nil
	for _, c := range calls {
		p.res.OnChain = append(p.res.OnChain, OnChainCall{Function: c.Name, To: p.app.Hex(), Data: hexutil.Encode(c.Data)})
	}
	return calls, owner, nil
}

// stopPrepared ends a --prepare-only run: the calls the owner must make
// and each replica's commit token; the journal stays for the re-run (or
// commit-replica) that finishes.
func (p *replicate) stopPrepared(ctx context.Context) error {
	calls, owner, err := p.neededCalls(ctx)
	if err != nil {
		return err
	}
	for i, rp := range p.j.Replicas {
		if rp.CVMID == "" {
			p.res.Replicas[i].CommitToken = rp.CommitToken
		}
	}
	p.res.Status = "prepared"
	p.say("✓ prepared %d replica(s): have the owner (%s) execute %d call(s) on %s, then re-run this command (or commit-replica with each token)", len(p.pendingReplicas()), owner.Hex(), len(calls), p.app.Hex())
	return nil
}

// approve is step 3: the missing calls, through the AppAuth's owner
// (routeOwnerCalls, the one routing layer): sent by the signer when it owns
// the AppAuth, otherwise left to the owner as pending calls. Each replica
// then records the mined transaction that allowed its device (or hash).
func (p *replicate) approve(ctx context.Context) error {
	if p.j.Approved != nil {
		p.resume(ReplicateStepApprove)
		return nil
	}
	if len(p.pendingReplicas()) == 0 {
		return nil
	}
	if p.j.Calls == nil {
		p.j.Calls = &OwnerCalls{}
	} else if p.j.Calls.sent() {
		p.resume(ReplicateStepTx)
	}
	var owner common.Address
	txHash, err := p.routeOwnerCalls(ctx, ownerRequest{
		chain: p.chain, chainID: p.res.ChainID, app: p.app, tx: p.cfg.Tx,
		journal: p.j.Calls, save: p.save, step: ReplicateStepTx,
		what: "allow the replicas' node devices (and their compose hash)",
		needed: func(ctx context.Context) ([]deployer.AppCall, common.Address, error) {
			calls, o, err := p.neededCalls(ctx)
			owner = o
			return calls, o, err
		},
	})
	if err != nil {
		if pe, ok := pendingOf(err); ok {
			p.res.Status = "awaiting-approval"
			p.res.Owner = pe.Owner.Hex()
			p.res.OnChain = pe.Calls
			for _, rp := range p.pendingReplicas() {
				rp.Status = "awaiting-approval"
			}
		}
		return err
	}
	if err := p.mapApprovals(ctx); err != nil {
		return err
	}
	p.res.OnChain = nil
	for _, m := range p.j.Calls.Mined {
		p.res.OnChain = append(p.res.OnChain, OnChainCall{Function: m.Function, To: p.app.Hex(), TxHash: m.TxHash})
	}
	if txHash == "" {
		p.say("✓ the replicas' devices and compose hash are already allowed on-chain: nothing to send")
	}
	p.j.Approved = &ApprovedStep{TxHash: txHash, Owner: owner.Hex()}
	return p.save(ReplicateStepApprove)
}

// mapApprovals gives each pending replica the mined owner call that
// allowed its device, else its compose hash, read from the receipts: the
// transaction commit-replica is shown must have done it.
func (p *replicate) mapApprovals(ctx context.Context) error {
	byDevice, byHash := map[string]string{}, map[string]string{}
	for _, m := range p.j.Calls.Mined {
		rcpt, err := p.chain.Eth().TransactionReceipt(ctx, common.HexToHash(m.TxHash))
		if err != nil {
			return fmt.Errorf("read the receipt of %s %s: %w", m.Function, m.TxHash, err)
		}
		for _, l := range rcpt.Logs {
			if l.Address != p.app || len(l.Topics) == 0 || len(l.Data) != 32 {
				continue
			}
			arg := common.Bytes2Hex(l.Data)
			switch l.Topics[0] {
			case deviceAddedTopic:
				if _, ok := byDevice[arg]; !ok {
					byDevice[arg] = m.TxHash
				}
			case composeHashAddedTopic:
				if _, ok := byHash[arg]; !ok {
					byHash[arg] = m.TxHash
				}
			}
		}
	}
	for _, rp := range p.pendingReplicas() {
		if tx, ok := byDevice[rp.DeviceID]; ok {
			rp.TxHash = tx
		} else {
			rp.TxHash = byHash[rp.ComposeHash]
		}
	}
	return nil
}

// commitOne is step 4 for replica i: commit-replica with its token and the
// transaction that allowed it (already-registered when nothing had to
// change). On 466 (the token is used or expired) a replica committed
// already — an earlier run whose answer was lost, or commit-replica by hand —
// is found among the app's CVMs; otherwise the token is replaced by
// preparing again, once, and only if the service answers the same node,
// device and hash.
func (p *replicate) commitOne(ctx context.Context, i int) error {
	rp := p.j.Replicas[i]
	if rp.CVMID != "" {
		p.resume(ReplicateStepCommit)
		return nil
	}
	tx := rp.TxHash
	if tx == "" {
		tx = phala.AlreadyRegistered
	}
	if !rp.CommitSent {
		rp.CommitSent = true
		if err := p.save(ReplicateStepCommitSent); err != nil {
			return err
		}
	}
	p.say("→ committing replica %d", i+1)
	vm, err := p.API.CommitReplica(ctx, p.cfg.CVM, phala.CommitReplicaRequest{Token: rp.CommitToken, ComposeHash: rp.ComposeHash, TransactionHash: tx})
	if errors.Is(err, phala.ErrHashExpired) {
		// A used token: an earlier run whose answer was lost, or
		// commit-replica by hand after --prepare-only, created it.
		found, aerr := p.adopt(ctx, rp)
		if aerr != nil {
			return aerr
		}
		if found != nil {
			p.say("… replica %d was committed already (CVM %s)", i+1, cvmRef(found))
			p.record(rp, found)
			return p.save(ReplicateStepCommit)
		}
		p.say("… replica %d's commit token is no longer valid (466): preparing it again", i+1)
		if err := p.prepareAgain(ctx, i); err != nil {
			return err
		}
		vm, err = p.API.CommitReplica(ctx, p.cfg.CVM, phala.CommitReplicaRequest{Token: rp.CommitToken, ComposeHash: rp.ComposeHash, TransactionHash: tx})
	}
	if err != nil {
		return fmt.Errorf("commit replica %d of CVM %s: %w", i+1, p.cfg.CVM, err)
	}
	p.record(rp, vm)
	p.say("✓ replica %d committed: CVM %s on node %s", i+1, rp.CVMID, nodeWords(rp.NodeID))
	return p.save(ReplicateStepCommit)
}

// prepareAgain asks for replica i again on its node and accepts only the
// same device and hash, which are approved already.
func (p *replicate) prepareAgain(ctx context.Context, i int) error {
	rp := p.j.Replicas[i]
	node := rp.NodeID
	if node == nil {
		node = p.cfg.NodeID
	}
	enc, err := p.envCiphertext(ctx)
	if err != nil {
		return err
	}
	out, err := p.API.ReplicateCVM(ctx, p.cfg.CVM, phala.ReplicaRequest{NodeID: node, EncryptedEnv: enc, ComposeHash: rp.ComposeHash}, phala.ReplicaOptions{PrepareOnly: true})
	if err != nil {
		return fmt.Errorf("prepare replica %d again: %w", i+1, err)
	}
	if out.CVM != nil {
		return fmt.Errorf("preparing replica %d again created CVM %s at once although X-Prepare-Only was sent; check the app's CVMs before re-running", i+1, cvmRef(out.CVM))
	}
	again := &ReplicaStep{}
	if err := p.check(out.Registration, again, node); err != nil {
		return err
	}
	if again.DeviceID != rp.DeviceID || out.Registration.ComposeHash != rp.ComposeHash {
		return fmt.Errorf("%w: preparing replica %d again answered device %s and hash %s, not the approved %s and %s; nothing was committed", ErrDeviceMismatch, i+1, again.DeviceID, out.Registration.ComposeHash, rp.DeviceID, rp.ComposeHash)
	}
	rp.CommitToken = out.Registration.CommitToken
	return p.save(ReplicateStepPrepare)
}

// adopt finds the replica an earlier run created but did not journal: the
// app's CVM, on the replica's node when known, that existed neither before
// the run nor as another replica of it.
func (p *replicate) adopt(ctx context.Context, rp *ReplicaStep) (*phala.CVM, error) {
	vms, err := p.API.AppCVMs(ctx, p.res.AppID)
	if err != nil {
		return nil, fmt.Errorf("list app %s's CVMs: %w", p.res.AppID, err)
	}
	taken := map[string]bool{}
	for _, id := range p.j.Known {
		taken[id] = true
	}
	for _, other := range p.j.Replicas {
		if other.CVMID != "" {
			taken[other.CVMID] = true
		}
	}
	for i := range vms {
		vm := &vms[i]
		if taken[cvmRef(vm)] {
			continue
		}
		if rp.NodeID != nil {
			if n, ok := vm.NodeID(); !ok || n != *rp.NodeID {
				continue
			}
		}
		return vm, nil
	}
	return nil, nil
}

// finish waits for every replica when asked (and checks its attestation),
// then closes the journal: a finished run is not resumed by the next one.
func (p *replicate) finish(ctx context.Context) error {
	if p.cfg.Wait {
		if p.cfg.WaitTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, p.cfg.WaitTimeout)
			defer cancel()
		}
		for i, rp := range p.j.Replicas {
			if rp.Running {
				p.resume(ReplicateStepRunning)
				continue
			}
			p.say("… waiting for replica %d (CVM %s) to run", i+1, rp.CVMID)
			st, err := p.WaitRunning(ctx, rp.CVMID)
			if st.Status != "" {
				rp.Status = st.Status
			}
			if err != nil {
				_ = p.save("replicate-boot-failed")
				return err
			}
			rp.Running = true
			if rp.ComposeHash != "" {
				if rp.Attestation, err = p.CheckAttestation(ctx, rp.CVMID, rp.ComposeHash); err != nil {
					_ = p.save("replicate-attestation")
					return err
				}
			}
			if err := p.save(ReplicateStepRunning); err != nil {
				return err
			}
		}
		p.res.Status = "running"
	}
	if p.path != "" {
		if err := p.Journals.Remove(p.path); err != nil {
			return err
		}
		p.res.Journal = ""
	}
	return nil
}

// CommitReplica finishes one replica prepared with replicate --prepare-only
// once the owner's calls are done (by a multisig, typically): POST
// /cvms/{id}/commit-replica.
func (r *Runner) CommitReplica(ctx context.Context, cvmID, token, composeHash, txHash string) (*phala.CVM, error) {
	if cvmID == "" || token == "" || composeHash == "" || txHash == "" {
		return nil, fmt.Errorf("%w: commit-replica needs --cvm, --token, --compose-hash and --transaction-hash (or already-registered)", ErrInvalidConfig)
	}
	return r.API.CommitReplica(ctx, cvmID, phala.CommitReplicaRequest{Token: token, ComposeHash: composeHash, TransactionHash: txHash})
}

package cvm

import (
	"context"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/kms"
	"github.com/cvmdeploy/cvmdeploy/phala"
)

func nodeWords(id *int64) string {
	if id == nil {
		return "(unlisted)"
	}
	return fmt.Sprint(*id)
}

// envCiphertext encrypts the new env once per run, to the app's key:
// verified against the KMS root on-chain (verifiedAppKey), or the cloud
// KMS's key of the source. "" when no env was given.
func (p *replicate) envCiphertext(ctx context.Context) (string, error) {
	if !p.envGiven || p.encrypted != "" {
		return p.encrypted, nil
	}
	var key string
	if p.onChain() {
		contract, chainID, ref, _ := kmsOf(p.src)
		step, err := p.verifiedAppKey(ctx, p.chain, keyCheck{KMSRef: ref, KMSContract: common.HexToAddress(contract), ChainID: chainID,
			AppID: p.app.Hex(), Skip: p.cfg.InsecureSkipKeyVerification})
		if err != nil {
			return "", err
		}
		key = step.PublicKey
		verified := step.Verified
		p.res.KeyVerified = &verified
	} else {
		if p.src.EncryptedEnvPubkey == nil || *p.src.EncryptedEnvPubkey == "" {
			return "", fmt.Errorf("CVM %s has no encrypted_env_pubkey to encrypt the replicas' env to", p.cfg.CVM)
		}
		key = *p.src.EncryptedEnvPubkey
	}
	enc, err := kms.EncryptEnv(p.env, key)
	if err != nil {
		return "", fmt.Errorf("encrypt the env: %w", err)
	}
	p.say("✓ env encrypted locally (%d variables)", len(p.env))
	p.encrypted = enc
	return enc, nil
}

// check applies the trust rule to a replica's 465 before anything is
// approved: the compose hash must be one the chain allows for the source's
// current document, the app and the KMS must be the source's, and the
// device must be the target node's (node, when given) in the API's node
// list. It fills rp's node and device.
func (p *replicate) check(reg *phala.ComposeHashRegistrationRequired, rp *ReplicaStep, node *int64) error {
	if _, ok := p.j.Base.Allowed[reg.ComposeHash]; !ok {
		return fmt.Errorf("%w: the service's 465 for a replica of CVM %s names compose hash %s, but the source's current document, allowed on-chain, hashes to %s: a replica runs the same document, so nothing was approved", ErrComposeRule, p.cfg.CVM, reg.ComposeHash, p.baseHash())
	}
	if reg.AppID != "" {
		if a, err := appAddress(reg.AppID); err != nil || a != p.app {
			return fmt.Errorf("%w: the service's 465 for a replica names app %s, but CVM %s belongs to app %s; nothing was approved", ErrComposeRule, reg.AppID, p.cfg.CVM, p.app.Hex())
		}
	}
	if ki := reg.KMSInfo; ki != nil && ki.KMSContractAddress != nil {
		if want, _, _, _ := kmsOf(p.src); !strings.EqualFold(*ki.KMSContractAddress, want) {
			return fmt.Errorf("%w: the service's 465 for a replica names KMS %s, but CVM %s uses %s; nothing was approved", ErrKMSUntrusted, *ki.KMSContractAddress, p.cfg.CVM, want)
		}
	}
	device, err := phala.NormalizeComposeHash(reg.DeviceID) // a device id is 32 bytes of hex too
	if err != nil {
		return fmt.Errorf("%w: the service's 465 for a replica names device %q, not 32 bytes of hex; nothing was approved", ErrDeviceMismatch, reg.DeviceID)
	}
	if reg.CommitToken == "" {
		return fmt.Errorf("the service's 465 for a replica of CVM %s carries no commit token", p.cfg.CVM)
	}
	rp.DeviceID, rp.NodeID, rp.DeviceCheck = device, node, DeviceCheckNodeList
	if p.nodes == nil {
		p.deviceUnlisted(rp)
		return nil
	}
	if node != nil {
		n := p.nodes[*node]
		switch {
		case n.DeviceID == "":
			p.deviceUnlisted(rp)
		case n.DeviceID != device:
			return fmt.Errorf("%w: the service asks to allow device %s for a replica on node %d, but the API lists node %d (%s) with device %s; nothing was approved", ErrDeviceMismatch, device, *node, *node, n.Name, n.DeviceID)
		}
		return nil
	}
	unlisted := false
	for id, n := range p.nodes {
		if n.DeviceID == device {
			id := id
			rp.NodeID = &id
			return nil
		}
		unlisted = unlisted || n.DeviceID == ""
	}
	if unlisted {
		p.deviceUnlisted(rp)
		return nil
	}
	return fmt.Errorf("%w: the service asks to allow device %s for a replica, which is no node's in the API's node list; nothing was approved", ErrDeviceMismatch, device)
}

func (p *replicate) deviceUnlisted(rp *ReplicaStep) {
	rp.DeviceCheck = DeviceCheckUnlisted
	p.warn(fmt.Sprintf("the API lists no device for the replica's node: device %s is allowed as the service named it", rp.DeviceID))
}

// record notes a created replica.
func (p *replicate) record(rp *ReplicaStep, vm *phala.CVM) {
	rp.CVMID, rp.Status = cvmRef(vm), vm.Status
	if n, ok := vm.NodeID(); ok && rp.NodeID == nil {
		rp.NodeID = &n
	}
	if rp.DeviceID == "" && rp.NodeID != nil && p.nodes != nil {
		rp.DeviceID = p.nodes[*rp.NodeID].DeviceID
	}
}

// fill copies the journal into the result.
func (p *replicate) fill() {
	p.res.Replicas = p.res.Replicas[:0]
	p.res.DeviceCheck = ""
	for _, rp := range p.j.Replicas {
		r := ReplicaResult{CVMID: rp.CVMID, NodeID: rp.NodeID, DeviceID: rp.DeviceID, Status: rp.Status, TxHash: rp.TxHash, Attestation: rp.Attestation}
		if p.res.DeviceCheck != DeviceCheckUnlisted && rp.DeviceCheck != "" {
			p.res.DeviceCheck = rp.DeviceCheck
		}
		if r.Status == "" {
			r.Status = "pending"
			if rp.CommitToken != "" {
				r.Status = "prepared"
			}
		}
		p.res.Replicas = append(p.res.Replicas, r)
	}
}

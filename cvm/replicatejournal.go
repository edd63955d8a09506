package cvm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// ReplicateJournal is what one replicate run has done so far, written
// atomically (mode 0600) after every step that changed something outside
// this machine. It holds the replicas' one-time commit tokens, credentials
// for one commit each, and no key or env value.
type ReplicateJournal struct {
	Version     int       `json:"version"`
	Kind        string    `json:"kind"` // "replicate"
	CVM         string    `json:"cvm"`
	APIPrefix   string    `json:"api_prefix"`
	StartedAt   time.Time `json:"started_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Fingerprint string    `json:"fingerprint"`

	// Base is the source CVM's current document as the chain allows it.
	Base *ReplicaBase `json:"base,omitempty"`
	// Known are the app's CVMs before the run: a replica whose creation was
	// answered but not journaled is the app's CVM on its node outside Known.
	Known    []string       `json:"known_cvms"`
	Replicas []*ReplicaStep `json:"replicas"`
	Calls    *OwnerCalls    `json:"calls,omitempty"`
	Approved *ApprovedStep  `json:"approved,omitempty"`
}

// ReplicaBase is the source's current app-compose, checked against the
// chain: the hashes (one per serialization) the AppAuth allows.
type ReplicaBase struct {
	// Allowed maps each allowed hash of the document to its serialization.
	Allowed     map[string]string `json:"allowed"`
	AllowedEnvs []string          `json:"allowed_envs"`
}

// ReplicaStep is one replica's progress.
type ReplicaStep struct {
	// Requested is set before a request that creates the replica at once
	// (a cloud-KMS app): it may have been created even if the answer was
	// lost. An on-chain request only prepares (X-Prepare-Only) and needs no
	// mark.
	Requested bool `json:"requested,omitempty"`
	// NodeID is the node, as asked for (--node-id) or found in the node
	// list by the 465's device.
	NodeID   *int64 `json:"node_id,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	// DeviceCheck is how the device was established (DeviceCheckNodeList,
	// DeviceCheckUnlisted).
	DeviceCheck string `json:"device_check,omitempty"`
	ComposeHash string `json:"compose_hash,omitempty"`
	CommitToken string `json:"commit_token,omitempty"`
	// TxHash is the transaction that allowed what the replica needed ("":
	// nothing had to be approved, or the owner did it elsewhere).
	TxHash string `json:"tx_hash,omitempty"`
	// CommitSent is set before commit-replica is sent.
	CommitSent  bool   `json:"commit_sent,omitempty"`
	CVMID       string `json:"cvm_id,omitempty"`
	Status      string `json:"status,omitempty"`
	Running     bool   `json:"running,omitempty"`
	Attestation string `json:"attestation,omitempty"`
}

func (s *ReplicaStep) prepared() bool { return s.CommitToken != "" || s.CVMID != "" }

// fingerprint ties a replicate journal to its inputs (env keys, not values).
func (p *replicate) fingerprint() string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(p.cfg.CVM)
	if p.cfg.NodeID != nil {
		field(fmt.Sprint("node=", *p.cfg.NodeID))
	}
	field(fmt.Sprint("count=", p.cfg.Count))
	if p.envGiven {
		field("env=" + strings.Join(p.envKeys, ","))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// openJournal loads an unfinished earlier run of the same replicate
// command, or starts a new one. An earlier run with other inputs that
// already approved or committed something is refused; one that did not is
// started over.
func (p *replicate) openJournal() error {
	p.j = &ReplicateJournal{Kind: "replicate", CVM: p.cfg.CVM, APIPrefix: p.API.BaseURL(), StartedAt: p.now().UTC(), Fingerprint: p.fingerprint()}
	if p.Journals.Dir == "" {
		return nil
	}
	p.path = p.Journals.Path(p.API.BaseURL(), "replicate-"+p.cfg.CVM)
	p.res.Journal = p.path
	if p.cfg.Fresh {
		return p.Journals.Remove(p.path)
	}
	var prev ReplicateJournal
	found, err := p.Journals.load(p.path, &prev, func() int { return prev.Version })
	if err != nil || !found {
		return err
	}
	if prev.Kind != "replicate" {
		return fmt.Errorf("%w: %s is not a replicate journal; move it away or re-run with --fresh", ErrInvalidConfig, p.path)
	}
	if prev.Fingerprint != p.j.Fingerprint {
		if prev.Calls.sent() || prev.anyCommitted() {
			return fmt.Errorf("%w: the journal %s belongs to a replicate run of CVM %s with other inputs (node, count or env keys) that already sent transactions or created replicas; restore the inputs to finish it, or re-run with --fresh", ErrInvalidConfig, p.path, p.cfg.CVM)
		}
		p.say("inputs changed since the last replicate run of CVM %s; starting over (nothing had been approved or created)", p.cfg.CVM)
		return nil
	}
	p.say("resuming the replicate run of CVM %s from %s", p.cfg.CVM, p.path)
	p.j = &prev
	return nil
}

func (j *ReplicateJournal) anyCommitted() bool {
	for _, r := range j.Replicas {
		if r.CommitSent || r.CVMID != "" || r.Requested {
			return true
		}
	}
	return false
}

// save journals the run's state, then runs the AfterStep hook.
func (p *replicate) save(step string) error {
	if p.Journals.Dir != "" {
		p.j.Version = JournalVersion
		p.j.UpdatedAt = time.Now().UTC()
		if err := p.Journals.saveJSON(p.path, p.j); err != nil {
			return err
		}
	}
	if p.AfterStep != nil {
		return p.AfterStep(step)
	}
	return nil
}

package cvm

import (
	"fmt"
	"time"

	"github.com/cvmdeploy/cvmdeploy/phala"
)

// UpdateJournal is what an update has done so far, written atomically
// (mode 0600) after every step that changed something outside this machine.
// It holds the one-time commit token, a credential for one commit, and no
// key or env value.
type UpdateJournal struct {
	Version     int       `json:"version"`
	Kind        string    `json:"kind"` // "update"
	CVM         string    `json:"cvm"`
	APIPrefix   string    `json:"api_prefix"`
	StartedAt   time.Time `json:"started_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Fingerprint string    `json:"fingerprint"`

	Base     *UpdateBase     `json:"base,omitempty"`
	Prepared *UpdatePrepared `json:"prepared,omitempty"`
	// Patch is the PATCH body that was prepared (compose file, pre-launch
	// script, env keys and the env encrypted to the app's key, never in
	// clear): commit-update sends it again if the prepared update expires.
	Patch *phala.PatchCVMRequest `json:"patch,omitempty"`
	// Accepted is the correlation id of an update applied at once.
	Accepted string `json:"accepted,omitempty"`
	// Verified is how the prepared hash was established (read, unchecked).
	Verified string        `json:"verified,omitempty"`
	Calls    *OwnerCalls   `json:"calls,omitempty"`
	Approved *ApprovedStep `json:"approved,omitempty"`
	// Committed is commit-update's correlation id.
	Committed string `json:"committed,omitempty"`
}

// UpdateBase is the CVM's current document, as the chain allows it.
type UpdateBase struct {
	ComposeHash   string `json:"compose_hash"`
	Serialization string `json:"serialization"`
	Doc           string `json:"doc"`
}

// UpdatePrepared is the service's answer to the prepared update.
type UpdatePrepared struct {
	ComposeHash string `json:"compose_hash"`
	DeviceID    string `json:"device_id,omitempty"`
	AppID       string `json:"app_id,omitempty"`
	CommitToken string `json:"commit_token"`
}

// openJournal loads an unfinished earlier run of the same update, or starts
// a new one. An earlier run with other inputs that already sent something
// on-chain is refused; one that only prepared is started over.
func (u *update) openJournal() error {
	u.j = &UpdateJournal{Kind: "update", CVM: u.cfg.CVM, APIPrefix: u.API.BaseURL(), StartedAt: u.now().UTC(), Fingerprint: u.fingerprint()}
	if u.Journals.Dir == "" {
		return nil
	}
	u.path = u.Journals.Path(u.API.BaseURL(), "update-"+u.cfg.CVM)
	u.res.Journal = u.path
	if u.cfg.Fresh {
		return u.Journals.Remove(u.path)
	}
	var prev UpdateJournal
	found, err := u.Journals.load(u.path, &prev, func() int { return prev.Version })
	if err != nil || !found {
		return err
	}
	if prev.Fingerprint != u.j.Fingerprint {
		if prev.Calls.sent() {
			return fmt.Errorf("%w: the journal %s belongs to an update of CVM %s with other inputs that already sent transactions; restore the inputs to finish it, or re-run with --fresh", ErrInvalidConfig, u.path, u.cfg.CVM)
		}
		u.say("inputs changed since the last run of this update; starting over (nothing had been sent on-chain)")
		return nil
	}
	u.say("resuming the update of CVM %s from %s", u.cfg.CVM, u.path)
	u.j = &prev
	if u.j.Prepared != nil && u.j.Base == nil && u.cfg.ComposeCheck != ComposeCheckOff && u.j.Verified == "" {
		return fmt.Errorf("%w: the journal %s was prepared with --compose-check=off; finish it with that flag, or re-run with --fresh", ErrInvalidConfig, u.path)
	}
	return nil
}

// save journals the update's state, then runs the AfterStep hook.
func (u *update) save(step string) error {
	if u.Journals.Dir != "" {
		u.j.Version = JournalVersion
		u.j.UpdatedAt = time.Now().UTC()
		if err := u.Journals.saveJSON(u.path, u.j); err != nil {
			return err
		}
	}
	if u.AfterStep != nil {
		return u.AfterStep(step)
	}
	return nil
}

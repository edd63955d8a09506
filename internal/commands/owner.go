package commands

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// setOwnerInfo adds what the owner is (owner_kind) and its details to a
// result: a Safe's version, m-of-n, owners and nonce.
func setOwnerInfo(r *result, o *deployer.OwnerInfo) {
	r.set("owner_kind", string(o.Kind))
	switch o.Kind {
	case deployer.OwnerEOA:
		r.note("owner_kind", "an account whose key signs")
		if o.Delegation != nil {
			r.set("owner_delegation", o.Delegation.Hex()).note("owner_delegation", "EIP-7702: the account runs this code")
		}
	case deployer.OwnerSafe:
		s := o.Safe
		r.note("owner_kind", fmt.Sprintf("a Safe: %d of %d owners confirm each change", s.Threshold, len(s.Owners)))
		r.set("safe_version", s.Version).
			set("safe_threshold", s.Threshold).
			set("safe_owners", addressList(s.Owners)).
			set("safe_nonce", s.Nonce).
			set("safe_singleton", s.Singleton.Hex())
		if s.SingletonName != "" {
			r.note("safe_singleton", "the canonical "+s.SingletonName+" v1.4.1")
		} else {
			r.note("safe_singleton", "not a canonical v1.4.1 singleton")
		}
	case deployer.OwnerTimelock:
		tl := o.Timelock
		exec := "only its executors execute"
		if tl.OpenExecution {
			exec = "anyone executes"
		}
		r.note("owner_kind", fmt.Sprintf("an OpenZeppelin TimelockController: its proposers schedule each change, %s after %ds", exec, tl.MinDelay))
		r.set("timelock_min_delay", tl.MinDelay).
			set("timelock_open_execution", tl.OpenExecution).
			set("timelock_proposers", addressList(tl.Proposers)).
			set("timelock_executors", addressList(tl.Executors)).
			set("timelock_admins", addressList(tl.Admins))
	case deployer.OwnerContract:
		r.note("owner_kind", "a contract that is neither a Safe nor a timelock cvmdeploy knows")
	}
}

// addressList prints addresses comma-separated for people; --json gets
// the array.
type addressList []common.Address

func (l addressList) String() string { return strings.Join(l.hex(), ", ") }

// MarshalJSON writes EIP-55 addresses (common.Address alone is lowercase).
func (l addressList) MarshalJSON() ([]byte, error) { return json.Marshal(l.hex()) }

func (l addressList) hex() []string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.Hex()
	}
	return s
}

package deployer

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
)

// Kinds of history events (HistoryEvent.Kind).
const (
	KindAppDeployedViaFactory   = "app_deployed_via_factory"
	KindAppRegistered           = "app_registered"
	KindInitialized             = "initialized"
	KindComposeHashAdded        = "compose_hash_added"
	KindComposeHashRemoved      = "compose_hash_removed"
	KindDeviceAdded             = "device_added"
	KindDeviceRemoved           = "device_removed"
	KindAllowAnyDeviceSet       = "allow_any_device_set"
	KindRequireTcbUpToDateSet   = "require_tcb_up_to_date_set"
	KindUpgradesDisabled        = "upgrades_disabled"
	KindOwnershipTransferStart  = "ownership_transfer_started"
	KindOwnershipTransferred    = "ownership_transferred"
	KindUpgraded                = "upgraded"
	KindTimelockCallScheduled   = "timelock_call_scheduled"
	KindTimelockCallExecuted    = "timelock_call_executed"
	KindTimelockCancelled       = "timelock_cancelled"
	timelockEventCallSalt       = "CallSalt"
	timelockEventCallScheduled  = "CallScheduled"
	timelockEventCallExecuted   = "CallExecuted"
	timelockEventCancelled      = "Cancelled"
	kmsEventAppRegistered       = "AppRegistered"
	kmsEventAppDeployedViaFacto = "AppDeployedViaFactory"
)

// appEventKinds maps the AppAuth's events to kinds. PolicyChanged is left
// out: newer DstackApps emit it next to each of these, so it would double
// every line.
var appEventKinds = map[string]string{
	"Initialized":              KindInitialized,
	"ComposeHashAdded":         KindComposeHashAdded,
	"ComposeHashRemoved":       KindComposeHashRemoved,
	"DeviceAdded":              KindDeviceAdded,
	"DeviceRemoved":            KindDeviceRemoved,
	"AllowAnyDeviceSet":        KindAllowAnyDeviceSet,
	"RequireTcbUpToDateSet":    KindRequireTcbUpToDateSet,
	"UpgradesDisabled":         KindUpgradesDisabled,
	"OwnershipTransferStarted": KindOwnershipTransferStart,
	"OwnershipTransferred":     KindOwnershipTransferred,
	"Upgraded":                 KindUpgraded,
}

// HistoryQuery selects an app's history.
type HistoryQuery struct {
	App common.Address
	// KMS, when set, adds the app's registration on that KMS.
	KMS common.Address
	// Since is the first block read; zero means the app's creation block
	// (found with CreationBlock).
	Since uint64
	// To is the last block read; zero means the head.
	To uint64
	// Range bounds one eth_getLogs request (see LogQuery.Range).
	Range uint64
}

// HistoryEvent is one thing that happened to an app, from one log.
type HistoryEvent struct {
	Block    uint64 `json:"block"`
	Time     string `json:"time"` // the block's time, RFC 3339, UTC
	TxHash   string `json:"tx_hash"`
	LogIndex uint   `json:"log_index"`
	Kind     string `json:"kind"`
	// Actor is the account that sent the transaction.
	Actor string `json:"actor"`
	// Contract emitted the log: the AppAuth, the KMS or a timelock.
	Contract       string `json:"contract"`
	ComposeHash    string `json:"compose_hash,omitempty"`
	DeviceID       string `json:"device_id,omitempty"`
	Enabled        *bool  `json:"enabled,omitempty"`
	PreviousOwner  string `json:"previous_owner,omitempty"`
	NewOwner       string `json:"new_owner,omitempty"`
	Implementation string `json:"implementation,omitempty"`
	Deployer       string `json:"deployer,omitempty"`
	Version        uint64 `json:"version,omitempty"`
	// Timelock operations: the id, the call's index in the operation, the
	// call (function and arguments decoded when the AppAuth's), its raw
	// data, and for a scheduled call the delay, ETA, predecessor and salt.
	OperationID string  `json:"operation_id,omitempty"`
	Index       *uint64 `json:"index,omitempty"`
	Call        string  `json:"call,omitempty"`
	Data        string  `json:"data,omitempty"`
	Delay       *uint64 `json:"delay,omitempty"`
	ETA         string  `json:"eta,omitempty"`
	Predecessor string  `json:"predecessor,omitempty"`
	Salt        string  `json:"salt,omitempty"`
}

// History is an app's events in chain order.
type History struct {
	App       common.Address   `json:"app_id"`
	KMS       common.Address   `json:"kms_contract,omitempty"`
	Owner     common.Address   `json:"owner"`
	Timelocks []common.Address `json:"timelocks,omitempty"`
	FromBlock uint64           `json:"from_block"`
	ToBlock   uint64           `json:"to_block"`
	Events    []HistoryEvent   `json:"events"`
}

// AppHistory reads what happened to an app from its logs: allow-list and
// flag changes, ownership transfers and upgrades on the AppAuth; its
// registration on the KMS (when q.KMS is set); and the calls on the app
// that a timelock owning it (now or before) scheduled, executed or
// cancelled. Logs are read in bounded ranges, block times and senders in
// batches.
func (c *Client) AppHistory(ctx context.Context, q HistoryQuery) (*History, error) {
	info, err := c.AppInfo(ctx, AppInfoQuery{App: q.App})
	if err != nil {
		return nil, err
	}
	h := &History{App: q.App, KMS: q.KMS, Owner: info.Owner, FromBlock: q.Since, Events: []HistoryEvent{}}
	if h.FromBlock == 0 {
		if h.FromBlock, err = c.CreationBlock(ctx, q.App); err != nil {
			return nil, err
		}
	}
	if h.ToBlock = q.To; h.ToBlock == 0 {
		var head hexutil.Uint64
		if err := c.call(ctx, &head, "eth_blockNumber"); err != nil {
			return nil, fmt.Errorf("eth_blockNumber: %w", err)
		}
		h.ToBlock = uint64(head)
	}
	var timelocks []common.Address
	if ok, err := c.IsTimelock(ctx, info.Owner); err != nil {
		return nil, err
	} else if ok {
		timelocks = append(timelocks, info.Owner)
	}
	addrs := []common.Address{q.App}
	if q.KMS != (common.Address{}) {
		addrs = append(addrs, q.KMS)
	}
	logs, err := c.Logs(ctx, LogQuery{Addresses: append(addrs, timelocks...), Topics: [][]common.Hash{historyTopics()}, From: h.FromBlock, To: h.ToBlock, Range: q.Range})
	if err != nil {
		return nil, err
	}
	// Earlier owners that are timelocks: their operations on the app too.
	var more []common.Address
	for _, l := range logs {
		if l.Address != q.App || len(l.Topics) < 3 || l.Topics[0] != appEvent("OwnershipTransferred").ID {
			continue
		}
		o := common.BytesToAddress(l.Topics[2].Bytes())
		if o == (common.Address{}) || slices.Contains(timelocks, o) || slices.Contains(more, o) {
			continue
		}
		if ok, err := c.IsTimelock(ctx, o); err != nil {
			return nil, err
		} else if ok {
			more = append(more, o)
		}
	}
	if len(more) > 0 {
		extra, err := c.Logs(ctx, LogQuery{Addresses: more, Topics: [][]common.Hash{timelockTopics()}, From: h.FromBlock, To: h.ToBlock, Range: q.Range})
		if err != nil {
			return nil, err
		}
		logs = append(logs, extra...)
		timelocks = append(timelocks, more...)
	}
	h.Timelocks = timelocks
	slices.SortFunc(logs, func(a, b types.Log) int {
		if a.BlockNumber != b.BlockNumber {
			return cmpUint(a.BlockNumber, b.BlockNumber)
		}
		return cmpUint(uint64(a.Index), uint64(b.Index))
	})
	h.Events = decodeHistory(logs, q.App, q.KMS, timelocks)
	return h, c.fillTimesAndActors(ctx, h.Events)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func appEvent(name string) abi.Event      { return appBinding().GetABI().Events[name] }
func kmsEvent(name string) abi.Event      { return kmsBinding().GetABI().Events[name] }
func timelockEvent(name string) abi.Event { return timelockBinding().GetABI().Events[name] }

func timelockTopics() []common.Hash {
	var out []common.Hash
	for _, n := range []string{timelockEventCallScheduled, timelockEventCallExecuted, timelockEventCancelled, timelockEventCallSalt} {
		out = append(out, timelockEvent(n).ID)
	}
	return out
}

// historyTopics are the topic0s of every event the history reads.
func historyTopics() []common.Hash {
	var out []common.Hash
	for name := range appEventKinds {
		out = append(out, appEvent(name).ID)
	}
	slices.SortFunc(out, func(a, b common.Hash) int { return bytes.Compare(a[:], b[:]) })
	out = append(out, kmsEvent(kmsEventAppRegistered).ID, kmsEvent(kmsEventAppDeployedViaFacto).ID)
	return append(out, timelockTopics()...)
}

// decodeHistory turns the logs into events, dropping the KMS's and the
// timelocks' logs about other apps.
func decodeHistory(logs []types.Log, app, kms common.Address, timelocks []common.Address) []HistoryEvent {
	appKinds := map[common.Hash]string{}
	for name, kind := range appEventKinds {
		appKinds[appEvent(name).ID] = kind
	}
	ours := map[common.Hash]bool{} // timelock operations that call the app
	var out []HistoryEvent
	salts := map[common.Hash]string{}
	for _, l := range logs {
		if len(l.Topics) == 0 || l.Removed {
			continue
		}
		ev := HistoryEvent{Block: l.BlockNumber, TxHash: l.TxHash.Hex(), LogIndex: l.Index, Contract: l.Address.Hex()}
		t0 := l.Topics[0]
		switch {
		case l.Address == app:
			kind, ok := appKinds[t0]
			if !ok || !decodeAppEvent(&ev, kind, l) {
				continue
			}
			ev.Kind = kind
		case l.Address == kms && kms != (common.Address{}):
			switch t0 {
			case kmsEvent(kmsEventAppRegistered).ID:
				if len(l.Data) != 32 || common.BytesToAddress(l.Data) != app {
					continue
				}
				ev.Kind = KindAppRegistered
			case kmsEvent(kmsEventAppDeployedViaFacto).ID:
				if len(l.Topics) < 3 || common.BytesToAddress(l.Topics[1].Bytes()) != app {
					continue
				}
				ev.Kind = KindAppDeployedViaFactory
				ev.Deployer = common.BytesToAddress(l.Topics[2].Bytes()).Hex()
			default:
				continue
			}
		case slices.Contains(timelocks, l.Address):
			if len(l.Topics) < 2 {
				continue
			}
			id := l.Topics[1]
			ev.OperationID = id.Hex()
			switch t0 {
			case timelockEvent(timelockEventCallScheduled).ID, timelockEvent(timelockEventCallExecuted).ID:
				name := timelockEventCallScheduled
				ev.Kind = KindTimelockCallScheduled
				if t0 == timelockEvent(timelockEventCallExecuted).ID {
					name, ev.Kind = timelockEventCallExecuted, KindTimelockCallExecuted
				}
				vals, err := timelockEvent(name).Inputs.NonIndexed().Unpack(l.Data)
				if err != nil || len(l.Topics) < 3 {
					continue
				}
				target, _ := vals[0].(common.Address)
				if target != app {
					continue
				}
				ours[id] = true
				idx := new(big.Int).SetBytes(l.Topics[2].Bytes()).Uint64()
				ev.Index = &idx
				data, _ := vals[2].([]byte)
				ev.Data = hexutil.Encode(data)
				ev.Call = describeAppCall(data)
				if name == timelockEventCallScheduled {
					pred, _ := vals[3].([32]byte)
					ev.Predecessor = common.Hash(pred).Hex()
					if d, ok := vals[4].(*big.Int); ok {
						delay := d.Uint64()
						ev.Delay = &delay
					}
				}
			case timelockEvent(timelockEventCancelled).ID:
				if !ours[id] {
					continue
				}
				ev.Kind = KindTimelockCancelled
			case timelockEvent(timelockEventCallSalt).ID:
				if len(l.Data) == 32 {
					salts[id] = common.BytesToHash(l.Data).Hex()
				}
				continue
			default:
				continue
			}
		default:
			continue
		}
		out = append(out, ev)
	}
	for i := range out {
		if out[i].Kind == KindTimelockCallScheduled {
			out[i].Salt = salts[common.HexToHash(out[i].OperationID)]
		}
	}
	return out
}

// decodeAppEvent fills the fields of an AppAuth event; false drops a log
// that does not decode (not a DstackApp's).
func decodeAppEvent(ev *HistoryEvent, kind string, l types.Log) bool {
	word := func() (common.Hash, bool) {
		if len(l.Data) != 32 {
			return common.Hash{}, false
		}
		return common.BytesToHash(l.Data), true
	}
	topicAddr := func(i int) (string, bool) {
		if len(l.Topics) <= i {
			return "", false
		}
		return common.BytesToAddress(l.Topics[i].Bytes()).Hex(), true
	}
	switch kind {
	case KindComposeHashAdded, KindComposeHashRemoved:
		w, ok := word()
		ev.ComposeHash = w.Hex()
		return ok
	case KindDeviceAdded, KindDeviceRemoved:
		w, ok := word()
		ev.DeviceID = w.Hex()
		return ok
	case KindAllowAnyDeviceSet, KindRequireTcbUpToDateSet:
		w, ok := word()
		b := w.Big().Sign() != 0
		ev.Enabled = &b
		return ok
	case KindOwnershipTransferStart, KindOwnershipTransferred:
		prev, ok1 := topicAddr(1)
		next, ok2 := topicAddr(2)
		ev.PreviousOwner, ev.NewOwner = prev, next
		return ok1 && ok2
	case KindUpgraded:
		impl, ok := topicAddr(1)
		ev.Implementation = impl
		return ok
	case KindInitialized:
		w, ok := word()
		ev.Version = w.Big().Uint64()
		return ok
	}
	return true
}

// describeAppCall renders calldata of a DstackApp function as
// name(arguments); other data as its selector.
func describeAppCall(data []byte) string {
	if len(data) < 4 {
		return hexutil.Encode(data)
	}
	a := appBinding().GetABI()
	m, err := a.MethodById(data[:4])
	if err != nil {
		return "call " + hexutil.Encode(data[:4])
	}
	vals, err := m.Inputs.Unpack(data[4:])
	if err != nil {
		return m.Name + "(undecodable)"
	}
	args := make([]string, len(vals))
	for i, v := range vals {
		args[i] = formatABIValue(v)
	}
	return m.Name + "(" + strings.Join(args, ", ") + ")"
}

// fillTimesAndActors reads the block times and transaction senders of the
// events in batches, and the ETAs of scheduled calls.
func (c *Client) fillTimesAndActors(ctx context.Context, evs []HistoryEvent) error {
	var blocks []uint64
	var txs []common.Hash
	seenB, seenT := map[uint64]bool{}, map[string]bool{}
	for _, e := range evs {
		if !seenB[e.Block] {
			seenB[e.Block] = true
			blocks = append(blocks, e.Block)
		}
		if !seenT[e.TxHash] {
			seenT[e.TxHash] = true
			txs = append(txs, common.HexToHash(e.TxHash))
		}
	}
	times, err := c.BlockTimes(ctx, blocks)
	if err != nil {
		return err
	}
	from, err := c.TxSenders(ctx, txs)
	if err != nil {
		return err
	}
	for i := range evs {
		e := &evs[i]
		t := times[e.Block]
		e.Time = time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
		if a, ok := from[common.HexToHash(e.TxHash)]; ok {
			e.Actor = a.Hex()
		}
		if e.Delay != nil {
			e.ETA = time.Unix(int64(t+*e.Delay), 0).UTC().Format(time.RFC3339)
		}
	}
	return nil
}

// callEvents maps an AppAuth call to the event that shows it took effect.
var callEvents = map[string]string{
	"addComposeHash":        "ComposeHashAdded",
	"removeComposeHash":     "ComposeHashRemoved",
	"addDevice":             "DeviceAdded",
	"removeDevice":          "DeviceRemoved",
	"setAllowAnyDevice":     "AllowAnyDeviceSet",
	"setRequireTcbUpToDate": "RequireTcbUpToDateSet",
	"disableUpgrades":       "UpgradesDisabled",
}

// FindCallLog finds the newest log of app, from block `from` on, showing
// that call took effect (ComposeHashAdded(h) for addComposeHash(h), and so
// on), and returns its transaction: the approval someone else (a Safe, a
// timelock's executor) made. ok is false when there is none, or for a
// call without such an event.
func (c *Client) FindCallLog(ctx context.Context, app common.Address, call AppCall, from uint64) (common.Hash, bool, error) {
	name, ok := callEvents[call.Name]
	if !ok || len(call.Data) < 4 {
		return common.Hash{}, false, nil
	}
	logs, err := c.Logs(ctx, LogQuery{Addresses: []common.Address{app}, Topics: [][]common.Hash{{appEvent(name).ID}}, From: from})
	if err != nil {
		return common.Hash{}, false, err
	}
	arg := call.Data[4:]
	for i := len(logs) - 1; i >= 0; i-- {
		if l := logs[i]; !l.Removed && bytes.Equal(l.Data, arg) {
			return l.TxHash, true, nil
		}
	}
	return common.Hash{}, false, nil
}

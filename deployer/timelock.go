package deployer

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

var timelockBinding = sync.OnceValue(bindings.NewTimelockController)

// The roles of OpenZeppelin's TimelockController (keccak256 of their names;
// the admin role is zero).
var (
	ProposerRole     = crypto.Keccak256Hash([]byte("PROPOSER_ROLE"))
	ExecutorRole     = crypto.Keccak256Hash([]byte("EXECUTOR_ROLE"))
	CancellerRole    = crypto.Keccak256Hash([]byte("CANCELLER_ROLE"))
	DefaultAdminRole = common.Hash{}
)

// ErrNotTimelock: the address holds no OpenZeppelin TimelockController.
var ErrNotTimelock = errors.New("not a TimelockController")

// TimelockCall is one call of a timelock operation.
type TimelockCall struct {
	Target common.Address
	Value  *big.Int // nil is zero
	Data   []byte
}

// TimelockOp is a TimelockController operation: its calls, the operation
// that must be done before it (zero: none) and a salt that tells apart
// operations with the same calls (an id can be scheduled only once ever).
// One call is scheduled with schedule/execute, several with the batch
// functions; the id differs between the two forms.
type TimelockOp struct {
	Calls       []TimelockCall
	Predecessor common.Hash
	Salt        common.Hash
}

// Batch reports whether the operation uses the batch functions.
func (o TimelockOp) Batch() bool { return len(o.Calls) != 1 }

func (o TimelockOp) arrays() ([]common.Address, []*big.Int, [][]byte) {
	targets := make([]common.Address, len(o.Calls))
	values := make([]*big.Int, len(o.Calls))
	payloads := make([][]byte, len(o.Calls))
	for i, c := range o.Calls {
		targets[i], values[i], payloads[i] = c.Target, valueOrZero(c.Value), nonNilBytes(c.Data)
	}
	return targets, values, payloads
}

func valueOrZero(v *big.Int) *big.Int {
	if v == nil {
		return new(big.Int)
	}
	return v
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ID is the operation id the timelock computes (hashOperation or
// hashOperationBatch): keccak256 of the ABI-encoded calls, predecessor and
// salt. It holds neither the chain id nor the timelock's address.
func (o TimelockOp) ID() common.Hash {
	return crypto.Keccak256Hash(o.Preimage())
}

// Preimage is abi.encode(target(s), value(s), data/payloads, predecessor,
// salt): what ID hashes (the hash functions' calldata without selector).
func (o TimelockOp) Preimage() []byte {
	tb := timelockBinding()
	if !o.Batch() {
		c := o.Calls[0]
		return tb.PackHashOperation(c.Target, valueOrZero(c.Value), nonNilBytes(c.Data), o.Predecessor, o.Salt)[4:]
	}
	t, v, p := o.arrays()
	return tb.PackHashOperationBatch(t, v, p, o.Predecessor, o.Salt)[4:]
}

// ScheduleData is the calldata of schedule (one call) or scheduleBatch,
// to send to the timelock from a proposer.
func (o TimelockOp) ScheduleData(delay uint64) []byte {
	tb := timelockBinding()
	d := new(big.Int).SetUint64(delay)
	if !o.Batch() {
		c := o.Calls[0]
		return tb.PackSchedule(c.Target, valueOrZero(c.Value), nonNilBytes(c.Data), o.Predecessor, o.Salt, d)
	}
	t, v, p := o.arrays()
	return tb.PackScheduleBatch(t, v, p, o.Predecessor, o.Salt, d)
}

// ExecuteData is the calldata of execute (one call) or executeBatch.
func (o TimelockOp) ExecuteData() []byte {
	tb := timelockBinding()
	if !o.Batch() {
		c := o.Calls[0]
		return tb.PackExecute(c.Target, valueOrZero(c.Value), nonNilBytes(c.Data), o.Predecessor, o.Salt)
	}
	t, v, p := o.arrays()
	return tb.PackExecuteBatch(t, v, p, o.Predecessor, o.Salt)
}

// TimelockOpState is what the chain says about an operation, read in one
// batch with the account's roles and the head block.
type TimelockOpState struct {
	// Timestamp is getTimestamp(id): 0 unknown (never scheduled, or
	// cancelled), 1 done, otherwise the time from which it may execute.
	Timestamp uint64
	// Now and Block are the latest block's timestamp and number.
	Now   uint64
	Block uint64
	// MinDelay is getMinDelay().
	MinDelay uint64
	// CanPropose: the account holds PROPOSER_ROLE.
	CanPropose bool
	// OpenExecution: EXECUTOR_ROLE is held by address(0), so anyone may
	// execute; CanExecute: the account may execute.
	OpenExecution bool
	CanExecute    bool
}

// Operation states, as getOperationState names them.
const (
	OpUnset   = "unset"
	OpWaiting = "waiting"
	OpReady   = "ready"
	OpDone    = "done"
)

// State is unset, waiting, ready or done, judged at the latest block.
func (s TimelockOpState) State() string {
	switch {
	case s.Timestamp == 0:
		return OpUnset
	case s.Timestamp == 1:
		return OpDone
	case s.Timestamp <= s.Now:
		return OpReady
	}
	return OpWaiting
}

// TimelockOpState reads an operation's timestamp, the timelock's delay and
// execution rule, whether account may propose and execute, and the head
// block, in one batch. A contract that does not answer like a
// TimelockController is ErrNotTimelock.
func (c *Client) TimelockOpState(ctx context.Context, timelock common.Address, id common.Hash, account common.Address) (*TimelockOpState, error) {
	tb := timelockBinding()
	var head headBlock
	reads := []struct {
		data []byte
		ret  hexutil.Bytes
	}{
		{data: tb.PackGetTimestamp(id)},
		{data: tb.PackGetMinDelay()},
		{data: tb.PackHasRole(ProposerRole, account)},
		{data: tb.PackHasRole(ExecutorRole, common.Address{})},
		{data: tb.PackHasRole(ExecutorRole, account)},
	}
	elems := []rpc.BatchElem{{Method: "eth_getBlockByNumber", Args: []any{"latest", false}, Result: &head}}
	for i := range reads {
		elems = append(elems, rpc.BatchElem{Method: "eth_call", Args: []any{readArgs(timelock, reads[i].data), "latest"}, Result: &reads[i].ret})
	}
	if err := c.batch(ctx, elems); err != nil {
		return nil, err
	}
	if elems[0].Error != nil {
		return nil, fmt.Errorf("eth_getBlockByNumber: %w", elems[0].Error)
	}
	words := make([]*big.Int, len(reads))
	for i := range reads {
		if err := elems[i+1].Error; err != nil {
			if isRevert(err) {
				return nil, fmt.Errorf("%w: %s reverts on a TimelockController read", ErrNotTimelock, timelock.Hex())
			}
			return nil, err
		}
		if len(reads[i].ret) != 32 {
			return nil, fmt.Errorf("%w: %s answered %d bytes to a TimelockController read", ErrNotTimelock, timelock.Hex(), len(reads[i].ret))
		}
		words[i] = new(big.Int).SetBytes(reads[i].ret)
	}
	s := &TimelockOpState{
		Timestamp: words[0].Uint64(), Now: uint64(head.Timestamp), Block: uint64(head.Number),
		MinDelay: words[1].Uint64(), CanPropose: words[2].Sign() != 0, OpenExecution: words[3].Sign() != 0,
	}
	s.CanExecute = s.OpenExecution || words[4].Sign() != 0
	return s, nil
}

// readArgs is an eth_call object without a sender.
func readArgs(to common.Address, data []byte) map[string]any {
	return map[string]any{"to": to, "input": hexutil.Bytes(data), "data": hexutil.Bytes(data)}
}

// TimelockInfo describes a TimelockController: its delay, whether anyone
// may execute, and the holders of its roles (found in its RoleGranted and
// RoleRevoked logs and confirmed with hasRole; nil when not read).
type TimelockInfo struct {
	Address       common.Address   `json:"address"`
	MinDelay      uint64           `json:"min_delay"`
	OpenExecution bool             `json:"open_execution"`
	Proposers     []common.Address `json:"proposers"`
	Executors     []common.Address `json:"executors"`
	Cancellers    []common.Address `json:"cancellers"`
	// Admins hold DEFAULT_ADMIN_ROLE besides the timelock itself (which
	// always does): empty means roles and delay change only through the
	// timelock's own delay.
	Admins []common.Address `json:"admins"`
	// CreatedAt is the block that created the contract (0 when unknown).
	CreatedAt uint64 `json:"created_at_block,omitempty"`
}

// IsTimelock reports whether addr holds a TimelockController: code that
// answers PROPOSER_ROLE() with OpenZeppelin's constant and getMinDelay().
// One batch; a plain account or another contract is (false, nil).
func (c *Client) IsTimelock(ctx context.Context, addr common.Address) (bool, error) {
	tb := timelockBinding()
	var code, role, delay hexutil.Bytes
	elems := []rpc.BatchElem{
		{Method: "eth_getCode", Args: []any{addr, "latest"}, Result: &code},
		{Method: "eth_call", Args: []any{readArgs(addr, tb.PackPROPOSERROLE()), "latest"}, Result: &role},
		{Method: "eth_call", Args: []any{readArgs(addr, tb.PackGetMinDelay()), "latest"}, Result: &delay},
	}
	if err := c.batch(ctx, elems); err != nil {
		return false, err
	}
	if elems[0].Error != nil {
		return false, fmt.Errorf("eth_getCode %s: %w", addr.Hex(), elems[0].Error)
	}
	if len(code) == 0 {
		return false, nil
	}
	for _, e := range elems[1:] {
		if e.Error != nil && !isRevert(e.Error) {
			return false, e.Error
		}
	}
	return elems[1].Error == nil && elems[2].Error == nil && len(delay) == 32 &&
		common.BytesToHash(role) == ProposerRole && len(role) == 32, nil
}

// DescribeTimelock reads a TimelockController: delay and execution rule in
// one batch, then the role holders from its logs (from its creation block,
// found by CreationBlock, to the head), each confirmed with hasRole.
// Anything that is not a TimelockController is ErrNotTimelock.
func (c *Client) DescribeTimelock(ctx context.Context, addr common.Address) (*TimelockInfo, error) {
	return c.readTimelock(ctx, addr, false)
}

// DescribeTimelockAtCreation is DescribeTimelock reading only the creation
// block's logs (the constructor's grants): a handful of requests however
// old the timelock is, but roles granted later (through the timelock's own
// operations) are missed. Holders it lists are still confirmed with hasRole.
func (c *Client) DescribeTimelockAtCreation(ctx context.Context, addr common.Address) (*TimelockInfo, error) {
	return c.readTimelock(ctx, addr, true)
}

func (c *Client) readTimelock(ctx context.Context, addr common.Address, creationOnly bool) (*TimelockInfo, error) {
	ok, err := c.IsTimelock(ctx, addr)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotTimelock, addr.Hex())
	}
	st, err := c.TimelockOpState(ctx, addr, common.Hash{}, common.Address{})
	if err != nil {
		return nil, err
	}
	info := &TimelockInfo{Address: addr, MinDelay: st.MinDelay, OpenExecution: st.OpenExecution,
		Proposers: []common.Address{}, Executors: []common.Address{}, Cancellers: []common.Address{}, Admins: []common.Address{}}
	from, err := c.CreationBlock(ctx, addr)
	if err != nil {
		return nil, err
	}
	info.CreatedAt = from
	tb := timelockBinding().GetABI()
	q := LogQuery{Addresses: []common.Address{addr}, Topics: [][]common.Hash{{tb.Events["RoleGranted"].ID, tb.Events["RoleRevoked"].ID}}, From: from}
	if creationOnly {
		q.To = from
	}
	logs, err := c.Logs(ctx, q)
	if err != nil {
		return nil, err
	}
	// Candidates from the logs; the chain's hasRole decides.
	type member struct {
		role common.Hash
		acct common.Address
	}
	var order []member
	seen := map[member]bool{}
	for _, l := range logs {
		if len(l.Topics) < 3 {
			continue
		}
		m := member{l.Topics[1], common.BytesToAddress(l.Topics[2].Bytes())}
		if !seen[m] {
			seen[m] = true
			order = append(order, m)
		}
	}
	held, err := c.hasRoles(ctx, addr, len(order), func(i int) (common.Hash, common.Address) { return order[i].role, order[i].acct })
	if err != nil {
		return nil, err
	}
	for i, m := range order {
		if !held[i] {
			continue
		}
		switch m.role {
		case ProposerRole:
			info.Proposers = append(info.Proposers, m.acct)
		case ExecutorRole:
			info.Executors = append(info.Executors, m.acct)
		case CancellerRole:
			info.Cancellers = append(info.Cancellers, m.acct)
		case DefaultAdminRole:
			if m.acct != addr {
				info.Admins = append(info.Admins, m.acct)
			}
		}
	}
	return info, nil
}

// hasRoles reads hasRole for n (role, account) pairs in batches.
func (c *Client) hasRoles(ctx context.Context, timelock common.Address, n int, pair func(int) (common.Hash, common.Address)) ([]bool, error) {
	out := make([]bool, n)
	for start := 0; start < n; start += maxBatch {
		end := min(n, start+maxBatch)
		rets := make([]hexutil.Bytes, end-start)
		elems := make([]rpc.BatchElem, end-start)
		for i := start; i < end; i++ {
			role, acct := pair(i)
			elems[i-start] = rpc.BatchElem{Method: "eth_call", Args: []any{readArgs(timelock, timelockBinding().PackHasRole(role, acct)), "latest"}, Result: &rets[i-start]}
		}
		if err := c.batch(ctx, elems); err != nil {
			return nil, err
		}
		for i, e := range elems {
			if e.Error != nil {
				return nil, fmt.Errorf("hasRole on %s: %w", timelock.Hex(), e.Error)
			}
			out[start+i] = new(big.Int).SetBytes(rets[i]).Sign() != 0
		}
	}
	return out, nil
}

// TimelockDeployConfig is a TimelockController to deploy: the minimum delay
// in seconds and the proposers (who also become cancellers). Executors nil
// means open execution (address(0): anyone may execute a ready operation);
// Admin zero means no admin (roles and delay change only through the
// timelock itself).
type TimelockDeployConfig struct {
	MinDelay  uint64
	Proposers []common.Address
	Executors []common.Address
	Admin     common.Address
}

// Check rejects a timelock nobody could use.
func (c TimelockDeployConfig) Check() error {
	if len(c.Proposers) == 0 {
		return errors.New("a timelock needs a proposer (--timelock-proposer)")
	}
	for _, p := range c.Proposers {
		if p == (common.Address{}) {
			return errors.New("the zero address cannot propose: give a proposer's address (an EOA or a Safe)")
		}
	}
	return nil
}

// TimelockDeployData is the creation code with constructor arguments.
func TimelockDeployData(cfg TimelockDeployConfig) []byte {
	execs := cfg.Executors
	if execs == nil {
		execs = []common.Address{{}}
	}
	ctor := timelockBinding().PackConstructor(new(big.Int).SetUint64(cfg.MinDelay), cfg.Proposers, execs, cfg.Admin)
	return append(common.FromHex(bindings.TimelockControllerMetaData.Bin), ctor...)
}

// TimelockDeployment is a deployed TimelockController.
type TimelockDeployment struct {
	Address     common.Address `json:"timelock_address"`
	TxHash      common.Hash    `json:"tx_hash"`
	BlockNumber uint64         `json:"block_number"`
	GasUsed     uint64         `json:"gas_used"`
}

// DeployTimelock deploys a TimelockController (one contract creation,
// through the usual preflight; opts.OnSigned sees it before broadcast).
func (c *Client) DeployTimelock(ctx context.Context, signer Signer, cfg TimelockDeployConfig, opts TxOptions) (*TimelockDeployment, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	r, err := c.Transact(ctx, signer, TxRequest{Data: TimelockDeployData(cfg)}, opts)
	if err != nil {
		return nil, err
	}
	return timelockDeployed(r)
}

// ResumeTimelockDeployment finishes a timelock creation journaled earlier
// (see ResumeTx).
func (c *Client) ResumeTimelockDeployment(ctx context.Context, signer Signer, latest *types.Transaction, earlier []common.Hash, opts TxOptions) (*TimelockDeployment, error) {
	r, err := c.ResumeTx(ctx, signer, latest, earlier, opts)
	if err != nil {
		return nil, err
	}
	return timelockDeployed(r)
}

func timelockDeployed(r *types.Receipt) (*TimelockDeployment, error) {
	if r.ContractAddress == (common.Address{}) {
		return nil, fmt.Errorf("transaction %s created no contract", r.TxHash.Hex())
	}
	return &TimelockDeployment{Address: r.ContractAddress, TxHash: r.TxHash, BlockNumber: blockOf(r), GasUsed: r.GasUsed}, nil
}

// SendTimelockCall sends data (schedule, execute, …) to a timelock from
// signer, through the batched preflight: an estimate that reverts (not a
// proposer, not ready) is an *EstimateRevertError with the timelock's
// error decoded, and nothing is sent.
func (c *Client) SendTimelockCall(ctx context.Context, signer Signer, timelock common.Address, data []byte, opts TxOptions) (*TxResult, error) {
	r, err := c.Transact(ctx, signer, TxRequest{To: &timelock, Data: data, Role: "the timelock (the AppAuth's owner)"}, opts)
	if err != nil {
		return nil, err
	}
	return resultOf(r), nil
}

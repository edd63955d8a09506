package deployer

import (
	"context"

	"github.com/ethereum/go-ethereum/common"
)

// describeTimelock is DescribeOwner's step for OpenZeppelin
// TimelockControllers: it returns true after setting info.Kind to
// OwnerTimelock and filling info.Timelock, false when addr is not one. The
// roles come from the creation block's grants, each confirmed with hasRole
// (a few requests however old the timelock is).
func (c *Client) describeTimelock(ctx context.Context, addr common.Address, info *OwnerInfo) (bool, error) {
	ok, err := c.IsTimelock(ctx, addr)
	if err != nil || !ok {
		return false, err
	}
	tl, err := c.DescribeTimelockAtCreation(ctx, addr)
	if err != nil {
		return false, err
	}
	info.Kind = OwnerTimelock
	info.Timelock = tl
	return true, nil
}

package cvm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/deployer"
)

// deployTimelock is deploy --timelock's step before the AppAuth: a
// TimelockController with the proposer, open execution and no admin,
// journaled from the moment it is signed like the AppAuth's transaction,
// so that a re-run waits for it instead of deploying a second one.
func (d *run) deployTimelock(ctx context.Context) error {
	tc := d.cfg.Timelock
	if tc == nil {
		return nil
	}
	if t := d.j.Timelock; t != nil {
		d.res.Resumed = append(d.res.Resumed, StepTimelock)
		d.say("✓ timelock deployed earlier: %s (delay %s)", t.Address, time.Duration(t.Delay)*time.Second)
		d.fillFromTimelock()
		return nil
	}
	if d.Signer == nil {
		return errNoSigner
	}
	cfg := d.timelockConfig()
	chainID := d.j.Provision.ChainID
	opts := d.cfg.Tx
	opts.OnSigned = func(tx *types.Transaction) error {
		if d.j.TimelockTx == nil {
			d.j.TimelockTx = &TxStep{}
		}
		if err := d.j.TimelockTx.AddVariant(tx, d.Signer.Address(), d.now().UTC()); err != nil {
			return err
		}
		return d.save(StepTimelockTx)
	}
	opts.OnSent = func(h common.Hash) {
		d.say("→ timelock transaction sent: %s%s", h.Hex(), d.explorerSuffix(chainID, h))
	}
	var (
		dep *deployer.TimelockDeployment
		err error
	)
	if t := d.j.TimelockTx; t != nil {
		d.res.Resumed = append(d.res.Resumed, StepTimelockTx)
		d.say("… timelock transaction %s was sent earlier: waiting for it instead of sending another", t.Hash)
		tx, err := t.Signed()
		if err != nil {
			return fmt.Errorf("the journal's raw timelock transaction is damaged (%v): check %s on an explorer", err, t.Hash)
		}
		dep, err = d.chain.ResumeTimelockDeployment(ctx, d.Signer, tx, t.Variants(), opts)
		if errors.Is(err, deployer.ErrNonceUsed) {
			return fmt.Errorf("the journaled timelock transaction %s was never mined and nonce %d of %s is used by another transaction: check the account's history, then re-run with --fresh", t.Hash, t.Nonce, t.From)
		}
		if err != nil {
			return fmt.Errorf("resume timelock transaction %s: %w", t.Hash, err)
		}
	} else {
		if d.Confirm != nil {
			if err := d.Confirm(ctx, chainID, fmt.Sprintf("deploy a TimelockController (delay %s, proposer %s, open execution, no admin) to own the AppAuth of %q", time.Duration(cfg.MinDelay)*time.Second, cfg.Proposers[0].Hex(), d.cfg.Name)); err != nil {
				return err
			}
		}
		d.say("→ deploying a TimelockController on chain %d (delay %s, proposer %s, open execution, no admin)", chainID, time.Duration(cfg.MinDelay)*time.Second, cfg.Proposers[0].Hex())
		if dep, err = d.chain.DeployTimelock(ctx, d.Signer, cfg, opts); err != nil {
			return fmt.Errorf("deploy the timelock: %w", err)
		}
	}
	d.j.Timelock = &TimelockDeployedStep{
		Address: dep.Address.Hex(), Delay: cfg.MinDelay, Proposer: cfg.Proposers[0].Hex(),
		TxHash: dep.TxHash.Hex(), BlockNumber: dep.BlockNumber, GasUsed: dep.GasUsed,
	}
	d.fillFromTimelock()
	d.say("✓ timelock deployed: %s (block %d, gas %d); it will own the AppAuth", dep.Address.Hex(), dep.BlockNumber, dep.GasUsed)
	return d.save(StepTimelock)
}

// timelockConfig is the timelock to deploy: the proposer is
// --timelock-proposer, else --owner (e.g. a Safe), else the signer.
func (d *run) timelockConfig() deployer.TimelockDeployConfig {
	p := d.cfg.Timelock.Proposer
	if p == (common.Address{}) {
		p = d.cfg.Owner
	}
	if p == (common.Address{}) {
		p = d.Signer.Address()
	}
	return deployer.TimelockDeployConfig{MinDelay: d.cfg.Timelock.Delay, Proposers: []common.Address{p}}
}

func (d *run) fillFromTimelock() {
	t := d.j.Timelock
	d.res.TimelockAddress = t.Address
	d.res.TimelockDelay = t.Delay
	d.res.TimelockTxHash = t.TxHash
	d.res.Owner = t.Address
}

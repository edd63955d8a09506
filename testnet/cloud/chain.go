package cloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/cvmdeploy/cvmdeploy/bindings"
)

var (
	kmsABI = bindings.NewDstackKms()
	appABI = bindings.NewDstackApp()
	// composeHashAddedTopic is topic0 of DstackApp.ComposeHashAdded(bytes32).
	composeHashAddedTopic = appABI.GetABI().Events["ComposeHashAdded"].ID
)

// chainTimeout bounds each chain read, so a stuck RPC cannot hang a request.
const chainTimeout = 15 * time.Second

func (s *Server) call(ctx context.Context, to common.Address, data []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, chainTimeout)
	defer cancel()
	out, err := s.cfg.Chain.CallContract(ctx, ethereum.CallMsg{To: &to, Data: data}, nil)
	if err != nil {
		return nil, fmt.Errorf("eth_call %s: %w", to.Hex(), err)
	}
	return out, nil
}

// verifyChain checks the chain id and that the KMS contract holds this
// cloud's root key, so a misconfigured setup fails at start, not at boot.
func (s *Server) verifyChain(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, chainTimeout)
	defer cancel()
	id, err := s.cfg.Chain.ChainID(cctx)
	if err != nil {
		return fmt.Errorf("cloud: read chain id: %w", err)
	}
	if s.cfg.ChainID != 0 && id.Uint64() != s.cfg.ChainID {
		return fmt.Errorf("cloud: chain id is %d, configured %d", id.Uint64(), s.cfg.ChainID)
	}
	s.cfg.ChainID = id.Uint64()
	*s.onKMS.ChainID = id.Uint64()
	return s.verifyRoot(ctx, s.cfg.KMSContract, s.keys.rootPublicKey())
}

// verifyRoot checks that the DstackKms at kms stores root as k256Pubkey.
func (s *Server) verifyRoot(ctx context.Context, kms common.Address, root []byte) error {
	out, err := s.call(ctx, kms, kmsABI.PackKmsInfo())
	if err != nil {
		return fmt.Errorf("cloud: read kmsInfo: %w", err)
	}
	info, err := kmsABI.UnpackKmsInfo(out)
	if err != nil {
		return fmt.Errorf("cloud: decode kmsInfo of %s (is it a DstackKms?): %w", kms.Hex(), err)
	}
	if !bytes.Equal(info.K256Pubkey, root) {
		return fmt.Errorf("cloud: %w: k256Pubkey of %s is %x, the cloud's root key is %x",
			ErrRootKeyMismatch, kms.Hex(), info.K256Pubkey, root)
	}
	return nil
}

// ErrRootKeyMismatch means the KMS contract's kmsInfo().k256Pubkey is not the
// cloud's root key: the setup did not (or could not) run setKmsInfo.
var ErrRootKeyMismatch = errors.New("KMS root key on-chain differs from the cloud's")

// bootCheck is the result of the check a KMS runs before releasing keys.
type bootCheck struct {
	Registered bool
	Allowed    bool
	Reason     string
}

// bootInfo builds the AppBootInfo the KMS would send for this CVM. The
// measurement registers are fixed per node; the reference contracts do not
// look at them for apps.
func (s *Server) bootInfo(appID common.Address, composeHash, deviceID common.Hash, instanceID common.Address) bindings.IAppAuthAppBootInfo {
	return bindings.IAppAuthAppBootInfo{
		AppId:        appID,
		ComposeHash:  composeHash,
		InstanceId:   instanceID,
		DeviceId:     deviceID,
		MrAggregated: sha256.Sum256(append([]byte("mr_aggregated:"), composeHash[:]...)),
		MrSystem:     sha256.Sum256([]byte("mr_system:" + s.cfg.OSImageName)),
		OsImageHash:  s.cfg.OSImageHash,
		TcbStatus:    "UpToDate",
		AdvisoryIds:  []string{},
	}
}

// checkBoot asks the chain what booting asks: is the app registered on the
// KMS, and does DstackKms.isAppAllowed pass for this boot info (the CVM's
// node's device).
func (s *Server) checkBoot(ctx context.Context, appID common.Address, composeHash, deviceID common.Hash, instanceID common.Address) (bootCheck, error) {
	var res bootCheck
	out, err := s.call(ctx, s.kms, kmsABI.PackRegisteredApps(appID))
	if err != nil {
		return res, err
	}
	if res.Registered, err = kmsABI.UnpackRegisteredApps(out); err != nil {
		return res, fmt.Errorf("decode registeredApps: %w", err)
	}
	out, err = s.call(ctx, s.kms, kmsABI.PackIsAppAllowed(s.bootInfo(appID, composeHash, deviceID, instanceID)))
	if err != nil {
		return res, err
	}
	allowed, err := kmsABI.UnpackIsAppAllowed(out)
	if err != nil {
		return res, fmt.Errorf("decode isAppAllowed: %w", err)
	}
	res.Allowed, res.Reason = allowed.IsAllowed, allowed.Reason
	return res, nil
}

// appPolicy is what POST /cvms/{id}/is-allowed reports.
type appPolicy struct {
	ComposeHashAllowed bool
	AllowAnyDevice     bool
	DeviceIDAllowed    bool
	IsAllowed          bool
	Reason             string
}

func (s *Server) readPolicy(ctx context.Context, appID common.Address, composeHash, deviceID common.Hash, instanceID common.Address) (appPolicy, error) {
	var p appPolicy
	read := func(data []byte, unpack func([]byte) (bool, error)) (bool, error) {
		out, err := s.call(ctx, appID, data)
		if err != nil {
			return false, err
		}
		return unpack(out)
	}
	var err error
	if p.ComposeHashAllowed, err = read(appABI.PackAllowedComposeHashes(composeHash), appABI.UnpackAllowedComposeHashes); err != nil {
		return p, fmt.Errorf("read allowedComposeHashes: %w", err)
	}
	if p.AllowAnyDevice, err = read(appABI.PackAllowAnyDevice(), appABI.UnpackAllowAnyDevice); err != nil {
		return p, fmt.Errorf("read allowAnyDevice: %w", err)
	}
	if p.DeviceIDAllowed, err = read(appABI.PackAllowedDeviceIds(deviceID), appABI.UnpackAllowedDeviceIds); err != nil {
		return p, fmt.Errorf("read allowedDeviceIds: %w", err)
	}
	p.DeviceIDAllowed = p.DeviceIDAllowed || p.AllowAnyDevice
	info := s.bootInfo(appID, composeHash, deviceID, instanceID)
	out, err := s.call(ctx, s.kms, kmsABI.PackIsAppAllowed(info))
	if err != nil {
		return p, err
	}
	res, err := kmsABI.UnpackIsAppAllowed(out)
	if err != nil {
		return p, fmt.Errorf("decode isAppAllowed: %w", err)
	}
	p.IsAllowed, p.Reason = res.IsAllowed, res.Reason
	return p, nil
}

// errTxNotVerified explains why a transaction does not prove a compose-hash
// registration.
var errTxNotVerified = errors.New("transaction does not register the compose hash")

// verifyComposeTx checks that tx is mined, succeeded, and emitted
// ComposeHashAdded(hash) from the app contract (directly, or from the
// factory deployment, whose logs include the app's ComposeHashAdded).
func (s *Server) verifyComposeTx(ctx context.Context, tx common.Hash, app common.Address, hash common.Hash) error {
	ctx, cancel := context.WithTimeout(ctx, chainTimeout)
	defer cancel()
	rcpt, err := s.cfg.Chain.TransactionReceipt(ctx, tx)
	if err != nil {
		if errors.Is(err, ethereum.NotFound) {
			return fmt.Errorf("%w: transaction %s not found or not mined", errTxNotVerified, tx.Hex())
		}
		return fmt.Errorf("read receipt %s: %w", tx.Hex(), err)
	}
	if rcpt.Status != types.ReceiptStatusSuccessful {
		return fmt.Errorf("%w: transaction %s reverted", errTxNotVerified, tx.Hex())
	}
	for _, l := range rcpt.Logs {
		if l.Address == app && len(l.Topics) > 0 && l.Topics[0] == composeHashAddedTopic && bytes.Equal(l.Data, hash[:]) {
			return nil
		}
	}
	return fmt.Errorf("%w: transaction %s emitted no ComposeHashAdded(%s) from app %s", errTxNotVerified, tx.Hex(), hash.Hex(), app.Hex())
}

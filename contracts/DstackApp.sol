// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {ERC165Upgradeable} from "@openzeppelin/contracts-upgradeable/utils/introspection/ERC165Upgradeable.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

import {IAppAuth} from "./IAppAuth.sol";
import {IAppAuthBasicManagement} from "./IAppAuthBasicManagement.sol";

/// @title DstackApp
/// @notice Per-app authorization contract ("AppAuth"). Its proxy address is the
/// app id. The owner decides which app versions (compose hashes) and which
/// machines (device ids) may receive the app's keys from the KMS.
/// @dev Deployed behind an ERC1967Proxy (UUPS). The storage layout below must
/// stay slot-compatible with already deployed app proxies: only append, and
/// shrink __gap by what is appended.
contract DstackApp is
    Initializable,
    Ownable2StepUpgradeable,
    UUPSUpgradeable,
    ERC165Upgradeable,
    IAppAuth,
    IAppAuthBasicManagement
{
    // Policy names for PolicyChanged; indexers filter on these hashes.
    bytes32 private constant POLICY_COMPOSE_HASH = keccak256("compose-hash");
    bytes32 private constant POLICY_DEVICE = keccak256("device");
    bytes32 private constant POLICY_ALLOW_ANY_DEVICE = keccak256("allow-any-device");
    bytes32 private constant POLICY_REQUIRE_TCB = keccak256("require-tcb-up-to-date");
    bytes32 private constant POLICY_UPGRADES_DISABLED = keccak256("upgrades-disabled");
    bytes32 private constant POLICY_IMPLEMENTATION_UPGRADE = keccak256("implementation-upgrade");

    bytes32 private constant TCB_UP_TO_DATE = keccak256("UpToDate");

    /// @notice Compose hashes whose CVMs may boot (slot 0).
    mapping(bytes32 => bool) public allowedComposeHashes;
    // Set once, never cleared (slot 1, offset 0). No getter, as upstream.
    bool private _upgradesDisabled;
    /// @notice When true, any device may boot and allowedDeviceIds is ignored (slot 1, offset 1).
    bool public allowAnyDevice;
    /// @notice Devices on which CVMs may boot (slot 2).
    mapping(bytes32 => bool) public allowedDeviceIds;
    /// @notice When true, only platforms whose TCB status is "UpToDate" may boot (slot 3).
    bool public requireTcbUpToDate;

    // Reserved for future fields so upgrades keep the layout above.
    uint256[49] private __gap;

    /// @notice Emitted by disableUpgrades.
    event UpgradesDisabled();
    /// @notice Emitted by setAllowAnyDevice.
    event AllowAnyDeviceSet(bool allowAny);
    /// @notice Emitted by setRequireTcbUpToDate.
    event RequireTcbUpToDateSet(bool requireUpToDate);
    /// @notice One log per policy change, with a uniform shape for indexers.
    /// @param actor msg.sender of the change (the KMS during factory deployment)
    /// @param policy keccak256 of the policy name, e.g. keccak256("compose-hash")
    /// @param value the affected value (bytes32, left-padded address, or zero)
    /// @param enabled whether the value was allowed/set (true) or removed/cleared (false)
    event PolicyChanged(address indexed actor, bytes32 indexed policy, bytes32 indexed value, bool enabled);

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        // The implementation is only ever used through proxies.
        _disableInitializers();
    }

    /// @notice Older 5-argument initializer; requireTcbUpToDate stays false.
    function initialize(
        address initialOwner,
        bool _disableUpgrades,
        bool _allowAnyDevice,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) public initializer {
        _initApp(initialOwner, _disableUpgrades, false, _allowAnyDevice, initialDeviceId, initialComposeHash);
    }

    /// @notice Initializer used by DstackKms.deployAndRegisterApp.
    /// @dev Zero initialDeviceId / initialComposeHash mean "none".
    function initialize(
        address initialOwner,
        bool _disableUpgrades,
        bool _requireTcbUpToDate,
        bool _allowAnyDevice,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) public initializer {
        _initApp(
            initialOwner, _disableUpgrades, _requireTcbUpToDate, _allowAnyDevice, initialDeviceId, initialComposeHash
        );
    }

    function _initApp(
        address initialOwner,
        bool disableUpgrades_,
        bool requireTcbUpToDate_,
        bool allowAnyDevice_,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) private {
        // A string revert (not OwnableInvalidOwner) so callers of the factory see a readable reason.
        require(initialOwner != address(0), "invalid owner address");

        // Initial flags are part of the deployment, so they are set without their setter events.
        _upgradesDisabled = disableUpgrades_;
        requireTcbUpToDate = requireTcbUpToDate_;
        allowAnyDevice = allowAnyDevice_;
        if (initialDeviceId != bytes32(0)) {
            _setDevice(initialDeviceId, true);
        }
        if (initialComposeHash != bytes32(0)) {
            _setComposeHash(initialComposeHash, true);
        }

        __Ownable_init(initialOwner);
        __Ownable2Step_init();
        __UUPSUpgradeable_init();
        __ERC165_init();
    }

    /// @notice Implementation version; 2 = has requireTcbUpToDate.
    function version() external pure returns (uint256) {
        return 2;
    }

    /// @inheritdoc IAppAuthBasicManagement
    function addComposeHash(bytes32 composeHash) external onlyOwner {
        _setComposeHash(composeHash, true);
    }

    /// @inheritdoc IAppAuthBasicManagement
    function removeComposeHash(bytes32 composeHash) external onlyOwner {
        _setComposeHash(composeHash, false);
    }

    /// @inheritdoc IAppAuthBasicManagement
    function addDevice(bytes32 deviceId) external onlyOwner {
        _setDevice(deviceId, true);
    }

    /// @inheritdoc IAppAuthBasicManagement
    function removeDevice(bytes32 deviceId) external onlyOwner {
        _setDevice(deviceId, false);
    }

    /// @notice Lets any device boot (true) or only allowedDeviceIds (false).
    function setAllowAnyDevice(bool _allowAnyDevice) external onlyOwner {
        allowAnyDevice = _allowAnyDevice;
        emit AllowAnyDeviceSet(_allowAnyDevice);
        emit PolicyChanged(msg.sender, POLICY_ALLOW_ANY_DEVICE, bytes32(0), _allowAnyDevice);
    }

    /// @notice Requires (true) or stops requiring (false) an up-to-date TCB.
    function setRequireTcbUpToDate(bool _requireUpToDate) external onlyOwner {
        requireTcbUpToDate = _requireUpToDate;
        emit RequireTcbUpToDateSet(_requireUpToDate);
        emit PolicyChanged(msg.sender, POLICY_REQUIRE_TCB, bytes32(0), _requireUpToDate);
    }

    /// @notice Freezes the implementation forever. There is no way back.
    function disableUpgrades() external onlyOwner {
        _upgradesDisabled = true;
        emit UpgradesDisabled();
        emit PolicyChanged(msg.sender, POLICY_UPGRADES_DISABLED, bytes32(0), true);
    }

    /// @inheritdoc IAppAuth
    /// @dev Checks only TCB status, compose hash and device; the KMS registry
    /// has already checked registration and the OS image.
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        if (requireTcbUpToDate && keccak256(bytes(bootInfo.tcbStatus)) != TCB_UP_TO_DATE) {
            return (false, "TCB status is not up to date");
        }
        if (!allowedComposeHashes[bootInfo.composeHash]) {
            return (false, "Compose hash not allowed");
        }
        if (!allowAnyDevice && !allowedDeviceIds[bootInfo.deviceId]) {
            return (false, "Device not allowed");
        }
        return (true, "");
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId)
        public
        view
        virtual
        override(ERC165Upgradeable, IERC165)
        returns (bool)
    {
        return interfaceId == type(IAppAuth).interfaceId || interfaceId == type(IAppAuthBasicManagement).interfaceId
            || super.supportsInterface(interfaceId);
    }

    function _setComposeHash(bytes32 composeHash, bool allowed) private {
        allowedComposeHashes[composeHash] = allowed;
        if (allowed) {
            emit ComposeHashAdded(composeHash);
        } else {
            emit ComposeHashRemoved(composeHash);
        }
        emit PolicyChanged(msg.sender, POLICY_COMPOSE_HASH, composeHash, allowed);
    }

    function _setDevice(bytes32 deviceId, bool allowed) private {
        allowedDeviceIds[deviceId] = allowed;
        if (allowed) {
            emit DeviceAdded(deviceId);
        } else {
            emit DeviceRemoved(deviceId);
        }
        emit PolicyChanged(msg.sender, POLICY_DEVICE, deviceId, allowed);
    }

    /// @dev Owner only, and never after disableUpgrades (or disableUpgrades=true at initialization).
    function _authorizeUpgrade(address newImplementation) internal override onlyOwner {
        require(!_upgradesDisabled, "Upgrades are permanently disabled");
        emit PolicyChanged(msg.sender, POLICY_IMPLEMENTATION_UPGRADE, bytes32(uint256(uint160(newImplementation))), true);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {ERC165Upgradeable} from "@openzeppelin/contracts-upgradeable/utils/introspection/ERC165Upgradeable.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

import {IAppAuth} from "./IAppAuth.sol";

/// @dev The one DstackApp initializer the factory calls (selector 0x9ed28193).
/// A separate interface because abi.encodeCall cannot pick an overload.
interface IDstackAppFactoryInit {
    function initialize(
        address initialOwner,
        bool disableUpgrades,
        bool requireTcbUpToDate,
        bool allowAnyDevice,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) external;
}

/// @title DstackKms
/// @notice Registry of a dstack KMS: the KMS's own identity and boot policy,
/// the allowed guest OS images, the registered apps, and a factory that
/// deploys and registers an app contract (DstackApp proxy) in one call.
/// @dev Deployed behind an ERC1967Proxy (UUPS). The storage layout below must
/// stay slot-compatible with already deployed KMS proxies: only append, and
/// shrink __gap by what is appended.
contract DstackKms is Initializable, Ownable2StepUpgradeable, UUPSUpgradeable, ERC165Upgradeable, IAppAuth {
    /// @notice Public material of the KMS itself.
    struct KmsInfo {
        bytes k256Pubkey;
        bytes caPubkey;
        bytes quote;
        bytes eventlog;
    }

    // Policy names for PolicyChanged; indexers filter on these hashes.
    bytes32 private constant POLICY_REGISTERED_APP = keccak256("registered-app");
    bytes32 private constant POLICY_APP_IMPLEMENTATION = keccak256("app-implementation");
    bytes32 private constant POLICY_IMPLEMENTATION_UPGRADE = keccak256("implementation-upgrade");
    bytes32 private constant POLICY_KMS_INFO = keccak256("kms-info");
    bytes32 private constant POLICY_GATEWAY_APP_ID = keccak256("gateway-app-id");
    bytes32 private constant POLICY_KMS_AGGREGATED_MR = keccak256("kms-aggregated-mr");
    bytes32 private constant POLICY_KMS_DEVICE = keccak256("kms-device");
    bytes32 private constant POLICY_OS_IMAGE = keccak256("os-image");

    bytes32 private constant TCB_UP_TO_DATE = keccak256("UpToDate");

    /// @notice The KMS's keys, quote and event log (slots 0-3).
    KmsInfo public kmsInfo;
    /// @notice App id of the dstack gateway (slot 4).
    string public gatewayAppId;
    /// @notice Apps whose CVMs the KMS serves, if their own contract agrees (slot 5).
    mapping(address => bool) public registeredApps;
    /// @notice Aggregated measurements a KMS instance may boot with (slot 6).
    mapping(bytes32 => bool) public kmsAllowedAggregatedMrs;
    /// @notice Devices a KMS instance may boot on (slot 7).
    mapping(bytes32 => bool) public kmsAllowedDeviceIds;
    /// @notice Guest OS images allowed for both the KMS and apps (slot 8).
    mapping(bytes32 => bool) public allowedOsImages;
    /// @notice DstackApp implementation the factory puts behind new app proxies (slot 9).
    address public appImplementation;

    // Reserved for future fields so upgrades keep the layout above.
    uint256[50] private __gap;

    /// @notice Emitted by setKmsInfo.
    event KmsInfoSet(bytes k256Pubkey);
    /// @notice Emitted by registerApp. Not indexed, to stay compatible with existing indexers.
    event AppRegistered(address appId);
    /// @notice Emitted by deployAndRegisterApp; deployer is the transaction's caller, not the app owner.
    event AppDeployedViaFactory(address indexed appId, address indexed deployer);
    event AppImplementationSet(address implementation);
    event KmsAggregatedMrAdded(bytes32 mrAggregated);
    event KmsAggregatedMrRemoved(bytes32 mrAggregated);
    event KmsDeviceAdded(bytes32 deviceId);
    event KmsDeviceRemoved(bytes32 deviceId);
    event OsImageHashAdded(bytes32 osImageHash);
    event OsImageHashRemoved(bytes32 osImageHash);
    event GatewayAppIdSet(string gatewayAppId);
    /// @notice One log per policy change, with a uniform shape for indexers.
    /// @param actor msg.sender of the change
    /// @param policy keccak256 of the policy name, e.g. keccak256("os-image")
    /// @param value the affected value (bytes32, left-padded address, or keccak256 of dynamic data)
    /// @param enabled whether the value was allowed/set (true) or removed (false)
    event PolicyChanged(address indexed actor, bytes32 indexed policy, bytes32 indexed value, bool enabled);

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        // The implementation is only ever used through a proxy.
        _disableInitializers();
    }

    /// @notice Sets the owner and, unless zero, the DstackApp implementation for the factory.
    /// @dev A zero owner reverts with OwnableInvalidOwner.
    function initialize(address initialOwner, address _appImplementation) public initializer {
        __Ownable_init(initialOwner);
        __Ownable2Step_init();
        __UUPSUpgradeable_init();
        __ERC165_init();
        if (_appImplementation != address(0)) {
            _setAppImplementation(_appImplementation);
        }
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId)
        public
        view
        virtual
        override(ERC165Upgradeable, IERC165)
        returns (bool)
    {
        return interfaceId == type(IAppAuth).interfaceId || super.supportsInterface(interfaceId);
    }

    /// @notice Replaces the KMS's public material.
    function setKmsInfo(KmsInfo calldata info) external onlyOwner {
        kmsInfo = info;
        emit KmsInfoSet(info.k256Pubkey);
        emit PolicyChanged(msg.sender, POLICY_KMS_INFO, keccak256(info.k256Pubkey), true);
    }

    /// @notice Replaces only the KMS quote (no event, as upstream).
    function setKmsQuote(bytes calldata quote) external onlyOwner {
        kmsInfo.quote = quote;
    }

    /// @notice Replaces only the KMS event log (no event, as upstream).
    function setKmsEventlog(bytes calldata eventlog) external onlyOwner {
        kmsInfo.eventlog = eventlog;
    }

    /// @notice Sets the app id of the dstack gateway.
    function setGatewayAppId(string calldata appId) external onlyOwner {
        gatewayAppId = appId;
        emit GatewayAppIdSet(appId);
        emit PolicyChanged(msg.sender, POLICY_GATEWAY_APP_ID, keccak256(bytes(appId)), true);
    }

    /// @notice Sets the DstackApp implementation used by deployAndRegisterApp.
    /// Existing app proxies are not affected.
    function setAppImplementation(address _implementation) external onlyOwner {
        require(_implementation != address(0), "Invalid implementation address");
        _setAppImplementation(_implementation);
    }

    /// @notice Registers an app contract so the KMS consults it.
    /// @dev Permissionless on purpose: registration alone grants nothing, the
    /// app contract itself still decides in isAppAllowed. Re-registering is
    /// harmless and logs again.
    function registerApp(address appId) public {
        require(appId != address(0), "Invalid app ID");
        registeredApps[appId] = true;
        emit AppRegistered(appId);
        emit PolicyChanged(msg.sender, POLICY_REGISTERED_APP, _addressWord(appId), true);
    }

    /// @notice Deploys a DstackApp proxy owned by initialOwner, registers it and returns its address (the app id).
    /// @param initialOwner owner of the new app contract (need not be the caller)
    /// @param disableUpgrades freeze the app's implementation from the start
    /// @param requireTcbUpToDate only let platforms with TCB status "UpToDate" boot
    /// @param allowAnyDevice let any device boot
    /// @param initialDeviceId device to allow, or zero for none
    /// @param initialComposeHash compose hash to allow, or zero for none
    function deployAndRegisterApp(
        address initialOwner,
        bool disableUpgrades,
        bool requireTcbUpToDate,
        bool allowAnyDevice,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) public returns (address appId) {
        require(appImplementation != address(0), "DstackApp implementation not set");
        require(initialOwner != address(0), "Invalid owner address");

        bytes memory initData = abi.encodeCall(
            IDstackAppFactoryInit.initialize,
            (initialOwner, disableUpgrades, requireTcbUpToDate, allowAnyDevice, initialDeviceId, initialComposeHash)
        );
        // Plain CREATE: the app id follows from this contract's nonce, but callers
        // should read it from AppDeployedViaFactory instead of predicting it.
        appId = address(new ERC1967Proxy(appImplementation, initData));

        registerApp(appId);
        emit AppDeployedViaFactory(appId, msg.sender);
    }

    /// @notice 5-argument form kept for older clients; requireTcbUpToDate is false.
    function deployAndRegisterApp(
        address initialOwner,
        bool disableUpgrades,
        bool allowAnyDevice,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) external returns (address appId) {
        return deployAndRegisterApp(initialOwner, disableUpgrades, false, allowAnyDevice, initialDeviceId, initialComposeHash);
    }

    /// @notice Allows KMS instances with this aggregated measurement.
    function addKmsAggregatedMr(bytes32 mrAggregated) external onlyOwner {
        kmsAllowedAggregatedMrs[mrAggregated] = true;
        emit KmsAggregatedMrAdded(mrAggregated);
        emit PolicyChanged(msg.sender, POLICY_KMS_AGGREGATED_MR, mrAggregated, true);
    }

    /// @notice Stops allowing KMS instances with this aggregated measurement.
    function removeKmsAggregatedMr(bytes32 mrAggregated) external onlyOwner {
        kmsAllowedAggregatedMrs[mrAggregated] = false;
        emit KmsAggregatedMrRemoved(mrAggregated);
        emit PolicyChanged(msg.sender, POLICY_KMS_AGGREGATED_MR, mrAggregated, false);
    }

    /// @notice Allows KMS instances on this device.
    function addKmsDevice(bytes32 deviceId) external onlyOwner {
        kmsAllowedDeviceIds[deviceId] = true;
        emit KmsDeviceAdded(deviceId);
        emit PolicyChanged(msg.sender, POLICY_KMS_DEVICE, deviceId, true);
    }

    /// @notice Stops allowing KMS instances on this device.
    function removeKmsDevice(bytes32 deviceId) external onlyOwner {
        kmsAllowedDeviceIds[deviceId] = false;
        emit KmsDeviceRemoved(deviceId);
        emit PolicyChanged(msg.sender, POLICY_KMS_DEVICE, deviceId, false);
    }

    /// @notice Allows a guest OS image (for the KMS and for every app).
    function addOsImageHash(bytes32 osImageHash) external onlyOwner {
        allowedOsImages[osImageHash] = true;
        emit OsImageHashAdded(osImageHash);
        emit PolicyChanged(msg.sender, POLICY_OS_IMAGE, osImageHash, true);
    }

    /// @notice Stops allowing a guest OS image.
    function removeOsImageHash(bytes32 osImageHash) external onlyOwner {
        allowedOsImages[osImageHash] = false;
        emit OsImageHashRemoved(osImageHash);
        emit PolicyChanged(msg.sender, POLICY_OS_IMAGE, osImageHash, false);
    }

    /// @notice Decides whether a KMS instance may boot.
    function isKmsAllowed(AppBootInfo calldata bootInfo) external view returns (bool isAllowed, string memory reason) {
        if (keccak256(bytes(bootInfo.tcbStatus)) != TCB_UP_TO_DATE) {
            return (false, "TCB status is not up to date");
        }
        if (!allowedOsImages[bootInfo.osImageHash]) {
            return (false, "OS image is not allowed");
        }
        if (!kmsAllowedAggregatedMrs[bootInfo.mrAggregated]) {
            return (false, "Aggregated MR not allowed");
        }
        if (!kmsAllowedDeviceIds[bootInfo.deviceId]) {
            return (false, "KMS is not allowed to boot on this device");
        }
        return (true, "");
    }

    /// @inheritdoc IAppAuth
    /// @dev Checks registration, the OS image and that the app has code, then
    /// returns the app contract's own answer unchanged (its revert propagates).
    function isAppAllowed(AppBootInfo calldata bootInfo) external view returns (bool isAllowed, string memory reason) {
        if (!registeredApps[bootInfo.appId]) {
            return (false, "App not registered");
        }
        if (!allowedOsImages[bootInfo.osImageHash]) {
            return (false, "OS image is not allowed");
        }
        if (bootInfo.appId.code.length == 0) {
            return (false, "App not deployed or invalid address");
        }
        return IAppAuth(bootInfo.appId).isAppAllowed(bootInfo);
    }

    function _setAppImplementation(address implementation) private {
        appImplementation = implementation;
        emit AppImplementationSet(implementation);
        emit PolicyChanged(msg.sender, POLICY_APP_IMPLEMENTATION, _addressWord(implementation), true);
    }

    /// @dev Owner only; logged so indexers see implementation changes.
    function _authorizeUpgrade(address newImplementation) internal override onlyOwner {
        emit PolicyChanged(msg.sender, POLICY_IMPLEMENTATION_UPGRADE, _addressWord(newImplementation), true);
    }

    function _addressWord(address a) private pure returns (bytes32) {
        return bytes32(uint256(uint160(a)));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IAppAuthBasicManagement
/// @notice The allow-list administration every app contract offers: which
/// compose hashes (app versions) and which devices (machines) may boot.
/// @dev ERC-165 id 0x8fd37527 (XOR of the four selectors below). Tools rely on
/// these selectors and on the event signatures, so neither may change.
interface IAppAuthBasicManagement {
    /// @notice A compose hash was allowed.
    event ComposeHashAdded(bytes32 composeHash);
    /// @notice A compose hash is no longer allowed.
    event ComposeHashRemoved(bytes32 composeHash);
    /// @notice A device was allowed.
    event DeviceAdded(bytes32 deviceId);
    /// @notice A device is no longer allowed.
    event DeviceRemoved(bytes32 deviceId);

    /// @notice Allows CVMs running the app-compose document with this hash.
    function addComposeHash(bytes32 composeHash) external;

    /// @notice Stops allowing the compose hash; already-running CVMs keep their keys.
    function removeComposeHash(bytes32 composeHash) external;

    /// @notice Allows CVMs on the device with this id.
    function addDevice(bytes32 deviceId) external;

    /// @notice Stops allowing the device.
    function removeDevice(bytes32 deviceId) external;
}

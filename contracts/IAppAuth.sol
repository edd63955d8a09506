// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

/// @title IAppAuth
/// @notice The question a dstack KMS asks before it releases keys to a booting
/// CVM: "may this instance of this app boot?". The KMS registry answers it for
/// any registered app by forwarding to the app's own contract, which answers
/// it through the same interface.
/// @dev The interface has a single function, so its ERC-165 id equals the
/// selector of isAppAllowed (0x1e079198). Field order and types of
/// AppBootInfo are part of that selector and must never change.
interface IAppAuth is IERC165 {
    /// @notice Measurements and identity a CVM reports when it asks for keys.
    struct AppBootInfo {
        address appId; // address of the app's contract (the dstack app id)
        bytes32 composeHash; // sha256 of the app-compose document
        address instanceId; // per-instance id
        bytes32 deviceId; // id of the physical machine
        bytes32 mrAggregated; // aggregated measurement register
        bytes32 mrSystem; // system measurement register
        bytes32 osImageHash; // digest of the guest OS image
        string tcbStatus; // TCB status of the platform, e.g. "UpToDate"
        string[] advisoryIds; // security advisories that apply to the platform
    }

    /// @notice Decides whether the instance described by bootInfo may boot.
    /// @return isAllowed true when booting is allowed
    /// @return reason empty when allowed, otherwise why not
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason);
}

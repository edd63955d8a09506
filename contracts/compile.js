// compile.js: compile contracts/*.sol with the pinned solc-js for abigen.sh.
//
// Usage: node contracts/compile.js <toolsDir> <outDir>   (run from the repository root)
//
// Source unit names are repository-relative ("contracts/DstackKms.sol") and the
// OpenZeppelin imports are remapped to "node_modules/@openzeppelin/...", resolved
// inside <toolsDir>, so neither the compiler input nor the metadata hash embedded
// in the bytecode depends on where the checkout lives.
//
// Writes to <outDir>:
//   standard-input.json  the complete standard-JSON input, every source inlined
//                        (what a block explorer needs to verify the bytecode)
//   <Name>.abi, <Name>.bin  ABI and creation bytecode (hex, no 0x) of DstackKms,
//                        DstackApp, ERC1967Proxy and TimelockController, the
//                        inputs of abigen
//   sizes.txt            runtime size of each bound contract
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const [toolsDir, outDir] = process.argv.slice(2);
if (!toolsDir || !outDir) {
  console.error('usage: node contracts/compile.js <toolsDir> <outDir>');
  process.exit(2);
}
const solc = createRequire(path.resolve(toolsDir, 'package.json'))('solc');

const SOURCES = ['DstackKms.sol', 'DstackApp.sol', 'IAppAuth.sol', 'IAppAuthBasicManagement.sol'];
const OZ_PROXY = 'node_modules/@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol';
// OpenZeppelin's TimelockController, unchanged: `deploy --timelock` makes one the AppAuth's owner.
const OZ_TIMELOCK = 'node_modules/@openzeppelin/contracts/governance/TimelockController.sol';
// Size limit of deployed code (EIP-170).
const MAX_RUNTIME = 24576;

const input = {
  language: 'Solidity',
  sources: {},
  settings: {
    remappings: [
      '@openzeppelin/contracts-upgradeable/=node_modules/@openzeppelin/contracts-upgradeable/',
      '@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/',
    ],
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    viaIR: false,
    // ipfs hash of the metadata, so verified sources match byte for byte.
    metadata: { bytecodeHash: 'ipfs', appendCBOR: true, useLiteralContent: false },
    outputSelection: {
      '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
    },
  },
};
for (const f of SOURCES) {
  input.sources['contracts/' + f] = { content: fs.readFileSync(path.join('contracts', f), 'utf8') };
}
// Listed explicitly so the proxy and the timelock are compiled as targets of their own (their
// bindings deploy app proxies and timelocks).
for (const unit of [OZ_PROXY, OZ_TIMELOCK]) {
  input.sources[unit] = { content: fs.readFileSync(path.join(toolsDir, unit), 'utf8') };
}

// Only remapped OpenZeppelin paths may be loaded, and only from the tools folder.
const loaded = {};
function findImports(unitName) {
  if (!unitName.startsWith('node_modules/@openzeppelin/') || unitName.includes('..')) {
    return { error: 'import outside the pinned OpenZeppelin packages: ' + unitName };
  }
  try {
    const content = fs.readFileSync(path.join(toolsDir, unitName), 'utf8');
    loaded[unitName] = content;
    return { contents: content };
  } catch (e) {
    return { error: String(e) };
  }
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const e of output.errors || []) {
  console.error(e.formattedMessage || e.message);
  if (e.severity === 'error') failed = true;
}
if (failed) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });

// Inline every loaded import so the saved input compiles on its own.
const fullInput = JSON.parse(JSON.stringify(input));
for (const name of Object.keys(loaded).sort()) {
  fullInput.sources[name] = { content: loaded[name] };
}
fs.writeFileSync(path.join(outDir, 'standard-input.json'), JSON.stringify(fullInput, null, 1) + '\n');

function contract(unit, name) {
  const c = output.contracts[unit] && output.contracts[unit][name];
  if (!c || !c.evm.bytecode.object) {
    console.error('compile.js: no bytecode for ' + unit + ':' + name);
    process.exit(1);
  }
  return c;
}

const bound = [
  ['contracts/DstackKms.sol', 'DstackKms'],
  ['contracts/DstackApp.sol', 'DstackApp'],
  [OZ_PROXY, 'ERC1967Proxy'],
  [OZ_TIMELOCK, 'TimelockController'],
];
const sizes = [];
for (const [unit, name] of bound) {
  const c = contract(unit, name);
  const runtime = c.evm.deployedBytecode.object.length / 2;
  sizes.push(name + ' runtime ' + runtime + ' bytes, init ' + c.evm.bytecode.object.length / 2 + ' bytes');
  if (runtime > MAX_RUNTIME) {
    console.error('compile.js: ' + name + ' runtime code is ' + runtime + ' bytes, over the EIP-170 limit');
    process.exit(1);
  }
  fs.writeFileSync(path.join(outDir, name + '.abi'), JSON.stringify(c.abi));
  fs.writeFileSync(path.join(outDir, name + '.bin'), c.evm.bytecode.object);
}
fs.writeFileSync(path.join(outDir, 'sizes.txt'), sizes.join('\n') + '\n');
console.error('compiled with solc ' + solc.version() + ':\n  ' + sizes.join('\n  '));

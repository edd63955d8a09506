// Drives a Safe Transaction Service with the official client,
// @safe-global/api-kit 5.0.3, computing hashes and signatures with viem on
// its own: a second, independent client of testnet/safeservice. Run by
// apikit_test.go as `node check.cjs propose|after` with a JSON request on
// stdin; prints one JSON document of what the client saw.
//
// API_KIT_DIR is the folder install-api-kit.sh installed into.
'use strict';
const { createRequire } = require('module');
const req = createRequire(require('path').join(process.env.API_KIT_DIR, 'package.json'));
const SafeApiKit = req('@safe-global/api-kit').default;
const { createWalletClient, http, hashTypedData } = req('viem');
const { privateKeyToAccount } = req('viem/accounts');

const safeTxTypes = {
  SafeTx: [
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'data', type: 'bytes' },
    { name: 'operation', type: 'uint8' },
    { name: 'safeTxGas', type: 'uint256' },
    { name: 'baseGas', type: 'uint256' },
    { name: 'gasPrice', type: 'uint256' },
    { name: 'gasToken', type: 'address' },
    { name: 'refundReceiver', type: 'address' },
    { name: 'nonce', type: 'uint256' },
  ],
};
const zero = '0x0000000000000000000000000000000000000000';

// caught runs f and returns the HttpError api-kit threw, as data.
async function caught(f) {
  try {
    await f();
    return null;
  } catch (e) {
    return { name: e.name, statusCode: e.statusCode, message: String(e.message) };
  }
}

async function main() {
  const mode = process.argv[2];
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const chainId = BigInt(input.chainId);
  const kit = new SafeApiKit({ chainId, txServiceUrl: input.url });
  const acct = (k) => privateKeyToAccount(k);
  const wallet = (k) => createWalletClient({ account: acct(k), transport: http(input.rpcUrl) });
  const owner1 = acct(input.keys.owner1);
  const owner2 = acct(input.keys.owner2);
  const delegate = acct(input.keys.delegate);
  const stranger = acct(input.keys.stranger);
  const out = {};

  if (mode === 'after') {
    const tx = await kit.getTransaction(input.safeTxHash);
    out.isExecuted = tx.isExecuted;
    out.isSuccessful = tx.isSuccessful;
    out.transactionHash = tx.transactionHash;
    out.confirmations = tx.confirmations.length;
    out.pending = (await kit.getPendingTransactions(input.safe)).count;
    out.nextNonce = await kit.getNextNonce(input.safe);
    out.lateConfirm = await caught(() => kit.confirmTransaction(input.safeTxHash, input.lateSignature));
    process.stdout.write(JSON.stringify(out));
    return;
  }

  const info = await kit.getSafeInfo(input.safe);
  out.info = { owners: info.owners, threshold: info.threshold, nonce: info.nonce, singleton: info.singleton, version: info.version };

  // An owner registers the CI key as a delegate (api-kit signs with viem).
  out.addDelegate = await kit.addSafeDelegate({
    safeAddress: input.safe, delegateAddress: delegate.address, delegatorAddress: owner1.address,
    label: 'ci', signer: wallet(input.keys.owner1),
  });
  out.delegates = (await kit.getSafeDelegates({ safeAddress: input.safe })).results.map((d) => d.delegate);

  const nonce = await kit.getNextNonce(input.safe);
  const data = {
    to: input.tx.to, value: '0', data: input.tx.data, operation: 0, safeTxGas: '0', baseGas: '0', gasPrice: '0',
    gasToken: zero, refundReceiver: zero, nonce: Number(nonce),
  };
  const hash = hashTypedData({ domain: { chainId, verifyingContract: input.safe }, types: safeTxTypes, primaryType: 'SafeTx', message: data });
  out.nonce = nonce;
  out.safeTxHash = hash;

  // The service refuses a wrong hash and a sender who is neither owner nor delegate.
  const wrong = '0x' + hash.slice(2).split('').reverse().join('');
  out.wrongHash = await caught(async () => kit.proposeTransaction({
    safeAddress: input.safe, safeTransactionData: data, safeTxHash: wrong,
    senderAddress: delegate.address, senderSignature: await delegate.sign({ hash: wrong }),
  }));
  out.stranger = await caught(async () => kit.proposeTransaction({
    safeAddress: input.safe, safeTransactionData: data, safeTxHash: hash,
    senderAddress: stranger.address, senderSignature: await stranger.sign({ hash }),
  }));

  // The delegate proposes with its own signature.
  out.proposed = await kit.proposeTransaction({
    safeAddress: input.safe, safeTransactionData: data, safeTxHash: hash,
    senderAddress: delegate.address, senderSignature: await delegate.sign({ hash }), origin: 'api-kit check',
  });
  const got = await kit.getTransaction(hash);
  out.got = {
    safeTxHash: got.safeTxHash, nonce: got.nonce, proposer: got.proposer, proposedByDelegate: got.proposedByDelegate,
    confirmations: got.confirmations.length, confirmationsRequired: got.confirmationsRequired, isExecuted: got.isExecuted, origin: got.origin,
  };
  // Delegates cannot confirm; an owner can.
  out.delegateConfirm = await caught(async () => kit.confirmTransaction(hash, await delegate.sign({ hash })));
  out.confirmed = await kit.confirmTransaction(hash, await owner2.sign({ hash }));
  const pending = await kit.getPendingTransactions(input.safe);
  out.pending = { count: pending.count, hashes: pending.results.map((t) => t.safeTxHash), confirmations: pending.results.map((t) => t.confirmations.length) };
  out.nextNonce = await kit.getNextNonce(input.safe);
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`check.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});

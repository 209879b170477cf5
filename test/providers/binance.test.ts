import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import {
  binanceConfigSchema,
  binanceIpRestriction,
  binanceProvider,
  binanceSignature,
  type BinanceConfig,
  type BinanceCredential,
} from '../../providers/binance';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import { findFreePort } from '../../shared/local-services';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { startBinanceEmulator, type BinanceEmulator, type BinanceKeyPair, type SeededBinanceAccount } from '../emulators/binance';
import { capturedRuntimeLogger, startTestWorker, testClient, testVault, uniqueSuffix, type RunningTestWorker } from '../support/environment';
import { historyText, settleRotations } from '../support/rotations';

// Every log line the provider writes during the unit tests, searched for secrets at the end.
const logLines: string[] = [];
const logger = createLogger({
  level: 'debug',
  destination: new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  }),
});

// Every secret value the unit tests saw, so the last of them can prove none reached a log line.
const seenSecrets = new Set<string>();

function contextFor(emulator: BinanceEmulator, account: SeededBinanceAccount, config: Partial<BinanceConfig> = {}): ProviderContext<BinanceConfig, BinanceCredential> {
  seenSecrets.add(account.managementCredential.api_secret);
  seenSecrets.add(account.currentKey.api_secret);
  return {
    config: binanceConfigSchema.parse({ base_url: emulator.url, sub_account_id: account.subAccountId, ...config }),
    credential: account.managementCredential,
    logger,
  };
}

async function captureProviderError(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

describe('binance request signing', () => {
  // The worked example "SIGNED Endpoint Examples for POST /api/v3/order" in
  // https://github.com/binance/binance-spot-api-docs/blob/master/rest-api.md, with its published
  // secret key and signatures.
  const secret = 'NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j';
  const allParams = 'symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559';

  it('signs the documented query string', () => {
    assert.equal(binanceSignature(secret, allParams), 'c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71');
  });

  it('signs the documented body', () => {
    assert.equal(binanceSignature(secret, '', allParams), 'c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71');
  });

  it('signs query and body without a joining &', () => {
    const signature = binanceSignature(secret, 'symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC', 'quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559');

    assert.equal(signature, '0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77');
  });
});

describe('binance provider against the emulator', () => {
  let emulator: BinanceEmulator;

  before(async () => {
    emulator = await startBinanceEmulator();
  });

  after(async () => {
    await emulator.stop();
  });

  async function createTestKey(context: ProviderContext<BinanceConfig, BinanceCredential>, ipAllowlist = ['127.0.0.1/32'], scopes = ['canTrade']) {
    const created = await binanceProvider.createKey(context, { label: `rotor-${uniqueSuffix()}`, restrictions: { ipAllowlist, scopes } });
    seenSecrets.add(created.secret.api_secret);
    return created;
  }

  it('createKey adds a key that listKeys reports', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const created = await createTestKey(context);
    const keys = await binanceProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(keys.length, 2);
    assert.equal(listed?.status, 'active');
    // Binance stores no name or note for broker sub-account keys, so no label comes back.
    assert.equal(listed?.label, undefined);
    assert.equal(created.secret.api_key, created.keyId);
    assert.match(created.secret.api_secret, /^[A-Za-z0-9]{64}$/);
  });

  it('createKey applies IP restriction and permissions', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account, { permissions: ['futuresTrade'] });

    const created = await createTestKey(context, ['127.0.0.1/32', '203.0.113.7'], ['canTrade']);
    const stored = emulator.keyDetails(created.keyId);

    assert.deepEqual(stored?.ipList, ['127.0.0.1', '203.0.113.7']);
    assert.equal(stored?.canTrade, true);
    assert.equal(stored?.futuresTrade, true);
    assert.equal(stored?.marginTrade, false);
    assert.equal(stored?.uid, account.subAccountId);
  });

  it('createKey without an allowlist leaves the key unrestricted', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const created = await createTestKey(context, [], []);
    const stored = emulator.keyDetails(created.keyId);

    assert.deepEqual(stored?.ipList, []);
    assert.equal(stored?.canTrade, false);
  });

  it('verifyKey accepts the new key', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account, { permissions: ['canTrade'] });
    const created = await createTestKey(context);

    await binanceProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await emulator.accepts(keyPair(created.secret)), true);
  });

  it('verifyKey rejects a made-up key as authentication', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const madeUp = { api_key: 'MADEUPKEY0000000000000000000000000000000000000000000000000000000', api_secret: 'madeUpSecretValue000000000000000000000000000000000000000000000000' };

    const error = await captureProviderError(binanceProvider.verifyKey(context, madeUp.api_key, madeUp));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '-2015');
    assert.equal(error.details.operation, 'verifyKey');
    assert.match(error.message, /does not accept the new API key MADEUPKEY0+/);
    assert.match(error.message, new RegExp(`sub-account ${account.subAccountId}`));
    assert.equal(error.message.includes(madeUp.api_secret), false, 'the message contains the secret');
  });

  it('verifyKey rejects a key with withdrawals on', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context);
    emulator.grantNextRestrictionsFlag('enableWithdrawals');

    const error = await captureProviderError(binanceProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'RestrictionMismatch');
    assert.match(error.message, /enableWithdrawals is on, which Rotor never requests/);
  });

  it('verifyKey rejects an unrestricted key when an allowlist was requested', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context, [], []);

    const error = await captureProviderError(binanceProvider.verifyKey(context, created.keyId, created.secret, { ipAllowlist: ['127.0.0.1/32'] }));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'RestrictionMismatch');
    assert.match(error.message, /ipRestrict is false although restrictions\.ip_allowlist is set/);
  });

  it('verifyKey rejects a key without a requested scope', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context, ['127.0.0.1/32'], []);

    const error = await captureProviderError(binanceProvider.verifyKey(context, created.keyId, created.secret, { scopes: ['canTrade'] }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /enableSpotAndMarginTrading is off although config\.permissions or restrictions\.scopes lists canTrade/);
  });

  it('verifyKey rejects a key without a configured permission', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account, { permissions: ['marginTrade'] });

    const error = await captureProviderError(binanceProvider.verifyKey(context, account.currentKey.api_key, { ...account.currentKey }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /enableMargin is off although config\.permissions or restrictions\.scopes lists marginTrade/);
  });

  it('verifyKey rejects a secret without api_secret', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(binanceProvider.verifyKey(context, 'INCOMPLETEKEY', { api_key: 'INCOMPLETEKEY' }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /api_secret/);
  });

  it('key restricted to another address fails verify', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context, ['203.0.113.10/32']);

    const error = await captureProviderError(binanceProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '-2015');
    assert.match(error.message, /restrictions\.ip_allowlist/);
    assert.equal(await emulator.accepts(keyPair(created.secret)), false);
  });

  it('revokeKey twice succeeds', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context);

    await binanceProvider.revokeKey(context, created.keyId);
    const keysAfterRevoke = await binanceProvider.listKeys(context);
    await binanceProvider.revokeKey(context, created.keyId);

    assert.deepEqual(
      keysAfterRevoke.map((key) => key.keyId),
      [account.currentKey.api_key],
    );
    assert.deepEqual(emulator.keyIds(account.subAccountId), [account.currentKey.api_key]);
  });

  it('revoked key is rejected by the emulator', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context);
    await binanceProvider.verifyKey(context, created.keyId, created.secret);

    await binanceProvider.revokeKey(context, created.keyId);

    assert.equal(await emulator.accepts(keyPair(created.secret)), false);
    const error = await captureProviderError(binanceProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '-2015');
  });

  it('revokeKey leaves a key of another sub-account alone', async () => {
    const account = emulator.seedAccount();
    const other = emulator.seedAccount({ masterUid: account.masterUid });
    const context = contextFor(emulator, account);

    await binanceProvider.revokeKey(context, other.currentKey.api_key);

    assert.deepEqual(emulator.keyIds(other.subAccountId), [other.currentKey.api_key]);
    assert.equal(await emulator.accepts(other.currentKey), true);
  });

  it('key limit maps to limit-reached', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.seedSubAccountKeys(account.subAccountId, 29);

    const error = await captureProviderError(createTestKey(context));

    assert.equal(error.kind, 'limit-reached');
    assert.equal(error.retryable, false);
    assert.equal(error.details.vendorCode, '-1130');
    assert.match(error.message, new RegExp(`sub-account ${account.subAccountId} already has 30 API keys, and Binance rejected another one \\(-1130\\)`));
    assert.equal(emulator.keyIds(account.subAccountId).length, 30);
  });

  it('HTTP 429 maps to rate-limited with Retry-After', async () => {
    const limited = await startBinanceEmulator({ rateLimitPerSecond: 1 });
    try {
      const context = contextFor(limited, limited.seedAccount());
      await binanceProvider.listKeys(context);

      const error = await captureProviderError(binanceProvider.listKeys(context));

      assert.equal(error.kind, 'rate-limited');
      assert.equal(error.details.vendorCode, 'HTTP 429');
      assert.equal(error.retryable, true);
      assert.equal(error.details.retryAfterMs, 1_000);
      assert.match(error.message, /Binance rate-limited GET \/sapi\/v1\/broker\/subAccountApi/);
      assert.equal(limited.rateLimitedResponses, 1);
    } finally {
      await limited.stop();
    }
  });

  it('wrong management secret maps to authentication', async () => {
    const account = emulator.seedAccount();
    const wrongSecret = 'wrongManagementSecret0000000000000000000000000000000000000000000';
    const context = { ...contextFor(emulator, account), credential: { api_key: account.managementCredential.api_key, api_secret: wrongSecret } };

    const error = await captureProviderError(binanceProvider.listKeys(context));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '-1022');
    assert.equal(error.retryable, false);
    assert.match(error.message, /rejected the management credential/);
    assert.match(error.message, new RegExp(`sub-account ${account.subAccountId}`));
    assert.equal(error.message.includes(wrongSecret), false, 'the message contains the secret');
    assert.equal(JSON.stringify(error).includes(wrongSecret), false, 'the serialized error contains the secret');
    assert.equal(error.message.includes(account.managementCredential.api_secret), false, 'the message contains the real secret');
  });

  it('management key without trade maps to authentication', async () => {
    const account = emulator.seedAccount({ managementWithoutTrade: true });
    const context = contextFor(emulator, account);

    const error = await captureProviderError(createTestKey(context));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '-2015');
    assert.match(error.message, /Enable Spot & Margin Trading/);
    assert.deepEqual(emulator.keyIds(account.subAccountId), [account.currentKey.api_key]);
  });

  it('sub-account of another broker is invalid config', async () => {
    const account = emulator.seedAccount();
    const stranger = emulator.seedAccount();
    const context = { ...contextFor(emulator, account), config: binanceConfigSchema.parse({ base_url: emulator.url, sub_account_id: stranger.subAccountId }) };

    const error = await captureProviderError(binanceProvider.listKeys(context));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, '-1130');
    assert.match(error.message, /Check sub_account_id/);
  });

  it('list response without apikey is unexpected', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.replaceNextResponse('GET /sapi/v1/broker/subAccountApi', [{ subaccountId: account.subAccountId, canTrade: false }]);

    const error = await captureProviderError(binanceProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, 'Binance returned an unexpected response to listKeys: [0].apikey is missing');
  });

  it('create response without secretKey is unexpected', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.replaceNextResponse('POST /sapi/v1/broker/subAccountApi', { subaccountId: account.subAccountId, apiKey: 'K'.repeat(64), canTrade: true, marginTrade: false, futuresTrade: false });

    const error = await captureProviderError(createTestKey(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.message, 'Binance returned an unexpected response to createKey: secretKey is missing');
  });

  it('stored IP list that differs deletes the key', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.replaceNextResponse('POST /sapi/v2/broker/subAccountApi/ipRestriction', { status: '2', ipList: ['198.51.100.1'], apiKey: 'ignored', updateTime: 0 });

    const error = await captureProviderError(createTestKey(context, ['127.0.0.1']));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'RestrictionMismatch');
    assert.match(error.message, /stored status 2 with addresses 198\.51\.100\.1/);
    assert.deepEqual(emulator.keyIds(account.subAccountId), [account.currentKey.api_key]);
  });

  it('createKey rejects an address block', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(createTestKey(context, ['203.0.113.0/24']));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /single IP addresses, but restrictions\.ip_allowlist contains the block 203\.0\.113\.0\/24/);
    assert.deepEqual(emulator.keyIds(account.subAccountId), [account.currentKey.api_key]);
  });

  it('createKey rejects an unknown scope', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(createTestKey(context, [], ['withdraw']));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /"withdraw", which is not a Binance sub-account key permission/);
    assert.match(error.message, /canTrade, marginTrade, futuresTrade/);
  });

  it('keyIdFromSecret returns api_key', () => {
    assert.equal(binanceProvider.keyIdFromSecret({ api_key: 'KEY0', api_secret: 'x' }), 'KEY0');
    assert.equal(binanceProvider.keyIdFromSecret({ api_secret: 'x' }), undefined);
  });

  it('logs contain no secret', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created Binance sub-account API key'));
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a secret reached the log');
    }
  });
});

describe('binance HTTP failures', () => {
  // A loopback server that responds as Binance's edge does in cases the emulator does not produce.
  let stubUrl: string;
  let stubResponse: { status: number; body: string; headers?: Record<string, string> };
  let stub: http.Server;

  before(async () => {
    stub = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(stubResponse.status, { 'content-type': 'application/json', ...stubResponse.headers });
        response.end(stubResponse.body);
      });
    });
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
    stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => stub.close(() => resolve()));
  });

  function stubContext(baseUrl = stubUrl): ProviderContext<BinanceConfig, BinanceCredential> {
    return {
      config: binanceConfigSchema.parse({ base_url: baseUrl, sub_account_id: '437329423' }),
      credential: { api_key: 'STUBMANAGEMENT', api_secret: 'stubManagementSecret0000000000000000' },
      logger,
    };
  }

  it('HTTP 418 waits out the IP ban', async () => {
    stubResponse = { status: 418, body: '{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000000000."}', headers: { 'Retry-After': '120' } };

    const error = await captureProviderError(binanceProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'rate-limited');
    assert.equal(error.details.retryAfterMs, 120_000);
    assert.equal(error.details.vendorCode, 'HTTP 418');
    assert.match(error.message, /banned the worker's IP address/);
  });

  it('timestamp outside recvWindow points at the clock', async () => {
    stubResponse = { status: 400, body: '{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}' };

    const error = await captureProviderError(binanceProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '-1021');
    assert.match(error.message, /Check the worker host's clock/);
  });

  it('HTTP 404 without a code points at base_url', async () => {
    stubResponse = { status: 404, body: 'Not Found' };

    const error = await captureProviderError(binanceProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /Check base_url/);
  });

  it('HTTP 503 maps to transient', async () => {
    stubResponse = { status: 503, body: '' };

    const error = await captureProviderError(binanceProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'HTTP 503');
  });

  it('closed port maps to transient', async () => {
    const closedPort = await findFreePort();

    const error = await captureProviderError(binanceProvider.listKeys(stubContext(`http://127.0.0.1:${closedPort}`)));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /ECONNREFUSED/);
  });
});

describe('binance config and registry', () => {
  it('config schema fills the defaults', () => {
    const config = binanceConfigSchema.parse({ sub_account_id: 437329423 });

    assert.equal(config.base_url, 'https://api.binance.com');
    assert.equal(config.sub_account_id, '437329423');
    assert.deepEqual(config.permissions, []);
    assert.equal(config.recv_window, 5_000);
  });

  it('config schema parses its own output', () => {
    const once = binanceConfigSchema.parse({ sub_account_id: '437329423', permissions: ['canTrade'] });

    assert.deepEqual(binanceConfigSchema.parse(once), once);
  });

  it('config schema rejects unknown fields and values', () => {
    assert.equal(binanceConfigSchema.safeParse({ sub_account_id: '1', subAccountId: '1' }).success, false);
    assert.equal(binanceConfigSchema.safeParse({ sub_account_id: '1', permissions: ['withdraw'] }).success, false);
    assert.equal(binanceConfigSchema.safeParse({ sub_account_id: 'abc' }).success, false);
    assert.equal(binanceConfigSchema.safeParse({ sub_account_id: '1', recv_window: 60_001 }).success, false);
  });

  it('IP restriction keeps single addresses', () => {
    assert.deepEqual(binanceIpRestriction(['127.0.0.1/32', '2001:db8::1/128', '198.51.100.4', '127.0.0.1']), ['127.0.0.1', '2001:db8::1', '198.51.100.4']);
  });

  it('registry lists binance', () => {
    const provider = getProvider('binance');

    assert.equal(provider.name, 'binance');
    assert.equal(provider.capabilities.ipAllowlist, true);
    assert.equal(provider.capabilities.scopes, true);
    assert.equal(provider.capabilities.expiry, false);
    assert.equal(provider.capabilities.defaultRateLimitPerSecond, 1);
    assert.match(provider.help, /Binance Link/);
  });
});

describe('binance rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let emulator: BinanceEmulator;
  let worker: RunningTestWorker;
  const taskQueue = `rotor-binance-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    emulator = await startBinanceEmulator();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  describe('a full rotation', () => {
    let account: SeededBinanceAccount;
    let integration: IntegrationSpec;
    let result: RotationResult;
    let history: string;

    before(async () => {
      ({ account, integration } = await prepareBinanceIntegration(vault, emulator));
      const handle = await startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });
      result = await handle.result();
      history = await historyText(handle);
    });

    it('promotes the new key for consumers', async () => {
      const latest = await vault.readSecret(integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(latest?.data.api_key, result.state.pendingKeyId);
      assert.notEqual(latest?.data.api_secret, account.currentKey.api_secret);
      assert.equal(await emulator.accepts(keyPair(latest?.data ?? {})), true);
    });

    it('creates the key with the restrictions', () => {
      const stored = emulator.keyDetails(result.state.pendingKeyId ?? '');

      assert.deepEqual(stored?.ipList, ['127.0.0.1']);
      assert.equal(stored?.canTrade, true);
      assert.equal(stored?.marginTrade, false);
      assert.equal(stored?.futuresTrade, false);
    });

    it('deletes the old key at the emulator', async () => {
      assert.deepEqual(emulator.keyIds(account.subAccountId), [result.state.pendingKeyId]);
      assert.equal(await emulator.accepts(account.currentKey), false);
    });

    it('keeps the secrets out of history and logs', async () => {
      const newSecret = (await vault.readSecret(integration.vaultPath))?.data.api_secret ?? '';
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(newSecret.length >= 64);
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new key id');
      assert.equal(history.includes(newSecret), false, 'new secret found in history');
      assert.equal(history.includes(account.currentKey.api_secret), false, 'old secret found in history');
      assert.equal(history.includes(account.managementCredential.api_secret), false, 'management secret found in history');
      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.equal(logs.includes(newSecret), false, 'new secret found in logs');
      assert.equal(logs.includes(account.currentKey.api_secret), false, 'old secret found in logs');
      assert.equal(logs.includes(account.managementCredential.api_secret), false, 'management secret found in logs');
    });
  });

  it('rate-limit storm completes every rotation', async () => {
    const stormQueue = `rotor-binance-storm-${uniqueSuffix()}`;
    const limited = await startBinanceEmulator({ rateLimitPerSecond: 2 });
    // The worker's own limit is far above the emulator's, so the emulator does the throttling.
    const stormWorker = await startTestWorker(stormQueue, { rateLimits: { binance: 100 } });
    try {
      const first = await prepareBinanceIntegration(vault, limited);
      const second = await prepareBinanceIntegration(vault, limited, { masterUid: first.account.masterUid });
      const third = await prepareBinanceIntegration(vault, limited, { masterUid: first.account.masterUid });
      const prepared = [first, second, third];

      const handles = await Promise.all(
        prepared.map(({ integration }) => startRotation(client, integration, { taskQueue: stormQueue, dryRun: false, requestedBy: 'test' })),
      );
      const { results, failures } = await settleRotations(handles);
      assert.deepEqual(failures, []);

      assert.deepEqual(
        results.map((result) => result.outcome),
        ['completed', 'completed', 'completed'],
      );
      assert.ok(limited.rateLimitedResponses >= 1, `the emulator answered HTTP 429 ${limited.rateLimitedResponses} times`);
      for (const [index, { account, integration }] of prepared.entries()) {
        const latest = await vault.readSecret(integration.vaultPath);
        assert.equal(latest?.data.api_key, results[index].state.pendingKeyId);
        assert.deepEqual(limited.keyIds(account.subAccountId), [results[index].state.pendingKeyId]);
      }
    } finally {
      await stormWorker.stop();
      await limited.stop();
    }
  });

  it('bad management credential stops in planning', async () => {
    const { account, integration } = await prepareBinanceIntegration(vault, emulator);
    const wrongSecret = 'wrongManagementSecret0000000000000000000000000000000000000000000';
    await vault.writeSecret(integration.managementCredentialPath, { api_key: account.managementCredential.api_key, api_secret: wrongSecret });

    const handle = await startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });
    const failure = await handle.result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(`^Rotation of ${integration.id} failed in phase planning: Binance rejected the management credential for GET /sapi/v1/broker/subAccountApi`),
    );
    assert.match(failure.cause?.message ?? '', /code -1022/);
    assert.equal((failure.cause?.message ?? '').includes(wrongSecret), false);
    assert.deepEqual(emulator.keyIds(account.subAccountId), [account.currentKey.api_key]);
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

/** Seeds a sub-account at the emulator and writes its management credential and current key to Vault. */
async function prepareBinanceIntegration(
  vault: VaultStore,
  emulator: BinanceEmulator,
  options: { masterUid?: string } = {},
): Promise<{ account: SeededBinanceAccount; integration: IntegrationSpec }> {
  const account = emulator.seedAccount({ masterUid: options.masterUid });
  const id = `binance-${uniqueSuffix()}`;
  const managementCredentialPath = `rotor/management/${id}`;
  const vaultPath = `apps/${id}/binance`;
  await vault.writeSecret(managementCredentialPath, { ...account.managementCredential });
  await vault.writeSecret(vaultPath, { ...account.currentKey });

  const integration: IntegrationSpec = {
    id,
    provider: 'binance',
    providerConfig: { base_url: emulator.url, sub_account_id: account.subAccountId },
    managementCredentialPath,
    vaultPath,
    owner: 'platform-tests',
    policy: { gracePeriodMs: 1_000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
    restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: ['canTrade'] },
  };
  return { account, integration };
}

function keyPair(secret: Record<string, string>): BinanceKeyPair {
  return { api_key: secret.api_key ?? '', api_secret: secret.api_secret ?? '' };
}

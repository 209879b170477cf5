import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import {
  bybitConfigSchema,
  bybitIpBinding,
  bybitProvider,
  bybitSignature,
  rateLimitDelayMs,
  type BybitConfig,
  type BybitCredential,
} from '../../providers/bybit';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import { findFreePort } from '../../shared/local-services';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { startBybitEmulator, type BybitEmulator, type BybitKeyPair, type SeededBybitAccount } from '../emulators/bybit';
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

const SCOPES = ['ContractTrade:Order', 'ContractTrade:Position'];

function contextFor(emulator: BybitEmulator, account: SeededBybitAccount, config: Partial<BybitConfig> = {}): ProviderContext<BybitConfig, BybitCredential> {
  seenSecrets.add(account.managementCredential.api_secret);
  seenSecrets.add(account.currentKey.api_secret);
  return {
    config: bybitConfigSchema.parse({ base_url: emulator.url, sub_uid: account.subUid, ...config }),
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

describe('bybit request signing', () => {
  // Bybit's guide (https://bybit-exchange.github.io/docs/v5/guide) shows the string to sign,
  // timestamp + api_key + recv_window + queryString, with placeholder keys but no secret and no
  // resulting signature. These vectors sign the guide's strings with a secret chosen here. The
  // expected values were computed with Python's hmac module and checked with `openssl dgst -sha256 -hmac`.
  const secret = 'rotorHandVectorSecret0123456789abcdef';

  it('signs the guide GET example', () => {
    const signature = bybitSignature({
      secret,
      timestamp: '1658384314791',
      apiKey: 'XXXXXXXXXX',
      recvWindow: '5000',
      payload: 'category=option&symbol=BTC-29JUL22-25000-C',
    });

    assert.equal(signature, '174649a843fc39f25241fb4b7b0120a2801fd079948a2d5cf384e87bd43b9cec');
  });

  it('signs a POST body as sent', () => {
    const signature = bybitSignature({
      secret,
      timestamp: '1658385579423',
      apiKey: 'XXXXXXXXXX',
      recvWindow: '5000',
      payload: '{"subuid":53888002,"readOnly":1}',
    });

    assert.equal(signature, '1623e027edb59716fcad62a567609c297fec3a8138a1ff59ee7f42337354fb95');
  });
});

describe('bybit provider against the emulator', () => {
  let emulator: BybitEmulator;

  before(async () => {
    emulator = await startBybitEmulator();
  });

  after(async () => {
    await emulator.stop();
  });

  async function createTestKey(context: ProviderContext<BybitConfig, BybitCredential>, ipAllowlist = ['127.0.0.1/32']) {
    const created = await bybitProvider.createKey(context, { label: `rotor-${uniqueSuffix()}`, restrictions: { ipAllowlist, scopes: SCOPES } });
    seenSecrets.add(created.secret.api_secret);
    return created;
  }

  it('createKey labels the key in listKeys', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const label = `rotor-${uniqueSuffix()}`;

    const created = await bybitProvider.createKey(context, { label, restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: SCOPES } });
    seenSecrets.add(created.secret.api_secret);
    const keys = await bybitProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(keys.length, 2);
    assert.equal(listed?.label, label);
    assert.equal(listed?.status, 'active');
    assert.ok(Math.abs(Date.parse(listed?.createdAt ?? '') - Date.parse(created.createdAt)) < 2_000, `createdAt ${listed?.createdAt}`);
    assert.equal(created.secret.api_key, created.keyId);
    assert.match(created.secret.api_secret, /^[A-Za-z0-9]{36}$/);
  });

  it('createKey applies IP binding, permissions and read-only', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account, { permissions: { Spot: ['SpotTrade'] } });

    const created = await createTestKey(context, ['127.0.0.1/32', '203.0.113.7']);
    const stored = emulator.keyDetails(created.keyId);

    assert.deepEqual(stored?.ips, ['127.0.0.1', '203.0.113.7']);
    assert.deepEqual(stored?.permissions, { Spot: ['SpotTrade'], ContractTrade: ['Order', 'Position'] });
    assert.equal(stored?.readOnly, true);
    assert.equal(stored?.expiredAt, '');
    assert.equal(stored?.uid, account.subUid);
  });

  it('createKey without an allowlist makes an unbound key', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account, { read_only: false });

    const created = await createTestKey(context, []);
    const stored = emulator.keyDetails(created.keyId);
    const expiresInDays = (Date.parse(stored?.expiredAt ?? '') - Date.now()) / 86_400_000;

    assert.deepEqual(stored?.ips, ['*']);
    assert.equal(stored?.readOnly, false);
    assert.ok(expiresInDays > 89, `the unbound key expires in ${expiresInDays} days`);
    assert.ok(expiresInDays <= 90, `the unbound key expires in ${expiresInDays} days`);
  });

  it('verifyKey accepts the new key', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context);

    await bybitProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await emulator.accepts(keyPair(created.secret)), true);
  });

  it('verifyKey rejects a made-up key as authentication', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const madeUp = { api_key: 'MADEUPKEY000000000', api_secret: 'madeUpSecretValue0000000000000000000' };

    const error = await captureProviderError(bybitProvider.verifyKey(context, madeUp.api_key, madeUp));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '10003');
    assert.equal(error.details.operation, 'verifyKey');
    assert.match(error.message, /MADEUPKEY000000000/);
    assert.match(error.message, new RegExp(`sub account ${account.subUid}`));
    assert.ok(!error.message.includes(madeUp.api_secret), 'the message contains the secret');
  });

  it('verifyKey rejects a key of another sub account', async () => {
    const account = emulator.seedAccount();
    const other = emulator.seedAccount({ masterUid: account.masterUid });
    const context = contextFor(emulator, account);

    const error = await captureProviderError(bybitProvider.verifyKey(context, other.currentKey.api_key, { ...other.currentKey }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'UnexpectedCaller');
    assert.match(error.message, new RegExp(`UID ${other.subUid}, not as a key of sub account ${account.subUid}`));
  });

  it('verifyKey rejects a secret without api_secret', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(bybitProvider.verifyKey(context, 'INCOMPLETEKEY00000', { api_key: 'INCOMPLETEKEY00000' }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /api_secret/);
  });

  it('key bound to another address fails verify as permission', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context, ['203.0.113.10/32']);

    const error = await captureProviderError(bybitProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, '10010');
    assert.equal(error.retryable, false);
    assert.match(error.message, /restrictions\.ip_allowlist/);
    assert.equal(await emulator.accepts(keyPair(created.secret)), false);
  });

  it('revokeKey twice succeeds', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context);

    await bybitProvider.revokeKey(context, created.keyId);
    const keysAfterRevoke = await bybitProvider.listKeys(context);
    await bybitProvider.revokeKey(context, created.keyId);

    assert.deepEqual(
      keysAfterRevoke.map((key) => key.keyId),
      [account.currentKey.api_key],
    );
    assert.deepEqual(emulator.keyIds(account.subUid), [account.currentKey.api_key]);
  });

  it('revoked key is rejected by the emulator', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    const created = await createTestKey(context);
    await bybitProvider.verifyKey(context, created.keyId, created.secret);

    await bybitProvider.revokeKey(context, created.keyId);

    assert.equal(await emulator.accepts(keyPair(created.secret)), false);
    const error = await captureProviderError(bybitProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '10003');
  });

  it('revokeKey leaves a key of another sub account alone', async () => {
    const account = emulator.seedAccount();
    const other = emulator.seedAccount({ masterUid: account.masterUid });
    const context = contextFor(emulator, account);

    await bybitProvider.revokeKey(context, other.currentKey.api_key);

    assert.deepEqual(emulator.keyIds(other.subUid), [other.currentKey.api_key]);
    assert.equal(await emulator.accepts(other.currentKey), true);
  });

  it('listKeys follows pages past 20 keys', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.seedSubAccountKeys(account.subUid, 24);

    const keys = await bybitProvider.listKeys(context);

    assert.equal(keys.length, 25);
    assert.deepEqual(
      keys.map((key) => key.keyId),
      emulator.keyIds(account.subUid),
    );
  });

  it('key limit maps to limit-reached', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.seedSubAccountKeys(account.subUid, 19);

    const error = await captureProviderError(createTestKey(context));

    assert.equal(error.kind, 'limit-reached');
    assert.equal(error.retryable, false);
    assert.equal(error.details.vendorCode, '10001');
    assert.match(error.message, new RegExp(`sub account ${account.subUid} already has 20 API keys, and Bybit rejected another one \\(retCode 10001\\)`));
    assert.equal(emulator.keyIds(account.subUid).length, 20);
  });

  it('emulator rejects a key past its limit', async () => {
    const small = await startBybitEmulator({ maxKeysPerSubAccount: 1 });
    try {
      const account = small.seedAccount();
      const context = contextFor(small, account);

      const error = await captureProviderError(createTestKey(context));

      assert.equal(error.kind, 'invalid-config');
      assert.equal(error.details.vendorCode, '10001');
      assert.match(error.message, /reached the limit of 1/);
      assert.equal(small.keyIds(account.subUid).length, 1);
    } finally {
      await small.stop();
    }
  });

  it('retCode 10006 maps to rate-limited with the reset delay', async () => {
    const limited = await startBybitEmulator({ rateLimitPerSecond: 1 });
    try {
      const context = contextFor(limited, limited.seedAccount());
      await bybitProvider.listKeys(context);

      const error = await captureProviderError(bybitProvider.listKeys(context));

      assert.equal(error.kind, 'rate-limited');
      assert.equal(error.details.vendorCode, '10006');
      assert.equal(error.retryable, true);
      assert.ok((error.details.retryAfterMs ?? 0) >= 100, `retryAfterMs is ${error.details.retryAfterMs}`);
      // At most one window until the reset plus at most a quarter window of jitter.
      assert.ok((error.details.retryAfterMs ?? Infinity) <= 1_250, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.match(error.message, /Too many visits!/);
      assert.equal(limited.rateLimitedResponses, 1);
    } finally {
      await limited.stop();
    }
  });

  it('wrong management secret maps to authentication', async () => {
    const account = emulator.seedAccount();
    const wrongSecret = 'wrongManagementSecret000000000000000';
    const context = { ...contextFor(emulator, account), credential: { api_key: account.managementCredential.api_key, api_secret: wrongSecret } };

    const error = await captureProviderError(bybitProvider.listKeys(context));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '10004');
    assert.equal(error.retryable, false);
    assert.match(error.message, /management credential/);
    assert.match(error.message, new RegExp(`sub account ${account.subUid}`));
    assert.ok(!error.message.includes(wrongSecret), 'the message contains the secret');
    assert.ok(!JSON.stringify(error).includes(wrongSecret), 'the serialized error contains the secret');
    assert.ok(!error.message.includes(account.managementCredential.api_secret), 'the message contains the real secret');
  });

  it('unknown management key maps to authentication', async () => {
    const account = emulator.seedAccount();
    const madeUpSecret = 'madeUpManagementSecret00000000000000';
    const context = { ...contextFor(emulator, account), credential: { api_key: 'UNKNOWNMANAGER0000', api_secret: madeUpSecret } };

    const error = await captureProviderError(createTestKey(context));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '10003');
    assert.ok(!JSON.stringify(error).includes(madeUpSecret), 'the serialized error contains the secret');
    assert.deepEqual(emulator.keyIds(account.subUid), [account.currentKey.api_key]);
  });

  it('read-only management key maps to permission', async () => {
    const account = emulator.seedAccount({ managementReadOnly: true });
    const context = contextFor(emulator, account);

    const error = await captureProviderError(createTestKey(context));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, '10005');
    assert.match(error.message, /read-and-write master API key/);
  });

  it('sub account of another master maps to invalid-config', async () => {
    const account = emulator.seedAccount();
    const stranger = emulator.seedAccount();
    const context = contextFor(emulator, account, { sub_uid: stranger.subUid });

    const error = await captureProviderError(bybitProvider.listKeys(context));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, '500010');
    assert.match(error.message, /Check sub_uid/);
  });

  it('unexpected list shape names the field', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.replaceNextResponse('GET /v5/user/sub-apikeys', {
      retCode: 0,
      retMsg: 'OK',
      result: { result: [{ note: 'no key here', status: 1 }], nextPageCursor: '' },
    });

    const error = await captureProviderError(bybitProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, 'Bybit returned an unexpected response to GET /v5/user/sub-apikeys: missing result.result[0].apiKey');
  });

  it('response without retCode is unexpected', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);
    emulator.replaceNextResponse('GET /v5/user/query-api', { ok: true });

    const error = await captureProviderError(bybitProvider.verifyKey(context, account.currentKey.api_key, { ...account.currentKey }));

    assert.equal(error.kind, 'transient');
    assert.equal(error.message, 'Bybit returned an unexpected response to GET /v5/user/query-api: missing retCode');
  });

  it('createKey rejects an address block', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(createTestKey(context, ['203.0.113.0/24']));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /single IP addresses, but restrictions\.ip_allowlist contains the block 203\.0\.113\.0\/24/);
    assert.deepEqual(emulator.keyIds(account.subUid), [account.currentKey.api_key]);
  });

  it('createKey rejects an unknown scope', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(
      bybitProvider.createKey(context, { label: 'rotor-scope', restrictions: { ipAllowlist: [], scopes: ['Spot:Withdraw'] } }),
    );

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /"Spot:Withdraw", which is not a Bybit permission/);
    assert.match(error.message, /Spot:SpotTrade/);
  });

  it('createKey needs at least one permission', async () => {
    const account = emulator.seedAccount();
    const context = contextFor(emulator, account);

    const error = await captureProviderError(bybitProvider.createKey(context, { label: 'rotor-empty', restrictions: { ipAllowlist: [], scopes: [] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /needs at least one permission/);
    assert.deepEqual(emulator.keyIds(account.subUid), [account.currentKey.api_key]);
  });

  it('keyIdFromSecret returns api_key', () => {
    assert.equal(bybitProvider.keyIdFromSecret({ api_key: 'KEY000000000000000', api_secret: 'x' }), 'KEY000000000000000');
    assert.equal(bybitProvider.keyIdFromSecret({ api_secret: 'x' }), undefined);
  });

  it('logs contain no secret', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created Bybit sub-account API key'));
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a secret reached the log');
    }
  });
});

describe('bybit HTTP failures', () => {
  // A loopback server that responds as Bybit's edge does in cases the emulator does not produce.
  let stubUrl: string;
  let stubResponse: { status: number; body: string };
  let stub: http.Server;

  before(async () => {
    stub = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(stubResponse.status, { 'content-type': 'text/plain' });
        response.end(stubResponse.body);
      });
    });
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
    stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => stub.close(() => resolve()));
  });

  function stubContext(baseUrl = stubUrl): ProviderContext<BybitConfig, BybitCredential> {
    return {
      config: bybitConfigSchema.parse({ base_url: baseUrl, sub_uid: '53888002' }),
      credential: { api_key: 'STUBMANAGEMENT0000', api_secret: 'stubManagementSecret0000000000000000' },
      logger,
    };
  }

  it('HTTP 403 waits out the IP ban', async () => {
    stubResponse = { status: 403, body: 'access too frequent' };

    const error = await captureProviderError(bybitProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'rate-limited');
    assert.equal(error.details.retryAfterMs, 600_000);
    assert.equal(error.details.vendorCode, 'HTTP 403');
  });

  it('HTTP 404 points at base_url', async () => {
    stubResponse = { status: 404, body: 'Not Found' };

    const error = await captureProviderError(bybitProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /Check base_url/);
  });

  it('closed port maps to transient', async () => {
    const closedPort = await findFreePort();

    const error = await captureProviderError(bybitProvider.listKeys(stubContext(`http://127.0.0.1:${closedPort}`)));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /ECONNREFUSED/);
  });

  it('reset timestamp sets the retry delay', () => {
    const now = 1_700_000_000_000;
    const headers = (reset: string) => new Headers({ 'X-Bapi-Limit-Reset-Timestamp': reset });
    const noJitter = () => 0;

    assert.equal(rateLimitDelayMs(headers(String(now + 640)), now, noJitter), 640);
    assert.equal(rateLimitDelayMs(headers(String(now - 5)), now, noJitter), 100);
    assert.equal(rateLimitDelayMs(headers(String(now + 3_600_000)), now, noJitter), 60_000);
    assert.equal(rateLimitDelayMs(new Headers(), now, noJitter), 1_000);
    assert.equal(rateLimitDelayMs(headers(String(now + 640)), now, () => 0.5), 765);
  });
});

describe('bybit config and registry', () => {
  it('config schema fills the defaults', () => {
    const config = bybitConfigSchema.parse({ sub_uid: 53888002 });

    assert.equal(config.base_url, 'https://api.bybit.com');
    assert.equal(config.sub_uid, '53888002');
    assert.equal(config.read_only, true);
    assert.deepEqual(config.permissions, {});
    assert.equal(config.recv_window, 5_000);
  });

  it('config schema parses its own output', () => {
    const once = bybitConfigSchema.parse({ sub_uid: '53888002', permissions: { Spot: ['SpotTrade'] } });

    assert.deepEqual(bybitConfigSchema.parse(once), once);
  });

  it('config schema rejects unknown fields and groups', () => {
    assert.equal(bybitConfigSchema.safeParse({ sub_uid: '1', subuid: '1' }).success, false);
    assert.equal(bybitConfigSchema.safeParse({ sub_uid: '1', permissions: { Withdraw: ['All'] } }).success, false);
    assert.equal(bybitConfigSchema.safeParse({ sub_uid: 'abc' }).success, false);
  });

  it('IP binding keeps single addresses', () => {
    assert.deepEqual(bybitIpBinding(['127.0.0.1/32', '2001:db8::1/128', '198.51.100.4', '127.0.0.1']), ['127.0.0.1', '2001:db8::1', '198.51.100.4']);
  });

  it('registry lists bybit', () => {
    const provider = getProvider('bybit');

    assert.equal(provider.name, 'bybit');
    assert.equal(provider.capabilities.ipAllowlist, true);
    assert.equal(provider.capabilities.expiry, false);
    assert.equal(provider.capabilities.defaultRateLimitPerSecond, 1);
    assert.match(provider.help, /90 days/);
  });
});

describe('bybit rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let emulator: BybitEmulator;
  let worker: RunningTestWorker;
  const taskQueue = `rotor-bybit-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    emulator = await startBybitEmulator();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  describe('a full rotation', () => {
    let account: SeededBybitAccount;
    let integration: IntegrationSpec;
    let result: RotationResult;
    let history: string;

    before(async () => {
      ({ account, integration } = await prepareBybitIntegration(vault, emulator));
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

      assert.deepEqual(stored?.ips, ['127.0.0.1']);
      assert.deepEqual(stored?.permissions, { ContractTrade: ['Order', 'Position'] });
      assert.equal(stored?.readOnly, true);
      assert.match(stored?.note ?? '', /^rotor-[A-Za-z0-9]+$/);
    });

    it('deletes the old key at the emulator', async () => {
      assert.deepEqual(emulator.keyIds(account.subUid), [result.state.pendingKeyId]);
      assert.equal(await emulator.accepts(account.currentKey), false);
    });

    it('keeps the secrets out of history and logs', async () => {
      const newSecret = (await vault.readSecret(integration.vaultPath))?.data.api_secret ?? '';
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(newSecret.length >= 36);
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
    const stormQueue = `rotor-bybit-storm-${uniqueSuffix()}`;
    const limited = await startBybitEmulator({ rateLimitPerSecond: 2 });
    // The worker's own limit is far above the emulator's, so the emulator does the throttling.
    const stormWorker = await startTestWorker(stormQueue, { rateLimits: { bybit: 100 } });
    try {
      const first = await prepareBybitIntegration(vault, limited);
      const second = await prepareBybitIntegration(vault, limited, { masterUid: first.account.masterUid });
      const third = await prepareBybitIntegration(vault, limited, { masterUid: first.account.masterUid });
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
      assert.ok(limited.rateLimitedResponses >= 1, `the emulator answered retCode 10006 ${limited.rateLimitedResponses} times`);
      for (const [index, { account, integration }] of prepared.entries()) {
        const latest = await vault.readSecret(integration.vaultPath);
        assert.equal(latest?.data.api_key, results[index].state.pendingKeyId);
        assert.deepEqual(limited.keyIds(account.subUid), [results[index].state.pendingKeyId]);
      }
    } finally {
      await stormWorker.stop();
      await limited.stop();
    }
  });

  it('bad management credential stops in planning', async () => {
    const { account, integration } = await prepareBybitIntegration(vault, emulator);
    const wrongSecret = 'wrongManagementSecret000000000000000';
    await vault.writeSecret(integration.managementCredentialPath, { api_key: account.managementCredential.api_key, api_secret: wrongSecret });

    const handle = await startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });
    const failure = await handle.result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(`^Rotation of ${integration.id} failed in phase planning: Bybit rejected the management credential for GET /v5/user/sub-apikeys`),
    );
    assert.match(failure.cause?.message ?? '', /retCode 10004/);
    assert.equal((failure.cause?.message ?? '').includes(wrongSecret), false);
    assert.deepEqual(emulator.keyIds(account.subUid), [account.currentKey.api_key]);
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

/** Seeds a sub account at the emulator and writes its management credential and current key to Vault. */
async function prepareBybitIntegration(
  vault: VaultStore,
  emulator: BybitEmulator,
  options: { masterUid?: string } = {},
): Promise<{ account: SeededBybitAccount; integration: IntegrationSpec }> {
  const account = emulator.seedAccount({ masterUid: options.masterUid });
  const id = `bybit-${uniqueSuffix()}`;
  const managementCredentialPath = `rotor/management/${id}`;
  const vaultPath = `apps/${id}/bybit`;
  await vault.writeSecret(managementCredentialPath, { ...account.managementCredential });
  await vault.writeSecret(vaultPath, { ...account.currentKey });

  const integration: IntegrationSpec = {
    id,
    provider: 'bybit',
    providerConfig: { base_url: emulator.url, sub_uid: account.subUid, read_only: true },
    managementCredentialPath,
    vaultPath,
    owner: 'platform-tests',
    policy: { gracePeriodMs: 1_000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
    restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: SCOPES },
  };
  return { account, integration };
}

function keyPair(secret: Record<string, string>): BybitKeyPair {
  return { api_key: secret.api_key ?? '', api_secret: secret.api_secret ?? '' };
}

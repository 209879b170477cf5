import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import {
  gateioConfigSchema,
  gateioIpWhitelist,
  gateioPermissions,
  gateioProvider,
  gateioSignature,
  gateioSignedHeaders,
  rateLimitDelayMs,
  type GateioConfig,
  type GateioCredential,
} from '../../providers/gateio';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import { rotationLabel, type IntegrationSpec, type RotationResult } from '../../workflows/rotation-types';
import { gateioKeyRejection, startGateioEmulator, type GateioEmulator, type GateioKeyPair, type SeededGateioAccount } from '../emulators/gateio';
import { capturedRuntimeLogger, startTestWorker, testClient, testVault, uniqueSuffix, type RunningTestWorker } from '../support/environment';
import { historyText } from '../support/rotations';

// Every log line the provider writes in the unit tests, searched for secrets at the end.
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

function rememberSecrets(...keys: GateioKeyPair[]): void {
  for (const key of keys) {
    seenSecrets.add(key.api_secret);
  }
}

function contextFor(
  emulator: GateioEmulator,
  account: SeededGateioAccount,
  credential: GateioCredential = account.managementCredential,
  config: Record<string, unknown> = {},
): ProviderContext<GateioConfig, GateioCredential> {
  return {
    config: gateioConfigSchema.parse({ base_url: emulator.url, user_id: account.userId, perms: [{ name: 'spot', read_only: true }], ...config }),
    credential,
    logger,
  };
}

/** Returns the fields of a created key's secret in the emulator's key-pair shape. */
function keyOf(secret: Record<string, string>): GateioKeyPair {
  return { api_key: secret.api_key, api_secret: secret.api_secret };
}

/** Returns a rotation label as Rotor makes them, from a random rotation id. */
function newRotationLabel(): string {
  return rotationLabel(randomUUID());
}

async function providerErrorOf(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
  return error;
}

describe('gateio request signing', () => {
  // The worked examples of "API Signature string generation" in Gate.io's APIv4 reference,
  // https://www.gate.io/docs/developers/apiv4/en/#api-signature-string-generation, which sign
  // with the key "key" and the secret "secret" at Timestamp 1541993715.
  const timestamp = '1541993715';

  it('signs the documented GET example', () => {
    const signature = gateioSignature({
      secret: 'secret',
      method: 'GET',
      path: '/api/v4/futures/orders',
      query: 'contract=BTC_USD&status=finished&limit=50',
      body: '',
      timestamp,
    });

    assert.equal(signature, '55f84ea195d6fe57ce62464daaa7c3c02fa9d1dde954e4c898289c9a2407a3d6fb3faf24deff16790d726b66ac9f74526668b13bd01029199cc4fcc522418b8a');
  });

  it('signs the documented POST example', () => {
    const body = '{"contract":"BTC_USD","type":"limit","size":100,"price":6800,"time_in_force":"gtc"}';

    const signature = gateioSignature({ secret: 'secret', method: 'post', path: '/api/v4/futures/orders', query: '', body, timestamp });

    assert.equal(signature, 'eae42da914a590ddf727473aff25fc87d50b64783941061f47a3fdb92742541fc4c2c14017581b4199a1418d54471c269c03a38d788d802e2c306c37636389f0');
  });

  it('sends KEY, Timestamp in seconds and SIGN', () => {
    const headers = gateioSignedHeaders({ api_key: 'key', api_secret: 'secret' }, 'GET', '/api/v4/futures/orders', 'contract=BTC_USD&status=finished&limit=50', '', new Date(1541993715_400));

    assert.equal(headers.KEY, 'key');
    assert.equal(headers.Timestamp, timestamp);
    assert.equal(headers.SIGN, '55f84ea195d6fe57ce62464daaa7c3c02fa9d1dde954e4c898289c9a2407a3d6fb3faf24deff16790d726b66ac9f74526668b13bd01029199cc4fcc522418b8a');
  });
});

describe('gateio restrictions', () => {
  it('ip whitelist takes single IPv4 addresses', () => {
    assert.deepEqual(gateioIpWhitelist(['203.0.113.7', '198.51.100.1/32', '203.0.113.7']), ['203.0.113.7', '198.51.100.1']);
    assert.deepEqual(gateioIpWhitelist([]), []);
  });

  it('ip whitelist rejects ranges, IPv6 and more than 20', () => {
    const tooMany = Array.from({ length: 21 }, (_, index) => `198.51.100.${index + 1}`);

    for (const allowlist of [['203.0.113.0/24'], ['2001:db8::1'], ['not-an-ip'], tooMany]) {
      assert.throws(() => gateioIpWhitelist(allowlist), (error: unknown) => error instanceof ProviderError && error.kind === 'invalid-config', allowlist.join(','));
    }
    assert.throws(() => gateioIpWhitelist(['203.0.113.0/24']), /Gate\.io binds API keys to single IPv4 addresses, but restrictions\.ip_allowlist contains 203\.0\.113\.0\/24/);
    assert.throws(() => gateioIpWhitelist(tooMany), /has 21 addresses, but Gate\.io binds at most 20/);
  });

  it('scopes replace the configured perms', () => {
    const configured = [{ name: 'spot' as const, read_only: true }];

    assert.deepEqual(gateioPermissions(configured, [], '10001'), configured);
    assert.deepEqual(gateioPermissions(configured, ['futures:write', 'wallet', 'spot:read'], '10001'), [
      { name: 'futures', read_only: false },
      { name: 'wallet', read_only: true },
      { name: 'spot', read_only: true },
    ]);
    assert.deepEqual(gateioPermissions([], ['spot:read', 'spot:write'], '10001'), [{ name: 'spot', read_only: false }]);
  });

  it('scopes reject unknown permissions', () => {
    for (const scope of ['withdrawal', 'spot:admin', 'spot:read:x']) {
      assert.throws(() => gateioPermissions([], [scope], '10001'), new RegExp(`restrictions\\.scopes contains "${scope}", which is not a Gate\\.io permission`));
    }
  });

  it('a key needs at least one permission', () => {
    assert.throws(() => gateioPermissions([], [], '10001'), /A new Gate\.io API key for sub-account 10001 needs at least one permission/);
  });
});

describe('gateio rate-limit delay', () => {
  const now = 1_700_000_000_000;
  const noJitter = () => 0;

  it('reads the reset time in milliseconds or seconds', () => {
    const milliseconds = new Headers({ 'X-Gate-RateLimit-Reset-Timestamp': String(now + 3_500) });
    const seconds = new Headers({ 'X-Gate-RateLimit-Reset-Timestamp': String(now / 1000 + 4) });

    assert.equal(rateLimitDelayMs(milliseconds, now, noJitter), 3_500);
    assert.equal(rateLimitDelayMs(seconds, now, noJitter), 4_000);
  });

  it('bounds the delay and adds jitter', () => {
    const past = new Headers({ 'X-Gate-RateLimit-Reset-Timestamp': String(now - 10_000) });
    const farFuture = new Headers({ 'X-Gate-RateLimit-Reset-Timestamp': String(now + 3_600_000) });

    assert.equal(rateLimitDelayMs(past, now, noJitter), 100);
    assert.equal(rateLimitDelayMs(farFuture, now, noJitter), 60_000);
    assert.equal(rateLimitDelayMs(past, now, () => 0.5), 600);
  });

  it('falls back without a usable header', () => {
    assert.equal(rateLimitDelayMs(undefined, now, noJitter), 5_000);
    assert.equal(rateLimitDelayMs(new Headers({ 'X-Gate-RateLimit-Reset-Timestamp': 'soon' }), now, noJitter), 5_000);
  });
});

describe('gateio config', () => {
  it('defaults base_url and perms', () => {
    const config = gateioConfigSchema.parse({ user_id: 10001 });

    assert.equal(config.base_url, 'https://api.gateio.ws/api/v4');
    assert.equal(config.user_id, '10001');
    assert.deepEqual(config.perms, []);
    assert.equal(config.mode, undefined);
  });

  it('rejects unknown fields and bad values', () => {
    assert.equal(gateioConfigSchema.safeParse({ user_id: 10001, sub_uid: 1 }).success, false);
    assert.equal(gateioConfigSchema.safeParse({ user_id: 'sub-1' }).success, false);
    assert.equal(gateioConfigSchema.safeParse({ user_id: 10001, perms: [{ name: 'withdrawal' }] }).success, false);
    assert.equal(gateioConfigSchema.safeParse({ user_id: 10001, mode: 3 }).success, false);
    assert.equal(gateioConfigSchema.safeParse({ user_id: 10001, base_url: 'ftp://api.gateio.ws' }).success, false);
  });

  it('registry returns the gateio provider', () => {
    assert.equal(getProvider('gateio'), gateioProvider);
  });

  it('keyIdFromSecret returns api_key', () => {
    assert.equal(gateioProvider.keyIdFromSecret({ api_key: 'k-1', api_secret: 's' }), 'k-1');
    assert.equal(gateioProvider.keyIdFromSecret({ api_secret: 's' }), undefined);
  });
});

describe('gateio provider against the emulator', () => {
  let emulator: GateioEmulator;

  before(async () => {
    // Fast enough that these tests never meet the rate limit, which has its own tests below.
    emulator = await startGateioEmulator({ rateLimitPerSecond: 1_000 });
  });

  after(async () => {
    await emulator.stop();
  });

  function seedAccount(options?: Parameters<GateioEmulator['seedAccount']>[0]): SeededGateioAccount {
    const account = emulator.seedAccount(options);
    rememberSecrets(account.managementCredential, account.currentKey);
    return account;
  }

  it('createKey labels the key in listKeys', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const label = newRotationLabel();

    const created = await gateioProvider.createKey(context, { label, restrictions: {} });
    rememberSecrets(keyOf(created.secret));
    const keys = await gateioProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(keys.length, 2);
    assert.equal(listed?.label, label);
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.createdAt, created.createdAt);
    assert.equal(listed?.lastUsedAt, null);
    assert.equal(keys.find((key) => key.keyId === account.currentKey.api_key)?.label, 'seeded');
    assert.deepEqual(Object.keys(created.secret).sort(), ['api_key', 'api_secret']);
    assert.equal(created.secret.api_key, created.keyId);
  });

  it('createKey applies the IP whitelist and scopes', async () => {
    const account = seedAccount();

    const created = await gateioProvider.createKey(contextFor(emulator, account), {
      label: newRotationLabel(),
      restrictions: { ipAllowlist: ['127.0.0.1/32', '198.51.100.7'], scopes: ['spot:write', 'futures:read'] },
    });
    rememberSecrets(keyOf(created.secret));
    const stored = emulator.keys(account.userId).find((key) => key.key === created.keyId);

    assert.deepEqual(stored?.ipWhitelist, ['127.0.0.1', '198.51.100.7']);
    assert.deepEqual(stored?.perms, [
      { name: 'spot', read_only: false },
      { name: 'futures', read_only: true },
    ]);
  });

  it('createKey without scopes uses perms and mode', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account, account.managementCredential, { perms: [{ name: 'wallet' }], mode: 2 });

    const created = await gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
    rememberSecrets(keyOf(created.secret));
    const stored = emulator.keys(account.userId).find((key) => key.key === created.keyId);

    assert.deepEqual(stored?.perms, [{ name: 'wallet', read_only: true }]);
    assert.deepEqual(stored?.ipWhitelist, []);
    assert.equal(stored?.mode, 2);
  });

  it('verifyKey accepts the new key', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['127.0.0.1'] } });
    rememberSecrets(keyOf(created.secret));

    await gateioProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await gateioKeyRejection(emulator.url, keyOf(created.secret)), null);
  });

  it('verifyKey rejects an unknown key as authentication', async () => {
    const account = seedAccount();
    const bogus = { api_key: randomBytes(16).toString('hex'), api_secret: randomBytes(32).toString('hex') };
    rememberSecrets(bogus);

    const error = await providerErrorOf(gateioProvider.verifyKey(contextFor(emulator, account), bogus.api_key, bogus));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'INVALID_KEY');
    assert.match(error.message, new RegExp(`^Gate\\.io does not accept the new API key ${bogus.api_key} of sub-account ${account.userId} yet \\(INVALID_KEY: `));
    assert.equal(error.message.includes(bogus.api_secret), false);
  });

  it('verifyKey rejects a key of another account', async () => {
    const account = seedAccount();
    const other = seedAccount();

    const error = await providerErrorOf(gateioProvider.verifyKey(contextFor(emulator, account), other.currentKey.api_key, { ...other.currentKey }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'UnexpectedCaller');
    assert.match(error.message, new RegExp(`as a key of user ${other.userId}, not of sub-account ${account.userId}`));
  });

  it('verifyKey rejects a secret of another key as invalid', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(gateioProvider.verifyKey(contextFor(emulator, account), randomBytes(16).toString('hex'), { ...account.currentKey }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /does not belong to this rotation/);
  });

  it('key whitelisted elsewhere fails verification', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['203.0.113.7'] } });
    rememberSecrets(keyOf(created.secret));

    const error = await providerErrorOf(gateioProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'IP_FORBIDDEN');
    assert.match(error.message, /check that the worker's IP address is in restrictions\.ip_allowlist/);
    assert.equal(await gateioKeyRejection(emulator.url, keyOf(created.secret)), 'IP_FORBIDDEN');
  });

  it('revokeKey twice succeeds and the key stops working', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
    rememberSecrets(keyOf(created.secret));

    await gateioProvider.revokeKey(context, created.keyId);
    await gateioProvider.revokeKey(context, created.keyId);
    const keys = await gateioProvider.listKeys(context);

    assert.deepEqual(
      keys.map((key) => key.keyId),
      [account.currentKey.api_key],
    );
    assert.equal(await gateioKeyRejection(emulator.url, keyOf(created.secret)), 'INVALID_KEY');
    const verifyError = await providerErrorOf(gateioProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(verifyError.kind, 'authentication');
  });

  it('revokeKey leaves keys of other sub-accounts alone', async () => {
    const account = seedAccount();
    const other = seedAccount();

    await gateioProvider.revokeKey(contextFor(emulator, account), other.currentKey.api_key);

    assert.equal(await gateioKeyRejection(emulator.url, other.currentKey), null);
  });

  it('createKey at 20 keys is limit-reached', async () => {
    const account = seedAccount();
    emulator.seedSubAccountKeys(account.userId, 19);

    const error = await providerErrorOf(gateioProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'limit-reached');
    assert.equal(error.details.vendorCode, 'INVALID_PARAM_VALUE');
    assert.match(error.message, new RegExp(`^Gate\\.io sub-account ${account.userId} already has 20 API keys, the maximum of 20`));
    assert.equal(emulator.keys(account.userId).length, 20);
  });

  it('wrong management secret is authentication without secrets', async () => {
    const account = seedAccount();
    const credential = { ...account.managementCredential, api_secret: randomBytes(32).toString('hex') };
    seenSecrets.add(credential.api_secret);

    const error = await providerErrorOf(gateioProvider.listKeys(contextFor(emulator, account, credential)));
    const serialized = JSON.stringify(error);

    assert.equal(error.kind, 'authentication');
    assert.equal(error.retryable, false);
    assert.equal(error.details.vendorCode, 'INVALID_SIGNATURE');
    assert.match(error.message, new RegExp(`^Gate\\.io rejected the management credential for GET /sub_accounts/${account.userId}/keys \\(sub-account ${account.userId}, INVALID_SIGNATURE`));
    assert.match(error.message, /Check api_key and api_secret at the management credential path in Vault/);
    for (const secret of [credential.api_secret, account.managementCredential.api_secret]) {
      assert.equal(error.message.includes(secret), false);
      assert.equal(serialized.includes(secret), false);
    }
  });

  it('read-only management key is permission', async () => {
    const account = seedAccount({ managementReadOnly: true });
    const context = contextFor(emulator, account);

    const listed = await gateioProvider.listKeys(context);
    const error = await providerErrorOf(gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: {} }));

    assert.equal(listed.length, 1);
    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, 'READ_ONLY');
    assert.match(error.message, /Use a read-write APIv4 key of the main account/);
    assert.equal(emulator.keys(account.userId).length, 1);
  });

  it('management key whitelisted elsewhere is permission', async () => {
    const account = seedAccount({ managementIps: ['203.0.113.7'] });

    const error = await providerErrorOf(gateioProvider.listKeys(contextFor(emulator, account)));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, 'IP_FORBIDDEN');
    assert.match(error.message, /Add the worker's address to the main account key's IP whitelist/);
  });

  it('sub-account key as management credential is permission', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(gateioProvider.listKeys(contextFor(emulator, account, account.currentKey)));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, 'FORBIDDEN');
  });

  it('unknown sub-account is invalid-config', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(gateioProvider.listKeys(contextFor(emulator, account, account.managementCredential, { user_id: 12345 })));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /^Gate\.io has no sub-account 12345 under the main account of the management credential \(SUB_ACCOUNT_NOT_FOUND: .+\)\. Check user_id/);
  });

  it('wrong base_url is invalid-config', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(gateioProvider.listKeys(contextFor(emulator, account, account.managementCredential, { base_url: emulator.url.replace('/api/v4', '/v4') })));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /^Gate\.io has no endpoint GET \/sub_accounts\/\d+\/keys at base_url \(NOT_FOUND: Request URL not exists\)\. Check base_url/);
  });

  it('unexpected list response names the field', async () => {
    const account = seedAccount();
    emulator.replaceNextResponse('GET /sub_accounts/{user_id}/keys', [{ name: 'x', state: 1 }]);

    const error = await providerErrorOf(gateioProvider.listKeys(contextFor(emulator, account)));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, `Gate.io returned an unexpected response to listKeys (GET /sub_accounts/${account.userId}/keys): missing [0].key`);
  });

  it('unexpected create response keeps the secret out', async () => {
    const account = seedAccount();
    const leakedSecret = randomBytes(32).toString('hex');
    emulator.replaceNextResponse('POST /sub_accounts/{user_id}/keys', { key: randomBytes(16).toString('hex'), secret: leakedSecret, created_at: 'yesterday' });

    const error = await providerErrorOf(gateioProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^Gate\.io returned an unexpected response to createKey \(POST \/sub_accounts\/\d+\/keys\): created_at: /);
    assert.equal(error.message.includes(leakedSecret), false);
    assert.equal(error.message.includes('yesterday'), false);
  });

  it('key with other restrictions is deleted again', async () => {
    const account = seedAccount();
    const [unwantedKey] = emulator.seedSubAccountKeys(account.userId, 1);
    emulator.replaceNextResponse('POST /sub_accounts/{user_id}/keys', {
      key: unwantedKey,
      secret: randomBytes(32).toString('hex'),
      perms: [{ name: 'spot', read_only: true }],
      ip_whitelist: [],
      created_at: Math.floor(Date.now() / 1000),
    });

    const error = await providerErrorOf(
      gateioProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: { ipAllowlist: ['127.0.0.1'] } }),
    );

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'RestrictionMismatch');
    assert.match(error.message, new RegExp(`created API key ${unwantedKey} of sub-account ${account.userId} with ip_whitelist \\[\\] instead of the requested \\[127\\.0\\.0\\.1\\], so Rotor deleted it again`));
    assert.deepEqual(
      emulator.keys(account.userId).map((key) => key.key),
      [account.currentKey.api_key],
    );
  });

  it('keyUsage reports last_access', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
    rememberSecrets(keyOf(created.secret));

    const unused = await gateioProvider.keyUsage?.(context, created.keyId);
    const usedFrom = Date.now();
    await gateioProvider.verifyKey(context, created.keyId, created.secret);
    const used = await gateioProvider.keyUsage?.(context, created.keyId);
    const listed = (await gateioProvider.listKeys(context)).find((key) => key.keyId === created.keyId);

    assert.equal(unused?.lastUsedAt, null);
    assert.ok(Date.parse(used?.lastUsedAt ?? '') >= usedFrom - 1000, `lastUsedAt is ${used?.lastUsedAt}`);
    assert.equal(listed?.lastUsedAt, used?.lastUsedAt);
  });

  it('keyUsage of a deleted key is not-found', async () => {
    const account = seedAccount();
    const missingKey = randomBytes(16).toString('hex');

    const error = await providerErrorOf(gateioProvider.keyUsage?.(contextFor(emulator, account), missingKey) ?? Promise.resolve());

    assert.equal(error.kind, 'not-found');
    assert.match(error.message, new RegExp(`^Gate\\.io has no API key ${missingKey} of sub-account ${account.userId} for keyUsage \\(NOT_FOUND`));
  });

  it('createKey rejects invalid restrictions before calling Gate.io', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);

    const range = await providerErrorOf(gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['203.0.113.0/24'] } }));
    const badScope = await providerErrorOf(gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: { scopes: ['withdrawal'] } }));
    const noPerms = await providerErrorOf(gateioProvider.createKey(contextFor(emulator, account, account.managementCredential, { perms: [] }), { label: newRotationLabel(), restrictions: {} }));
    const badLabel = await providerErrorOf(gateioProvider.createKey(context, { label: ' ', restrictions: {} }));

    assert.equal(range.kind, 'invalid-config');
    assert.equal(badScope.kind, 'invalid-config');
    assert.equal(noPerms.kind, 'invalid-config');
    assert.equal(badLabel.kind, 'invalid-config');
    assert.equal(emulator.keys(account.userId).length, 1);
  });

  it('provider logs contain no secret', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created Gate.io sub-account API key'));
    assert.ok(seenSecrets.size > 10);
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a secret value reached a provider log line');
    }
  });
});

describe('gateio rate limits', () => {
  it('HTTP 429 is rate-limited with a retry delay', async () => {
    const emulator = await startGateioEmulator({ rateLimitPerSecond: 1 });
    try {
      const account = emulator.seedAccount();
      rememberSecrets(account.managementCredential, account.currentKey);
      const context = contextFor(emulator, account);

      const first = await gateioProvider.listKeys(context);
      const error = await providerErrorOf(gateioProvider.listKeys(context));

      assert.equal(first.length, 1);
      assert.equal(error.kind, 'rate-limited');
      assert.equal(error.retryable, true);
      assert.equal(error.details.vendorCode, 'TOO_MANY_REQUESTS');
      assert.ok((error.details.retryAfterMs ?? 0) >= 100, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.match(error.message, /^Gate\.io rate-limited GET \/sub_accounts\/\d+\/keys \(TOO_MANY_REQUESTS: Request Rate limit Exceeded\); retrying in \d+\.\d s\.$/);
      assert.equal(emulator.rateLimitedResponses, 1);
    } finally {
      await emulator.stop();
    }
  });

  it('limits count per endpoint', async () => {
    const emulator = await startGateioEmulator({ rateLimitPerSecond: 1 });
    try {
      const account = emulator.seedAccount();
      rememberSecrets(account.managementCredential, account.currentKey);
      const context = contextFor(emulator, account);

      await gateioProvider.listKeys(context);
      const created = await gateioProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
      rememberSecrets(keyOf(created.secret));

      assert.ok(created.keyId);
      assert.equal(emulator.rateLimitedResponses, 0);
    } finally {
      await emulator.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rotations through the real workflow on real Temporal and Vault
// ---------------------------------------------------------------------------------------------

interface GateioTestIntegration {
  integration: IntegrationSpec;
  account: SeededGateioAccount;
}

async function prepareGateioIntegration(vault: VaultStore, emulator: GateioEmulator, masterUserId?: string): Promise<GateioTestIntegration> {
  const account = emulator.seedAccount({ masterUserId });
  const id = `gateio-${uniqueSuffix()}`;
  const managementCredentialPath = `rotor/management/${id}`;
  const vaultPath = `apps/${id}/gateio`;
  await vault.writeSecret(managementCredentialPath, { ...account.managementCredential });
  await vault.writeSecret(vaultPath, { ...account.currentKey });

  const integration: IntegrationSpec = {
    id,
    provider: 'gateio',
    providerConfig: { base_url: emulator.url, user_id: account.userId },
    managementCredentialPath,
    vaultPath,
    owner: 'platform-tests',
    policy: { gracePeriodMs: 1_000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
    restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: ['spot:read'] },
  };
  return { integration, account };
}

describe('gateio rotation on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: GateioEmulator;
  const taskQueue = `rotor-gateio-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator keeps Gate.io's own limit of 80 requests per 10 seconds per endpoint.
    emulator = await startGateioEmulator();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  describe('a full rotation', () => {
    let gateio: GateioTestIntegration;
    let result: RotationResult;
    let history: string;
    let newKey: GateioKeyPair;

    before(async () => {
      gateio = await prepareGateioIntegration(vault, emulator);
      const handle = await startRotation(client, gateio.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
      result = await handle.result();
      history = await historyText(handle);
      const latest = await vault.readSecret(gateio.integration.vaultPath);
      newKey = { api_key: latest?.data.api_key ?? '', api_secret: latest?.data.api_secret ?? '' };
    });

    it('promotes the new key for consumers', async () => {
      const latest = await vault.readSecret(gateio.integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(newKey.api_key, result.state.pendingKeyId);
      assert.notEqual(newKey.api_secret, gateio.account.currentKey.api_secret);
      assert.equal(await gateioKeyRejection(emulator.url, newKey), null);
    });

    it('deletes the old key at Gate.io', async () => {
      const keys = emulator.keys(gateio.account.userId);

      assert.deepEqual(
        keys.map((key) => key.key),
        [result.state.pendingKeyId],
      );
      assert.equal(await gateioKeyRejection(emulator.url, gateio.account.currentKey), 'INVALID_KEY');
    });

    it('creates the key with the rotation label and restrictions', () => {
      const [stored] = emulator.keys(gateio.account.userId);

      assert.equal(stored.name, rotationLabel(result.state.rotationId));
      assert.deepEqual(stored.ipWhitelist, ['127.0.0.1']);
      assert.deepEqual(stored.perms, [{ name: 'spot', read_only: true }]);
    });

    it('keeps every secret out of the history and logs', () => {
      const logs = capturedRuntimeLogger().capture.text();
      const secrets = {
        'new secret': newKey.api_secret,
        'old secret': gateio.account.currentKey.api_secret,
        'management secret': gateio.account.managementCredential.api_secret,
      };

      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new key id');
      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      for (const [name, secret] of Object.entries(secrets)) {
        assert.ok(secret.length >= 32, `${name} was read`);
        assert.equal(history.includes(secret), false, `${name} found in history`);
        assert.equal(logs.includes(secret), false, `${name} found in logs`);
      }
    });
  });

  it('bad management credential stops in planning', async () => {
    const gateio = await prepareGateioIntegration(vault, emulator);
    const wrongSecret = randomBytes(32).toString('hex');
    await vault.writeSecret(gateio.integration.managementCredentialPath, { ...gateio.account.managementCredential, api_secret: wrongSecret });

    const handle = await startRotation(client, gateio.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
    const failure = await handle.result().catch((error: unknown) => error);
    const history = await historyText(handle);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(
        `^Rotation of ${gateio.integration.id} failed in phase planning: Gate\\.io rejected the management credential for ` +
          `GET /sub_accounts/${gateio.account.userId}/keys \\(sub-account ${gateio.account.userId}, INVALID_SIGNATURE: [^)]+\\)\\. Check api_key and api_secret`,
      ),
    );
    assert.equal(history.includes(wrongSecret), false);
    assert.deepEqual(
      emulator.keys(gateio.account.userId).map((key) => key.key),
      [gateio.account.currentKey.api_key],
    );
    assert.equal((await vault.readSecret(gateio.integration.vaultPath))?.version, 1);
  });
});

describe('gateio rate-limit storm', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: GateioEmulator;
  const taskQueue = `rotor-gateio-storm-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    emulator = await startGateioEmulator({ rateLimitPerSecond: 1 });
    // The worker's queue lets 100 activities a second through, so the emulator does the throttling.
    worker = await startTestWorker(taskQueue, { rateLimits: { gateio: 100 } });
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  it('three rotations at once all complete', async () => {
    // Three sub-accounts of one main account, whose key-management requests Gate.io counts together.
    const first = await prepareGateioIntegration(vault, emulator);
    const others = await Promise.all([2, 3].map(() => prepareGateioIntegration(vault, emulator, first.account.masterUserId)));
    const integrations = [first, ...others];

    const handles = await Promise.all(
      integrations.map((gateio) => startRotation(client, gateio.integration, { taskQueue, dryRun: false, requestedBy: 'test' })),
    );
    const results = await Promise.all(handles.map((handle) => handle.result()));

    assert.deepEqual(
      results.map((result) => result.outcome),
      ['completed', 'completed', 'completed'],
    );
    assert.ok(emulator.rateLimitedResponses >= 1, `the emulator rejected ${emulator.rateLimitedResponses} requests with HTTP 429`);
    for (const [index, gateio] of integrations.entries()) {
      assert.deepEqual(
        emulator.keys(gateio.account.userId).map((key) => key.key),
        [results[index].state.pendingKeyId],
      );
      assert.equal((await vault.readSecret(gateio.integration.vaultPath))?.data.api_key, results[index].state.pendingKeyId);
    }
  });
});

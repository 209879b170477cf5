import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { cloudflareConfigSchema, cloudflareProvider, type CloudflareConfig, type CloudflareCredential } from '../../providers/cloudflare';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import {
  CLOUDFLARE_TOKEN_LIMIT,
  dnsReadPolicy,
  EMULATOR_PERMISSION_GROUPS,
  startCloudflareEmulator,
  type CloudflareEmulator,
  type EmulatedToken,
  type SeededCloudflareUser,
} from '../emulators/cloudflare';
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

// Every token value the unit tests saw, so the last test can prove none reached a log line.
const seenSecrets = new Set<string>();

type CloudflareContext = ProviderContext<CloudflareConfig, CloudflareCredential>;

function providerContext(emulator: CloudflareEmulator, managementToken: string, config: Record<string, unknown> = {}): CloudflareContext {
  return {
    config: cloudflareConfigSchema.parse({ base_url: emulator.url, token_name: 'rotor test', policies: [dnsReadPolicy()], ...config }),
    credential: { token: managementToken },
    logger,
  };
}

/** HTTP status of GET /user/tokens/verify with the token: 200 when the emulator accepts it. */
async function verifyStatus(emulator: CloudflareEmulator, tokenValue: string): Promise<number> {
  const response = await fetch(`${emulator.url}/user/tokens/verify`, { headers: { Authorization: `Bearer ${tokenValue}` } });
  await response.arrayBuffer();
  return response.status;
}

async function rejectionOf(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
  return error;
}

function remember(token: EmulatedToken): void {
  seenSecrets.add(token.value);
}

describe('cloudflare provider against its emulator', () => {
  let emulator: CloudflareEmulator;
  let user: SeededCloudflareUser;
  let context: CloudflareContext;

  before(async () => {
    emulator = await startCloudflareEmulator();
    user = emulator.seedAccount();
    remember(user.managementToken);
    remember(user.currentToken);
    context = providerContext(emulator, user.managementToken.value);
  });

  after(async () => {
    await emulator.stop();
  });

  it('createKey labels the token in listKeys', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-labelled1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    const keys = await cloudflareProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(listed?.label, 'rotor-labelled1');
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.lastUsedAt, null);
    assert.equal(emulator.token(created.keyId)?.name, 'rotor test (rotor-labelled1)');
    assert.equal(keys.find((key) => key.keyId === user.currentToken.id)?.label, 'dns reader');
    assert.equal(created.secret.token_id, created.keyId);
  });

  it('createKey applies ip allowlist and expiry', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();

    const created = await cloudflareProvider.createKey(context, {
      label: 'rotor-restricted1',
      restrictions: { ipAllowlist: ['127.0.0.1', '10.0.0.0/8', '2001:db8::1'], expiresAt },
    });
    seenSecrets.add(created.secret.token);
    const stored = emulator.token(created.keyId);

    assert.deepEqual(stored?.condition, { 'request.ip': { in: ['127.0.0.1/32', '10.0.0.0/8', '2001:db8::1/128'] } });
    assert.equal(stored?.expires_on, expiresAt.replace(/\.\d{3}Z$/, 'Z'));
    assert.deepEqual(
      stored?.policies.map((policy) => policy.permission_groups.map((group) => group.id)),
      [[EMULATOR_PERMISSION_GROUPS.zoneRead, EMULATOR_PERMISSION_GROUPS.dnsRead]],
    );
  });

  it('scopes narrow the policies to named groups', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-scoped1', restrictions: { scopes: ['DNS Read'] } });
    seenSecrets.add(created.secret.token);

    const groups = emulator.token(created.keyId)?.policies.map((policy) => policy.permission_groups.map((group) => group.id));

    assert.deepEqual(groups, [[EMULATOR_PERMISSION_GROUPS.dnsRead]]);
  });

  it('unknown scope maps to invalid-config', async () => {
    const before = emulator.tokenIds().length;

    const error = await rejectionOf(cloudflareProvider.createKey(context, { label: 'rotor-badscope1', restrictions: { scopes: ['Workers Scripts Write'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /no allow policy in the Cloudflare config grants: Workers Scripts Write/);
    assert.match(error.message, /DNS Read \(82e64a83756745bbbb1c9c2701bf816b\)/);
    assert.equal(emulator.tokenIds().length, before);
  });

  it('verifyKey accepts the new token', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-verified1', restrictions: { ipAllowlist: ['127.0.0.1/32'] } });
    seenSecrets.add(created.secret.token);

    await cloudflareProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await verifyStatus(emulator, created.secret.token), 200);
  });

  it('verifyKey rejects a made-up token as authentication', async () => {
    const keyId = 'f'.repeat(32);

    const error = await rejectionOf(cloudflareProvider.verifyKey(context, keyId, { token_id: keyId, token: 'madeUpToken'.repeat(4) }));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /Cloudflare did not accept the new API token f{32} \(HTTP 401\)/);
  });

  it('verifyKey rejects a secret of another token id', async () => {
    const error = await rejectionOf(cloudflareProvider.verifyKey(context, 'a'.repeat(32), { token_id: user.currentToken.id, token: user.currentToken.value }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`contains Cloudflare token ${user.currentToken.id}, not a{32}`));
  });

  it('token outside its ip allowlist fails verification', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-elsewhere1', restrictions: { ipAllowlist: ['203.0.113.0/24'] } });
    seenSecrets.add(created.secret.token);

    const error = await rejectionOf(cloudflareProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(await verifyStatus(emulator, created.secret.token), 403);
    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /ip_allowlist excludes this worker's address/);
  });

  it('revokeKey twice succeeds', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-revoked1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    await cloudflareProvider.revokeKey(context, created.keyId);
    await cloudflareProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.token(created.keyId), undefined);
    assert.equal((await cloudflareProvider.listKeys(context)).some((key) => key.keyId === created.keyId), false);
  });

  it('revoked token is rejected by the emulator', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-revoked2', restrictions: {} });
    seenSecrets.add(created.secret.token);
    assert.equal(await verifyStatus(emulator, created.secret.token), 200);

    await cloudflareProvider.revokeKey(context, created.keyId);

    assert.equal(await verifyStatus(emulator, created.secret.token), 401);
    const error = await rejectionOf(cloudflareProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
  });

  it('revokeKey refuses the management token', async () => {
    const error = await rejectionOf(cloudflareProvider.revokeKey(context, user.managementToken.id));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /is the management token of this integration, and Rotor will not revoke it/);
    assert.equal(await verifyStatus(emulator, user.managementToken.value), 200);
  });

  it('keyUsage returns null before use and a date after', async () => {
    const created = await cloudflareProvider.createKey(context, { label: 'rotor-usage1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    const unused = await cloudflareProvider.keyUsage?.(context, created.keyId);
    const usedFrom = Date.now();
    await cloudflareProvider.verifyKey(context, created.keyId, created.secret);
    const used = await cloudflareProvider.keyUsage?.(context, created.keyId);

    assert.equal(unused?.lastUsedAt, null);
    assert.ok(Date.parse(used?.lastUsedAt ?? '') >= usedFrom - 1000, `lastUsedAt is ${used?.lastUsedAt}`);
  });

  it('keyUsage of a deleted token maps to not-found', async () => {
    const error = await rejectionOf(cloudflareProvider.keyUsage?.(context, '0'.repeat(32)) ?? Promise.resolve());

    assert.equal(error.kind, 'not-found');
    assert.match(error.message, /Cloudflare found no API token 0{32} for keyUsage: 7003/);
  });

  it('unknown management token maps to authentication', async () => {
    const wrongToken = 'wrongManagementToken'.repeat(2);
    seenSecrets.add(wrongToken);

    const error = await rejectionOf(cloudflareProvider.listKeys(providerContext(emulator, wrongToken)));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /^Cloudflare rejected the management token during listKeys \(GET \/user\/tokens\): HTTP 401\./);
    assert.equal(error.message.includes(wrongToken), false);
    assert.equal(JSON.stringify(error).includes(wrongToken), false);
    assert.equal(JSON.stringify(error.details).includes(wrongToken), false);
  });

  it('token without API Tokens Write maps to permission', async () => {
    const error = await rejectionOf(cloudflareProvider.createKey(providerContext(emulator, user.currentToken.value), { label: 'rotor-denied1', restrictions: {} }));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /^Cloudflare denied POST \/user\/tokens to the management token \(HTTP 403\)/);
    assert.match(error.message, /needs the user permission API Tokens Write/);
  });

  it('listKeys response without token id is unexpected', async () => {
    emulator.injectResponse({
      method: 'GET',
      path: '/user/tokens',
      status: 200,
      body: { success: true, errors: [], messages: [], result: [{ name: 'nameless', status: 'active' }], result_info: { page: 1, per_page: 50, total_pages: 1 } },
    });

    const error = await rejectionOf(cloudflareProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, 'Cloudflare returned an unexpected response to listKeys (GET /user/tokens): missing result[0].id');
  });

  it('createKey response without value names only the field', async () => {
    emulator.injectResponse({ method: 'POST', path: '/user/tokens', status: 200, body: { success: true, errors: [], messages: [], result: { id: 'b'.repeat(32), value: 42 } } });

    const error = await rejectionOf(cloudflareProvider.createKey(context, { label: 'rotor-malformed1', restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^Cloudflare returned an unexpected response to createKey \(POST \/user\/tokens\): result\.value: /);
    assert.equal(error.message.includes('42'), false);
  });

  it('keyIdFromSecret returns token_id', () => {
    assert.equal(cloudflareProvider.keyIdFromSecret({ token_id: 'c'.repeat(32), token: 'secret' }), 'c'.repeat(32));
    assert.equal(cloudflareProvider.keyIdFromSecret({ token: 'secret' }), undefined);
  });
});

describe('cloudflare limits', () => {
  it('token past the quota maps to limit-reached', async () => {
    const emulator = await startCloudflareEmulator();
    try {
      const user = emulator.seedAccount();
      remember(user.managementToken);
      while (emulator.tokenIds().length < CLOUDFLARE_TOKEN_LIMIT) {
        emulator.seedToken({ name: `filler ${emulator.tokenIds().length}` });
      }
      const context = providerContext(emulator, user.managementToken.value);

      const error = await rejectionOf(cloudflareProvider.createKey(context, { label: 'rotor-onetoomany', restrictions: {} }));

      assert.equal(error.kind, 'limit-reached');
      assert.match(error.message, /already has the maximum of 50 API tokens: 1400 You have reached the maximum number of API tokens \(50\)/);
      assert.equal(emulator.tokenIds().length, CLOUDFLARE_TOKEN_LIMIT);
      assert.equal((await cloudflareProvider.listKeys(context)).length, CLOUDFLARE_TOKEN_LIMIT);
    } finally {
      await emulator.stop();
    }
  });

  it('HTTP 429 maps to rate-limited with Retry-After', async () => {
    const emulator = await startCloudflareEmulator({ rateLimitPerSecond: 1 });
    try {
      const user = emulator.seedAccount();
      remember(user.managementToken);
      const context = providerContext(emulator, user.managementToken.value);
      await cloudflareProvider.listKeys(context);

      const error = await rejectionOf(cloudflareProvider.listKeys(context));

      assert.equal(error.kind, 'rate-limited');
      // Retry-After is 1 s; the provider adds up to 2 s so throttled rotations spread out.
      assert.ok((error.details.retryAfterMs ?? 0) >= 1000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 3000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(error.details.vendorCode, 'HTTP 429');
      assert.match(error.message, /^Cloudflare rate-limited GET \/user\/tokens \(HTTP 429\); retrying in \d\.\d s\.$/);
      assert.equal(emulator.throttledResponses(), 1);
    } finally {
      await emulator.stop();
    }
  });
});

describe('cloudflare config and registry', () => {
  const policies = [dnsReadPolicy()];

  it('config defaults base_url to the Cloudflare API', () => {
    const config = cloudflareConfigSchema.parse({ policies });

    assert.equal(config.base_url, 'https://api.cloudflare.com/client/v4');
  });

  it('config rejects a policy without permission groups', () => {
    const result = cloudflareConfigSchema.safeParse({ policies: [{ effect: 'allow', resources: { 'com.cloudflare.api.account.zone.*': '*' }, permission_groups: [] }] });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['policies', 0, 'permission_groups']);
  });

  it('config rejects unknown fields', () => {
    const result = cloudflareConfigSchema.safeParse({ policies, account_id: 'abc' });

    assert.equal(result.success, false);
    assert.equal(result.error?.issues[0].code, 'unrecognized_keys');
  });

  it('config rejects only deny policies', () => {
    const result = cloudflareConfigSchema.safeParse({ policies: [{ ...dnsReadPolicy(), effect: 'deny' }] });

    assert.equal(result.success, false);
    assert.match(result.error?.issues[0].message ?? '', /at least one policy with effect allow/);
  });

  it('registry returns cloudflare by name', () => {
    assert.equal(getProvider('cloudflare'), cloudflareProvider);
  });
});

describe('cloudflare rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: CloudflareEmulator;
  const taskQueue = `rotor-cloudflare-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator, not the worker's task queue, is what throttles these rotations.
    worker = await startTestWorker(taskQueue, { rateLimits: { cloudflare: 100 } });
    emulator = await startCloudflareEmulator();
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
    await emulator.stop();
  });

  /** Seeds a user's tokens at the emulator and writes the management credential and current token to Vault. */
  async function prepareIntegration(target: CloudflareEmulator, overrides: { managementToken?: string } = {}) {
    const user = target.seedAccount();
    const id = `cloudflare-${uniqueSuffix()}`;
    const integration: IntegrationSpec = {
      id,
      provider: 'cloudflare',
      providerConfig: { base_url: target.url, token_name: id, policies: [dnsReadPolicy()] },
      managementCredentialPath: `rotor/management/${id}`,
      vaultPath: `apps/${id}/cloudflare`,
      owner: 'platform-tests',
      policy: { gracePeriodMs: 1000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
      restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: ['DNS Read'], expiresAfterMs: 30 * 86_400_000 },
    };
    await vault.writeSecret(integration.managementCredentialPath, { token: overrides.managementToken ?? user.managementToken.value });
    await vault.writeSecret(integration.vaultPath, { token_id: user.currentToken.id, token: user.currentToken.value });
    return { integration, user };
  }

  const start = (integration: IntegrationSpec) => startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });

  describe('a full rotation', () => {
    let integration: IntegrationSpec;
    let user: SeededCloudflareUser;
    let result: RotationResult;
    let history: string;
    let newToken: Record<string, string>;

    before(async () => {
      ({ integration, user } = await prepareIntegration(emulator));
      const handle = await start(integration);
      result = await handle.result();
      history = await historyText(handle);
      newToken = (await vault.readSecret(integration.vaultPath))?.data ?? {};
    });

    it('completes and promotes the new token', async () => {
      const latest = await vault.readSecret(integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(newToken.token_id, result.state.pendingKeyId);
      assert.notEqual(newToken.token, user.currentToken.value);
      assert.equal(await verifyStatus(emulator, newToken.token ?? ''), 200);
    });

    it('deletes the old token at Cloudflare', async () => {
      assert.equal(emulator.token(user.currentToken.id), undefined);
      assert.equal(await verifyStatus(emulator, user.currentToken.value), 401);
      assert.equal(await verifyStatus(emulator, user.managementToken.value), 200);
    });

    it('restricts the new token', () => {
      const stored = emulator.token(result.state.pendingKeyId ?? '');

      assert.equal(stored?.name, `${integration.id} (rotor-${result.state.rotationId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)})`);
      assert.deepEqual(stored?.condition, { 'request.ip': { in: ['127.0.0.1/32'] } });
      assert.deepEqual(stored?.policies.map((policy) => policy.permission_groups.map((group) => group.id)), [[EMULATOR_PERMISSION_GROUPS.dnsRead]]);
      const expiresInDays = (Date.parse(stored?.expires_on ?? '') - Date.now()) / 86_400_000;
      assert.ok(expiresInDays > 29, `expires_on is ${stored?.expires_on}`);
      assert.ok(expiresInDays <= 30, `expires_on is ${stored?.expires_on}`);
    });

    it('records the token ids in Vault metadata', async () => {
      const custom = (await vault.readMetadata(integration.vaultPath))?.customMetadata ?? {};

      assert.equal(custom.provider, 'cloudflare');
      assert.equal(custom.key_id, result.state.pendingKeyId);
      assert.equal(custom.previous_key_id, user.currentToken.id);
    });

    it('keeps every token value out of the history', () => {
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new token id');
      assert.ok((newToken.token ?? '').length >= 40);
      assert.equal(history.includes(newToken.token ?? 'missing'), false, 'new token found in history');
      assert.equal(history.includes(user.currentToken.value), false, 'old token found in history');
      assert.equal(history.includes(user.managementToken.value), false, 'management token found in history');
    });

    it('keeps every token value out of the logs', () => {
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.equal(logs.includes(newToken.token ?? 'missing'), false, 'new token found in logs');
      assert.equal(logs.includes(user.currentToken.value), false, 'old token found in logs');
      assert.equal(logs.includes(user.managementToken.value), false, 'management token found in logs');
    });
  });

  it('rate-limit storm is absorbed', async () => {
    // Cloudflare accepts bursts, so the bucket contains two seconds' worth. Creating three keys at once still overflows it.
    const stormEmulator = await startCloudflareEmulator({ rateLimitPerSecond: 2, rateLimitBurst: 4 });
    try {
      const prepared = [await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator)];

      const handles = await Promise.all(prepared.map(({ integration }) => start(integration)));
      const results = await Promise.all(handles.map((handle) => handle.result()));

      assert.deepEqual(
        results.map((rotation) => rotation.outcome),
        ['completed', 'completed', 'completed'],
      );
      for (const [index, { integration, user }] of prepared.entries()) {
        assert.equal((await vault.readSecret(integration.vaultPath))?.data.token_id, results[index].state.pendingKeyId);
        assert.equal(stormEmulator.token(user.currentToken.id), undefined);
      }
      assert.ok(stormEmulator.throttledResponses() >= 1, `the emulator answered ${stormEmulator.throttledResponses()} requests with 429`);
    } finally {
      await stormEmulator.stop();
    }
  });

  it('lost create response leaves no orphan', async () => {
    const { integration, user } = await prepareIntegration(emulator);
    const tokensBefore = new Set(emulator.tokenIds());
    emulator.loseNextCreateResponse();

    const result = await (await start(integration)).result();
    const created = emulator.tokenIds().filter((id) => !tokensBefore.has(id));
    const logs = capturedRuntimeLogger().capture.text();

    // The first attempt's token reached Cloudflare but its value never reached Rotor, so the retry revokes it.
    assert.equal(result.outcome, 'completed');
    assert.deepEqual(created, [result.state.pendingKeyId]);
    assert.equal((await vault.readSecret(integration.vaultPath))?.data.token_id, result.state.pendingKeyId);
    assert.equal(emulator.token(user.currentToken.id), undefined);
    assert.ok(logs.includes('revoking a key an earlier attempt created but never staged'), 'the retry should log the revoked orphan');
  });

  it('bad management token fails in planning', async () => {
    const wrongToken = 'notTheManagementToken'.repeat(2);
    const { integration, user } = await prepareIntegration(emulator, { managementToken: wrongToken });

    const failure = await (await start(integration)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    const message = failure.cause?.message ?? '';
    assert.match(message, new RegExp(`^Rotation of ${integration.id} failed in phase planning: Cloudflare rejected the management token during listKeys`));
    assert.match(message, /Check the token at the integration's management credential path in Vault/);
    assert.equal(message.includes(wrongToken), false);
    assert.equal(emulator.token(user.currentToken.id)?.status, 'active');
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

// Runs after every test above, because node:test runs a file's tests in order.
describe('cloudflare logging', () => {
  it('logs no token values', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created Cloudflare API token'), 'the provider should log its steps');
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a token value was logged');
    }
  });
});

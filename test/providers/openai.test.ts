import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { openaiConfigSchema, openaiProvider, retryDelayFromMessage, type OpenAIConfig, type OpenAICredential } from '../../providers/openai';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { startOpenAIEmulator, type EmulatedKey, type OpenAIEmulator, type SeededOpenAIProject } from '../emulators/openai';
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

// Every key value the unit tests saw, so the last test can prove none reached a log line.
const seenSecrets = new Set<string>();

type OpenAIContext = ProviderContext<OpenAIConfig, OpenAICredential>;

function providerContext(emulator: OpenAIEmulator, project: SeededOpenAIProject, adminKey = project.adminKey.value): OpenAIContext {
  return {
    config: openaiConfigSchema.parse({ base_url: emulator.url, project_id: project.projectId, service_account_name: 'rotor test' }),
    credential: { admin_key: adminKey },
    logger,
  };
}

/** HTTP status of GET /v1/models with the key: 200 when the emulator accepts it. */
async function modelsStatus(emulator: OpenAIEmulator, keyValue: string): Promise<number> {
  const response = await fetch(`${emulator.url}/models`, { headers: { Authorization: `Bearer ${keyValue}` } });
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

function remember(project: SeededOpenAIProject): void {
  seenSecrets.add(project.adminKey.value);
  seenSecrets.add(project.currentKey.value);
}

function rememberKey(key: EmulatedKey | Record<string, string>): void {
  seenSecrets.add('value' in key ? String(key.value) : String(key.api_key));
}

describe('openai provider against its emulator', () => {
  let emulator: OpenAIEmulator;
  let project: SeededOpenAIProject;
  let context: OpenAIContext;

  before(async () => {
    emulator = await startOpenAIEmulator();
    project = emulator.seedProject();
    remember(project);
    context = providerContext(emulator, project);
  });

  after(async () => {
    await emulator.stop();
  });

  it('createKey labels the key in listKeys', async () => {
    const created = await openaiProvider.createKey(context, { label: 'rotor-labelled1', restrictions: {} });
    rememberKey(created.secret);

    const keys = await openaiProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);
    const stored = emulator.apiKey(project.projectId, created.keyId);

    assert.equal(listed?.label, 'rotor-labelled1');
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.lastUsedAt, null);
    assert.equal(stored?.owner.service_account?.name, 'rotor test (rotor-labelled1)');
    assert.equal(stored?.owner.service_account?.role, 'member');
    assert.equal(keys.find((key) => key.keyId === project.currentKey.id)?.label, 'app backend');
    assert.equal(created.secret.api_key_id, created.keyId);
    assert.equal(created.secret.service_account_id, stored?.owner.service_account?.id);
    assert.match(created.secret.api_key, /^sk-svcacct-/);
  });

  it('createKey applies expiry', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();

    const created = await openaiProvider.createKey(context, { label: 'rotor-expiring1', restrictions: { expiresAt } });
    rememberKey(created.secret);
    const stored = emulator.apiKey(project.projectId, created.keyId);

    assert.ok(Math.abs((stored?.expires_at ?? 0) * 1000 - Date.parse(expiresAt)) <= 2000, `expires_at is ${stored?.expires_at}`);
    assert.deepEqual(stored?.scopes, []);
  });

  it('scopes create a scoped key', async () => {
    const created = await openaiProvider.createKey(context, { label: 'rotor-scoped1', restrictions: { scopes: ['api.model.read', 'model.request'] } });
    rememberKey(created.secret);
    const stored = emulator.apiKey(project.projectId, created.keyId);

    assert.deepEqual(stored?.scopes, ['api.model.read', 'model.request']);
    assert.equal(stored?.name, 'rotor test (rotor-scoped1)');
    assert.equal(stored?.owner.service_account?.role, 'member');
    await openaiProvider.verifyKey(context, created.keyId, created.secret);
  });

  it('scopes without api.model.read are invalid-config', async () => {
    const accountsBefore = emulator.serviceAccountIds(project.projectId).length;

    const error = await rejectionOf(openaiProvider.createKey(context, { label: 'rotor-badscope1', restrictions: { scopes: ['model.request'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /restrictions\.scopes \(model\.request\) must include api\.model\.read/);
    assert.equal(emulator.serviceAccountIds(project.projectId).length, accountsBefore);
  });

  it('expiry past 365 days is invalid-config', async () => {
    const expiresAt = new Date(Date.now() + 400 * 86_400_000).toISOString();

    const error = await rejectionOf(openaiProvider.createKey(context, { label: 'rotor-longexpiry1', restrictions: { expiresAt } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /not between 1 second and 365 days from now/);
  });

  it('expiry ignored by OpenAI fails the create', async () => {
    const accountsBefore = emulator.serviceAccountIds(project.projectId).length;
    emulator.injectResponse({
      method: 'POST',
      path: `/organization/projects/${project.projectId}/service_accounts`,
      status: 200,
      body: {
        object: 'organization.project.service_account',
        id: emulator.seedServiceAccount(project.projectId, { name: 'rotor-ignored1' })[0].serviceAccountId,
        name: 'rotor-ignored1',
        role: 'member',
        created_at: 1_800_000_000,
        api_key: { object: 'organization.project.service_account.api_key', id: 'key_ignored1', value: 'sk-svcacct-ignoredexpiry', name: 'Secret Key', created_at: 1_800_000_000 },
      },
    });
    seenSecrets.add('sk-svcacct-ignoredexpiry');

    const error = await rejectionOf(
      openaiProvider.createKey(context, { label: 'rotor-ignored1', restrictions: { expiresAt: new Date(Date.now() + 86_400_000).toISOString() } }),
    );

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'ExpiryNotApplied');
    assert.match(error.message, /^OpenAI created API key key_ignored1 with no expiry instead of .*, so Rotor deleted it again\./);
    assert.equal(emulator.serviceAccountIds(project.projectId).length, accountsBefore);
  });

  it('verifyKey accepts the new key', async () => {
    const created = await openaiProvider.createKey(context, { label: 'rotor-verified1', restrictions: {} });
    rememberKey(created.secret);

    await openaiProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await modelsStatus(emulator, created.secret.api_key), 200);
  });

  it('verifyKey rejects a made-up key', async () => {
    const madeUpKey = `sk-svcacct-${'madeUpKey'.repeat(5)}`;
    seenSecrets.add(madeUpKey);

    const error = await rejectionOf(openaiProvider.verifyKey(context, 'key_madeup', { api_key_id: 'key_madeup', api_key: madeUpKey }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'invalid_api_key');
    assert.match(error.message, /^OpenAI did not accept the new API key key_madeup for GET \/v1\/models: HTTP 401, Incorrect API key provided: \[redacted key\]\./);
    assert.equal(error.message.includes(madeUpKey.slice(0, 8)), false);
    assert.equal(error.message.includes(madeUpKey.slice(-4)), false);
  });

  it('verifyKey rejects another key\'s secret', async () => {
    const error = await rejectionOf(openaiProvider.verifyKey(context, 'key_other', { api_key_id: project.currentKey.id, api_key: project.currentKey.value }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`contains OpenAI API key ${project.currentKey.id}, not key_other`));
  });

  it('expired key fails verification', async () => {
    // OpenAI counts expiry in whole seconds, so 2 s leaves at least 1 s for the first check.
    const created = await openaiProvider.createKey(context, { label: 'rotor-shortlived1', restrictions: { expiresAt: new Date(Date.now() + 2000).toISOString() } });
    rememberKey(created.secret);
    assert.equal(await modelsStatus(emulator, created.secret.api_key), 200);

    await sleep(2100);
    const error = await rejectionOf(openaiProvider.verifyKey(context, created.keyId, created.secret));
    const listed = (await openaiProvider.listKeys(context)).find((key) => key.keyId === created.keyId);

    assert.equal(await modelsStatus(emulator, created.secret.api_key), 401);
    assert.equal(error.kind, 'authentication');
    assert.equal(listed?.status, 'inactive');
  });

  it('key without api.model.read fails verification', async () => {
    const [scoped] = emulator.seedServiceAccount(project.projectId, { name: 'requests only', scopes: ['model.request'] });
    rememberKey(scoped);

    const error = await rejectionOf(openaiProvider.verifyKey(context, scoped.id, { api_key_id: scoped.id, api_key: scoped.value }));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /You have insufficient permissions for this operation\. Missing scopes: api\.model\.read\./);
  });

  it('revokeKey twice succeeds', async () => {
    const created = await openaiProvider.createKey(context, { label: 'rotor-revoked1', restrictions: {} });
    rememberKey(created.secret);

    await openaiProvider.revokeKey(context, created.keyId);
    await openaiProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.apiKey(project.projectId, created.keyId), undefined);
    assert.equal(emulator.serviceAccountIds(project.projectId).includes(created.secret.service_account_id), false);
    assert.equal((await openaiProvider.listKeys(context)).some((key) => key.keyId === created.keyId), false);
  });

  it('revoked key is rejected by the emulator', async () => {
    const created = await openaiProvider.createKey(context, { label: 'rotor-revoked2', restrictions: {} });
    rememberKey(created.secret);
    assert.equal(await modelsStatus(emulator, created.secret.api_key), 200);

    await openaiProvider.revokeKey(context, created.keyId);

    assert.equal(await modelsStatus(emulator, created.secret.api_key), 401);
    const error = await rejectionOf(openaiProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
  });

  it('revokeKey keeps a shared service account', async () => {
    const [first, second] = emulator.seedServiceAccount(project.projectId, { name: 'shared account', keys: 2 });
    rememberKey(first);
    rememberKey(second);

    await openaiProvider.revokeKey(context, first.id);

    assert.equal(emulator.apiKey(project.projectId, first.id), undefined);
    assert.ok(emulator.serviceAccountIds(project.projectId).includes(first.serviceAccountId ?? 'missing'));
    assert.equal(await modelsStatus(emulator, second.value), 200);
  });

  it('revokeKey deletes a key owned by a person', async () => {
    const userKey = emulator.seedUserKey(project.projectId, 'laptop key');
    rememberKey(userKey);

    await openaiProvider.revokeKey(context, userKey.id);

    assert.equal(emulator.apiKey(project.projectId, userKey.id), undefined);
    assert.equal(await modelsStatus(emulator, userKey.value), 401);
  });

  it('keyUsage before and after use', async () => {
    const created = await openaiProvider.createKey(context, { label: 'rotor-usage1', restrictions: {} });
    rememberKey(created.secret);

    const unused = await openaiProvider.keyUsage?.(context, created.keyId);
    const usedFrom = Date.now();
    await openaiProvider.verifyKey(context, created.keyId, created.secret);
    const used = await openaiProvider.keyUsage?.(context, created.keyId);

    assert.equal(unused?.lastUsedAt, null);
    assert.ok(Date.parse(used?.lastUsedAt ?? '') >= usedFrom - 1000, `lastUsedAt is ${used?.lastUsedAt}`);
  });

  it('keyUsage of a deleted key maps to not-found', async () => {
    const error = await rejectionOf(openaiProvider.keyUsage?.(context, 'key_gone') ?? Promise.resolve());

    assert.equal(error.kind, 'not-found');
    assert.equal(error.message, 'OpenAI found no API key key_gone for keyUsage: HTTP 404, No such API key: key_gone.');
  });

  it('listKeys follows the pages', async () => {
    const pagedProject = emulator.seedProject();
    const seeded = emulator.seedServiceAccount(pagedProject.projectId, { name: 'many keys', keys: 130 });
    seeded.forEach(rememberKey);

    const keys = await openaiProvider.listKeys(providerContext(emulator, pagedProject));

    assert.equal(keys.length, 131);
    assert.equal(new Set(keys.map((key) => key.keyId)).size, 131);
  });

  it('unknown admin key maps to authentication', async () => {
    const wrongKey = `sk-admin-${'wrongAdminKey'.repeat(3)}`;
    seenSecrets.add(wrongKey);

    const error = await rejectionOf(openaiProvider.listKeys(providerContext(emulator, project, wrongKey)));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /^OpenAI rejected the admin key during listKeys \(GET \/organization\/projects\/proj_\w+\/api_keys\): HTTP 401, Incorrect API key provided: \[redacted key\]\./);
    assert.match(error.message, /Check the admin_key at the integration's management credential path in Vault/);
    assert.equal(error.message.includes(wrongKey.slice(0, 12)), false);
    assert.equal(JSON.stringify(error).includes(wrongKey.slice(0, 12)), false);
    assert.equal(JSON.stringify(error.details).includes(wrongKey), false);
  });

  it('project key as admin key maps to permission', async () => {
    const error = await rejectionOf(openaiProvider.listKeys(providerContext(emulator, project, project.currentKey.value)));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /^OpenAI denied GET \/organization\/projects\/proj_\w+\/api_keys to the admin key: HTTP 403/);
    assert.match(error.message, /must be an organization admin key \(sk-admin-…\), not a project key/);
  });

  it('unknown project maps to not-found', async () => {
    const error = await rejectionOf(openaiProvider.listKeys({ ...context, config: { ...context.config, project_id: 'proj_missing' } }));

    assert.equal(error.kind, 'not-found');
    assert.match(error.message, /No such project: proj_missing/);
  });

  it('list response without id is unexpected', async () => {
    emulator.injectResponse({
      method: 'GET',
      path: `/organization/projects/${project.projectId}/api_keys`,
      status: 200,
      body: { object: 'list', data: [{ name: 'nameless', created_at: 1, last_used_at: null, owner: { type: 'user' } }], has_more: false },
    });

    const error = await rejectionOf(openaiProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, `OpenAI returned an unexpected response to listKeys (GET /organization/projects/${project.projectId}/api_keys): missing data[0].id`);
  });

  it('create response without value is unexpected', async () => {
    emulator.injectResponse({
      method: 'POST',
      path: `/organization/projects/${project.projectId}/service_accounts`,
      status: 200,
      body: { object: 'organization.project.service_account', id: 'svc_acct_x', name: 'rotor-malformed1', role: 'member', created_at: 1, api_key: { id: 'key_x', value: 42424242, created_at: 1 } },
    });

    const error = await rejectionOf(openaiProvider.createKey(context, { label: 'rotor-malformed1', restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^OpenAI returned an unexpected response to createKey \(POST \/organization\/projects\/proj_\w+\/service_accounts\): api_key\.value: /);
    assert.equal(error.message.includes('42424242'), false);
  });

  it('keyIdFromSecret returns api_key_id', () => {
    assert.equal(openaiProvider.keyIdFromSecret({ api_key_id: 'key_abc', api_key: 'secret' }), 'key_abc');
    assert.equal(openaiProvider.keyIdFromSecret({ api_key: 'secret' }), undefined);
  });
});

describe('openai limits', () => {
  it('service account limit maps to limit-reached', async () => {
    const emulator = await startOpenAIEmulator({ serviceAccountLimit: 2 });
    try {
      const project = emulator.seedProject();
      remember(project);
      emulator.seedServiceAccount(project.projectId, { name: 'second account' }).forEach(rememberKey);
      const context = providerContext(emulator, project);

      const error = await rejectionOf(openaiProvider.createKey(context, { label: 'rotor-onetoomany', restrictions: {} }));

      assert.equal(error.kind, 'limit-reached');
      assert.equal(error.details.vendorCode, 'service_account_limit_reached');
      assert.match(error.message, /^OpenAI refused another service account in project proj_\w+: HTTP 400, Project proj_\w+ already has the maximum number of service accounts \(2\)\./);
      assert.equal(emulator.serviceAccountIds(project.projectId).length, 2);
    } finally {
      await emulator.stop();
    }
  });

  it('HTTP 429 maps to rate-limited with the delay', async () => {
    const emulator = await startOpenAIEmulator({ rateLimitPerSecond: 1 });
    try {
      const project = emulator.seedProject();
      remember(project);
      const context = providerContext(emulator, project);
      await openaiProvider.listKeys(context);

      const error = await rejectionOf(openaiProvider.listKeys(context));

      assert.equal(error.kind, 'rate-limited');
      // The message reads "try again in 1s"; the provider adds up to 2 s so throttled rotations spread out.
      assert.ok((error.details.retryAfterMs ?? 0) >= 1000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 3000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(error.details.vendorCode, 'rate_limit_exceeded');
      assert.match(error.message, /^OpenAI rate-limited GET \/organization\/projects\/proj_\w+\/api_keys \(rate_limit_exceeded\); retrying in \d\.\d s\.$/);
      assert.equal(emulator.counters.throttled, 1);
    } finally {
      await emulator.stop();
    }
  });

  it('HTTP 429 without a delay waits 5 s', async () => {
    const emulator = await startOpenAIEmulator();
    try {
      const project = emulator.seedProject();
      remember(project);
      emulator.injectResponse({
        method: 'GET',
        path: `/organization/projects/${project.projectId}/api_keys`,
        status: 429,
        body: { error: { message: 'Too many requests.', type: 'requests', param: null, code: 'rate_limit_exceeded' } },
      });

      const error = await rejectionOf(openaiProvider.listKeys(providerContext(emulator, project)));

      assert.equal(error.kind, 'rate-limited');
      assert.ok((error.details.retryAfterMs ?? 0) >= 5000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(error.details.vendorCode, 'HTTP 429');
    } finally {
      await emulator.stop();
    }
  });

  it('insufficient_quota maps to permission', async () => {
    const emulator = await startOpenAIEmulator();
    try {
      const project = emulator.seedProject();
      remember(project);
      emulator.injectResponse({
        method: 'GET',
        path: '/models',
        status: 429,
        body: { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } },
      });

      const error = await rejectionOf(
        openaiProvider.verifyKey(providerContext(emulator, project), project.currentKey.id, { api_key_id: project.currentKey.id, api_key: project.currentKey.value }),
      );

      assert.equal(error.kind, 'permission');
      assert.equal(error.retryable, false);
      assert.match(error.message, /organization has no quota left/);
    } finally {
      await emulator.stop();
    }
  });

  it('retry delay parses from the message', () => {
    assert.equal(retryDelayFromMessage('Rate limit reached ... Please try again in 20s.'), 20_000);
    assert.equal(retryDelayFromMessage('Please try again in 446ms.'), 446);
    assert.equal(retryDelayFromMessage('Please try again in 1m30.5s.'), 90_500);
    assert.equal(retryDelayFromMessage('Too many requests.'), undefined);
  });
});

describe('openai config and registry', () => {
  it('config defaults base_url to the OpenAI API', () => {
    const config = openaiConfigSchema.parse({ project_id: 'proj_abc123' });

    assert.equal(config.base_url, 'https://api.openai.com/v1');
  });

  it('config rejects a malformed project id', () => {
    const result = openaiConfigSchema.safeParse({ project_id: 'abc123' });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['project_id']);
    assert.match(result.error?.issues[0].message ?? '', /expected an OpenAI project id such as proj_abc123/);
  });

  it('config rejects unknown fields', () => {
    const result = openaiConfigSchema.safeParse({ project_id: 'proj_abc123', organization: 'org-abc' });

    assert.equal(result.success, false);
    assert.equal(result.error?.issues[0].code, 'unrecognized_keys');
  });

  it('capabilities say no ip allowlist', () => {
    assert.equal(openaiProvider.capabilities.ipAllowlist, false);
    assert.equal(openaiProvider.capabilities.scopes, true);
    assert.equal(openaiProvider.capabilities.expiry, true);
    assert.equal(openaiProvider.capabilities.usageData, true);
  });

  it('registry returns openai by name', () => {
    assert.equal(getProvider('openai'), openaiProvider);
  });
});

describe('openai rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: OpenAIEmulator;
  const taskQueue = `rotor-openai-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator, not the worker's task queue, is what throttles these rotations.
    worker = await startTestWorker(taskQueue, { rateLimits: { openai: 100 } });
    emulator = await startOpenAIEmulator();
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
    await emulator.stop();
  });

  /** Seeds a project at the emulator and writes the admin key and current key to Vault. */
  async function prepareIntegration(target: OpenAIEmulator, overrides: { adminKey?: string } = {}) {
    const project = target.seedProject();
    remember(project);
    const id = `openai-${uniqueSuffix()}`;
    const integration: IntegrationSpec = {
      id,
      provider: 'openai',
      providerConfig: { base_url: target.url, project_id: project.projectId, service_account_name: id },
      managementCredentialPath: `rotor/management/${id}`,
      vaultPath: `apps/${id}/openai`,
      owner: 'platform-tests',
      policy: { gracePeriodMs: 1000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
      restrictions: { ipAllowlist: [], scopes: ['api.model.read', 'model.request'], expiresAfterMs: 30 * 86_400_000 },
    };
    await vault.writeSecret(integration.managementCredentialPath, { admin_key: overrides.adminKey ?? project.adminKey.value });
    await vault.writeSecret(integration.vaultPath, { api_key_id: project.currentKey.id, api_key: project.currentKey.value, service_account_id: project.currentKey.serviceAccountId });
    return { integration, project };
  }

  const start = (integration: IntegrationSpec) => startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });

  describe('a full rotation', () => {
    let integration: IntegrationSpec;
    let project: SeededOpenAIProject;
    let result: RotationResult;
    let history: string;
    let newKey: Record<string, string>;

    before(async () => {
      ({ integration, project } = await prepareIntegration(emulator));
      const handle = await start(integration);
      result = await handle.result();
      history = await historyText(handle);
      newKey = (await vault.readSecret(integration.vaultPath))?.data ?? {};
    });

    it('completes and promotes the new key', async () => {
      const latest = await vault.readSecret(integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(newKey.api_key_id, result.state.pendingKeyId);
      assert.notEqual(newKey.api_key, project.currentKey.value);
      assert.equal(await modelsStatus(emulator, newKey.api_key ?? ''), 200);
    });

    it('deletes the old key and its service account', async () => {
      assert.equal(emulator.apiKey(project.projectId, project.currentKey.id), undefined);
      assert.equal(emulator.serviceAccountIds(project.projectId).includes(project.currentKey.serviceAccountId), false);
      assert.equal(await modelsStatus(emulator, project.currentKey.value), 401);
    });

    it('restricts the new key', () => {
      const stored = emulator.apiKey(project.projectId, result.state.pendingKeyId ?? '');

      assert.equal(stored?.owner.service_account?.name, `${integration.id} (rotor-${result.state.rotationId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)})`);
      assert.deepEqual(stored?.scopes, ['api.model.read', 'model.request']);
      const expiresInDays = ((stored?.expires_at ?? 0) * 1000 - Date.now()) / 86_400_000;
      assert.ok(expiresInDays > 29, `expires_at is ${stored?.expires_at}`);
      assert.ok(expiresInDays <= 30, `expires_at is ${stored?.expires_at}`);
    });

    it('records the key ids in Vault metadata', async () => {
      const custom = (await vault.readMetadata(integration.vaultPath))?.customMetadata ?? {};

      assert.equal(custom.provider, 'openai');
      assert.equal(custom.key_id, result.state.pendingKeyId);
      assert.equal(custom.previous_key_id, project.currentKey.id);
    });

    it('keeps every key value out of the history', () => {
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new key id');
      assert.ok((newKey.api_key ?? '').length >= 40);
      assert.equal(history.includes(newKey.api_key ?? 'missing'), false, 'new key found in history');
      assert.equal(history.includes(project.currentKey.value), false, 'old key found in history');
      assert.equal(history.includes(project.adminKey.value), false, 'admin key found in history');
    });

    it('keeps every key value out of the logs', () => {
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.equal(logs.includes(newKey.api_key ?? 'missing'), false, 'new key found in logs');
      assert.equal(logs.includes(project.currentKey.value), false, 'old key found in logs');
      assert.equal(logs.includes(project.adminKey.value), false, 'admin key found in logs');
    });
  });

  it('rate-limit storm is absorbed', { timeout: 180_000 }, async () => {
    // A scoped create alone takes three Administration API calls, so three rotations at once overflow this bucket.
    const stormEmulator = await startOpenAIEmulator({ rateLimitPerSecond: 2, rateLimitBurst: 3 });
    try {
      const prepared = [await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator)];

      const handles = await Promise.all(prepared.map(({ integration }) => start(integration)));
      const results = await Promise.all(handles.map((handle) => handle.result()));

      assert.deepEqual(
        results.map((rotation) => rotation.outcome),
        ['completed', 'completed', 'completed'],
      );
      for (const [index, { integration, project }] of prepared.entries()) {
        assert.equal((await vault.readSecret(integration.vaultPath))?.data.api_key_id, results[index].state.pendingKeyId);
        assert.equal(stormEmulator.apiKey(project.projectId, project.currentKey.id), undefined);
      }
      assert.ok(stormEmulator.counters.throttled >= 1, `the emulator answered ${stormEmulator.counters.throttled} requests with 429`);
    } finally {
      await stormEmulator.stop();
    }
  });

  it('bad admin key fails in planning', async () => {
    const wrongKey = `sk-admin-${'notTheAdminKey'.repeat(3)}`;
    seenSecrets.add(wrongKey);
    const { integration, project } = await prepareIntegration(emulator, { adminKey: wrongKey });

    const failure = await (await start(integration)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    const message = failure.cause?.message ?? '';
    assert.match(message, new RegExp(`^Rotation of ${integration.id} failed in phase planning: OpenAI rejected the admin key during listKeys`));
    assert.match(message, /Check the admin_key at the integration's management credential path in Vault/);
    assert.equal(message.includes(wrongKey.slice(0, 12)), false);
    assert.equal(await modelsStatus(emulator, project.currentKey.value), 200);
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

// Runs after every test above, because node:test runs a file's tests in order.
describe('openai logging', () => {
  it('logs no key values', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created OpenAI service account and API key'), 'the provider should log its steps');
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a key value was logged');
    }
  });
});

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { datadogConfigSchema, datadogProvider, datadogSecretSchema, type DatadogConfig, type DatadogCredential } from '../../providers/datadog';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { DATADOG_API_KEY_LIMIT, startDatadogEmulator, type DatadogEmulator, type EmulatedKey, type SeededDatadogOrganization } from '../emulators/datadog';
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

type DatadogContext = ProviderContext<DatadogConfig, DatadogCredential>;

function providerContext(emulator: DatadogEmulator, credential: DatadogCredential, config: Record<string, unknown> = {}): DatadogContext {
  return {
    config: datadogConfigSchema.parse({ base_url: emulator.url, key_name: 'rotor test', ...config }),
    credential,
    logger,
  };
}

function managementCredential(organization: SeededDatadogOrganization): DatadogCredential {
  return { api_key: organization.managementApiKey.key, application_key: organization.managementApplicationKey.key };
}

/** HTTP status of GET /api/v1/validate with the API key: 200 when the emulator accepts it. */
async function apiKeyStatus(emulator: DatadogEmulator, apiKey: string): Promise<number> {
  const response = await fetch(`${emulator.url}/api/v1/validate`, { headers: { 'DD-API-KEY': apiKey } });
  await response.arrayBuffer();
  return response.status;
}

/** HTTP status of a GET with the key pair: 200 when the emulator accepts both keys for that path. */
async function pairStatus(emulator: DatadogEmulator, apiKey: string, applicationKey: string, path = '/api/v2/validate_keys'): Promise<number> {
  const response = await fetch(`${emulator.url}${path}`, { headers: { 'DD-API-KEY': apiKey, 'DD-APPLICATION-KEY': applicationKey } });
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

function remember(organization: SeededDatadogOrganization): void {
  for (const key of Object.values(organization)) {
    seenSecrets.add(key.key);
  }
}

function rememberSecret(secret: Record<string, string>): void {
  for (const field of ['api_key', 'application_key']) {
    if (secret[field]) {
      seenSecrets.add(secret[field]);
    }
  }
}

describe('datadog API keys against the emulator', () => {
  let emulator: DatadogEmulator;
  let organization: SeededDatadogOrganization;
  let context: DatadogContext;

  before(async () => {
    emulator = await startDatadogEmulator();
    organization = emulator.seedAccount();
    remember(organization);
    context = providerContext(emulator, managementCredential(organization));
  });

  after(async () => {
    await emulator.stop();
  });

  it('createKey labels the key in listKeys', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-labelled1', restrictions: {} });
    rememberSecret(created.secret);

    const keys = await datadogProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(listed?.label, 'rotor-labelled1');
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.lastUsedAt, null);
    assert.equal(emulator.apiKey(created.keyId)?.name, 'rotor test (rotor-labelled1)');
    assert.equal(keys.find((key) => key.keyId === organization.currentApiKey.id)?.label, 'metrics shipper');
    assert.equal(created.secret.key_id, created.keyId);
    assert.match(created.secret.api_key ?? '', /^[0-9a-f]{32}$/);
    assert.equal(datadogSecretSchema.safeParse(created.secret).success, true);
  });

  it('scopes on an API key are rejected', async () => {
    const before = emulator.apiKeyIds().length;

    const error = await rejectionOf(datadogProvider.createKey(context, { label: 'rotor-scopedapi1', restrictions: { scopes: ['dashboards_read'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /Datadog API keys have no scopes/);
    assert.equal(emulator.apiKeyIds().length, before);
  });

  it('verifyKey accepts the new key', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-verified1', restrictions: { ipAllowlist: ['10.0.0.0/8'] } });
    rememberSecret(created.secret);

    await datadogProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await apiKeyStatus(emulator, created.secret.api_key ?? ''), 200);
    assert.ok(logLines.some((line) => line.includes('restrictions.ip_allowlist is not applied')), 'the ignored ip_allowlist should be logged');
  });

  it('verifyKey rejects a made-up key as authentication', async () => {
    const keyId = crypto.randomUUID();

    const error = await rejectionOf(datadogProvider.verifyKey(context, keyId, { key_id: keyId, api_key: 'f'.repeat(32) }));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, new RegExp(`^Datadog did not accept the new API key ${keyId} \\(HTTP 403: Forbidden\\)`));
  });

  it('verifyKey rejects a secret of another key id', async () => {
    const error = await rejectionOf(datadogProvider.verifyKey(context, 'other-id', { key_id: organization.currentApiKey.id, api_key: organization.currentApiKey.key }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`contains Datadog API key ${organization.currentApiKey.id}, not other-id`));
  });

  it('verifyKey rejects a valid key of another id', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-mismatch1', restrictions: {} });
    rememberSecret(created.secret);

    const error = await rejectionOf(datadogProvider.verifyKey(context, created.keyId, { key_id: created.keyId, api_key: organization.currentApiKey.key }));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'KeyMismatch');
    assert.match(error.message, /does not belong to this rotation/);
  });

  it('verifyKey rejects an application key secret', async () => {
    const error = await rejectionOf(datadogProvider.verifyKey(context, 'some-id', { key_id: 'some-id', application_key: 'a'.repeat(40) }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /missing or has invalid fields: api_key\. Expected key_id and api_key\./);
  });

  it('revokeKey twice succeeds', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-revoked1', restrictions: {} });
    rememberSecret(created.secret);

    await datadogProvider.revokeKey(context, created.keyId);
    await datadogProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.apiKey(created.keyId), undefined);
    assert.equal((await datadogProvider.listKeys(context)).some((key) => key.keyId === created.keyId), false);
  });

  it('revoked key is rejected by the emulator', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-revoked2', restrictions: {} });
    rememberSecret(created.secret);
    assert.equal(await apiKeyStatus(emulator, created.secret.api_key ?? ''), 200);

    await datadogProvider.revokeKey(context, created.keyId);

    assert.equal(await apiKeyStatus(emulator, created.secret.api_key ?? ''), 403);
    const error = await rejectionOf(datadogProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
  });

  it('revokeKey rejects the management API key', async () => {
    const error = await rejectionOf(datadogProvider.revokeKey(context, organization.managementApiKey.id));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /management credential's api_key of this integration, and Rotor will not revoke it/);
    assert.equal(await apiKeyStatus(emulator, organization.managementApiKey.key), 200);
  });

  it('keyUsage returns null before use and a date after', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-usage1', restrictions: {} });
    rememberSecret(created.secret);

    const unused = await datadogProvider.keyUsage?.(context, created.keyId);
    const usedFrom = Date.now();
    await datadogProvider.verifyKey(context, created.keyId, created.secret);
    const used = await datadogProvider.keyUsage?.(context, created.keyId);

    assert.equal(unused?.lastUsedAt, null);
    assert.ok(Date.parse(used?.lastUsedAt ?? '') >= usedFrom - 1000, `lastUsedAt is ${used?.lastUsedAt}`);
  });

  it('keyUsage of a deleted key maps to not-found', async () => {
    const keyId = crypto.randomUUID();

    const error = await rejectionOf(datadogProvider.keyUsage?.(context, keyId) ?? Promise.resolve());

    assert.equal(error.kind, 'not-found');
    assert.equal(error.message, `Datadog found no API key ${keyId} for keyUsage: HTTP 404: API key not found.`);
  });

  it('unknown management key maps to authentication', async () => {
    const wrongKey = 'e'.repeat(32);
    seenSecrets.add(wrongKey);
    const wrongContext = providerContext(emulator, { api_key: wrongKey, application_key: organization.managementApplicationKey.key });

    const error = await rejectionOf(datadogProvider.listKeys(wrongContext));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /^Datadog rejected the management credential during listKeys \(GET \/api\/v2\/api_keys\): HTTP 403: Forbidden\./);
    assert.equal(error.message.includes(wrongKey), false);
    assert.equal(JSON.stringify(error).includes(wrongKey), false);
    assert.equal(JSON.stringify(error.details).includes(wrongKey), false);
  });

  it('scoped management key maps to permission', async () => {
    const readOnly = emulator.seedApplicationKey('read only', ['api_keys_read']);
    seenSecrets.add(readOnly.key);
    const readOnlyContext = providerContext(emulator, { api_key: organization.managementApiKey.key, application_key: readOnly.key });

    const error = await rejectionOf(datadogProvider.createKey(readOnlyContext, { label: 'rotor-denied1', restrictions: {} }));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /^Datadog denied POST \/api\/v2\/api_keys to the management credential \(HTTP 403: Forbidden\), although its keys are valid\./);
    assert.match(error.message, /needs the permission api_keys_write/);
  });

  it('listKeys response without key id is unexpected', async () => {
    emulator.injectResponse({
      method: 'GET',
      path: '/api/v2/api_keys',
      status: 200,
      body: { data: [{ type: 'api_keys', attributes: { name: 'nameless' } }], meta: { page: { total_filtered_count: 1 } } },
    });

    const error = await rejectionOf(datadogProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, 'Datadog returned an unexpected response to listKeys (GET /api/v2/api_keys): data[0].id is missing');
  });

  it('createKey response without key names only the field', async () => {
    emulator.injectResponse({
      method: 'POST',
      path: '/api/v2/api_keys',
      status: 201,
      body: { data: { id: crypto.randomUUID(), type: 'api_keys', attributes: { name: 'x', key: 4242424242 } } },
    });

    const error = await rejectionOf(datadogProvider.createKey(context, { label: 'rotor-malformed1', restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^Datadog returned an unexpected response to createKey \(POST \/api\/v2\/api_keys\): data\.attributes\.key: /);
    assert.equal(error.message.includes('4242424242'), false);
  });

  it('listKeys reads every page', async () => {
    const paged = await startDatadogEmulator({ apiKeyLimit: 500 });
    try {
      const seeded = paged.seedAccount();
      remember(seeded);
      for (let index = 0; index < 230; index++) {
        paged.seedApiKey(`filler ${index}`);
      }

      const keys = await datadogProvider.listKeys(providerContext(paged, managementCredential(seeded)));

      assert.equal(keys.length, 232);
      assert.equal(new Set(keys.map((key) => key.keyId)).size, 232);
    } finally {
      await paged.stop();
    }
  });

  it('keyIdFromSecret returns key_id', () => {
    assert.equal(datadogProvider.keyIdFromSecret({ key_id: 'abc-123', api_key: 'secret' }), 'abc-123');
    assert.equal(datadogProvider.keyIdFromSecret({ api_key: 'secret' }), undefined);
  });
});

describe('datadog application keys against the emulator', () => {
  let emulator: DatadogEmulator;
  let organization: SeededDatadogOrganization;
  let context: DatadogContext;

  before(async () => {
    emulator = await startDatadogEmulator();
    organization = emulator.seedAccount();
    remember(organization);
    context = providerContext(emulator, managementCredential(organization), { key_type: 'application' });
  });

  after(async () => {
    await emulator.stop();
  });

  it('createKey applies scopes and the label', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-appkey1', restrictions: { scopes: ['dashboards_read', 'monitors_read'] } });
    rememberSecret(created.secret);

    const listed = (await datadogProvider.listKeys(context)).find((key) => key.keyId === created.keyId);

    assert.equal(listed?.label, 'rotor-appkey1');
    assert.deepEqual(emulator.applicationKey(created.keyId)?.scopes, ['dashboards_read', 'monitors_read']);
    assert.match(created.secret.application_key ?? '', /^[0-9a-f]{40}$/);
    assert.equal(created.secret.api_key, undefined);
  });

  it('scoped key is limited by the emulator', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-appkey2', restrictions: { scopes: ['dashboards_read'] } });
    rememberSecret(created.secret);
    const newKey = created.secret.application_key ?? '';

    await datadogProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, newKey), 200);
    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, newKey, '/api/v2/api_keys'), 403);
    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, organization.managementApplicationKey.key, '/api/v2/api_keys'), 200);
  });

  it('key without scopes is unrestricted', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-appkey3', restrictions: {} });
    rememberSecret(created.secret);

    assert.equal(emulator.applicationKey(created.keyId)?.scopes, null);
    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, created.secret.application_key ?? '', '/api/v2/api_keys'), 200);
  });

  it('malformed scope name is rejected', async () => {
    const before = emulator.applicationKeyIds().length;

    const error = await rejectionOf(datadogProvider.createKey(context, { label: 'rotor-badscope1', restrictions: { scopes: ['Dashboards Read'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /"Dashboards Read", which is not a Datadog scope name/);
    assert.equal(emulator.applicationKeyIds().length, before);
  });

  it('unknown scope maps to invalid-config', async () => {
    const error = await rejectionOf(datadogProvider.createKey(context, { label: 'rotor-badscope2', restrictions: { scopes: ['logs_write_everything'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /^Datadog rejected POST \/api\/v2\/current_user\/application_keys as invalid: HTTP 400: Invalid scopes: logs_write_everything\./);
  });

  it('differing scopes delete the new key', async () => {
    const returned = emulator.seedApplicationKey('rotor test (rotor-scopes1)', ['dashboards_read']);
    seenSecrets.add(returned.key);
    emulator.injectResponse({
      method: 'POST',
      path: '/api/v2/current_user/application_keys',
      status: 201,
      body: { data: { id: returned.id, type: 'application_keys', attributes: { name: 'rotor test (rotor-scopes1)', key: returned.key, scopes: ['dashboards_read'] } } },
    });

    const error = await rejectionOf(datadogProvider.createKey(context, { label: 'rotor-scopes1', restrictions: { scopes: ['monitors_read'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'ScopesDiffer');
    assert.match(error.message, /with the scopes \[dashboards_read\] instead of the requested \[monitors_read\], so Rotor deleted it/);
    assert.equal(emulator.applicationKey(returned.id), undefined);
  });

  it('verifyKey rejects a made-up key as authentication', async () => {
    const keyId = crypto.randomUUID();

    const error = await rejectionOf(datadogProvider.verifyKey(context, keyId, { key_id: keyId, application_key: 'b'.repeat(40) }));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, new RegExp(`^Datadog did not accept the new application key ${keyId} \\(HTTP 403: Forbidden\\)`));
  });

  it('revokeKey twice succeeds', async () => {
    const created = await datadogProvider.createKey(context, { label: 'rotor-appkey4', restrictions: {} });
    rememberSecret(created.secret);

    await datadogProvider.revokeKey(context, created.keyId);
    await datadogProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.applicationKey(created.keyId), undefined);
    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, created.secret.application_key ?? ''), 403);
  });

  it('revokeKey rejects the management application key', async () => {
    const error = await rejectionOf(datadogProvider.revokeKey(context, organization.managementApplicationKey.id));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /management credential's application_key of this integration/);
    assert.notEqual(emulator.applicationKey(organization.managementApplicationKey.id), undefined);
  });

  it('keyUsage reads last_used_at', async () => {
    const before = await datadogProvider.keyUsage?.(context, organization.currentApplicationKey.id);
    await pairStatus(emulator, organization.managementApiKey.key, organization.currentApplicationKey.key);
    const afterUse = await datadogProvider.keyUsage?.(context, organization.currentApplicationKey.id);

    assert.equal(before?.lastUsedAt, null);
    assert.equal(afterUse?.lastUsedAt, emulator.applicationKey(organization.currentApplicationKey.id)?.lastUsedAt);
  });
});

describe('datadog limits', () => {
  it('API key past the limit maps to limit-reached', async () => {
    const emulator = await startDatadogEmulator();
    try {
      const organization = emulator.seedAccount();
      remember(organization);
      while (emulator.apiKeyIds().length < DATADOG_API_KEY_LIMIT) {
        emulator.seedApiKey(`filler ${emulator.apiKeyIds().length}`);
      }
      const context = providerContext(emulator, managementCredential(organization));

      const error = await rejectionOf(datadogProvider.createKey(context, { label: 'rotor-onetoomany', restrictions: {} }));

      assert.equal(error.kind, 'limit-reached');
      assert.match(error.message, /already has the maximum number of API keys: HTTP 400: API key limit reached/);
      assert.equal(emulator.apiKeyIds().length, DATADOG_API_KEY_LIMIT);
      assert.equal((await datadogProvider.listKeys(context)).length, DATADOG_API_KEY_LIMIT);
    } finally {
      await emulator.stop();
    }
  });

  it('HTTP 429 waits for X-RateLimit-Reset', async () => {
    const emulator = await startDatadogEmulator();
    try {
      const organization = emulator.seedAccount();
      remember(organization);
      emulator.injectResponse({
        method: 'GET',
        path: '/api/v2/api_keys',
        status: 429,
        body: { errors: ['Too many requests'] },
        headers: { 'X-RateLimit-Limit': '60', 'X-RateLimit-Period': '60', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': '7', 'X-RateLimit-Name': 'api_keys' },
      });

      const error = await rejectionOf(datadogProvider.listKeys(providerContext(emulator, managementCredential(organization))));

      assert.equal(error.kind, 'rate-limited');
      // X-RateLimit-Reset is 7 s; the provider adds up to 1 s so throttled rotations spread out.
      assert.ok((error.details.retryAfterMs ?? 0) >= 7000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 8000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(error.details.vendorCode, 'HTTP 429');
      assert.match(error.message, /^Datadog rate-limited GET \/api\/v2\/api_keys \(HTTP 429, limit api_keys\); retrying in \d\.\d s\.$/);
    } finally {
      await emulator.stop();
    }
  });

  it('emulator rate limit maps to rate-limited', async () => {
    // One key-management request per 10-second period.
    const emulator = await startDatadogEmulator({ rateLimitPerSecond: 0.1, rateLimitPeriodSeconds: 10 });
    try {
      const organization = emulator.seedAccount();
      remember(organization);
      const context = providerContext(emulator, managementCredential(organization));
      await datadogProvider.listKeys(context);

      // A period may end between two requests, so the third request is the one sure to be throttled.
      const error = await rejectionOf(datadogProvider.listKeys(context).then(() => datadogProvider.listKeys(context)));

      assert.equal(error.kind, 'rate-limited');
      assert.ok((error.details.retryAfterMs ?? 0) >= 1000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 11_000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok(emulator.throttledResponses() >= 1, `the emulator answered ${emulator.throttledResponses()} requests with 429`);
    } finally {
      await emulator.stop();
    }
  });

  it('organization IP allowlist rejects the new key', async () => {
    const emulator = await startDatadogEmulator({ ipAllowlist: ['203.0.113.0/24'] });
    try {
      const organization = emulator.seedAccount();
      remember(organization);
      const context = providerContext(emulator, managementCredential(organization));

      const error = await rejectionOf(
        datadogProvider.verifyKey(context, organization.currentApiKey.id, { key_id: organization.currentApiKey.id, api_key: organization.currentApiKey.key }),
      );

      assert.equal(await apiKeyStatus(emulator, organization.currentApiKey.key), 403);
      assert.equal(error.kind, 'authentication');
      assert.match(error.message, /IP allowlist excludes this worker's address/);
    } finally {
      await emulator.stop();
    }
  });
});

describe('datadog config and registry', () => {
  it('config defaults to API keys on US1', () => {
    const config = datadogConfigSchema.parse({});

    assert.equal(config.base_url, 'https://api.datadoghq.com');
    assert.equal(config.key_type, 'api');
  });

  it('config accepts another site', () => {
    assert.equal(datadogConfigSchema.parse({ base_url: 'https://api.datadoghq.eu', key_type: 'application' }).base_url, 'https://api.datadoghq.eu');
  });

  it('config rejects a base_url with a path', () => {
    const result = datadogConfigSchema.safeParse({ base_url: 'https://api.datadoghq.com/api/v2' });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['base_url']);
  });

  it('config rejects an unknown key_type', () => {
    const result = datadogConfigSchema.safeParse({ key_type: 'client_token' });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['key_type']);
  });

  it('config rejects unknown fields', () => {
    const result = datadogConfigSchema.safeParse({ site: 'datadoghq.eu' });

    assert.equal(result.success, false);
    assert.equal(result.error?.issues[0].code, 'unrecognized_keys');
  });

  it('secret needs exactly one key field', () => {
    assert.equal(datadogSecretSchema.safeParse({ key_id: 'a', api_key: 'b', application_key: 'c' }).success, false);
    assert.equal(datadogSecretSchema.safeParse({ key_id: 'a' }).success, false);
    assert.equal(datadogSecretSchema.safeParse({ key_id: 'a', application_key: 'c' }).success, true);
  });

  it('registry returns datadog by name', () => {
    assert.equal(getProvider('datadog'), datadogProvider);
  });
});

describe('datadog rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: DatadogEmulator;
  const taskQueue = `rotor-datadog-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator, not the worker's task queue, is what throttles these rotations.
    worker = await startTestWorker(taskQueue, { rateLimits: { datadog: 100 } });
    emulator = await startDatadogEmulator();
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
    await emulator.stop();
  });

  /** Seeds an organization at the emulator and writes the management credential and current key to Vault. */
  async function prepareIntegration(
    target: DatadogEmulator,
    options: { keyType?: 'api' | 'application'; scopes?: string[]; managementApiKey?: string } = {},
  ) {
    const organization = target.seedAccount();
    const keyType = options.keyType ?? 'api';
    const id = `datadog-${uniqueSuffix()}`;
    const integration: IntegrationSpec = {
      id,
      provider: 'datadog',
      providerConfig: { base_url: target.url, key_type: keyType, key_name: id },
      managementCredentialPath: `rotor/management/${id}`,
      vaultPath: `apps/${id}/datadog`,
      owner: 'platform-tests',
      policy: { gracePeriodMs: 1000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
      restrictions: { ipAllowlist: [], scopes: options.scopes ?? [] },
    };
    await vault.writeSecret(integration.managementCredentialPath, {
      api_key: options.managementApiKey ?? organization.managementApiKey.key,
      application_key: organization.managementApplicationKey.key,
    });
    const current: EmulatedKey = keyType === 'api' ? organization.currentApiKey : organization.currentApplicationKey;
    await vault.writeSecret(integration.vaultPath, keyType === 'api' ? { key_id: current.id, api_key: current.key } : { key_id: current.id, application_key: current.key });
    return { integration, organization, current };
  }

  const start = (integration: IntegrationSpec) => startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });

  describe('a full API key rotation', () => {
    let integration: IntegrationSpec;
    let organization: SeededDatadogOrganization;
    let result: RotationResult;
    let history: string;
    let newSecret: Record<string, string>;

    before(async () => {
      ({ integration, organization } = await prepareIntegration(emulator));
      const handle = await start(integration);
      result = await handle.result();
      history = await historyText(handle);
      newSecret = (await vault.readSecret(integration.vaultPath))?.data ?? {};
    });

    it('completes and promotes the new key', async () => {
      const latest = await vault.readSecret(integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(newSecret.key_id, result.state.pendingKeyId);
      assert.notEqual(newSecret.api_key, organization.currentApiKey.key);
      assert.equal(await apiKeyStatus(emulator, newSecret.api_key ?? ''), 200);
    });

    it('deletes the old key at Datadog', async () => {
      assert.equal(emulator.apiKey(organization.currentApiKey.id), undefined);
      assert.equal(await apiKeyStatus(emulator, organization.currentApiKey.key), 403);
      assert.equal(await apiKeyStatus(emulator, organization.managementApiKey.key), 200);
    });

    it('names the new key with the rotation label', () => {
      const label = `rotor-${result.state.rotationId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}`;

      assert.equal(emulator.apiKey(result.state.pendingKeyId ?? '')?.name, `${integration.id} (${label})`);
    });

    it('records the key ids in Vault metadata', async () => {
      const custom = (await vault.readMetadata(integration.vaultPath))?.customMetadata ?? {};

      assert.equal(custom.provider, 'datadog');
      assert.equal(custom.key_id, result.state.pendingKeyId);
      assert.equal(custom.previous_key_id, organization.currentApiKey.id);
    });

    it('keeps every key value out of the history', () => {
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new key id');
      assert.equal((newSecret.api_key ?? '').length, 32);
      assert.equal(history.includes(newSecret.api_key ?? 'missing'), false, 'new key found in history');
      assert.equal(history.includes(organization.currentApiKey.key), false, 'old key found in history');
      assert.equal(history.includes(organization.managementApiKey.key), false, 'management API key found in history');
      assert.equal(history.includes(organization.managementApplicationKey.key), false, 'management application key found in history');
    });

    it('keeps every key value out of the logs', () => {
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.equal(logs.includes(newSecret.api_key ?? 'missing'), false, 'new key found in logs');
      assert.equal(logs.includes(organization.currentApiKey.key), false, 'old key found in logs');
      assert.equal(logs.includes(organization.managementApiKey.key), false, 'management API key found in logs');
      assert.equal(logs.includes(organization.managementApplicationKey.key), false, 'management application key found in logs');
    });
  });

  it('application key rotation applies scopes', async () => {
    const { integration, organization, current } = await prepareIntegration(emulator, { keyType: 'application', scopes: ['dashboards_read'] });

    const handle = await start(integration);
    const result = await handle.result();
    const history = await historyText(handle);
    const newSecret = (await vault.readSecret(integration.vaultPath))?.data ?? {};

    assert.equal(result.outcome, 'completed');
    assert.equal(newSecret.key_id, result.state.pendingKeyId);
    assert.deepEqual(emulator.applicationKey(result.state.pendingKeyId ?? '')?.scopes, ['dashboards_read']);
    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, newSecret.application_key ?? ''), 200);
    assert.equal(await pairStatus(emulator, organization.managementApiKey.key, current.key), 403);
    assert.equal(emulator.applicationKey(current.id), undefined);
    assert.equal(history.includes(newSecret.application_key ?? 'missing'), false, 'new key found in history');
    assert.equal(capturedRuntimeLogger().capture.text().includes(newSecret.application_key ?? 'missing'), false, 'new key found in logs');
  });

  it('rate-limit storm is absorbed', async () => {
    // Three rotations make about 24 key-management requests, so 2 a second overflows at once.
    const stormEmulator = await startDatadogEmulator({ rateLimitPerSecond: 2 });
    try {
      const prepared = [await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator)];

      const handles = await Promise.all(prepared.map(({ integration }) => start(integration)));
      const results = await Promise.all(handles.map((handle) => handle.result()));

      assert.deepEqual(
        results.map((rotation) => rotation.outcome),
        ['completed', 'completed', 'completed'],
      );
      for (const [index, { integration, organization }] of prepared.entries()) {
        assert.equal((await vault.readSecret(integration.vaultPath))?.data.key_id, results[index].state.pendingKeyId);
        assert.equal(stormEmulator.apiKey(organization.currentApiKey.id), undefined);
      }
      assert.ok(stormEmulator.throttledResponses() >= 1, `the emulator answered ${stormEmulator.throttledResponses()} requests with 429`);
    } finally {
      await stormEmulator.stop();
    }
  });

  it('bad management credential fails in planning', async () => {
    const wrongKey = 'd'.repeat(32);
    const { integration, organization } = await prepareIntegration(emulator, { managementApiKey: wrongKey });

    const failure = await (await start(integration)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    const message = failure.cause?.message ?? '';
    assert.match(message, new RegExp(`^Rotation of ${integration.id} failed in phase planning: Datadog rejected the management credential during listKeys`));
    assert.match(message, /Check api_key and application_key at the integration's management credential path in Vault/);
    assert.equal(message.includes(wrongKey), false);
    assert.notEqual(emulator.apiKey(organization.currentApiKey.id), undefined);
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

// Runs after every test above, because node:test runs a file's tests in order.
describe('datadog logging', () => {
  it('logs no key values', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created Datadog API key'), 'the provider should log its steps');
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a key value was logged');
    }
  });
});

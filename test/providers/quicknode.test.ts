import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { insideAny, quicknodeConfigSchema, quicknodeProvider, type QuicknodeConfig, type QuicknodeCredential } from '../../providers/quicknode';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { startQuicknodeEmulator, type QuicknodeEmulator, type SeededQuicknodeAccount } from '../emulators/quicknode';
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

// Every token and API key the unit tests saw, so the last test can prove none reached a log line.
const seenSecrets = new Set<string>();

type QuicknodeContext = ProviderContext<QuicknodeConfig, QuicknodeCredential>;

function providerContext(emulator: QuicknodeEmulator, account: SeededQuicknodeAccount, overrides: { apiKey?: string; config?: Record<string, unknown> } = {}): QuicknodeContext {
  return {
    config: quicknodeConfigSchema.parse({ base_url: emulator.url, endpoint_id: account.endpointId, rpc_url: account.rpcUrl, ...overrides.config }),
    credential: { api_key: overrides.apiKey ?? account.apiKey },
    logger,
  };
}

/** HTTP status of an eth_blockNumber call to the endpoint URL that contains the token: 200 when the emulator accepts it. */
async function rpcStatus(endpointUrl: string): Promise<number> {
  const response = await fetch(endpointUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'eth_blockNumber', params: [], id: 1 }),
  });
  await response.arrayBuffer();
  return response.status;
}

function tokenUrl(account: SeededQuicknodeAccount, token: string): string {
  return `${account.rpcUrl}/${token}/`;
}

async function rejectionOf(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
  return error;
}

function remember(account: SeededQuicknodeAccount): void {
  seenSecrets.add(account.apiKey);
  seenSecrets.add(account.currentToken.token);
}

/** Log lines written after the given index, parsed. */
function logEntriesSince(index: number): Array<Record<string, unknown>> {
  return logLines.slice(index).map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('quicknode provider against its emulator', () => {
  let emulator: QuicknodeEmulator;
  let account: SeededQuicknodeAccount;
  let context: QuicknodeContext;

  before(async () => {
    emulator = await startQuicknodeEmulator();
    account = emulator.seedAccount();
    remember(account);
    context = providerContext(emulator, account);
  });

  after(async () => {
    await emulator.stop();
  });

  it('createKey adds a token listKeys reports', async () => {
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-listed1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    const keys = await quicknodeProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(listed?.status, 'active');
    // QuickNode tokens have no name or note, so the label cannot be stored.
    assert.equal(listed?.label, undefined);
    assert.ok(keys.some((key) => key.keyId === account.currentToken.id));
    assert.deepEqual(emulator.tokenIds(account.endpointId).slice(-1), [created.keyId]);
    assert.equal(created.secret.token_id, created.keyId);
    assert.equal(created.secret.endpoint_url, tokenUrl(account, created.secret.token));
  });

  it('endpoint_url includes rpc_path after the token', async () => {
    const created = await quicknodeProvider.createKey(providerContext(emulator, account, { config: { rpc_path: '/ext/bc/C/rpc/' } }), {
      label: 'rotor-pathed1',
      restrictions: {},
    });
    seenSecrets.add(created.secret.token);

    assert.equal(created.secret.endpoint_url, `${account.rpcUrl}/${created.secret.token}/ext/bc/C/rpc`);
  });

  it('verifyKey accepts the new token', async () => {
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-verified1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    await quicknodeProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await rpcStatus(created.secret.endpoint_url), 200);
  });

  it('verifyKey rejects a made-up token as authentication', async () => {
    const keyId = '00000000-0000-4000-8000-000000000000';
    const token = 'f'.repeat(40);

    const error = await rejectionOf(quicknodeProvider.verifyKey(context, keyId, { token_id: keyId, token, endpoint_url: tokenUrl(account, token) }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'HTTP 401');
    assert.match(error.message, new RegExp(`did not accept the new token ${keyId} \\(HTTP 401\\)`));
    assert.equal(error.message.includes(token), false);
  });

  it('verifyKey rejects a secret of another token id', async () => {
    const { currentToken } = account;

    const error = await rejectionOf(
      quicknodeProvider.verifyKey(context, 'another-token-id', { token_id: currentToken.id, token: currentToken.token, endpoint_url: tokenUrl(account, currentToken.token) }),
    );

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`contains QuickNode token ${currentToken.id}, not another-token-id`));
  });

  it('verifyKey rejects a value listed under another id', async () => {
    const other = emulator.seedToken(account.endpointId);
    seenSecrets.add(other.token);
    const { currentToken } = account;

    const error = await rejectionOf(quicknodeProvider.verifyKey(context, other.id, { token_id: other.id, token: currentToken.token, endpoint_url: tokenUrl(account, currentToken.token) }));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'TokenMismatch');
    assert.equal(error.message.includes(currentToken.token), false);
  });

  it('unknown verify_method maps to invalid-config', async () => {
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-method1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    const error = await rejectionOf(quicknodeProvider.verifyKey(providerContext(emulator, account, { config: { verify_method: 'eth_noSuchMethod' } }), created.keyId, created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'JSON-RPC -32601');
    assert.match(error.message, /does not offer eth_noSuchMethod/);
  });

  it('verify_method getSlot verifies a token', async () => {
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-slot1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    await quicknodeProvider.verifyKey(providerContext(emulator, account, { config: { verify_method: 'getSlot' } }), created.keyId, created.secret);
  });

  it('JSON-RPC error 429 maps to rate-limited', async () => {
    const { currentToken } = account;
    emulator.injectResponse({
      method: 'POST',
      path: new URL(account.rpcUrl).pathname,
      status: 200,
      body: { jsonrpc: '2.0', id: 1, error: { code: 429, message: 'The requests per second (RPS) of your requests are higher than your plan allows.' } },
    });

    const error = await rejectionOf(
      quicknodeProvider.verifyKey(context, currentToken.id, { token_id: currentToken.id, token: currentToken.token, endpoint_url: tokenUrl(account, currentToken.token) }),
    );

    assert.equal(error.kind, 'rate-limited');
    assert.equal(error.details.vendorCode, 'JSON-RPC 429');
    assert.ok((error.details.retryAfterMs ?? 0) >= 1000, `retryAfterMs is ${error.details.retryAfterMs}`);
    assert.match(error.message, /^QuickNode rate-limited the JSON-RPC call \(429 The requests per second/);
  });

  it('revokeKey twice succeeds', async () => {
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-revoked1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    await quicknodeProvider.revokeKey(context, created.keyId);
    await quicknodeProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.tokenIds(account.endpointId).includes(created.keyId), false);
    assert.equal((await quicknodeProvider.listKeys(context)).some((key) => key.keyId === created.keyId), false);
  });

  it('revoked token is rejected by the emulator', async () => {
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-revoked2', restrictions: {} });
    seenSecrets.add(created.secret.token);
    assert.equal(await rpcStatus(created.secret.endpoint_url), 200);

    await quicknodeProvider.revokeKey(context, created.keyId);

    assert.equal(await rpcStatus(created.secret.endpoint_url), 401);
    const error = await rejectionOf(quicknodeProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
  });

  it('keyIdFromSecret returns token_id', () => {
    assert.equal(quicknodeProvider.keyIdFromSecret({ token_id: 'abc', token: 'secret', endpoint_url: 'x' }), 'abc');
    assert.equal(quicknodeProvider.keyIdFromSecret({ token: 'secret' }), undefined);
  });
});

describe('quicknode endpoint security settings', () => {
  let emulator: QuicknodeEmulator;

  before(async () => {
    emulator = await startQuicknodeEmulator();
  });

  after(async () => {
    await emulator.stop();
  });

  function seeded(): { account: SeededQuicknodeAccount; context: QuicknodeContext } {
    const account = emulator.seedAccount();
    remember(account);
    return { account, context: providerContext(emulator, account) };
  }

  it('ip allowlist excluding the worker fails verification', async () => {
    const { account, context } = seeded();
    emulator.setIpAllowlist(account.endpointId, ['203.0.113.0/24']);

    const created = await quicknodeProvider.createKey(context, { label: 'rotor-elsewhere1', restrictions: { ipAllowlist: ['203.0.113.0/24'] } });
    seenSecrets.add(created.secret.token);
    const error = await rejectionOf(quicknodeProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(await rpcStatus(created.secret.endpoint_url), 401);
    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /IP allowlist excludes the caller/);
  });

  it('ip allowlist including the worker verifies', async () => {
    const { account, context } = seeded();
    emulator.setIpAllowlist(account.endpointId, ['127.0.0.1', '10.0.0.0/8']);
    const firstLine = logLines.length;

    const created = await quicknodeProvider.createKey(context, { label: 'rotor-allowed1', restrictions: { ipAllowlist: ['127.0.0.0/8', '10.0.0.0/8'] } });
    seenSecrets.add(created.secret.token);
    await quicknodeProvider.verifyKey(context, created.keyId, created.secret);

    const entries = logEntriesSince(firstLine);
    assert.ok(entries.some((entry) => entry.msg === "QuickNode endpoint's IP allowlist keeps every token within restrictions.ip_allowlist"));
    assert.equal(
      entries.some((entry) => entry.level === 40 || entry.level === 'warn'),
      false,
    );
  });

  it('wider endpoint allowlist logs a warning', async () => {
    const { account, context } = seeded();
    emulator.setIpAllowlist(account.endpointId, ['127.0.0.1', '198.51.100.0/24']);
    const firstLine = logLines.length;

    const created = await quicknodeProvider.createKey(context, { label: 'rotor-wider1', restrictions: { ipAllowlist: ['127.0.0.1/32'] } });
    seenSecrets.add(created.secret.token);

    const warning = logEntriesSince(firstLine).find((entry) => typeof entry.msg === 'string' && entry.msg.includes('admits addresses outside restrictions.ip_allowlist'));
    assert.deepEqual(warning?.wider, ['198.51.100.0/24']);
    assert.deepEqual(emulator.tokenIds(account.endpointId).slice(-1), [created.keyId]);
  });

  it('disabled endpoint allowlist logs a warning', async () => {
    const { context } = seeded();
    const firstLine = logLines.length;

    const created = await quicknodeProvider.createKey(context, { label: 'rotor-open1', restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: ['read'] } });
    seenSecrets.add(created.secret.token);

    const messages = logEntriesSince(firstLine).map((entry) => String(entry.msg));
    assert.ok(messages.some((message) => message.startsWith('QuickNode endpoint has no IP allowlist enabled')));
    assert.ok(messages.includes('QuickNode tokens have no scopes; restrictions.scopes is not applied'));
  });

  it('disabled token authentication rejects createKey', async () => {
    const { account, context } = seeded();
    emulator.setTokenAuthentication(account.endpointId, false);

    const error = await rejectionOf(quicknodeProvider.createKey(context, { label: 'rotor-public1', restrictions: {} }));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'TokenAuthenticationDisabled');
    assert.match(error.message, /Token authentication is disabled on QuickNode endpoint/);
    assert.deepEqual(emulator.tokenIds(account.endpointId), [account.currentToken.id]);
  });

  it('disabled token authentication fails verifyKey', async () => {
    const { account, context } = seeded();
    const created = await quicknodeProvider.createKey(context, { label: 'rotor-public2', restrictions: {} });
    seenSecrets.add(created.secret.token);
    emulator.setTokenAuthentication(account.endpointId, false);

    const error = await rejectionOf(quicknodeProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'TokenAuthenticationDisabled');
  });

  it('paused endpoint maps to permission', async () => {
    const { account, context } = seeded();
    emulator.setPaused(account.endpointId, true);
    const { currentToken } = account;

    const error = await rejectionOf(quicknodeProvider.verifyKey(context, currentToken.id, { token_id: currentToken.id, token: currentToken.token, endpoint_url: tokenUrl(account, currentToken.token) }));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /returned HTTP 403: the endpoint is disabled/);
  });

  it('revokeKey rejects the only token', async () => {
    const { account, context } = seeded();

    const error = await rejectionOf(quicknodeProvider.revokeKey(context, account.currentToken.id));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /is the only authentication token of QuickNode endpoint/);
    assert.equal(await rpcStatus(tokenUrl(account, account.currentToken.token)), 200);
  });

  it('insideAny compares addresses and blocks', () => {
    assert.equal(insideAny('10.1.2.3', ['10.0.0.0/8']), true);
    assert.equal(insideAny('10.1.0.0/16', ['10.0.0.0/8']), true);
    assert.equal(insideAny('10.0.0.0/7', ['10.0.0.0/8']), false);
    assert.equal(insideAny('2001:db8::1', ['10.0.0.0/8', '2001:db8::/32']), true);
    assert.equal(insideAny('not-an-address', ['0.0.0.0/0']), false);
  });
});

describe('quicknode admin api failures', () => {
  it('unknown api key maps to authentication', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);
      const wrongKey = `QN_${'0'.repeat(32)}`;
      seenSecrets.add(wrongKey);

      const error = await rejectionOf(quicknodeProvider.listKeys(providerContext(emulator, account, { apiKey: wrongKey })));

      assert.equal(error.kind, 'authentication');
      assert.match(error.message, new RegExp(`^QuickNode rejected the Admin API key during listKeys \\(GET /endpoints/${account.endpointId}/security\\): HTTP 401`));
      assert.match(error.message, /Check api_key at the integration's management credential path in Vault/);
      assert.equal(error.message.includes(wrongKey), false);
      assert.equal(JSON.stringify(error).includes(wrongKey), false);
      assert.equal(JSON.stringify(error.details).includes(wrongKey), false);
    } finally {
      await emulator.stop();
    }
  });

  it('unknown api key fails verifyKey as invalid-config', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);
      const { currentToken } = account;
      const context = providerContext(emulator, account, { apiKey: `QN_${'1'.repeat(32)}` });

      const error = await rejectionOf(
        quicknodeProvider.verifyKey(context, currentToken.id, { token_id: currentToken.id, token: currentToken.token, endpoint_url: tokenUrl(account, currentToken.token) }),
      );

      assert.equal(error.kind, 'invalid-config');
      assert.match(error.message, /^QuickNode rejected the Admin API key during verifyKey/);
    } finally {
      await emulator.stop();
    }
  });

  it('unknown endpoint id maps to not-found', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);

      const error = await rejectionOf(quicknodeProvider.listKeys(providerContext(emulator, account, { config: { endpoint_id: 'no-such-endpoint' } })));

      assert.equal(error.kind, 'not-found');
      assert.match(error.message, /QuickNode found no endpoint no-such-endpoint for listKeys/);
      assert.match(error.message, /Check config\.endpoint_id/);
    } finally {
      await emulator.stop();
    }
  });

  it('token past the limit maps to limit-reached', async () => {
    const emulator = await startQuicknodeEmulator({ tokenLimit: 3 });
    try {
      const account = emulator.seedAccount();
      remember(account);
      emulator.seedToken(account.endpointId);
      emulator.seedToken(account.endpointId);
      const context = providerContext(emulator, account);

      const error = await rejectionOf(quicknodeProvider.createKey(context, { label: 'rotor-onetoomany', restrictions: {} }));

      assert.equal(error.kind, 'limit-reached');
      assert.match(error.message, /cannot take another token: HTTP 400 Maximum number of tokens \(3\) reached/);
      assert.equal(emulator.tokenIds(account.endpointId).length, 3);
    } finally {
      await emulator.stop();
    }
  });

  it('HTTP 429 maps to rate-limited', async () => {
    const emulator = await startQuicknodeEmulator({ rateLimitPerSecond: 1, rateLimitBurst: 1 });
    try {
      const account = emulator.seedAccount();
      remember(account);
      const context = providerContext(emulator, account);
      await quicknodeProvider.listKeys(context);

      const error = await rejectionOf(quicknodeProvider.listKeys(context));

      assert.equal(error.kind, 'rate-limited');
      // No Retry-After: 1 s by default, and the provider adds up to 1 s so throttled rotations spread out.
      assert.ok((error.details.retryAfterMs ?? 0) >= 1000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 2000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(error.details.vendorCode, 'HTTP 429');
      assert.match(error.message, /^QuickNode rate-limited GET \/endpoints\/[^ ]+\/security \(HTTP 429\); retrying in \d\.\d s\.$/);
      assert.equal(emulator.throttledResponses(), 1);
    } finally {
      await emulator.stop();
    }
  });

  it('Retry-After sets the rate-limit delay', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);
      emulator.injectResponse({
        method: 'GET',
        path: `/endpoints/${account.endpointId}/security`,
        status: 429,
        body: { data: null, error: 'Too many requests' },
        headers: { 'Retry-After': '7' },
      });

      const error = await rejectionOf(quicknodeProvider.listKeys(providerContext(emulator, account)));

      assert.equal(error.kind, 'rate-limited');
      assert.ok((error.details.retryAfterMs ?? 0) >= 7000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 8000, `retryAfterMs is ${error.details.retryAfterMs}`);
    } finally {
      await emulator.stop();
    }
  });

  it('listKeys response without token id is unexpected', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);
      emulator.injectResponse({
        method: 'GET',
        path: `/endpoints/${account.endpointId}/security`,
        status: 200,
        body: { data: { options: { tokens: true, ips: false }, tokens: [{ token: 'a'.repeat(40) }], ips: [] }, error: null },
      });

      const error = await rejectionOf(quicknodeProvider.listKeys(providerContext(emulator, account)));

      assert.equal(error.kind, 'transient');
      assert.equal(error.details.vendorCode, 'UnexpectedResponse');
      assert.equal(error.message, `QuickNode returned an unexpected response to listKeys (GET /endpoints/${account.endpointId}/security): missing data.tokens[0].id`);
    } finally {
      await emulator.stop();
    }
  });

  it('createKey response with a bad token names only the field', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);
      emulator.injectResponse({
        method: 'POST',
        path: `/endpoints/${account.endpointId}/security/tokens`,
        status: 200,
        body: { data: { id: 'new-token', token: 4242424242 }, error: null },
      });

      const error = await rejectionOf(quicknodeProvider.createKey(providerContext(emulator, account), { label: 'rotor-malformed1', restrictions: {} }));

      assert.equal(error.kind, 'transient');
      assert.match(error.message, /^QuickNode returned an unexpected response to createKey \(POST \/endpoints\/[^ ]+\/security\/tokens\): data\.token: /);
      assert.equal(error.message.includes('4242424242'), false);
    } finally {
      await emulator.stop();
    }
  });

  it('error in a 200 envelope maps to transient', async () => {
    const emulator = await startQuicknodeEmulator();
    try {
      const account = emulator.seedAccount();
      remember(account);
      emulator.injectResponse({
        method: 'GET',
        path: `/endpoints/${account.endpointId}/security`,
        status: 200,
        body: { data: null, error: `upstream failure for ${account.apiKey}` },
      });

      const error = await rejectionOf(quicknodeProvider.listKeys(providerContext(emulator, account)));

      assert.equal(error.kind, 'transient');
      assert.match(error.message, /QuickNode reported an error for GET .*: upstream failure for \[redacted\]\. Rotor retries it\./);
      assert.equal(error.message.includes(account.apiKey), false);
    } finally {
      await emulator.stop();
    }
  });
});

describe('quicknode config and registry', () => {
  const required = { endpoint_id: 'abc-123', rpc_url: 'https://example-name.quiknode.pro' };

  it('config defaults base_url and verify_method', () => {
    const config = quicknodeConfigSchema.parse(required);

    assert.equal(config.base_url, 'https://api.quicknode.com/v0');
    assert.equal(config.verify_method, 'eth_blockNumber');
    assert.equal(config.rpc_path, '');
  });

  it('config accepts a numeric endpoint id', () => {
    assert.equal(quicknodeConfigSchema.parse({ ...required, endpoint_id: 12345 }).endpoint_id, '12345');
  });

  it('config rejects rpc_url with a query string', () => {
    const result = quicknodeConfigSchema.safeParse({ ...required, rpc_url: 'https://example-name.quiknode.pro/?token=abc' });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['rpc_url']);
  });

  it('config rejects unknown fields', () => {
    const result = quicknodeConfigSchema.safeParse({ ...required, token: 'abc' });

    assert.equal(result.success, false);
    assert.equal(result.error?.issues[0].code, 'unrecognized_keys');
  });

  it('capabilities report endpoint-wide restrictions', () => {
    assert.equal(quicknodeProvider.capabilities.ipAllowlist, false);
    assert.equal(quicknodeProvider.capabilities.scopes, false);
    assert.equal(quicknodeProvider.capabilities.expiry, false);
    assert.equal(quicknodeProvider.capabilities.maxKeysPerPrincipal, undefined);
  });

  it('registry returns quicknode by name', () => {
    assert.equal(getProvider('quicknode'), quicknodeProvider);
  });
});

describe('quicknode rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: QuicknodeEmulator;
  const taskQueue = `rotor-quicknode-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator, not the worker's task queue, is what throttles these rotations.
    worker = await startTestWorker(taskQueue, { rateLimits: { quicknode: 100 } });
    emulator = await startQuicknodeEmulator();
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
    await emulator.stop();
  });

  /** Seeds an endpoint at the emulator and writes the management credential and current token to Vault. */
  async function prepareIntegration(target: QuicknodeEmulator, overrides: { apiKey?: string } = {}) {
    const account = target.seedAccount();
    target.setIpAllowlist(account.endpointId, ['127.0.0.1']);
    const id = `quicknode-${uniqueSuffix()}`;
    const integration: IntegrationSpec = {
      id,
      provider: 'quicknode',
      providerConfig: { base_url: target.url, endpoint_id: account.endpointId, rpc_url: account.rpcUrl },
      managementCredentialPath: `rotor/management/${id}`,
      vaultPath: `apps/${id}/quicknode`,
      owner: 'platform-tests',
      policy: { gracePeriodMs: 1000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
      restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: [] },
    };
    const { currentToken } = account;
    await vault.writeSecret(integration.managementCredentialPath, { api_key: overrides.apiKey ?? account.apiKey });
    await vault.writeSecret(integration.vaultPath, { token_id: currentToken.id, token: currentToken.token, endpoint_url: tokenUrl(account, currentToken.token) });
    return { integration, account };
  }

  const start = (integration: IntegrationSpec) => startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });

  describe('a full rotation', () => {
    let integration: IntegrationSpec;
    let account: SeededQuicknodeAccount;
    let result: RotationResult;
    let history: string;
    let newToken: Record<string, string>;

    before(async () => {
      ({ integration, account } = await prepareIntegration(emulator));
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
      assert.notEqual(newToken.token, account.currentToken.token);
      assert.equal(newToken.endpoint_url, tokenUrl(account, newToken.token ?? ''));
      assert.equal(await rpcStatus(newToken.endpoint_url ?? ''), 200);
    });

    it('deletes the old token at QuickNode', async () => {
      assert.deepEqual(emulator.tokenIds(account.endpointId), [result.state.pendingKeyId]);
      assert.equal(await rpcStatus(tokenUrl(account, account.currentToken.token)), 401);
    });

    it('records the token ids in Vault metadata', async () => {
      const custom = (await vault.readMetadata(integration.vaultPath))?.customMetadata ?? {};

      assert.equal(custom.provider, 'quicknode');
      assert.equal(custom.key_id, result.state.pendingKeyId);
      assert.equal(custom.previous_key_id, account.currentToken.id);
    });

    it('keeps every secret out of the history', () => {
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new token id');
      assert.ok((newToken.token ?? '').length >= 40);
      assert.equal(history.includes(newToken.token ?? 'missing'), false, 'new token found in history');
      assert.equal(history.includes(account.currentToken.token), false, 'old token found in history');
      assert.equal(history.includes(account.apiKey), false, 'Admin API key found in history');
    });

    it('keeps every secret out of the logs', () => {
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.equal(logs.includes(newToken.token ?? 'missing'), false, 'new token found in logs');
      assert.equal(logs.includes(account.currentToken.token), false, 'old token found in logs');
      assert.equal(logs.includes(account.apiKey), false, 'Admin API key found in logs');
    });
  });

  it('rate-limit storm is absorbed', async () => {
    // QuickNode's Free-plan limit: 3 requests per second with bursts of 6. Three plannings and
    // three creates at once need 12, so some get 429. A create makes 3 requests in a row, so a
    // bucket smaller than 3 would never let one through.
    const stormEmulator = await startQuicknodeEmulator({ rateLimitPerSecond: 3, rateLimitBurst: 6 });
    try {
      const prepared = [await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator), await prepareIntegration(stormEmulator)];

      const handles = await Promise.all(prepared.map(({ integration }) => start(integration)));
      const results = await Promise.all(handles.map((handle) => handle.result()));

      assert.deepEqual(
        results.map((rotation) => rotation.outcome),
        ['completed', 'completed', 'completed'],
      );
      for (const [index, { integration, account }] of prepared.entries()) {
        assert.equal((await vault.readSecret(integration.vaultPath))?.data.token_id, results[index].state.pendingKeyId);
        assert.deepEqual(stormEmulator.tokenIds(account.endpointId), [results[index].state.pendingKeyId]);
      }
      assert.ok(stormEmulator.throttledResponses() >= 1, `the emulator returned 429 for ${stormEmulator.throttledResponses()} requests`);
    } finally {
      await stormEmulator.stop();
    }
  });

  it('bad Admin API key fails in planning', async () => {
    const wrongKey = `QN_${'9'.repeat(32)}`;
    const { integration, account } = await prepareIntegration(emulator, { apiKey: wrongKey });

    const failure = await (await start(integration)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    const message = failure.cause?.message ?? '';
    assert.match(message, new RegExp(`^Rotation of ${integration.id} failed in phase planning: QuickNode rejected the Admin API key during listKeys`));
    assert.match(message, /Check api_key at the integration's management credential path in Vault/);
    assert.equal(message.includes(wrongKey), false);
    assert.deepEqual(emulator.tokenIds(account.endpointId), [account.currentToken.id]);
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

// Runs after every test above, because node:test runs a file's tests in order.
describe('quicknode logging', () => {
  it('logs no secrets', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created QuickNode endpoint token'), 'the provider should log its steps');
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a token or API key was logged');
    }
  });
});

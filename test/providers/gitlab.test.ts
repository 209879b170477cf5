import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { expiryDate, gitlabConfigSchema, gitlabProvider, rateLimitDelayMs, type GitLabConfig, type GitLabCredential } from '../../providers/gitlab';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { selfStatus, startGitLabEmulator, type GitLabEmulator, type SeededGitLabAccount } from '../emulators/gitlab';
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

type GitLabContext = ProviderContext<GitLabConfig, GitLabCredential>;

/** Returns the config that points at the seeded account's project, group or user. */
function ownerConfig(account: SeededGitLabAccount): Record<string, unknown> {
  switch (account.tokenType) {
    case 'project':
      return { token_type: 'project', project_id: account.projectPath };
    case 'group':
      return { token_type: 'group', group_id: account.groupId };
    case 'personal':
      return { token_type: 'personal', user_id: account.userId };
  }
}

function providerContext(emulator: GitLabEmulator, account: SeededGitLabAccount, overrides: { token?: string; config?: Record<string, unknown> } = {}): GitLabContext {
  return {
    config: gitlabConfigSchema.parse({ base_url: emulator.url, token_name: 'rotor test', scopes: ['read_api'], ...ownerConfig(account), ...overrides.config }),
    credential: { token: overrides.token ?? account.managementToken.value },
    logger,
  };
}

async function rejectionOf(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
  return error;
}

function remember(account: SeededGitLabAccount): SeededGitLabAccount {
  seenSecrets.add(account.managementToken.value);
  seenSecrets.add(account.currentToken.value);
  return account;
}

function daysAhead(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString();
}

describe('gitlab project tokens against the emulator', () => {
  let emulator: GitLabEmulator;
  let account: SeededGitLabAccount;
  let context: GitLabContext;

  before(async () => {
    emulator = await startGitLabEmulator();
    account = remember(emulator.seedAccount({ tokenType: 'project' }));
    context = providerContext(emulator, account);
  });

  after(async () => {
    await emulator.stop();
  });

  it('createKey labels the token in listKeys', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-labelled1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    const keys = await gitlabProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(listed?.label, 'rotor-labelled1');
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.lastUsedAt, null);
    assert.equal(emulator.token(created.keyId)?.name, 'rotor test (rotor-labelled1)');
    assert.equal(keys.find((key) => key.keyId === account.currentToken.id)?.label, 'app token');
    assert.equal(created.secret.token_id, created.keyId);
    assert.match(created.secret.token, /^glpat-/);
  });

  it('createKey applies scopes, expiry and role', async () => {
    const expiresAt = daysAhead(30);

    const created = await gitlabProvider.createKey(providerContext(emulator, account, { config: { access_level: 'reporter' } }), {
      label: 'rotor-restricted1',
      restrictions: { scopes: ['read_repository', 'read_api'], expiresAt },
    });
    seenSecrets.add(created.secret.token);
    const stored = emulator.token(created.keyId);

    assert.deepEqual(stored?.scopes, ['read_repository', 'read_api']);
    assert.equal(stored?.expires_at, expiresAt.slice(0, 10));
    assert.equal(stored?.access_level, 20);
    assert.equal(created.secret.expires_at, expiresAt.slice(0, 10));
    assert.equal(created.secret.scopes, 'read_repository read_api');
  });

  it('createKey without expiry uses max lifetime', async () => {
    const created = await gitlabProvider.createKey(providerContext(emulator, account, { config: { max_lifetime_days: 200 } }), { label: 'rotor-longest1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    assert.equal(emulator.token(created.keyId)?.expires_at, daysAhead(200).slice(0, 10));
  });

  it('ip allowlist is not applied', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-anywhere1', restrictions: { ipAllowlist: ['203.0.113.0/24'] } });
    seenSecrets.add(created.secret.token);

    await gitlabProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(gitlabProvider.capabilities.ipAllowlist, false);
    assert.ok(logLines.join('').includes('GitLab cannot bind access tokens to IP addresses'), 'the provider should warn that the allowlist is not applied');
  });

  it('expiry past max lifetime maps to invalid-config', async () => {
    const before = emulator.activeTokenIds('project', account.projectId).length;

    const error = await rejectionOf(gitlabProvider.createKey(context, { label: 'rotor-toolong1', restrictions: { expiresAt: daysAhead(400) } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /past the instance's maximum token lifetime of 365 days/);
    assert.equal(emulator.activeTokenIds('project', account.projectId).length, before);
  });

  it('GitLab lifetime rejection maps to invalid-config', async () => {
    const lenient = providerContext(emulator, account, { config: { max_lifetime_days: 400 } });

    const error = await rejectionOf(gitlabProvider.createKey(lenient, { label: 'rotor-toolong2', restrictions: { expiresAt: daysAhead(390) } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /^GitLab rejected POST \/projects\/[^ ]+\/access_tokens as invalid: 400 Bad request - Expires at must be before \d{4}-\d{2}-\d{2}\./);
  });

  it('unknown scope maps to invalid-config', async () => {
    const error = await rejectionOf(gitlabProvider.createKey(context, { label: 'rotor-badscope1', restrictions: { scopes: ['read_user'] } }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /as invalid: scopes does not have a valid value/);
  });

  it('verifyKey accepts the new token', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-verified1', restrictions: { scopes: ['read_api'], expiresAt: daysAhead(10) } });
    seenSecrets.add(created.secret.token);

    await gitlabProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await selfStatus(emulator.url, created.secret.token), 200);
  });

  it('verifyKey rejects a made-up token as authentication', async () => {
    const secret = { token_id: '999999', token: 'glpat-madeUpTokenValue0000', expires_at: '2030-01-01', scopes: 'read_api' };

    const error = await rejectionOf(gitlabProvider.verifyKey(context, '999999', secret));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /^GitLab did not accept the new access token 999999 \(HTTP 401: 401 Unauthorized\)/);
  });

  it('verifyKey rejects a secret of another token id', async () => {
    const secret = { token_id: account.currentToken.id, token: account.currentToken.value, expires_at: '2030-01-01', scopes: 'read_api' };

    const error = await rejectionOf(gitlabProvider.verifyKey(context, '12345', secret));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`contains GitLab access token ${account.currentToken.id}, not 12345`));
  });

  it('verifyKey reports scopes GitLab changed', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-mismatch1', restrictions: { scopes: ['read_api'] } });
    seenSecrets.add(created.secret.token);
    const reported = { ...emulator.token(created.keyId), scopes: ['api'] };
    emulator.injectResponse({ method: 'GET', path: '/personal_access_tokens/self', status: 200, body: reported });

    const error = await rejectionOf(gitlabProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'RestrictionMismatch');
    assert.match(error.message, new RegExp(`GitLab reports scopes api for the new access token ${created.keyId}, but Rotor requested read_api`));
  });

  it('verifyKey reports a different expiry date', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-mismatch2', restrictions: { expiresAt: daysAhead(20) } });
    seenSecrets.add(created.secret.token);
    const reported = { ...emulator.token(created.keyId), expires_at: '2099-12-31' };
    emulator.injectResponse({ method: 'GET', path: '/personal_access_tokens/self', status: 200, body: reported });

    const error = await rejectionOf(gitlabProvider.verifyKey(context, created.keyId, created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`expires_at 2099-12-31 for the new access token ${created.keyId}, but Rotor requested ${created.secret.expires_at}`));
  });

  it('verifyKey fails at once when the management token is rejected', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-mgmtgone1', restrictions: { scopes: ['read_api'] } });
    seenSecrets.add(created.secret.token);
    emulator.injectResponse({ method: 'GET', path: `/projects/${account.projectPath}/access_tokens/${created.keyId}`, status: 401, body: { message: '401 Unauthorized' } });

    const error = await rejectionOf(gitlabProvider.verifyKey(context, created.keyId, created.secret));

    // 'authentication' would be retried as a new token that is not accepted yet.
    assert.equal(error.kind, 'permission');
    assert.match(error.message, /^GitLab rejected the management token during verifyKey/);
  });

  it('expired token fails verification', async () => {
    const expired = emulator.seedToken({ tokenType: 'project', ownerId: account.projectId, name: 'expired', expiresAt: new Date().toISOString().slice(0, 10) });
    seenSecrets.add(expired.value);
    const secret = { token_id: expired.id, token: expired.value, expires_at: new Date().toISOString().slice(0, 10), scopes: 'read_api' };

    const error = await rejectionOf(gitlabProvider.verifyKey(context, expired.id, secret));

    assert.equal(await selfStatus(emulator.url, expired.value), 401);
    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /invalid_token: Token has expired/);
  });

  it('read_api token cannot manage tokens', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-scoped1', restrictions: { scopes: ['read_api'] } });
    seenSecrets.add(created.secret.token);

    const error = await rejectionOf(gitlabProvider.createKey(providerContext(emulator, account, { token: created.secret.token }), { label: 'rotor-scoped2', restrictions: {} }));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /HTTP 403: insufficient_scope: The request requires higher privileges/);
  });

  it('revokeKey twice succeeds', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-revoked1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    await gitlabProvider.revokeKey(context, created.keyId);
    await gitlabProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.token(created.keyId)?.revoked, true);
    assert.equal((await gitlabProvider.listKeys(context)).some((key) => key.keyId === created.keyId), false);
  });

  it('revokeKey accepts 400 for a revoked token', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-revoked3', restrictions: {} });
    seenSecrets.add(created.secret.token);
    await gitlabProvider.revokeKey(context, created.keyId);
    const path = `/projects/${account.projectPath}/access_tokens/${created.keyId}`;
    emulator.injectResponse({ method: 'DELETE', path, status: 400, body: { message: '400 Bad request - Failed to find bot user' } });

    await gitlabProvider.revokeKey(context, created.keyId);

    assert.equal(emulator.token(created.keyId)?.revoked, true);
  });

  it('revokeKey reports 400 for an active token', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-revoked4', restrictions: {} });
    seenSecrets.add(created.secret.token);
    const path = `/projects/${account.projectPath}/access_tokens/${created.keyId}`;
    emulator.injectResponse({ method: 'DELETE', path, status: 400, body: { message: '400 Bad request - Failed to find bot user' } });

    const error = await rejectionOf(gitlabProvider.revokeKey(context, created.keyId));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /^GitLab did not revoke access token \d+ \(DELETE \/projects\/[^ ]+\/access_tokens\/\d+\): 400 Bad request - Failed to find bot user\. Check the token/);
    assert.equal(emulator.token(created.keyId)?.active, true);
  });

  it('revokeKey of an unknown token succeeds', async () => {
    await gitlabProvider.revokeKey(context, '424242');

    assert.equal(emulator.token('424242'), undefined);
  });

  it('revoked token is rejected by the emulator', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-revoked2', restrictions: {} });
    seenSecrets.add(created.secret.token);
    assert.equal(await selfStatus(emulator.url, created.secret.token), 200);

    await gitlabProvider.revokeKey(context, created.keyId);

    assert.equal(await selfStatus(emulator.url, created.secret.token), 401);
    const error = await rejectionOf(gitlabProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /Token was revoked/);
  });

  it('keyUsage returns null before use and a date after', async () => {
    const created = await gitlabProvider.createKey(context, { label: 'rotor-usage1', restrictions: {} });
    seenSecrets.add(created.secret.token);

    const unused = await gitlabProvider.keyUsage?.(context, created.keyId);
    const usedFrom = Date.now();
    await gitlabProvider.verifyKey(context, created.keyId, created.secret);
    const used = await gitlabProvider.keyUsage?.(context, created.keyId);

    assert.equal(unused?.lastUsedAt, null);
    assert.ok(Date.parse(used?.lastUsedAt ?? '') >= usedFrom - 1000, `lastUsedAt is ${used?.lastUsedAt}`);
  });

  it('keyUsage of an unknown token maps to not-found', async () => {
    const error = await rejectionOf(gitlabProvider.keyUsage?.(context, '777777') ?? Promise.resolve());

    assert.equal(error.kind, 'not-found');
    assert.match(error.message, /GitLab found no access token 777777 for keyUsage: 404 Project Access Token Not Found/);
  });

  it('unknown management token maps to authentication', async () => {
    const wrongToken = 'glpat-wrongManagementToken000';
    seenSecrets.add(wrongToken);

    const error = await rejectionOf(gitlabProvider.listKeys(providerContext(emulator, account, { token: wrongToken })));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /^GitLab rejected the management token during listKeys \(GET \/projects\/[^ ]+\/access_tokens\): HTTP 401: 401 Unauthorized\./);
    assert.match(error.message, /needs|Maintainer role/);
    assert.equal(error.message.includes(wrongToken), false);
    assert.equal(JSON.stringify(error).includes(wrongToken), false);
    assert.equal(JSON.stringify(error.details).includes(wrongToken), false);
  });

  it('unknown project maps to invalid-config', async () => {
    const error = await rejectionOf(gitlabProvider.listKeys(providerContext(emulator, account, { config: { project_id: 'nobody/nothing' } })));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /^GitLab found no project nobody\/nothing for GET \/projects\/nobody%2Fnothing\/access_tokens: 404 Project Not Found\./);
  });

  it('listKeys response without token id is unexpected', async () => {
    emulator.injectResponse({
      method: 'GET',
      path: `/projects/${account.projectPath}/access_tokens`,
      status: 200,
      body: [{ name: 'nameless', scopes: ['api'], active: true, revoked: false, created_at: new Date().toISOString() }],
    });

    const error = await rejectionOf(gitlabProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.match(error.message, /^GitLab returned an unexpected response to listKeys \(GET \/projects\/[^ ]+\/access_tokens\): missing \[0\]\.id$/);
  });

  it('createKey response without token names only the field', async () => {
    emulator.injectResponse({ method: 'POST', path: `/projects/${account.projectPath}/access_tokens`, status: 201, body: { id: 5, token: 42, created_at: new Date().toISOString() } });

    const error = await rejectionOf(gitlabProvider.createKey(context, { label: 'rotor-malformed1', restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^GitLab returned an unexpected response to createKey \(POST \/projects\/[^ ]+\/access_tokens\): token: /);
    assert.equal(error.message.includes('42'), false);
  });

  it('keyIdFromSecret returns token_id', () => {
    assert.equal(gitlabProvider.keyIdFromSecret({ token_id: '58', token: 'secret' }), '58');
    assert.equal(gitlabProvider.keyIdFromSecret({ token: 'secret' }), undefined);
  });
});

describe('gitlab group and personal tokens', () => {
  let emulator: GitLabEmulator;

  before(async () => {
    emulator = await startGitLabEmulator();
  });

  after(async () => {
    await emulator.stop();
  });

  it('group token lifecycle', async () => {
    const account = remember(emulator.seedAccount({ tokenType: 'group' }));
    const context = providerContext(emulator, account, { config: { access_level: 'developer' } });

    const created = await gitlabProvider.createKey(context, { label: 'rotor-group1', restrictions: { scopes: ['read_repository'] } });
    seenSecrets.add(created.secret.token);
    await gitlabProvider.verifyKey(context, created.keyId, created.secret);
    const listed = await gitlabProvider.listKeys(context);
    await gitlabProvider.revokeKey(context, account.currentToken.id);

    assert.equal(emulator.token(created.keyId)?.access_level, 30);
    assert.deepEqual(listed.map((key) => key.label).sort(), ['app token', 'rotor-group1']);
    assert.equal(await selfStatus(emulator.url, account.currentToken.value), 401);
  });

  it('group token with another role fails verification', async () => {
    const account = remember(emulator.seedAccount({ tokenType: 'group' }));
    const created = await gitlabProvider.createKey(providerContext(emulator, account, { config: { access_level: 'developer' } }), {
      label: 'rotor-group2',
      restrictions: {},
    });
    seenSecrets.add(created.secret.token);

    const error = await rejectionOf(gitlabProvider.verifyKey(providerContext(emulator, account, { config: { access_level: 'guest' } }), created.keyId, created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /GitLab reports access_level developer for the new access token \d+, but Rotor requested guest/);
  });

  it('owner role beyond the creator maps to permission', async () => {
    const account = remember(emulator.seedAccount({ tokenType: 'project' }));

    const error = await rejectionOf(gitlabProvider.createKey(providerContext(emulator, account, { config: { access_level: 'owner' } }), { label: 'rotor-owner1', restrictions: {} }));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /Access level of the token contains permissions not held by the creating user/);
  });

  it('personal token lifecycle', async () => {
    const account = remember(emulator.seedAccount({ tokenType: 'personal' }));
    const context = providerContext(emulator, account);

    const created = await gitlabProvider.createKey(context, { label: 'rotor-personal1', restrictions: { scopes: ['read_user', 'read_api'] } });
    seenSecrets.add(created.secret.token);
    await gitlabProvider.verifyKey(context, created.keyId, created.secret);
    const listed = await gitlabProvider.listKeys(context);
    await gitlabProvider.revokeKey(context, account.currentToken.id);
    await gitlabProvider.revokeKey(context, account.currentToken.id);

    assert.equal(emulator.token(created.keyId)?.user_id, account.userId);
    assert.deepEqual(listed.map((key) => key.keyId).sort(), [account.currentToken.id, created.keyId].sort());
    assert.equal(await selfStatus(emulator.url, account.currentToken.value), 401);
  });

  it('revokeKey refuses the management token', async () => {
    const account = remember(emulator.seedAccount({ tokenType: 'personal' }));

    const error = await rejectionOf(gitlabProvider.revokeKey(providerContext(emulator, account), account.managementToken.id));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /is the management token of this integration, and Rotor will not revoke it/);
    assert.equal(await selfStatus(emulator.url, account.managementToken.value), 200);
  });

  it('personal tokens need an administrator', async () => {
    const account = remember(emulator.seedAccount({ tokenType: 'project' }));
    const context = providerContext(emulator, account, { config: { token_type: 'personal', user_id: account.userId, project_id: undefined } });

    const error = await rejectionOf(gitlabProvider.createKey(context, { label: 'rotor-personal2', restrictions: {} }));

    assert.equal(error.kind, 'permission');
    assert.match(error.message, /its user is an administrator/);
  });
});

describe('gitlab limits', () => {
  it('token limit maps to limit-reached', async () => {
    const emulator = await startGitLabEmulator({ tokenLimit: 3 });
    try {
      const account = remember(emulator.seedAccount({ tokenType: 'project' }));
      emulator.seedToken({ tokenType: 'project', ownerId: account.projectId, name: 'filler 1' });
      emulator.seedToken({ tokenType: 'project', ownerId: account.projectId, name: 'filler 2' });
      const context = providerContext(emulator, account);

      const error = await rejectionOf(gitlabProvider.createKey(context, { label: 'rotor-onetoomany', restrictions: {} }));

      assert.equal(error.kind, 'limit-reached');
      assert.match(error.message, /^GitLab refused a new access token for project [^:]+: 400 Bad request - Access token limit reached\. Revoke tokens/);
      assert.equal(emulator.activeTokenIds('project', account.projectId).length, 3);
    } finally {
      await emulator.stop();
    }
  });

  it('HTTP 429 maps to rate-limited with Retry-After', async () => {
    const emulator = await startGitLabEmulator({ rateLimitPerSecond: 1 });
    try {
      const account = remember(emulator.seedAccount());
      const context = providerContext(emulator, account);
      await gitlabProvider.listKeys(context);

      const error = await rejectionOf(gitlabProvider.listKeys(context));

      assert.equal(error.kind, 'rate-limited');
      // Retry-After is 1 s; the provider adds up to 2 s so throttled rotations spread out.
      assert.ok((error.details.retryAfterMs ?? 0) >= 1000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) <= 3000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(error.details.vendorCode, 'HTTP 429');
      assert.match(error.message, /^GitLab rate-limited GET \/projects\/[^ ]+\/access_tokens \(HTTP 429\); retrying in \d\.\d s\.$/);
      assert.equal(emulator.throttledResponses(), 1);
    } finally {
      await emulator.stop();
    }
  });
});

describe('gitlab rate-limit delay', () => {
  const now = Date.parse('2026-12-04T12:00:00Z');

  it('prefers Retry-After', () => {
    assert.equal(rateLimitDelayMs(new Headers({ 'Retry-After': '7', 'RateLimit-Reset': String(now / 1000 + 30) }), now), 7_000);
  });

  it('falls back to RateLimit-Reset', () => {
    assert.equal(rateLimitDelayMs(new Headers({ 'RateLimit-Reset': String(now / 1000 + 12) }), now), 12_000);
  });

  it('uses the estimate without headers', () => {
    assert.equal(rateLimitDelayMs(new Headers(), now), 30_000);
  });
});

describe('gitlab config and registry', () => {
  it('config defaults base_url and lifetime', () => {
    const config = gitlabConfigSchema.parse({ token_type: 'project', project_id: 42 });

    assert.equal(config.base_url, 'https://gitlab.com/api/v4');
    assert.equal(config.max_lifetime_days, 365);
  });

  it('config requires the owner of the token type', () => {
    const result = gitlabConfigSchema.safeParse({ token_type: 'group', project_id: 42 });

    assert.equal(result.success, false);
    assert.deepEqual(
      result.error?.issues.map((issue) => issue.path.join('.')).sort(),
      ['group_id', 'project_id'],
    );
  });

  it('config rejects a role for personal tokens', () => {
    const result = gitlabConfigSchema.safeParse({ token_type: 'personal', user_id: 7, access_level: 'developer' });

    assert.equal(result.success, false);
    assert.match(result.error?.issues[0].message ?? '', /only project and group access tokens have a role/);
  });

  it('config rejects unknown fields', () => {
    const result = gitlabConfigSchema.safeParse({ token_type: 'project', project_id: 42, ip_allowlist: ['10.0.0.0/8'] });

    assert.equal(result.success, false);
    assert.equal(result.error?.issues[0].code, 'unrecognized_keys');
  });

  it('expiry date is the UTC day of the instant', () => {
    const now = new Date('2026-03-10T15:00:00Z');

    assert.equal(expiryDate('2026-04-09T23:59:59Z', 365, now), '2026-04-09');
    assert.equal(expiryDate(undefined, 365, now), '2027-03-10');
    assert.equal(expiryDate('2027-03-10T12:00:00Z', 365, now), '2027-03-10');
  });

  it('expiry within a day is rejected', () => {
    const error = (() => {
      try {
        expiryDate('2026-03-10T23:00:00Z', 365, new Date('2026-03-10T15:00:00Z'));
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();

    assert.ok(error instanceof ProviderError);
    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /ends on 2026-03-10, but a GitLab token expires at 00:00 UTC on its date/);
  });

  it('registry returns gitlab by name', () => {
    assert.equal(getProvider('gitlab'), gitlabProvider);
  });
});

describe('gitlab rotations on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: GitLabEmulator;
  const taskQueue = `rotor-gitlab-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator, not the worker's task queue, is what throttles these rotations.
    worker = await startTestWorker(taskQueue, { rateLimits: { gitlab: 100 } });
    emulator = await startGitLabEmulator();
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
    await emulator.stop();
  });

  /** Seeds a project's tokens at the emulator and writes the management credential and current token to Vault. */
  async function prepareIntegration(target: GitLabEmulator, overrides: { managementToken?: string } = {}) {
    const account = remember(target.seedAccount({ tokenType: 'project' }));
    const id = `gitlab-${uniqueSuffix()}`;
    const integration: IntegrationSpec = {
      id,
      provider: 'gitlab',
      providerConfig: { base_url: target.url, token_type: 'project', project_id: account.projectPath, access_level: 'reporter', token_name: id },
      managementCredentialPath: `rotor/management/${id}`,
      vaultPath: `apps/${id}/gitlab`,
      owner: 'platform-tests',
      policy: { gracePeriodMs: 1000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
      restrictions: { ipAllowlist: [], scopes: ['read_api', 'read_repository'], expiresAfterMs: 30 * 86_400_000 },
    };
    await vault.writeSecret(integration.managementCredentialPath, { token: overrides.managementToken ?? account.managementToken.value });
    await vault.writeSecret(integration.vaultPath, { token_id: account.currentToken.id, token: account.currentToken.value });
    return { integration, account };
  }

  const start = (integration: IntegrationSpec) => startRotation(client, integration, { taskQueue, dryRun: false, requestedBy: 'test' });

  describe('a full rotation', () => {
    let integration: IntegrationSpec;
    let account: SeededGitLabAccount;
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
      assert.notEqual(newToken.token, account.currentToken.value);
      assert.equal(await selfStatus(emulator.url, newToken.token ?? ''), 200);
    });

    it('revokes the old token at GitLab', async () => {
      assert.equal(emulator.token(account.currentToken.id)?.revoked, true);
      assert.equal(await selfStatus(emulator.url, account.currentToken.value), 401);
      assert.equal(await selfStatus(emulator.url, account.managementToken.value), 200);
    });

    it('restricts the new token', () => {
      const stored = emulator.token(result.state.pendingKeyId ?? '');

      assert.equal(stored?.name, `${integration.id} (rotor-${result.state.rotationId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)})`);
      assert.deepEqual(stored?.scopes, ['read_api', 'read_repository']);
      assert.equal(stored?.access_level, 20);
      const expiresInDays = (Date.parse(`${stored?.expires_at ?? ''}T00:00:00Z`) - Date.now()) / 86_400_000;
      assert.ok(expiresInDays > 28, `expires_at is ${stored?.expires_at}`);
      assert.ok(expiresInDays <= 30, `expires_at is ${stored?.expires_at}`);
      assert.equal(newToken.expires_at, stored?.expires_at);
      assert.equal(newToken.scopes, 'read_api read_repository');
    });

    it('records the token ids in Vault metadata', async () => {
      const custom = (await vault.readMetadata(integration.vaultPath))?.customMetadata ?? {};

      assert.equal(custom.provider, 'gitlab');
      assert.equal(custom.key_id, result.state.pendingKeyId);
      assert.equal(custom.previous_key_id, account.currentToken.id);
    });

    it('keeps every token value out of the history', () => {
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new token id');
      assert.ok((newToken.token ?? '').length >= 26);
      assert.equal(history.includes(newToken.token ?? 'missing'), false, 'new token found in history');
      assert.equal(history.includes(account.currentToken.value), false, 'old token found in history');
      assert.equal(history.includes(account.managementToken.value), false, 'management token found in history');
    });

    it('keeps every token value out of the logs', () => {
      const logs = capturedRuntimeLogger().capture.text();

      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.equal(logs.includes(newToken.token ?? 'missing'), false, 'new token found in logs');
      assert.equal(logs.includes(account.currentToken.value), false, 'old token found in logs');
      assert.equal(logs.includes(account.managementToken.value), false, 'management token found in logs');
    });
  });

  it('rate-limit storm is absorbed', async () => {
    // Three rotations at once send about 20 requests, so a bucket of 3 refilled at 3 per second throttles some.
    const stormEmulator = await startGitLabEmulator({ rateLimitPerSecond: 3 });
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
        assert.equal(stormEmulator.token(account.currentToken.id)?.revoked, true);
      }
      assert.ok(stormEmulator.throttledResponses() >= 1, `the emulator answered ${stormEmulator.throttledResponses()} requests with 429`);
    } finally {
      await stormEmulator.stop();
    }
  });

  it('bad management token fails in planning', async () => {
    const wrongToken = 'glpat-notTheManagementToken00';
    const { integration, account } = await prepareIntegration(emulator, { managementToken: wrongToken });

    const failure = await (await start(integration)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    const message = failure.cause?.message ?? '';
    assert.match(message, new RegExp(`^Rotation of ${integration.id} failed in phase planning: GitLab rejected the management token during listKeys`));
    assert.match(message, /Check the token at the integration's management credential path in Vault/);
    assert.equal(message.includes(wrongToken), false);
    assert.equal(emulator.token(account.currentToken.id)?.active, true);
    assert.equal((await vault.readSecret(integration.vaultPath))?.version, 1);
  });
});

// Runs after every test above, because node:test runs a file's tests in order.
describe('gitlab logging', () => {
  it('logs no token values', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created GitLab access token'), 'the provider should log its steps');
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a token value was logged');
    }
  });
});

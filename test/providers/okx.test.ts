import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import {
  generateOkxPassphrase,
  okxConfigSchema,
  okxProvider,
  okxSignature,
  okxSignedHeaders,
  rotationLabelFromOkx,
  type OkxConfig,
  type OkxCredential,
} from '../../providers/okx';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import { rotationLabel, type IntegrationSpec, type RotationResult } from '../../workflows/rotation-types';
import { okxKeyRejection, startOkxEmulator, type OkxEmulator, type OkxKeyCredential, type SeededOkxAccount } from '../emulators/okx';
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

function rememberSecrets(...keys: OkxKeyCredential[]): void {
  for (const key of keys) {
    seenSecrets.add(key.secret_key);
    seenSecrets.add(key.passphrase);
  }
}

function contextFor(
  emulator: OkxEmulator,
  account: SeededOkxAccount,
  credential: OkxCredential = account.managementCredential,
  config: Partial<OkxConfig> = {},
): ProviderContext<OkxConfig, OkxCredential> {
  return { config: okxConfigSchema.parse({ base_url: emulator.url, sub_account: account.subAccount, ...config }), credential, logger };
}

/** Returns the fields of a created key's secret in the emulator's credential shape. */
function keyOf(secret: Record<string, string>): OkxKeyCredential {
  return { api_key: secret.api_key, secret_key: secret.secret_key, passphrase: secret.passphrase };
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

describe('okx request signing', () => {
  // OKX's reference (https://www.okx.com/docs-v5/en/#overview-rest-authentication-signature)
  // gives the formula, a timestamp, a request path and a secret key as examples, but no
  // resulting signature. The expected values were computed by hand with OpenSSL 3.0:
  //   printf '%s' "$prehash" | openssl dgst -sha256 -hmac "$secret" -binary | base64
  const exampleSecret = '22582BD0CFF14C41EDBF1AB98506286D';
  const exampleTimestamp = '2020-12-08T09:08:57.715Z';

  it('signs a GET with its query string', () => {
    const signature = okxSignature(exampleSecret, exampleTimestamp, 'GET', '/api/v5/account/balance?ccy=BTC', '');

    assert.equal(signature, 'HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=');
  });

  it('signs a POST with its body', () => {
    const body = '{"subAcct":"bot000001","apiKey":"a1b2c3d4-0000-4000-8000-000000000001"}';

    const signature = okxSignature(exampleSecret, exampleTimestamp, 'post', '/api/v5/users/subaccount/delete-apikey', body);

    assert.equal(signature, '5dPO8vOmFseyUb3NpVp9KDYSZ0UevOr/Q0WZ5CjBePw=');
  });

  it('sends the four OK-ACCESS headers', () => {
    const key = { api_key: 'a1b2c3d4-0000-4000-8000-000000000001', secret_key: exampleSecret, passphrase: 'Pass-phrase1' };

    const headers = okxSignedHeaders(key, 'GET', '/api/v5/account/balance?ccy=BTC', '', new Date(exampleTimestamp));

    assert.equal(headers['OK-ACCESS-KEY'], key.api_key);
    assert.equal(headers['OK-ACCESS-TIMESTAMP'], exampleTimestamp);
    assert.equal(headers['OK-ACCESS-PASSPHRASE'], key.passphrase);
    assert.equal(headers['OK-ACCESS-SIGN'], 'HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=');
  });
});

describe('okx passphrases and labels', () => {
  it('generated passphrases meet OKX rules', () => {
    const passphrases = Array.from({ length: 200 }, () => generateOkxPassphrase());

    for (const passphrase of passphrases) {
      assert.equal(passphrase.length, 32);
      assert.match(passphrase, /[A-Z]/);
      assert.match(passphrase, /[a-z]/);
      assert.match(passphrase, /\d/);
      assert.match(passphrase, /[!@#$%]/);
      assert.match(passphrase, /^[A-Za-z0-9!@#$%]+$/);
    }
    assert.equal(new Set(passphrases).size, passphrases.length);
  });

  it('OKX notes map back to rotation labels', () => {
    const label = newRotationLabel();

    assert.equal(rotationLabelFromOkx(label.replace('-', '')), label);
    assert.equal(rotationLabelFromOkx('rotor0a1b2c3d4e5f60718293a4b5'), 'rotor-0a1b2c3d4e5f60718293a4b5');
    assert.equal(rotationLabelFromOkx('tradingbot'), 'tradingbot');
  });
});

describe('okx config', () => {
  it('defaults base_url and perm', () => {
    const config = okxConfigSchema.parse({ sub_account: 'tradingbot1' });

    assert.equal(config.base_url, 'https://www.okx.com');
    assert.equal(config.perm, 'read_only');
  });

  it('rejects unknown fields and bad values', () => {
    assert.equal(okxConfigSchema.safeParse({ sub_account: 'tradingbot1', user_name: 'x' }).success, false);
    assert.equal(okxConfigSchema.safeParse({ sub_account: 'bot' }).success, false);
    assert.equal(okxConfigSchema.safeParse({ sub_account: 'trading-bot' }).success, false);
    assert.equal(okxConfigSchema.safeParse({ sub_account: 'tradingbot1', perm: 'withdraw' }).success, false);
    assert.equal(okxConfigSchema.safeParse({ sub_account: 'tradingbot1', base_url: 'https://www.okx.com/api/v5' }).success, false);
    assert.equal(okxConfigSchema.safeParse({ sub_account: 'tradingbot1', base_url: 'ftp://www.okx.com' }).success, false);
  });

  it('registry returns the okx provider', () => {
    assert.equal(getProvider('okx'), okxProvider);
  });

  it('keyIdFromSecret returns api_key', () => {
    assert.equal(okxProvider.keyIdFromSecret({ api_key: 'k-1', secret_key: 's', passphrase: 'p' }), 'k-1');
    assert.equal(okxProvider.keyIdFromSecret({ secret_key: 's' }), undefined);
  });
});

describe('okx provider against the emulator', () => {
  let emulator: OkxEmulator;

  before(async () => {
    // Fast enough that these tests never meet the rate limit, which has its own tests below.
    emulator = await startOkxEmulator({ rateLimitPerSecond: 1_000 });
  });

  after(async () => {
    await emulator.stop();
  });

  function seedAccount(options?: Parameters<OkxEmulator['seedAccount']>[0]): SeededOkxAccount {
    const account = emulator.seedAccount(options);
    rememberSecrets(account.managementCredential, account.currentKey);
    return account;
  }

  it('createKey labels the key in listKeys', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const label = newRotationLabel();

    const created = await okxProvider.createKey(context, { label, restrictions: {} });
    rememberSecrets(keyOf(created.secret));
    const keys = await okxProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(keys.length, 2);
    assert.equal(listed?.label, label);
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.createdAt, created.createdAt);
    assert.equal(keys.find((key) => key.keyId === account.currentKey.api_key)?.label, 'seeded');
    assert.equal(emulator.keys(account.subAccount).find((key) => key.apiKey === created.keyId)?.label, label.replace('-', ''));
    assert.deepEqual(Object.keys(created.secret).sort(), ['api_key', 'passphrase', 'secret_key']);
    assert.equal(created.secret.api_key, created.keyId);
  });

  it('verifyKey accepts the new key', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await okxProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['127.0.0.1/32'] } });
    rememberSecrets(keyOf(created.secret));

    await okxProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await okxKeyRejection(emulator.url, keyOf(created.secret)), null);
  });

  it('verifyKey rejects an unknown key as authentication', async () => {
    const account = seedAccount();
    const bogus = { api_key: randomUUID(), secret_key: randomBytes(16).toString('hex').toUpperCase(), passphrase: generateOkxPassphrase() };
    rememberSecrets(bogus);

    const error = await providerErrorOf(okxProvider.verifyKey(contextFor(emulator, account), bogus.api_key, bogus));

    assert.equal(error.kind, 'authentication');
    assert.match(error.message, new RegExp(`OKX does not accept the new API key ${bogus.api_key} of sub-account ${account.subAccount} yet`));
    assert.equal(error.message.includes(bogus.secret_key), false);
    assert.equal(error.message.includes(bogus.passphrase), false);
  });

  it('verifyKey rejects a secret of another key as invalid', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(okxProvider.verifyKey(contextFor(emulator, account), randomUUID(), { ...account.currentKey }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /does not belong to this rotation/);
  });

  it('revokeKey twice succeeds and the key stops working', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await okxProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
    rememberSecrets(keyOf(created.secret));

    await okxProvider.revokeKey(context, created.keyId);
    await okxProvider.revokeKey(context, created.keyId);
    const keys = await okxProvider.listKeys(context);

    assert.deepEqual(
      keys.map((key) => key.keyId),
      [account.currentKey.api_key],
    );
    assert.equal(await okxKeyRejection(emulator.url, keyOf(created.secret)), '50119');
    const verifyError = await providerErrorOf(okxProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(verifyError.kind, 'authentication');
  });

  it('createKey at 50 keys is limit-reached', async () => {
    const account = seedAccount();
    for (let index = 0; index < 49; index++) {
      emulator.seedKey(account.subAccount);
    }

    const error = await providerErrorOf(okxProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'limit-reached');
    assert.equal(error.details.vendorCode, '59501');
    assert.match(error.message, new RegExp(`OKX sub-account ${account.subAccount} already has the maximum of 50 API keys`));
    assert.equal(emulator.keys(account.subAccount).length, 50);
  });

  it('wrong management secret is authentication without secrets', async () => {
    const account = seedAccount();
    const credential = { ...account.managementCredential, secret_key: randomBytes(16).toString('hex').toUpperCase() };
    seenSecrets.add(credential.secret_key);

    const error = await providerErrorOf(okxProvider.listKeys(contextFor(emulator, account, credential)));
    const serialized = JSON.stringify(error);

    assert.equal(error.kind, 'authentication');
    assert.equal(error.retryable, false);
    assert.match(error.message, new RegExp(`OKX rejected the management credential when asked to list the API keys for sub-account ${account.subAccount}`));
    assert.match(error.message, /Check api_key, secret_key and passphrase at the management credential path in Vault/);
    for (const secret of [credential.secret_key, credential.passphrase, account.managementCredential.secret_key]) {
      assert.equal(error.message.includes(secret), false);
      assert.equal(serialized.includes(secret), false);
    }
  });

  it('wrong management passphrase is authentication', async () => {
    const account = seedAccount();
    const credential = { ...account.managementCredential, passphrase: generateOkxPassphrase() };
    seenSecrets.add(credential.passphrase);

    const error = await providerErrorOf(okxProvider.createKey(contextFor(emulator, account, credential), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.message.includes(credential.passphrase), false);
    assert.equal(emulator.keys(account.subAccount).length, 1);
  });

  it('master key without bound IP addresses is permission', async () => {
    const account = seedAccount({ managementIps: [] });
    const context = contextFor(emulator, account);

    const listed = await okxProvider.listKeys(context);
    const error = await providerErrorOf(okxProvider.createKey(context, { label: newRotationLabel(), restrictions: {} }));

    assert.equal(listed.length, 1);
    assert.equal(error.kind, 'permission');
    assert.match(error.message, /Use an API key of the master account with the Trade permission, bound to the Rotor workers' IP addresses/);
  });

  it('read-only master key is permission', async () => {
    const account = seedAccount({ managementPerm: 'read_only' });

    const error = await providerErrorOf(okxProvider.revokeKey(contextFor(emulator, account), account.currentKey.api_key));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, '50120');
    assert.equal(await okxKeyRejection(emulator.url, account.currentKey), null);
  });

  it('unknown sub-account is invalid-config', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(okxProvider.listKeys(contextFor(emulator, account, account.managementCredential, { sub_account: 'nosuchaccount' })));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /OKX has no sub-account nosuchaccount under this master account \(59510: Sub-account does not exist\)/);
  });

  it('unexpected list response names the field', async () => {
    const account = seedAccount();
    emulator.replaceNextResponse('GET', '/api/v5/users/subaccount/apikey', { code: '0', msg: '', data: [{ label: 'x', ts: '1597026383085' }] });

    const error = await providerErrorOf(okxProvider.listKeys(contextFor(emulator, account)));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, 'OKX returned an unexpected response to listKeys: data[0].apiKey is missing');
  });

  it('unexpected create response keeps the secret out', async () => {
    const account = seedAccount();
    const leakedSecret = randomBytes(16).toString('hex');
    emulator.replaceNextResponse('POST', '/api/v5/users/subaccount/apikey', {
      code: '0',
      msg: '',
      data: [{ apiKey: randomUUID(), secretKey: leakedSecret, ts: 'yesterday' }],
    });

    const error = await providerErrorOf(okxProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^OKX returned an unexpected response to createKey: data\[0\]\.ts: /);
    assert.equal(error.message.includes(leakedSecret), false);
    assert.equal(error.message.includes('yesterday'), false);
  });

  it('createKey binds the IP allowlist and permission', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);

    const created = await okxProvider.createKey(context, {
      label: newRotationLabel(),
      restrictions: { ipAllowlist: ['203.0.113.0/24', '198.51.100.7/32'], scopes: ['read_only', 'trade'] },
    });
    rememberSecrets(keyOf(created.secret));
    const stored = emulator.keys(account.subAccount).find((key) => key.apiKey === created.keyId);
    const error = await providerErrorOf(okxProvider.verifyKey(context, created.keyId, created.secret));

    assert.deepEqual(stored?.ips, ['203.0.113.0/24', '198.51.100.7']);
    assert.equal(stored?.perm, 'read_only,trade');
    assert.equal(error.kind, 'authentication');
    assert.match(error.message, /check that the worker's IP address is in restrictions\.ip_allowlist/);
    assert.equal(await okxKeyRejection(emulator.url, keyOf(created.secret)), '50110');
  });

  it('createKey without scopes uses perm', async () => {
    const account = seedAccount();

    const readOnly = await okxProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} });
    const trade = await okxProvider.createKey(contextFor(emulator, account, account.managementCredential, { perm: 'trade' }), {
      label: newRotationLabel(),
      restrictions: { ipAllowlist: ['127.0.0.1/32'] },
    });
    rememberSecrets(keyOf(readOnly.secret), keyOf(trade.secret));
    const stored = emulator.keys(account.subAccount);

    assert.equal(stored.find((key) => key.apiKey === readOnly.keyId)?.perm, 'read_only');
    assert.deepEqual(stored.find((key) => key.apiKey === readOnly.keyId)?.ips, []);
    assert.equal(stored.find((key) => key.apiKey === trade.keyId)?.perm, 'read_only,trade');
  });

  it('createKey rejects invalid restrictions before calling OKX', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const manyAddresses = Array.from({ length: 21 }, (_, index) => `198.51.100.${index + 1}`);

    const tooMany = await providerErrorOf(okxProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: manyAddresses } }));
    const badScope = await providerErrorOf(okxProvider.createKey(context, { label: newRotationLabel(), restrictions: { scopes: ['withdraw'] } }));
    const badAddress = await providerErrorOf(okxProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['not-an-ip'] } }));
    const badLabel = await providerErrorOf(okxProvider.createKey(context, { label: '---', restrictions: {} }));

    assert.equal(tooMany.kind, 'invalid-config');
    assert.match(tooMany.message, /has 21 entries, but OKX binds at most 20/);
    assert.equal(badScope.kind, 'invalid-config');
    assert.match(badScope.message, /restrictions\.scopes contains "withdraw"/);
    assert.equal(badAddress.kind, 'invalid-config');
    assert.equal(badLabel.kind, 'invalid-config');
    assert.equal(emulator.keys(account.subAccount).length, 1);
  });

  it('provider logs contain no secret', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created OKX sub-account API key'));
    assert.ok(seenSecrets.size > 10);
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a secret value reached a provider log line');
    }
  });
});

describe('okx rate limits', () => {
  it('HTTP 429 is rate-limited with a retry delay', async () => {
    const emulator = await startOkxEmulator({ rateLimitPerSecond: 1 });
    try {
      const account = emulator.seedAccount();
      rememberSecrets(account.managementCredential, account.currentKey);
      const context = contextFor(emulator, account);

      const first = await okxProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
      const error = await providerErrorOf(okxProvider.createKey(context, { label: newRotationLabel(), restrictions: {} }));

      assert.ok(first.keyId);
      assert.equal(error.kind, 'rate-limited');
      assert.equal(error.details.vendorCode, '50011');
      assert.ok((error.details.retryAfterMs ?? 0) > 0, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.match(error.message, /^OKX rate-limited the request to create an API key for sub-account \w+ \(50011: [^)]+\); retrying in \d+ s\.$/);
      assert.equal(emulator.rateLimitedCount, 1);
    } finally {
      await emulator.stop();
    }
  });

  it('code 50011 in a 200 response is rate-limited', async () => {
    const emulator = await startOkxEmulator({ rateLimitPerSecond: 1, rateLimitResponse: 'in-body' });
    try {
      const account = emulator.seedAccount();
      rememberSecrets(account.managementCredential, account.currentKey);
      const context = contextFor(emulator, account);

      await okxProvider.revokeKey(context, account.currentKey.api_key);
      const error = await providerErrorOf(okxProvider.createKey(context, { label: newRotationLabel(), restrictions: {} }));

      assert.equal(error.kind, 'rate-limited');
      assert.equal(error.details.vendorCode, '50011');
      // Between half a second and one second, at random, so throttled rotations spread out.
      assert.ok((error.details.retryAfterMs ?? 0) >= 500, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.ok((error.details.retryAfterMs ?? 0) < 1_000, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.equal(emulator.rateLimitedCount, 1);
    } finally {
      await emulator.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rotations through the real workflow on real Temporal and Vault
// ---------------------------------------------------------------------------------------------

interface OkxTestIntegration {
  integration: IntegrationSpec;
  account: SeededOkxAccount;
}

async function prepareOkxIntegration(vault: VaultStore, emulator: OkxEmulator): Promise<OkxTestIntegration> {
  const account = emulator.seedAccount();
  const id = `okx-${uniqueSuffix()}`;
  const managementCredentialPath = `rotor/management/${id}`;
  const vaultPath = `apps/${id}/okx`;
  await vault.writeSecret(managementCredentialPath, { ...account.managementCredential });
  await vault.writeSecret(vaultPath, { ...account.currentKey });

  const integration: IntegrationSpec = {
    id,
    provider: 'okx',
    providerConfig: { base_url: emulator.url, sub_account: account.subAccount },
    managementCredentialPath,
    vaultPath,
    owner: 'platform-tests',
    policy: { gracePeriodMs: 1_000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
    restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: ['read_only'] },
  };
  return { integration, account };
}

describe('okx rotation on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: OkxEmulator;
  const taskQueue = `rotor-okx-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator keeps OKX's own limit of 1 key-management request per second.
    emulator = await startOkxEmulator();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  describe('a full rotation', () => {
    let okx: OkxTestIntegration;
    let result: RotationResult;
    let history: string;
    let newKey: OkxKeyCredential;

    before(async () => {
      okx = await prepareOkxIntegration(vault, emulator);
      const handle = await startRotation(client, okx.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
      result = await handle.result();
      history = await historyText(handle);
      const latest = await vault.readSecret(okx.integration.vaultPath);
      newKey = { api_key: latest?.data.api_key ?? '', secret_key: latest?.data.secret_key ?? '', passphrase: latest?.data.passphrase ?? '' };
    });

    it('promotes the new key for consumers', async () => {
      const latest = await vault.readSecret(okx.integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(newKey.api_key, result.state.pendingKeyId);
      assert.notEqual(newKey.secret_key, okx.account.currentKey.secret_key);
      assert.ok(newKey.passphrase.length === 32, 'the new passphrase is Rotor-generated');
      assert.equal(await okxKeyRejection(emulator.url, newKey), null);
    });

    it('deletes the old key at OKX', async () => {
      const keys = emulator.keys(okx.account.subAccount);

      assert.deepEqual(
        keys.map((key) => key.apiKey),
        [result.state.pendingKeyId],
      );
      assert.equal(await okxKeyRejection(emulator.url, okx.account.currentKey), '50119');
    });

    it('creates the key with the rotation label and restrictions', () => {
      const [stored] = emulator.keys(okx.account.subAccount);

      assert.equal(stored.label, rotationLabel(result.state.rotationId).replace('-', ''));
      assert.deepEqual(stored.ips, ['127.0.0.1']);
      assert.equal(stored.perm, 'read_only');
    });

    it('keeps every secret out of the history and logs', () => {
      const logs = capturedRuntimeLogger().capture.text();
      const secrets = {
        'new secret key': newKey.secret_key,
        'new passphrase': newKey.passphrase,
        'old secret key': okx.account.currentKey.secret_key,
        'old passphrase': okx.account.currentKey.passphrase,
        'management secret key': okx.account.managementCredential.secret_key,
        'management passphrase': okx.account.managementCredential.passphrase,
      };

      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new key id');
      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      for (const [name, secret] of Object.entries(secrets)) {
        assert.ok(secret.length >= 8, `${name} was read`);
        assert.equal(history.includes(secret), false, `${name} found in history`);
        assert.equal(logs.includes(secret), false, `${name} found in logs`);
      }
    });
  });

  it('bad management credential stops in planning', async () => {
    const okx = await prepareOkxIntegration(vault, emulator);
    const wrongSecret = randomBytes(16).toString('hex').toUpperCase();
    await vault.writeSecret(okx.integration.managementCredentialPath, { ...okx.account.managementCredential, secret_key: wrongSecret });

    const handle = await startRotation(client, okx.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
    const failure = await handle.result().catch((error: unknown) => error);
    const history = await historyText(handle);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(
        `^Rotation of ${okx.integration.id} failed in phase planning: OKX rejected the management credential when asked to list the API keys ` +
          `for sub-account ${okx.account.subAccount} \\(50113(: [^)]+)?\\)\\. Check api_key, secret_key and passphrase`,
      ),
    );
    assert.equal(history.includes(wrongSecret), false);
    assert.deepEqual(
      emulator.keys(okx.account.subAccount).map((key) => key.apiKey),
      [okx.account.currentKey.api_key],
    );
    assert.equal((await vault.readSecret(okx.integration.vaultPath))?.version, 1);
  });
});

describe('okx rate-limit storm', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: OkxEmulator;
  const taskQueue = `rotor-okx-storm-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    emulator = await startOkxEmulator({ rateLimitPerSecond: 1 });
    // The worker's queue lets 100 activities a second through, so the emulator does the throttling.
    worker = await startTestWorker(taskQueue, { rateLimits: { okx: 100 } });
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  it('three rotations at once all complete', async () => {
    const integrations = await Promise.all([1, 2, 3].map(() => prepareOkxIntegration(vault, emulator)));

    const handles = await Promise.all(
      integrations.map((okx) => startRotation(client, okx.integration, { taskQueue, dryRun: false, requestedBy: 'test' })),
    );
    const results = await Promise.all(handles.map((handle) => handle.result()));

    assert.deepEqual(
      results.map((result) => result.outcome),
      ['completed', 'completed', 'completed'],
    );
    assert.ok(emulator.rateLimitedCount >= 1, `the emulator rejected ${emulator.rateLimitedCount} requests with 50011`);
    for (const [index, okx] of integrations.entries()) {
      assert.deepEqual(
        emulator.keys(okx.account.subAccount).map((key) => key.apiKey),
        [results[index].state.pendingKeyId],
      );
      assert.equal((await vault.readSecret(okx.integration.vaultPath))?.data.api_key, results[index].state.pendingKeyId);
    }
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import {
  derivePassphrase,
  kucoinConfigSchema,
  kucoinExpiry,
  kucoinProvider,
  kucoinRateLimitDelayMs,
  kucoinSignature,
  kucoinSignedHeaders,
  remarkForLabel,
  rotationLabelFromRemark,
  type KucoinConfig,
  type KucoinCredential,
} from '../../providers/kucoin';
import { getProvider } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import type { VaultStore } from '../../shared/vault';
import { rotationLabel, type IntegrationSpec, type RotationResult } from '../../workflows/rotation-types';
import { kucoinKeyRejection, startKucoinEmulator, type KucoinEmulator, type KucoinKeyCredential, type SeededKucoinAccount } from '../emulators/kucoin';
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

function rememberSecrets(...keys: KucoinKeyCredential[]): void {
  for (const key of keys) {
    seenSecrets.add(key.api_secret);
    seenSecrets.add(key.passphrase);
  }
}

/** Returns the management credential of a seeded account with the hand-made key's passphrase, so Rotor can delete that key. */
function managementCredentialOf(account: SeededKucoinAccount): KucoinCredential {
  return { ...account.managementCredential, initial_key_passphrase: account.currentKey.passphrase };
}

function contextFor(
  emulator: KucoinEmulator,
  account: SeededKucoinAccount,
  credential: KucoinCredential = managementCredentialOf(account),
  config: Partial<KucoinConfig> = {},
): ProviderContext<KucoinConfig, KucoinCredential> {
  return { config: kucoinConfigSchema.parse({ base_url: emulator.url, sub_name: account.subName, ...config }), credential, logger };
}

function keyOf(secret: Record<string, string>): KucoinKeyCredential {
  return { api_key: secret.api_key, api_secret: secret.api_secret, passphrase: secret.passphrase };
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

describe('kucoin request signing', () => {
  // KuCoin's authentication page (https://www.kucoin.com/docs-new/authentication) gives the
  // formulas and code samples but no worked signature. The expected values were computed by
  // hand with OpenSSL 3.0:
  //   printf '%s' "$prehash" | openssl dgst -sha256 -hmac "$secret" -binary | base64
  const exampleSecret = 'f03a5284-5c39-4aaa-9b20-dea10bdcf8e3';
  const exampleTimestamp = '1547015186532';

  it('signs a GET with its query string', () => {
    const signature = kucoinSignature(exampleSecret, exampleTimestamp, 'GET', '/api/v1/sub/api-key?subName=bot0001', '');

    assert.equal(signature, 'os/gGXsHwx9mC1ppat48xEyWmFdiPmwNhg8a+bMlloY=');
  });

  it('signs a POST with its body', () => {
    const signature = kucoinSignature(exampleSecret, exampleTimestamp, 'post', '/api/v1/sub/api-key', '{"subName":"bot0001","remark":"rotor01"}');

    assert.equal(signature, 'Qf9Z1TLrJghIY8TudWMlmf4hzfeYjIA1o4SfaM/MpFE=');
  });

  it('signs a DELETE query before URL encoding', () => {
    // The authentication page's own example of an endpoint signed as written, not encoded.
    const signature = kucoinSignature(exampleSecret, exampleTimestamp, 'DELETE', '/api/v1/sub/api-key?apiKey=67*b3&subName=test&passphrase=abc!@#11', '');

    assert.equal(signature, 'hfijDzPRpgc1/pEXCP9KXU7mZaY9FuaZW33b61AMPuY=');
  });

  it('sends the five KC-API headers', () => {
    const key = { api_key: '5c2db93503aa674c74a31742', api_secret: exampleSecret, passphrase: 'Pass-phrase1' };

    const headers = kucoinSignedHeaders(key, 'GET', '/api/v1/sub/api-key?subName=bot0001', '', new Date(Number(exampleTimestamp)));

    assert.equal(headers['KC-API-KEY'], key.api_key);
    assert.equal(headers['KC-API-TIMESTAMP'], exampleTimestamp);
    assert.equal(headers['KC-API-SIGN'], 'os/gGXsHwx9mC1ppat48xEyWmFdiPmwNhg8a+bMlloY=');
    assert.equal(headers['KC-API-PASSPHRASE'], 'WrK7VCuhN7VDyxcc0pwO5VRTwNGSkDq/mfmCWcad6DA=');
    assert.equal(headers['KC-API-KEY-VERSION'], '2');
  });
});

describe('kucoin labels, passphrases and expiry', () => {
  it('remarks map back to rotation labels', () => {
    const label = newRotationLabel();

    const remark = remarkForLabel(label, 'bot0001');

    assert.ok(remark.length <= 24, `remark ${remark} is longer than 24 characters`);
    assert.match(remark, /^rotor[0-9a-z]{19}$/);
    assert.equal(rotationLabelFromRemark(remark), label);
    assert.equal(remarkForLabel('rotor-000000000000000000000000', 'bot0001'), 'rotor0000000000000000000');
    assert.equal(rotationLabelFromRemark('trading bot'), 'trading bot');
    assert.equal(remarkForLabel('nightly', 'bot0001'), 'nightly');
  });

  it('derived passphrases follow the seed', () => {
    const credential = { api_key: 'k', api_secret: 'secret-one', passphrase: 'p' };

    const first = derivePassphrase(credential, 'bot0001', 'rotor0000000000000000001');
    const again = derivePassphrase(credential, 'bot0001', 'rotor0000000000000000001');
    const otherRemark = derivePassphrase(credential, 'bot0001', 'rotor0000000000000000002');
    const seeded = derivePassphrase({ ...credential, passphrase_seed: 'x'.repeat(32) }, 'bot0001', 'rotor0000000000000000001');

    assert.match(first, /^[0-9a-f]{32}$/);
    assert.equal(again, first);
    assert.notEqual(otherRemark, first);
    assert.notEqual(seeded, first);
  });

  it('expiry rounds down to an allowed day count', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    const inDays = (days: number) => new Date(now + days * 86_400_000 - 5_000).toISOString();

    assert.equal(kucoinExpiry(undefined, 'bot0001', now), '-1');
    assert.equal(kucoinExpiry(inDays(30), 'bot0001', now), '30');
    assert.equal(kucoinExpiry(inDays(90), 'bot0001', now), '90');
    assert.equal(kucoinExpiry(inDays(100), 'bot0001', now), '90');
    assert.equal(kucoinExpiry(inDays(400), 'bot0001', now), '360');
    assert.throws(() => kucoinExpiry(inDays(14), 'bot0001', now), /KuCoin's shortest expiry is 30 days/);
  });

  it('rate-limit delay follows gw-ratelimit-reset', () => {
    const noJitter = () => 0;

    assert.equal(kucoinRateLimitDelayMs(new Headers({ 'gw-ratelimit-reset': '1489' }), noJitter), 1_489);
    assert.equal(kucoinRateLimitDelayMs(new Headers({ 'gw-ratelimit-reset': '5' }), noJitter), 100);
    assert.equal(kucoinRateLimitDelayMs(new Headers({ 'gw-ratelimit-reset': '900000' }), noJitter), 30_000);
    assert.equal(kucoinRateLimitDelayMs(new Headers(), noJitter), 3_000);
    assert.equal(kucoinRateLimitDelayMs(undefined, () => 0.5), 3_500);
  });
});

describe('kucoin config', () => {
  it('defaults base_url and permissions', () => {
    const config = kucoinConfigSchema.parse({ sub_name: 'tradingbot1' });

    assert.equal(config.base_url, 'https://api.kucoin.com');
    assert.deepEqual(config.permissions, ['General']);
  });

  it('rejects unknown fields and bad values', () => {
    assert.equal(kucoinConfigSchema.safeParse({ sub_name: 'tradingbot1', sub_account: 'x' }).success, false);
    assert.equal(kucoinConfigSchema.safeParse({ sub_name: 'trading bot' }).success, false);
    assert.equal(kucoinConfigSchema.safeParse({ sub_name: 'tradingbot1', permissions: ['Withdraw'] }).success, false);
    assert.equal(kucoinConfigSchema.safeParse({ sub_name: 'tradingbot1', base_url: 'https://api.kucoin.com/api/v1' }).success, false);
  });

  it('registry returns the kucoin provider', () => {
    assert.equal(getProvider('kucoin'), kucoinProvider);
  });

  it('keyIdFromSecret returns api_key', () => {
    assert.equal(kucoinProvider.keyIdFromSecret({ api_key: 'k-1', api_secret: 's', passphrase: 'p' }), 'k-1');
    assert.equal(kucoinProvider.keyIdFromSecret({ api_secret: 's' }), undefined);
  });
});

describe('kucoin provider against the emulator', () => {
  let emulator: KucoinEmulator;

  before(async () => {
    // Fast enough that these tests never meet the rate limit, which has its own tests below.
    emulator = await startKucoinEmulator({ rateLimitPerSecond: 1_000 });
  });

  after(async () => {
    await emulator.stop();
  });

  function seedAccount(options?: Parameters<KucoinEmulator['seedAccount']>[0]): SeededKucoinAccount {
    const account = emulator.seedAccount(options);
    rememberSecrets(account.managementCredential, account.currentKey);
    return account;
  }

  it('createKey labels the key in listKeys', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const label = newRotationLabel();

    const created = await kucoinProvider.createKey(context, { label, restrictions: {} });
    rememberSecrets(keyOf(created.secret));
    const keys = await kucoinProvider.listKeys(context);
    const listed = keys.find((key) => key.keyId === created.keyId);

    assert.equal(keys.length, 2);
    assert.equal(listed?.label, label);
    assert.equal(listed?.status, 'active');
    assert.equal(listed?.createdAt, created.createdAt);
    assert.equal(keys.find((key) => key.keyId === account.currentKey.api_key)?.label, 'trading bot');
    assert.equal(emulator.keys(account.subName).find((key) => key.apiKey === created.keyId)?.remark, remarkForLabel(label, account.subName));
    assert.deepEqual(Object.keys(created.secret).sort(), ['api_key', 'api_secret', 'passphrase']);
    assert.equal(created.secret.api_key, created.keyId);
  });

  it('verifyKey accepts the new key', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['127.0.0.1/32'] } });
    rememberSecrets(keyOf(created.secret));

    await kucoinProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await kucoinKeyRejection(emulator.url, keyOf(created.secret)), null);
  });

  it('verifyKey rejects an unknown key as authentication', async () => {
    const account = seedAccount();
    const bogus = { api_key: randomBytes(12).toString('hex'), api_secret: randomUUID(), passphrase: randomBytes(16).toString('hex') };
    rememberSecrets(bogus);

    const error = await providerErrorOf(kucoinProvider.verifyKey(contextFor(emulator, account), bogus.api_key, bogus));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '400003');
    assert.match(error.message, new RegExp(`KuCoin does not accept the new API key ${bogus.api_key} of sub-account ${account.subName} yet`));
    assert.equal(error.message.includes(bogus.api_secret), false);
    assert.equal(error.message.includes(bogus.passphrase), false);
  });

  it('verifyKey rejects a master key as authentication', async () => {
    const account = seedAccount();
    const master = account.managementCredential;

    const error = await providerErrorOf(kucoinProvider.verifyKey(contextFor(emulator, account), master.api_key, { ...master }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'UnexpectedCaller');
    assert.match(error.message, /as key \w+ of the master account, not as a key of sub-account/);
  });

  it('verifyKey rejects a secret of another key as invalid', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(kucoinProvider.verifyKey(contextFor(emulator, account), 'another-key', { ...account.currentKey }));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /does not belong to this rotation/);
  });

  it('revokeKey twice succeeds and the key stops working', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const created = await kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
    rememberSecrets(keyOf(created.secret));

    await kucoinProvider.revokeKey(context, created.keyId);
    await kucoinProvider.revokeKey(context, created.keyId);
    const keys = await kucoinProvider.listKeys(context);

    assert.deepEqual(
      keys.map((key) => key.keyId),
      [account.currentKey.api_key],
    );
    assert.equal(await kucoinKeyRejection(emulator.url, keyOf(created.secret)), '400003');
    const verifyError = await providerErrorOf(kucoinProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(verifyError.kind, 'authentication');
  });

  it('revokeKey deletes a hand-made key with initial_key_passphrase', async () => {
    const account = seedAccount();

    await kucoinProvider.revokeKey(contextFor(emulator, account), account.currentKey.api_key);

    assert.deepEqual(emulator.keys(account.subName), []);
    assert.equal(await kucoinKeyRejection(emulator.url, account.currentKey), '400003');
  });

  it('revokeKey without the hand-made key passphrase is invalid-config', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account, { ...account.managementCredential });

    const error = await providerErrorOf(kucoinProvider.revokeKey(context, account.currentKey.api_key));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'PassphraseUnknown');
    assert.match(error.message, /Add the key's passphrase as initial_key_passphrase/);
    assert.equal(emulator.keys(account.subName).length, 1);
  });

  it('revokeKey with a wrong initial_key_passphrase is invalid-config', async () => {
    const account = seedAccount();
    const wrong = randomBytes(8).toString('hex');
    seenSecrets.add(wrong);
    const context = contextFor(emulator, account, { ...account.managementCredential, initial_key_passphrase: wrong });

    const error = await providerErrorOf(kucoinProvider.revokeKey(context, account.currentKey.api_key));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /check initial_key_passphrase in the management credential/);
    assert.equal(error.message.includes(wrong), false);
    assert.equal(emulator.keys(account.subName).length, 1);
  });

  it('createKey at 20 keys is limit-reached', async () => {
    const account = seedAccount();
    for (let index = 0; index < 19; index++) {
      emulator.seedKey(account.subName);
    }

    const error = await providerErrorOf(kucoinProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'limit-reached');
    assert.equal(error.details.vendorCode, '400100');
    assert.match(error.message, new RegExp(`KuCoin sub-account ${account.subName} already has 20 API keys`));
    assert.equal(emulator.keys(account.subName).length, 20);
  });

  it('wrong management secret is authentication without secrets', async () => {
    const account = seedAccount();
    const credential = { ...managementCredentialOf(account), api_secret: randomUUID() };
    seenSecrets.add(credential.api_secret);

    const error = await providerErrorOf(kucoinProvider.listKeys(contextFor(emulator, account, credential)));
    const serialized = JSON.stringify(error);

    assert.equal(error.kind, 'authentication');
    assert.equal(error.retryable, false);
    assert.equal(error.details.vendorCode, '400004');
    assert.match(error.message, new RegExp(`KuCoin rejected the management credential when asked to list the API keys for sub-account ${account.subName}`));
    assert.match(error.message, /Check api_key, api_secret and passphrase at the management credential path in Vault/);
    for (const secret of [credential.api_secret, credential.passphrase, account.managementCredential.api_secret, account.currentKey.passphrase]) {
      assert.equal(error.message.includes(secret), false);
      assert.equal(serialized.includes(secret), false);
    }
  });

  it('wrong management passphrase is authentication', async () => {
    const account = seedAccount();
    const credential = { ...managementCredentialOf(account), passphrase: randomBytes(8).toString('hex') };
    seenSecrets.add(credential.passphrase);

    const error = await providerErrorOf(kucoinProvider.createKey(contextFor(emulator, account, credential), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '400004');
    assert.equal(error.message.includes(credential.passphrase), false);
    assert.equal(emulator.keys(account.subName).length, 1);
  });

  it('sub-account key as management credential is permission', async () => {
    const account = seedAccount();
    const credential = { ...account.currentKey };

    const error = await providerErrorOf(kucoinProvider.listKeys(contextFor(emulator, account, credential)));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, '400007');
    assert.match(error.message, /Use an API key of the master account with the General permission/);
  });

  it('management key outside its IP whitelist is authentication', async () => {
    const account = seedAccount({ managementIps: ['198.51.100.7'] });

    const error = await providerErrorOf(kucoinProvider.listKeys(contextFor(emulator, account)));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '400006');
    assert.match(error.message, /Add the worker's address to the master API key's IP whitelist/);
  });

  it('unknown sub-account is invalid-config', async () => {
    const account = seedAccount();

    const error = await providerErrorOf(kucoinProvider.listKeys(contextFor(emulator, account, managementCredentialOf(account), { sub_name: 'nosuchaccount' })));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /KuCoin rejected the request to list the API keys for sub-account nosuchaccount as invalid \(400100: sub-account does not exist\)/);
  });

  it('unexpected list response names the field', async () => {
    const account = seedAccount();
    emulator.replaceNextResponse('GET', '/api/v1/sub/api-key', { code: '200000', data: [{ remark: 'x', permission: 'General', createdAt: 1661150291000 }] });

    const error = await providerErrorOf(kucoinProvider.listKeys(contextFor(emulator, account)));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'UnexpectedResponse');
    assert.equal(error.message, 'KuCoin returned an unexpected response to listKeys: data[0].apiKey is missing');
  });

  it('unexpected create response keeps the secret out', async () => {
    const account = seedAccount();
    const leakedSecret = randomUUID();
    emulator.replaceNextResponse('POST', '/api/v1/sub/api-key', {
      code: '200000',
      data: { apiKey: randomBytes(12).toString('hex'), apiSecret: leakedSecret, remark: 'x', permission: 'General', ipWhitelist: '', createdAt: 'yesterday' },
    });

    const error = await providerErrorOf(kucoinProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: {} }));

    assert.equal(error.kind, 'transient');
    assert.match(error.message, /^KuCoin returned an unexpected response to createKey: data\.createdAt: /);
    assert.equal(error.message.includes(leakedSecret), false);
    assert.equal(error.message.includes('yesterday'), false);
  });

  it('createKey applies the IP whitelist, permissions and expiry', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);

    const created = await kucoinProvider.createKey(context, {
      label: newRotationLabel(),
      restrictions: { ipAllowlist: ['203.0.113.9', '198.51.100.7/32'], scopes: ['spot', 'Futures'], expiresAt: new Date(Date.now() + 90 * 86_400_000).toISOString() },
    });
    rememberSecrets(keyOf(created.secret));
    const stored = emulator.keys(account.subName).find((key) => key.apiKey === created.keyId);
    const error = await providerErrorOf(kucoinProvider.verifyKey(context, created.keyId, created.secret));

    assert.deepEqual(stored?.ips, ['203.0.113.9', '198.51.100.7']);
    assert.equal(stored?.permission, 'General,Spot,Futures');
    assert.equal(stored?.expire, '90');
    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, '400006');
    assert.match(error.message, /check that the worker's IP address is in restrictions\.ip_allowlist/);
    assert.equal(await kucoinKeyRejection(emulator.url, keyOf(created.secret)), '400006');
  });

  it('createKey without scopes uses permissions', async () => {
    const account = seedAccount();

    const created = await kucoinProvider.createKey(contextFor(emulator, account, managementCredentialOf(account), { permissions: ['Spot'] }), {
      label: newRotationLabel(),
      restrictions: {},
    });
    rememberSecrets(keyOf(created.secret));
    const stored = emulator.keys(account.subName).find((key) => key.apiKey === created.keyId);

    assert.equal(stored?.permission, 'General,Spot');
    assert.deepEqual(stored?.ips, []);
    assert.equal(stored?.expire, '-1');
  });

  it('createKey deletes a key whose restrictions differ', async () => {
    const account = seedAccount();
    const apiKey = randomBytes(12).toString('hex');
    emulator.replaceNextResponse('POST', '/api/v1/sub/api-key', {
      code: '200000',
      data: { apiKey, apiSecret: randomUUID(), remark: 'x', permission: 'General', ipWhitelist: '', createdAt: Date.now() },
    });

    const error = await providerErrorOf(
      kucoinProvider.createKey(contextFor(emulator, account), { label: newRotationLabel(), restrictions: { ipAllowlist: ['127.0.0.1'] } }),
    );

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.details.vendorCode, 'RestrictionMismatch');
    assert.match(error.message, new RegExp(`KuCoin created API key ${apiKey} of sub-account ${account.subName} with IP whitelist "" instead of "127.0.0.1"`));
  });

  it('createKey rejects invalid restrictions before calling KuCoin', async () => {
    const account = seedAccount();
    const context = contextFor(emulator, account);
    const manyAddresses = Array.from({ length: 21 }, (_, index) => `198.51.100.${index + 1}`);

    const tooMany = await providerErrorOf(kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: manyAddresses } }));
    const block = await providerErrorOf(kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: { ipAllowlist: ['203.0.113.0/24'] } }));
    const badScope = await providerErrorOf(kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: { scopes: ['withdraw'] } }));
    const shortExpiry = await providerErrorOf(
      kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: { expiresAt: new Date(Date.now() + 7 * 86_400_000).toISOString() } }),
    );
    const longLabel = await providerErrorOf(kucoinProvider.createKey(context, { label: 'a-label-longer-than-24-characters', restrictions: {} }));

    assert.equal(tooMany.kind, 'invalid-config');
    assert.match(tooMany.message, /has 21 addresses, but KuCoin whitelists at most 20/);
    assert.equal(block.kind, 'invalid-config');
    assert.match(block.message, /contains the block 203\.0\.113\.0\/24/);
    assert.equal(badScope.kind, 'invalid-config');
    assert.match(badScope.message, /restrictions\.scopes contains "withdraw"/);
    assert.equal(shortExpiry.kind, 'invalid-config');
    assert.equal(longLabel.kind, 'invalid-config');
    assert.equal(emulator.keys(account.subName).length, 1);
  });

  it('provider logs contain no secret', () => {
    const logs = logLines.join('');

    assert.ok(logs.includes('Created KuCoin sub-account API key'));
    assert.ok(seenSecrets.size > 10);
    for (const secret of seenSecrets) {
      assert.equal(logs.includes(secret), false, 'a secret value reached a provider log line');
    }
  });
});

describe('kucoin rate limits', () => {
  it('HTTP 429 is rate-limited with a retry delay', async () => {
    const emulator = await startKucoinEmulator({ rateLimitPerSecond: 1 });
    try {
      const account = emulator.seedAccount();
      rememberSecrets(account.managementCredential, account.currentKey);
      const context = contextFor(emulator, account);

      const first = await kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: {} });
      rememberSecrets(keyOf(first.secret));
      const listed = await kucoinProvider.listKeys(context);
      const error = await providerErrorOf(kucoinProvider.createKey(context, { label: newRotationLabel(), restrictions: {} }));

      assert.equal(listed.length, 2);
      assert.equal(error.kind, 'rate-limited');
      assert.equal(error.details.vendorCode, '429000');
      assert.ok((error.details.retryAfterMs ?? 0) > 0, `retryAfterMs is ${error.details.retryAfterMs}`);
      assert.match(error.message, /^KuCoin rate-limited the request to create an API key for sub-account \w+ \(429000: Too Many Requests\); retrying in \d+ s\.$/);
      assert.equal(emulator.rateLimitedCount, 1);
    } finally {
      await emulator.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rotations through the real workflow on real Temporal and Vault
// ---------------------------------------------------------------------------------------------

interface KucoinTestIntegration {
  integration: IntegrationSpec;
  account: SeededKucoinAccount;
}

async function prepareKucoinIntegration(vault: VaultStore, emulator: KucoinEmulator): Promise<KucoinTestIntegration> {
  const account = emulator.seedAccount();
  const id = `kucoin-${uniqueSuffix()}`;
  const managementCredentialPath = `rotor/management/${id}`;
  const vaultPath = `apps/${id}/kucoin`;
  await vault.writeSecret(managementCredentialPath, { ...managementCredentialOf(account) });
  await vault.writeSecret(vaultPath, { ...account.currentKey });

  const integration: IntegrationSpec = {
    id,
    provider: 'kucoin',
    providerConfig: { base_url: emulator.url, sub_name: account.subName },
    managementCredentialPath,
    vaultPath,
    owner: 'platform-tests',
    policy: { gracePeriodMs: 1_000, verifyTimeoutMs: 15_000, maxGraceMs: 60_000, clearStaleKeys: false },
    restrictions: { ipAllowlist: ['127.0.0.1/32'], scopes: ['General', 'Spot'], expiresAfterMs: 90 * 86_400_000 },
  };
  return { integration, account };
}

describe('kucoin rotation on real Temporal and Vault', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: KucoinEmulator;
  const taskQueue = `rotor-kucoin-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    // The emulator keeps KuCoin's own VIP0 Management pool of 2000 weight per 30 s.
    emulator = await startKucoinEmulator();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  describe('a full rotation', () => {
    let kucoin: KucoinTestIntegration;
    let result: RotationResult;
    let history: string;
    let newKey: KucoinKeyCredential;

    before(async () => {
      kucoin = await prepareKucoinIntegration(vault, emulator);
      const handle = await startRotation(client, kucoin.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
      result = await handle.result();
      history = await historyText(handle);
      const latest = await vault.readSecret(kucoin.integration.vaultPath);
      newKey = { api_key: latest?.data.api_key ?? '', api_secret: latest?.data.api_secret ?? '', passphrase: latest?.data.passphrase ?? '' };
    });

    it('promotes the new key for consumers', async () => {
      const latest = await vault.readSecret(kucoin.integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(newKey.api_key, result.state.pendingKeyId);
      assert.notEqual(newKey.api_secret, kucoin.account.currentKey.api_secret);
      assert.match(newKey.passphrase, /^[0-9a-f]{32}$/, 'the new passphrase is Rotor-derived');
      assert.equal(await kucoinKeyRejection(emulator.url, newKey), null);
    });

    it('deletes the old key at KuCoin', async () => {
      const keys = emulator.keys(kucoin.account.subName);

      assert.deepEqual(
        keys.map((key) => key.apiKey),
        [result.state.pendingKeyId],
      );
      assert.equal(await kucoinKeyRejection(emulator.url, kucoin.account.currentKey), '400003');
    });

    it('creates the key with the rotation label and restrictions', () => {
      const [stored] = emulator.keys(kucoin.account.subName);

      assert.equal(rotationLabelFromRemark(stored.remark), rotationLabel(result.state.rotationId));
      assert.deepEqual(stored.ips, ['127.0.0.1']);
      assert.equal(stored.permission, 'General,Spot');
      assert.equal(stored.expire, '90');
    });

    it('keeps every secret out of the history and logs', () => {
      const logs = capturedRuntimeLogger().capture.text();
      const secrets = {
        'new API secret': newKey.api_secret,
        'new passphrase': newKey.passphrase,
        'old API secret': kucoin.account.currentKey.api_secret,
        'old passphrase': kucoin.account.currentKey.passphrase,
        'management API secret': kucoin.account.managementCredential.api_secret,
        'management passphrase': kucoin.account.managementCredential.passphrase,
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
    const kucoin = await prepareKucoinIntegration(vault, emulator);
    const wrongSecret = randomUUID();
    await vault.writeSecret(kucoin.integration.managementCredentialPath, { ...managementCredentialOf(kucoin.account), api_secret: wrongSecret });

    const handle = await startRotation(client, kucoin.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
    const failure = await handle.result().catch((error: unknown) => error);
    const history = await historyText(handle);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(
        `^Rotation of ${kucoin.integration.id} failed in phase planning: KuCoin rejected the management credential when asked to list the API keys ` +
          `for sub-account ${kucoin.account.subName} \\(400004: [^)]+\\)\\. Check api_key, api_secret and passphrase`,
      ),
    );
    assert.equal(history.includes(wrongSecret), false);
    assert.deepEqual(
      emulator.keys(kucoin.account.subName).map((key) => key.apiKey),
      [kucoin.account.currentKey.api_key],
    );
    assert.equal((await vault.readSecret(kucoin.integration.vaultPath))?.version, 1);
  });
});

describe('kucoin rate-limit storm', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  let emulator: KucoinEmulator;
  const taskQueue = `rotor-kucoin-storm-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    emulator = await startKucoinEmulator({ rateLimitPerSecond: 1 });
    // The worker's queue lets 100 activities a second through, so the emulator does the throttling.
    worker = await startTestWorker(taskQueue, { rateLimits: { kucoin: 100 } });
  });

  after(async () => {
    await worker.stop();
    await emulator.stop();
    await client.connection.close();
  });

  it('three rotations at once all complete', async () => {
    const integrations = await Promise.all([1, 2, 3].map(() => prepareKucoinIntegration(vault, emulator)));

    const handles = await Promise.all(
      integrations.map((kucoin) => startRotation(client, kucoin.integration, { taskQueue, dryRun: false, requestedBy: 'test' })),
    );
    const results = await Promise.all(handles.map((handle) => handle.result()));

    assert.deepEqual(
      results.map((result) => result.outcome),
      ['completed', 'completed', 'completed'],
    );
    assert.ok(emulator.rateLimitedCount >= 1, `the emulator rejected ${emulator.rateLimitedCount} requests with 429000`);
    for (const [index, kucoin] of integrations.entries()) {
      assert.deepEqual(
        emulator.keys(kucoin.account.subName).map((key) => key.apiKey),
        [results[index].state.pendingKeyId],
      );
      assert.equal((await vault.readSecret(kucoin.integration.vaultPath))?.data.api_key, results[index].state.pendingKeyId);
    }
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  IAMClient,
  ListUserTagsCommand,
  UpdateAccessKeyCommand,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { awsIamConfigSchema, awsIamProvider, type AwsIamConfig, type AwsIamCredential } from '../../providers/aws-iam';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { getProvider, listProviders, UnknownProviderError } from '../../providers/registry';
import { createLogger } from '../../shared/logger';
import { findFreePort } from '../../shared/local-services';
import { seedAwsAccount, type AwsAccessKey, type SeededAwsAccount } from '../emulators/moto';

// These tests drive a real moto server. The test harness starts one and sets its URL. To run
// this file alone, start `moto_server -H 127.0.0.1 -p PORT` and set ROTOR_TEST_MOTO_URL.
const MOTO_URL_VARIABLE = 'ROTOR_TEST_MOTO_URL';

// Every log line the provider writes during this file, searched for secrets at the end.
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

// Every secret value the tests saw, so the last test can prove none reached a log line.
const seenSecrets = new Set<string>();

let motoUrl: string;
let account: SeededAwsAccount;
let adminIam: IAMClient;

before(async () => {
  const url = process.env[MOTO_URL_VARIABLE];
  if (!url) {
    throw new Error(
      `${MOTO_URL_VARIABLE} is not set. These tests need a running moto server: start ` +
        '`moto_server -H 127.0.0.1 -p PORT` and set the variable to http://127.0.0.1:PORT.',
    );
  }
  motoUrl = url;

  const suffix = randomUUID().slice(0, 8);
  account = await seedAwsAccount(motoUrl, { adminUser: `rotor-admin-${suffix}`, appUser: `rotor-app-${suffix}` });
  seenSecrets.add(account.managementCredential.secret_access_key);
  seenSecrets.add(account.currentKey.secret_access_key);

  adminIam = new IAMClient(clientOptions(account.managementCredential));
});

after(() => {
  adminIam?.destroy();
});

describe('aws-iam provider against moto', () => {
  it('createKey labels the key in listKeys', async () => {
    const context = await contextForNewUser('label');
    const label = `rotation:${randomUUID()}`;

    const created = await awsIamProvider.createKey(context, { label, restrictions: {} });
    seenSecrets.add(created.secret.secret_access_key);
    const keys = await awsIamProvider.listKeys(context);

    assert.equal(keys.length, 1);
    assert.equal(keys[0].keyId, created.keyId);
    assert.equal(keys[0].label, label);
    assert.equal(keys[0].status, 'active');
    assert.equal(keys[0].createdAt, created.createdAt);
    assert.equal(created.secret.access_key_id, created.keyId);
    assert.match(created.secret.secret_access_key, /^\S{40}$/);
  });

  it('listKeys reports a deactivated key as inactive', async () => {
    const context = await contextForNewUser('inactive');
    const created = await createTestKey(context);

    await adminIam.send(
      new UpdateAccessKeyCommand({ UserName: context.config.user_name, AccessKeyId: created.keyId, Status: 'Inactive' }),
    );
    const keys = await awsIamProvider.listKeys(context);

    assert.equal(keys[0].keyId, created.keyId);
    assert.equal(keys[0].status, 'inactive');
  });

  it('verifyKey accepts the new key', async () => {
    const context = await contextForNewUser('verify');
    const created = await createTestKey(context);

    await awsIamProvider.verifyKey(context, created.keyId, created.secret);

    assert.equal(await callerArn(keyOf(created.secret)), `arn:aws:iam::123456789012:user/${context.config.user_name}`);
  });

  it('verifyKey rejects a made-up key as authentication', async () => {
    const context = await contextForNewUser('made-up');
    const madeUpKey = { access_key_id: 'AKIAMADEUPKEY0000000', secret_access_key: 'madeUpSecretValue0000000000000000000000' };

    const error = await captureProviderError(awsIamProvider.verifyKey(context, madeUpKey.access_key_id, madeUpKey));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'InvalidClientTokenId');
    assert.equal(error.details.operation, 'verifyKey');
    assert.match(error.message, /AKIAMADEUPKEY0000000/);
    assert.match(error.message, new RegExp(context.config.user_name));
    assert.ok(!error.message.includes(madeUpKey.secret_access_key), 'the message contains the secret');
  });

  it('verifyKey rejects a secret of another key id', async () => {
    const context = await contextForNewUser('mismatch');
    const created = await createTestKey(context);

    const error = await captureProviderError(awsIamProvider.verifyKey(context, 'AKIAOTHERKEY00000000', created.secret));

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /AKIAOTHERKEY00000000/);
    assert.ok(!error.message.includes(created.secret.secret_access_key), 'the message contains the secret');
  });

  it('verifyKey rejects a secret without secret_access_key', async () => {
    const context = await contextForNewUser('no-secret');

    const error = await captureProviderError(
      awsIamProvider.verifyKey(context, 'AKIAINCOMPLETE000000', { access_key_id: 'AKIAINCOMPLETE000000' }),
    );

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, /secret_access_key/);
  });

  it('revokeKey twice succeeds', async () => {
    const context = await contextForNewUser('revoke');
    const created = await createTestKey(context);

    await awsIamProvider.revokeKey(context, created.keyId);
    const keysAfterRevoke = await awsIamProvider.listKeys(context);
    const tags = await adminIam.send(new ListUserTagsCommand({ UserName: context.config.user_name }));
    await awsIamProvider.revokeKey(context, created.keyId);

    assert.deepEqual(keysAfterRevoke, []);
    assert.deepEqual(tags.Tags, []);
  });

  it('revoked key is rejected by STS', async () => {
    const context = await contextForNewUser('revoked-sts');
    const created = await createTestKey(context);
    await awsIamProvider.verifyKey(context, created.keyId, created.secret);

    await awsIamProvider.revokeKey(context, created.keyId);

    assert.equal(await callerIdentityErrorCode(keyOf(created.secret)), 'InvalidClientTokenId');
    const error = await captureProviderError(awsIamProvider.verifyKey(context, created.keyId, created.secret));
    assert.equal(error.kind, 'authentication');
  });

  it('revokeKey rejects a key of another user', async () => {
    const owner = await contextForNewUser('owner');
    const other = await contextForNewUser('other');
    const created = await createTestKey(owner);

    const error = await captureProviderError(awsIamProvider.revokeKey(other, created.keyId));
    const ownerKeys = await awsIamProvider.listKeys(owner);

    assert.equal(error.kind, 'invalid-config');
    assert.match(error.message, new RegExp(`belongs to IAM user ${owner.config.user_name}`));
    assert.equal(ownerKeys[0].keyId, created.keyId);
    assert.equal(ownerKeys[0].status, 'active');
  });

  it('third key maps to limit-reached', async () => {
    const context = await contextForNewUser('limit');
    await createTestKey(context);
    await createTestKey(context);

    const error = await captureProviderError(awsIamProvider.createKey(context, { label: 'third', restrictions: {} }));
    const keys = await awsIamProvider.listKeys(context);

    assert.equal(error.kind, 'limit-reached');
    assert.equal(error.details.vendorCode, 'LimitExceeded');
    assert.equal(error.retryable, false);
    assert.match(error.message, new RegExp(context.config.user_name));
    assert.equal(keys.length, 2);
  });

  it('createKey rejects a label IAM cannot store', async () => {
    const context = await contextForNewUser('bad-label');

    const error = await captureProviderError(awsIamProvider.createKey(context, { label: 'rotation #1?', restrictions: {} }));
    const keys = await awsIamProvider.listKeys(context);

    assert.equal(error.kind, 'invalid-config');
    assert.deepEqual(keys, []);
  });

  it('wrong management secret maps to authentication', async () => {
    const userName = await createUser('bad-secret');
    const wrongSecret = 'wrongSecretValue000000000000000000000000';
    const context = contextFor(userName, { access_key_id: account.managementCredential.access_key_id, secret_access_key: wrongSecret });

    const error = await captureProviderError(awsIamProvider.listKeys(context));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'SignatureDoesNotMatch');
    assert.equal(error.retryable, false);
    assert.match(error.message, new RegExp(`user ${userName}`));
    assert.match(error.message, /management credential/);
    assert.ok(!error.message.includes(wrongSecret), 'the message contains the secret');
    assert.ok(!JSON.stringify(error).includes(wrongSecret), 'the serialized error contains the secret');
  });

  it('unknown management key maps to authentication', async () => {
    const userName = await createUser('unknown-key');
    const madeUpSecret = 'madeUpManagementSecret000000000000000000';
    const context = contextFor(userName, { access_key_id: 'AKIAUNKNOWNMANAGER00', secret_access_key: madeUpSecret });

    const error = await captureProviderError(awsIamProvider.createKey(context, { label: 'never-created', restrictions: {} }));

    assert.equal(error.kind, 'authentication');
    assert.equal(error.details.vendorCode, 'InvalidClientTokenId');
    assert.match(error.message, new RegExp(`user ${userName}`));
    assert.ok(!error.message.includes(madeUpSecret), 'the message contains the secret');
    assert.ok(!JSON.stringify(error).includes(madeUpSecret), 'the serialized error contains the secret');
  });

  it('management credential without policy maps to permission', async () => {
    // The app user's own key is valid but its user has no IAM policy.
    const userName = await createUser('no-policy');
    const context = contextFor(userName, account.currentKey);

    const error = await captureProviderError(awsIamProvider.listKeys(context));

    assert.equal(error.kind, 'permission');
    assert.equal(error.details.vendorCode, 'AccessDenied');
    assert.match(error.message, /iam:ListAccessKeys/);
  });

  it('missing user maps to not-found', async () => {
    const context = contextFor(`rotor-missing-${randomUUID().slice(0, 8)}`);

    const error = await captureProviderError(awsIamProvider.listKeys(context));

    assert.equal(error.kind, 'not-found');
    assert.equal(error.details.vendorCode, 'NoSuchEntity');
    assert.match(error.message, /user_name/);
  });

  it('keyUsage returns null before use and a date after', async () => {
    const context = await contextForNewUser('usage');
    const created = await createTestKey(context);

    const before = await awsIamProvider.keyUsage!(context, created.keyId);
    const startedAt = Date.now();
    await awsIamProvider.verifyKey(context, created.keyId, created.secret);
    const afterUse = await awsIamProvider.keyUsage!(context, created.keyId);

    assert.equal(before.lastUsedAt, null);
    assert.equal(typeof afterUse.lastUsedAt, 'string');
    assert.ok(Date.parse(afterUse.lastUsedAt!) >= startedAt - 1_000, `lastUsedAt ${afterUse.lastUsedAt} is before the call`);
  });

  it("keyUsage rejects another user's key", async () => {
    const owner = await contextForNewUser('usage-owner');
    const other = await contextForNewUser('usage-other');
    const created = await createTestKey(owner);

    const error = await captureProviderError(awsIamProvider.keyUsage!(other, created.keyId));

    assert.equal(error.kind, 'not-found');
    assert.match(error.message, new RegExp(owner.config.user_name));
  });

  it('keyIdFromSecret returns access_key_id', () => {
    assert.equal(awsIamProvider.keyIdFromSecret({ access_key_id: 'AKIAEXAMPLE000000000', secret_access_key: 'x' }), 'AKIAEXAMPLE000000000');
    assert.equal(awsIamProvider.keyIdFromSecret({ secret_access_key: 'x' }), undefined);
  });

  // Rotor deletes old keys instead of relying on deactivation, partly because of this.
  it('moto still accepts an inactive key, unlike AWS', async () => {
    const context = await contextForNewUser('moto-inactive');
    const created = await createTestKey(context);

    await adminIam.send(
      new UpdateAccessKeyCommand({ UserName: context.config.user_name, AccessKeyId: created.keyId, Status: 'Inactive' }),
    );

    assert.equal(await callerArn(keyOf(created.secret)), `arn:aws:iam::123456789012:user/${context.config.user_name}`);
  });
});

describe('seedAwsAccount', () => {
  it('seeded keys authenticate as their users', async () => {
    const adminArn = await callerArn(account.managementCredential);
    const appArn = await callerArn(account.currentKey);

    assert.match(adminArn, /:user\/rotor-admin-/);
    assert.equal(appArn, `arn:aws:iam::123456789012:user/${account.appUserName}`);
  });

  it('deleted key is rejected after seeding', async () => {
    const userName = await createUser('deleted');
    const response = await adminIam.send(new CreateAccessKeyCommand({ UserName: userName }));
    const key = { access_key_id: response.AccessKey!.AccessKeyId!, secret_access_key: response.AccessKey!.SecretAccessKey! };
    seenSecrets.add(key.secret_access_key);
    const arnBeforeDelete = await callerArn(key);

    await adminIam.send(new DeleteAccessKeyCommand({ UserName: userName, AccessKeyId: key.access_key_id }));

    assert.equal(arnBeforeDelete, `arn:aws:iam::123456789012:user/${userName}`);
    assert.equal(await callerIdentityErrorCode(key), 'InvalidClientTokenId');
  });
});

describe('aws-iam error mapping', () => {
  // A loopback HTTP server that responds as IAM would in cases moto cannot produce, such as
  // throttling, server errors and malformed responses.
  let stubUrl: string;
  let stubResponse: { status: number; headers?: Record<string, string>; body: string };
  let stub: http.Server;

  before(async () => {
    stub = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(stubResponse.status, { 'content-type': 'text/xml', ...stubResponse.headers });
        response.end(stubResponse.body);
      });
    });
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
    stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => stub.close(() => resolve()));
  });

  function stubContext(): ProviderContext<AwsIamConfig, AwsIamCredential> {
    return {
      config: { user_name: 'rotor-stubbed', region: 'us-east-1', endpoint: stubUrl },
      credential: { access_key_id: 'AKIASTUBMANAGEMENT00', secret_access_key: 'stubManagementSecret00000000000000000000' },
      logger,
    };
  }

  it('HTTP 429 with Retry-After maps to rate-limited', async () => {
    stubResponse = { status: 429, headers: { 'retry-after': '7' }, body: iamErrorXml('Throttling', 'Rate exceeded') };

    const error = await captureProviderError(awsIamProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'rate-limited');
    assert.equal(error.details.retryAfterMs, 7_000);
    assert.equal(error.retryable, true);
  });

  it('Throttling without Retry-After waits 5 s', async () => {
    stubResponse = { status: 400, body: iamErrorXml('Throttling', 'Rate exceeded') };

    const error = await captureProviderError(awsIamProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'rate-limited');
    assert.equal(error.details.vendorCode, 'Throttling');
    assert.equal(error.details.retryAfterMs, 5_000);
  });

  it('HTTP 503 maps to transient', async () => {
    stubResponse = { status: 503, body: iamErrorXml('ServiceUnavailable', 'Service is unavailable') };

    const error = await captureProviderError(awsIamProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'transient');
    assert.equal(error.retryable, true);
  });

  it('ValidationError maps to invalid-config', async () => {
    stubResponse = { status: 400, body: iamErrorXml('ValidationError', 'The specified value for userName is invalid') };

    const error = await captureProviderError(awsIamProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'invalid-config');
    assert.equal(error.retryable, false);
  });

  it('ListAccessKeys without AccessKeyId is unexpected', async () => {
    stubResponse = { status: 200, body: listAccessKeysXmlWithoutKeyId() };

    const error = await captureProviderError(awsIamProvider.listKeys(stubContext()));

    assert.equal(error.kind, 'transient');
    assert.equal(
      error.message,
      'AWS IAM returned an unexpected response to ListAccessKeys: missing AccessKeyMetadata[0].AccessKeyId',
    );
  });

  it('closed port maps to transient', async () => {
    const closedPort = await findFreePort();
    const context = { ...stubContext(), config: { ...stubContext().config, endpoint: `http://127.0.0.1:${closedPort}` } };

    const error = await captureProviderError(awsIamProvider.listKeys(context));

    assert.equal(error.kind, 'transient');
    assert.equal(error.details.vendorCode, 'ECONNREFUSED');
  });
});

describe('aws-iam config and registry', () => {
  it('config schema defaults region to us-east-1', () => {
    const config = awsIamConfigSchema.parse({ user_name: 'payments-bot' });

    assert.equal(config.region, 'us-east-1');
    assert.equal(config.endpoint, undefined);
  });

  it('config schema rejects an invalid user name', () => {
    const result = awsIamConfigSchema.safeParse({ user_name: 'payments bot' });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['user_name']);
  });

  it('config schema rejects a non-http endpoint', () => {
    const result = awsIamConfigSchema.safeParse({ user_name: 'payments-bot', endpoint: 'ftp://127.0.0.1:21' });

    assert.equal(result.success, false);
    assert.deepEqual(result.error?.issues[0].path, ['endpoint']);
  });

  it('registry returns aws-iam by name', () => {
    assert.equal(getProvider('aws-iam'), awsIamProvider);
    assert.ok(listProviders().includes(awsIamProvider));
  });

  it('registry names known providers for an unknown name', () => {
    assert.throws(() => getProvider('aws-iamm'), UnknownProviderError);
    assert.throws(() => getProvider('aws-iamm'), /Known providers: .*aws-iam/);
  });
});

// Runs after every test above, because node:test runs a file's tests in order.
describe('aws-iam logging', () => {
  it('logs no secret values', () => {
    const output = logLines.join('');

    assert.ok(output.includes('Created AWS IAM access key'), 'the provider logged no key creation');
    for (const secret of seenSecrets) {
      assert.ok(!output.includes(secret), `a log line contains the secret that starts with ${secret.slice(0, 4)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function clientOptions(key: AwsAccessKey) {
  return {
    region: 'us-east-1',
    endpoint: motoUrl,
    credentials: { accessKeyId: key.access_key_id, secretAccessKey: key.secret_access_key },
    maxAttempts: 1,
  };
}

function contextFor(
  userName: string,
  credential: AwsIamCredential = account.managementCredential,
): ProviderContext<AwsIamConfig, AwsIamCredential> {
  return { config: { user_name: userName, region: 'us-east-1', endpoint: motoUrl }, credential, logger };
}

/** Creates an IAM user with a name unique to this run, because all tests share moto's state. */
async function createUser(purpose: string): Promise<string> {
  const userName = `rotor-${purpose}-${randomUUID().slice(0, 8)}`;
  await adminIam.send(new CreateUserCommand({ UserName: userName }));
  return userName;
}

async function contextForNewUser(purpose: string): Promise<ProviderContext<AwsIamConfig, AwsIamCredential>> {
  return contextFor(await createUser(purpose));
}

async function createTestKey(context: ProviderContext<AwsIamConfig, AwsIamCredential>) {
  const created = await awsIamProvider.createKey(context, { label: `rotation:${randomUUID()}`, restrictions: {} });
  seenSecrets.add(created.secret.secret_access_key);
  return created;
}

function keyOf(secret: Record<string, string>): AwsAccessKey {
  return { access_key_id: secret.access_key_id, secret_access_key: secret.secret_access_key };
}

async function callerArn(key: AwsAccessKey): Promise<string> {
  const sts = new STSClient(clientOptions(key));
  try {
    const identity = await sts.send(new GetCallerIdentityCommand({}));
    return identity.Arn ?? '';
  } finally {
    sts.destroy();
  }
}

/** Calls GetCallerIdentity with the key and returns the error code of moto's response. */
async function callerIdentityErrorCode(key: AwsAccessKey): Promise<string> {
  try {
    const arn = await callerArn(key);
    return `no error: authenticated as ${arn}`;
  } catch (error) {
    return error instanceof Error ? error.name : String(error);
  }
}

async function captureProviderError(call: Promise<unknown>): Promise<ProviderError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail with a ProviderError, but it succeeded');
}

function iamErrorXml(code: string, message: string): string {
  return (
    '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">' +
    `<Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error>` +
    '<RequestId>stub-request</RequestId></ErrorResponse>'
  );
}

function listAccessKeysXmlWithoutKeyId(): string {
  return (
    '<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListAccessKeysResult>' +
    '<UserName>rotor-stubbed</UserName><AccessKeyMetadata><member><UserName>rotor-stubbed</UserName>' +
    '<Status>Active</Status><CreateDate>2025-01-01T00:00:00Z</CreateDate></member></AccessKeyMetadata>' +
    '<IsTruncated>false</IsTruncated></ListAccessKeysResult>' +
    '<ResponseMetadata><RequestId>stub-request</RequestId></ResponseMetadata></ListAccessKeysResponse>'
  );
}

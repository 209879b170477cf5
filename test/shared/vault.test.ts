import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { VaultCasMismatchError, VaultError, VaultStore } from '../../shared/vault';
import { testEnvironment, testVault, uniqueSuffix } from '../support/environment';

describe('Vault KV v2 store on the real dev server', () => {
  let vault: VaultStore;

  before(async () => {
    vault = await testVault();
  });

  it('writes and reads versions with check-and-set', async () => {
    const path = `tests/kv-${uniqueSuffix()}`;

    const first = await vault.writeSecret(path, { api_key: 'first-value' }, { cas: 0 });
    const second = await vault.writeSecret(path, { api_key: 'second-value' }, { cas: 1 });
    const latest = await vault.readSecret(path);
    const previous = await vault.readSecret(path, 1);

    assert.equal(first.version, 1);
    assert.equal(second.version, 2);
    assert.equal(latest?.version, 2);
    assert.deepEqual(latest?.data, { api_key: 'second-value' });
    assert.deepEqual(previous?.data, { api_key: 'first-value' });
  });

  it('rejects a stale check-and-set without changing the secret', async () => {
    const path = `tests/kv-${uniqueSuffix()}`;
    await vault.writeSecret(path, { api_key: 'kept' }, { cas: 0 });

    await assert.rejects(vault.writeSecret(path, { api_key: 'lost' }, { cas: 0 }), VaultCasMismatchError);
    const latest = await vault.readSecret(path);

    assert.deepEqual(latest?.data, { api_key: 'kept' });
    assert.equal(latest?.version, 1);
  });

  it('merges custom metadata without a new version', async () => {
    const path = `tests/kv-${uniqueSuffix()}`;
    await vault.writeSecret(path, { api_key: 'value' });

    await vault.mergeCustomMetadata(path, { provider: 'aws-iam', key_id: 'AKIA1' });
    await vault.mergeCustomMetadata(path, { key_id: 'AKIA2' });
    const metadata = await vault.readMetadata(path);

    assert.equal(metadata?.currentVersion, 1);
    assert.deepEqual(metadata?.customMetadata, { provider: 'aws-iam', key_id: 'AKIA2' });
  });

  it('returns null for a path that does not exist', async () => {
    assert.equal(await vault.readSecret(`tests/missing-${uniqueSuffix()}`), null);
    assert.equal(await vault.readMetadata(`tests/missing-${uniqueSuffix()}`), null);
  });

  it('destroys every version of a secret', async () => {
    const path = `tests/kv-${uniqueSuffix()}`;
    await vault.writeSecret(path, { api_key: 'one' });
    await vault.writeSecret(path, { api_key: 'two' });

    await vault.destroySecret(path);

    assert.equal(await vault.readMetadata(path), null);
    assert.equal(await vault.readSecret(path, 1), null);
  });

  it('reports a bad token without the token or the written value', async () => {
    const environment = testEnvironment();
    const badToken = `bad-token-${uniqueSuffix()}`;
    const store = await VaultStore.connect({
      address: environment.VAULT_ADDR,
      auth: { method: 'token', token: badToken },
      kvMount: 'secret',
      stagingPrefix: 'rotor/staging',
    });

    const error = await store.writeSecret('tests/denied', { api_key: 'secret-value-123' }).catch((caught: unknown) => caught);

    assert.ok(error instanceof VaultError);
    assert.equal(error.statusCode, 403);
    assert.match(error.message, /HTTP 403/);
    assert.match(error.message, /The Vault token is invalid or expired: check VAULT_TOKEN/);
    assert.equal(error.message.includes('\n'), false, 'the message should be one line');
    assert.doesNotMatch(`${error.message} ${JSON.stringify(error)}`, /secret-value-123|bad-token-/);
  });
});

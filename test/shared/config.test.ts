import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadTemporalConfig, loadVaultConfig, loadWorkerConfig } from '../../shared/config';

describe('environment configuration', () => {
  it('applies defaults for a local stack', () => {
    const config = loadWorkerConfig({ VAULT_TOKEN: 'dev-token' });

    assert.equal(config.temporal.address, '127.0.0.1:7233');
    assert.equal(config.temporal.namespace, 'default');
    assert.equal(config.temporal.taskQueue, 'rotor');
    assert.equal(config.temporal.tls, undefined);
    assert.equal(config.vault.address, 'http://127.0.0.1:8200');
    assert.deepEqual(config.vault.auth, { method: 'token', token: 'dev-token' });
    assert.equal(config.vault.kvMount, 'secret');
    assert.equal(config.logLevel, 'info');
    assert.equal(config.shutdownGraceMs, 30_000);
  });

  it('lists every problem in one error', () => {
    const env = {
      TEMPORAL_ADDRESS: 'not an address',
      TEMPORAL_TLS: 'maybe',
      TEMPORAL_TLS_CERT: '/etc/rotor/client.pem',
      VAULT_ADDR: 'vault.internal',
      ROTOR_LOG_LEVEL: 'loud',
      ROTOR_SHUTDOWN_GRACE: 'soon',
    };

    const error = captureError(() => loadWorkerConfig(env));

    assert.ok(error instanceof ConfigError);
    assert.equal(error.problems.length, 7);
    assert.match(error.message, /TEMPORAL_ADDRESS: expected host:port/);
    assert.match(error.message, /TEMPORAL_TLS: expected true or false/);
    assert.match(error.message, /TEMPORAL_TLS_KEY: mutual TLS needs both/);
    assert.match(error.message, /VAULT_ADDR: expected an http or https URL/);
    assert.match(error.message, /VAULT_TOKEN: missing: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID/);
    assert.match(error.message, /ROTOR_LOG_LEVEL: expected trace, debug, info, warn or error/);
    assert.match(error.message, /ROTOR_SHUTDOWN_GRACE: expected a duration/);
  });

  it('never echoes a secret value in its errors', () => {
    const secretId = 'f3c1e0a2-secret-id-value';
    const apiKey = 'temporal-cloud-api-key-value';

    const error = captureError(() =>
      loadWorkerConfig({ VAULT_SECRET_ID: secretId, TEMPORAL_API_KEY: apiKey, TEMPORAL_ADDRESS: apiKey, VAULT_ADDR: secretId }),
    );

    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /VAULT_ROLE_ID: missing: AppRole login needs VAULT_ROLE_ID/);
    assert.doesNotMatch(error.message, new RegExp(secretId));
    assert.doesNotMatch(error.message, new RegExp(apiKey));
  });

  it('selects AppRole login when role and secret ids are set', () => {
    const config = loadVaultConfig({ VAULT_ROLE_ID: 'rotor-worker', VAULT_SECRET_ID: 'generated', VAULT_ADDR: 'https://vault.example.com:8200/' });

    assert.deepEqual(config.auth, { method: 'approle', roleId: 'rotor-worker', secretId: 'generated', mount: 'approle' });
    assert.equal(config.address, 'https://vault.example.com:8200');
  });

  it('turns on TLS for a Temporal Cloud API key', () => {
    const config = loadTemporalConfig({ TEMPORAL_ADDRESS: 'rotor.a1b2c.tmprl.cloud:7233', TEMPORAL_API_KEY: 'key' });

    assert.ok(config.tls);
    assert.equal(config.apiKey, 'key');
  });
});

function captureError(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  assert.fail('expected an error');
}

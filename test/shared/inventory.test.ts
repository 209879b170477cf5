import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InventoryError, parseInventory } from '../../shared/inventory';

const valid = `version: 1
integrations:
  - id: aws-ci-deployer
    provider: aws-iam
    config:
      user_name: ci-deployer
    management_credential: rotor/management/aws
    vault_path: apps/ci/aws
    rotation:
      rotation_period: 30d
      grace_period: 10m
`;

describe('inventory parsing', () => {
  it('reads durations and fills defaults', () => {
    const inventory = parseInventory(valid, 'inventory.yaml');
    const [integration] = inventory.integrations;

    assert.equal(integration.rotation.rotation_period, 30 * 86_400_000);
    assert.equal(integration.rotation.grace_period, 600_000);
    assert.equal(integration.rotation.verify_timeout, 120_000);
    assert.equal(integration.rotation.clear_stale_keys, false);
    assert.deepEqual(integration.restrictions.ip_allowlist, []);
  });

  it('names file, line and YAML path of each problem', () => {
    const text = valid.replace('grace_period: 10m', 'grace_period: soon').replace('vault_path: apps/ci/aws', 'vault_path: /apps//ci');

    const error = captureError(() => parseInventory(text, 'inventory.yaml'));

    assert.ok(error instanceof InventoryError);
    const lines = error.message.split('\n');
    assert.equal(lines.length, 2);
    assert.ok(lines.includes('inventory.yaml:8: integrations[0].vault_path: expected a KV path relative to the mount, such as apps/billing/okx'), error.message);
    assert.ok(
      lines.includes('inventory.yaml:11: integrations[0].rotation.grace_period: expected a duration with a unit, such as 90s, 15m, 12h or 30d (units: ms, s, m, h, d, w, y)'),
      error.message,
    );
  });

  it('rejects durations without a lower-case unit', () => {
    for (const written of ['"30"', '30', '3M', '2 hours']) {
      const error = captureError(() => parseInventory(valid.replace('grace_period: 10m', `grace_period: ${written}`), 'inventory.yaml'));

      assert.ok(error instanceof InventoryError, `grace_period: ${written} was accepted`);
      assert.match(error.message, /inventory\.yaml:11: integrations\[0\]\.rotation\.grace_period: expected a duration with a unit/);
    }
  });

  it('rejects duplicate integration ids', () => {
    const entry = valid.slice(valid.indexOf('  - id:'));
    const error = captureError(() => parseInventory(valid + entry, 'inventory.yaml'));

    assert.ok(error instanceof InventoryError);
    assert.match(error.message, /inventory\.yaml:12: integrations\[1\]\.id: duplicate id "aws-ci-deployer": integrations\[0\] has it already/);
  });

  it('reports broken YAML with its line', () => {
    const error = captureError(() => parseInventory('version: 1\nintegrations:\n  - id: [unclosed\n', 'broken.yaml'));

    assert.ok(error instanceof InventoryError);
    assert.match(error.message, /^broken\.yaml:\d+: \(root\): invalid YAML/);
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

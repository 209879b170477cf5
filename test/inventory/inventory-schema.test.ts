import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import type { Provider } from '../../providers/contract';
import { manualProvider } from '../../providers/manual';
import { listProviders } from '../../providers/registry';
import { cidrProblem, InventoryError, isManualIntegration, parseInventory, rateLimitOverrides, type InventoryFile } from '../../shared/inventory';

function parse(text: string): InventoryFile {
  return parseInventory(text, 'inventory.yaml', { providers: listProviders() });
}

function problemLines(text: string): string[] {
  try {
    parse(text);
  } catch (error) {
    assert.ok(error instanceof InventoryError, String(error));
    return error.message.split('\n');
  }
  assert.fail('expected an InventoryError');
}

const withDefaults = `version: 1
defaults:
  owner: platform-team
  tags: [production]
  rotation:
    rotation_period: 30d
    grace_period: 2h
  restrictions:
    ip_allowlist: [203.0.113.0/24]
    expires_after: 90d
  posture:
    last_reviewed: "2025-06-01"
integrations:
  - id: inherits
    provider: aws-iam
    config: { user_name: a }
    management_credential: rotor/management/a
    vault_path: apps/a
  - id: overrides
    provider: aws-iam
    config: { user_name: b }
    management_credential: rotor/management/b
    vault_path: apps/b
    owner: payments-team
    tags: [payments]
    rotation:
      rotation_schedule: "0 3 * * 1"
      rotation_window: 4h
    restrictions:
      scopes: [read]
    posture:
      two_factor_enforced: false
      security_audit: null
      breach_notification: https://vendor.example/breach
`;

describe('inventory defaults', () => {
  it('fill fields an integration leaves out', () => {
    const [inherits] = parse(withDefaults).integrations;

    assert.equal(inherits.owner, 'platform-team');
    assert.deepEqual(inherits.tags, ['production']);
    assert.equal(inherits.rotation.rotation_period, 30 * 86_400_000);
    assert.equal(inherits.rotation.grace_period, 7_200_000);
    assert.equal(inherits.rotation.verify_timeout, 120_000);
    assert.deepEqual(inherits.restrictions.ip_allowlist, ['203.0.113.0/24']);
    assert.equal(inherits.restrictions.expires_after, 90 * 86_400_000);
  });

  it('lose to integration values, merged per field', () => {
    const [, overrides] = parse(withDefaults).integrations;

    assert.equal(overrides.owner, 'payments-team');
    assert.deepEqual(overrides.tags, ['payments']);
    assert.equal(overrides.rotation.rotation_schedule, '0 3 * * 1');
    assert.equal(overrides.rotation.rotation_period, undefined);
    assert.equal(overrides.rotation.grace_period, 7_200_000);
    assert.deepEqual(overrides.restrictions.scopes, ['read']);
    assert.deepEqual(overrides.restrictions.ip_allowlist, ['203.0.113.0/24']);
    assert.deepEqual(overrides.posture, {
      two_factor_enforced: false,
      security_audit: null,
      breach_notification: 'https://vendor.example/breach',
      last_reviewed: '2025-06-01',
    });
  });

  it('incomplete default posture skips integrations without one', () => {
    const [inherits] = parse(withDefaults).integrations;

    assert.equal(inherits.posture, undefined);
  });

  it('are not part of the parsed inventory', () => {
    const inventory = parse(withDefaults) as unknown as Record<string, unknown>;

    assert.equal('defaults' in inventory, false);
  });
});

describe('inventory fields', () => {
  const fleet = `version: 1
providers:
  aws-iam:
    rate_limit_per_second: 2.5
integrations:
  - id: aws-one
    provider: aws-iam
    config: { user_name: one }
    management_credential: rotor/management/one
    vault_path: apps/one
    data_access: [balances, trading]
    restrictions:
      usage_limits:
        requests_per_day: 10000
  - id: kraken
    provider: manual
    config: { vendor: Kraken }
    last_rotated: "2025-01-15"
`;

  it('rate limit overrides by provider', () => {
    assert.deepEqual(rateLimitOverrides(parse(fleet)), { 'aws-iam': 2.5 });
  });

  it('empty providers map gives no overrides', () => {
    assert.deepEqual(rateLimitOverrides(parse(fleet.replace(/providers:\n.*\n.*\n/, ''))), {});
  });

  it('manual integrations are told apart', () => {
    const [aws, kraken] = parse(fleet).integrations;

    assert.equal(isManualIntegration(aws), false);
    assert.equal(isManualIntegration(kraken), true);
    assert.equal(kraken.last_rotated, '2025-01-15');
    assert.equal(kraken.management_credential, undefined);
  });

  it('data access, usage limits and empty defaults', () => {
    const [aws, kraken] = parse(fleet).integrations;

    assert.deepEqual(aws.data_access, ['balances', 'trading']);
    assert.deepEqual(aws.restrictions.usage_limits, { requests_per_day: 10000 });
    assert.deepEqual(kraken.tags, []);
    assert.deepEqual(kraken.restrictions.usage_limits, {});
  });

  it('negative usage limit is rejected', () => {
    const lines = problemLines(fleet.replace('requests_per_day: 10000', 'requests_per_day: -1'));

    assert.deepEqual(lines, ['inventory.yaml:14: integrations[0].restrictions.usage_limits.requests_per_day: expected a number of 0 or more']);
  });

  it('problems are ordered by line', () => {
    const text = fleet.replace('rate_limit_per_second: 2.5', 'rate_limit_per_second: 0').replace('vendor: Kraken', 'vendor: ""').replace('data_access: [balances, trading]', 'data_access: [""]');

    const lines = problemLines(text);

    assert.deepEqual(lines, [
      'inventory.yaml:4: providers.aws-iam.rate_limit_per_second: expected a number greater than 0',
      'inventory.yaml:11: integrations[0].data_access[0]: expected a non-empty string',
      'inventory.yaml:17: integrations[1].config.vendor: expected the vendor name, such as Kraken',
    ]);
  });

  it('unknown config field of a non-strict provider schema', () => {
    // A plain zod object drops unknown fields, so the inventory check reports them itself.
    const lenient: Provider = { ...manualProvider, name: 'lenient', configSchema: z.object({ account: z.string() }) };
    const text = 'version: 1\nintegrations:\n  - id: one\n    provider: lenient\n    config: { account: a, acount: b }\n    management_credential: m\n    vault_path: v\n';

    const error = (() => {
      try {
        parseInventory(text, 'inventory.yaml', { providers: [lenient] });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();

    assert.ok(error instanceof InventoryError);
    assert.deepEqual(error.message.split('\n'), ['inventory.yaml:5: integrations[0].config.acount: unknown field "acount"; expected one of: account']);
  });

  it('provider checks are skipped without providers', () => {
    const text = fleet.replace('provider: aws-iam', 'provider: okx');

    const inventory = parseInventory(text, 'inventory.yaml');

    assert.equal(inventory.integrations[0].provider, 'okx');
  });
});

describe('cidrProblem', () => {
  const valid = ['10.0.0.0/8', '203.0.113.7', '203.0.113.7/32', '0.0.0.0/0', '2001:db8::/32', '2001:db8::1', '::/0', '::ffff:203.0.113.0/120'];
  for (const cidr of valid) {
    it(`accepts ${cidr}`, () => {
      assert.equal(cidrProblem(cidr), undefined);
    });
  }

  const invalid = ['', '10.0.0.0/', '10.0.0.0/8/8', '127.1', '0x7f.0.0.1', '010.0.0.1', '10.0.0.0/-1', '10.0.0.0/08x', 'fe80::1%eth0', '2001:db8::/129', 'example.com'];
  for (const cidr of invalid) {
    it(`rejects "${cidr}"`, () => {
      assert.ok(cidrProblem(cidr));
    });
  }
});

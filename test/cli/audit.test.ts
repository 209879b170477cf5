import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { ProviderCapabilities } from '../../providers/contract';
import { listProviders } from '../../providers/registry';
import { auditIntegration, type Finding } from '../../shared/audit';
import { readStoredKeyState } from '../../shared/integration-state';
import { parseInventory } from '../../shared/inventory';
import { findFreePort } from '../../shared/local-services';
import type { VaultStore } from '../../shared/vault';
import { runCli, type CliResult } from '../support/cli';
import { testVault } from '../support/environment';
import {
  awsEntry,
  awsEntryPaths,
  dateDaysAgo,
  daysAgo,
  reviewedPosture,
  seedHealthyAwsEntry,
  seedManagementCredential,
  seedRotatedKey,
  writeInventoryDocument,
} from '../inventory/fixtures';

interface AuditJson {
  integrations: number;
  failOn: string;
  failing: number;
  counts: Record<string, number>;
  findings: Finding[];
}

async function audit(integrations: unknown[], args: string[] = []): Promise<CliResult & { report?: AuditJson }> {
  const file = writeInventoryDocument({ integrations });
  const result = await runCli(['audit', '--file', file, '--format', 'json', ...args]);
  const report = result.stdout.trim().startsWith('{') ? (JSON.parse(result.stdout) as AuditJson) : undefined;
  return { ...result, report };
}

function checksOf(report: AuditJson | undefined): Array<[string, string]> {
  return (report?.findings ?? []).map((finding) => [finding.severity, finding.check]);
}

describe('rotor audit', () => {
  let vault: VaultStore;

  before(async () => {
    vault = await testVault();
  });

  it('healthy integration has no findings', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths);
    const file = writeInventoryDocument({ integrations: [awsEntry(paths)] });

    const result = await runCli(['audit', '--file', file]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'No findings in 1 integration.\n');
    assert.equal(result.stderr, '');
  });

  it('overdue rotation is high and fails the default audit', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths, 40);
    const dueDate = daysAgo(10).toISOString().slice(0, 10);

    const result = await audit([awsEntry(paths)]);

    assert.equal(result.code, 1);
    assert.deepEqual(result.report?.findings, [
      {
        integration: paths.id,
        severity: 'high',
        check: 'rotation-overdue',
        message: `key is 40 days old and was due on ${dueDate} (every 30d); rotate it with \`rotor rotate ${paths.id}\``,
      },
    ]);
    assert.equal(result.stderr, 'Audit failed: 1 finding at or above high.\n');
  });

  it('fail-on critical passes a high finding', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths, 40);

    const result = await audit([awsEntry(paths)], ['--fail-on', 'critical']);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.report?.failing, 0);
    assert.equal(result.report?.counts.high, 1);
  });

  it('key older than twice its period is critical', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths, 70);

    const result = await audit([awsEntry(paths)], ['--fail-on', 'critical']);

    assert.equal(result.code, 1);
    assert.deepEqual(checksOf(result.report), [['critical', 'rotation-overdue']]);
    assert.equal(
      result.report?.findings[0].message,
      `key is 70 days old, more than twice its rotation interval of 30d (due ${daysAgo(40).toISOString().slice(0, 10)}); rotate it with \`rotor rotate ${paths.id}\``,
    );
  });

  it('missing management credential is high', async () => {
    const paths = awsEntryPaths();
    await seedRotatedKey(vault, paths.vaultPath, daysAgo(1));

    const result = await audit([awsEntry(paths)]);

    assert.equal(result.code, 1);
    assert.deepEqual(result.report?.findings, [
      {
        integration: paths.id,
        severity: 'high',
        check: 'management-credential-missing',
        message: `management credential missing: nothing at secret/${paths.managementCredential} in Vault, so rotations fail in planning; write the aws-iam credential there (\`rotor providers\` lists its fields)`,
      },
    ]);
  });

  it('management credential with wrong fields is high', async () => {
    const paths = awsEntryPaths();
    await seedRotatedKey(vault, paths.vaultPath, daysAgo(1));
    await vault.writeSecret(paths.managementCredential, { access_key_id: 'test-admin-key-id', secret: 'misnamed-field-value' });

    const result = await audit([awsEntry(paths)]);

    assert.equal(result.code, 1);
    assert.deepEqual(checksOf(result.report), [['high', 'management-credential-invalid']]);
    assert.equal(
      result.report?.findings[0].message,
      `management credential at secret/${paths.managementCredential} does not match what aws-iam expects (fields: secret_access_key), so rotations fail in planning; fix the stored fields`,
    );
    assert.ok(!result.stdout.includes('misnamed-field-value'));
  });

  it('missing current key is medium', async () => {
    const paths = awsEntryPaths();
    await seedManagementCredential(vault, paths.managementCredential);

    const atDefault = await audit([awsEntry(paths)]);
    const atMedium = await audit([awsEntry(paths)], ['--fail-on', 'medium']);

    assert.equal(atDefault.code, 0, atDefault.stderr);
    assert.deepEqual(atDefault.report?.findings, [
      {
        integration: paths.id,
        severity: 'medium',
        check: 'current-key-missing',
        message: `no current key at secret/${paths.vaultPath} in Vault, so consumers have nothing to read; run \`rotor rotate ${paths.id}\` to create one`,
      },
    ]);
    assert.equal(atMedium.code, 1);
    assert.equal(atMedium.stderr, 'Audit failed: 1 finding at or above medium.\n');
  });

  it('restrictions the provider cannot apply are medium', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths);

    const result = await audit([awsEntry(paths, { restrictions: { ip_allowlist: ['203.0.113.0/24'], scopes: ['read'], expires_after: '90d' } })]);

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      result.report?.findings.map((finding) => finding.message),
      [
        'restrictions.expires_after is set but not applied by the provider: aws-iam keys have no expiry; enforce it another way or remove it',
        'restrictions.ip_allowlist is set but not applied by the provider: aws-iam keys have no IP allowlist; enforce it another way or remove it',
        'restrictions.scopes is set but not applied by the provider: aws-iam keys have no scopes; enforce it another way or remove it',
      ],
    );
    assert.deepEqual(checksOf(result.report), [
      ['medium', 'restriction-not-applied'],
      ['medium', 'restriction-not-applied'],
      ['medium', 'restriction-not-applied'],
    ]);
  });

  it('vendor posture findings', async () => {
    const missing = awsEntryPaths('missing');
    const weak = awsEntryPaths('weak');
    await seedHealthyAwsEntry(vault, missing);
    await seedHealthyAwsEntry(vault, weak);
    const integrations = [
      awsEntry(missing, { posture: undefined }),
      awsEntry(weak, { posture: reviewedPosture({ two_factor_enforced: false, security_audit: null, breach_notification: null, last_reviewed: dateDaysAgo(400) }) }),
    ];

    const atDefault = await audit(integrations);
    const atLow = await audit(integrations, ['--fail-on', 'low']);

    assert.equal(atDefault.code, 0, atDefault.stderr);
    assert.deepEqual(atDefault.report?.findings, [
      {
        integration: missing.id,
        severity: 'medium',
        check: 'posture-missing',
        message: 'vendor posture not recorded; add posture with two_factor_enforced, security_audit, breach_notification and last_reviewed',
      },
      {
        integration: weak.id,
        severity: 'medium',
        check: 'two-factor-not-enforced',
        message: 'the vendor account does not enforce two-factor authentication; enforce it and set posture.two_factor_enforced: true',
      },
      {
        integration: weak.id,
        severity: 'low',
        check: 'no-breach-notification',
        message: 'the vendor has no breach notification policy on record (posture.breach_notification is null)',
      },
      { integration: weak.id, severity: 'low', check: 'no-security-audit', message: 'the vendor publishes no security audit report (posture.security_audit is null)' },
      {
        integration: weak.id,
        severity: 'low',
        check: 'posture-stale',
        message: `vendor posture last reviewed on ${dateDaysAgo(400)}, 400 days ago (more than 365); review it and update posture.last_reviewed`,
      },
    ]);
    assert.equal(atLow.code, 1);
    assert.equal(atLow.stderr, 'Audit failed: 5 findings at or above low.\n');
  });

  it('no rotation policy is low', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths);

    const result = await audit([awsEntry(paths, { rotation: { grace_period: '1h' } })], ['--fail-on', 'low']);

    assert.equal(result.code, 1);
    assert.deepEqual(result.report?.findings, [
      {
        integration: paths.id,
        severity: 'low',
        check: 'no-rotation-policy',
        message: 'neither rotation_period nor rotation_schedule is set, so the key is never due; set one of them',
      },
    ]);
  });

  it('manual keys: info, overdue and allowlist findings', async () => {
    const manual = (id: string, fields: Record<string, unknown>) => ({
      id,
      provider: 'manual',
      config: { vendor: 'Kraken' },
      rotation: { rotation_period: '90d' },
      restrictions: { ip_allowlist: ['203.0.113.0/24'] },
      posture: reviewedPosture(),
      ...fields,
    });

    const result = await audit([
      manual('kraken-fresh', { last_rotated: dateDaysAgo(10) }),
      manual('kraken-overdue', { last_rotated: dateDaysAgo(100) }),
      manual('kraken-open', { last_rotated: dateDaysAgo(10), restrictions: { scopes: ['full'] } }),
    ]);

    assert.equal(result.code, 1);
    assert.deepEqual(result.report?.findings, [
      {
        integration: 'kraken-overdue',
        severity: 'high',
        check: 'rotation-overdue',
        message: `key is 100 days old and was due on ${dateDaysAgo(10)} (every 90d); rotate it by hand and update last_rotated`,
      },
      { integration: 'kraken-open', severity: 'medium', check: 'broad-scopes', message: 'restrictions.scopes includes "full", which grants broad access; list narrower scopes' },
      {
        integration: 'kraken-open',
        severity: 'medium',
        check: 'no-ip-allowlist',
        message: 'no restrictions.ip_allowlist, so the key works from any address; if Kraken supports IP allowlists, set one in its console and record it',
      },
      ...['kraken-fresh', 'kraken-open', 'kraken-overdue'].map((integration) => ({
        integration,
        severity: 'info',
        check: 'manual-rotation',
        message: 'cannot be rotated automatically, because Kraken has no key-management API; rotate by hand and update last_rotated',
      })),
    ]);
  });

  it('info findings never fail the audit', async () => {
    const result = await audit(
      [{ id: 'github-ci', provider: 'manual', config: { vendor: 'GitHub' }, last_rotated: dateDaysAgo(1), rotation: { rotation_period: '30d' }, restrictions: { ip_allowlist: ['198.51.100.0/24'] }, posture: reviewedPosture() }],
      ['--fail-on', 'low'],
    );

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(checksOf(result.report), [['info', 'manual-rotation']]);
  });

  it('table output ends with a summary', async () => {
    const paths = awsEntryPaths();
    await seedHealthyAwsEntry(vault, paths, 40);
    const file = writeInventoryDocument({ integrations: [awsEntry(paths, { posture: undefined })] });

    const result = await runCli(['audit', '--file', file]);

    assert.equal(result.code, 1);
    const lines = result.stdout.split('\n');
    assert.match(lines[0], /^severity\s+integration\s+check\s+finding$/);
    assert.match(lines[2], new RegExp(`^high\\s+${paths.id}\\s+rotation-overdue\\s+key is 40 days old`));
    assert.match(lines[3], new RegExp(`^medium\\s+${paths.id}\\s+posture-missing\\s+vendor posture not recorded`));
    assert.equal(lines[5], '2 findings in 1 integration: 1 high, 1 medium.');
  });

  it('unreachable Vault exits 1 and says so', async () => {
    const closedPort = await findFreePort();
    const file = writeInventoryDocument({ integrations: [awsEntry(awsEntryPaths())] });

    const result = await runCli(['audit', '--file', file], { env: { VAULT_ADDR: `http://127.0.0.1:${closedPort}` } });

    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^Cannot audit the integrations against Vault: Vault at http://127\\.0\\.0\\.1:${closedPort} is unreachable`));
  });

  it('bad input exits 2', async () => {
    const file = writeInventoryDocument({ integrations: [awsEntry(awsEntryPaths())] });
    const invalid = writeInventoryDocument({ integrations: [awsEntry(awsEntryPaths(), { restrictions: { ip_allowlist: ['10.0.0.1/8'] } })] });

    const badSeverity = await runCli(['audit', '--file', file, '--fail-on', 'severe']);
    const badInventory = await runCli(['audit', '--file', invalid]);

    assert.equal(badSeverity.code, 2);
    assert.match(badSeverity.stderr, /Allowed choices are low, medium, high, critical/);
    assert.equal(badInventory.code, 2);
    assert.match(badInventory.stderr, /integrations\[0\]\.restrictions\.ip_allowlist\[0\]: "10\.0\.0\.1\/8" has bits set after its \/8 prefix/);
  });
});

describe('audit of provider restrictions', () => {
  // Checked against made-up capabilities that declare all three, so the findings do not depend
  // on one built-in provider's config. The key state is read from Vault.
  const capable: ProviderCapabilities = { ipAllowlist: true, scopes: true, expiry: true, usageData: false, defaultRateLimitPerSecond: 1 };

  async function findingsFor(restrictions: Record<string, unknown>, configuredScopes: string[] = []): Promise<Array<[string, string, string]>> {
    const vault = await testVault();
    const paths = awsEntryPaths('capable');
    await seedHealthyAwsEntry(vault, paths);
    const inventory = parseInventory(JSON.stringify({ version: 1, integrations: [awsEntry(paths, { restrictions })] }), 'inventory.yaml', { providers: listProviders() });
    const [entry] = inventory.integrations;

    const keyState = await readStoredKeyState(vault, entry);
    const findings = auditIntegration({ entry, capabilities: capable, configuredScopes, keyState, managementCredential: { status: 'present' }, kvMount: vault.kvMount, now: new Date() });
    return findings.map((finding) => [finding.severity, finding.check, finding.message]);
  }

  it('no allowlist, scopes or expiry', async () => {
    assert.deepEqual(await findingsFor({}), [
      ['high', 'no-ip-allowlist', 'no restrictions.ip_allowlist, so the key works from any address; aws-iam can bind keys to IP addresses'],
      ['medium', 'broad-scopes', "no restrictions.scopes, so new keys get the provider's broadest permissions; list the scopes consumers need"],
      ['low', 'no-expiry', 'no restrictions.expires_after, although aws-iam can make keys expire; set one to bound how long a leaked key works'],
    ]);
  });

  it('allowlist of every address and admin scope', async () => {
    assert.deepEqual(await findingsFor({ ip_allowlist: ['0.0.0.0/0', '::/0'], scopes: ['read', 'admin', '*'], expires_after: '90d' }), [
      ['high', 'no-ip-allowlist', "restrictions.ip_allowlist contains 0.0.0.0/0 and ::/0, which allows every address; list the consumers' addresses instead"],
      ['medium', 'broad-scopes', 'restrictions.scopes includes "admin", "*", which grants broad access; list narrower scopes'],
    ]);
  });

  it('scopes from the provider config count', async () => {
    const narrow = await findingsFor({ ip_allowlist: ['203.0.113.0/24'], expires_after: '90d' }, ['read_only']);
    const broad = await findingsFor({ ip_allowlist: ['203.0.113.0/24'], expires_after: '90d' }, ['full']);

    assert.deepEqual(narrow, []);
    assert.deepEqual(broad, [['medium', 'broad-scopes', 'the provider config grants "full", which grants broad access; list narrower scopes']]);
  });

  it('narrow restrictions raise nothing', async () => {
    assert.deepEqual(await findingsFor({ ip_allowlist: ['203.0.113.0/24', '2001:db8::/48'], scopes: ['read'], expires_after: '90d' }), []);
  });
});

import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { InventoryRow } from '../../cli/commands/inventory';
import { findFreePort } from '../../shared/local-services';
import type { VaultStore } from '../../shared/vault';
import { runCli } from '../support/cli';
import { testVault } from '../support/environment';
import { awsEntry, awsEntryPaths, dateDaysAgo, daysAgo, reviewedPosture, seedRotatedKey, writeInventoryDocument, type AwsEntryPaths } from './fixtures';

describe('rotor inventory', () => {
  let vault: VaultStore;
  let overdue: AwsEntryPaths;
  let fresh: AwsEntryPaths;
  let handWritten: AwsEntryPaths;
  let empty: AwsEntryPaths;
  let file: string;

  before(async () => {
    vault = await testVault();
    [overdue, fresh, handWritten, empty] = [awsEntryPaths('overdue'), awsEntryPaths('fresh'), awsEntryPaths('stored'), awsEntryPaths('empty')];
    await seedRotatedKey(vault, overdue.vaultPath, daysAgo(40));
    await seedRotatedKey(vault, fresh.vaultPath, new Date(Date.now() - 3_600_000));
    await vault.writeSecret(handWritten.vaultPath, { access_key_id: 'hand-written-id', secret_access_key: 'hand-written-secret' });

    file = writeInventoryDocument({
      integrations: [
        awsEntry(overdue, { tags: ['ci', 'production'], restrictions: { scopes: ['read', 'write'] } }),
        awsEntry(fresh, { rotation: { rotation_schedule: '0 3 * * *', rotation_window: '23h' }, restrictions: { ip_allowlist: ['203.0.113.0/24'] } }),
        awsEntry(handWritten),
        awsEntry(empty, { posture: undefined }),
        {
          id: 'kraken-treasury',
          provider: 'manual',
          owner: 'treasury, "ops"',
          config: { vendor: 'Kraken' },
          last_rotated: dateDaysAgo(100),
          rotation: { rotation_period: '90d' },
          restrictions: { ip_allowlist: ['2001:db8::/48'] },
          posture: reviewedPosture({ two_factor_enforced: false, security_audit: null }),
        },
      ],
    });
  });

  it('json reports each integration from Vault', async () => {
    const result = await runCli(['inventory', '--file', file, '--format', 'json']);

    assert.equal(result.code, 0, result.stderr);
    const rows = JSON.parse(result.stdout) as InventoryRow[];
    const byId = new Map(rows.map((row) => [row.id, row]));
    assert.deepEqual(
      rows.map((row) => row.id),
      [overdue.id, fresh.id, handWritten.id, empty.id, 'kraken-treasury'],
    );

    const overdueRow = byId.get(overdue.id);
    assert.equal(overdueRow?.lastRotationSource, 'rotor');
    assert.equal(overdueRow?.keyAgeDays, 40);
    assert.equal(overdueRow?.overdue, true);
    assert.equal(overdueRow?.nextDueAt?.slice(0, 10), daysAgo(10).toISOString().slice(0, 10));
    assert.equal(overdueRow?.ipRestricted, 'no');
    assert.deepEqual(overdueRow?.scopes, ['read', 'write']);
    assert.deepEqual(overdueRow?.tags, ['ci', 'production']);
    assert.equal(overdueRow?.owner, 'platform-tests');

    const freshRow = byId.get(fresh.id);
    assert.equal(freshRow?.keyAgeDays, 0);
    assert.equal(freshRow?.overdue, false);
    assert.match(freshRow?.nextDueAt ?? '', /T03:00:00\.000Z$/);
    assert.equal(freshRow?.ipRestricted, 'not-applied');

    const handWrittenRow = byId.get(handWritten.id);
    assert.equal(handWrittenRow?.lastRotationSource, 'vault-version');
    assert.equal(handWrittenRow?.keyAgeDays, 0);

    const emptyRow = byId.get(empty.id);
    assert.equal(emptyRow?.lastRotatedAt, null);
    assert.equal(emptyRow?.keyAgeDays, null);
    assert.equal(emptyRow?.nextDueAt, null);
    assert.equal(emptyRow?.posture, null);

    const krakenRow = byId.get('kraken-treasury');
    assert.equal(krakenRow?.lastRotationSource, 'inventory');
    assert.equal(krakenRow?.lastRotatedAt, `${dateDaysAgo(100)}T00:00:00.000Z`);
    assert.equal(krakenRow?.overdue, true);
    assert.equal(krakenRow?.ipRestricted, 'yes');
    assert.equal(krakenRow?.posture?.two_factor_enforced, false);
  });

  it('table has one row per integration', async () => {
    const result = await runCli(['inventory', '--file', file]);

    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.split('\n');
    assert.match(lines[0], /^id\s+provider\s+owner\s+last rotation\s+age \(days\)\s+next due \(UTC\)\s+overdue\s+ip-restricted\s+scopes\s+tags\s+posture$/);
    assert.match(result.stdout, new RegExp(`${overdue.id}\\s+aws-iam\\s+platform-tests\\s+${daysAgo(40).toISOString().slice(0, 10)}\\s+40\\s+\\S+ \\S+\\s+yes\\s+no\\s+read,write\\s+ci,production\\s+2FA, audit, breach policy, reviewed `));
    assert.match(result.stdout, new RegExp(`${handWritten.id}\\s+aws-iam\\s+platform-tests\\s+\\S+ \\(stored\\)\\s+0\\s`));
    assert.match(result.stdout, new RegExp(`${empty.id}\\s+aws-iam\\s+platform-tests\\s+no key\\s+-\\s+-\\s+no\\s+no\\s+-\\s+-\\s+not recorded`));
    assert.match(result.stdout, /kraken-treasury\s+manual\s+treasury, "ops"\s+\S+\s+100\s+.*\s+yes\s+yes\s+-\s+-\s+no 2FA, no audit, breach policy, reviewed /);
    assert.match(result.stdout, /\n5 integrations, 2 overdue\.\n$/);
  });

  it('csv quotes cells with commas and quotes', async () => {
    const result = await runCli(['inventory', '--file', file, '--format', 'csv']);

    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\r\n');
    assert.equal(lines[0], 'id,provider,owner,last rotation,age (days),next due (UTC),overdue,ip-restricted,scopes,tags,posture');
    assert.equal(lines.length, 6);
    assert.ok(lines[5].startsWith('kraken-treasury,manual,"treasury, ""ops""",'), lines[5]);
    assert.ok(lines[1].includes(',"read,write","ci,production",'), lines[1]);
  });

  it('markdown prints a table', async () => {
    const result = await runCli(['inventory', '--file', file, '--format', 'markdown']);

    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines[0], '| id | provider | owner | last rotation | age (days) | next due (UTC) | overdue | ip-restricted | scopes | tags | posture |');
    assert.equal(lines[1], '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    assert.equal(lines.length, 7);
  });

  it('unreachable Vault exits 1 and says so', async () => {
    const closedPort = await findFreePort();

    const result = await runCli(['inventory', '--file', file], { env: { VAULT_ADDR: `http://127.0.0.1:${closedPort}` } });

    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^Cannot read the key ages from Vault: Vault at http://127\\.0\\.0\\.1:${closedPort} is unreachable \\(ECONNREFUSED\\)`));
    assert.equal(result.stdout, '');
  });

  it('manual-only inventory needs no Vault', async () => {
    const manualOnly = writeInventoryDocument({
      integrations: [{ id: 'github-ci-token', provider: 'manual', config: { vendor: 'GitHub' }, last_rotated: dateDaysAgo(5), rotation: { rotation_period: '30d' } }],
    });

    const result = await runCli(['inventory', '--file', manualOnly, '--format', 'json'], { env: { VAULT_ADDR: '', VAULT_TOKEN: '' } });

    assert.equal(result.code, 0, result.stderr);
    const [row] = JSON.parse(result.stdout) as InventoryRow[];
    assert.equal(row.keyAgeDays, 5);
    assert.equal(row.overdue, false);
  });

  it('invalid inventory exits 2', async () => {
    const invalid = writeInventoryDocument({ integrations: [awsEntry(awsEntryPaths(), { rotation: { rotation_period: 'monthly' } })] });

    const result = await runCli(['inventory', '--file', invalid]);

    assert.equal(result.code, 2);
    assert.match(result.stderr, /integrations\[0\]\.rotation\.rotation_period: expected a duration with a unit, such as 90s, 15m, 12h or 30d/);
  });

  it('unknown format exits 2', async () => {
    const result = await runCli(['inventory', '--file', file, '--format', 'yaml']);

    assert.equal(result.code, 2);
    assert.match(result.stderr, /Allowed choices are table, json, markdown, csv/);
  });
});

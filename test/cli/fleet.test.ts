import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VaultStore } from '../../shared/vault';
import { prepareAwsIntegration } from '../support/aws-integration';
import { runCli } from '../support/cli';
import { startTestWorker, testVault, uniqueSuffix, type RunningTestWorker } from '../support/environment';
import { writeInventoryFile } from '../support/inventory-files';

describe('rotor rotate --all', () => {
  let vault: VaultStore;
  let worker: RunningTestWorker;
  const taskQueue = `rotor-fleet-${uniqueSuffix()}`;
  const env = { ROTOR_TASK_QUEUE: taskQueue };

  before(async () => {
    vault = await testVault();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
  });

  it('rotates every integration and prints a summary', async () => {
    const fleet = [await prepareAwsIntegration(vault), await prepareAwsIntegration(vault), await prepareAwsIntegration(vault)];
    const file = writeInventoryFile(
      fleet.map((aws) => aws.integration),
      { grace_period: '1s' },
    );

    const result = await runCli(['rotate', '--all', '--file', file], { env, timeoutMs: 120_000 });

    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /aws-iam: starting 3 rotations, one every 0\.40 s \(rate limit 5\/s\)/);
    assert.match(result.stdout, /rotations: done 3, running 0, failed 0 of 3/);
    for (const aws of fleet) {
      assert.match(result.stdout, new RegExp(`${aws.integration.id}\\s+aws-iam\\s+completed\\s+new key \\w+, Vault version 2`));
      assert.equal((await aws.listKeyIds()).length, 1);
      assert.notDeepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
    }
  });

  it('exits 1 and names the failed rotation', async () => {
    const healthy = await prepareAwsIntegration(vault);
    const broken = await prepareAwsIntegration(vault);
    await vault.destroySecret(broken.integration.managementCredentialPath);
    const file = writeInventoryFile([healthy.integration, broken.integration], { grace_period: '1s' }, { providers: { 'aws-iam': { rate_limit_per_second: 20 } } });

    const result = await runCli(['rotate', '--provider', 'aws-iam', '--file', file], { env, timeoutMs: 120_000 });

    assert.equal(result.code, 1);
    assert.match(result.stdout, /aws-iam: starting 2 rotations, one every 0\.10 s \(rate limit 20\/s\)/);
    assert.match(result.stdout, new RegExp(`${healthy.integration.id}\\s+aws-iam\\s+completed`));
    assert.match(result.stdout, new RegExp(`${broken.integration.id}\\s+aws-iam\\s+failed\\s+Rotation of ${broken.integration.id} failed in phase planning: The management credential`));
    assert.match(result.stderr, /1 of 2 rotations failed\./);
  });

  it('dry run selects by tag and changes nothing', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventoryFile([aws.integration], { grace_period: '1s' }, { tags: ['payments'] });

    const result = await runCli(['rotate', '--tag', 'payments', '--dry-run', '--file', file], { env, timeoutMs: 60_000 });

    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, new RegExp(`${aws.integration.id}\\s+aws-iam\\s+dry-run\\s+would create a new aws-iam key`));
    assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
  });

  it('reports a selection that matches nothing', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventoryFile([aws.integration], { grace_period: '1s' });

    const result = await runCli(['rotate', '--tag', 'no-such-tag', '--file', file], { env });

    assert.equal(result.code, 2);
    assert.match(result.stderr, /No integration in .* matches tag no-such-tag\./);
  });
});

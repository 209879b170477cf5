import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec } from '../../workflows/rotation-types';
import { prepareAwsIntegration, type AwsTestIntegration } from '../support/aws-integration';
import { runCli } from '../support/cli';
import { rotationWorkflowId } from '../../shared/task-queues';
import { startTestWorker, testClient, testVault, uniqueSuffix, type RunningTestWorker } from '../support/environment';
import { writeInventoryFile } from '../support/inventory-files';

/** Returns a loopback port nothing listens on: the OS picks it, and the server closes again. */
async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function writeInventory(integration: IntegrationSpec, gracePeriod: string): string {
  return writeInventoryFile([integration], { grace_period: gracePeriod });
}

describe('rotor rotate, status, finish-grace and rollback', () => {
  let vault: VaultStore;
  let worker: RunningTestWorker;
  const taskQueue = `rotor-cli-${uniqueSuffix()}`;
  const env = { ROTOR_TASK_QUEUE: taskQueue };

  before(async () => {
    vault = await testVault();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
  });

  it('rotate --wait prints the phases and the outcome', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventory(aws.integration, '1s');

    const result = await runCli(['rotate', aws.integration.id, '--file', file, '--wait'], { env });

    assert.equal(result.code, 0, result.stderr);
    const phases = result.stdout.split('\n').filter((line) => /^\s+\d\d:\d\d:\d\d\s+\S+/.test(line)).map((line) => line.trim().split(/\s+/)[1]);
    assert.deepEqual(phases, ['planning', 'creating', 'verifying', 'promoting', 'grace', 'revoking', 'completed']);
    assert.match(result.stdout, new RegExp(`old key: ${aws.account.currentKey.access_key_id} \\(revoked\\)`));
    assert.match(result.stdout, /Vault version: 2/);
  });

  it('rotate --dry-run lists the plan and changes nothing', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventory(aws.integration, '1s');

    const result = await runCli(['rotate', aws.integration.id, '--file', file, '--dry-run'], { env });

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Dry run of .*: nothing was changed\./);
    assert.match(result.stdout, /- would create a new aws-iam key labelled rotor-/);
    assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
  });

  it('refuses a second rotate while one runs, then finish-grace ends it', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventory(aws.integration, '10m');
    const started = await runCli(['rotate', aws.integration.id, '--file', file], { env });
    await waitForStatus(aws, /phase: grace/);

    const second = await runCli(['rotate', aws.integration.id, '--file', file], { env });
    const status = await runCli(['status', aws.integration.id], { env });
    const finish = await runCli(['finish-grace', aws.integration.id, '--wait'], { env });

    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, /Follow it with `rotor status /);
    assert.equal(second.code, 2);
    assert.match(second.stderr, new RegExp(`A rotation of ${aws.integration.id} is already running \\(workflow rotate-${aws.integration.id}, phase grace\\)`));
    assert.match(status.stdout, /is RUNNING/);
    assert.match(status.stdout, /grace ends: /);
    assert.equal(finish.code, 0, finish.stderr);
    assert.match(finish.stdout, /Rotation of .* completed\./);
    assert.equal((await aws.listKeyIds()).length, 1);
  });

  it('rollback --wait gives consumers the previous key', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventory(aws.integration, '10m');
    await runCli(['rotate', aws.integration.id, '--file', file], { env });
    await waitForStatus(aws, /phase: grace/);

    const rollback = await runCli(['rollback', aws.integration.id, '--reason', 'smoke test failed', '--wait'], { env });

    assert.equal(rollback.code, 0, rollback.stderr);
    assert.match(rollback.stdout, /rolled back: consumers have .* again/);
    assert.deepEqual((await vault.readSecret(aws.integration.vaultPath))?.data, aws.account.currentKey);
  });

  it('rollback outside grace is refused with exit code 2', async () => {
    const aws = await prepareAwsIntegration(vault);

    const result = await runCli(['rollback', aws.integration.id], { env });

    assert.equal(result.code, 2);
    assert.match(result.stderr, new RegExp(`No running rotation of ${aws.integration.id}`));
  });

  it('a failed rotation exits 1 and names the phase', async () => {
    const aws = await prepareAwsIntegration(vault);
    await vault.destroySecret(aws.integration.managementCredentialPath);
    const file = writeInventory(aws.integration, '1s');

    const result = await runCli(['rotate', aws.integration.id, '--file', file, '--wait'], { env });

    assert.equal(result.code, 1);
    assert.match(result.stderr, /failed in phase planning: The management credential of .* is missing/);
  });

  it('status shows the last failure of a retried step', async () => {
    const aws = await prepareAwsIntegration(vault);
    const closedPort = await freeLoopbackPort();
    const unreachable = { ...aws.integration, providerConfig: { ...aws.integration.providerConfig, endpoint: `http://127.0.0.1:${closedPort}` } };
    const file = writeInventory(unreachable, '1s');

    await runCli(['rotate', aws.integration.id, '--file', file], { env });
    try {
      await waitForStatus(aws, /retrying: planRotation, attempt \d+, last failure: .*ECONNREFUSED/);
    } finally {
      const client = await testClient();
      await client.workflow.getHandle(rotationWorkflowId(aws.integration.id)).terminate('test cleanup');
      await client.connection.close();
    }
  });

  it('an unknown integration exits 2 and lists the known ones', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventory(aws.integration, '1s');

    const result = await runCli(['rotate', 'no-such-integration', '--file', file], { env });

    assert.equal(result.code, 2);
    assert.match(result.stderr, new RegExp(`integrations: no integration with id "no-such-integration"; the inventory has: ${aws.integration.id}`));
  });

  async function waitForStatus(aws: AwsTestIntegration, pattern: RegExp): Promise<void> {
    const deadline = Date.now() + 30_000;
    let last = '';
    while (Date.now() < deadline) {
      last = (await runCli(['status', aws.integration.id], { env })).stdout;
      if (pattern.test(last)) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert.fail(`status never matched ${pattern}; last output:\n${last}`);
  }
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { startRotation } from '../../cli/start-rotation';
import { repositoryRoot } from '../../shared/tools';
import { prepareAwsIntegration } from '../support/aws-integration';
import { testClient, testEnvironment, testVault, uniqueSuffix } from '../support/environment';

/** Waits until the server reports the activity as started by a worker. */
async function waitForStartedActivity(handle: WorkflowHandle, activityType: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    if (pending.some((activity) => activity.activityType?.name === activityType && activity.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED)) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${activityType} never started`);
}

describe('worker shutdown', () => {
  it('logs the activities still running when SIGTERM arrives', async () => {
    // An endpoint that accepts connections and never responds keeps planRotation running.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const taskQueue = `rotor-shutdown-${uniqueSuffix()}`;
    const client = await testClient();
    const aws = await prepareAwsIntegration(await testVault(), { providerConfig: { endpoint: silentUrl } });

    const worker = spawn(process.execPath, [path.join(repositoryRoot, 'bin', 'rotor.js'), 'worker'], {
      env: { ...process.env, ROTOR_TASK_QUEUE: taskQueue, ROTOR_SHUTDOWN_GRACE: '1s' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    worker.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    worker.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));

    try {
      const handle = await startRotation(client, aws.integration, { taskQueue, dryRun: false, requestedBy: 'test' });
      await waitForStartedActivity(handle, 'planRotation');
      worker.kill('SIGTERM');
      const code = await exited;
      await handle.terminate('test finished');

      const lines = output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg: string; runningActivities?: Array<{ activityType: string }> });
      const shuttingDown = lines.find((line) => line.msg.startsWith('worker shutting down'));
      const graceOver = lines.find((line) => line.msg.startsWith('grace period over'));
      assert.equal(code, 0, output);
      assert.deepEqual(shuttingDown?.runningActivities?.map((activity) => activity.activityType), ['planRotation'], output);
      assert.deepEqual(graceOver?.runningActivities?.map((activity) => activity.activityType), ['planRotation'], output);
      assert.ok(lines.some((line) => line.msg === 'worker stopped'), output);
    } finally {
      worker.kill('SIGKILL');
      silent.close();
      await client.connection.close();
    }
  });
});

describe('worker rate limits', () => {
  it('takes provider overrides from the inventory', async () => {
    const taskQueue = `rotor-limits-${uniqueSuffix()}`;
    const file = path.join(testEnvironment().ROTOR_TEST_WORK_DIR, `limits-${taskQueue}.yaml`);
    fs.writeFileSync(
      file,
      [
        'version: 1',
        'providers:',
        '  aws-iam:',
        '    rate_limit_per_second: 0.5',
        'integrations:',
        '  - id: aws-limited',
        '    provider: aws-iam',
        '    config: { user_name: limited, endpoint: "http://127.0.0.1:9" }',
        '    management_credential: rotor/management/aws-limited',
        '    vault_path: apps/limited/aws',
        '',
      ].join('\n'),
    );
    const worker = spawn(process.execPath, [path.join(repositoryRoot, 'bin', 'rotor.js'), 'worker', '--file', file], {
      env: { ...process.env, ROTOR_TASK_QUEUE: taskQueue },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    worker.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));

    const deadline = Date.now() + 60_000;
    while (!output.includes('"worker started"') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    worker.kill('SIGTERM');
    await exited;

    const started = output
      .split('\n')
      .filter((line) => line.includes('"worker started"'))
      .map((line) => JSON.parse(line) as { providerRateLimits: Record<string, number>; taskQueues: string[] })[0];
    assert.ok(started, output);
    assert.equal(started.providerRateLimits[`${taskQueue}-provider-aws-iam`], 0.5);
    assert.equal(started.taskQueues.includes(`${taskQueue}-provider-manual`), false);
    // Provider task queues run activities only, which the SDK would warn about once per queue.
    assert.equal(output.includes('No workflows registered'), false, output);
  });
});

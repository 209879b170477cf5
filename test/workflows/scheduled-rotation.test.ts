import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@temporalio/client';
import { rotationWorkflowId } from '../../shared/task-queues';
import type { VaultStore } from '../../shared/vault';
import { finishGraceSignal } from '../../workflows/rotate-key';
import type { ScheduledRotationResult } from '../../workflows/scheduled-rotation';
import { prepareAwsIntegration } from '../support/aws-integration';
import { runCli } from '../support/cli';
import { startTestWorker, testClient, testVault, uniqueSuffix, type RunningTestWorker } from '../support/environment';
import { writeInventoryFile } from '../support/inventory-files';
import { waitForPhase } from '../support/rotations';

describe('a rotation started by a Temporal Schedule', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  const taskQueue = `rotor-scheduled-${uniqueSuffix()}`;

  before(async () => {
    client = await testClient();
    vault = await testVault();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
  });

  it('runs under the integration id and skips while one runs', async () => {
    const aws = await prepareAwsIntegration(vault);
    const file = writeInventoryFile([aws.integration], { grace_period: '10m', rotation_period: '30d' });
    const applied = await runCli(['schedules', 'apply', '--file', file], { env: { ROTOR_TASK_QUEUE: taskQueue } });
    const schedule = client.schedule.getHandle(`rotor-${aws.integration.id}`);

    try {
      await schedule.trigger();
      const rotation = client.workflow.getHandle(rotationWorkflowId(aws.integration.id));
      await waitForPhase(rotation, 'grace');
      await schedule.trigger();
      const secondRun = await waitForScheduledRuns(schedule, 2);
      await rotation.signal(finishGraceSignal);
      const result = await rotation.result();

      assert.equal(applied.code, 0, applied.stderr);
      assert.equal(result.outcome, 'completed');
      assert.equal(result.state.integrationId, aws.integration.id);
      assert.deepEqual(await aws.listKeyIds(), [result.state.pendingKeyId]);
      assert.equal(secondRun.outcome, 'skipped');
      assert.match(secondRun.reason ?? '', new RegExp(`a rotation of ${aws.integration.id} is already running as rotate-${aws.integration.id}`));
    } finally {
      await schedule.delete();
    }
  });

  /** Waits until the schedule has started `count` runs and the last one has finished, and returns its result. */
  async function waitForScheduledRuns(schedule: ReturnType<Client['schedule']['getHandle']>, count: number): Promise<ScheduledRotationResult> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const actions = (await schedule.describe()).info.recentActions;
      if (actions.length >= count) {
        const last = actions[actions.length - 1].action;
        return client.workflow.getHandle(last.workflow.workflowId, last.workflow.firstExecutionRunId).result();
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`the schedule did not start ${count} runs in 30 s`);
  }
});

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ScheduleNotFoundError, type Client, type ScheduleDescription } from '@temporalio/client';
import { stringify } from 'yaml';
import { runCli } from '../support/cli';
import { testClient, testEnvironment, uniqueSuffix } from '../support/environment';

/**
 * `rotor schedules plan|apply` against the test Temporal server. `apply` deletes every Rotor
 * schedule that its inventory lacks, so each test removes the schedules it made before the next
 * one runs. The schedules run every 30 days or on a weekly cron, so none fires during a test,
 * and their provider endpoint is never contacted.
 */

interface TestIntegration {
  id: string;
  rotation?: Record<string, unknown>;
}

describe('rotor schedules', () => {
  let client: Client;
  const taskQueue = `rotor-schedules-${uniqueSuffix()}`;
  const env = { ROTOR_TASK_QUEUE: taskQueue };
  const touchedScheduleIds = new Set<string>();

  before(async () => {
    client = await testClient();
  });

  afterEach(async () => {
    for (const scheduleId of touchedScheduleIds) {
      await deleteIfPresent(scheduleId);
    }
    touchedScheduleIds.clear();
  });

  after(async () => {
    await client.connection.close();
  });

  function integrationId(name: string): string {
    const id = `${name}-${uniqueSuffix()}`;
    touchedScheduleIds.add(`rotor-${id}`);
    return id;
  }

  async function deleteIfPresent(scheduleId: string): Promise<void> {
    try {
      await client.schedule.getHandle(scheduleId).delete();
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) {
        throw error;
      }
    }
  }

  function describeSchedule(scheduleId: string): Promise<ScheduleDescription> {
    return client.schedule.getHandle(scheduleId).describe();
  }

  // Listing is eventually consistent, and deletes are planned from the list.
  async function waitUntilListed(scheduleIds: string[]): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const listed = new Set<string>();
      for await (const summary of client.schedule.list()) {
        listed.add(summary.scheduleId);
      }
      if (scheduleIds.every((scheduleId) => listed.has(scheduleId))) {
        return;
      }
      await delay(100);
    }
    assert.fail(`${scheduleIds.join(', ')} not listed after 10 s`);
  }

  async function rotor(command: 'plan' | 'apply', file: string, extraEnv: Record<string, string> = {}) {
    return runCli(['schedules', command, '--file', file], { env: { ...env, ...extraEnv } });
  }

  it('apply twice reports no changes the second time', async () => {
    const periodic = integrationId('sched-periodic');
    const weekly = integrationId('sched-weekly');
    const file = writeInventory([
      { id: periodic, rotation: { rotation_period: '30d' } },
      { id: weekly, rotation: { rotation_schedule: '0 3 * * 1', rotation_window: '4h' } },
    ]);

    const first = await rotor('apply', file);
    const second = await rotor('apply', file);
    const plan = await rotor('plan', file);

    assert.equal(first.code, 0, first.stderr);
    const lines = first.stdout.trim().split('\n');
    assert.equal(lines.length, 2, first.stdout);
    assert.match(lines.find((line) => line.includes(periodic)) ?? '', new RegExp(`^created rotor-${periodic}: every 30d offset [0-9dhm ]+ jitter 3d \\(window 30d\\)$`));
    assert.match(lines.find((line) => line.includes(weekly)) ?? '', new RegExp(`^created rotor-${weekly}: cron "0 3 \\* \\* 1"( shifted [0-9hm ]+)? jitter 24m \\(window 4h\\)$`));
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, 'no changes\n');
    assert.equal(plan.code, 0, plan.stderr);
    assert.equal(plan.stdout, 'no changes\n');
  });

  it('creates a schedule that starts scheduledRotation', async () => {
    const id = integrationId('sched-action');
    const file = writeInventory([{ id, rotation: { rotation_period: '30d' } }]);

    const result = await rotor('apply', file);
    const described = await describeSchedule(`rotor-${id}`);

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(described.memo, { managedBy: 'rotor', integration: id });
    assert.equal(described.action.workflowType, 'scheduledRotation');
    assert.equal(described.action.workflowId, `scheduled-rotate-${id}`);
    assert.equal(described.action.taskQueue, taskQueue);
    const [request] = described.action.args as Array<{ integration: { id: string; policy: { rotationPeriodMs: number } }; dryRun: boolean; taskQueue: string; requestedBy: string }>;
    assert.equal(request.integration.id, id);
    assert.equal(request.integration.policy.rotationPeriodMs, 30 * 86_400_000);
    assert.equal(request.dryRun, false);
    assert.equal(request.taskQueue, taskQueue);
    assert.equal(request.requestedBy, 'schedule');
    const attributes = described.action.typedSearchAttributes;
    const pairs = attributes === undefined ? [] : Array.isArray(attributes) ? attributes : attributes.getAll();
    assert.deepEqual(pairs.map((pair) => `${pair.key.name}=${String(pair.value)}`).sort(), [`RotorIntegration=${id}`, 'RotorPhase=planning', 'RotorProvider=aws-iam']);
    assert.equal(described.policies.overlap, 'SKIP');
    assert.equal(described.policies.catchupWindow, 86_400_000);
    assert.equal(described.state.paused, false);
    assert.equal(described.spec.intervals?.[0].every, 30 * 86_400_000);
    assert.equal(described.spec.jitter, 3 * 86_400_000);
  });

  it('plan after a period edit shows one update', async () => {
    const edited = integrationId('sched-edited');
    const unchanged = integrationId('sched-unchanged');
    const before = writeInventory([
      { id: edited, rotation: { rotation_period: '30d' } },
      { id: unchanged, rotation: { rotation_period: '30d' } },
    ]);
    const afterEdit = writeInventory([
      { id: edited, rotation: { rotation_period: '45d' } },
      { id: unchanged, rotation: { rotation_period: '30d' } },
    ]);
    assert.equal((await rotor('apply', before)).code, 0);

    const plan = await rotor('plan', afterEdit);

    assert.equal(plan.code, 0, plan.stderr);
    const lines = plan.stdout.trim().split('\n');
    assert.equal(lines.length, 1, plan.stdout);
    assert.match(lines[0], new RegExp(`^update rotor-${edited}: schedule every 30d offset [0-9dhm ]+ jitter 3d -> every 45d offset [0-9dhm ]+ jitter 4d 12h; `));
    assert.match(lines[0], /; workflow input changed at integration\.policy\.rotationPeriodMs$/);
    const described = await describeSchedule(`rotor-${edited}`);
    assert.equal(described.spec.intervals?.[0].every, 30 * 86_400_000, 'plan changed the schedule');

    const apply = await rotor('apply', afterEdit);
    const again = await rotor('plan', afterEdit);

    assert.equal(apply.stdout, `${lines[0].replace(/^update /, 'updated ')}\n`);
    assert.equal((await describeSchedule(`rotor-${edited}`)).spec.intervals?.[0].every, 45 * 86_400_000);
    assert.equal(again.stdout, 'no changes\n');
  });

  it('deletes the schedule of a removed integration', async () => {
    const kept = integrationId('sched-kept');
    const removed = integrationId('sched-removed');
    const unscheduled = integrationId('sched-unscheduled');
    const first = writeInventory([
      { id: kept, rotation: { rotation_period: '30d' } },
      { id: removed, rotation: { rotation_period: '30d' } },
      { id: unscheduled, rotation: { rotation_period: '30d' } },
    ]);
    const second = writeInventory([{ id: kept, rotation: { rotation_period: '30d' } }, { id: unscheduled }]);
    assert.equal((await rotor('apply', first)).code, 0);
    await waitUntilListed([`rotor-${removed}`, `rotor-${unscheduled}`]);

    const plan = await rotor('plan', second);
    const apply = await rotor('apply', second);

    assert.equal(plan.code, 0, plan.stderr);
    assert.deepEqual(plan.stdout.trim().split('\n').sort(), [
      `delete rotor-${removed}: integration no longer in the inventory`,
      `delete rotor-${unscheduled}: integration has no rotation_period or rotation_schedule`,
    ]);
    assert.equal(apply.code, 0, apply.stderr);
    await assert.rejects(describeSchedule(`rotor-${removed}`), ScheduleNotFoundError);
    await assert.rejects(describeSchedule(`rotor-${unscheduled}`), ScheduleNotFoundError);
    assert.equal((await describeSchedule(`rotor-${kept}`)).state.paused, false);
  });

  it('disable_automated_rotation pauses the schedule', async () => {
    const id = integrationId('sched-disabled');
    const disabled = writeInventory([{ id, rotation: { rotation_period: '30d', disable_automated_rotation: true } }]);
    const enabled = writeInventory([{ id, rotation: { rotation_period: '30d' } }]);

    const created = await rotor('apply', disabled);
    const pausedState = (await describeSchedule(`rotor-${id}`)).state;
    const plan = await rotor('plan', enabled);
    const apply = await rotor('apply', enabled);
    const unpausedState = (await describeSchedule(`rotor-${id}`)).state;
    const disableAgain = await rotor('plan', disabled);

    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, new RegExp(`^created rotor-${id}: every 30d .*, paused: disable_automated_rotation is set\\n$`));
    assert.equal(pausedState.paused, true);
    assert.match(pausedState.note ?? '', /disable_automated_rotation is set/);
    assert.equal(plan.stdout, `unpause rotor-${id}: disable_automated_rotation is no longer set\n`);
    assert.equal(apply.stdout, `unpaused rotor-${id}: disable_automated_rotation is no longer set\n`);
    assert.equal(unpausedState.paused, false);
    assert.equal(disableAgain.stdout, `pause rotor-${id}: disable_automated_rotation is set\n`);
  });

  it('leaves a foreign schedule unchanged and reports it', async () => {
    const foreign = integrationId('foreign');
    const stranger = `rotor-stranger-${uniqueSuffix()}`;
    const ours = integrationId('sched-ours');
    touchedScheduleIds.add(stranger);
    for (const scheduleId of [`rotor-${foreign}`, stranger]) {
      await client.schedule.create({
        scheduleId,
        spec: { intervals: [{ every: '7d' }] },
        action: { type: 'startWorkflow', workflowType: 'nightlyReport', workflowId: `report-${scheduleId}`, taskQueue: 'reports', args: ['all'] },
        state: { paused: true, note: 'owned by the reports team' },
      });
    }
    const foreignBefore = await describeSchedule(`rotor-${foreign}`);
    await waitUntilListed([stranger]);
    const file = writeInventory([
      { id: foreign, rotation: { rotation_period: '30d' } },
      { id: ours, rotation: { rotation_period: '30d' } },
    ]);

    const plan = await rotor('plan', file);
    const apply = await rotor('apply', file);
    const foreignAfter = await describeSchedule(`rotor-${foreign}`);
    const strangerAfter = await describeSchedule(stranger);

    assert.equal(plan.code, 2);
    assert.match(plan.stdout, new RegExp(`^create rotor-${ours}: `));
    assert.doesNotMatch(plan.stdout, /foreign|stranger/);
    assert.equal(apply.code, 2);
    assert.match(apply.stdout, new RegExp(`^created rotor-${ours}: `));
    assert.doesNotMatch(apply.stdout, /foreign|stranger/);
    assert.match(apply.stderr, new RegExp(`^Schedule rotor-${foreign} exists in Temporal but Rotor did not create it .* Rename the integration, or delete that schedule`));
    assert.deepEqual(foreignAfter.spec, foreignBefore.spec);
    assert.deepEqual(foreignAfter.action.args, ['all']);
    assert.equal(foreignAfter.action.workflowType, 'nightlyReport');
    assert.equal(foreignAfter.action.taskQueue, 'reports');
    assert.deepEqual(foreignAfter.state, foreignBefore.state);
    assert.equal(foreignAfter.memo, undefined);
    assert.equal(foreignAfter.info.lastUpdatedAt?.getTime(), foreignBefore.info.lastUpdatedAt?.getTime());
    assert.equal(strangerAfter.action.workflowType, 'nightlyReport');
  });

  it('offsets are stable and differ between ids', async () => {
    const first = integrationId('sched-first');
    const second = integrationId('sched-second');
    const file = writeInventory([
      { id: first, rotation: { rotation_period: '30d' } },
      { id: second, rotation: { rotation_period: '30d' } },
    ]);
    const copy = writeInventory([
      { id: first, rotation: { rotation_period: '30d' } },
      { id: second, rotation: { rotation_period: '30d' } },
    ]);

    const planned = await rotor('plan', file);
    assert.equal((await rotor('apply', file)).code, 0);
    const firstSpec = (await describeSchedule(`rotor-${first}`)).spec;
    const secondSpec = (await describeSchedule(`rotor-${second}`)).spec;
    await deleteIfPresent(`rotor-${first}`);
    const replanned = await rotor('plan', copy);
    assert.equal((await rotor('apply', copy)).code, 0);
    const recreatedSpec = (await describeSchedule(`rotor-${first}`)).spec;

    assert.deepEqual(recreatedSpec, firstSpec);
    assert.notEqual(firstSpec.intervals?.[0].offset, secondSpec.intervals?.[0].offset);
    const firstLine = planned.stdout.split('\n').find((line) => line.includes(first));
    assert.ok(firstLine);
    assert.equal(replanned.stdout, `${firstLine}\n`);
  });

  it('exits 2 on an invalid inventory', async () => {
    const id = integrationId('sched-invalid');
    const badDuration = writeInventory([{ id, rotation: { rotation_period: 'soon' } }]);
    const lastDay = writeInventory([{ id, rotation: { rotation_schedule: '0 0 L * *' } }]);

    const plan = await rotor('plan', badDuration);
    const apply = await rotor('apply', badDuration);
    const unsupportedCron = await rotor('apply', lastDay);

    assert.equal(plan.code, 2);
    assert.match(plan.stderr, new RegExp(`${escapeRegExp(badDuration)}:\\d+: integrations\\[0\\]\\.rotation\\.rotation_period: expected a duration`));
    assert.equal(apply.code, 2);
    assert.equal(apply.stdout, '');
    assert.equal(unsupportedCron.code, 2);
    assert.match(unsupportedCron.stderr, /integrations\[0\]\.rotation\.rotation_schedule: "0 0 L \* \*" uses L \(last day\) or # \(nth weekday\)/);
    await assert.rejects(describeSchedule(`rotor-${id}`), ScheduleNotFoundError);
  });

  it('exits 1 when Temporal is unreachable', async () => {
    const id = integrationId('sched-unreachable');
    const file = writeInventory([{ id, rotation: { rotation_period: '30d' } }]);
    // A loopback server that closes every connection plays the part of a Temporal that is down.
    const server = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;

    try {
      const result = await rotor('plan', file, { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });

      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`^Cannot reach Temporal at 127\\.0\\.0\\.1:${port}: `));
    } finally {
      server.close();
    }
  });
});

/** Writes an inventory of aws-iam integrations whose endpoint is never contacted, and returns its path. */
function writeInventory(integrations: TestIntegration[]): string {
  const file = path.join(testEnvironment().ROTOR_TEST_WORK_DIR, `schedules-${uniqueSuffix()}.yaml`);
  const document = {
    version: 1,
    integrations: integrations.map((integration) => ({
      id: integration.id,
      provider: 'aws-iam',
      config: { user_name: integration.id, endpoint: 'http://127.0.0.1:1' },
      management_credential: `rotor/management/${integration.id}`,
      vault_path: `apps/${integration.id}`,
      ...(integration.rotation ? { rotation: integration.rotation } : {}),
    })),
  };
  fs.writeFileSync(file, stringify(document));
  return file;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

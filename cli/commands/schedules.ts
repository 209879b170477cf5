import { ScheduleNotFoundError, type Client, type ScheduleClient, type ScheduleDescription } from '@temporalio/client';
import { loadTemporalConfig } from '../../shared/config';
import { UnsupportedCronError } from '../../shared/cron-calendars';
import { InventoryError, isManualIntegration, type InventoryFile, type InventoryProblem } from '../../shared/inventory';
import {
  desiredSchedule,
  formatChange,
  planSchedules,
  scheduleIdPrefix,
  scheduleTiming,
  type DesiredSchedule,
  type ScheduleChange,
  type SchedulePlan,
} from '../../shared/schedules';
import { scheduledRotationWorkflowId } from '../../shared/task-queues';
import { scheduledRotation } from '../../workflows/scheduled-rotation';
import { exitCodes, OperationFailedError } from '../errors';
import { loadCheckedInventory, toIntegrationSpec } from '../integrations';
import { rotationStartOptions } from '../start-rotation';
import { connectClient } from '../temporal-client';

/**
 * `rotor schedules plan` and `rotor schedules apply`: keep one Temporal Schedule per
 * integration with a rotation_period or rotation_schedule, as the inventory lists them.
 *
 * Exit codes: 0 done; 2 for an invalid inventory, or when a schedule id the inventory needs is
 * taken by a schedule Rotor did not create; 1 when Temporal cannot be read or a change failed.
 */

export interface SchedulesOptions {
  file: string;
}

// Describe calls in flight at once, enough to read hundreds of schedules in seconds.
const describeConcurrency = 8;

/** `rotor schedules plan`: prints the changes `apply` would make, one line each, and changes nothing. */
export async function runSchedulesPlanCommand(options: SchedulesOptions): Promise<number> {
  const { plan, close } = await planFromInventory(options.file);
  try {
    printLines(plan.changes.map((change) => formatChange(change, 'plan')));
    return reportConflicts(plan);
  } finally {
    await close();
  }
}

/**
 * `rotor schedules apply`: makes the changes of the plan, printing each as it is done. A failed
 * change does not stop the others; apply can be repeated, and a repeat finds nothing left to do.
 */
export async function runSchedulesApplyCommand(options: SchedulesOptions): Promise<number> {
  const { plan, client, close } = await planFromInventory(options.file);
  try {
    const failures: string[] = [];
    for (const change of plan.changes) {
      try {
        await applyChange(client.schedule, change);
        console.log(formatChange(change, 'apply'));
      } catch (error) {
        const message = `Failed to ${change.kind} schedule ${change.scheduleId}: ${(error as Error).message}`;
        console.error(message);
        failures.push(message);
      }
    }
    if (plan.changes.length === 0) {
      console.log('no changes');
    }

    const code = reportConflicts(plan);
    if (failures.length > 0) {
      throw new OperationFailedError(`${failures.length} of ${plan.changes.length} schedule changes failed; run \`rotor schedules apply\` again once the cause is fixed.`);
    }
    return code;
  } finally {
    await close();
  }
}

async function planFromInventory(file: string): Promise<{ plan: SchedulePlan; client: Client; close: () => Promise<void> }> {
  const inventory = loadCheckedInventory(file);
  const config = loadTemporalConfig();
  const { desired, unscheduled } = desiredSchedules(inventory, file, config.taskQueue);

  let client: Client;
  try {
    client = await connectClient(config);
  } catch (error) {
    throw new OperationFailedError((error as Error).message);
  }
  const close = () => client.connection.close();

  try {
    const existing = await readExistingSchedules(client.schedule, desired.map((schedule) => schedule.scheduleId));
    return { plan: planSchedules({ desired, existing, unscheduled }), client, close };
  } catch (error) {
    await close();
    throw new OperationFailedError(`Reading the schedules in Temporal namespace ${config.namespace} at ${config.address} failed: ${(error as Error).message}`);
  }
}

/**
 * Builds the schedule of every integration that has one. Returns the others with the reason
 * they have none, which a plan line shows when Rotor deletes their schedule.
 * Throws InventoryError for a rotation_schedule that Temporal cannot express.
 */
function desiredSchedules(inventory: InventoryFile, file: string, taskQueue: string): { desired: DesiredSchedule[]; unscheduled: Map<string, string> } {
  const desired: DesiredSchedule[] = [];
  const unscheduled = new Map<string, string>();
  const problems: InventoryProblem[] = [];

  inventory.integrations.forEach((entry, index) => {
    if (isManualIntegration(entry)) {
      unscheduled.set(entry.id, 'manual integration, which Rotor cannot rotate');
      return;
    }
    let timing;
    try {
      timing = scheduleTiming(entry.id, entry.rotation);
    } catch (error) {
      if (!(error instanceof UnsupportedCronError)) {
        throw error;
      }
      problems.push({ file, path: `integrations[${index}].rotation.rotation_schedule`, message: error.message });
      return;
    }
    if (timing === undefined) {
      unscheduled.set(entry.id, 'integration has no rotation_period or rotation_schedule');
      return;
    }

    const integration = toIntegrationSpec(entry);
    // Temporal appends the scheduled time to the workflow id of each run, so the schedule starts
    // scheduledRotation, which starts the rotation under the integration's own workflow id.
    const start = rotationStartOptions(integration, { taskQueue, dryRun: false, requestedBy: 'schedule' });
    desired.push(
      desiredSchedule({
        integrationId: entry.id,
        provider: entry.provider,
        timing,
        paused: entry.rotation.disable_automated_rotation,
        action: {
          type: 'startWorkflow',
          workflowType: scheduledRotation,
          ...start,
          workflowId: scheduledRotationWorkflowId(entry.id),
          staticSummary: `Start a rotation of ${integration.id} (${integration.provider}) on schedule`,
        },
      }),
    );
  });

  if (problems.length > 0) {
    throw new InventoryError(problems);
  }
  return { desired, unscheduled };
}

/**
 * Describes every schedule under Rotor's id prefix and at the desired ids. The desired ids are
 * described directly because listing is eventually consistent and may miss a schedule created
 * a moment ago. A listed schedule that is gone by the time it is described is left out.
 */
async function readExistingSchedules(schedules: ScheduleClient, desiredIds: string[]): Promise<Map<string, ScheduleDescription>> {
  const ids = new Set(desiredIds);
  for await (const summary of schedules.list()) {
    if (summary.scheduleId.startsWith(scheduleIdPrefix)) {
      ids.add(summary.scheduleId);
    }
  }
  // NOTE: the list may miss a schedule created a moment ago. If the inventory no longer has its
  // integration, this run does not delete it, and the next run does.

  const existing = new Map<string, ScheduleDescription>();
  const queue = [...ids].sort();
  const describeNext = async (): Promise<void> => {
    for (let scheduleId = queue.shift(); scheduleId !== undefined; scheduleId = queue.shift()) {
      try {
        existing.set(scheduleId, await schedules.getHandle(scheduleId).describe());
      } catch (error) {
        if (!(error instanceof ScheduleNotFoundError)) {
          throw error;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: describeConcurrency }, describeNext));
  return existing;
}

async function applyChange(schedules: ScheduleClient, change: ScheduleChange): Promise<void> {
  const handle = schedules.getHandle(change.scheduleId);
  switch (change.kind) {
    case 'create':
      await schedules.create(change.desired.options);
      return;
    case 'update': {
      const { spec, action, policies, typedSearchAttributes } = change.desired.options;
      // Paused state is its own change (pause or unpause), so an update keeps the current one.
      await handle.update((current) => ({
        spec,
        action,
        policies,
        typedSearchAttributes,
        state: { paused: current.state.paused, note: current.state.note, remainingActions: current.state.remainingActions },
      }));
      return;
    }
    case 'pause':
      await handle.pause(change.note);
      return;
    case 'unpause':
      await handle.unpause(change.note);
      return;
    case 'delete':
      await handle.delete();
      return;
  }
}

function printLines(lines: string[]): void {
  console.log(lines.length > 0 ? lines.join('\n') : 'no changes');
}

function reportConflicts(plan: SchedulePlan): number {
  for (const conflict of plan.conflicts) {
    console.error(conflict.message);
  }
  return plan.conflicts.length > 0 ? exitCodes.badInput : exitCodes.ok;
}

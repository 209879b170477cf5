import { setTimeout as delay } from 'node:timers/promises';
import { WorkflowFailedError, WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { loadTemporalConfig } from '../../shared/config';
import { rotationWorkflowId } from '../../shared/task-queues';
import type { RotationResult, RotationState } from '../../workflows/rotation-types';
import { finishGraceSignal, rollbackSignal, rotateKey, stateQuery } from '../../workflows/rotate-key';
import { OperationFailedError, UsageError } from '../errors';
import { loadIntegrationSpec } from '../integrations';
import { RotationAlreadyRunningError, startRotation } from '../start-rotation';
import { connectClient } from '../temporal-client';

export interface RotateOptions {
  file: string;
  dryRun?: boolean;
  wait?: boolean;
}

/** `rotor rotate <integration>`: starts one rotation, and with --wait follows it to the end. */
export async function runRotateCommand(integrationId: string, options: RotateOptions, client?: Client): Promise<number> {
  const integration = loadIntegrationSpec(options.file, integrationId);
  const config = loadTemporalConfig();
  client ??= await connectClient(config);
  let handle;
  try {
    handle = await startRotation(client, integration, { taskQueue: config.taskQueue, dryRun: Boolean(options.dryRun), requestedBy: process.env.USER || 'cli' });
  } catch (error) {
    if (error instanceof RotationAlreadyRunningError) {
      throw new UsageError(error.message);
    }
    throw error;
  }

  const runId = handle.firstExecutionRunId;
  console.log(`${options.dryRun ? 'Dry run of' : 'Started'} rotation of ${integration.id}: workflow ${handle.workflowId}, run ${runId}`);
  if (!options.wait && !options.dryRun) {
    console.log(`Follow it with \`rotor status ${integration.id}\`${uiLink(handle.workflowId, runId, config.namespace)}.`);
    return 0;
  }
  return followRotation(handle, integration.id);
}

/** Prints each phase as the rotation enters it, then the outcome. Returns the exit code. */
export async function followRotation(handle: WorkflowHandle<typeof rotateKey>, integrationId: string): Promise<number> {
  // phaseStartedAt grows in the order phases are entered, so printing its new entries on each
  // poll lists every phase once and in order, even when a poll misses a short phase.
  const printed = new Set<string>();
  const printPhases = (state: RotationState | undefined): void => {
    for (const [phase, startedAt] of Object.entries(state?.phaseStartedAt ?? {})) {
      if (printed.has(phase)) {
        continue;
      }
      printed.add(phase);
      const note = phase === 'grace' && state?.graceEndsAt ? ` (until ${state.graceEndsAt.slice(11, 19)})` : '';
      console.log(`  ${(startedAt ?? '').slice(11, 19)}  ${phase}${note}`);
    }
  };

  let outcome: RotationResult | undefined;
  let failure: unknown;
  const result = handle.result().then(
    (value) => {
      outcome = value;
    },
    (error: unknown) => {
      failure = error;
    },
  );
  const printedFailures = new Set<string>();
  while (outcome === undefined && failure === undefined) {
    const { state, retrying } = await pollRotation(handle);
    printPhases(state);
    for (const { activity, attempt, lastFailure } of retrying) {
      // Each distinct failure once: the same message on every attempt would flood the terminal.
      if (!printedFailures.has(`${activity} ${lastFailure}`)) {
        printedFailures.add(`${activity} ${lastFailure}`);
        console.log(`    retrying ${activity} (attempt ${attempt}, ${new Date().toISOString().slice(11, 19)}): ${lastFailure}`);
      }
    }
    await Promise.race([result, delay(500)]);
  }

  if (failure !== undefined) {
    const message = failure instanceof WorkflowFailedError ? (failure.cause?.message ?? failure.message) : (failure as Error).message;
    if (!printed.has('failed')) {
      console.log(`  ${new Date().toISOString().slice(11, 19)}  failed`);
    }
    // The workflow's own failure message already names the integration and the phase.
    throw new OperationFailedError(message.startsWith(`Rotation of ${integrationId}`) ? message : `Rotation of ${integrationId} failed: ${message}`);
  }
  printPhases((outcome as RotationResult).state);
  printOutcome(outcome as RotationResult);
  return 0;
}

function printOutcome({ outcome, state }: RotationResult): void {
  if (outcome === 'dry-run') {
    console.log(`Dry run of ${state.integrationId}: nothing was changed.`);
    for (const step of state.plan?.steps ?? []) {
      console.log(`  - ${step}`);
    }
    return;
  }
  if (outcome === 'rolled-back') {
    console.log(`Rotation of ${state.integrationId} rolled back: consumers have ${state.currentKeyId ?? 'the previous secret'} again and ${state.pendingKeyId} is revoked.`);
    return;
  }
  console.log(`Rotation of ${state.integrationId} completed.`);
  console.log(`  old key: ${state.currentKeyId ?? '(none)'}${state.currentKeyId ? ' (revoked)' : ''}`);
  console.log(`  new key: ${state.pendingKeyId}`);
  console.log(`  Vault version: ${state.promotedVersion}`);
}

/** `rotor status <integration>`: the latest rotation's phase, key ids and outcome. */
export async function runStatusCommand(integrationId: string, options: { json?: boolean }): Promise<number> {
  const client = await connectClient(loadTemporalConfig());
  const handle = client.workflow.getHandle<typeof rotateKey>(rotationWorkflowId(integrationId));
  let description;
  try {
    description = await handle.describe();
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) {
      throw new UsageError(`No rotation of ${integrationId} found in Temporal. Start one with \`rotor rotate ${integrationId}\`.`);
    }
    throw error;
  }

  let state: RotationState | undefined;
  let retrying: RetryingActivity[] = [];
  let failureMessage: string | undefined;
  if (description.status.name === 'RUNNING') {
    ({ state, retrying } = await pollRotation(handle));
  } else {
    try {
      state = (await handle.result()).state;
    } catch (error) {
      failureMessage = error instanceof WorkflowFailedError ? (error.cause?.message ?? error.message) : (error as Error).message;
    }
  }

  if (options.json) {
    console.log(JSON.stringify({ workflowId: description.workflowId, runId: description.runId, status: description.status.name, state, retrying, failure: failureMessage }, null, 2));
    return 0;
  }
  console.log(`${integrationId}: workflow ${description.workflowId} (run ${description.runId}) is ${description.status.name}`);
  if (state) {
    console.log(`  phase: ${state.phase} since ${state.phaseStartedAt[state.phase] ?? '?'}`);
    if (state.currentKeyId) console.log(`  current key: ${state.currentKeyId}`);
    if (state.pendingKeyId) console.log(`  new key: ${state.pendingKeyId}`);
    if (state.promotedVersion !== undefined) console.log(`  Vault version: ${state.promotedVersion}`);
    if (state.graceEndsAt) console.log(`  grace ends: ${state.graceEndsAt}`);
    if (state.waitingReason) console.log(`  waiting: ${state.waitingReason}`);
    if (state.failure) console.log(`  failed in ${state.failure.phase}: ${state.failure.message}`);
  }
  for (const { activity, attempt, lastFailure } of retrying) {
    console.log(`  retrying: ${activity}, attempt ${attempt}, last failure: ${lastFailure}`);
  }
  if (failureMessage) {
    console.log(`  failure: ${failureMessage}`);
  }
  return 0;
}

/** `rotor rollback` and `rotor finish-grace`: signal a rotation that is in grace. */
export async function runGraceSignalCommand(integrationId: string, action: 'rollback' | 'finish-grace', options: { reason?: string; wait?: boolean }): Promise<number> {
  const client = await connectClient(loadTemporalConfig());
  const handle = client.workflow.getHandle<typeof rotateKey>(rotationWorkflowId(integrationId));
  const state = await queryState(handle);
  if (!state) {
    throw new UsageError(`No running rotation of ${integrationId}. \`rotor status ${integrationId}\` shows the latest one.`);
  }
  if (state.phase !== 'grace') {
    throw new UsageError(`The rotation of ${integrationId} is in phase ${state.phase}; ${action} is accepted only during grace.`);
  }
  if (action === 'rollback') {
    if (state.plan?.currentVersion === 0) {
      throw new UsageError(`The rotation of ${integrationId} wrote the first secret at its Vault path, so there is no previous secret to roll back to.`);
    }
    await handle.signal(rollbackSignal, { reason: options.reason });
    console.log(`Rollback requested for ${integrationId}: the previous secret is restored and the new key ${state.pendingKeyId} revoked.`);
  } else {
    await handle.signal(finishGraceSignal);
    console.log(`Grace of ${integrationId} ended early: the previous key ${state.currentKeyId ?? ''} is revoked next.`);
  }
  return options.wait ? followRotation(handle, integrationId) : 0;
}

/** Queries the rotation's state; returns undefined when no rotation of the integration is running. */
async function queryState(handle: WorkflowHandle): Promise<RotationState | undefined> {
  return (await pollRotation(handle)).state;
}

/** An activity Temporal is retrying, with the failure of its last attempt. */
interface RetryingActivity {
  activity: string;
  attempt: number;
  lastFailure: string;
}

/**
 * Reads the running rotation's state and the activities Temporal is retrying. A provider that
 * cannot be reached keeps a phase retrying for up to 30 minutes, and without the last failure a
 * waiting user would see nothing but the phase.
 */
async function pollRotation(handle: WorkflowHandle): Promise<{ state?: RotationState; retrying: RetryingActivity[] }> {
  try {
    const description = await handle.describe();
    if (description.status.name !== 'RUNNING') {
      return { retrying: [] };
    }
    const retrying = (description.raw.pendingActivities ?? [])
      .filter((pending) => (pending.attempt ?? 1) > 1 && pending.lastFailure?.message)
      .map((pending) => ({ activity: pending.activityType?.name ?? 'activity', attempt: pending.attempt ?? 0, lastFailure: pending.lastFailure?.message ?? '' }));
    return { state: await handle.query(stateQuery), retrying };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) {
      return { retrying: [] };
    }
    throw error;
  }
}

function uiLink(workflowId: string, runId: string, namespace: string): string {
  const uiUrl = process.env.TEMPORAL_UI_URL;
  return uiUrl ? ` or in the Temporal UI: ${uiUrl.replace(/\/+$/, '')}/namespaces/${namespace}/workflows/${workflowId}/${runId}` : '';
}

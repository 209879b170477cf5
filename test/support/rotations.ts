import { setTimeout as delay } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { stateQuery } from '../../workflows/rotate-key';
import type { RotationPhase, RotationResult, RotationState } from '../../workflows/rotation-types';

/** Polls the rotation's state query until it reaches the phase, or fails after the timeout. */
export async function waitForPhase(handle: WorkflowHandle, phase: RotationPhase, timeoutMs = 30_000): Promise<RotationState> {
  const deadline = Date.now() + timeoutMs;
  let last: RotationState | undefined;
  while (Date.now() < deadline) {
    last = await handle.query(stateQuery).catch(() => last);
    if (last?.phase === phase) {
      return last;
    }
    await delay(100);
  }
  throw new Error(`rotation ${handle.workflowId} did not reach phase ${phase} in ${timeoutMs} ms; last phase: ${last?.phase ?? 'none'}`);
}

/**
 * Returns the full history as text, with every payload decoded from bytes, so a search for a secret
 * value finds it wherever it was serialised. The history's protobuf objects would print bytes
 * as base64 through their own toJSON, so this walks them instead.
 */
export async function historyText(handle: WorkflowHandle): Promise<string> {
  const parts: string[] = [];
  const visit = (value: unknown): void => {
    if (value instanceof Uint8Array) {
      parts.push(Buffer.from(value).toString('utf8'));
    } else if (typeof value === 'string') {
      parts.push(value);
    } else if (Array.isArray(value)) {
      value.forEach(visit);
    } else if (value && typeof value === 'object') {
      Object.values(value).forEach(visit);
    }
  };
  visit(await handle.fetchHistory());
  return parts.join('\n');
}

/** Resolves once the history shows the named activity completed. */
export async function waitForActivityCompleted(handle: WorkflowHandle, activityType: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const events: temporal.api.history.v1.IHistoryEvent[] = (await handle.fetchHistory()).events ?? [];
    const scheduled = events.filter((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === activityType).map((event) => String(event.eventId));
    if (events.some((event) => scheduled.includes(String(event.activityTaskCompletedEventAttributes?.scheduledEventId)))) {
      return;
    }
    await delay(25);
  }
  throw new Error(`activity ${activityType} of ${handle.workflowId} did not complete in ${timeoutMs} ms`);
}

/**
 * Waits for every rotation, so none is still running when the test's worker stops, and returns
 * the results of those that ended and the failure messages of those that did not.
 */
export async function settleRotations(handles: WorkflowHandle[]): Promise<{ results: RotationResult[]; failures: string[] }> {
  const settled = await Promise.allSettled(handles.map((handle) => handle.result() as Promise<RotationResult>));
  const failures = settled.flatMap((outcome) => (outcome.status === 'rejected' ? [String(outcome.reason?.cause?.message ?? outcome.reason)] : []));
  const results = settled.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  return { results, failures };
}

import crypto from 'node:crypto';
import type { ScheduleDescription, ScheduleOptions, ScheduleOptionsAction, ScheduleSpec } from '@temporalio/client';
import { cronCalendars, minutesLeftInDay, parseCron } from './cron-calendars';
import { formatDuration } from './durations';
import type { RotationPolicy } from './inventory';
import { describeSpec, scheduleDifferences } from './schedule-comparison';
import { integrationAttribute, providerAttribute } from './search-attributes';

/**
 * Planning of the Temporal Schedules that start rotations: one schedule per integration with
 * `rotation_period` or `rotation_schedule`, its times spread by a stable offset, and the
 * comparison with the schedules Temporal has. `rotor schedules plan|apply` does the I/O.
 */

/** Prefix of the ids of the schedules Rotor manages: `rotor-<integration id>`. */
export const scheduleIdPrefix = 'rotor-';

/** Memo that marks a schedule as Rotor's. Temporal accepts a schedule's memo at creation only. */
export const managedScheduleMemo = { managedBy: 'rotor' } as const;

/**
 * Share of the rotation window that Temporal's random jitter may add to each start. The stable
 * offset does most of the spreading and keeps start times predictable. The jitter keeps
 * integrations whose offsets happen to lie close together from starting in the same second,
 * and is small so each start stays near its predictable time.
 */
export const jitterShareOfWindow = 0.1;

/**
 * A rotation missed while Temporal was unavailable still starts if Temporal is back within
 * this long. After a longer outage the next scheduled time starts the rotation instead.
 */
export const catchupWindowMs = 86_400_000;

/**
 * SKIP: a rotation still running (in a long grace, say) is not joined by a second one.
 * A failed rotation leaves the current key working, so the next scheduled time tries again
 * instead of pausing the schedule.
 */
export const schedulePolicies = { overlap: 'SKIP', catchupWindow: catchupWindowMs, pauseOnFailure: false } as const;

const pausedNote = 'Paused by Rotor: disable_automated_rotation is set in the inventory';
const unpausedNote = 'Unpaused by Rotor: disable_automated_rotation is no longer set in the inventory';

export function scheduleIdOf(integrationId: string): string {
  return `${scheduleIdPrefix}${integrationId}`;
}

/** When an integration's rotations start. */
export interface ScheduleTiming {
  /** The Temporal spec, in UTC, with the stable offset applied and `jitter` set. */
  spec: ScheduleSpec;
  /** Stable delay after each due time, in milliseconds, derived from the integration id. */
  offsetMs: number;
  /** Upper bound of Temporal's random delay on top of the offset, in milliseconds. */
  jitterMs: number;
  /** Window that the offset and jitter stay inside. Undefined for a cron schedule without rotation_window. */
  windowMs?: number;
}

/**
 * Computes when an integration's rotations start, or undefined when its policy sets neither
 * `rotation_period` nor `rotation_schedule`.
 *
 * `rotation_period` becomes an interval counted from the Unix epoch. Its window is
 * `rotation_window`, or the whole period when that is not set, and the offset lies anywhere in
 * it. `rotation_schedule` becomes calendars that fire at the cron times plus the offset. Its
 * window is `rotation_window`, and without one a rotation starts at the cron time exactly.
 * The offset and jitter together stay inside the window (offset + jitter < window).
 * Throws UnsupportedCronError for a cron expression that Temporal calendars cannot express.
 */
export function scheduleTiming(integrationId: string, policy: RotationPolicy): ScheduleTiming | undefined {
  if (policy.rotation_period !== undefined) {
    return intervalTiming(integrationId, policy.rotation_period, policy.rotation_window);
  }
  if (policy.rotation_schedule !== undefined) {
    return cronTiming(integrationId, policy.rotation_schedule, policy.rotation_window);
  }
  return undefined;
}

/**
 * Picks one of `slots` values from the SHA-256 digest of the integration id (its first six
 * bytes, as an integer, modulo `slots`). The same id always gets the same value, and
 * different ids spread evenly.
 */
export function stableSlot(integrationId: string, slots: number): number {
  if (slots <= 1) {
    return 0;
  }
  const digest = crypto.createHash('sha256').update(integrationId, 'utf8').digest();
  return digest.readUIntBE(0, 6) % slots;
}

function intervalTiming(integrationId: string, rotationPeriodMs: number, rotationWindowMs: number | undefined): ScheduleTiming {
  // Temporal rounds intervals to whole seconds; rounding here keeps the comparison exact.
  const periodMs = Math.max(1000, roundToSecond(rotationPeriodMs));
  const windowMs = Math.min(rotationWindowMs ?? periodMs, periodMs);
  const jitterMs = roundToSecond(windowMs * jitterShareOfWindow);
  const offsetMs = stableSlot(integrationId, Math.floor((windowMs - jitterMs) / 60_000)) * 60_000;
  return {
    spec: { intervals: [{ every: periodMs, offset: offsetMs }], jitter: jitterMs },
    offsetMs,
    jitterMs,
    windowMs,
  };
}

function cronTiming(integrationId: string, expression: string, windowMs: number | undefined): ScheduleTiming {
  const cron = parseCron(expression, integrationId);
  const jitterMs = windowMs === undefined ? 0 : roundToSecond(windowMs * jitterShareOfWindow);
  const slots = windowMs === undefined ? 0 : Math.min(Math.floor((windowMs - jitterMs) / 60_000), minutesLeftInDay(cron));
  const offsetMinutes = stableSlot(integrationId, slots);
  const offsetMs = offsetMinutes * 60_000;
  const comment = offsetMs > 0 ? `cron "${expression}" shifted ${formatDuration(offsetMs)}` : `cron "${expression}"`;
  return {
    spec: { calendars: cronCalendars(cron, offsetMinutes, comment), jitter: jitterMs },
    offsetMs,
    jitterMs,
    windowMs,
  };
}

function roundToSecond(milliseconds: number): number {
  return Math.round(milliseconds / 1000) * 1000;
}

/** One schedule as the inventory wants it. */
export interface DesiredSchedule {
  scheduleId: string;
  integrationId: string;
  timing: ScheduleTiming;
  /** Everything `ScheduleClient.create` needs, including Rotor's memo and the paused state. */
  options: ScheduleOptions;
}

/**
 * Builds the schedule of one integration around the action that starts its rotation. The
 * schedule carries Rotor's memo and the RotorIntegration and RotorProvider search attributes,
 * so the Temporal UI can filter schedules as it filters rotations.
 */
export function desiredSchedule(input: { integrationId: string; provider: string; timing: ScheduleTiming; paused: boolean; action: ScheduleOptionsAction }): DesiredSchedule {
  const scheduleId = scheduleIdOf(input.integrationId);
  return {
    scheduleId,
    integrationId: input.integrationId,
    timing: input.timing,
    options: {
      scheduleId,
      spec: input.timing.spec,
      action: input.action,
      policies: { ...schedulePolicies },
      memo: { ...managedScheduleMemo, integration: input.integrationId },
      typedSearchAttributes: [
        { key: integrationAttribute, value: input.integrationId },
        { key: providerAttribute, value: input.provider },
      ],
      state: input.paused ? { paused: true, note: pausedNote } : { paused: false },
    },
  };
}

/** True when Rotor created the schedule, which its memo records. */
export function isManagedSchedule(description: Pick<ScheduleDescription, 'memo'>): boolean {
  return description.memo?.managedBy === managedScheduleMemo.managedBy;
}

export type ScheduleChange =
  | { kind: 'create'; scheduleId: string; desired: DesiredSchedule }
  | { kind: 'update'; scheduleId: string; desired: DesiredSchedule; differences: string[] }
  | { kind: 'pause'; scheduleId: string; note: string }
  | { kind: 'unpause'; scheduleId: string; note: string }
  | { kind: 'delete'; scheduleId: string; reason: string };

/** A schedule the inventory needs whose id is taken by a schedule Rotor did not create. */
export interface ScheduleConflict {
  scheduleId: string;
  integrationId: string;
  message: string;
}

export interface SchedulePlan {
  /** Changes sorted by schedule id. For one schedule, an update comes before a pause or unpause. */
  changes: ScheduleChange[];
  conflicts: ScheduleConflict[];
}

export interface PlanInput {
  desired: DesiredSchedule[];
  /** The schedules Temporal has under Rotor's prefix and at the desired ids, by schedule id. */
  existing: ReadonlyMap<string, ScheduleDescription>;
  /** Integrations in the inventory that get no schedule, with the reason, by integration id. */
  unscheduled: ReadonlyMap<string, string>;
}

/**
 * Compares the desired schedules with the existing ones. Rotor creates what is missing, updates
 * and pauses or unpauses its own schedules, and deletes its own schedules that no integration
 * needs. A schedule Rotor did not create is never changed: at a desired id it is a conflict,
 * and elsewhere it is ignored.
 */
export function planSchedules(input: PlanInput): SchedulePlan {
  const changes: ScheduleChange[] = [];
  const conflicts: ScheduleConflict[] = [];

  for (const desired of input.desired) {
    const existing = input.existing.get(desired.scheduleId);
    if (existing === undefined) {
      changes.push({ kind: 'create', scheduleId: desired.scheduleId, desired });
      continue;
    }
    if (!isManagedSchedule(existing)) {
      conflicts.push({ scheduleId: desired.scheduleId, integrationId: desired.integrationId, message: conflictMessage(desired) });
      continue;
    }
    changes.push(...changesToExisting(desired, existing));
  }

  const desiredIds = new Set(input.desired.map((desired) => desired.scheduleId));
  for (const [scheduleId, existing] of input.existing) {
    if (desiredIds.has(scheduleId) || !scheduleId.startsWith(scheduleIdPrefix) || !isManagedSchedule(existing)) {
      continue;
    }
    const integrationId = scheduleId.slice(scheduleIdPrefix.length);
    changes.push({ kind: 'delete', scheduleId, reason: input.unscheduled.get(integrationId) ?? 'integration no longer in the inventory' });
  }

  changes.sort((left, right) => left.scheduleId.localeCompare(right.scheduleId) || changeOrder.indexOf(left.kind) - changeOrder.indexOf(right.kind));
  conflicts.sort((left, right) => left.scheduleId.localeCompare(right.scheduleId));
  return { changes, conflicts };
}

const changeOrder: ScheduleChange['kind'][] = ['create', 'update', 'pause', 'unpause', 'delete'];

function changesToExisting(desired: DesiredSchedule, existing: ScheduleDescription): ScheduleChange[] {
  const changes: ScheduleChange[] = [];
  const differences = scheduleDifferences(desired.options, existing);
  if (differences.length > 0) {
    changes.push({ kind: 'update', scheduleId: desired.scheduleId, desired, differences });
  }
  const paused = desired.options.state?.paused ?? false;
  if (paused && !existing.state.paused) {
    changes.push({ kind: 'pause', scheduleId: desired.scheduleId, note: pausedNote });
  }
  if (!paused && existing.state.paused) {
    changes.push({ kind: 'unpause', scheduleId: desired.scheduleId, note: unpausedNote });
  }
  return changes;
}

function conflictMessage(desired: DesiredSchedule): string {
  return (
    `Schedule ${desired.scheduleId} exists in Temporal but Rotor did not create it (its memo has no managedBy: rotor), ` +
    `so Rotor leaves it unchanged and integration ${desired.integrationId} has no schedule. ` +
    'Rename the integration, or delete that schedule if nothing else uses it.'
  );
}

/** Formats one change as a line: `create rotor-x: …` in a plan, `created rotor-x: …` once applied. */
export function formatChange(change: ScheduleChange, mode: 'plan' | 'apply'): string {
  const verb = mode === 'plan' ? change.kind : appliedVerbs[change.kind];
  return `${verb} ${change.scheduleId}: ${changeDetail(change)}`;
}

const appliedVerbs: Record<ScheduleChange['kind'], string> = {
  create: 'created',
  update: 'updated',
  pause: 'paused',
  unpause: 'unpaused',
  delete: 'deleted',
};

function changeDetail(change: ScheduleChange): string {
  switch (change.kind) {
    case 'create': {
      const { timing, options } = change.desired;
      const window = timing.windowMs === undefined ? 'no window' : `window ${formatDuration(timing.windowMs)}`;
      const paused = options.state?.paused ? ', paused: disable_automated_rotation is set' : '';
      return `${describeSpec(timing.spec)} (${window})${paused}`;
    }
    case 'update':
      return change.differences.join('; ');
    case 'pause':
      return 'disable_automated_rotation is set';
    case 'unpause':
      return 'disable_automated_rotation is no longer set';
    case 'delete':
      return change.reason;
  }
}

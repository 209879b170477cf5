import { CronExpressionParser } from 'cron-parser';
import type { RotationPolicy } from './inventory';

/**
 * When an integration's key is due for rotation and whether it is overdue, from its last
 * rotation and its rotation policy. Pure functions of their inputs, so `rotor inventory`,
 * `rotor audit` and the schedules can share them.
 */

const dayMs = 86_400_000;

export interface RotationDue {
  /** Last rotation plus rotation_period, or the first rotation_schedule time after the last rotation. */
  nextDueAt: Date;
  /** Time between due times: rotation_period, or the gap between nextDueAt and the schedule's following time. */
  intervalMs: number;
  /** nextDueAt plus rotation_window: until then a rotation may still start on time. */
  overdueAfter: Date;
}

export interface KeyAgeStatus {
  lastRotatedAt?: Date;
  /** Whole days since the last rotation; undefined when it is not known. */
  ageDays?: number;
  /** Undefined when the policy has neither rotation_period nor rotation_schedule, or the last rotation is not known. */
  due?: RotationDue;
  overdue: boolean;
  /** The key is overdue and older than twice the interval between due times. */
  overdueTwice: boolean;
}

/** Computes the next due time after a rotation; undefined when the policy sets no period or schedule. */
export function rotationDue(policy: RotationPolicy, lastRotatedAt: Date): RotationDue | undefined {
  const window = policy.rotation_window ?? 0;
  if (policy.rotation_period !== undefined) {
    const nextDueAt = new Date(lastRotatedAt.getTime() + policy.rotation_period);
    return { nextDueAt, intervalMs: policy.rotation_period, overdueAfter: new Date(nextDueAt.getTime() + window) };
  }
  if (policy.rotation_schedule !== undefined) {
    const times = CronExpressionParser.parse(policy.rotation_schedule, { currentDate: lastRotatedAt, tz: 'UTC' });
    const nextDueAt = times.next().toDate();
    const followingAt = times.next().toDate();
    return { nextDueAt, intervalMs: followingAt.getTime() - nextDueAt.getTime(), overdueAfter: new Date(nextDueAt.getTime() + window) };
  }
  return undefined;
}

/** Computes the key's age and whether it is overdue at `now`. */
export function keyAgeStatus(policy: RotationPolicy, lastRotatedAt: Date | undefined, now: Date): KeyAgeStatus {
  if (lastRotatedAt === undefined) {
    return { overdue: false, overdueTwice: false };
  }
  const ageMs = Math.max(0, now.getTime() - lastRotatedAt.getTime());
  const due = rotationDue(policy, lastRotatedAt);
  const overdue = due !== undefined && now.getTime() > due.overdueAfter.getTime();
  return {
    lastRotatedAt,
    ageDays: Math.floor(ageMs / dayMs),
    due,
    overdue,
    overdueTwice: overdue && ageMs > 2 * (due as RotationDue).intervalMs,
  };
}

/** Parses a YYYY-MM-DD date as midnight UTC. */
export function parseCalendarDate(date: string): Date {
  return new Date(`${date}T00:00:00Z`);
}

import type {
  CalendarSpec,
  CalendarSpecDescription,
  ScheduleDescription,
  ScheduleOptions,
  ScheduleSpec,
  ScheduleSpecDescription,
} from '@temporalio/client';
import type { Duration, SearchAttributePair, TypedSearchAttributes } from '@temporalio/common';
import { formatDuration, parseDurationMs } from './durations';

/**
 * Compares a schedule Rotor wants with the one Temporal describes, in a form that is equal
 * whenever Temporal would act the same: durations in milliseconds, lists sorted, calendars
 * reduced to the values they match, and the workflow input as JSON.
 */

/**
 * Lists what differs between the desired schedule and the existing one, in words a plan line can
 * show, such as `task queue rotor -> rotor-prod`. Paused state is left to the caller.
 */
export function scheduleDifferences(desired: ScheduleOptions, existing: ScheduleDescription): string[] {
  return differencesBetween(comparableFromOptions(desired), comparableFromDescription(existing));
}

/** Formats a spec for a plan line, such as `every 30d offset 3d 4h jitter 3d`. */
export function describeSpec(spec: ScheduleSpec | ScheduleSpecDescription): string {
  return formatSpec(canonicalSpec(spec));
}

/** The parts of a schedule Rotor sets, in a form that compares equal when Temporal would act the same. */
interface ComparableSchedule {
  spec: CanonicalSpec;
  workflowType: string;
  workflowId?: string;
  taskQueue?: string;
  input: unknown;
  workflowSearchAttributes: string[];
  workflowSummary?: string;
  overlap?: string;
  catchupWindowMs: number;
  pauseOnFailure: boolean;
  scheduleSearchAttributes: string[];
}

function comparableFromOptions(options: ScheduleOptions): ComparableSchedule {
  const { action } = options;
  return {
    spec: canonicalSpec(options.spec),
    workflowType: typeof action.workflowType === 'string' ? action.workflowType : action.workflowType.name,
    workflowId: action.workflowId,
    taskQueue: action.taskQueue,
    // Temporal stores the input as JSON, which drops undefined fields.
    input: JSON.parse(JSON.stringify(action.args ?? [])) as unknown,
    workflowSearchAttributes: canonicalSearchAttributes(action.typedSearchAttributes),
    workflowSummary: action.staticSummary,
    overlap: options.policies?.overlap,
    catchupWindowMs: durationMs(options.policies?.catchupWindow),
    pauseOnFailure: options.policies?.pauseOnFailure ?? false,
    scheduleSearchAttributes: canonicalSearchAttributes(options.typedSearchAttributes),
  };
}

function comparableFromDescription(description: ScheduleDescription): ComparableSchedule {
  const { action } = description;
  return {
    spec: canonicalSpec(description.spec),
    workflowType: action.workflowType,
    workflowId: action.workflowId,
    taskQueue: action.taskQueue,
    input: action.args ?? [],
    workflowSearchAttributes: canonicalSearchAttributes(action.typedSearchAttributes),
    workflowSummary: action.staticSummary,
    overlap: description.policies.overlap,
    catchupWindowMs: description.policies.catchupWindow,
    pauseOnFailure: description.policies.pauseOnFailure,
    scheduleSearchAttributes: canonicalSearchAttributes(description.typedSearchAttributes),
  };
}

function differencesBetween(desired: ComparableSchedule, existing: ComparableSchedule): string[] {
  const differences: string[] = [];
  const change = (part: string, from: unknown, to: unknown): void => {
    if (stableJson(from) !== stableJson(to)) {
      differences.push(`${part} ${String(from ?? 'unset')} -> ${String(to ?? 'unset')}`);
    }
  };

  if (stableJson(existing.spec) !== stableJson(desired.spec)) {
    const from = formatSpec(existing.spec);
    const to = formatSpec(desired.spec);
    differences.push(from === to ? `schedule edited outside Rotor -> ${to}` : `schedule ${from} -> ${to}`);
  }
  change('workflow type', existing.workflowType, desired.workflowType);
  change('workflow id', existing.workflowId, desired.workflowId);
  change('task queue', existing.taskQueue, desired.taskQueue);
  const inputPaths = changedPaths(unwrapSingle(existing.input), unwrapSingle(desired.input), '');
  if (inputPaths.length > 0) {
    differences.push(`workflow input changed at ${listPaths(inputPaths)}`);
  }
  change('workflow search attributes', existing.workflowSearchAttributes.join(' '), desired.workflowSearchAttributes.join(' '));
  change('workflow summary', existing.workflowSummary, desired.workflowSummary);
  change('overlap policy', existing.overlap, desired.overlap);
  if (existing.catchupWindowMs !== desired.catchupWindowMs) {
    differences.push(`catch-up window ${formatDuration(existing.catchupWindowMs)} -> ${formatDuration(desired.catchupWindowMs)}`);
  }
  change('pause on failure', existing.pauseOnFailure, desired.pauseOnFailure);
  change('schedule search attributes', existing.scheduleSearchAttributes.join(' '), desired.scheduleSearchAttributes.join(' '));
  return differences;
}

/** A spec reduced to what decides its fire times: sorted, durations in milliseconds, calendars as value sets. */
interface CanonicalSpec {
  intervals: Array<{ every: number; offset: number }>;
  calendars: CanonicalCalendar[];
  cronExpressions: string[];
  skip: CanonicalCalendar[];
  startAt?: string;
  endAt?: string;
  jitterMs: number;
  timezone: string;
}

/** Each field is the sorted set of values it matches, or `*` for all of them. */
interface CanonicalCalendar {
  second: number[] | '*';
  minute: number[] | '*';
  hour: number[] | '*';
  dayOfMonth: number[] | '*';
  month: number[] | '*';
  year: number[] | '*';
  dayOfWeek: number[] | '*';
  comment: string;
}

function canonicalSpec(spec: ScheduleSpec | ScheduleSpecDescription): CanonicalSpec {
  const cronExpressions = 'cronExpressions' in spec ? (spec.cronExpressions ?? []) : [];
  return {
    intervals: (spec.intervals ?? [])
      .map((interval) => ({ every: durationMs(interval.every), offset: durationMs(interval.offset) }))
      .sort((left, right) => left.every - right.every || left.offset - right.offset),
    calendars: sortedCalendars((spec.calendars ?? []).map(canonicalCalendar)),
    cronExpressions: [...cronExpressions].sort(),
    skip: sortedCalendars((spec.skip ?? []).map(canonicalCalendar)),
    startAt: spec.startAt?.toISOString(),
    endAt: spec.endAt?.toISOString(),
    jitterMs: durationMs(spec.jitter),
    // Temporal describes UTC as an empty time zone.
    timezone: spec.timezone || 'UTC',
  };
}

function sortedCalendars(calendars: CanonicalCalendar[]): CanonicalCalendar[] {
  return calendars.sort((left, right) => stableJson(left).localeCompare(stableJson(right)));
}

type CalendarField =
  | CalendarSpec['minute']
  | CalendarSpec['month']
  | CalendarSpec['dayOfWeek']
  | CalendarSpecDescription['minute']
  | CalendarSpecDescription['month']
  | CalendarSpecDescription['dayOfWeek'];

const monthNumbers = ['JANUARY', 'FEBRUARY', 'MARCH', 'APRIL', 'MAY', 'JUNE', 'JULY', 'AUGUST', 'SEPTEMBER', 'OCTOBER', 'NOVEMBER', 'DECEMBER'];
const dayOfWeekNumbers = ['SUNDAY', 'MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY'];

function canonicalCalendar(calendar: CalendarSpec | CalendarSpecDescription): CanonicalCalendar {
  // Defaults as Temporal documents them: second, minute and hour match 0, the rest match all.
  return {
    second: fieldValues(calendar.second, [0], [0, 59], Number),
    minute: fieldValues(calendar.minute, [0], [0, 59], Number),
    hour: fieldValues(calendar.hour, [0], [0, 23], Number),
    dayOfMonth: fieldValues(calendar.dayOfMonth, '*', [1, 31], Number),
    month: fieldValues(calendar.month, '*', [1, 12], (unit) => monthNumbers.indexOf(String(unit)) + 1),
    year: fieldValues(calendar.year, '*', undefined, Number),
    dayOfWeek: fieldValues(calendar.dayOfWeek, '*', [0, 6], (unit) => dayOfWeekNumbers.indexOf(String(unit))),
    comment: calendar.comment ?? '',
  };
}

// Expands a calendar field (`*`, a value, a range or a list of both) into the set of values it
// matches. An empty list matches everything, as Temporal describes an unrestricted year.
function fieldValues(
  field: CalendarField | undefined,
  fallback: number[] | '*',
  domain: [number, number] | undefined,
  toNumber: (unit: unknown) => number,
): number[] | '*' {
  if (field === undefined) {
    return fallback;
  }
  if (field === '*') {
    return '*';
  }
  const items: unknown[] = Array.isArray(field) ? field : [field];
  if (items.length === 0) {
    return '*';
  }

  const values = new Set<number>();
  for (const item of items) {
    const range = typeof item === 'object' && item !== null ? (item as { start: unknown; end?: unknown; step?: number }) : { start: item };
    const start = toNumber(range.start);
    const end = Math.max(start, range.end === undefined ? start : toNumber(range.end));
    const step = range.step !== undefined && range.step >= 1 ? range.step : 1;
    for (let value = start; value <= end; value += step) {
      values.add(value);
    }
  }

  const sorted = [...values].sort((left, right) => left - right);
  const coversDomain = domain !== undefined && sorted.length === domain[1] - domain[0] + 1 && sorted[0] === domain[0];
  return coversDomain ? '*' : sorted;
}

function formatSpec(spec: CanonicalSpec): string {
  const parts: string[] = [];
  for (const interval of spec.intervals) {
    parts.push(`every ${formatDuration(interval.every)}${interval.offset > 0 ? ` offset ${formatDuration(interval.offset)}` : ''}`);
  }
  const comments = [...new Set(spec.calendars.map((calendar) => calendar.comment))];
  for (const comment of comments) {
    parts.push(comment || 'calendar without a comment');
  }
  for (const expression of spec.cronExpressions) {
    parts.push(`cron "${expression}"`);
  }
  if (parts.length === 0) {
    parts.push('no times');
  }
  if (spec.jitterMs > 0) {
    parts.push(`jitter ${formatDuration(spec.jitterMs)}`);
  }
  if (spec.timezone !== 'UTC') {
    parts.push(`time zone ${spec.timezone}`);
  }
  return parts.join(' ');
}

function canonicalSearchAttributes(attributes: SearchAttributePair[] | TypedSearchAttributes | undefined): string[] {
  const pairs = attributes === undefined ? [] : Array.isArray(attributes) ? attributes : attributes.getAll();
  return pairs.map((pair) => `${pair.key.name}=${JSON.stringify(pair.value)}`).sort();
}

function durationMs(duration: Duration | undefined): number {
  if (duration === undefined) {
    return 0;
  }
  return typeof duration === 'number' ? duration : (parseDurationMs(duration) ?? 0);
}

// The rotation's input is a one-element argument list, and paths read better without the `[0]`.
function unwrapSingle(args: unknown): unknown {
  return Array.isArray(args) && args.length === 1 ? args[0] : args;
}

// Lists the JSON paths at which two values differ, such as `integration.policy.rotationPeriodMs`.
function changedPaths(from: unknown, to: unknown, path: string): string[] {
  if (isPlainObject(from) && isPlainObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((key) => changedPaths(from[key], to[key], path ? `${path}.${key}` : key));
  }
  if (Array.isArray(from) && Array.isArray(to) && from.length === to.length) {
    return from.flatMap((item, index) => changedPaths(item, to[index], `${path}[${index}]`));
  }
  return stableJson(from) === stableJson(to) ? [] : [path || '(whole input)'];
}

function listPaths(paths: string[]): string {
  const firstPaths = paths.slice(0, 5).join(', ');
  return paths.length > 5 ? `${firstPaths} and ${paths.length - 5} more` : firstPaths;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// JSON with object keys sorted, so equal values give equal text.
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    isPlainObject(item) ? Object.fromEntries(Object.keys(item).sort().map((key) => [key, item[key]])) : item,
  ) ?? 'undefined';
}

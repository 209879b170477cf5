import { CronExpressionParser } from 'cron-parser';
import { DAYS_OF_WEEK, MONTHS, type CalendarSpec, type Range } from '@temporalio/client';

/**
 * Translates the inventory's 5-field cron expressions (UTC) into Temporal calendar specs.
 *
 * Rotor builds the calendars itself instead of passing the cron string to Temporal, for two
 * reasons. When both day fields are restricted, cron (and cron-parser, which validates the
 * inventory) fires on either the day of the month or the day of the week, but Temporal requires
 * both to match, so such an expression becomes two calendars. And the stable offset that
 * spreads integrations shifts the fire times, which a cron string cannot express.
 */

/** A cron feature that Temporal calendars cannot express. */
export class UnsupportedCronError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedCronError';
  }
}

/** The fire times of a cron expression as sets of values. `*` marks an unrestricted day field. */
export interface ParsedCron {
  minutes: number[];
  hours: number[];
  daysOfMonth: number[] | '*';
  months: number[];
  /** 0 is Sunday, and cron's 7 is folded into 0. */
  daysOfWeek: number[] | '*';
}

/**
 * Parses a 5-field cron expression. `H` (a value derived from a hash) is seeded with
 * `hashSeed`, so the same integration always gets the same value.
 * Throws UnsupportedCronError for `L` (last day) and `#` (nth weekday of the month).
 */
export function parseCron(expression: string, hashSeed: string): ParsedCron {
  const { fields } = CronExpressionParser.parse(expression, { tz: 'UTC', hashSeed });
  const dayOfWeekText = expression.trim().split(/\s+/)[4] ?? '';
  if (fields.dayOfMonth.hasLastChar || fields.dayOfWeek.hasLastChar || dayOfWeekText.includes('#')) {
    throw new UnsupportedCronError(
      `"${expression}" uses L (last day) or # (nth weekday), which Temporal Schedules cannot express; name fixed days of the month or days of the week instead`,
    );
  }

  return {
    minutes: [...fields.minute.values] as number[],
    hours: [...fields.hour.values] as number[],
    daysOfMonth: fields.dayOfMonth.isWildcard ? '*' : (fields.dayOfMonth.values as number[]),
    months: [...fields.month.values] as number[],
    daysOfWeek: fields.dayOfWeek.isWildcard ? '*' : uniqueSorted((fields.dayOfWeek.values as number[]).map((day) => day % 7)),
  };
}

/**
 * Returns the minutes from the last fire time of a day to midnight UTC. Calendars can express
 * only a shift shorter than this, which keeps every fire time on its own day. A time moved past
 * midnight would move its day too, and days of the month do not carry into months evenly.
 */
export function minutesLeftInDay(cron: ParsedCron): number {
  return 24 * 60 - (Math.max(...cron.hours) * 60 + Math.max(...cron.minutes));
}

/**
 * Builds the calendars that fire `shiftMinutes` after each time the cron expression names.
 * `shiftMinutes` must be less than minutesLeftInDay(cron). Every calendar carries `comment`.
 */
export function cronCalendars(cron: ParsedCron, shiftMinutes: number, comment: string): CalendarSpec[] {
  if (shiftMinutes < 0 || shiftMinutes >= minutesLeftInDay(cron)) {
    throw new RangeError(`a shift of ${shiftMinutes} minutes moves a fire time past midnight; expected less than ${minutesLeftInDay(cron)}`);
  }

  // Standard cron matches either day field when both are restricted, but Temporal matches both.
  const days: Array<{ daysOfMonth: number[] | '*'; daysOfWeek: number[] | '*' }> =
    cron.daysOfMonth !== '*' && cron.daysOfWeek !== '*'
      ? [
          { daysOfMonth: cron.daysOfMonth, daysOfWeek: '*' },
          { daysOfMonth: '*', daysOfWeek: cron.daysOfWeek },
        ]
      : [{ daysOfMonth: cron.daysOfMonth, daysOfWeek: cron.daysOfWeek }];

  const times = shiftTimes(cron, shiftMinutes);

  return days.flatMap((day) =>
    times.map(
      (time): CalendarSpec => ({
        second: [{ start: 0, end: 0, step: 1 }],
        minute: compactRanges(time.minutes, (value) => value),
        hour: compactRanges(time.hours, (value) => value),
        dayOfMonth: day.daysOfMonth === '*' ? '*' : compactRanges(day.daysOfMonth, (value) => value),
        month: compactRanges(cron.months, (value) => MONTHS[value - 1]),
        dayOfWeek: day.daysOfWeek === '*' ? '*' : compactRanges(day.daysOfWeek, (value) => DAYS_OF_WEEK[value]),
        comment,
      }),
    ),
  );
}

// Minutes × hours is a product set. Shifting it keeps a product set for the minutes that stay in
// their hour and another for the minutes that carry into the next hour.
function shiftTimes(cron: ParsedCron, shiftMinutes: number): Array<{ minutes: number[]; hours: number[] }> {
  const hourShift = Math.floor(shiftMinutes / 60);
  const minuteShift = shiftMinutes % 60;
  const times: Array<{ minutes: number[]; hours: number[] }> = [];

  const sameHour = cron.minutes.filter((minute) => minute + minuteShift < 60).map((minute) => minute + minuteShift);
  if (sameHour.length > 0) {
    times.push({ minutes: sameHour, hours: cron.hours.map((hour) => hour + hourShift) });
  }

  const nextHour = cron.minutes.filter((minute) => minute + minuteShift >= 60).map((minute) => minute + minuteShift - 60);
  if (nextHour.length > 0) {
    times.push({ minutes: nextHour, hours: cron.hours.map((hour) => hour + hourShift + 1) });
  }
  return times;
}

function compactRanges<Unit>(values: number[], toUnit: (value: number) => Unit): Range<Unit>[] {
  const ranges: Range<Unit>[] = [];
  const sorted = uniqueSorted(values);
  let start = sorted[0];
  for (let index = 1; index <= sorted.length; index += 1) {
    if (index < sorted.length && sorted[index] === sorted[index - 1] + 1) {
      continue;
    }
    ranges.push({ start: toUnit(start), end: toUnit(sorted[index - 1]), step: 1 });
    start = sorted[index];
  }
  return ranges;
}

function uniqueSorted(values: number[]): number[] {
  return [...new Set(values)].sort((left, right) => left - right);
}

import ms from 'ms';
import { z } from 'zod';

/**
 * A duration written the way Temporal and the `ms` package write them: `90s`, `15m`, `12h`,
 * `30d`. Parses to milliseconds.
 */
export const durationSchema = z
  .string({ error: 'expected a duration with a unit, such as 90s, 15m, 12h or 30d' })
  .trim()
  .refine((text) => parseDurationMs(text) !== undefined, {
    message: 'expected a duration with a unit, such as 90s, 15m, 12h or 30d (units: ms, s, m, h, d, w, y)',
  })
  .transform((text) => parseDurationMs(text) as number);

// A number and one lower-case unit. The `ms` package alone also reads a bare number as
// milliseconds and `M` as minutes, so "30" or "3M" (meant as months) would pass silently.
const durationPattern = /^\d+(\.\d+)?(ms|s|m|h|d|w|y)$/;

/** Parses `30s`, `5m`, `2h`, `30d` into milliseconds; undefined when the text is not a positive duration with a unit. */
export function parseDurationMs(text: string): number | undefined {
  if (!durationPattern.test(text)) {
    return undefined;
  }
  const parsed = ms(text as ms.StringValue);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed <= 0) {
    return undefined;
  }
  return parsed;
}

/** Formats milliseconds for people, as `1h 30m` or `45s`. */
export function formatDuration(milliseconds: number): string {
  const totalSeconds = Math.round(milliseconds / 1000);
  const days = Math.floor(totalSeconds / 86_400);
  const hours = Math.floor((totalSeconds % 86_400) / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  const parts: string[] = [];
  if (days) parts.push(`${days}d`);
  if (hours) parts.push(`${hours}h`);
  if (minutes) parts.push(`${minutes}m`);
  if (seconds || parts.length === 0) parts.push(`${seconds}s`);
  return parts.join(' ');
}

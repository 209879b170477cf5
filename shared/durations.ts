import ms from 'ms';
import { z } from 'zod';

/**
 * A duration written the way Temporal and the `ms` package write them: `90s`, `15m`, `12h`,
 * `30d`. Parses to milliseconds.
 */
export const durationSchema = z
  .string()
  .trim()
  .refine((text) => parseDurationMs(text) !== undefined, {
    message: 'expected a duration such as 90s, 15m, 12h or 30d',
  })
  .transform((text) => parseDurationMs(text) as number);

/** Parses `30s`, `5m`, `2h`, `30d` into milliseconds; undefined when the text is not a positive duration. */
export function parseDurationMs(text: string): number | undefined {
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

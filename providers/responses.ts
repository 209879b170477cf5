/** Helpers every provider uses to describe a vendor response that fails its schema. */

/** Formats a zod issue path as the JSON reads: `result[0].id`, or "(the whole response)". */
export function formatPath(path: readonly PropertyKey[]): string {
  let formatted = '';
  for (const segment of path) {
    formatted += typeof segment === 'number' ? `[${segment}]` : `${formatted === '' ? '' : '.'}${String(segment)}`;
  }
  return formatted === '' ? '(the whole response)' : formatted;
}

/** Returns the value at a zod issue path, or undefined when the path does not exist. */
export function valueAtPath(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const segment of path) {
    if (current === null || typeof current !== 'object') {
      return undefined;
    }
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}

/**
 * Returns a vendor's error text for a message: every secret replaced by [redacted], whitespace
 * collapsed, and at most `maxLength` characters.
 */
export function scrubSecrets(text: string, secrets: readonly string[], maxLength = 300): string {
  let scrubbed = text;
  for (const secret of secrets) {
    if (secret !== '') {
      scrubbed = scrubbed.split(secret).join('[redacted]');
    }
  }
  scrubbed = scrubbed.replace(/\s+/g, ' ').trim();
  return scrubbed.length > maxLength ? `${scrubbed.slice(0, maxLength)}…` : scrubbed;
}

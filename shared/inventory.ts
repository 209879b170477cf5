import fs from 'node:fs';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { durationSchema } from './durations';

/**
 * The inventory: the YAML file that lists every integration Rotor manages and its policy.
 * It contains no secrets: management credentials and keys live in Vault, at the paths named here.
 */

const idSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected lowercase letters, digits and dashes, starting with a letter or digit (at most 63 characters)');

const vaultPathSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'expected a KV path relative to the mount, such as apps/billing/okx');

/** Vault's automated rotation rejects windows shorter than one hour; Rotor keeps the same floor. */
export const minimumRotationWindowMs = 3_600_000;

const cronSchema = z.string().superRefine((text, context) => {
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 5) {
    context.addIssue({ code: 'custom', message: `expected a cron expression with 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}` });
    return;
  }
  try {
    CronExpressionParser.parse(text);
  } catch (error) {
    context.addIssue({ code: 'custom', message: `invalid cron expression: ${(error as Error).message}` });
  }
});

const rotationPolicySchema = z
  .object({
    /** How often the key is rotated, such as 30d. Used to compute the next due date. */
    rotation_period: durationSchema.optional(),
    /** Cron expression (5 fields, UTC) for when rotations start; the alternative to rotation_period. */
    rotation_schedule: cronSchema.optional(),
    /** How long after each scheduled time a rotation may start; schedules spread integrations inside it. At least 1h. */
    rotation_window: durationSchema
      .refine((milliseconds) => milliseconds >= minimumRotationWindowMs, { message: 'expected a window of at least 1h, the minimum Vault accepts' })
      .optional(),
    /** Keeps the integration in the inventory and audit but pauses its schedule. */
    disable_automated_rotation: z.boolean().default(false),
    /** How long the previous key stays valid after the new one is promoted, so consumers can reload. */
    grace_period: durationSchema.default(3_600_000),
    /** How long verification retries while the vendor propagates a new key. */
    verify_timeout: durationSchema.default(120_000),
    /**
     * For providers that report key usage: grace lasts until the previous key has not been used
     * for this long, up to `max_grace`. Absent: grace lasts exactly `grace_period`.
     */
    idle_period: durationSchema.optional(),
    /** Upper bound on grace when it waits for the previous key to go idle. */
    max_grace: durationSchema.default(86_400_000),
    /**
     * At the provider's key limit, allow planning to revoke an extra key that is neither current
     * nor in use (inactive, or idle for `idle_period`). Otherwise such a key stops the rotation.
     */
    clear_stale_keys: z.boolean().default(false),
  })
  .strict()
  .superRefine((policy, context) => {
    if (policy.rotation_period !== undefined && policy.rotation_schedule !== undefined) {
      context.addIssue({ code: 'custom', path: ['rotation_schedule'], message: 'set either rotation_period or rotation_schedule, not both' });
    }
  });

const restrictionsSchema = z
  .object({
    /** IPv4 or IPv6 addresses or CIDRs the new key is bound to, where the provider supports it. */
    ip_allowlist: z.array(z.string()).default([]),
    /** Scopes or permissions of the new key, in the provider's own words. */
    scopes: z.array(z.string()).default([]),
    /** The new key expires this long after creation, where the provider supports expiry. */
    expires_after: durationSchema.optional(),
  })
  .strict();

const integrationSchema = z
  .object({
    id: idSchema,
    provider: z.string().min(1, 'expected a provider name; run `rotor providers` to list them'),
    /** Non-secret provider settings, checked against the provider's own schema. */
    config: z.record(z.string(), z.unknown()).default({}),
    /** KV path of the management credential the provider uses to create and revoke keys. */
    management_credential: vaultPathSchema,
    /** KV path consumers read the current key from. */
    vault_path: vaultPathSchema,
    owner: z.string().optional(),
    rotation: rotationPolicySchema.default(() => rotationPolicySchema.parse({})),
    restrictions: restrictionsSchema.default(() => restrictionsSchema.parse({})),
  })
  .strict();

export const inventorySchema = z
  .object({
    version: z.literal(1, { message: 'expected version: 1' }),
    integrations: z.array(integrationSchema).min(1, 'expected at least one integration'),
  })
  .strict();

export type InventoryFile = z.output<typeof inventorySchema>;
export type IntegrationEntry = z.output<typeof integrationSchema>;

/** One problem in the inventory, located in the file. */
export interface InventoryProblem {
  file: string;
  line?: number;
  path: string;
  message: string;
}

export class InventoryError extends Error {
  constructor(readonly problems: InventoryProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'InventoryError';
  }
}

export function formatProblem(problem: InventoryProblem): string {
  const location = problem.line === undefined ? problem.file : `${problem.file}:${problem.line}`;
  return `${location}: ${problem.path || '(root)'}: ${problem.message}`;
}

/** Reads and validates an inventory file; throws InventoryError listing every problem with its line. */
export function loadInventory(file: string): InventoryFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (error as Error).message;
    throw new InventoryError([{ file, path: '', message: `cannot read the inventory: ${reason}` }]);
  }
  return parseInventory(text, file);
}

export function parseInventory(text: string, file: string): InventoryFile {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new InventoryError(
      document.errors.map((error) => ({
        file,
        line: error.linePos?.[0].line,
        path: '',
        message: `invalid YAML: ${error.message.split('\n')[0]}`,
      })),
    );
  }

  const parsed = inventorySchema.safeParse(document.toJS());
  const problems: InventoryProblem[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push({ file, line: lineOf(document, lineCounter, issue.path), path: formatPath(issue.path), message: issue.message });
    }
  } else {
    const seen = new Map<string, number>();
    parsed.data.integrations.forEach((integration, index) => {
      const earlier = seen.get(integration.id);
      if (earlier !== undefined) {
        const path = ['integrations', index, 'id'];
        problems.push({ file, line: lineOf(document, lineCounter, path), path: formatPath(path), message: `duplicate id "${integration.id}": integrations[${earlier}] has it already` });
      }
      seen.set(integration.id, index);
    });
  }
  if (problems.length > 0) {
    throw new InventoryError(problems);
  }
  return parsed.data as InventoryFile;
}

export function findIntegration(inventory: InventoryFile, id: string, file: string): IntegrationEntry {
  const integration = inventory.integrations.find((entry) => entry.id === id);
  if (!integration) {
    const known = inventory.integrations.map((entry) => entry.id).join(', ');
    throw new InventoryError([{ file, path: 'integrations', message: `no integration with id "${id}"; the inventory has: ${known}` }]);
  }
  return integration;
}

function formatPath(path: PropertyKey[]): string {
  return path.map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`)).join('');
}

// Walks up the path until a node exists, so a missing field points at its parent's line.
function lineOf(document: Document, lineCounter: LineCounter, path: PropertyKey[]): number | undefined {
  for (let length = path.length; length >= 0; length -= 1) {
    const node = document.getIn(path.slice(0, length) as (string | number)[], true);
    if (isNode(node) && node.range) {
      return lineCounter.linePos(node.range[0]).line;
    }
  }
  return undefined;
}

import fs from 'node:fs';
import ipaddr from 'ipaddr.js';
import { LineCounter, parseDocument } from 'yaml';
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import type { Provider } from '../providers/contract';
import { durationSchema } from './durations';
import {
  InventoryError,
  duplicateIdProblems,
  isRecord,
  literalSecretProblems,
  orderProblems,
  providerProblems,
  schemaProblems,
  type InventorySource,
} from './inventory-checks';

export { InventoryError, formatProblem, type InventoryProblem } from './inventory-checks';

/**
 * The inventory: the YAML file that lists every integration Rotor manages and its policy.
 * It contains no secrets: management credentials and keys live in Vault, at the paths named here.
 * examples/inventory.full.yaml documents every field.
 */

/** Provider of keys whose vendor has no key-management API: Rotor tracks their age, a person rotates them. */
export const manualProviderName = 'manual';

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

/** An IPv4 or IPv6 address or CIDR block, written in its standard form. */
const cidrSchema = z.string().superRefine((text, context) => {
  const problem = cidrProblem(text);
  if (problem) {
    context.addIssue({ code: 'custom', message: problem });
  }
});

// A calendar date such as 2025-03-01. One day of slack lets a user east of UTC write today's date.
const pastDateSchema = z.iso
  .date({ message: 'expected a date as YYYY-MM-DD, such as 2025-03-01' })
  .refine((date) => date <= new Date(Date.now() + 86_400_000).toISOString().slice(0, 10), { message: 'expected a date that is not in the future' });

const textSchema = z.string().min(1, 'expected a non-empty string');

const labelSchema = z.string().regex(/^\S{1,64}$/, 'expected a word of 1 to 64 characters without spaces, such as payments or tier-1');

const rotationPolicyShape = {
  /** How often the key is rotated, such as 30d. Used to compute the next due date. */
  rotation_period: durationSchema.optional(),
  /** Cron expression (5 fields, UTC) for when rotations start; the alternative to rotation_period. */
  rotation_schedule: cronSchema.optional(),
  /** How long after each due time a rotation may start; schedules spread integrations inside it. At least 1h. */
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
};

type RotationTiming = { rotation_period?: number; rotation_schedule?: string; rotation_window?: number };

function checkPeriodOrSchedule(policy: RotationTiming, context: z.RefinementCtx): void {
  if (policy.rotation_period !== undefined && policy.rotation_schedule !== undefined) {
    context.addIssue({ code: 'custom', path: ['rotation_schedule'], message: 'set either rotation_period or rotation_schedule, not both' });
  }
}

function checkRotationWindow(policy: RotationTiming, context: z.RefinementCtx): void {
  if (policy.rotation_window === undefined) {
    return;
  }
  if (policy.rotation_period === undefined && policy.rotation_schedule === undefined) {
    context.addIssue({
      code: 'custom',
      path: ['rotation_window'],
      message: 'rotation_window needs a due time to count from; expected rotation_period or rotation_schedule beside it',
    });
    return;
  }
  if (policy.rotation_period !== undefined && policy.rotation_window >= policy.rotation_period) {
    context.addIssue({ code: 'custom', path: ['rotation_window'], message: 'expected a rotation_window shorter than rotation_period' });
  }
}

const rotationPolicySchema = z
  .object(rotationPolicyShape)
  .strict()
  .superRefine((policy, context) => {
    checkPeriodOrSchedule(policy, context);
    checkRotationWindow(policy, context);
  });

const restrictionsShape = {
  /** IPv4 or IPv6 addresses or CIDRs the new key is bound to, where the provider supports it. */
  ip_allowlist: z.array(cidrSchema).default([]),
  /** Scopes or permissions of the new key, in the provider's own words. */
  scopes: z.array(textSchema).default([]),
  /** The new key expires this long after creation, where the provider supports expiry. */
  expires_after: durationSchema.optional(),
  /** Usage limits in the vendor's own terms, such as requests_per_day: 10000. Recorded for the audit and reports. */
  usage_limits: z.record(textSchema, z.number().nonnegative({ message: 'expected a number of 0 or more' })).default({}),
};

const restrictionsSchema = z.object(restrictionsShape).strict();

const postureShape = {
  /** The vendor account that owns the key requires two-factor authentication for every login. */
  two_factor_enforced: z.boolean({ error: (issue) => (issue.input === undefined ? 'missing; expected true or false' : 'expected true or false') }),
  /** The vendor's latest published security audit, such as "SOC 2 Type II, 2025", or null when it publishes none. */
  security_audit: textOrNull('the latest published security audit, such as "SOC 2 Type II, 2025"', 'publishes none'),
  /** The vendor's breach notification policy (URL or text), or null when it has none. */
  breach_notification: textOrNull('the breach notification policy, as a URL or text', 'has none'),
  /** When someone last checked these facts. The audit reports a review older than a year. */
  last_reviewed: pastDateSchema,
};

const postureSchema = z.object(postureShape).strict();

// A string field where null records that the vendor has no such thing, such as no audit report.
function textOrNull(what: string, whenNull: string) {
  const expected = `expected ${what}, or null when the vendor ${whenNull}`;
  return z
    .string({ error: (issue) => (issue.input === undefined ? `missing; ${expected}` : expected) })
    .min(1, expected)
    .nullable();
}

const integrationObjectSchema = z
  .object({
    id: idSchema,
    provider: z.string().min(1, 'expected a provider name; run `rotor providers` to list them'),
    /** Non-secret provider settings, checked against the provider's own schema. */
    config: z.record(z.string(), z.unknown()).default({}),
    /** KV path of the management credential the provider uses to create and revoke keys. Not used by manual integrations. */
    management_credential: vaultPathSchema.optional(),
    /** KV path consumers read the current key from. Optional for manual integrations. */
    vault_path: vaultPathSchema.optional(),
    owner: textSchema.optional(),
    /** Labels for selecting and reporting, such as `rotor rotate --tag payments`. */
    tags: z.array(labelSchema).default([]),
    /** Data the key can reach, in free words such as balances, trading, withdrawals. */
    data_access: z.array(textSchema).default([]),
    rotation: rotationPolicySchema.default(() => rotationPolicySchema.parse({})),
    restrictions: restrictionsSchema.default(() => restrictionsSchema.parse({})),
    /** The vendor's security posture, which `rotor audit` checks. */
    posture: postureSchema.optional(),
    /** Manual integrations only: the date the key was last rotated by hand. */
    last_rotated: pastDateSchema.optional(),
  })
  .strict()
  .superRefine(checkProviderFields);

// Manual keys have no management credential and no Rotor rotation record, so the fields a
// rotation needs are required for every other provider, and last_rotated only for manual.
function checkProviderFields(entry: { provider: string; management_credential?: string; vault_path?: string; last_rotated?: string }, context: z.RefinementCtx): void {
  if (entry.provider === manualProviderName) {
    if (entry.last_rotated === undefined) {
      context.addIssue({ code: 'custom', path: ['last_rotated'], message: 'missing; expected the date the key was last rotated by hand, as YYYY-MM-DD' });
    }
    return;
  }
  if (entry.management_credential === undefined) {
    context.addIssue({
      code: 'custom',
      path: ['management_credential'],
      message: 'missing; expected the KV path of the credential that creates and revokes keys, such as rotor/management/okx (only manual integrations go without)',
    });
  }
  if (entry.vault_path === undefined) {
    context.addIssue({ code: 'custom', path: ['vault_path'], message: 'missing; expected the KV path consumers read the key from, such as apps/billing/okx' });
  }
  if (entry.last_rotated !== undefined) {
    context.addIssue({
      code: 'custom',
      path: ['last_rotated'],
      message: `last_rotated is for manual integrations only; Rotor records rotations of ${entry.provider} keys in Vault metadata, so remove it`,
    });
  }
}

type IntegrationFields = z.output<typeof integrationObjectSchema>;
type CommonFields = Omit<IntegrationFields, 'management_credential' | 'vault_path' | 'last_rotated'>;

/** An integration whose provider creates and revokes keys, so Rotor rotates it. */
export type RotatableIntegrationEntry = CommonFields & { management_credential: string; vault_path: string; last_rotated?: undefined };
/** An integration of the manual provider: Rotor tracks its age, a person rotates it. */
export type ManualIntegrationEntry = CommonFields & { management_credential?: string; vault_path?: string; last_rotated: string };
export type IntegrationEntry = RotatableIntegrationEntry | ManualIntegrationEntry;
export type RotationPolicy = IntegrationEntry['rotation'];
export type Restrictions = IntegrationEntry['restrictions'];
export type VendorPosture = NonNullable<IntegrationEntry['posture']>;

const integrationSchema = integrationObjectSchema.transform((entry) => entry as IntegrationEntry);

// Defaults are checked on their own, field by field, so a bad default is reported once at
// its own line. rotation_window needs a due time only once merged into an integration.
const defaultsSchema = z
  .object({
    owner: textSchema.optional(),
    tags: z.array(labelSchema).optional(),
    rotation: z.object(rotationPolicyShape).partial().strict().superRefine(checkPeriodOrSchedule).optional(),
    restrictions: z.object(restrictionsShape).partial().strict().optional(),
    posture: z.object(postureShape).partial().strict().optional(),
  })
  .strict();

const defaultSections = ['rotation', 'restrictions', 'posture'] as const;

const providerSettingsSchema = z
  .object({
    /** Key-management requests per second for this provider's task queue, in place of the provider's own default. */
    rate_limit_per_second: z.number({ error: 'expected a number of requests per second, such as 2' }).positive({ message: 'expected a number greater than 0' }),
  })
  .strict();

export const inventorySchema = z
  .object({
    version: z.literal(1, { message: 'expected version: 1' }),
    /** Values every integration inherits unless it sets its own. */
    defaults: defaultsSchema.optional(),
    /** Per-provider settings, by provider name. */
    providers: z.record(z.string(), providerSettingsSchema).default({}),
    integrations: z.array(integrationSchema).min(1, 'expected at least one integration'),
  })
  .strict()
  // Defaults are merged into the integrations before parsing, so the output does not repeat them.
  .transform(({ defaults: _defaults, ...inventory }) => inventory);

export type InventoryFile = z.output<typeof inventorySchema>;

export interface InventoryOptions {
  /**
   * Providers to check provider names, provider config and the providers map against.
   * Without them those checks are skipped; cli/integrations passes the registry's providers.
   */
  providers?: readonly Provider[];
}

/** Reads and validates an inventory file; throws InventoryError listing every problem with its line. */
export function loadInventory(file: string, options: InventoryOptions = {}): InventoryFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reasons: Record<string, string> = {
      ENOENT: 'file not found; pass the file with --file or set ROTOR_INVENTORY',
      EISDIR: 'this is a folder; pass the inventory file itself with --file',
      EACCES: 'permission denied; check the file mode',
    };
    const reason = (code && reasons[code]) ?? (error as Error).message;
    throw new InventoryError([{ file, path: '', message: `cannot read the inventory: ${reason}` }]);
  }
  return parseInventory(text, file, options);
}

/**
 * Parses and validates inventory text: YAML syntax, the schema with defaults merged in,
 * duplicate ids, providers (when given) and literal secrets. Throws InventoryError listing
 * every problem found, ordered by line.
 */
export function parseInventory(text: string, file: string, options: InventoryOptions = {}): InventoryFile {
  const source = parseYaml(text, file);
  const raw = mergeDefaults(source.document.toJS() as unknown);

  const parsed = inventorySchema.safeParse(raw);
  const integrations = isRecord(raw) && Array.isArray(raw.integrations) ? raw.integrations : [];
  const problems = [
    ...(parsed.success ? [] : schemaProblems(parsed.error.issues, source, inventorySchema)),
    ...duplicateIdProblems(integrations, source),
    ...(options.providers && isRecord(raw) ? providerProblems(raw, source, options.providers) : []),
    ...literalSecretProblems(source),
  ];
  if (problems.length > 0 || !parsed.success) {
    throw new InventoryError(orderProblems(problems));
  }
  return parsed.data;
}

function parseYaml(text: string, file: string): InventorySource {
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
  return { file, document, lineCounter };
}

/**
 * Merges the top-level defaults into each integration, on the raw data before parsing, so that
 * durations and dates are parsed once. Integration values win: owner and tags replace the
 * default, and rotation, restrictions and posture merge field by field. rotation_period and
 * rotation_schedule count as one choice, so an integration that sets either drops the other's
 * default. An integration without a posture of its own inherits the default posture only when
 * it has all four fields, so a shared last_reviewed does not give every integration a posture.
 */
function mergeDefaults(raw: unknown): unknown {
  if (!isRecord(raw) || !isRecord(raw.defaults) || !Array.isArray(raw.integrations)) {
    return raw;
  }
  const defaults = validDefaults(raw.defaults);
  const integrations = raw.integrations.map((integration: unknown) => (isRecord(integration) ? mergeIntegrationDefaults(integration, defaults) : integration));
  return { ...raw, integrations };
}

// Keeps the default values that pass their own schema, field by field inside each section.
// The others are reported at defaults.* and left out, so they are not reported again under
// every integration.
function validDefaults(defaults: Record<string, unknown>): Record<string, unknown> {
  const shape = defaultsSchema.shape;
  const valid: Record<string, unknown> = {};
  for (const field of ['owner', 'tags'] as const) {
    if (defaults[field] !== undefined && shape[field].safeParse(defaults[field]).success) {
      valid[field] = defaults[field];
    }
  }
  for (const section of defaultSections) {
    const values = defaults[section];
    if (isRecord(values)) {
      const fields = Object.entries(values).filter(([key, value]) => shape[section].safeParse({ [key]: value }).success);
      valid[section] = Object.fromEntries(fields);
    }
  }
  return valid;
}

function mergeIntegrationDefaults(integration: Record<string, unknown>, defaults: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...integration };
  for (const field of ['owner', 'tags'] as const) {
    if (merged[field] === undefined && defaults[field] !== undefined) {
      merged[field] = defaults[field];
    }
  }
  for (const section of defaultSections) {
    const inherited = defaults[section];
    const own = integration[section] ?? {};
    if (!isRecord(inherited) || !isRecord(own) || Object.keys(inherited).length === 0) {
      continue; // A section that is not a mapping is reported by the schema.
    }
    if (section === 'posture' && integration.posture == null && !postureSchema.safeParse(inherited).success) {
      continue;
    }
    merged[section] = { ...withoutOverriddenTiming(section, inherited, own), ...own };
  }
  return merged;
}

function withoutOverriddenTiming(section: string, inherited: Record<string, unknown>, own: Record<string, unknown>): Record<string, unknown> {
  if (section !== 'rotation' || (own.rotation_period === undefined && own.rotation_schedule === undefined)) {
    return inherited;
  }
  const rest = { ...inherited };
  delete rest.rotation_period;
  delete rest.rotation_schedule;
  return rest;
}

/** Returns the integration with this id, or throws InventoryError listing the ids the inventory has. */
export function findIntegration(inventory: InventoryFile, id: string, file: string): IntegrationEntry {
  const integration = inventory.integrations.find((entry) => entry.id === id);
  if (!integration) {
    const known = inventory.integrations.map((entry) => entry.id).join(', ');
    throw new InventoryError([{ file, path: 'integrations', message: `no integration with id "${id}"; the inventory has: ${known}` }]);
  }
  return integration;
}

export function isManualIntegration(entry: IntegrationEntry): entry is ManualIntegrationEntry {
  return entry.provider === manualProviderName;
}

/** Returns the task queue rate limits the inventory sets, by provider name (requests per second). */
export function rateLimitOverrides(inventory: InventoryFile): Record<string, number> {
  return Object.fromEntries(Object.entries(inventory.providers).map(([name, settings]) => [name, settings.rate_limit_per_second]));
}

/**
 * Returns why a CIDR or address is invalid, or undefined when it is valid. IPv4 must be
 * four-part decimal, because ipaddr.js also accepts forms such as 127.1 that vendors reject.
 */
export function cidrProblem(text: string): string | undefined {
  const example = 'expected an IPv4 or IPv6 address or CIDR block, such as 203.0.113.0/24 or 2001:db8::/32';
  const [address, prefix, extra] = text.split('/');
  if (extra !== undefined || address === '' || address.includes('%') || !ipaddr.isValid(address)) {
    return `invalid address "${text}": ${example}`;
  }
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(address)) {
    return `invalid IPv4 address "${text}": expected four decimal parts, such as 203.0.113.7`;
  }
  if (prefix === undefined) {
    return undefined;
  }
  const maximum = parsed.kind() === 'ipv4' ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > maximum) {
    return `invalid prefix length in "${text}": expected /0 to /${maximum} for an ${parsed.kind() === 'ipv4' ? 'IPv4' : 'IPv6'} address`;
  }
  const network = networkAddress(parsed, Number(prefix));
  if (network !== parsed.toString()) {
    return `"${text}" has bits set after its /${prefix} prefix; expected the network address ${network}/${prefix}, or a /${maximum} for one address`;
  }
  return undefined;
}

function networkAddress(address: ipaddr.IPv4 | ipaddr.IPv6, prefixLength: number): string {
  const bytes = address.toByteArray();
  const masked = bytes.map((byte, index) => {
    const bitsKept = Math.min(8, Math.max(0, prefixLength - index * 8));
    return byte & (0xff << (8 - bitsKept)) & 0xff;
  });
  return ipaddr.fromByteArray(masked).toString();
}

import { z } from 'zod';
import { durationSchema } from './durations';

/**
 * Rotor's process configuration, read from the environment. Temporal and Vault settings use
 * the variable names of the Temporal CLI and the Vault CLI, so one shell works for all three.
 */

/** Thrown when the environment is missing or has invalid settings; lists every problem at once. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `Invalid configuration in the environment (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((problem) => `  - ${problem}`).join('\n') +
        '\nSet or fix these variables and run the command again. README.md lists every setting.',
    );
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const hostPort = z
  .string()
  .regex(/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$/, 'expected host:port, such as 127.0.0.1:7233');

const flag = z
  .enum(['true', 'false', '1', '0', ''], { message: 'expected true or false' })
  .transform((value) => value === 'true' || value === '1');

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value));

const temporalEnvSchema = z
  .object({
    TEMPORAL_ADDRESS: hostPort.default('127.0.0.1:7233'),
    TEMPORAL_NAMESPACE: z.string().min(1, 'must not be empty').default('default'),
    TEMPORAL_TLS: flag.default(false),
    TEMPORAL_TLS_CERT: optionalText,
    TEMPORAL_TLS_KEY: optionalText,
    TEMPORAL_TLS_CA: optionalText,
    TEMPORAL_TLS_SERVER_NAME: optionalText,
    TEMPORAL_API_KEY: optionalText,
    ROTOR_TASK_QUEUE: z.string().regex(/^[A-Za-z0-9._-]+$/, 'expected letters, digits, dot, dash or underscore').default('rotor'),
  });

const vaultEnvSchema = z
  .object({
    VAULT_ADDR: z.url({ protocol: /^https?$/, message: 'expected an http or https URL such as http://127.0.0.1:8200' }).default('http://127.0.0.1:8200'),
    VAULT_TOKEN: optionalText,
    VAULT_ROLE_ID: optionalText,
    VAULT_SECRET_ID: optionalText,
    VAULT_APPROLE_MOUNT: z.string().min(1).default('approle'),
    VAULT_NAMESPACE: optionalText,
    VAULT_CACERT: optionalText,
    ROTOR_KV_MOUNT: z.string().regex(/^[A-Za-z0-9_-]+$/, 'expected a mount name such as secret').default('secret'),
    ROTOR_STAGING_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'expected a relative path such as rotor/staging')
      .default('rotor/staging'),
  });

// Checks across several variables run on the raw environment, so they report even when
// another variable of the same group fails to parse.
function temporalPairingProblems(env: Env): string[] {
  const hasCert = Boolean(env.TEMPORAL_TLS_CERT?.trim());
  const hasKey = Boolean(env.TEMPORAL_TLS_KEY?.trim());
  if (hasCert === hasKey) {
    return [];
  }
  return [`${hasCert ? 'TEMPORAL_TLS_KEY' : 'TEMPORAL_TLS_CERT'}: mutual TLS needs both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (file paths)`];
}

function vaultAuthProblems(env: Env): string[] {
  const token = Boolean(env.VAULT_TOKEN?.trim());
  const roleId = Boolean(env.VAULT_ROLE_ID?.trim());
  const secretId = Boolean(env.VAULT_SECRET_ID?.trim());
  if (token) {
    return [];
  }
  if (!roleId && !secretId) {
    return ['VAULT_TOKEN: missing: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole login'];
  }
  if (!roleId) {
    return ['VAULT_ROLE_ID: missing: AppRole login needs VAULT_ROLE_ID with VAULT_SECRET_ID'];
  }
  if (!secretId) {
    return ['VAULT_SECRET_ID: missing: AppRole login needs VAULT_SECRET_ID with VAULT_ROLE_ID'];
  }
  return [];
}

const workerEnvSchema = z.object({
  ROTOR_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error'], { message: 'expected trace, debug, info, warn or error' }).default('info'),
  ROTOR_SHUTDOWN_GRACE: durationSchema.default(30_000),
});

export interface TemporalConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  tls?: { certPath?: string; keyPath?: string; caPath?: string; serverName?: string };
  apiKey?: string;
}

export type VaultAuth = { method: 'token'; token: string } | { method: 'approle'; roleId: string; secretId: string; mount: string };

export interface VaultConfig {
  address: string;
  auth: VaultAuth;
  namespace?: string;
  caCertPath?: string;
  kvMount: string;
  stagingPrefix: string;
}

export interface WorkerConfig {
  temporal: TemporalConfig;
  vault: VaultConfig;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  shutdownGraceMs: number;
}

export function loadTemporalConfig(env: Env = process.env): TemporalConfig {
  const { temporal } = parseAll(env, { temporal: temporalEnvSchema }, [temporalPairingProblems]);
  return toTemporalConfig(temporal);
}

export function loadVaultConfig(env: Env = process.env): VaultConfig {
  const { vault } = parseAll(env, { vault: vaultEnvSchema }, [vaultAuthProblems]);
  return toVaultConfig(vault);
}

export function loadWorkerConfig(env: Env = process.env): WorkerConfig {
  const { temporal, vault, worker } = parseAll(
    env,
    { temporal: temporalEnvSchema, vault: vaultEnvSchema, worker: workerEnvSchema },
    [temporalPairingProblems, vaultAuthProblems],
  );
  return {
    temporal: toTemporalConfig(temporal),
    vault: toVaultConfig(vault),
    logLevel: worker.ROTOR_LOG_LEVEL,
    shutdownGraceMs: worker.ROTOR_SHUTDOWN_GRACE,
  };
}

/**
 * Parses one environment against several schemas and throws a single ConfigError listing the
 * problems of all of them. Messages name the variable and never include its value, because
 * some of these variables hold tokens.
 */
function parseAll<S extends Record<string, z.ZodType>>(
  env: Env,
  schemas: S,
  checks: Array<(env: Env) => string[]>,
): { [K in keyof S]: z.output<S[K]> } {
  const problems: string[] = [];
  const parsed: Record<string, unknown> = {};
  for (const [section, schema] of Object.entries(schemas)) {
    const result = schema.safeParse(env);
    if (result.success) {
      parsed[section] = result.data;
      continue;
    }
    for (const issue of result.error.issues) {
      problems.push(`${issue.path.join('.') || '(environment)'}: ${issue.message}`);
    }
  }
  for (const check of checks) {
    problems.push(...check(env));
  }
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return parsed as { [K in keyof S]: z.output<S[K]> };
}

function toTemporalConfig(env: z.output<typeof temporalEnvSchema>): TemporalConfig {
  const wantsTls = env.TEMPORAL_TLS || Boolean(env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_CA || env.TEMPORAL_API_KEY);
  return {
    address: env.TEMPORAL_ADDRESS,
    namespace: env.TEMPORAL_NAMESPACE,
    taskQueue: env.ROTOR_TASK_QUEUE,
    tls: wantsTls
      ? {
          certPath: env.TEMPORAL_TLS_CERT,
          keyPath: env.TEMPORAL_TLS_KEY,
          caPath: env.TEMPORAL_TLS_CA,
          serverName: env.TEMPORAL_TLS_SERVER_NAME,
        }
      : undefined,
    apiKey: env.TEMPORAL_API_KEY,
  };
}

function toVaultConfig(env: z.output<typeof vaultEnvSchema>): VaultConfig {
  const auth: VaultAuth = env.VAULT_TOKEN
    ? { method: 'token', token: env.VAULT_TOKEN }
    : { method: 'approle', roleId: env.VAULT_ROLE_ID ?? '', secretId: env.VAULT_SECRET_ID ?? '', mount: env.VAULT_APPROLE_MOUNT };
  return {
    address: env.VAULT_ADDR.replace(/\/+$/, ''),
    auth,
    namespace: env.VAULT_NAMESPACE,
    caCertPath: env.VAULT_CACERT,
    kvMount: env.ROTOR_KV_MOUNT,
    stagingPrefix: env.ROTOR_STAGING_PREFIX,
  };
}

import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { cidrProblem } from '../shared/inventory';
import {
  ProviderError,
  type CreateKeyRequest,
  type CreatedKey,
  type KeyUsage,
  type Provider,
  type ProviderContext,
  type ProviderErrorKind,
  type ProviderKey,
} from './contract';
import { formatPath, scrubSecrets, valueAtPath } from './responses';
import { sendVendorRequest, type VendorResponse } from './http';
import { hmacSha512Hex, sha512Hex } from './signing';

/**
 * The Gate.io provider keeps the API key of one Gate.io sub-account fresh through the APIv4
 * sub-account key endpoints (create, list, get and delete under /sub_accounts/{user_id}/keys).
 * Its management credential is an APIv4 key of the main account. New keys are verified with
 * GET /account/detail signed with the new key itself.
 *
 * Vendor facts below come from the Gate API v4 reference, https://www.gate.io/docs/developers/apiv4/en/,
 * sections "SubAccount", "Account", "Frequency limit rule", "Error Handling" and "Authentication".
 */

const PROVIDER_NAME = 'gateio';
const DEFAULT_BASE_URL = 'https://api.gateio.ws/api/v4';

// "Each account can create 20 API keys." A sub-account has its own user ID, so the limit applies
// per sub-account. Gate.io documents no error label for a create past it, so explainKeyLimit
// counts the keys instead.
const MAX_KEYS_PER_SUB_ACCOUNT = 20;

// "Each key can have at most 20 IPs formatted in IPv4 (not supporting IP range though)."
const MAX_IP_ADDRESSES_PER_KEY = 20;

// Delay after a rate-limited request when X-Gate-RateLimit-Reset-Timestamp cannot be read. An
// estimate: Gate.io counts its private limits per 10-second window, so half a window is the
// expected wait. The cap guards against a reset time far in the future when clocks differ.
const DEFAULT_RATE_LIMIT_DELAY_MS = 5_000;
const MIN_RATE_LIMIT_DELAY_MS = 100;
const MAX_RATE_LIMIT_DELAY_MS = 60_000;
// Rotations throttled together would retry together and collide again, so each retry waits up
// to this much longer, chosen at random.
const RATE_LIMIT_JITTER_MS = 1_000;

// X-Gate-RateLimit-Reset-Timestamp values above this are milliseconds, below it seconds. Gate.io
// does not state the unit, so both are read.
const MILLISECOND_TIMESTAMPS_FROM = 1e12;

/** Permission groups a Gate.io sub-account key can hold, from the create endpoint's `perms[].name`. */
export const GATEIO_PERMISSION_NAMES = [
  'wallet',
  'spot',
  'futures',
  'delivery',
  'earn',
  'custody',
  'options',
  'account',
  'loan',
  'margin',
  'unified',
  'copy',
] as const;

export type GateioPermissionName = (typeof GATEIO_PERMISSION_NAMES)[number];

const permissionSchema = z
  .object({
    name: z.enum(GATEIO_PERMISSION_NAMES).describe(`Permission group: ${GATEIO_PERMISSION_NAMES.join(', ')}`),
    read_only: z.boolean().default(true).describe('Grant read access only (default true); false grants read and write'),
  })
  .strict();

export type GateioPermission = z.infer<typeof permissionSchema>;

export const gateioConfigSchema = z
  .object({
    /** Gate.io APIv4 base URL, including the /api/v4 prefix that every signature covers. */
    base_url: z
      .url({ protocol: /^https?$/, message: `expected an http or https URL such as ${DEFAULT_BASE_URL}` })
      .default(DEFAULT_BASE_URL)
      .describe(`Gate.io APIv4 base URL including /api/v4 (default ${DEFAULT_BASE_URL})`),
    /** The sub-account whose API key Rotor keeps fresh. YAML may give it as a number. */
    user_id: z
      .union([z.number().int().positive(), z.string().regex(/^[1-9]\d*$/, 'expected a Gate.io sub-account user ID of digits only, such as 10001')])
      .transform((id) => String(id))
      .describe('User ID of the sub-account whose API key Rotor keeps fresh'),
    /** Permissions of new keys when restrictions.scopes is empty. */
    perms: z
      .array(permissionSchema)
      .default([])
      .describe('Permissions of new keys when restrictions.scopes is empty, such as [{ name: spot, read_only: true }]'),
    /** Account mode of new keys: 1 classic, 2 portfolio. Gate.io chooses when absent. */
    mode: z
      .union([z.literal(1), z.literal(2)])
      .optional()
      .describe('Account mode of new keys: 1 classic, 2 portfolio (default: Gate.io chooses)'),
  })
  .strict();

export type GateioConfig = z.infer<typeof gateioConfigSchema>;

/** The management credential Rotor reads from Vault: an APIv4 key of the main account. */
export const gateioCredentialSchema = z.object({
  api_key: z.string().min(1).describe('APIv4 key of the main account'),
  api_secret: z.string().min(1).describe('Secret of that APIv4 key'),
});

export type GateioCredential = z.infer<typeof gateioCredentialSchema>;

/** The secret consumers read from Vault: the sub-account's current APIv4 key. */
export const gateioSecretSchema = z.object({
  api_key: z.string().min(1).describe('APIv4 key of the sub-account, sent as the KEY header'),
  api_secret: z.string().min(1).describe('Secret that signs requests (SIGN header)'),
});

type GateioContext = ProviderContext<GateioConfig, GateioCredential>;
type KeyPair = z.infer<typeof gateioSecretSchema>;

const HELP = `Rotates the APIv4 key of one Gate.io sub-account with an APIv4 key of the main account,
through POST, GET and DELETE /sub_accounts/{user_id}/keys. New keys are verified with
GET /account/detail signed with the new key.

Config:
  base_url  Gate.io APIv4 base URL including /api/v4 (default ${DEFAULT_BASE_URL}).
  user_id   User ID of the sub-account whose key Rotor keeps fresh.
  perms     Permissions of new keys when restrictions.scopes is empty, in Gate.io's shape:
            [{ name: spot, read_only: true }]. Names: ${GATEIO_PERMISSION_NAMES.join(', ')}.
  mode      Account mode of new keys: 1 classic, 2 portfolio (optional).

Management credential (stored in Vault): api_key and api_secret of an APIv4 key of the main
account that may manage sub-accounts. If that key has an IP whitelist, it must include the
worker's address.

Consumers read api_key and api_secret from the integration's Vault path.

Restrictions:
  ip_allowlist  Becomes the key's ip_whitelist: at most ${MAX_IP_ADDRESSES_PER_KEY} single IPv4 addresses (a /32 is
                accepted), because Gate.io supports no ranges or IPv6 there.
  scopes        Replace perms when set, written name:read or name:write, such as spot:read or
                futures:write. A bare name means read-only. A key needs at least one permission.
  expires_after Not applied: Gate.io API keys have no expiry date.

Labels: the rotation label is stored as the key's name. Gate.io reports each key's
last_access, which Rotor uses as usage data.
Limits: ${MAX_KEYS_PER_SUB_ACCOUNT} keys per sub-account. Gate.io applies key changes within up to 5 minutes, so
set rotation.verify_timeout to 5m if new keys are slow to verify.`;

/** The Gate.io provider plugin. Each operation signs its requests with the key it is given. */
export const gateioProvider: Provider<GateioConfig, GateioCredential> = {
  name: PROVIDER_NAME,
  summary: 'Gate.io sub-account APIv4 keys (create / delete under /sub_accounts/{user_id}/keys, verified with /account/detail)',
  help: HELP,
  configSchema: gateioConfigSchema,
  credentialSchema: gateioCredentialSchema,
  secretSchema: gateioSecretSchema,
  capabilities: {
    ipAllowlist: true,
    scopes: true,
    expiry: false,
    usageData: true,
    maxKeysPerPrincipal: MAX_KEYS_PER_SUB_ACCOUNT,
    // Gate.io allows 80 requests per 10 seconds per endpoint and user ID for sub-account
    // endpoints ("Frequency limit rule"). Rotor takes half of those 8 per second, because the
    // planning, create and revoke activities all call the list endpoint of the same main account.
    defaultRateLimitPerSecond: 4,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => config.perms.map((permission) => `${permission.name}:${permission.read_only ? 'read' : 'write'}`),
  keyUsage,
};

/** Lists the sub-account's keys, with the rotation label Gate.io stores as each key's name. */
async function listKeys(context: GateioContext): Promise<ProviderKey[]> {
  const keys = await listSubAccountKeys(context, 'listKeys');
  context.logger.debug({ provider: PROVIDER_NAME, userId: context.config.user_id, keyCount: keys.length }, 'Listed Gate.io sub-account API keys');
  return keys.map(toProviderKey);
}

/**
 * Creates a key for the sub-account with the requested permissions and IP whitelist, named with
 * the rotation label. Gate.io echoes the restrictions it applied, and a key whose restrictions
 * differ from the request is deleted again.
 */
async function createKey(context: GateioContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const userId = context.config.user_id;

  // Every check that needs no request runs first, so invalid input never leaves a key behind.
  const ipWhitelist = gateioIpWhitelist(request.restrictions.ipAllowlist ?? []);
  const perms = gateioPermissions(context.config.perms, request.restrictions.scopes ?? [], userId);
  if (request.label.trim() === '') {
    throw new ProviderError('invalid-config', `The rotation label for Gate.io sub-account ${userId} is empty. Gate.io stores it as the key's name, so it must contain text.`, {
      provider: PROVIDER_NAME,
      operation: 'createKey',
    });
  }
  warnAboutUnappliedRestrictions(context, ipWhitelist, request.restrictions.expiresAt);

  const body: Record<string, unknown> = { name: request.label, perms };
  if (ipWhitelist.length > 0) {
    body.ip_whitelist = ipWhitelist;
  }
  if (context.config.mode !== undefined) {
    body.mode = context.config.mode;
  }

  // The create endpoint takes no idempotency key. When its response is lost, the key still exists
  // under this rotation's name, and the create activity's retry revokes it by that label.
  const call = managementCall(context, 'createKey', 'POST', keysPath(userId));
  let created: CreatedSubAccountKey;
  try {
    created = await sendSigned(context, call, createdKeySchema, JSON.stringify(body));
  } catch (error) {
    throw await explainKeyLimit(context, error);
  }
  context.logger.info(
    { provider: PROVIDER_NAME, userId, keyId: created.key, permCount: perms.length, ipCount: ipWhitelist.length },
    'Created Gate.io sub-account API key',
  );

  const mismatch = restrictionMismatch(created, perms, ipWhitelist);
  if (mismatch !== undefined) {
    await deleteUnwantedKey(context, created.key);
    throw new ProviderError(
      'invalid-config',
      `Gate.io created API key ${created.key} of sub-account ${userId} with ${mismatch}, so Rotor deleted it again. ` +
        "Check the integration's perms, restrictions.scopes and restrictions.ip_allowlist against what Gate.io allows for this sub-account.",
      { provider: PROVIDER_NAME, operation: 'createKey', vendorCode: 'RestrictionMismatch' },
    );
  }

  return {
    keyId: created.key,
    createdAt: created.created_at === undefined ? new Date().toISOString() : isoFromGateioTime(created.created_at),
    secret: { api_key: created.key, api_secret: created.secret },
  };
}

/**
 * Calls GET /account/detail signed with the new key and checks that Gate.io identifies it as a
 * key of the configured sub-account. Throws 'authentication' while Gate.io does not accept it.
 */
async function verifyKey(context: GateioContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const userId = context.config.user_id;

  const parsedSecret = gateioSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for Gate.io API key ${keyId} of sub-account ${userId} is missing or has invalid fields: ${fields}. Expected api_key and api_secret.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newKey = parsedSecret.data;
  if (newKey.api_key !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains Gate.io API key ${newKey.api_key}, not ${keyId}, for sub-account ${userId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  // NOTE: Gate.io does not document which permission GET /account/detail needs. The emulator
  // accepts it from any key of the sub-account.
  const call: GateioCall = {
    ...managementCall(context, 'verifyKey', 'GET', '/account/detail', keyId),
    signer: newKey,
    signedWith: 'new key',
    secrets: [context.credential.api_secret, newKey.api_secret],
  };
  const detail = await sendSigned(context, call, accountDetailSchema);

  // A key of another account must not pass, so the caller Gate.io identified is compared.
  if (String(detail.user_id) !== userId) {
    throw new ProviderError(
      'authentication',
      `Gate.io identified the new API key ${keyId} as a key of user ${detail.user_id}, not of sub-account ${userId}. Check that the key was created for this sub-account.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'UnexpectedCaller' },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, userId, keyId, ipCount: detail.ip_whitelist?.length ?? 0 }, 'Verified Gate.io API key with account detail');
}

/**
 * Deletes a key of the sub-account. A key that is not among the sub-account's keys counts as
 * revoked, so Rotor never deletes a key of another sub-account. Gate.io cannot deactivate a key
 * over the API without changing its permissions, so deleting is the only step.
 */
async function revokeKey(context: GateioContext, keyId: string): Promise<void> {
  const userId = context.config.user_id;

  // Gate.io documents no error label for deleting a key that does not exist, so the list decides.
  const keys = await listSubAccountKeys(context, 'revokeKey');
  if (!keys.some((key) => key.key === keyId)) {
    context.logger.info({ provider: PROVIDER_NAME, userId, keyId }, 'Gate.io API key is not among the sub-account keys, so it counts as revoked');
    return;
  }

  const call = managementCall(context, 'revokeKey', 'DELETE', `${keysPath(userId)}/${encodeURIComponent(keyId)}`, keyId);
  try {
    await sendSigned(context, call, z.unknown());
  } catch (error) {
    // Another rotation may have deleted it between the list and the delete.
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, userId, keyId }, 'Gate.io API key was already deleted');
      return;
    }
    throw error;
  }
  context.logger.info({ provider: PROVIDER_NAME, userId, keyId }, 'Deleted Gate.io sub-account API key');
}

/** Returns the API key of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.api_key;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

/** Reports the key's last_access from GET /sub_accounts/{user_id}/keys/{key}. */
async function keyUsage(context: GateioContext, keyId: string): Promise<KeyUsage> {
  const userId = context.config.user_id;
  const call = managementCall(context, 'keyUsage', 'GET', `${keysPath(userId)}/${encodeURIComponent(keyId)}`, keyId);
  const key = await sendSigned(context, call, subAccountKeySchema);

  const lastUsedAt = lastUsedAtOf(key);
  context.logger.debug({ provider: PROVIDER_NAME, userId, keyId, lastUsedAt }, 'Read Gate.io API key usage');
  return { lastUsedAt };
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function listSubAccountKeys(context: GateioContext, operation: ProviderOperation): Promise<SubAccountKey[]> {
  const call = managementCall(context, operation, 'GET', keysPath(context.config.user_id));
  return sendSigned(context, call, z.array(subAccountKeySchema));
}

/**
 * Gate.io documents no error label for a sub-account that has too many keys, so a create it
 * rejects as invalid is checked against the key count. At the limit, the failure becomes
 * 'limit-reached'. Otherwise it stays as Gate.io reported it. The list costs a request only on failure.
 */
async function explainKeyLimit(context: GateioContext, error: unknown): Promise<unknown> {
  if (!(error instanceof ProviderError) || error.kind !== 'invalid-config') {
    return error;
  }
  const keyCount = (await listSubAccountKeys(context, 'createKey')).length;
  if (keyCount < MAX_KEYS_PER_SUB_ACCOUNT) {
    return error;
  }
  return new ProviderError(
    'limit-reached',
    `Gate.io sub-account ${context.config.user_id} already has ${keyCount} API keys, the maximum of ${MAX_KEYS_PER_SUB_ACCOUNT}, and Gate.io rejected another one ` +
      `(${error.details.vendorCode ?? 'no label'}). Delete a key that consumers no longer use, then start the rotation again.`,
    { ...error.details, operation: 'createKey' },
  );
}

/** Deletes a key createKey made but cannot hand out. A failure is logged, because the caller reports the reason already. */
async function deleteUnwantedKey(context: GateioContext, keyId: string): Promise<void> {
  try {
    await revokeKey(context, keyId);
  } catch (error) {
    context.logger.error(
      { provider: PROVIDER_NAME, userId: context.config.user_id, keyId, error: error instanceof Error ? error.message : String(error) },
      'Failed to delete a Gate.io API key whose restrictions differ from the request; delete it by hand',
    );
  }
}

function toProviderKey(key: SubAccountKey): ProviderKey {
  // State 1 is normal. Gate.io rejects locked (2) and frozen (3) keys.
  const listed: ProviderKey = { keyId: key.key, status: key.state === undefined || key.state === 1 ? 'active' : 'inactive', lastUsedAt: lastUsedAtOf(key) };
  if (key.created_at !== undefined) {
    listed.createdAt = isoFromGateioTime(key.created_at);
  }
  if (key.name) {
    listed.label = key.name;
  }
  return listed;
}

/**
 * Returns last_access as an ISO instant, or null when Gate.io reports none (absent or 0).
 * NOTE: Gate.io's examples show last_access equal to created_at for a key, so a key that was
 * never used may report its creation time as its last use.
 */
function lastUsedAtOf(key: SubAccountKey): string | null {
  return key.last_access === undefined || Number(key.last_access) === 0 ? null : isoFromGateioTime(key.last_access);
}

/** Describes how the restrictions Gate.io echoed differ from the request, or undefined when they match or were not echoed. */
function restrictionMismatch(created: CreatedSubAccountKey, perms: GateioPermission[], ipWhitelist: string[]): string | undefined {
  if (created.ip_whitelist !== undefined) {
    const applied = [...created.ip_whitelist].sort();
    const requested = [...ipWhitelist].sort();
    if (applied.join(',') !== requested.join(',')) {
      return `ip_whitelist [${applied.join(', ')}] instead of the requested [${requested.join(', ')}]`;
    }
  }
  if (created.perms !== undefined) {
    const applied = created.perms.map(describePermission).sort();
    const requested = perms.map(describePermission).sort();
    if (applied.join(',') !== requested.join(',')) {
      return `perms [${applied.join(', ')}] instead of the requested [${requested.join(', ')}]`;
    }
  }
  return undefined;
}

function describePermission(permission: { name: string; read_only?: boolean }): string {
  return `${permission.name}:${permission.read_only === false ? 'write' : 'read'}`;
}

/**
 * Converts the inventory's allowlist to Gate.io's ip_whitelist: single IPv4 addresses, because
 * Gate.io documents neither ranges nor IPv6 there. A /32 becomes its address.
 */
export function gateioIpWhitelist(allowlist: string[]): string[] {
  const addresses: string[] = [];
  for (const entry of allowlist) {
    const problem = cidrProblem(entry);
    if (problem !== undefined) {
      throw new ProviderError('invalid-config', `restrictions.ip_allowlist has an ${problem}.`, { provider: PROVIDER_NAME, operation: 'createKey' });
    }
    const [address, prefix] = entry.split('/');
    const parsed = ipaddr.parse(address);
    if (parsed.kind() !== 'ipv4' || (prefix !== undefined && prefix !== '32')) {
      throw new ProviderError(
        'invalid-config',
        `Gate.io binds API keys to single IPv4 addresses, but restrictions.ip_allowlist contains ${entry}. ` +
          'List each IPv4 address consumers call from, such as 203.0.113.7 or 203.0.113.7/32.',
        { provider: PROVIDER_NAME, operation: 'createKey' },
      );
    }
    addresses.push(parsed.toString());
  }

  const unique = [...new Set(addresses)];
  if (unique.length > MAX_IP_ADDRESSES_PER_KEY) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.ip_allowlist has ${unique.length} addresses, but Gate.io binds at most ${MAX_IP_ADDRESSES_PER_KEY} to an API key.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return unique;
}

/**
 * Returns the new key's perms: the configured ones when there are no scopes, else one
 * permission per scope, written name:read, name:write or name (read-only).
 */
export function gateioPermissions(configured: GateioPermission[], scopes: string[], userId: string): GateioPermission[] {
  const requested = scopes.length === 0 ? configured : scopes.map(permissionFromScope);

  const byName = new Map<string, GateioPermission>();
  for (const permission of requested) {
    const earlier = byName.get(permission.name);
    // Listed twice, a permission keeps its wider access, as the inventory asked for both.
    byName.set(permission.name, { name: permission.name, read_only: (earlier?.read_only ?? true) && permission.read_only });
  }

  if (byName.size === 0) {
    throw new ProviderError(
      'invalid-config',
      `A new Gate.io API key for sub-account ${userId} needs at least one permission, and neither config.perms nor ` +
        'restrictions.scopes lists one. Add scopes such as spot:read, or perms such as [{ name: spot, read_only: true }].',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return [...byName.values()];
}

function permissionFromScope(scope: string): GateioPermission {
  const [name, access, extra] = scope.split(':');
  const known = (GATEIO_PERMISSION_NAMES as readonly string[]).includes(name);
  if (!known || extra !== undefined || (access !== undefined && access !== 'read' && access !== 'write')) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes contains "${scope}", which is not a Gate.io permission. Expected name:read or name:write ` +
        `with a name out of ${GATEIO_PERMISSION_NAMES.join(', ')}.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return { name: name as GateioPermissionName, read_only: access !== 'write' };
}

function warnAboutUnappliedRestrictions(context: GateioContext, ipWhitelist: string[], expiresAt: string | undefined): void {
  const userId = context.config.user_id;
  if (ipWhitelist.length === 0) {
    context.logger.warn({ provider: PROVIDER_NAME, userId }, 'New Gate.io API key has no IP whitelist, so Gate.io accepts it from any address');
  }
  if (expiresAt !== undefined) {
    context.logger.warn({ provider: PROVIDER_NAME, userId, expiresAt }, 'Gate.io API keys have no expiry date, so restrictions.expires_after is not applied');
  }
}

function keysPath(userId: string): string {
  return `/sub_accounts/${encodeURIComponent(userId)}/keys`;
}

// ---------------------------------------------------------------------------------------------
// Signed requests
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey' | 'keyUsage';

/** One request to Gate.io and what the error messages need to know about it. */
interface GateioCall {
  operation: ProviderOperation;
  userId: string;
  method: 'GET' | 'POST' | 'DELETE';
  /** Path below base_url, without a query string, such as /sub_accounts/10001/keys. */
  path: string;
  keyId?: string;
  signer: KeyPair;
  /** The key that signs the request: the main account's management credential or the key being verified. */
  signedWith: 'management credential' | 'new key';
  /** Secret values removed from Gate.io's error text before it goes into a message. */
  secrets: string[];
}

function managementCall(context: GateioContext, operation: ProviderOperation, method: GateioCall['method'], path: string, keyId?: string): GateioCall {
  return {
    operation,
    userId: context.config.user_id,
    method,
    path,
    keyId,
    signer: context.credential,
    signedWith: 'management credential',
    secrets: [context.credential.api_secret],
  };
}

/** The parts of a request that Gate.io's APIv4 signature covers. */
export interface GateioSignatureInput {
  secret: string;
  method: string;
  /** Full URL path including the /api/v4 prefix, such as /api/v4/sub_accounts/10001/keys. */
  path: string;
  /** The query string exactly as sent, without `?`, or empty. */
  query: string;
  /** The raw request body, or empty. */
  body: string;
  /** Unix time in seconds, as sent in the Timestamp header. */
  timestamp: string;
}

/**
 * Computes the SIGN header: hex HMAC-SHA512, keyed with the secret, of the method, path, query
 * string, hex SHA-512 of the body and timestamp, joined by newlines.
 */
export function gateioSignature(input: GateioSignatureInput): string {
  const signatureString = [input.method.toUpperCase(), input.path, input.query, sha512Hex(input.body), input.timestamp].join('\n');
  return hmacSha512Hex(input.secret, signatureString);
}

/** Returns the KEY, Timestamp and SIGN headers of a request signed with this key at this instant. */
export function gateioSignedHeaders(key: KeyPair, method: string, path: string, query: string, body: string, now: Date = new Date()): Record<string, string> {
  const timestamp = String(Math.floor(now.getTime() / 1000));
  return {
    KEY: key.api_key,
    Timestamp: timestamp,
    SIGN: gateioSignature({ secret: key.api_secret, method, path, query, body, timestamp }),
  };
}

/**
 * Sends one signed request and returns its parsed body. Gate.io reports every failure with a
 * non-2xx status and a body of { label, message }, and each becomes a ProviderError.
 */
async function sendSigned<T>(context: GateioContext, call: GateioCall, schema: z.ZodType<T>, body = ''): Promise<T> {
  const url = new URL(`${context.config.base_url.replace(/\/+$/, '')}${call.path}`);
  const headers: Record<string, string> = { ...gateioSignedHeaders(call.signer, call.method, url.pathname, '', body), Accept: 'application/json' };
  if (body !== '') {
    headers['Content-Type'] = 'application/json';
  }

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method: call.method,
      url: url.toString(),
      headers,
      body: body === '' ? undefined : body,
      signal: context.signal,
      // A 429 carries the delay in X-Gate-RateLimit-Reset-Timestamp.
      describeError: (status, json, responseHeaders) => {
        const failure = gateioErrorSchema.safeParse(json);
        if (failure.success) {
          return gateioFailure(call, status, failure.data, responseHeaders);
        }
        return status === 429 ? rateLimitedError(call, 'HTTP 429', rateLimitDelayMs(responseHeaders)) : undefined;
      },
    });
  } catch (error) {
    throw describeHttpFailure(error, call);
  }

  if (response.status >= 400) {
    // A 4xx without Gate.io's error body: not a Gate.io APIv4 endpoint, or a key that is gone.
    if (response.status === 404 && call.keyId !== undefined && call.signedWith === 'management credential') {
      throw notFoundError(call, 'HTTP 404', 'HTTP 404');
    }
    throw new ProviderError(
      'invalid-config',
      `${call.method} ${call.path} at ${context.config.base_url} failed with HTTP ${response.status} and no Gate.io error label. ` +
        `Check base_url in the integration's provider config, such as ${DEFAULT_BASE_URL}.`,
      { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${response.status}` },
    );
  }
  return parseResponse(schema, response.json, call);
}

/** Rewrites the errors sendVendorRequest raises for HTTP 401 and 403 without a Gate.io label, so they name the key. */
function describeHttpFailure(error: unknown, call: GateioCall): unknown {
  if (!(error instanceof ProviderError) || (error.kind !== 'authentication' && error.kind !== 'permission') || !error.details.vendorCode?.startsWith('HTTP ')) {
    return error;
  }
  return gateioFailure(call, error.kind === 'authentication' ? 401 : 403, { label: error.details.vendorCode, message: '' }, undefined);
}

// ---------------------------------------------------------------------------------------------
// Parsing Gate.io responses
// ---------------------------------------------------------------------------------------------

// Gate.io times are Unix seconds as an integer, a decimal or a string of either.
const gateioTimeSchema = z.union([
  z.number().nonnegative(),
  z.string().regex(/^\d{1,12}(\.\d+)?$/, 'expected Unix seconds'),
]);

const permissionResponseSchema = z.object({ name: z.string().min(1), read_only: z.boolean().optional() });

const subAccountKeySchema = z.object({
  key: z.string().min(1),
  name: z.string().nullish(),
  state: z.number().int().optional(),
  perms: z.array(permissionResponseSchema).nullish(),
  ip_whitelist: z.array(z.string()).nullish(),
  created_at: gateioTimeSchema.optional(),
  last_access: gateioTimeSchema.optional(),
});

type SubAccountKey = z.infer<typeof subAccountKeySchema>;

const createdKeySchema = z.object({
  key: z.string().min(1),
  secret: z.string().min(1),
  perms: z.array(permissionResponseSchema).optional(),
  ip_whitelist: z.array(z.string()).optional(),
  created_at: gateioTimeSchema.optional(),
});

type CreatedSubAccountKey = z.infer<typeof createdKeySchema>;

const accountDetailSchema = z.object({
  user_id: z.union([z.number().int().positive(), z.string().regex(/^\d+$/)]),
  ip_whitelist: z.array(z.string()).nullish(),
});

const gateioErrorSchema = z.object({
  label: z.string().min(1),
  // Gate.io names the text `message`, and some endpoints `detail`.
  message: z.string().optional(),
  detail: z.string().optional(),
});

type GateioErrorBody = z.infer<typeof gateioErrorSchema>;

function isoFromGateioTime(seconds: number | string): string {
  return new Date(Math.round(Number(seconds) * 1000)).toISOString();
}

/**
 * Parses a successful response. The error names the operation and the path of the first bad
 * field, never its value, because the response to a create contains the new secret.
 */
function parseResponse<T>(schema: z.ZodType<T>, body: unknown, call: GateioCall): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) {
    return parsed.data;
  }

  const issue = parsed.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(body, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `Gate.io returned an unexpected response to ${call.operation} (${call.method} ${call.path}): ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

// Labels from Gate.io's "label list", grouped by what Rotor does about them.
const AUTHENTICATION_LABELS = new Set(['INVALID_CREDENTIALS', 'INVALID_KEY', 'INVALID_SIGNATURE', 'MISSING_REQUIRED_HEADER', 'REQUEST_EXPIRED', 'HTTP 401']);
const PERMISSION_LABELS = new Set(['READ_ONLY', 'FORBIDDEN', 'ACCOUNT_LOCKED', 'SUB_ACCOUNT_LOCKED', 'HTTP 403']);
const INVALID_REQUEST_LABELS = new Set([
  'INVALID_PARAM_VALUE',
  'INVALID_PROTOCOL',
  'INVALID_ARGUMENT',
  'INVALID_REQUEST_BODY',
  'MISSING_REQUIRED_PARAM',
  'BAD_REQUEST',
  'INVALID_CONTENT_TYPE',
  'NOT_ACCEPTABLE',
  'METHOD_NOT_ALLOWED',
  'SUB_ACCOUNT_NOT_FOUND',
]);
const TRANSIENT_LABELS = new Set(['INTERNAL', 'SERVER_ERROR', 'TOO_BUSY']);
// Not in the label list, but what Gate.io sends with HTTP 429.
const RATE_LIMIT_LABEL = 'TOO_MANY_REQUESTS';
// The caller's address is outside the key's IP whitelist.
const IP_FORBIDDEN_LABEL = 'IP_FORBIDDEN';
// Gate.io's label for a request URL that does not exist, which it also sends for a key that does not.
const NOT_FOUND_LABEL = 'NOT_FOUND';

function classifyLabel(call: GateioCall, status: number, label: string): ProviderErrorKind {
  if (label === RATE_LIMIT_LABEL || status === 429) {
    return 'rate-limited';
  }
  if (label === IP_FORBIDDEN_LABEL) {
    // A new key rejected from here is not accepted (yet), but the management key's whitelist is a setup problem.
    return call.signedWith === 'new key' ? 'authentication' : 'permission';
  }
  if (AUTHENTICATION_LABELS.has(label)) {
    return 'authentication';
  }
  if (PERMISSION_LABELS.has(label)) {
    // Gate.io applies a new key's permissions within up to 5 minutes, so a refusal can pass later.
    return call.signedWith === 'new key' ? 'authentication' : 'permission';
  }
  if (label === NOT_FOUND_LABEL || status === 404) {
    return call.keyId !== undefined && call.signedWith === 'management credential' ? 'not-found' : 'invalid-config';
  }
  if (INVALID_REQUEST_LABELS.has(label)) {
    return 'invalid-config';
  }
  if (TRANSIENT_LABELS.has(label) || status >= 500) {
    return 'transient';
  }
  // Gate.io returns other 4xx statuses for a request that is invalid as sent.
  return 'invalid-config';
}

/** Maps a Gate.io error response to a ProviderError whose message names the next step. */
function gateioFailure(call: GateioCall, status: number, failure: GateioErrorBody, headers: Headers | undefined): ProviderError {
  const label = failure.label;
  const kind = classifyLabel(call, status, label);
  const vendorMessage = scrubSecrets(failure.message ?? failure.detail ?? '', call.secrets);
  const vendorText = vendorMessage === '' ? label : `${label}: ${vendorMessage}`;
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: label };
  const endpoint = `${call.method} ${call.path}`;
  const subAccount = `sub-account ${call.userId}`;
  const subject = call.keyId ? `API key ${call.keyId} of ${subAccount}` : subAccount;

  switch (kind) {
    case 'rate-limited':
      return rateLimitedError(call, vendorText, rateLimitDelayMs(headers));
    case 'authentication':
      if (label === 'REQUEST_EXPIRED') {
        return new ProviderError(
          'authentication',
          `Gate.io rejected ${endpoint} because its Timestamp is more than 60 seconds from Gate.io's clock (${vendorText}). Check the worker host's clock.`,
          details,
        );
      }
      if (call.signedWith === 'new key') {
        return new ProviderError(
          'authentication',
          `Gate.io does not accept the new ${subject} yet (${vendorText}). Gate.io can take up to 5 minutes to apply a new key. ` +
            "If it stays rejected, check that the worker's IP address is in restrictions.ip_allowlist, that the key's perms " +
            'allow GET /account/detail, and that the key was not deleted.',
          details,
        );
      }
      return new ProviderError(
        'authentication',
        `Gate.io rejected the management credential for ${endpoint} (${subAccount}, ${vendorText}). ` +
          'Check api_key and api_secret at the management credential path in Vault: they must be an APIv4 key of the main account.',
        details,
      );
    case 'permission':
      if (label === IP_FORBIDDEN_LABEL) {
        return new ProviderError(
          'permission',
          `Gate.io rejected the management credential from the worker's IP address for ${endpoint} (${vendorText}). ` +
            "Add the worker's address to the main account key's IP whitelist, or remove the whitelist.",
          details,
        );
      }
      return new ProviderError(
        'permission',
        `The management credential may not call ${endpoint} for ${subAccount} (${vendorText}). Use a read-write APIv4 key of the main account ` +
          "that may manage sub-accounts, and check that the sub-account is not locked.",
        details,
      );
    case 'not-found':
      return notFoundError(call, label, vendorText);
    case 'invalid-config':
      if (label === NOT_FOUND_LABEL) {
        return new ProviderError(
          'invalid-config',
          `Gate.io has no endpoint ${endpoint} at base_url (${vendorText}). Check base_url in the integration's provider config, such as ${DEFAULT_BASE_URL}.`,
          details,
        );
      }
      if (label === 'SUB_ACCOUNT_NOT_FOUND') {
        return new ProviderError(
          'invalid-config',
          `Gate.io has no ${subAccount} under the main account of the management credential (${vendorText}). Check user_id in the integration's provider config.`,
          details,
        );
      }
      return new ProviderError(
        'invalid-config',
        `Gate.io rejected ${endpoint} for ${subject} as invalid (${vendorText}). Check the integration's provider config (user_id, perms, mode) and restrictions.`,
        details,
      );
    case 'transient':
      return new ProviderError('transient', `Gate.io ${endpoint} for ${subject} failed with a temporary error (HTTP ${status}, ${vendorText}). Rotor retries it.`, details);
    case 'limit-reached':
      return new ProviderError('limit-reached', `Gate.io rejected ${endpoint} because a limit was reached (${vendorText}).`, details);
  }
}

function notFoundError(call: GateioCall, label: string, vendorText: string): ProviderError {
  return new ProviderError('not-found', `Gate.io has no API key ${call.keyId ?? ''} of sub-account ${call.userId} for ${call.operation} (${vendorText}).`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: label,
  });
}

function rateLimitedError(call: GateioCall, vendorText: string, retryAfterMs: number): ProviderError {
  return new ProviderError('rate-limited', `Gate.io rate-limited ${call.method} ${call.path} (${vendorText}); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: RATE_LIMIT_LABEL,
    retryAfterMs,
  });
}

/**
 * Returns the delay until X-Gate-RateLimit-Reset-Timestamp (seconds or milliseconds since the
 * epoch), plus a random share of a second. `random` returns a number in [0, 1), as Math.random does.
 */
export function rateLimitDelayMs(headers: Headers | undefined, now = Date.now(), random = Math.random): number {
  const jitter = Math.floor(random() * RATE_LIMIT_JITTER_MS);
  const reset = Number(headers?.get('x-gate-ratelimit-reset-timestamp') ?? Number.NaN);
  if (!Number.isFinite(reset) || reset <= 0) {
    return DEFAULT_RATE_LIMIT_DELAY_MS + jitter;
  }
  const resetMs = reset >= MILLISECOND_TIMESTAMPS_FROM ? reset : reset * 1000;
  return Math.min(Math.max(resetMs - now, MIN_RATE_LIMIT_DELAY_MS), MAX_RATE_LIMIT_DELAY_MS) + jitter;
}

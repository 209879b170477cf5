import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { cidrProblem } from '../shared/inventory';
import {
  ProviderError,
  type CreateKeyRequest,
  type CreatedKey,
  type Provider,
  type ProviderContext,
  type ProviderErrorKind,
  type ProviderKey,
} from './contract';
import { formatPath, scrubSecrets, valueAtPath } from './responses';
import { sendVendorRequest, type VendorResponse } from './http';
import { hmacSha256Base64, hmacSha256Hex } from './signing';

/**
 * The KuCoin provider keeps the API key of one KuCoin sub-account fresh. Its management
 * credential is an API key of the master account, which adds, lists and deletes the
 * sub-account's keys. New keys are verified with GET /api/v1/user/api-key ("Get Apikey Info"),
 * signed with the new key itself.
 *
 * Vendor facts below come from KuCoin's API documentation, https://www.kucoin.com/docs-new/:
 * "Authentication", "Rate Limit", the gateway error codes, and the "Sub Account API" pages
 * (add, get list and delete sub-account API).
 */

const PROVIDER_NAME = 'kucoin';
const DEFAULT_BASE_URL = 'https://api.kucoin.com';

// KuCoin's own SDKs send version 2, the version whose KC-API-PASSPHRASE header is HMAC'd.
const API_KEY_VERSION = '2';

// KuCoin's success code, which every JSON response carries in `code`.
const SUCCESS_CODE = '200000';

// The add-sub-account-API rules: a remark of 1 to 24 characters, at most 20 whitelisted IPs,
// and expiry in days from a fixed set, where -1 means never.
const MAX_REMARK_LENGTH = 24;
const MAX_IP_ADDRESSES_PER_KEY = 20;
const EXPIRY_DAYS = [30, 90, 180, 360] as const;
const NEVER_EXPIRES = '-1';

// NOTE: an estimate. KuCoin documents no maximum number of API keys per sub-account and no
// error code for reaching one, so a create it rejects is checked against this count.
const MAX_KEYS_PER_SUB_ACCOUNT = 20;

// Rotation labels are rotor-<24 lowercase hex digits>, 30 characters, which is too long for a
// remark. The 96-bit hex part is stored in base 36, which takes at most 19 digits: rotor + 19 = 24.
const ROTATION_LABEL = /^rotor-([0-9a-f]{24})$/;
const ROTATION_REMARK = /^rotor([0-9a-z]{19})$/;
const LABEL_DIGITS_BASE36 = 19;
const LABEL_HEX_DIGITS = 24;

// KuCoin rejects a request to a spent rate-limit pool with HTTP 429, code 429000 and
// gw-ratelimit-reset, the milliseconds until the pool refills. The bounds guard against a missing or absurd header.
const DEFAULT_RATE_LIMIT_DELAY_MS = 3_000;
const MIN_RATE_LIMIT_DELAY_MS = 100;
const MAX_RATE_LIMIT_DELAY_MS = 30_000;
// Rotations that hit the limit together would retry together, so each waits up to 1 s more at random.
const RATE_LIMIT_JITTER_MS = 1_000;

/** Permissions the add-sub-account-API endpoint can give a key. General (read) is always included. */
export const KUCOIN_PERMISSIONS = ['General', 'Spot', 'Margin', 'Futures', 'Unified', 'InnerTransfer'] as const;
export type KucoinPermission = (typeof KUCOIN_PERMISSIONS)[number];

export const kucoinConfigSchema = z
  .object({
    /** KuCoin REST origin. Default https://api.kucoin.com. */
    base_url: z
      .url({ protocol: /^https?$/, message: 'expected an http or https URL such as https://api.kucoin.com' })
      .refine(isOrigin, 'expected an origin without a path, query or fragment, such as https://api.kucoin.com')
      .default(DEFAULT_BASE_URL)
      .describe('KuCoin REST API origin (default https://api.kucoin.com)'),
    /** The sub-account whose API key Rotor keeps fresh. */
    sub_name: z
      .string()
      .regex(/^\S{1,32}$/, 'expected a KuCoin sub-account name: up to 32 characters without spaces')
      .describe('Name of the KuCoin sub-account whose API key Rotor keeps fresh'),
    /** Permissions of new keys when restrictions.scopes is empty. Default [General]. */
    permissions: z
      .array(z.enum(KUCOIN_PERMISSIONS))
      .min(1)
      .default(['General'])
      .describe('Permissions of new keys when restrictions.scopes is empty: General, Spot, Margin, Futures, Unified, InnerTransfer (default [General])'),
  })
  .strict();

export type KucoinConfig = z.infer<typeof kucoinConfigSchema>;

/** The management credential Rotor reads from Vault: an API key of the KuCoin master account. */
export const kucoinCredentialSchema = z.object({
  api_key: z.string().min(1).describe('API key of the KuCoin master account'),
  api_secret: z.string().min(1).describe('API secret of that key'),
  passphrase: z.string().min(1).describe('Passphrase chosen when that key was created'),
  passphrase_seed: z
    .string()
    .min(32)
    .optional()
    .describe('Random secret of at least 32 characters that the passphrases of new keys are derived from (default: api_secret)'),
  initial_key_passphrase: z
    .string()
    .min(1)
    .optional()
    .describe('Passphrase of the sub-account key that was created by hand, which KuCoin needs to delete that key'),
});

export type KucoinCredential = z.infer<typeof kucoinCredentialSchema>;

/** The secret consumers read from Vault: the sub-account's current API key. */
export const kucoinSecretSchema = z.object({
  api_key: z.string().min(1).describe('API key, sent as KC-API-KEY'),
  api_secret: z.string().min(1).describe('API secret that signs requests (KC-API-SIGN)'),
  passphrase: z.string().min(1).describe('Passphrase, sent HMAC-signed as KC-API-PASSPHRASE; Rotor derives it'),
});

export type KucoinSecret = z.infer<typeof kucoinSecretSchema>;

type KucoinContext = ProviderContext<KucoinConfig, KucoinCredential>;
type KeyTriple = { api_key: string; api_secret: string; passphrase: string };

const HELP = `Rotates the API key of one KuCoin sub-account with an API key of the master account.

Config:
  base_url     KuCoin REST API origin (default https://api.kucoin.com).
  sub_name     Name of the sub-account whose API key Rotor keeps fresh.
  permissions  Permissions of new keys when restrictions.scopes is empty: General (default),
               Spot, Margin, Futures, Unified, InnerTransfer. General is always added.

Management credential (stored in Vault): api_key, api_secret and passphrase of an API key of the
master account with the General permission. If that key has an IP whitelist, it must include
the worker's address. Two optional fields:
  passphrase_seed         Random secret (32 or more characters) that the passphrases of new keys
                          are derived from. Default: api_secret. Set it before the first rotation
                          if the master key may be replaced later, because Rotor recomputes a
                          key's passphrase from it to delete the key.
  initial_key_passphrase  Passphrase of the key that was created by hand before Rotor's first
                          rotation. KuCoin deletes a key only when given its passphrase.

Secret written for consumers: api_key, api_secret and passphrase. KuCoin lets the creator of a
key choose its passphrase; Rotor derives it (32 hex digits) from the seed, the sub-account and
the rotation label, because KuCoin's delete endpoint requires it and Rotor revokes keys by id.

Restrictions:
  ip_allowlist  Applied as the key's IP whitelist: at most 20 single addresses (a /32 or /128
                block counts as one address; wider blocks are rejected).
  scopes        Permissions, as in config.permissions. When set, they take precedence.
  expires_after Applied as KuCoin's expiry in days, which must be 30, 90, 180 or 360: Rotor uses
                the longest of these that does not exceed expires_after, and rejects less than 30d.

Labels: the rotation label is stored in the key's remark as rotor plus 19 base-36 digits,
because a remark holds at most 24 characters. Rotor assumes at most ${MAX_KEYS_PER_SUB_ACCOUNT} keys per sub-account
(an estimate; KuCoin documents no maximum).

Rate limit: key management counts against KuCoin's Management pool, 2000 weight per 30 s at
VIP0; a create or list weighs 20 and a delete 30, so Rotor's task queue runs 2 activities per
second unless the inventory overrides it.`;

/** The KuCoin provider plugin. Every operation signs its requests with the key it is given. */
export const kucoinProvider: Provider<KucoinConfig, KucoinCredential> = {
  name: PROVIDER_NAME,
  summary: 'KuCoin sub-account API keys (add / delete sub-account API, verified with /api/v1/user/api-key)',
  help: HELP,
  configSchema: kucoinConfigSchema,
  credentialSchema: kucoinCredentialSchema,
  secretSchema: kucoinSecretSchema,
  capabilities: {
    ipAllowlist: true,
    scopes: true,
    expiry: true,
    usageData: false,
    maxKeysPerPrincipal: MAX_KEYS_PER_SUB_ACCOUNT,
    // The Management pool allows 2000 weight per 30 s at VIP0 (https://www.kucoin.com/docs-new/rate-limit),
    // and the sub-account API endpoints weigh 20 to 30: about 2 requests per second.
    defaultRateLimitPerSecond: 2,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => config.permissions,
};

/** Lists the sub-account's API keys, with the rotation label each remark carries. */
async function listKeys(context: KucoinContext): Promise<ProviderKey[]> {
  const keys = await listSubAccountKeys(context, 'listKeys');
  context.logger.debug({ provider: PROVIDER_NAME, subName: context.config.sub_name, keyCount: keys.length }, 'Listed KuCoin sub-account API keys');

  return keys.map((key) => {
    // KuCoin has no inactive state in this list: a key exists, or it has been deleted.
    const listed: ProviderKey = { keyId: key.apiKey, status: 'active', createdAt: new Date(key.createdAt).toISOString() };
    if (key.remark !== '') {
      listed.label = rotationLabelFromRemark(key.remark);
    }
    return listed;
  });
}

/**
 * Creates an API key for the sub-account with a derived passphrase, the requested permissions,
 * IP whitelist and expiry, and the rotation label as its remark. KuCoin's response repeats the
 * permissions and IP whitelist, and a key whose restrictions differ is deleted again.
 */
async function createKey(context: KucoinContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const subName = context.config.sub_name;

  // Checked before the request so that nothing is created when KuCoin would reject the input.
  const remark = remarkForLabel(request.label, subName);
  const ipWhitelist = kucoinIpWhitelist(request.restrictions.ipAllowlist ?? [], subName);
  const permissions = kucoinPermissions(context.config.permissions, request.restrictions.scopes ?? [], subName);
  const expire = kucoinExpiry(request.restrictions.expiresAt, subName);
  if (ipWhitelist.length === 0) {
    context.logger.warn({ provider: PROVIDER_NAME, subName }, 'Creating a KuCoin API key without an IP whitelist');
  }

  const passphrase = derivePassphrase(context.credential, subName, remark);
  const body: Record<string, string> = { subName, passphrase, remark, permission: permissions.join(','), expire };
  if (ipWhitelist.length > 0) {
    body.ipWhitelist = ipWhitelist.join(',');
  }

  // NOTE: the endpoint has no idempotency token. If its response is lost, listKeys later shows
  // the key under this rotation's label, and the create activity revokes it before retrying.
  const call = kucoinCall(context, 'createKey', ENDPOINTS.createKey);
  call.secrets.push(passphrase);
  let created: z.infer<typeof createKeyResponseSchema>;
  try {
    created = await sendSigned(context, call, context.credential, { body }, createKeyResponseSchema);
  } catch (error) {
    throw await explainKeyLimit(context, error);
  }

  const problem = restrictionMismatch(created, permissions, ipWhitelist);
  if (problem !== undefined) {
    let cleanup = 'so Rotor deleted it again';
    try {
      await deleteSubAccountKey(context, 'createKey', created.apiKey, passphrase);
    } catch (error) {
      // A retried create finds the key by its label and revokes it, so the failure is reported, not raised.
      cleanup = `and Rotor failed to delete it (${error instanceof Error ? error.message : String(error)})`;
    }
    throw new ProviderError(
      'invalid-config',
      `KuCoin created API key ${created.apiKey} of sub-account ${subName} with ${problem}, ${cleanup}. ` +
        "Check the integration's permissions and restrictions against what KuCoin allows for this sub-account.",
      { provider: PROVIDER_NAME, operation: 'createKey', vendorCode: 'RestrictionMismatch' },
    );
  }
  context.logger.info(
    { provider: PROVIDER_NAME, subName, keyId: created.apiKey, permission: body.permission, ipCount: ipWhitelist.length, expireDays: expire },
    'Created KuCoin sub-account API key',
  );

  return {
    keyId: created.apiKey,
    createdAt: new Date(created.createdAt).toISOString(),
    secret: { api_key: created.apiKey, api_secret: created.apiSecret, passphrase },
  };
}

/**
 * Reads the key's own information with a request signed by the new key, and checks that KuCoin
 * identifies it as a key of the configured sub-account. Throws 'authentication' while KuCoin
 * does not accept the key, including when the worker's address is outside its IP whitelist.
 */
async function verifyKey(context: KucoinContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const subName = context.config.sub_name;

  const parsedSecret = kucoinSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for KuCoin API key ${keyId} of sub-account ${subName} is missing or has invalid fields: ${fields}. ` +
        'Expected api_key, api_secret and passphrase.',
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newKey = parsedSecret.data;
  if (newKey.api_key !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains KuCoin API key ${newKey.api_key}, not ${keyId}, for sub-account ${subName}. ` +
        'The staging path in Vault does not belong to this rotation.',
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const call: KucoinCall = { ...kucoinCall(context, 'verifyKey', ENDPOINTS.keyInfo, keyId), signedWith: 'new key' };
  call.secrets.push(newKey.api_secret, newKey.passphrase);
  const info = await sendSigned(context, call, newKey, {}, keyInfoResponseSchema);

  // A key of another account must not pass, so the caller KuCoin identified is compared.
  if (info.apiKey !== keyId || info.isMaster === true || (info.subName !== undefined && info.subName !== subName)) {
    throw new ProviderError(
      'authentication',
      `KuCoin identified the new API key ${keyId} as key ${info.apiKey} of ${info.isMaster ? 'the master account' : `sub-account ${info.subName ?? '(unnamed)'}`}, ` +
        `not as a key of sub-account ${subName}. Check that the key was created for this sub-account.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'UnexpectedCaller' },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, subName, keyId, permission: info.permission }, 'Verified KuCoin API key with its key information');
}

/**
 * Deletes a key of the sub-account. KuCoin's delete endpoint needs the key's passphrase: Rotor
 * derives it for keys with a rotation remark, and uses initial_key_passphrase for any other key.
 * A key that is not among the sub-account's keys counts as revoked.
 */
async function revokeKey(context: KucoinContext, keyId: string): Promise<void> {
  const subName = context.config.sub_name;

  // KuCoin documents no error code for deleting a key that does not exist, so the list decides.
  const keys = await listSubAccountKeys(context, 'revokeKey', keyId);
  const key = keys.find((listed) => listed.apiKey === keyId);
  if (!key) {
    context.logger.info({ provider: PROVIDER_NAME, subName, keyId }, 'KuCoin API key is not among the sub-account keys, so it counts as revoked');
    return;
  }

  let passphrase: string;
  if (ROTATION_REMARK.test(key.remark) && rotationLabelFromRemark(key.remark) !== key.remark) {
    passphrase = derivePassphrase(context.credential, subName, key.remark);
  } else if (context.credential.initial_key_passphrase !== undefined) {
    passphrase = context.credential.initial_key_passphrase;
  } else {
    throw new ProviderError(
      'invalid-config',
      `KuCoin deletes an API key only with its passphrase, and API key ${keyId} of sub-account ${subName} (remark "${key.remark}") ` +
        'was not created by Rotor, so Rotor cannot derive it. Add the key\'s passphrase as initial_key_passphrase to the ' +
        'management credential in Vault, or delete the key in KuCoin\'s API management page.',
      { provider: PROVIDER_NAME, operation: 'revokeKey', vendorCode: 'PassphraseUnknown' },
    );
  }

  await deleteSubAccountKey(context, 'revokeKey', keyId, passphrase);
  context.logger.info({ provider: PROVIDER_NAME, subName, keyId }, 'Deleted KuCoin sub-account API key');
}

/** Returns the API key of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.api_key;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function listSubAccountKeys(context: KucoinContext, operation: ProviderOperation, keyId?: string): Promise<SubAccountKey[]> {
  const query: Record<string, string> = { subName: context.config.sub_name };
  if (keyId !== undefined) {
    query.apiKey = keyId;
  }
  return sendSigned(context, kucoinCall(context, operation, ENDPOINTS.listKeys, keyId), context.credential, { query }, listKeysResponseSchema);
}

async function deleteSubAccountKey(context: KucoinContext, operation: ProviderOperation, keyId: string, passphrase: string): Promise<void> {
  const call = kucoinCall(context, operation, ENDPOINTS.deleteKey, keyId);
  call.secrets.push(passphrase);
  try {
    await sendSigned(context, call, context.credential, { query: { apiKey: keyId, subName: context.config.sub_name, passphrase } }, deleteKeyResponseSchema);
  } catch (error) {
    // The passphrase is the only input the delete adds to a request KuCoin accepted for listing.
    if (error instanceof ProviderError && error.kind === 'invalid-config' && operation === 'revokeKey') {
      throw new ProviderError(
        'invalid-config',
        `${error.message} If the key was created by hand, check initial_key_passphrase in the management credential; ` +
          'if Rotor created it, check that passphrase_seed (or api_secret) is the one it was created with.',
        error.details,
      );
    }
    throw error;
  }
}

/**
 * KuCoin documents no error code for a sub-account that has too many keys, so a create it
 * rejects as invalid is checked against the key count. At the limit, the failure becomes
 * 'limit-reached'; otherwise it stays as KuCoin reported it. The list costs a request only on failure.
 */
async function explainKeyLimit(context: KucoinContext, error: unknown): Promise<unknown> {
  if (!(error instanceof ProviderError) || error.kind !== 'invalid-config') {
    return error;
  }
  const keyCount = (await listSubAccountKeys(context, 'createKey')).length;
  if (keyCount < MAX_KEYS_PER_SUB_ACCOUNT) {
    return error;
  }
  return new ProviderError(
    'limit-reached',
    `KuCoin sub-account ${context.config.sub_name} already has ${keyCount} API keys, and KuCoin rejected another one ` +
      `(${error.details.vendorCode ?? 'no code'}). Delete a key that consumers no longer use, then start the rotation again.`,
    { ...error.details, operation: 'createKey' },
  );
}

/** Describes how KuCoin's record of a new key differs from the request, or returns undefined. */
function restrictionMismatch(created: z.infer<typeof createKeyResponseSchema>, permissions: string[], ipWhitelist: string[]): string | undefined {
  const grantedPermissions = splitList(created.permission).map((permission) => permission.toLowerCase());
  const requestedPermissions = permissions.map((permission) => permission.toLowerCase());
  if (!sameSet(grantedPermissions, requestedPermissions)) {
    return `permissions "${created.permission}" instead of "${permissions.join(',')}"`;
  }
  const grantedAddresses = splitList(created.ipWhitelist).map(normalizeAddress);
  if (!sameSet(grantedAddresses, ipWhitelist)) {
    return `IP whitelist "${created.ipWhitelist}" instead of "${ipWhitelist.join(',')}"`;
  }
  return undefined;
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

function sameSet(left: string[], right: string[]): boolean {
  const a = new Set(left);
  const b = new Set(right);
  return a.size === b.size && [...a].every((entry) => b.has(entry));
}

function normalizeAddress(entry: string): string {
  return ipaddr.isValid(entry) ? ipaddr.parse(entry).toString() : entry;
}

// ---------------------------------------------------------------------------------------------
// Translating Rotor's request into KuCoin's parameters
// ---------------------------------------------------------------------------------------------

/**
 * Returns the remark that stores a rotation label: rotor-<24 hex digits> becomes rotor plus
 * the same number in 19 base-36 digits. Other labels are stored as they are when they fit.
 */
export function remarkForLabel(label: string, subName: string): string {
  const match = ROTATION_LABEL.exec(label);
  if (match) {
    return `rotor${BigInt(`0x${match[1]}`).toString(36).padStart(LABEL_DIGITS_BASE36, '0')}`;
  }
  if (label.length < 1 || label.length > MAX_REMARK_LENGTH || /\s/.test(label)) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${label}" cannot be stored as the remark of a KuCoin API key of sub-account ${subName}: ` +
        `KuCoin accepts 1 to ${MAX_REMARK_LENGTH} characters, and Rotor writes it without spaces.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return label;
}

/** Returns the rotation label a remark stands for: the inverse of remarkForLabel, or the remark itself. */
export function rotationLabelFromRemark(remark: string): string {
  const match = ROTATION_REMARK.exec(remark);
  if (!match) {
    return remark;
  }
  let value = 0n;
  for (const digit of match[1]) {
    value = value * 36n + BigInt(parseInt(digit, 36));
  }
  const hex = value.toString(16);
  return hex.length > LABEL_HEX_DIGITS ? remark : `rotor-${hex.padStart(LABEL_HEX_DIGITS, '0')}`;
}

/**
 * Derives a key's passphrase: the first 32 hex digits of HMAC-SHA256, keyed with the seed, of
 * the sub-account name and the key's remark. KuCoin accepts 7 to 32 characters without spaces.
 */
export function derivePassphrase(credential: KucoinCredential, subName: string, remark: string): string {
  const seed = credential.passphrase_seed ?? credential.api_secret;
  return hmacSha256Hex(seed, `rotor kucoin key passphrase\n${subName}\n${remark}`).slice(0, 32);
}

/**
 * Converts the inventory's allowlist to KuCoin's IP whitelist. KuCoin documents single
 * addresses only, so a block wider than one address is rejected instead of being changed silently.
 */
export function kucoinIpWhitelist(allowlist: string[], subName: string): string[] {
  const addresses: string[] = [];
  for (const entry of allowlist) {
    const problem = cidrProblem(entry);
    if (problem !== undefined) {
      throw new ProviderError('invalid-config', `restrictions.ip_allowlist has an ${problem}.`, { provider: PROVIDER_NAME, operation: 'createKey' });
    }
    const [address, prefix] = entry.split('/');
    const parsed = ipaddr.parse(address);
    const maximum = parsed.kind() === 'ipv4' ? 32 : 128;
    if (prefix !== undefined && Number(prefix) !== maximum) {
      throw new ProviderError(
        'invalid-config',
        `KuCoin binds API keys to single IP addresses, but restrictions.ip_allowlist contains the block ${entry}. ` +
          `List each address consumers call from, such as ${address} or ${address}/${maximum}.`,
        { provider: PROVIDER_NAME, operation: 'createKey' },
      );
    }
    addresses.push(parsed.toString());
  }

  const unique = [...new Set(addresses)];
  if (unique.length > MAX_IP_ADDRESSES_PER_KEY) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.ip_allowlist has ${unique.length} addresses, but KuCoin whitelists at most ${MAX_IP_ADDRESSES_PER_KEY} ` +
        `for an API key of sub-account ${subName}.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return unique;
}

/** Returns the new key's permissions: the scopes when there are any, else the config's, always with General first. */
function kucoinPermissions(configured: KucoinPermission[], scopes: string[], subName: string): KucoinPermission[] {
  const byLowerCase = new Map(KUCOIN_PERMISSIONS.map((permission) => [permission.toLowerCase(), permission]));
  const unknown = scopes.filter((scope) => !byLowerCase.has(scope.toLowerCase()));
  if (unknown.length > 0) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes contains ${unknown.map((scope) => `"${scope}"`).join(', ')}, which KuCoin does not know for ` +
        `sub-account ${subName}'s keys. Expected ${KUCOIN_PERMISSIONS.join(', ')}.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  const chosen = scopes.length > 0 ? scopes.map((scope) => byLowerCase.get(scope.toLowerCase()) as KucoinPermission) : configured;
  return [...new Set<KucoinPermission>(['General', ...chosen])];
}

/**
 * Returns KuCoin's `expire` for an expiry instant: the longest allowed number of days that does
 * not outlast it, or -1 (never) without one. One hour of slack absorbs the time between the
 * activity computing the instant and this request.
 */
export function kucoinExpiry(expiresAt: string | undefined, subName: string, now = Date.now()): string {
  if (expiresAt === undefined) {
    return NEVER_EXPIRES;
  }
  const days = (Date.parse(expiresAt) - now + 3_600_000) / 86_400_000;
  const allowed = EXPIRY_DAYS.filter((option) => option <= days);
  if (allowed.length === 0) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.expires_after asks KuCoin API keys of sub-account ${subName} to expire within ${Math.max(0, Math.floor(days))} days, ` +
        `but KuCoin's shortest expiry is ${EXPIRY_DAYS[0]} days. Set expires_after to 30d or more.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return String(allowed[allowed.length - 1]);
}

// ---------------------------------------------------------------------------------------------
// Signed requests
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey';

interface KucoinEndpoint {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  /** Verb phrase for messages, such as "list the API keys". */
  action: string;
}

const ENDPOINTS = {
  listKeys: { method: 'GET', path: '/api/v1/sub/api-key', action: 'list the API keys' },
  createKey: { method: 'POST', path: '/api/v1/sub/api-key', action: 'create an API key' },
  deleteKey: { method: 'DELETE', path: '/api/v1/sub/api-key', action: 'delete an API key' },
  keyInfo: { method: 'GET', path: '/api/v1/user/api-key', action: 'read the API key information' },
} satisfies Record<string, KucoinEndpoint>;

/** A request's context, which the error messages use. */
interface KucoinCall {
  operation: ProviderOperation;
  endpoint: KucoinEndpoint;
  subName: string;
  keyId?: string;
  /** The key that signed the request: the master account's management credential or the key being verified. */
  signedWith: 'management credential' | 'new key';
  /** Secret values removed from KuCoin's own text before it goes into a message. */
  secrets: string[];
}

function kucoinCall(context: KucoinContext, operation: ProviderOperation, endpoint: KucoinEndpoint, keyId?: string): KucoinCall {
  const { credential } = context;
  const secrets = [credential.api_secret, credential.passphrase, credential.passphrase_seed ?? '', credential.initial_key_passphrase ?? ''];
  return { operation, endpoint, subName: context.config.sub_name, keyId, signedWith: 'management credential', secrets };
}

/**
 * Computes KC-API-SIGN: the Base64 HMAC-SHA256, keyed with the API secret, of timestamp + method
 * + endpoint (with its query string, not URL-encoded) + body. The body is empty for GET and DELETE.
 */
export function kucoinSignature(apiSecret: string, timestamp: string, method: string, endpoint: string, body: string): string {
  return hmacSha256Base64(apiSecret, `${timestamp}${method.toUpperCase()}${endpoint}${body}`);
}

/** Returns the KC-API headers of a request signed with this key at this instant. */
export function kucoinSignedHeaders(key: KeyTriple, method: string, endpoint: string, body: string, now: Date = new Date()): Record<string, string> {
  const timestamp = String(now.getTime());
  return {
    'KC-API-KEY': key.api_key,
    'KC-API-SIGN': kucoinSignature(key.api_secret, timestamp, method, endpoint, body),
    'KC-API-TIMESTAMP': timestamp,
    // Version 2 keys send the passphrase HMAC-signed with the API secret, never in clear.
    'KC-API-PASSPHRASE': hmacSha256Base64(key.api_secret, key.passphrase),
    'KC-API-KEY-VERSION': API_KEY_VERSION,
  };
}

/** Sends one signed request and returns its parsed `data`. */
async function sendSigned<T>(
  context: KucoinContext,
  call: KucoinCall,
  signer: KeyTriple,
  request: { query?: Record<string, string>; body?: Record<string, string> },
  schema: z.ZodType<T>,
): Promise<T> {
  const { method, path } = call.endpoint;
  const entries = Object.entries(request.query ?? {});
  // KuCoin signs the query string as written, before URL encoding, and the URL carries it encoded.
  const signedEndpoint = entries.length === 0 ? path : `${path}?${entries.map(([name, value]) => `${name}=${value}`).join('&')}`;
  const sentEndpoint = entries.length === 0 ? path : `${path}?${entries.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join('&')}`;
  const body = request.body ? JSON.stringify(request.body) : '';
  const headers = { ...kucoinSignedHeaders(signer, method, signedEndpoint, body), 'Content-Type': 'application/json', Accept: 'application/json' };

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method,
      url: new URL(sentEndpoint, context.config.base_url).toString(),
      headers,
      body: method === 'POST' ? body : undefined,
      signal: context.signal,
      defaultRetryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS,
      // KuCoin sends its code with HTTP 401, 403 and 429 too, and a known one is more precise than
      // the status. A 429 carries the delay in gw-ratelimit-reset.
      describeError: (status, json, responseHeaders) => {
        const envelope = envelopeSchema.safeParse(json);
        if (!envelope.success || envelope.data.code === SUCCESS_CODE || !isKnownCode(envelope.data.code)) {
          return undefined;
        }
        return kucoinFailure(envelope.data.code, envelope.data.msg, status, responseHeaders, call);
      },
    });
  } catch (error) {
    throw describeHttpFailure(error, call);
  }
  return readData(response, call, schema);
}

function readData<T>(response: VendorResponse, call: KucoinCall, schema: z.ZodType<T>): T {
  const envelope = envelopeSchema.safeParse(response.json);
  if (!envelope.success) {
    if (response.status >= 400) {
      throw new ProviderError(
        'invalid-config',
        `KuCoin answered ${call.endpoint.method} ${call.endpoint.path} with HTTP ${response.status} and no KuCoin error code. ` +
          "Check base_url in the integration's provider config, such as https://api.kucoin.com.",
        { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${response.status}` },
      );
    }
    throw unexpectedResponse(call, describeIssue(envelope.error.issues[0], response.json, []));
  }
  if (envelope.data.code !== SUCCESS_CODE) {
    throw kucoinFailure(envelope.data.code, envelope.data.msg, response.status, response.headers, call);
  }

  const data = schema.safeParse(envelope.data.data);
  if (!data.success) {
    throw unexpectedResponse(call, describeIssue(data.error.issues[0], envelope.data.data, ['data']));
  }
  return data.data;
}

// ---------------------------------------------------------------------------------------------
// Parsing KuCoin responses
// ---------------------------------------------------------------------------------------------

const envelopeSchema = z.object({
  code: z.string(),
  msg: z.string().default(''),
  // KuCoin's error responses have no data field.
  data: z.unknown().optional(),
});

// KuCoin times are Unix milliseconds.
const millisecondsSchema = z.number().int().nonnegative();

const subAccountKeySchema = z.object({
  apiKey: z.string().min(1),
  remark: z.string(),
  permission: z.string(),
  ipWhitelist: z.string().default(''),
  createdAt: millisecondsSchema,
});

type SubAccountKey = z.infer<typeof subAccountKeySchema>;

const listKeysResponseSchema = z.array(subAccountKeySchema);

const createKeyResponseSchema = z.object({
  apiKey: z.string().min(1),
  apiSecret: z.string().min(1),
  remark: z.string(),
  permission: z.string(),
  ipWhitelist: z.string().default(''),
  createdAt: millisecondsSchema,
});

const deleteKeyResponseSchema = z.object({ apiKey: z.string().min(1) });

const keyInfoResponseSchema = z.object({
  apiKey: z.string().min(1),
  permission: z.string(),
  isMaster: z.boolean().optional(),
  subName: z.string().optional(),
});

function unexpectedResponse(call: KucoinCall, problem: string): ProviderError {
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  return new ProviderError('transient', `KuCoin returned an unexpected response to ${call.operation}: ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

/** Names the field of the first issue and never its value, because a create response contains the new secret. */
function describeIssue(issue: z.core.$ZodIssue, value: unknown, prefix: PropertyKey[]): string {
  const path = formatPath([...prefix, ...issue.path]);
  return valueAtPath(value, issue.path) === undefined ? `${path} is missing` : `${path}: ${issue.message}`;
}

function isOrigin(value: string): boolean {
  const url = new URL(value);
  return url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

// KuCoin's gateway and REST error codes (https://www.kucoin.com/docs-new/error-code), grouped by
// what Rotor does about them.
const RATE_LIMIT_CODES = new Set([
  '429000', // a rate-limit pool is spent (HTTP 429)
  '200002', // too many requests to one endpoint
]);
const AUTHENTICATION_CODES = new Set([
  '400002', // KC-API-TIMESTAMP invalid or more than 5 s from KuCoin's clock
  '400003', // KC-API-KEY does not exist
  '400004', // KC-API-PASSPHRASE invalid
  '400005', // KC-API-SIGN invalid
  '400006', // the caller's IP address is not in the key's IP whitelist
  '400008', // V1 and V2 keys are no longer accepted by this endpoint
  '400009', // KC-API-KEY-VERSION invalid
]);
const PERMISSION_CODES = new Set([
  '400007', // access denied, the key lacks the permission
  '400010', // UID access denied
  '411100', // the user is frozen
  '400301', // restricted by local laws or regulations
]);
const INVALID_REQUEST_CODES = new Set([
  '400001', // a KC-API header is missing, or the URL is wrong
  '400100', // parameter error
  '404000', // URL not found
  '415000', // Content-Type must be application/json
]);
const TRANSIENT_CODES = new Set([
  '500000', // internal server error
]);

function isKnownCode(code: string): boolean {
  return [RATE_LIMIT_CODES, AUTHENTICATION_CODES, PERMISSION_CODES, INVALID_REQUEST_CODES, TRANSIENT_CODES].some((codes) => codes.has(code));
}

function classifyCode(code: string, httpStatus: number): ProviderErrorKind {
  if (RATE_LIMIT_CODES.has(code)) {
    return 'rate-limited';
  }
  if (AUTHENTICATION_CODES.has(code)) {
    return 'authentication';
  }
  if (PERMISSION_CODES.has(code)) {
    return 'permission';
  }
  if (INVALID_REQUEST_CODES.has(code)) {
    return 'invalid-config';
  }
  if (TRANSIENT_CODES.has(code)) {
    return 'transient';
  }
  // KuCoin returns 4xx for a request that is wrong as sent, and an unknown code otherwise may pass on a retry.
  return httpStatus >= 400 && httpStatus < 500 ? 'invalid-config' : 'transient';
}

/**
 * Returns the delay KuCoin requests in gw-ratelimit-reset (milliseconds until the pool refills),
 * bounded, plus a random share of one second. `random` returns a number in [0, 1), as Math.random does.
 */
export function kucoinRateLimitDelayMs(headers: Headers | undefined, random = Math.random): number {
  const jitter = Math.floor(random() * RATE_LIMIT_JITTER_MS);
  const reset = Number(headers?.get('gw-ratelimit-reset') ?? Number.NaN);
  if (!Number.isFinite(reset) || reset < 0) {
    return DEFAULT_RATE_LIMIT_DELAY_MS + jitter;
  }
  return Math.min(Math.max(reset, MIN_RATE_LIMIT_DELAY_MS), MAX_RATE_LIMIT_DELAY_MS) + jitter;
}

/** Maps a KuCoin error `code` to a ProviderError whose message names the next step. */
function kucoinFailure(code: string, vendorMessage: string, httpStatus: number, headers: Headers | undefined, call: KucoinCall): ProviderError {
  const kind = classifyCode(code, httpStatus);
  const details: ProviderError['details'] = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: code };
  if (kind === 'rate-limited') {
    details.retryAfterMs = kucoinRateLimitDelayMs(headers);
  }
  const text = scrubSecrets(vendorMessage, call.secrets);
  const reason = text === '' ? code : `${code}: ${text}`;
  return new ProviderError(kind, describeFailure(kind, code, reason, call, details.retryAfterMs), details);
}

/**
 * Rewrites the errors sendVendorRequest raises for HTTP 401, 403 and 429 without a known KuCoin
 * code with KuCoin's context. Network errors and 5xx keep their message, which states that Rotor retries.
 */
function describeHttpFailure(error: unknown, call: KucoinCall): unknown {
  if (!(error instanceof ProviderError) || !['authentication', 'permission', 'rate-limited'].includes(error.kind) || !error.details.vendorCode?.startsWith('HTTP ')) {
    return error;
  }
  const reason = error.details.vendorCode;
  return new ProviderError(error.kind, describeFailure(error.kind, reason, reason, call, error.details.retryAfterMs), error.details);
}

function describeFailure(kind: ProviderErrorKind, code: string, reason: string, call: KucoinCall, delayMs?: number): string {
  const subAccount = `sub-account ${call.subName}`;
  const key = call.keyId ? `API key ${call.keyId} of ${subAccount}` : subAccount;
  const action = call.keyId ? `${call.endpoint.action} (${call.keyId})` : call.endpoint.action;

  switch (kind) {
    case 'rate-limited':
      return `KuCoin rate-limited the request to ${action} for ${subAccount} (${reason}); retrying in ${Math.ceil((delayMs ?? 0) / 1000)} s.`;
    case 'authentication':
      if (code === '400002') {
        return `KuCoin rejected the request to ${action} because its timestamp is more than 5 s from KuCoin's clock (${reason}). Check the worker host's clock.`;
      }
      if (call.signedWith === 'new key') {
        return (
          `KuCoin does not accept the new ${key} yet (${reason}). A new key can take a moment to become usable. ` +
          "If it stays rejected, check that the worker's IP address is in restrictions.ip_allowlist."
        );
      }
      if (code === '400006') {
        return `KuCoin rejected the management credential from the worker's IP address when asked to ${action} for ${subAccount} (${reason}). Add the worker's address to the master API key's IP whitelist.`;
      }
      return (
        `KuCoin rejected the management credential when asked to ${action} for ${subAccount} (${reason}). ` +
        'Check api_key, api_secret and passphrase at the management credential path in Vault.'
      );
    case 'permission':
      if (call.signedWith === 'new key') {
        return `KuCoin denied the new ${key} the request to ${action} (${reason}). Check permissions and restrictions.scopes.`;
      }
      return `The KuCoin management credential may not ${action} for ${subAccount} (${reason}). Use an API key of the master account with the General permission.`;
    case 'limit-reached':
      return `KuCoin ${subAccount} has reached its limit of API keys (${reason}). Delete keys that consumers no longer use, then start the rotation again.`;
    case 'not-found':
      return `KuCoin has no ${key} (${reason}).`;
    case 'invalid-config':
      return (
        `KuCoin rejected the request to ${action} for ${subAccount} as invalid (${reason}). ` +
        "Check the integration's provider config (sub_name, permissions) and restrictions."
      );
    case 'transient':
      return `KuCoin failed to ${action} for ${subAccount} with a temporary error (${reason}). Rotor retries it.`;
  }
}

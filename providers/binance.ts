import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { cidrProblem } from '../shared/inventory';
import {
  ProviderError,
  type CreateKeyRequest,
  type CreatedKey,
  type KeyRestrictions,
  type Provider,
  type ProviderContext,
  type ProviderErrorKind,
  type ProviderKey,
} from './contract';
import { sendVendorRequest, type VendorResponse } from './http';
import { formatPath, scrubSecrets, valueAtPath } from './responses';
import { hmacSha256Hex } from './signing';

/**
 * The Binance provider keeps the API key of one Binance Link (broker) sub-account fresh. Its
 * management credential is an API key of the broker's master account, which creates, lists and
 * deletes the sub-account's keys and sets their IP restriction through the /sapi/.../broker/
 * endpoints. New keys are verified with GET /sapi/v1/account/apiRestrictions signed with the new
 * key itself, which also reports the key's permissions.
 *
 * The key endpoints are described at
 * https://developers.binance.com/docs/binance_link/exchange-link/account/Create-Api-Key-for-Sub-Account
 * and its neighbouring pages Query-Sub-Account-Api-Key, Delete-Sub-Account-Api-Key and
 * Update-IP-Restriction-for-Sub-Account-API-key-For-Master-Account. apiRestrictions is described at
 * https://developers.binance.com/docs/wallet/account/api-key-permission. Signing, HTTP status codes
 * and rate limits come from https://github.com/binance/binance-spot-api-docs/blob/master/rest-api.md,
 * and the error codes from errors.md in the same repository.
 */

const PROVIDER_NAME = 'binance';
const DEFAULT_BASE_URL = 'https://api.binance.com';

// Binance's default recvWindow: a request is valid for 5,000 ms after its timestamp. Binance
// rejects values above 60,000.
const DEFAULT_RECV_WINDOW_MS = 5_000;
const MAX_RECV_WINDOW_MS = 60_000;

// GET /sapi/v1/broker/subAccountApi returns at most 500 keys per page.
const LIST_PAGE_SIZE = 500;

// NOTE: a guess. The Binance Link pages state no maximum number of API keys per sub-account and
// no error code for reaching one.
const MAX_KEYS_PER_SUB_ACCOUNT = 30;

// Binance bans an IP address that keeps sending after HTTP 429 with HTTP 418 for "2 minutes to 3
// days" and sends Retry-After with both. Without the header, the shortest ban is the delay.
const IP_BAN_DEFAULT_DELAY_MS = 2 * 60_000;

// How often createKey retries setting the IP restriction, or deleting a key it could not
// restrict, when Binance rate-limits the call. A retried create cannot find an earlier key of
// its own (Binance stores no label), so createKey finishes or undoes its work itself.
const IN_CALL_RATE_LIMIT_ATTEMPTS = 5;
const MAX_IN_CALL_RATE_LIMIT_DELAY_MS = 10_000;

/** The permission flags of a broker sub-account key, as the create endpoint names them. */
export const BINANCE_PERMISSIONS = ['canTrade', 'marginTrade', 'futuresTrade'] as const;
export type BinancePermission = (typeof BINANCE_PERMISSIONS)[number];

export const binanceConfigSchema = z
  .object({
    /** Binance API base URL. Default https://api.binance.com. */
    base_url: z
      .url({ protocol: /^https?$/, message: 'expected an http or https URL such as https://api.binance.com' })
      .default(DEFAULT_BASE_URL)
      .describe('Binance API base URL (default https://api.binance.com)'),
    /** The Binance Link sub-account whose API key Rotor keeps fresh. YAML may give it as a number. */
    sub_account_id: z
      .union([z.number().int().positive(), z.string().regex(/^[1-9]\d*$/, 'expected a Binance Link subAccountId of digits only, such as 437329423')])
      .transform((id) => String(id))
      .describe('subAccountId of the Binance Link sub-account whose API key Rotor keeps fresh'),
    /** Permission flags new keys get besides reading. restrictions.scopes add to them. */
    permissions: z
      .array(z.enum(BINANCE_PERMISSIONS))
      .default([])
      .describe('Permission flags of new keys besides reading: canTrade (spot), marginTrade, futuresTrade (default none: read-only)'),
    /** How long Binance accepts a signed request after its timestamp, in milliseconds. Default 5000. */
    recv_window: z
      .number()
      .int()
      .positive()
      .max(MAX_RECV_WINDOW_MS)
      .default(DEFAULT_RECV_WINDOW_MS)
      .describe('Milliseconds Binance accepts a signed request after its timestamp (recvWindow, default 5000, at most 60000)'),
  })
  .strict();

export type BinanceConfig = z.infer<typeof binanceConfigSchema>;

/** The management credential Rotor reads from Vault: an HMAC API key of the broker master account. */
export const binanceCredentialSchema = z.object({
  api_key: z.string().min(1).describe('API key of the Binance Link master account'),
  api_secret: z.string().min(1).describe('Secret key of that API key'),
});

export type BinanceCredential = z.infer<typeof binanceCredentialSchema>;

/** The secret consumers read from Vault: the sub-account's current API key. */
export const binanceSecretSchema = z.object({
  api_key: z.string().min(1).describe('API key of the sub-account, sent as X-MBX-APIKEY'),
  api_secret: z.string().min(1).describe('Secret key that signs requests (HMAC SHA256)'),
});

type BinanceContext = ProviderContext<BinanceConfig, BinanceCredential>;
type KeyPair = z.infer<typeof binanceSecretSchema>;

const HELP = `Rotates the API key of one Binance Link (broker) sub-account with an API key of the broker's
master account, through the endpoints /sapi/v1/broker/subAccountApi (create, query, delete) and
/sapi/v2/broker/subAccountApi/ipRestriction. New keys are verified with
/sapi/v1/account/apiRestrictions, signed with the new key.

Config:
  base_url        Binance API base URL (default https://api.binance.com).
  sub_account_id  subAccountId of the Binance Link sub-account whose key Rotor keeps fresh.
  permissions     Permission flags of new keys besides reading: canTrade (spot), marginTrade,
                  futuresTrade. Default none, which makes read-only keys.
  recv_window     Milliseconds Binance accepts a signed request after its timestamp (default 5000).

Management credential (stored in Vault): api_key and api_secret of an HMAC API key of the Binance
Link master account with "Enable Spot & Margin Trading", which every broker key endpoint
requires. If that key has an IP restriction, it must include the worker's address. These
endpoints belong to Binance Link, Binance's broker program, so the master account must be a
Binance Link account.

Consumers read api_key and api_secret from the integration's Vault path.

Restrictions:
  ip_allowlist  Set as the key's IP restriction right after creating it. Binance takes single
                addresses, so each entry must be one address or a /32 (IPv4) or /128 (IPv6)
                block. If the restriction cannot be set, Rotor deletes the new key. Binance turns
                off spot trading 30 days after it was enabled on a key without an IP restriction.
  scopes        Added to permissions: canTrade, marginTrade or futuresTrade. Binance requires the
                sub-account to have margin or futures enabled before a key can get marginTrade or
                futuresTrade.
  expires_after Not applied: Binance API keys have no expiry date.

Labels: not stored. Binance keeps no name or note for broker sub-account keys, so listKeys
reports no label, and a create whose response is lost cannot be matched to its rotation.
Limits: Binance allows 1 create and 1 delete per sub-account per second, which is this
provider's default rate limit. Rotor assumes at most ${MAX_KEYS_PER_SUB_ACCOUNT} keys per sub-account (a guess;
Binance documents no maximum).`;

/** The Binance provider plugin. Each operation signs its requests with the key it is given. */
export const binanceProvider: Provider<BinanceConfig, BinanceCredential> = {
  name: PROVIDER_NAME,
  summary: 'Binance Link sub-account API keys (broker subAccountApi with IP restriction, verified with apiRestrictions)',
  help: HELP,
  configSchema: binanceConfigSchema,
  credentialSchema: binanceCredentialSchema,
  secretSchema: binanceSecretSchema,
  capabilities: {
    ipAllowlist: true,
    scopes: true,
    expiry: false,
    usageData: false,
    maxKeysPerPrincipal: MAX_KEYS_PER_SUB_ACCOUNT,
    // The create and delete pages state "You can only create (delete) 1 api key for each sub
    // account per second", and every create activity calls create once.
    defaultRateLimitPerSecond: 1,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => (config.permissions.length === 0 ? ['read-only'] : config.permissions),
};

/** Lists the sub-account's API keys. Binance stores no label or creation time for them. */
async function listKeys(context: BinanceContext): Promise<ProviderKey[]> {
  const keys = await querySubAccountKeys(context, 'listKeys');
  context.logger.debug({ provider: PROVIDER_NAME, subAccountId: context.config.sub_account_id, keyCount: keys.length }, 'Listed Binance sub-account API keys');
  // Binance has no inactive state: a key exists and works, or it has been deleted.
  return keys.map((key) => ({ keyId: key.apikey, status: 'active' }));
}

/**
 * Creates an API key for the sub-account with the requested permission flags, then sets its IP
 * restriction. Both responses are read back, and a key whose restrictions differ from the
 * request is deleted before the error is thrown.
 */
async function createKey(context: BinanceContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const subAccountId = context.config.sub_account_id;

  // Every check that needs no request runs first, so invalid input never leaves a key behind.
  const addresses = binanceIpRestriction(request.restrictions.ipAllowlist ?? []);
  const permissions = mergePermissions(context.config.permissions, request.restrictions.scopes ?? []);
  warnAboutUnappliedRestrictions(context, addresses, permissions, request.restrictions.expiresAt);

  const params: Record<string, string> = { subAccountId };
  for (const permission of BINANCE_PERMISSIONS) {
    params[permission] = String(permissions.includes(permission));
  }
  let created: z.infer<typeof createKeyResponseSchema>;
  try {
    created = await callBinance(context, { operation: 'createKey', endpoint: ENDPOINTS.createKey, params, signer: context.credential, parse: createKeyResponseSchema });
  } catch (error) {
    throw await explainKeyLimit(context, error);
  }
  const keyId = created.apiKey;
  context.logger.info({ provider: PROVIDER_NAME, subAccountId, keyId, permissions, ipCount: addresses.length }, 'Created Binance sub-account API key');

  const granted = BINANCE_PERMISSIONS.filter((permission) => created[permission]);
  if (!sameMembers(granted, permissions)) {
    await deleteUnusableKey(context, keyId);
    throw restrictionMismatch('createKey', keyId, subAccountId, `permissions ${describeList(granted)}`, `permissions ${describeList(permissions)}`);
  }

  if (addresses.length > 0) {
    try {
      await restrictToAddresses(context, keyId, addresses);
    } catch (error) {
      await deleteUnusableKey(context, keyId);
      throw error;
    }
  }

  return {
    keyId,
    // The create response has no creation time, and the key exists from this moment.
    createdAt: new Date().toISOString(),
    secret: { api_key: keyId, api_secret: created.secretKey },
  };
}

/**
 * Reads the key's permissions with GET /sapi/v1/account/apiRestrictions signed by the new key.
 * Throws 'authentication' while Binance does not accept the key, and 'invalid-config' when the
 * key has a permission Rotor never grants or lacks one the config requires.
 */
async function verifyKey(context: BinanceContext, keyId: string, secret: Record<string, string>, requested: KeyRestrictions = {}): Promise<void> {
  const subAccountId = context.config.sub_account_id;

  const parsedSecret = binanceSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for Binance API key ${keyId} of sub-account ${subAccountId} is missing or has invalid fields: ${fields}. Expected api_key and api_secret.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newKey = parsedSecret.data;
  if (newKey.api_key !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains Binance API key ${newKey.api_key}, not ${keyId}, for sub-account ${subAccountId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const restrictions = await callBinance(context, {
    operation: 'verifyKey',
    endpoint: ENDPOINTS.apiRestrictions,
    params: {},
    keyId,
    signer: newKey,
    signedWith: 'new key',
    parse: apiRestrictionsResponseSchema,
  });

  // The permissions from the config and the requested scopes must be on, the ones Rotor never
  // grants off, and a requested allowlist must have restricted the key.
  const requiredPermissions = mergePermissions(context.config.permissions, requested.scopes ?? []);
  const unexpected = NEVER_GRANTED.filter((flag) => restrictions[flag] === true);
  const missing = requiredPermissions.filter((permission) => !restrictions[RESTRICTION_FLAG_OF[permission]]);
  const unrestricted = (requested.ipAllowlist ?? []).length > 0 && !restrictions.ipRestrict;
  if (unexpected.length > 0 || missing.length > 0 || unrestricted) {
    const problems = [
      ...unexpected.map((flag) => `${flag} is on, which Rotor never requests`),
      ...missing.map((permission) => `${RESTRICTION_FLAG_OF[permission]} is off although config.permissions or restrictions.scopes lists ${permission}`),
      ...(unrestricted ? ['ipRestrict is false although restrictions.ip_allowlist is set'] : []),
    ];
    throw new ProviderError(
      'invalid-config',
      `Binance reports permissions for the new API key ${keyId} of sub-account ${subAccountId} that differ from the request: ${problems.join('; ')}. ` +
        'Rotor revokes the key; check the key in Binance\'s console and the integration\'s permissions.',
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'RestrictionMismatch' },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, subAccountId, keyId, ipRestricted: restrictions.ipRestrict }, 'Verified Binance API key with apiRestrictions');
}

/**
 * Deletes a key of the sub-account. A key that Binance does not list for the sub-account counts
 * as revoked, so Rotor never deletes a key of another sub-account.
 */
async function revokeKey(context: BinanceContext, keyId: string): Promise<void> {
  const subAccountId = context.config.sub_account_id;

  // Binance documents no error code for deleting a missing key, so its own filtered query decides.
  const listed = await querySubAccountKeys(context, 'revokeKey', keyId);
  if (!listed.some((key) => key.apikey === keyId)) {
    context.logger.info({ provider: PROVIDER_NAME, subAccountId, keyId }, 'Binance API key is not among the sub-account keys, so it counts as revoked');
    return;
  }

  await callBinance(context, {
    operation: 'revokeKey',
    endpoint: ENDPOINTS.deleteKey,
    params: { subAccountId, subAccountApiKey: keyId },
    keyId,
    signer: context.credential,
    parse: z.unknown(),
  });
  context.logger.info({ provider: PROVIDER_NAME, subAccountId, keyId }, 'Deleted Binance sub-account API key');
}

/** Returns the API key of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.api_key;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

/** Returns the sub-account's keys, page by page, or only `keyId` when it is given. */
async function querySubAccountKeys(context: BinanceContext, operation: ProviderOperation, keyId?: string): Promise<SubAccountKey[]> {
  const keys: SubAccountKey[] = [];
  for (let page = 1; ; page++) {
    const params: Record<string, string> = { subAccountId: context.config.sub_account_id, page: String(page), size: String(LIST_PAGE_SIZE) };
    if (keyId !== undefined) {
      params.subAccountApiKey = keyId;
    }
    const rows = await callBinance(context, { operation, endpoint: ENDPOINTS.listKeys, params, keyId, signer: context.credential, parse: listKeysResponseSchema });
    keys.push(...rows);
    if (rows.length < LIST_PAGE_SIZE) {
      return keys;
    }
  }
}

/** Sets the key's IP restriction and checks that Binance stored exactly these addresses. */
async function restrictToAddresses(context: BinanceContext, keyId: string, addresses: string[]): Promise<void> {
  const subAccountId = context.config.sub_account_id;
  const restriction = await retryWhileRateLimited(context, () =>
    callBinance(context, {
      operation: 'createKey',
      endpoint: ENDPOINTS.ipRestriction,
      params: { subAccountId, subAccountApiKey: keyId, status: IP_RESTRICTED, ipAddress: addresses.join(',') },
      keyId,
      signer: context.credential,
      parse: ipRestrictionResponseSchema,
    }),
  );

  const stored = (restriction.ipList ?? []).map(normalizeAddress);
  if (restriction.status !== IP_RESTRICTED || !sameMembers(stored, addresses)) {
    throw restrictionMismatch(
      'createKey',
      keyId,
      subAccountId,
      `status ${restriction.status} with addresses ${describeList(stored)}`,
      `status ${IP_RESTRICTED} with addresses ${describeList(addresses)}`,
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, subAccountId, keyId, ipCount: stored.length }, 'Restricted Binance API key to the allowlisted addresses');
}

/**
 * Deletes a key createKey made but cannot hand over, such as one without its IP restriction. A
 * failure is logged with the key id and not thrown, so the caller's error stays the one reported.
 */
async function deleteUnusableKey(context: BinanceContext, keyId: string): Promise<void> {
  const subAccountId = context.config.sub_account_id;
  try {
    await retryWhileRateLimited(context, () =>
      callBinance(context, {
        operation: 'createKey',
        endpoint: ENDPOINTS.deleteKey,
        params: { subAccountId, subAccountApiKey: keyId },
        keyId,
        signer: context.credential,
        parse: z.unknown(),
      }),
    );
    context.logger.warn({ provider: PROVIDER_NAME, subAccountId, keyId }, 'Deleted the new Binance API key because its restrictions could not be applied');
  } catch (error) {
    context.logger.error(
      { provider: PROVIDER_NAME, subAccountId, keyId, err: error instanceof Error ? error.message : String(error) },
      'Failed to delete a new Binance API key whose restrictions could not be applied; delete it in Binance\'s console',
    );
  }
}

/** Runs the call again after the delay Binance requests while it is rate-limited, a few times at most. */
async function retryWhileRateLimited<T>(context: BinanceContext, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof ProviderError) || error.kind !== 'rate-limited' || attempt >= IN_CALL_RATE_LIMIT_ATTEMPTS) {
        throw error;
      }
      const delayMs = Math.min(error.details.retryAfterMs ?? 1_000, MAX_IN_CALL_RATE_LIMIT_DELAY_MS);
      context.logger.info({ provider: PROVIDER_NAME, subAccountId: context.config.sub_account_id, attempt, delayMs }, 'Binance rate-limited a key-management call; retrying it');
      await sleep(delayMs, context.signal);
    }
  }
}

function sleep(milliseconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, milliseconds);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(new ProviderError('transient', 'A Binance call was cancelled while it waited out a rate limit.', { provider: PROVIDER_NAME, operation: 'createKey' }));
      },
      { once: true },
    );
  });
}

/**
 * Binance documents no error code for a sub-account with too many keys, so a create it rejects as
 * invalid is checked against the key count. At the limit, the failure becomes 'limit-reached'.
 */
async function explainKeyLimit(context: BinanceContext, error: unknown): Promise<unknown> {
  if (!(error instanceof ProviderError) || error.kind !== 'invalid-config') {
    return error;
  }
  const keyCount = (await querySubAccountKeys(context, 'createKey')).length;
  if (keyCount < MAX_KEYS_PER_SUB_ACCOUNT) {
    return error;
  }
  return new ProviderError(
    'limit-reached',
    `Binance sub-account ${context.config.sub_account_id} already has ${keyCount} API keys, and Binance rejected another one ` +
      `(${error.details.vendorCode ?? 'no code'}). Delete a key that consumers no longer use, then start the rotation again.`,
    { ...error.details, operation: 'createKey' },
  );
}

/**
 * Converts the inventory's allowlist to Binance's ipAddress list. Binance takes single static
 * addresses, so a block wider than one address is rejected instead of being changed silently.
 */
export function binanceIpRestriction(allowlist: string[]): string[] {
  const addresses: string[] = [];
  for (const entry of allowlist) {
    const problem = cidrProblem(entry);
    if (problem !== undefined) {
      throw new ProviderError('invalid-config', `restrictions.ip_allowlist has an ${problem}.`, { provider: PROVIDER_NAME, operation: 'createKey' });
    }
    const [address, prefix] = entry.split('/');
    const maximum = ipaddr.parse(address).kind() === 'ipv4' ? 32 : 128;
    if (prefix !== undefined && Number(prefix) !== maximum) {
      throw new ProviderError(
        'invalid-config',
        `Binance restricts API keys to single IP addresses, but restrictions.ip_allowlist contains the block ${entry}. ` +
          `List each address consumers call from, such as ${address} or ${address}/${maximum}.`,
        { provider: PROVIDER_NAME, operation: 'createKey' },
      );
    }
    addresses.push(normalizeAddress(address));
  }
  return [...new Set(addresses)];
}

function normalizeAddress(address: string): string {
  return ipaddr.isValid(address) ? ipaddr.parse(address).toString() : address;
}

/** Adds scopes, each a permission flag name, to the configured permissions. */
function mergePermissions(configured: BinancePermission[], scopes: string[]): BinancePermission[] {
  const unknown = scopes.filter((scope) => !(BINANCE_PERMISSIONS as readonly string[]).includes(scope));
  if (unknown.length > 0) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes contains ${unknown.map((scope) => `"${scope}"`).join(', ')}, which is not a Binance sub-account key permission. ` +
        `Expected one of: ${BINANCE_PERMISSIONS.join(', ')}.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  const merged = new Set<BinancePermission>([...configured, ...(scopes as BinancePermission[])]);
  return BINANCE_PERMISSIONS.filter((permission) => merged.has(permission));
}

function warnAboutUnappliedRestrictions(context: BinanceContext, addresses: string[], permissions: BinancePermission[], expiresAt: string | undefined): void {
  const subAccountId = context.config.sub_account_id;
  // Binance's announcement of 2021-07-08 (https://www.binance.com/en-IN/support/announcement/cda0a4b53da04396b5d27881e93abf78).
  if (addresses.length === 0 && permissions.includes('canTrade')) {
    context.logger.warn(
      { provider: PROVIDER_NAME, subAccountId },
      'New Binance API key can trade without an IP restriction; Binance turns spot trading off on such a key after 30 days',
    );
  }
  if (expiresAt !== undefined) {
    context.logger.warn({ provider: PROVIDER_NAME, subAccountId, expiresAt }, 'Binance API keys have no expiry date; restrictions.expires_after is not applied');
  }
}

function restrictionMismatch(operation: ProviderOperation, keyId: string, subAccountId: string, actual: string, requested: string): ProviderError {
  return new ProviderError(
    'invalid-config',
    `Binance stored ${actual} for the new API key ${keyId} of sub-account ${subAccountId}, but Rotor requested ${requested}. ` +
      'Rotor deletes the key, and logs an error if that fails. Check that the sub-account has margin or futures enabled for those permissions.',
    { provider: PROVIDER_NAME, operation, vendorCode: 'RestrictionMismatch' },
  );
}

function sameMembers(left: readonly string[], right: readonly string[]): boolean {
  const a = new Set(left);
  const b = new Set(right);
  return a.size === b.size && [...a].every((item) => b.has(item));
}

function describeList(items: readonly string[]): string {
  return items.length === 0 ? '(none)' : items.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Signed requests
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey';

interface BinanceEndpoint {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
}

const ENDPOINTS = {
  listKeys: { method: 'GET', path: '/sapi/v1/broker/subAccountApi' },
  createKey: { method: 'POST', path: '/sapi/v1/broker/subAccountApi' },
  deleteKey: { method: 'DELETE', path: '/sapi/v1/broker/subAccountApi' },
  ipRestriction: { method: 'POST', path: '/sapi/v2/broker/subAccountApi/ipRestriction' },
  apiRestrictions: { method: 'GET', path: '/sapi/v1/account/apiRestrictions' },
} satisfies Record<string, BinanceEndpoint>;

// The ipRestriction status that restricts a key to its listed addresses; "1" lifts the restriction.
const IP_RESTRICTED = '2';

interface BinanceCall<T> {
  operation: ProviderOperation;
  endpoint: BinanceEndpoint;
  /** Parameters without timestamp, recvWindow and signature, which callBinance adds. */
  params: Record<string, string>;
  /** The key the request is about, for messages. */
  keyId?: string;
  /** The key that signs the request. */
  signer: KeyPair;
  /** Signing key, for messages. Default: the management credential. */
  signedWith?: 'management credential' | 'new key';
  parse: z.ZodType<T>;
}

/**
 * Computes Binance's `signature`: the hex HMAC SHA256, keyed with the secret key, of totalParams,
 * which is the query string followed directly by the request body (no `&` between them).
 */
export function binanceSignature(secret: string, queryString: string, requestBody = ''): string {
  return hmacSha256Hex(secret, `${queryString}${requestBody}`);
}

/**
 * Sends one signed request and returns its parsed JSON. GET and DELETE carry every parameter in
 * the query string; POST sends them as a form body. Binance reports failures as `{code, msg}`
 * with an HTTP 4xx status, and every one becomes a ProviderError.
 */
async function callBinance<T>(context: BinanceContext, call: BinanceCall<T>): Promise<T> {
  const { method, path } = call.endpoint;
  const params = new URLSearchParams({ ...call.params, recvWindow: String(context.config.recv_window), timestamp: String(Date.now()) });
  const signed = `${params.toString()}&signature=${binanceSignature(call.signer.api_secret, params.toString())}`;
  const url = `${context.config.base_url.replace(/\/+$/, '')}${path}${method === 'POST' ? '' : `?${signed}`}`;
  const headers: Record<string, string> = { 'X-MBX-APIKEY': call.signer.api_key, Accept: 'application/json' };
  if (method === 'POST') {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
  }

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method,
      url,
      headers,
      body: method === 'POST' ? signed : undefined,
      signal: context.signal,
      // A Binance code is more precise than the status, except under 429 and 418, whose Retry-After header counts.
      describeError: (status, json) => {
        const failure = binanceErrorSchema.safeParse(json);
        return status !== 429 && status !== 418 && failure.success ? binanceFailure(failure.data.code, failure.data.msg, status, context, call) : undefined;
      },
    });
  } catch (error) {
    throw describeHttpFailure(error, context, call);
  }

  if (response.status === 418) {
    const retryAfterMs = retryAfterFrom(response.headers) ?? IP_BAN_DEFAULT_DELAY_MS;
    throw new ProviderError('rate-limited', describeFailure('rate-limited', 'HTTP 418', describeVendorText(response.json, call), context, call, retryAfterMs), {
      provider: PROVIDER_NAME,
      operation: call.operation,
      vendorCode: 'HTTP 418',
      retryAfterMs,
    });
  }
  if (response.status >= 400) {
    throw new ProviderError(
      'invalid-config',
      `Binance rejected ${method} ${path} with HTTP ${response.status} and no error code. Check base_url in the integration's provider config, such as https://api.binance.com.`,
      { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${response.status}` },
    );
  }

  // Binance documents errors with HTTP 4xx. A `{code, msg}` body with HTTP 200 is read the same way.
  const inBodyFailure = binanceErrorSchema.safeParse(response.json);
  if (inBodyFailure.success && inBodyFailure.data.code < 0) {
    throw binanceFailure(inBodyFailure.data.code, inBodyFailure.data.msg, response.status, context, call);
  }

  const parsed = call.parse.safeParse(response.json);
  if (!parsed.success) {
    throw unexpectedResponse(parsed.error, response.json, call);
  }
  return parsed.data;
}

function retryAfterFrom(headers: Headers): number | undefined {
  const seconds = Number(headers.get('retry-after') ?? '');
  return headers.get('retry-after') !== null && Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

// ---------------------------------------------------------------------------------------------
// Parsing Binance responses
// ---------------------------------------------------------------------------------------------

const binanceErrorSchema = z.object({ code: z.number().int(), msg: z.string().default('') });

const subAccountKeySchema = z.object({
  apikey: z.string().min(1),
  subaccountId: z.union([z.string().min(1), z.number().int()]).optional(),
  canTrade: z.boolean().optional(),
  marginTrade: z.boolean().optional(),
  futuresTrade: z.boolean().optional(),
});

type SubAccountKey = z.infer<typeof subAccountKeySchema>;

// NOTE: Binance's example shows apikey masked (vmP****) in this list. If the live API masks it,
// listKeys cannot match key ids, and revokeKey's filtered query is the only reliable check.
const listKeysResponseSchema = z.array(subAccountKeySchema);

const createKeyResponseSchema = z.object({
  subaccountId: z.union([z.string().min(1), z.number().int()]),
  apiKey: z.string().min(1),
  secretKey: z.string().min(1),
  canTrade: z.boolean(),
  marginTrade: z.boolean(),
  futuresTrade: z.boolean(),
});

const ipRestrictionResponseSchema = z.object({
  status: z.string(),
  ipList: z.array(z.string()).optional(),
  apiKey: z.string().min(1),
});

const apiRestrictionsResponseSchema = z.object({
  ipRestrict: z.boolean(),
  enableReading: z.boolean(),
  enableSpotAndMarginTrading: z.boolean(),
  enableMargin: z.boolean(),
  enableFutures: z.boolean(),
  enableWithdrawals: z.boolean(),
  enableInternalTransfer: z.boolean().optional(),
  permitsUniversalTransfer: z.boolean().optional(),
});

type ApiRestrictions = z.infer<typeof apiRestrictionsResponseSchema>;

// NOTE: the pairing of the broker flags with apiRestrictions' fields is inferred from their
// descriptions; Binance documents no mapping between the two endpoints.
const RESTRICTION_FLAG_OF: Record<BinancePermission, 'enableSpotAndMarginTrading' | 'enableMargin' | 'enableFutures'> = {
  canTrade: 'enableSpotAndMarginTrading',
  marginTrade: 'enableMargin',
  futuresTrade: 'enableFutures',
};

const NEVER_GRANTED: Array<keyof ApiRestrictions> = ['enableWithdrawals', 'enableInternalTransfer', 'permitsUniversalTransfer'];

/**
 * Builds the error for a response that does not have the expected shape. It names the field and
 * never its value, because a create response contains the new secret key.
 */
function unexpectedResponse(error: z.ZodError, value: unknown, call: BinanceCall<unknown>): ProviderError {
  const issue = error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(value, issue.path) === undefined ? `${path} is missing` : `${path}: ${issue.message}`;

  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  return new ProviderError('transient', `Binance returned an unexpected response to ${call.operation}: ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

// Binance's error codes (errors.md in binance-spot-api-docs), grouped by what Rotor does about them.
const RATE_LIMIT_CODES = new Set([
  -1003, // TOO_MANY_REQUESTS: request weight used up, or the IP is banned
  -1008, // SERVER_BUSY: try again in a few minutes
]);
const AUTHENTICATION_CODES = new Set([
  -1002, // UNAUTHORIZED
  -1021, // INVALID_TIMESTAMP: outside recvWindow, or 1000 ms ahead of Binance's clock
  -1022, // INVALID_SIGNATURE
  -2014, // BAD_API_KEY_FMT
  -2015, // REJECTED_MBX_KEY: invalid API key, IP, or permissions for action
]);
const TRANSIENT_CODES = new Set([
  -1000, // UNKNOWN
  -1001, // DISCONNECTED: internal error
  -1006, // UNEXPECTED_RESP: execution status unknown
  -1007, // TIMEOUT: execution status unknown
]);

// Binance suggests waiting "a few minutes" after -1008; an estimate of one minute.
const SERVER_BUSY_DELAY_MS = 60_000;
// -1003 inside a response without Retry-After: one second, the window of the create limit.
const IN_BODY_RATE_LIMIT_DELAY_MS = 1_000;

function classifyBinanceCode(code: number, httpStatus: number): ProviderErrorKind {
  if (RATE_LIMIT_CODES.has(code)) {
    return 'rate-limited';
  }
  if (AUTHENTICATION_CODES.has(code)) {
    return 'authentication';
  }
  if (TRANSIENT_CODES.has(code)) {
    return 'transient';
  }
  // 4xx means the request is wrong as sent, such as -1102 (a mandatory parameter missing).
  return httpStatus >= 500 ? 'transient' : 'invalid-config';
}

/** Maps Binance's `{code, msg}` to a ProviderError whose message names the next step. */
function binanceFailure(code: number, vendorMessage: string, httpStatus: number, context: BinanceContext, call: BinanceCall<unknown>): ProviderError {
  const kind = classifyBinanceCode(code, httpStatus);
  const details: ProviderError['details'] = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: String(code) };
  if (kind === 'rate-limited') {
    details.retryAfterMs = code === -1008 ? SERVER_BUSY_DELAY_MS : IN_BODY_RATE_LIMIT_DELAY_MS;
  }
  const vendorText = `code ${code}${vendorMessage ? ` (${scrubSecrets(vendorMessage, secretsOf(context, call))})` : ''}`;
  return new ProviderError(kind, describeFailure(kind, String(code), vendorText, context, call, details.retryAfterMs), details);
}

/**
 * Rewrites the errors sendVendorRequest raises for HTTP 401, 403 and 429 without a Binance code
 * (or, for 429, with one) in Binance's terms. Network errors and 5xx keep their message.
 */
function describeHttpFailure(error: unknown, context: BinanceContext, call: BinanceCall<unknown>): unknown {
  if (!(error instanceof ProviderError) || !['authentication', 'permission', 'rate-limited'].includes(error.kind) || !error.details.vendorCode?.startsWith('HTTP ')) {
    return error;
  }
  const vendorCode = error.details.vendorCode;
  return new ProviderError(error.kind, describeFailure(error.kind, vendorCode, vendorCode, context, call, error.details.retryAfterMs), error.details);
}

function describeVendorText(json: unknown, call: BinanceCall<unknown>): string {
  const failure = binanceErrorSchema.safeParse(json);
  return failure.success ? `code ${failure.data.code} (${scrubSecrets(failure.data.msg, [call.signer.api_secret])})` : 'no error code';
}

function describeFailure(
  kind: ProviderErrorKind,
  code: string,
  vendorText: string,
  context: BinanceContext,
  call: BinanceCall<unknown>,
  retryAfterMs?: number,
): string {
  const subAccount = `sub-account ${context.config.sub_account_id}`;
  const subject = call.keyId ? `API key ${call.keyId} of ${subAccount}` : subAccount;
  const request = `${call.endpoint.method} ${call.endpoint.path}`;

  switch (kind) {
    case 'rate-limited':
      if (code === 'HTTP 418') {
        return (
          `Binance banned the worker's IP address for sending too many requests (${request}, HTTP 418: ${vendorText}); ` +
          `retrying in ${Math.ceil((retryAfterMs ?? 0) / 1000)} s. Lower the binance rate limit if this repeats.`
        );
      }
      return `Binance rate-limited ${request} for ${subject} (${vendorText}); retrying in ${Math.ceil((retryAfterMs ?? 0) / 1000)} s.`;
    case 'authentication':
      if (code === '-1021') {
        return (
          `Binance rejected ${request} because its timestamp is outside recvWindow (${vendorText}). ` +
          "Check the worker host's clock, or raise recv_window in the integration's provider config."
        );
      }
      if (call.signedWith === 'new key') {
        return (
          `Binance does not accept the new ${subject} yet (${vendorText}). A new key can take a moment to become usable. ` +
          "If it stays rejected, check that restrictions.ip_allowlist includes the worker's IP address."
        );
      }
      return (
        `Binance rejected the management credential for ${request} (${subAccount}): ${vendorText}. ` +
        "Check api_key and api_secret at the management credential path in Vault, that the key has \"Enable Spot & Margin Trading\", and that its IP restriction includes the worker's address."
      );
    case 'permission':
      return `Binance denied ${request} for ${subject} (${vendorText}). The credential lacks the permission, or Binance's firewall blocked the request.`;
    case 'invalid-config':
      return (
        `Binance rejected ${request} for ${subject} as invalid: ${vendorText}. ` +
        "Check sub_account_id and permissions in the integration's provider config, and its restrictions."
      );
    case 'transient':
      return `Binance ${request} for ${subject} failed with a temporary error: ${vendorText}. Rotor retries it.`;
    default:
      return `Binance ${request} for ${subject} failed: ${vendorText}.`;
  }
}

function secretsOf(context: BinanceContext, call: BinanceCall<unknown>): string[] {
  return [context.credential.api_secret, call.signer.api_secret];
}

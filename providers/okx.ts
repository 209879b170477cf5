import crypto from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
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
import { hmacSha256Base64 } from './signing';

/**
 * The OKX provider keeps the API key of one OKX sub-account fresh through the OKX v5 REST API.
 * Its management credential is an API key of the master account. New keys are verified with
 * GET /api/v5/account/config, signed with the new key itself.
 *
 * Vendor facts below come from the OKX v5 API reference, https://www.okx.com/docs-v5/en/,
 * sections "Sub-account" (create, query and delete the API key of a sub-account), "REST
 * Authentication" and "Error Code".
 */

const PROVIDER_NAME = 'okx';
const DEFAULT_BASE_URL = 'https://www.okx.com';

// OKX's rule for sub-account names: 6 to 20 letters and digits, case-sensitive.
const SUB_ACCOUNT_NAME = /^[A-Za-z0-9]{6,20}$/;

// OKX's rule for an API key's note (its `label`): up to 50 letters or digits. The English
// reference gives no rule; the Chinese edition of the create endpoint states this one.
const OKX_LABEL = /^[A-Za-z0-9]{1,50}$/;

// Rotor's rotation labels look like rotor-0a1b2c…; OKX stores them without the dash.
const ROTOR_LABEL_AT_OKX = /^rotor([A-Za-z0-9]{1,24})$/;

// OKX binds at most 20 IP addresses or CIDR blocks to one API key (error 59503).
const MAX_IP_ADDRESSES_PER_KEY = 20;

// OKX error 59501: "Each account can create up to 50 API keys". A sub-account has its own user
// ID, so the limit applies per sub-account.
const MAX_KEYS_PER_SUB_ACCOUNT = 50;

// Delay used when OKX reports a rate limit (code 50011, as HTTP 429 or inside a 200 response),
// which carries no Retry-After. An estimate: the key-management limits are counted per 1 and
// 2 second windows, and a retry within the window finds the slots that free up in it. Rotations
// throttled together would retry together and collide again, so the delay is spread at random
// between half a second and one second.
const RATE_LIMIT_DELAY_MS = 500;
const RATE_LIMIT_JITTER_MS = 500;

function rateLimitDelayMs(): number {
  return RATE_LIMIT_DELAY_MS + Math.floor(Math.random() * RATE_LIMIT_JITTER_MS);
}

// The passphrase rule of the create endpoint: 8 to 32 characters with at least one digit, one
// uppercase letter, one lowercase letter and one special character.
const PASSPHRASE_LENGTH = 32;
// NOTE: OKX names no set of allowed special characters. These are the examples its sub-account
// password rule gives, so they are the ones least likely to be refused.
const PASSPHRASE_CHARACTER_CLASSES = ['ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz', '0123456789', '!@#$%'];

export const OKX_PERMISSIONS = ['read_only', 'trade'] as const;
export type OkxPermission = (typeof OKX_PERMISSIONS)[number];

export const okxConfigSchema = z
  .object({
    /** OKX REST origin. Default https://www.okx.com. Accounts on a regional OKX domain set theirs. */
    base_url: z
      .url({ protocol: /^https?$/, message: 'expected an http or https URL such as https://www.okx.com' })
      .refine(isOrigin, 'expected an origin without a path, query or fragment, such as https://www.okx.com')
      .default(DEFAULT_BASE_URL)
      .describe('OKX REST API origin (default https://www.okx.com). Set it when the account lives on a regional OKX domain.'),
    /** The sub-account whose API key Rotor keeps fresh. */
    sub_account: z
      .string()
      .regex(SUB_ACCOUNT_NAME, 'expected an OKX sub-account name: 6 to 20 letters or digits')
      .describe('Name of the OKX sub-account whose API key Rotor keeps fresh'),
    /** Permission of new keys when restrictions.scopes is empty. Default read_only. */
    perm: z
      .enum(OKX_PERMISSIONS)
      .default('read_only')
      .describe('Permission of new keys when restrictions.scopes is empty: read_only or trade (default read_only)'),
  })
  .strict();

export type OkxConfig = z.infer<typeof okxConfigSchema>;

/** The management credential Rotor reads from Vault: an API key of the OKX master account. */
export const okxCredentialSchema = z.object({
  api_key: z.string().min(1).describe('API key of the OKX master account'),
  secret_key: z.string().min(1).describe('Secret key of that API key'),
  passphrase: z.string().min(1).describe('Passphrase chosen when that API key was created'),
});

export type OkxCredential = z.infer<typeof okxCredentialSchema>;

/** The secret consumers read from Vault: the sub-account's current API key. */
export const okxSecretSchema = z.object({
  api_key: z.string().min(1).describe('API key, sent as OK-ACCESS-KEY'),
  secret_key: z.string().min(1).describe('Secret key that signs requests (OK-ACCESS-SIGN)'),
  passphrase: z.string().min(1).describe('Passphrase, sent as OK-ACCESS-PASSPHRASE; Rotor generates it'),
});

export type OkxSecret = z.infer<typeof okxSecretSchema>;

type OkxContext = ProviderContext<OkxConfig, OkxCredential>;

const HELP = `Rotates the API key of one OKX sub-account, using an API key of the master account.

Config:
  base_url     OKX REST API origin (default https://www.okx.com).
  sub_account  Name of the sub-account whose API key Rotor keeps fresh.
  perm         Permission of new keys when restrictions.scopes is empty: read_only (default) or trade.

Management credential (stored in Vault): api_key, secret_key and passphrase of an API key of the
master account with the Trade permission. OKX requires that key to be bound to IP addresses, so
bind it to the addresses of the Rotor workers.

Secret written for consumers: api_key, secret_key and passphrase. OKX lets the creator of a key
choose its passphrase, so Rotor generates a random 32-character passphrase for every new key.

Restrictions:
  ip_allowlist  Bound to the new key, at most 20 addresses or CIDR blocks. OKX deletes a trade
                key without bound addresses after 14 days of inactivity.
  scopes        read_only or trade. When set, they take precedence over perm.
  expires_after Not applied: OKX keys have no expiry date.

Labels: the rotation label is stored as the key's note without its dash (rotor0a1b2c…),
because OKX accepts only letters and digits there. OKX allows 50 keys per sub-account.

Rate limit: OKX allows 1 create or delete request per second per master account, so
Rotor's task queue for okx runs 1 activity per second unless the inventory overrides it.`;

/** The OKX provider plugin. Every operation signs its requests with the key it is given. */
export const okxProvider: Provider<OkxConfig, OkxCredential> = {
  name: PROVIDER_NAME,
  summary: 'OKX sub-account API keys (create / delete-apikey, verified with /api/v5/account/config)',
  help: HELP,
  configSchema: okxConfigSchema,
  credentialSchema: okxCredentialSchema,
  secretSchema: okxSecretSchema,
  capabilities: {
    ipAllowlist: true,
    scopes: true,
    expiry: false,
    usageData: false,
    maxKeysPerPrincipal: MAX_KEYS_PER_SUB_ACCOUNT,
    // OKX documents "1 request per second, rule: User ID" for creating and deleting a
    // sub-account's API key, and the master account's user ID is shared by all its sub-accounts.
    defaultRateLimitPerSecond: 1,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => [config.perm],
};

/** Lists the sub-account's API keys with the rotation label each was created with. */
async function listKeys(context: OkxContext): Promise<ProviderKey[]> {
  const subAccount = context.config.sub_account;
  const rows = await callOkx(context, {
    operation: 'listKeys',
    endpoint: ENDPOINTS.listKeys,
    query: { subAcct: subAccount },
    signer: context.credential,
    parse: listKeysResponseSchema,
  });
  context.logger.debug({ provider: PROVIDER_NAME, subAccount, keyCount: rows.length }, 'Listed OKX sub-account API keys');

  return rows.map((row) => {
    // OKX has no inactive state: a key exists and works, or it has been deleted.
    const listed: ProviderKey = { keyId: row.apiKey, status: 'active', createdAt: isoFromOkxTimestamp(row.ts) };
    if (row.label !== '') {
      listed.label = rotationLabelFromOkx(row.label);
    }
    return listed;
  });
}

/**
 * Creates an API key for the sub-account with a fresh passphrase, bound to the requested IP
 * addresses and permission, and noted with the rotation label.
 */
async function createKey(context: OkxContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const subAccount = context.config.sub_account;

  // Checked before the request so that nothing is created when OKX would reject the input.
  const label = okxLabelFor(request.label, subAccount);
  const ip = okxIpList(request.restrictions.ipAllowlist ?? [], subAccount);
  const perm = okxPermission(context.config.perm, request.restrictions.scopes ?? [], subAccount);
  if (request.restrictions.expiresAt !== undefined) {
    context.logger.debug({ provider: PROVIDER_NAME, subAccount }, 'restrictions.expires_after is not applied because OKX API keys have no expiry date');
  }
  if (perm === 'trade' && ip === '') {
    context.logger.warn(
      { provider: PROVIDER_NAME, subAccount },
      'Creating an OKX trade key without an IP allowlist; OKX deletes such a key after 14 days of inactivity',
    );
  }

  const passphrase = generateOkxPassphrase();
  const body: Record<string, string> = { subAcct: subAccount, label, passphrase, perm };
  if (ip !== '') {
    body.ip = ip;
  }

  // NOTE: the create endpoint has no idempotency token. If its response is lost, listKeys later
  // shows the key under this rotation's label, and the create activity revokes it before retrying.
  const rows = await callOkx(context, {
    operation: 'createKey',
    endpoint: ENDPOINTS.createKey,
    body,
    signer: context.credential,
    extraSecrets: [passphrase],
    parse: createKeyResponseSchema,
  });
  const created = rows[0];
  context.logger.info({ provider: PROVIDER_NAME, subAccount, keyId: created.apiKey, perm, ipCount: ip === '' ? 0 : ip.split(',').length }, 'Created OKX sub-account API key');

  return {
    keyId: created.apiKey,
    createdAt: isoFromOkxTimestamp(created.ts),
    secret: { api_key: created.apiKey, secret_key: created.secretKey, passphrase },
  };
}

/**
 * Reads the account configuration with a request signed by the new key. Throws
 * 'authentication' while OKX does not accept the key, including when the worker's address is
 * outside the key's IP allowlist.
 */
async function verifyKey(context: OkxContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const subAccount = context.config.sub_account;

  const parsedSecret = okxSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for OKX API key ${keyId} of sub-account ${subAccount} is missing or has invalid fields: ${fields}. ` +
        'Expected api_key, secret_key and passphrase.',
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newKey = parsedSecret.data;
  if (newKey.api_key !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains OKX API key ${newKey.api_key}, not ${keyId}, for sub-account ${subAccount}. ` +
        'The staging path in Vault does not belong to this rotation.',
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const rows = await callOkx(context, {
    operation: 'verifyKey',
    endpoint: ENDPOINTS.accountConfig,
    keyId,
    signer: newKey,
    signedWith: 'new key',
    parse: accountConfigResponseSchema,
  });
  context.logger.info({ provider: PROVIDER_NAME, subAccount, keyId, uid: rows[0].uid }, 'Verified OKX API key with its account configuration');
}

/**
 * Deletes the key. OKX cannot deactivate a key, so deleting is the only step. A key that is
 * already gone (error 59506) counts as revoked.
 */
async function revokeKey(context: OkxContext, keyId: string): Promise<void> {
  const subAccount = context.config.sub_account;
  try {
    await callOkx(context, {
      operation: 'revokeKey',
      endpoint: ENDPOINTS.deleteKey,
      body: { subAcct: subAccount, apiKey: keyId },
      keyId,
      signer: context.credential,
      parse: deleteKeyResponseSchema,
    });
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, subAccount, keyId }, 'OKX API key was already deleted');
      return;
    }
    throw error;
  }
  context.logger.info({ provider: PROVIDER_NAME, subAccount, keyId }, 'Deleted OKX sub-account API key');
}

/** Returns the API key of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.api_key;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

// ---------------------------------------------------------------------------------------------
// Request signing and passphrases
// ---------------------------------------------------------------------------------------------

/**
 * Computes OK-ACCESS-SIGN: the Base64 HMAC-SHA256, keyed with the secret key, of timestamp +
 * method + request path (with its query string) + body. The body is empty for GET requests.
 */
export function okxSignature(secretKey: string, timestamp: string, method: string, requestPath: string, body: string): string {
  return hmacSha256Base64(secretKey, `${timestamp}${method.toUpperCase()}${requestPath}${body}`);
}

/** Returns the four OK-ACCESS headers of a request signed with this key at this instant. */
export function okxSignedHeaders(
  key: { api_key: string; secret_key: string; passphrase: string },
  method: string,
  requestPath: string,
  body: string,
  now: Date = new Date(),
): Record<string, string> {
  // OKX expects an ISO 8601 UTC time with milliseconds, such as 2020-12-08T09:08:57.715Z.
  const timestamp = now.toISOString();
  return {
    'OK-ACCESS-KEY': key.api_key,
    'OK-ACCESS-SIGN': okxSignature(key.secret_key, timestamp, method, requestPath, body),
    'OK-ACCESS-TIMESTAMP': timestamp,
    'OK-ACCESS-PASSPHRASE': key.passphrase,
  };
}

/**
 * Generates a passphrase for a new key from a cryptographic random source: 32 characters with
 * at least one uppercase letter, lowercase letter, digit and special character, as OKX requires.
 */
export function generateOkxPassphrase(): string {
  const allCharacters = PASSPHRASE_CHARACTER_CLASSES.join('');
  const characters = PASSPHRASE_CHARACTER_CLASSES.map(randomCharacterOf);
  while (characters.length < PASSPHRASE_LENGTH) {
    characters.push(randomCharacterOf(allCharacters));
  }

  // Fisher-Yates shuffle, so the guaranteed characters do not always lead.
  for (let index = characters.length - 1; index > 0; index--) {
    const other = crypto.randomInt(index + 1);
    [characters[index], characters[other]] = [characters[other], characters[index]];
  }
  return characters.join('');
}

function randomCharacterOf(alphabet: string): string {
  return alphabet[crypto.randomInt(alphabet.length)];
}

// ---------------------------------------------------------------------------------------------
// Translating Rotor's request into OKX's parameters
// ---------------------------------------------------------------------------------------------

/** Returns the OKX note for a rotation label: its letters and digits, which is all OKX accepts. */
function okxLabelFor(label: string, subAccount: string): string {
  const okxLabel = label.replace(/[^A-Za-z0-9]/g, '');
  if (!OKX_LABEL.test(okxLabel)) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${label}" cannot be stored as the note of an OKX API key of sub-account ${subAccount}: ` +
        'OKX accepts 1 to 50 letters or digits, and the label has none or too many.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return okxLabel;
}

/** Returns the rotation label a key's OKX note stands for: rotor0a1b… is reported as rotor-0a1b…. */
export function rotationLabelFromOkx(okxLabel: string): string {
  const match = ROTOR_LABEL_AT_OKX.exec(okxLabel);
  return match ? `rotor-${match[1]}` : okxLabel;
}

/**
 * Returns the allowlist as OKX's comma-separated `ip` parameter. A /32 or /128 block becomes
 * its bare address, and wider blocks are sent as CIDR blocks, which OKX calls network segments.
 */
function okxIpList(allowlist: string[], subAccount: string): string {
  if (allowlist.length > MAX_IP_ADDRESSES_PER_KEY) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.ip_allowlist has ${allowlist.length} entries, but OKX binds at most ${MAX_IP_ADDRESSES_PER_KEY} ` +
        `to an API key of sub-account ${subAccount}. Merge entries into wider CIDR blocks.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return allowlist.map((entry) => okxIpEntry(entry, subAccount)).join(',');
}

function okxIpEntry(entry: string, subAccount: string): string {
  try {
    if (!entry.includes('/')) {
      return ipaddr.parse(entry).toString();
    }
    const [address, prefixLength] = ipaddr.parseCIDR(entry);
    const singleAddress = prefixLength === (address.kind() === 'ipv4' ? 32 : 128);
    return singleAddress ? address.toString() : `${address.toString()}/${prefixLength}`;
  } catch {
    throw new ProviderError(
      'invalid-config',
      `restrictions.ip_allowlist entry "${entry}" for OKX sub-account ${subAccount} is not an IP address or CIDR block.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
}

/** Returns the new key's permission: perm when there are no scopes, else trade when they include it and read_only otherwise. */
function okxPermission(configured: OkxPermission, scopes: string[], subAccount: string): OkxPermission {
  if (scopes.length === 0) {
    return configured;
  }
  const unknown = scopes.filter((scope) => !(OKX_PERMISSIONS as readonly string[]).includes(scope));
  if (unknown.length > 0) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes contains ${unknown.map((scope) => `"${scope}"`).join(', ')}, which OKX does not know for ` +
        `sub-account ${subAccount}'s keys. Expected read_only or trade.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return scopes.includes('trade') ? 'trade' : 'read_only';
}

// ---------------------------------------------------------------------------------------------
// Calling OKX
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey';

interface OkxEndpoint {
  method: 'GET' | 'POST';
  path: string;
  /** Verb phrase for messages, such as "list the API keys" in "OKX rejected … when asked to list the API keys". */
  action: string;
}

const ENDPOINTS = {
  listKeys: { method: 'GET', path: '/api/v5/users/subaccount/apikey', action: 'list the API keys' },
  createKey: { method: 'POST', path: '/api/v5/users/subaccount/apikey', action: 'create an API key' },
  deleteKey: { method: 'POST', path: '/api/v5/users/subaccount/delete-apikey', action: 'delete an API key' },
  accountConfig: { method: 'GET', path: '/api/v5/account/config', action: 'read the account configuration' },
} satisfies Record<string, OkxEndpoint>;

interface OkxCall<T> {
  operation: ProviderOperation;
  endpoint: OkxEndpoint;
  query?: Record<string, string>;
  body?: Record<string, string>;
  /** The key the request is about, for messages. */
  keyId?: string;
  /** The key that signs the request. */
  signer: { api_key: string; secret_key: string; passphrase: string };
  /** Signing key, for messages. Default: the management credential. */
  signedWith?: 'management credential' | 'new key';
  /** Secret values other than the signer's that must not reach a message, such as a new passphrase. */
  extraSecrets?: string[];
  /** Schema of the response's `data` field. */
  parse: z.ZodType<T>;
}

/**
 * Sends one signed request and returns its parsed `data`. OKX reports failures as a non-zero
 * `code` with HTTP 200 or 4xx, or with HTTP 401, 403 or 429, and every one becomes a ProviderError.
 */
async function callOkx<T>(context: OkxContext, call: OkxCall<T>): Promise<T> {
  const { method, path } = call.endpoint;
  const requestPath = call.query ? `${path}?${new URLSearchParams(call.query).toString()}` : path;
  const body = call.body ? JSON.stringify(call.body) : '';
  const headers = { ...okxSignedHeaders(call.signer, method, requestPath, body), 'Content-Type': 'application/json', Accept: 'application/json' };

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method,
      url: new URL(requestPath, context.config.base_url).toString(),
      headers,
      body: method === 'POST' ? body : undefined,
      signal: context.signal,
      defaultRetryAfterMs: rateLimitDelayMs(),
      // OKX sends its code with HTTP 401, 403 and 429 too, and a known one is more precise than the status.
      describeError: (status, json) => {
        const envelope = okxEnvelopeSchema.safeParse(json);
        return envelope.success && isKnownOkxCode(envelope.data.code) ? okxFailure(envelope.data.code, envelope.data.msg, status, context, call) : undefined;
      },
    });
  } catch (error) {
    throw describeHttpFailure(error, context, call);
  }

  const envelope = okxEnvelopeSchema.safeParse(response.json);
  if (!envelope.success) {
    if (response.status >= 400) {
      throw new ProviderError(
        'invalid-config',
        `${method} ${path} at ${context.config.base_url} failed with HTTP ${response.status} and no OKX error code. ` +
          "Check base_url in the integration's provider config.",
        { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${response.status}` },
      );
    }
    throw unexpectedResponse(envelope.error, response.json, [], call.operation);
  }
  if (envelope.data.code !== '0') {
    throw okxFailure(envelope.data.code, envelope.data.msg, response.status, context, call);
  }

  const data = call.parse.safeParse(envelope.data.data);
  if (!data.success) {
    throw unexpectedResponse(data.error, envelope.data.data, ['data'], call.operation);
  }
  return data.data;
}

// ---------------------------------------------------------------------------------------------
// Parsing OKX responses
// ---------------------------------------------------------------------------------------------

const okxEnvelopeSchema = z.object({
  code: z.string(),
  msg: z.string().default(''),
  data: z.unknown(),
});

// OKX times are Unix milliseconds in a string, such as "1597026383085".
const okxTimestampSchema = z.string().regex(/^\d{1,15}$/, 'expected Unix milliseconds in a string');

const listKeysResponseSchema = z.array(
  z.object({
    apiKey: z.string().min(1),
    label: z.string(),
    ts: okxTimestampSchema,
  }),
);

const createKeyResponseSchema = z
  .array(
    z.object({
      apiKey: z.string().min(1),
      secretKey: z.string().min(1),
      ts: okxTimestampSchema,
    }),
  )
  .min(1);

const deleteKeyResponseSchema = z.array(z.object({ subAcct: z.string() }));

const accountConfigResponseSchema = z.array(z.object({ uid: z.string().min(1) })).min(1);

function isoFromOkxTimestamp(milliseconds: string): string {
  return new Date(Number(milliseconds)).toISOString();
}

/**
 * Builds the error for a response that does not have the expected shape. It names the field and
 * never its value, because a create response contains the new secret key.
 */
function unexpectedResponse(error: z.ZodError, value: unknown, prefix: PropertyKey[], operation: ProviderOperation): ProviderError {
  const issue = error.issues[0];
  const path = formatPath([...prefix, ...issue.path]);
  const problem = valueAtPath(value, issue.path) === undefined ? `${path} is missing` : `${path}: ${issue.message}`;

  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  return new ProviderError('transient', `OKX returned an unexpected response to ${operation}: ${problem}`, {
    provider: PROVIDER_NAME,
    operation,
    vendorCode: 'UnexpectedResponse',
  });
}

function isOrigin(value: string): boolean {
  const url = new URL(value);
  return url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

// OKX's error codes, from its REST error code table, grouped by what Rotor does about them.
const RATE_LIMIT_CODES = new Set([
  '50011', // Rate limit reached (HTTP 200 or 429)
  '50013', // Systems are busy
  '50040', // Too frequent operations
  '50061', // Order rate limit of the account
]);
const AUTHENTICATION_CODES = new Set([
  '50100', // API frozen
  '50101', // APIKey does not match current environment
  '50102', // Timestamp request expired
  '50103', '50104', '50106', '50107', // a required OK-ACCESS header is empty
  '50105', // OK-ACCESS-PASSPHRASE incorrect
  '50108', '50109', // exchange ID or domain does not exist
  '50110', // caller's IP is not in the key's IP allowlist
  '50111', // Invalid OK-ACCESS-KEY
  '50112', // Invalid OK-ACCESS-TIMESTAMP
  '50113', // Invalid signature
  '50114', // Invalid authorization
  '50119', // API key doesn't exist
]);
const PERMISSION_CODES = new Set([
  '50030', // no permission to use this endpoint
  '50035', // the endpoint requires an API key bound to IP addresses
  '50120', // the API key lacks the permission
  '50121', // access from this IP address is not allowed
  '59500', // only the master account's API key may do this
  '59508', // the sub-account is suspended
]);
const INVALID_REQUEST_CODES = new Set([
  '50000', '50002', '50006', '50014', '50015', '50016', '50024', '50025', '50115', '51000', // malformed request or parameter
  '59503', // more than 20 IP addresses
  '59505', // passphrase format
  '59510', // sub-account does not exist
]);
const TRANSIENT_CODES = new Set([
  '50001', // service temporarily unavailable
  '50004', // endpoint request timeout
  '50026', // system error
  // A key with this note already exists. A retried create revokes the key an earlier attempt
  // left under this rotation's label, so a retry can succeed.
  '59502',
]);
const KEY_LIMIT_CODE = '59501';
const KEY_NOT_FOUND_CODE = '59506';
const SUB_ACCOUNT_NOT_FOUND_CODE = '59510';

function isKnownOkxCode(code: string): boolean {
  return [RATE_LIMIT_CODES, AUTHENTICATION_CODES, PERMISSION_CODES, INVALID_REQUEST_CODES, TRANSIENT_CODES].some((codes) => codes.has(code)) || code === KEY_LIMIT_CODE || code === KEY_NOT_FOUND_CODE;
}

function classifyOkxCode(code: string, httpStatus: number): ProviderErrorKind {
  if (RATE_LIMIT_CODES.has(code)) {
    return 'rate-limited';
  }
  if (AUTHENTICATION_CODES.has(code)) {
    return 'authentication';
  }
  if (PERMISSION_CODES.has(code)) {
    return 'permission';
  }
  if (code === KEY_LIMIT_CODE) {
    return 'limit-reached';
  }
  if (code === KEY_NOT_FOUND_CODE) {
    return 'not-found';
  }
  if (INVALID_REQUEST_CODES.has(code)) {
    return 'invalid-config';
  }
  if (TRANSIENT_CODES.has(code)) {
    return 'transient';
  }
  // OKX returns 4xx for a request that is wrong as sent, and an unknown code with HTTP 200 may pass on a retry.
  return httpStatus >= 400 ? 'invalid-config' : 'transient';
}

/** Maps a non-zero OKX `code` to a ProviderError whose message names the next step. */
function okxFailure(code: string, vendorMessage: string, httpStatus: number, context: OkxContext, call: OkxCall<unknown>): ProviderError {
  const kind = classifyOkxCode(code, httpStatus);
  const details: ProviderError['details'] = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: code };
  if (kind === 'rate-limited') {
    details.retryAfterMs = rateLimitDelayMs();
  }
  const failure = { code, vendorText: scrubSecrets(vendorMessage, secretsOf(context, call)), retryAfterMs: details.retryAfterMs };
  return new ProviderError(kind, describeFailure(kind, failure, context, call), details);
}

/**
 * Rewrites the errors sendVendorRequest raises for HTTP 401, 403 and 429 without an OKX code with OKX's context.
 * Network errors and 5xx keep their message, which already states that Rotor retries.
 */
function describeHttpFailure(error: unknown, context: OkxContext, call: OkxCall<unknown>): unknown {
  // Errors that carry an OKX code were built by okxFailure already.
  if (!(error instanceof ProviderError) || !['authentication', 'permission', 'rate-limited'].includes(error.kind) || !error.details.vendorCode?.startsWith('HTTP ')) {
    return error;
  }
  const code = error.details.vendorCode ?? error.kind;
  const failure = { code, vendorText: '', retryAfterMs: error.details.retryAfterMs };
  return new ProviderError(error.kind, describeFailure(error.kind, failure, context, call), error.details);
}

interface OkxFailure {
  /** OKX's code, or "HTTP 401" when only the status is known. */
  code: string;
  vendorText: string;
  retryAfterMs?: number;
}

function describeFailure(kind: ProviderErrorKind, failure: OkxFailure, context: OkxContext, call: OkxCall<unknown>): string {
  const subAccount = `sub-account ${context.config.sub_account}`;
  const key = call.keyId ? `API key ${call.keyId} of ${subAccount}` : subAccount;
  const reason = failure.vendorText === '' ? failure.code : `${failure.code}: ${failure.vendorText}`;
  const action = call.keyId ? `${call.endpoint.action} (${call.keyId})` : call.endpoint.action;

  switch (kind) {
    case 'rate-limited':
      return `OKX rate-limited the request to ${action} for ${subAccount} (${reason}); retrying in ${Math.ceil((failure.retryAfterMs ?? 0) / 1000)} s.`;
    case 'authentication':
      if (call.signedWith === 'new key') {
        return (
          `OKX does not accept the new ${key} yet (${reason}). A new key can take a moment to become usable. ` +
          "If it stays rejected, check that the worker's IP address is in restrictions.ip_allowlist."
        );
      }
      return `OKX rejected the management credential when asked to ${action} for ${subAccount} (${reason}). ${authenticationHint(failure.code)}`;
    case 'permission':
      if (call.signedWith === 'new key') {
        return `OKX denied the new ${key} the request to ${action} (${reason}). Check perm and restrictions.scopes.`;
      }
      return (
        `The OKX management credential may not ${action} for ${subAccount} (${reason}). Use an API key of the master ` +
        "account with the Trade permission, bound to the Rotor workers' IP addresses."
      );
    case 'limit-reached':
      return (
        `OKX ${subAccount} already has the maximum of ${MAX_KEYS_PER_SUB_ACCOUNT} API keys (${reason}). ` +
        'Delete keys that consumers no longer use, then start the rotation again.'
      );
    case 'not-found':
      return `OKX has no ${key} (${reason}).`;
    case 'invalid-config':
      if (failure.code === SUB_ACCOUNT_NOT_FOUND_CODE) {
        return `OKX has no ${subAccount} under this master account (${reason}). Check sub_account in the integration's provider config.`;
      }
      return (
        `OKX rejected the request to ${action} for ${subAccount} as invalid (${reason}). ` +
        "Check the integration's provider config (sub_account, perm) and restrictions."
      );
    case 'transient':
      return `OKX failed to ${action} for ${subAccount} with a temporary error (${reason}). Rotor retries it.`;
  }
}

function authenticationHint(code: string): string {
  if (code === '50102' || code === '50112') {
    return "The request's timestamp is too far from OKX's clock. Check the worker host's clock.";
  }
  if (code === '50110') {
    return "Bind the master API key to the worker's IP address at OKX.";
  }
  return (
    'Check api_key, secret_key and passphrase at the management credential path in Vault, and that the master ' +
    "API key is bound to the worker's IP address."
  );
}

function secretsOf(context: OkxContext, call: OkxCall<unknown>): string[] {
  return [context.credential.secret_key, context.credential.passphrase, call.signer.secret_key, call.signer.passphrase, ...(call.extraSecrets ?? [])];
}

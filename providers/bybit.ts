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
import { hmacSha256Hex } from './signing';

/**
 * The Bybit provider keeps the API key of one Bybit sub account (sub UID) fresh. Its management
 * credential is an API key of the master account, which creates, lists and deletes the sub
 * account's keys through Bybit's v5 user endpoints. New keys are verified with
 * GET /v5/user/query-api signed with the new key itself.
 *
 * API reference: https://bybit-exchange.github.io/docs/v5/user/create-subuid-apikey and the
 * neighbouring pages for list-sub-apikeys, rm-sub-apikey and apikey-info.
 */

const PROVIDER_NAME = 'bybit';
const DEFAULT_BASE_URL = 'https://api.bybit.com';

// Bybit's default for X-BAPI-RECV-WINDOW: a request is valid for 5,000 ms after its timestamp.
const DEFAULT_RECV_WINDOW_MS = 5_000;

// GET /v5/user/sub-apikeys returns at most 20 keys per page.
const LIST_PAGE_SIZE = 20;

// NOTE: an estimate. Bybit's API documentation states no maximum number of API keys per sub
// account and no error code for reaching one. 20 matches the largest page of sub-apikeys.
const MAX_KEYS_PER_SUB_ACCOUNT = 20;

// Bybit sends retCode 10006 with X-Bapi-Limit-Reset-Timestamp. Without a usable header, one
// rolling window (Bybit counts requests per second) is the delay. The cap guards against a
// reset time far in the future because the worker's clock and Bybit's differ.
const DEFAULT_RATE_LIMIT_DELAY_MS = 1_000;
const MIN_RATE_LIMIT_DELAY_MS = 100;
const MAX_RATE_LIMIT_DELAY_MS = 60_000;
// Rotations that hit the limit together would retry together and collide again, so each retry
// waits a random extra time of up to a quarter window. A longer spread left slots of the window
// unused while rotations slept: with OKX's shorter delay, `npm run bench` went from a median
// ceiling ratio of 0.79 to 0.84 over five runs each.
const RATE_LIMIT_JITTER_MS = 250;

// Bybit returns HTTP 403 when the caller's IP address exceeded 600 requests in 5 seconds, and
// tells clients to stop for at least 10 minutes (https://bybit-exchange.github.io/docs/v5/rate-limit).
const IP_BAN_DELAY_MS = 10 * 60_000;

/** Bybit's permission groups for sub-account API keys and the values each accepts, from the create-sub-api page. */
export const bybitPermissionValues = {
  ContractTrade: ['Order', 'Position'],
  Spot: ['SpotTrade'],
  Wallet: ['AccountTransfer', 'SubMemberTransferList'],
  Options: ['OptionsTrade'],
  Exchange: ['ExchangeHistory'],
  Earn: ['Earn'],
  CopyTrading: ['CopyTrading'],
} as const;

type PermissionGroup = keyof typeof bybitPermissionValues;
type BybitPermissions = Partial<Record<PermissionGroup, string[]>>;

const permissionGroups = Object.keys(bybitPermissionValues) as PermissionGroup[];

const bybitPermissionsSchema = z
  .object({
    ContractTrade: z.array(z.enum(bybitPermissionValues.ContractTrade)).optional(),
    Spot: z.array(z.enum(bybitPermissionValues.Spot)).optional(),
    Wallet: z.array(z.enum(bybitPermissionValues.Wallet)).optional(),
    Options: z.array(z.enum(bybitPermissionValues.Options)).optional(),
    Exchange: z.array(z.enum(bybitPermissionValues.Exchange)).optional(),
    Earn: z.array(z.enum(bybitPermissionValues.Earn)).optional(),
    CopyTrading: z.array(z.enum(bybitPermissionValues.CopyTrading)).optional(),
  })
  .strict();

export const bybitConfigSchema = z
  .object({
    /** Bybit API base URL. Default https://api.bybit.com; https://api-testnet.bybit.com for testnet. */
    base_url: z
      .url({ protocol: /^https?$/, message: 'expected an http or https URL such as https://api.bybit.com' })
      .default(DEFAULT_BASE_URL)
      .describe('Bybit API base URL (default https://api.bybit.com; https://api-testnet.bybit.com for testnet)'),
    /** The sub account (sub UID) whose API key Rotor keeps fresh. YAML may give it as a number. */
    sub_uid: z
      .union([z.number().int().positive(), z.string().regex(/^[1-9]\d*$/, 'expected a Bybit sub UID of digits only, such as 53888002')])
      .transform((uid) => String(uid))
      .describe('UID of the sub account whose API key Rotor keeps fresh'),
    /** New keys are read-only unless this is false. Default true. */
    read_only: z.boolean().default(true).describe('Create read-only keys (default true); false creates read-and-write keys'),
    /**
     * Permission groups of new keys, in Bybit's own shape, such as { ContractTrade: [Order, Position] }.
     * restrictions.scopes such as ContractTrade:Order add to these.
     */
    permissions: bybitPermissionsSchema
      .default({})
      .describe('Permission groups of new keys in Bybit\'s shape, such as { ContractTrade: [Order, Position], Spot: [SpotTrade] }'),
    /** How long Bybit accepts a signed request after its timestamp, in milliseconds. Default 5000. */
    recv_window: z
      .number()
      .int()
      .positive()
      .default(DEFAULT_RECV_WINDOW_MS)
      .describe('Milliseconds Bybit accepts a signed request after its timestamp (X-BAPI-RECV-WINDOW, default 5000)'),
  })
  .strict();

export type BybitConfig = z.infer<typeof bybitConfigSchema>;

/** The management credential Rotor reads from Vault: an API key of the master account. */
export const bybitCredentialSchema = z.object({
  api_key: z.string().min(1).describe('API key of the master account'),
  api_secret: z.string().min(1).describe('API secret of the master account'),
});

export type BybitCredential = z.infer<typeof bybitCredentialSchema>;

/** The secret consumers read from Vault: the sub account's current API key. */
export const bybitSecretSchema = z.object({
  api_key: z.string().min(1).describe('API key of the sub account'),
  api_secret: z.string().min(1).describe('API secret of the sub account'),
});

type BybitContext = ProviderContext<BybitConfig, BybitCredential>;
type KeyPair = z.infer<typeof bybitSecretSchema>;

const HELP = `Rotates the API key of one Bybit sub account (sub UID) with the master account's API key,
through Bybit's v5 user endpoints: create-sub-api, sub-apikeys, delete-sub-api and query-api.

Config:
  base_url     Bybit API base URL (default https://api.bybit.com; https://api-testnet.bybit.com for testnet).
  sub_uid      UID of the sub account whose key Rotor keeps fresh.
  read_only    Create read-only keys (default true); false creates read-and-write keys.
  permissions  Permission groups of new keys in Bybit's shape, such as
               { ContractTrade: [Order, Position], Spot: [SpotTrade] }. Groups: ContractTrade,
               Spot, Wallet, Options, Exchange, Earn, CopyTrading.
  recv_window  Milliseconds Bybit accepts a signed request after its timestamp (default 5000).

Management credential (stored in Vault): api_key and api_secret of an HMAC API key of the master
account. Bybit requires it to have one of the permissions "Account Transfer", "Subaccount
Transfer" or "Withdrawal" to create and delete sub-account keys. Use a read-and-write key: a
read-only key is meant for GET requests only. If the key is bound to IP addresses, they must
include the worker's address.

Consumers read api_key and api_secret from the integration's Vault path.

Restrictions:
  ip_allowlist  Applied as the key's IP binding (Bybit's ips). Bybit documents ips as a list of
                single addresses, so each entry must be one address or a /32 (IPv4) or /128
                (IPv6) block.
  scopes        Added to permissions, written Group:Value, such as ContractTrade:Order or
                Spot:SpotTrade. A key needs at least one permission from config or scopes.
  expires_after Not applied: Bybit offers no expiry for API keys. Bybit itself expires a key
                without an IP binding 90 days after creation, and such a key 7 days after the
                account password changes, so set an ip_allowlist or rotate more often than that.

Labels: the rotation label is stored in the key's note.
Limits: Bybit allows 1 create-sub-api request per second per account, which is this provider's
default rate limit. Rotor assumes at most ${MAX_KEYS_PER_SUB_ACCOUNT} keys per sub account (an estimate; Bybit
documents no maximum).`;

/** The Bybit provider plugin. Each operation signs its requests with the key it is given. */
export const bybitProvider: Provider<BybitConfig, BybitCredential> = {
  name: PROVIDER_NAME,
  summary: 'Bybit sub-account API keys (v5 create-sub-api / delete-sub-api, verified with query-api)',
  help: HELP,
  configSchema: bybitConfigSchema,
  credentialSchema: bybitCredentialSchema,
  secretSchema: bybitSecretSchema,
  capabilities: {
    ipAllowlist: true,
    scopes: true,
    // Bybit has no expiry parameter. It expires keys without an IP binding after 90 days by itself.
    expiry: false,
    usageData: false,
    maxKeysPerPrincipal: MAX_KEYS_PER_SUB_ACCOUNT,
    // POST /v5/user/create-sub-api allows 1 request per second per UID, the tightest of the
    // endpoints used here (delete-sub-api 5/s, query-api 10/s), per the "User" table of
    // https://bybit-exchange.github.io/docs/v5/rate-limit. Every create activity calls it once.
    defaultRateLimitPerSecond: 1,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => [...(config.read_only ? ['read-only'] : []), ...Object.entries(config.permissions).flatMap(([group, names]) => (names ?? []).map((permission) => `${group}:${permission}`))],
};

/** Lists the sub account's API keys, with the rotation label Bybit stores in each key's note. */
async function listKeys(context: BybitContext): Promise<ProviderKey[]> {
  const keys = await listSubAccountKeys(context, 'listKeys');
  context.logger.debug({ provider: PROVIDER_NAME, subUid: context.config.sub_uid, keyCount: keys.length }, 'Listed Bybit sub-account API keys');
  return keys.map(toProviderKey);
}

/**
 * Creates an API key for the sub account with the IP binding, permissions and read-only flag
 * the config and restrictions ask for, and the rotation label as its note.
 */
async function createKey(context: BybitContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const subUid = context.config.sub_uid;

  // Every check that needs no request runs first, so invalid input never leaves a key behind.
  const ips = bybitIpBinding(request.restrictions.ipAllowlist ?? []);
  const permissions = mergePermissions(context.config.permissions, request.restrictions.scopes ?? [], subUid);
  if (request.label.trim() === '') {
    throw new ProviderError('invalid-config', `The rotation label for Bybit sub account ${subUid} is empty. Bybit stores it as the key's note, so it must contain text.`, {
      provider: PROVIDER_NAME,
      operation: 'createKey',
    });
  }
  warnAboutUnappliedRestrictions(context, ips, request.restrictions.expiresAt);

  const body: Record<string, unknown> = {
    subuid: Number(subUid),
    note: request.label,
    readOnly: context.config.read_only ? 1 : 0,
    permissions,
  };
  // Bybit reads a missing ips as "no binding", so an empty allowlist sends none.
  if (ips.length > 0) {
    body.ips = ips.join(',');
  }

  const call = bybitCall(context, 'createKey', 'POST /v5/user/create-sub-api');
  let response: BybitEnvelope;
  try {
    response = await sendSigned(context, call, context.credential, { body });
  } catch (error) {
    throw await explainKeyLimit(context, error);
  }
  const created = parseResult(createSubApiResultSchema, response.result, call);
  context.logger.info(
    { provider: PROVIDER_NAME, subUid, keyId: created.apiKey, readOnly: context.config.read_only, ipCount: ips.length },
    'Created Bybit sub-account API key',
  );

  return {
    keyId: created.apiKey,
    // create-sub-api returns no creation time, and the key exists from this moment.
    createdAt: new Date().toISOString(),
    secret: { api_key: created.apiKey, api_secret: created.secret },
  };
}

/**
 * Calls GET /v5/user/query-api signed with the new key and checks that Bybit identifies it as a
 * key of the configured sub account. Throws 'authentication' while Bybit does not accept it.
 */
async function verifyKey(context: BybitContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const subUid = context.config.sub_uid;

  const parsedSecret = bybitSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for Bybit API key ${keyId} of sub account ${subUid} is missing or has invalid fields: ${fields}. Expected api_key and api_secret.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newKey = parsedSecret.data;
  if (newKey.api_key !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains Bybit API key ${newKey.api_key}, not ${keyId}, for sub account ${subUid}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const call: BybitCall = { ...bybitCall(context, 'verifyKey', 'GET /v5/user/query-api', keyId), signedWith: 'new key' };
  call.secrets.push(newKey.api_secret);
  const response = await sendSigned(context, call, newKey, { query: {} });
  const info = parseResult(queryApiResultSchema, response.result, call);

  // A key of another account must not pass, so the caller Bybit identified is compared.
  if (info.apiKey !== keyId || String(info.userID) !== subUid) {
    throw new ProviderError(
      'authentication',
      `Bybit identified the new API key ${keyId} as key ${info.apiKey} of UID ${info.userID}, not as a key of sub account ${subUid}. ` +
        'Check that the key was created for this sub account.',
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'UnexpectedCaller' },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, subUid, keyId }, 'Verified Bybit API key with query-api');
}

/**
 * Deletes a key of the sub account with the master account's key. A key that is not among the
 * sub account's keys counts as revoked, so Rotor never deletes a key of another sub account.
 */
async function revokeKey(context: BybitContext, keyId: string): Promise<void> {
  const subUid = context.config.sub_uid;

  // Bybit documents no error code for deleting a key that does not exist, so the list decides.
  const keys = await listSubAccountKeys(context, 'revokeKey');
  if (!keys.some((key) => key.apiKey === keyId)) {
    context.logger.info({ provider: PROVIDER_NAME, subUid, keyId }, 'Bybit API key is not among the sub account keys, so it counts as revoked');
    return;
  }

  // The master key names the key in apikey. Signed by the sub key itself, the request would take no apikey.
  const call = bybitCall(context, 'revokeKey', 'POST /v5/user/delete-sub-api', keyId);
  await sendSigned(context, call, context.credential, { body: { apikey: keyId } });
  context.logger.info({ provider: PROVIDER_NAME, subUid, keyId }, 'Deleted Bybit sub-account API key');
}

/** Returns the API key of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.api_key;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function listSubAccountKeys(context: BybitContext, operation: ProviderOperation): Promise<SubApiKey[]> {
  const call = bybitCall(context, operation, 'GET /v5/user/sub-apikeys');
  const keys: SubApiKey[] = [];
  const seenCursors = new Set<string>();
  let cursor: string | undefined;
  do {
    const query: Record<string, string> = { subMemberId: context.config.sub_uid, limit: String(LIST_PAGE_SIZE) };
    if (cursor !== undefined) {
      query.cursor = cursor;
    }
    const response = await sendSigned(context, call, context.credential, { query });
    const page = parseResult(subApiKeysResultSchema, response.result, call);
    keys.push(...page.result);

    cursor = page.nextPageCursor === undefined || page.nextPageCursor === '' || page.result.length === 0 ? undefined : page.nextPageCursor;
    if (cursor !== undefined && seenCursors.has(cursor)) {
      throw unexpectedResponse(call, `result.nextPageCursor repeats "${cursor}"`);
    }
    if (cursor !== undefined) {
      seenCursors.add(cursor);
    }
  } while (cursor !== undefined);
  return keys;
}

/**
 * Bybit documents no error code for a sub account that has too many keys, so a create it
 * rejects as invalid is checked against the key count. At the limit, the failure becomes
 * 'limit-reached'; otherwise it stays as Bybit reported it. The list costs a request only on failure.
 */
async function explainKeyLimit(context: BybitContext, error: unknown): Promise<unknown> {
  if (!(error instanceof ProviderError) || error.kind !== 'invalid-config') {
    return error;
  }
  const keyCount = (await listSubAccountKeys(context, 'createKey')).length;
  if (keyCount < MAX_KEYS_PER_SUB_ACCOUNT) {
    return error;
  }
  return new ProviderError(
    'limit-reached',
    `Bybit sub account ${context.config.sub_uid} already has ${keyCount} API keys, and Bybit rejected another one ` +
      `(${error.details.vendorCode === undefined ? 'no retCode' : `retCode ${error.details.vendorCode}`}). ` +
      'Delete a key that consumers no longer use, then start the rotation again.',
    { ...error.details, operation: 'createKey' },
  );
}

function toProviderKey(key: SubApiKey): ProviderKey {
  // Bybit's status 2 means expired. 1, 3 and 4 are usable keys.
  const listed: ProviderKey = { keyId: key.apiKey, status: key.status === 2 ? 'inactive' : 'active' };
  const createdAt = key.createdAt === undefined ? Number.NaN : Date.parse(key.createdAt);
  if (!Number.isNaN(createdAt)) {
    listed.createdAt = new Date(createdAt).toISOString();
  }
  if (key.note) {
    listed.label = key.note;
  }
  return listed;
}

/**
 * Converts the inventory's allowlist to Bybit's ips. Bybit documents ips as single addresses,
 * so a block wider than one address is rejected instead of being widened or narrowed silently.
 */
export function bybitIpBinding(allowlist: string[]): string[] {
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
        `Bybit binds API keys to single IP addresses, but restrictions.ip_allowlist contains the block ${entry}. ` +
          `List each address consumers call from, such as ${address} or ${address}/${maximum}.`,
        { provider: PROVIDER_NAME, operation: 'createKey' },
      );
    }
    addresses.push(address);
  }
  return [...new Set(addresses)];
}

/** Adds scopes written Group:Value to the configured permission groups. */
function mergePermissions(configured: BybitPermissions, scopes: string[], subUid: string): BybitPermissions {
  const merged: BybitPermissions = {};
  const add = (group: PermissionGroup, value: string) => {
    const values = merged[group] ?? [];
    if (!values.includes(value)) {
      values.push(value);
    }
    merged[group] = values;
  };

  for (const group of permissionGroups) {
    for (const value of configured[group] ?? []) {
      add(group, value);
    }
  }
  for (const scope of scopes) {
    const [group, value, extra] = scope.split(':');
    const allowed = (bybitPermissionValues as Record<string, readonly string[]>)[group];
    if (extra !== undefined || allowed === undefined || !allowed.includes(value)) {
      throw new ProviderError(
        'invalid-config',
        `restrictions.scopes contains "${scope}", which is not a Bybit permission. Expected Group:Value, one of: ${allScopes().join(', ')}.`,
        { provider: PROVIDER_NAME, operation: 'createKey' },
      );
    }
    add(group as PermissionGroup, value);
  }

  if (Object.keys(merged).length === 0) {
    throw new ProviderError(
      'invalid-config',
      `A new Bybit API key for sub account ${subUid} needs at least one permission, and neither config.permissions nor ` +
        'restrictions.scopes lists one. Add scopes such as ContractTrade:Order, or permissions such as { Spot: [SpotTrade] }.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return merged;
}

function allScopes(): string[] {
  return permissionGroups.flatMap((group) => bybitPermissionValues[group].map((value) => `${group}:${value}`));
}

function warnAboutUnappliedRestrictions(context: BybitContext, ips: string[], expiresAt: string | undefined): void {
  const subUid = context.config.sub_uid;
  if (ips.length === 0) {
    context.logger.warn(
      { provider: PROVIDER_NAME, subUid },
      'New Bybit API key has no IP binding; Bybit expires such a key 90 days after creation',
    );
  }
  if (expiresAt !== undefined) {
    context.logger.warn(
      { provider: PROVIDER_NAME, subUid, expiresAt },
      'Bybit cannot give an API key an expiry date; restrictions.expires_after is not applied',
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Signed requests
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey';

type BybitEndpoint = 'GET /v5/user/sub-apikeys' | 'POST /v5/user/create-sub-api' | 'POST /v5/user/delete-sub-api' | 'GET /v5/user/query-api';

/** A request's context, which the error messages use. */
interface BybitCall {
  operation: ProviderOperation;
  endpoint: BybitEndpoint;
  subUid: string;
  keyId?: string;
  /** The key that signed the request: the master account's management credential or the key being verified. */
  signedWith: 'management credential' | 'new key';
  /** Secret values removed from Bybit's own text before it goes into a message. */
  secrets: string[];
}

function bybitCall(context: BybitContext, operation: ProviderOperation, endpoint: BybitEndpoint, keyId?: string): BybitCall {
  return { operation, endpoint, subUid: context.config.sub_uid, keyId, signedWith: 'management credential', secrets: [context.credential.api_secret] };
}

/** The signature input of one request: the query string of a GET or the raw body of a POST. */
export interface BybitSignatureInput {
  secret: string;
  timestamp: string;
  apiKey: string;
  recvWindow: string;
  /** The query string exactly as sent, without `?`, or the raw JSON body. */
  payload: string;
}

/** Computes X-BAPI-SIGN: hex HMAC-SHA256 of timestamp + API key + recv window + payload. */
export function bybitSignature(input: BybitSignatureInput): string {
  return hmacSha256Hex(input.secret, input.timestamp + input.apiKey + input.recvWindow + input.payload);
}

interface BybitEnvelope {
  result: unknown;
  headers: Headers;
}

/** Sends one request signed with the given key and returns the result of a retCode 0 response. */
async function sendSigned(
  context: BybitContext,
  call: BybitCall,
  signer: KeyPair,
  request: { query: Record<string, string> } | { body: Record<string, unknown> },
): Promise<BybitEnvelope> {
  const [method, path] = call.endpoint.split(' ') as ['GET' | 'POST', string];
  const payload = 'query' in request ? new URLSearchParams(request.query).toString() : JSON.stringify(request.body);
  const timestamp = String(Date.now());
  const recvWindow = String(context.config.recv_window);
  const headers: Record<string, string> = {
    'X-BAPI-API-KEY': signer.api_key,
    'X-BAPI-TIMESTAMP': timestamp,
    'X-BAPI-RECV-WINDOW': recvWindow,
    'X-BAPI-SIGN': bybitSignature({ secret: signer.api_secret, timestamp, apiKey: signer.api_key, recvWindow, payload }),
  };
  let url = `${context.config.base_url.replace(/\/+$/, '')}${path}`;
  if (method === 'GET' && payload !== '') {
    url += `?${payload}`;
  }
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
  }

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method,
      url,
      headers,
      body: method === 'POST' ? payload : undefined,
      signal: context.signal,
    });
  } catch (error) {
    throw remapHttpError(error, call);
  }
  return readEnvelope(response, call);
}

const envelopeSchema = z.object({
  retCode: z.number().int(),
  retMsg: z.string(),
  result: z.unknown(),
});

function readEnvelope(response: VendorResponse, call: BybitCall): BybitEnvelope {
  const envelope = envelopeSchema.safeParse(response.json);
  if (!envelope.success) {
    if (response.status === 404) {
      throw new ProviderError(
        'invalid-config',
        `Bybit found no ${call.endpoint} at base_url (HTTP 404). Check base_url in the integration's provider config, such as https://api.bybit.com.`,
        { provider: PROVIDER_NAME, operation: call.operation, vendorCode: 'HTTP 404' },
      );
    }
    if (response.status >= 400) {
      throw new ProviderError('invalid-config', `Bybit rejected ${call.endpoint} with HTTP ${response.status} and no retCode.`, {
        provider: PROVIDER_NAME,
        operation: call.operation,
        vendorCode: `HTTP ${response.status}`,
      });
    }
    throw unexpectedResponse(call, describeIssue(envelope.error.issues[0], response.json, ''));
  }

  const { retCode, retMsg, result } = envelope.data;
  if (retCode !== 0) {
    throw retCodeError(retCode, scrubSecrets(retMsg, call.secrets), response.headers, call);
  }
  return { result, headers: response.headers };
}

/**
 * Rewrites the HTTP failures that mean something specific at Bybit: 403 is its IP rate-limit
 * ban, and 401 gets a message that names the rejected key.
 */
function remapHttpError(error: unknown, call: BybitCall): unknown {
  if (!(error instanceof ProviderError)) {
    return error;
  }
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: error.details.vendorCode };
  if (error.details.vendorCode === 'HTTP 403') {
    return new ProviderError(
      'rate-limited',
      `Bybit refused ${call.endpoint} with HTTP 403, its answer to an IP address over 600 requests in 5 seconds; ` +
        `retrying in ${IP_BAN_DELAY_MS / 60_000} minutes. If it persists, Bybit may block the worker's address or region.`,
      { ...details, retryAfterMs: IP_BAN_DELAY_MS },
    );
  }
  if (error.details.vendorCode === 'HTTP 401') {
    return new ProviderError('authentication', describeFailure('authentication', 401, 'HTTP 401', call), details);
  }
  return error;
}

// ---------------------------------------------------------------------------------------------
// Parsing Bybit results
// ---------------------------------------------------------------------------------------------

const subApiKeySchema = z.object({
  apiKey: z.string().min(1),
  note: z.string().nullish(),
  // 1 permanent, 2 expired, 3 within its validity period, 4 expires within 7 days.
  status: z.number().int().optional(),
  createdAt: z.string().optional(),
});

type SubApiKey = z.infer<typeof subApiKeySchema>;

const subApiKeysResultSchema = z.object({
  result: z.array(subApiKeySchema),
  nextPageCursor: z.string().optional(),
});

const createSubApiResultSchema = z.object({
  apiKey: z.string().min(1),
  secret: z.string().min(1),
});

const queryApiResultSchema = z.object({
  apiKey: z.string().min(1),
  userID: z.union([z.number().int(), z.string().min(1)]),
});

/** Parses the `result` of a retCode 0 response. The error names the path of the bad field, never its value. */
function parseResult<T>(schema: z.ZodType<T>, result: unknown, call: BybitCall): T {
  const parsed = schema.safeParse(result);
  if (parsed.success) {
    return parsed.data;
  }
  throw unexpectedResponse(call, describeIssue(parsed.error.issues[0], result, 'result'));
}

function unexpectedResponse(call: BybitCall, problem: string): ProviderError {
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  return new ProviderError('transient', `Bybit returned an unexpected response to ${call.endpoint}: ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

function describeIssue(issue: z.core.$ZodIssue, value: unknown, prefix: string): string {
  const path = formatPath(prefix === '' ? issue.path : [prefix, ...issue.path]);
  return valueAtPath(value, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

// retCodes from https://bybit-exchange.github.io/docs/v5/error. 10003 is an unknown or deleted
// key, 10004 a wrong signature, 10007 failed user authentication, 33004 and -2015 an expired key.
const AUTHENTICATION_CODES = new Set([10002, 10003, 10004, 10007, 33004, -2015]);
// 10005 missing permission, 10008 and 10027 banned account or trading, 10009 banned IP, 10010 an
// address outside the key's IP binding, 10024 compliance rules.
const PERMISSION_CODES = new Set([10005, 10008, 10009, 10010, 10024, 10027]);
// 10006 the per-UID rate limit, 10018 the per-IP rate limit.
const RATE_LIMIT_CODES = new Set([10006, 10018]);
// 10000 server timeout, 10016 server error or restarting.
const TRANSIENT_CODES = new Set([10000, 10016]);
// The sub account given does not belong to the master account of the management credential.
const SUB_ACCOUNT_NOT_OWNED = 500010;

function classifyRetCode(retCode: number): ProviderErrorKind {
  if (RATE_LIMIT_CODES.has(retCode)) {
    return 'rate-limited';
  }
  if (AUTHENTICATION_CODES.has(retCode)) {
    return 'authentication';
  }
  if (PERMISSION_CODES.has(retCode)) {
    return 'permission';
  }
  if (TRANSIENT_CODES.has(retCode)) {
    return 'transient';
  }
  // Anything else, such as 10001 (invalid parameter), is a request Bybit rejects as sent.
  return 'invalid-config';
}

function retCodeError(retCode: number, retMsg: string, headers: Headers, call: BybitCall): ProviderError {
  const kind = classifyRetCode(retCode);
  const details: ProviderError['details'] = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: String(retCode) };
  if (kind === 'rate-limited') {
    details.retryAfterMs = retCode === 10006 ? rateLimitDelayMs(headers) : DEFAULT_RATE_LIMIT_DELAY_MS + Math.floor(Math.random() * RATE_LIMIT_JITTER_MS);
  }
  const vendorText = `retCode ${retCode}${retMsg ? ` (${retMsg})` : ''}`;
  return new ProviderError(kind, describeFailure(kind, retCode, vendorText, call, details.retryAfterMs), details);
}

/**
 * Returns the delay until X-Bapi-Limit-Reset-Timestamp (milliseconds since the epoch), plus a
 * random share of one window. `random` returns a number in [0, 1), as Math.random does.
 */
export function rateLimitDelayMs(headers: Headers, now = Date.now(), random = Math.random): number {
  const jitter = Math.floor(random() * RATE_LIMIT_JITTER_MS);
  const reset = Number(headers.get('x-bapi-limit-reset-timestamp'));
  if (!Number.isFinite(reset) || reset <= 0) {
    return DEFAULT_RATE_LIMIT_DELAY_MS + jitter;
  }
  return Math.min(Math.max(reset - now, MIN_RATE_LIMIT_DELAY_MS), MAX_RATE_LIMIT_DELAY_MS) + jitter;
}

function describeFailure(kind: ProviderErrorKind, retCode: number, vendorText: string, call: BybitCall, delayMs?: number): string {
  const subAccount = `sub account ${call.subUid}`;
  const subject = call.keyId ? `API key ${call.keyId} of ${subAccount}` : subAccount;

  switch (kind) {
    case 'rate-limited':
      return `Bybit rate-limited ${call.endpoint} for ${subject}: ${vendorText}. Retrying in ${delayMs} ms.`;
    case 'authentication':
      if (retCode === 10002) {
        return (
          `Bybit rejected ${call.endpoint} because its timestamp is outside the receive window: ${vendorText}. ` +
          "Check the worker host's clock, or raise recv_window in the integration's provider config."
        );
      }
      if (call.signedWith === 'new key') {
        return (
          `Bybit rejected the new ${subject}: ${vendorText}. A new key can take a moment before Bybit accepts it. ` +
          'If it is still rejected later, check that the key was not deleted.'
        );
      }
      return (
        `Bybit rejected the management credential for ${call.endpoint} (${subAccount}): ${vendorText}. ` +
        'Check the api_key and api_secret at the management credential path in Vault, and that base_url is the environment (mainnet or testnet) the key belongs to.'
      );
    case 'permission':
      if (retCode === 10010) {
        return call.signedWith === 'new key'
          ? `Bybit rejected the new ${subject} from the worker's IP address: ${vendorText}. ` +
              "The key's IP binding (restrictions.ip_allowlist) must include the address the worker calls Bybit from."
          : `Bybit rejected the management credential from the worker's IP address for ${call.endpoint}: ${vendorText}. ` +
              "Add the worker's address to the master API key's IP binding in Bybit's console.";
      }
      if (retCode === 10005 && call.signedWith === 'management credential') {
        return (
          `The management credential may not call ${call.endpoint} for ${subAccount}: ${vendorText}. ` +
          'Use a read-and-write master API key with "Account Transfer", "Subaccount Transfer" or "Withdrawal" permission.'
        );
      }
      return `Bybit denied ${call.endpoint} for ${subject}: ${vendorText}.`;
    case 'invalid-config':
      if (retCode === SUB_ACCOUNT_NOT_OWNED) {
        return (
          `Bybit reports that ${subAccount} does not belong to the master account of the management credential: ${vendorText}. ` +
          "Check sub_uid in the integration's provider config."
        );
      }
      return (
        `Bybit rejected ${call.endpoint} for ${subject} as invalid: ${vendorText}. ` +
        "Check the integration's provider config (sub_uid, permissions, read_only) and restrictions."
      );
    case 'transient':
      return `Bybit ${call.endpoint} for ${subject} failed with a temporary error: ${vendorText}.`;
    default:
      return `Bybit ${call.endpoint} for ${subject} failed: ${vendorText}.`;
  }
}

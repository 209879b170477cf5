import { isIP } from 'node:net';
import { z } from 'zod';
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
import { formatPath, valueAtPath } from './responses';
import { sendVendorRequest, type VendorRequest, type VendorResponse } from './http';

/**
 * The Cloudflare provider keeps one user API token fresh. Its management credential is another
 * API token of the same Cloudflare user, one that may create tokens. New tokens are verified
 * with GET /user/tokens/verify, which every active token may call. Cloudflare wraps every
 * response in its v4 envelope `{ success, errors, messages, result }`.
 */

const PROVIDER_NAME = 'cloudflare';
const DEFAULT_BASE_URL = 'https://api.cloudflare.com/client/v4';

// "User API token quota: 50" (https://developers.cloudflare.com/fundamentals/api/reference/limits/).
const MAX_TOKENS_PER_USER = 50;

// Cloudflare's limit on token names (iam_name in Cloudflare's OpenAPI schema).
const MAX_TOKEN_NAME_LENGTH = 120;

// GET /user/tokens returns at most 50 tokens a page. A user has at most 50 tokens, so more than
// MAX_LIST_PAGES pages means the response is malformed.
const LIST_PAGE_SIZE = 50;
const MAX_LIST_PAGES = 10;

// A rotation label inside a token name: the whole name, or the last word in parentheses.
const LABEL_IN_TOKEN_NAME = /(?:^|\()(rotor-[A-Za-z0-9]{1,24})\)?$/;

// Error codes Cloudflare puts in the v4 envelope when it does not accept a token: 1000 "Invalid
// API Token", 6003 "Invalid request headers" (with 6111 for a malformed Authorization header)
// and 10000 "Authentication error". 9109 "Cannot use the access token from location" means the
// token's IP filter excludes the caller.
const AUTHENTICATION_ERROR_CODES = new Set([1000, 6003, 6111, 10000]);
const LOCATION_ERROR_CODE = 9109;
const RATE_LIMIT_ERROR_CODE = 971;
// 7003 "Could not route to ..., perhaps your object identifier is invalid?"
const NOT_FOUND_ERROR_CODES = new Set([7000, 7003]);

// Used when Cloudflare reports a rate limit in the envelope without a Retry-After header. An
// estimate: Cloudflare documents Retry-After on its 429 responses but no delay for other cases.
const DEFAULT_RATE_LIMIT_DELAY_MS = 5_000;

// Rotations throttled together would otherwise all retry after the same Retry-After and collide
// again, so each waits a random extra time up to this. Small next to the 5 minutes Cloudflare
// blocks a user once its limit is spent.
const RATE_LIMIT_JITTER_MAX_MS = 2_000;

// ---------------------------------------------------------------------------------------------
// Config, credential and secret
// ---------------------------------------------------------------------------------------------

const permissionGroupSchema = z
  .object({
    id: z
      .string()
      .regex(/^[0-9a-f]{32}$/, 'expected a permission group id: 32 lowercase hexadecimal characters')
      .describe('Permission group id, from GET /user/tokens/permission_groups'),
    name: z
      .string()
      .min(1)
      .optional()
      .describe('Name of the group, such as "DNS Read". Rotor does not send it; restrictions.scopes may use it.'),
    meta: z
      .object({ key: z.string(), value: z.string() })
      .strict()
      .optional()
      .describe('Attributes some permission groups take, sent as given'),
  })
  .strict();

const policySchema = z
  .object({
    effect: z.enum(['allow', 'deny']).describe('allow grants the permission groups on the resources; deny takes them away'),
    resources: z
      .record(z.string().min(1), z.union([z.string(), z.record(z.string().min(1), z.string())]))
      .refine((resources) => Object.keys(resources).length > 0, 'expected at least one resource, such as "com.cloudflare.api.account.zone.<ZONE_ID>": "*"')
      .describe('Resources the policy applies to, in Cloudflare\'s notation, such as {"com.cloudflare.api.account.zone.<ZONE_ID>": "*"}'),
    permission_groups: z.array(permissionGroupSchema).min(1, 'expected at least one permission group').describe('Permission groups the policy grants or denies'),
  })
  .strict();

export const cloudflareConfigSchema = z
  .object({
    /** Cloudflare API base URL. Tests point it at a local emulator. */
    base_url: z
      .url({ protocol: /^https?$/, message: `expected an http or https URL such as ${DEFAULT_BASE_URL}` })
      .default(DEFAULT_BASE_URL)
      .describe('Cloudflare API base URL; tests point it at a local emulator'),
    /** Readable part of each new token's name; the rotation label follows it in parentheses. */
    token_name: z
      .string()
      .min(1)
      .max(MAX_TOKEN_NAME_LENGTH - 40, `expected at most ${MAX_TOKEN_NAME_LENGTH - 40} characters, because the rotation label follows`)
      .optional()
      .describe('Readable name for new tokens, such as "ci-deployer"; Rotor appends the rotation label'),
    /** Access policies of each new token: Cloudflare policy objects, sent as they are. */
    policies: z
      .array(policySchema)
      .min(1, 'expected at least one policy')
      .refine((policies) => policies.some((policy) => policy.effect === 'allow'), 'expected at least one policy with effect allow')
      .describe('Access policies of each new token: effect, resources and permission_groups, as Cloudflare defines them'),
  })
  .strict();

export type CloudflareConfig = z.infer<typeof cloudflareConfigSchema>;
type CloudflarePolicy = CloudflareConfig['policies'][number];

/** The management credential Rotor reads from Vault: a user API token that may create tokens. */
export const cloudflareCredentialSchema = z.object({
  token: z.string().min(1).describe('API token of the Cloudflare user, with the permission API Tokens Write'),
});

export type CloudflareCredential = z.infer<typeof cloudflareCredentialSchema>;

/** The secret consumers read from Vault: the current API token and its id. */
export const cloudflareSecretSchema = z.object({
  token_id: z.string().min(1).describe('Id of the API token, 32 hexadecimal characters'),
  token: z.string().min(1).describe('The API token, sent as "Authorization: Bearer <token>"'),
});

type CloudflareContext = ProviderContext<CloudflareConfig, CloudflareCredential>;

const HELP = `Rotates one Cloudflare user API token. Each new token gets the policies in the config,
narrowed to restrictions.scopes when it lists any. The old token is deleted after grace.

Config:
  base_url    Cloudflare API base URL (default ${DEFAULT_BASE_URL}).
  token_name  Readable name for new tokens, such as "ci-deployer" (optional). The token's name in
              Cloudflare is "<token_name> (<rotation label>)", or the label alone.
  policies    Access policies of each new token, as Cloudflare defines them: a list of
              { effect: allow|deny, resources: {...}, permission_groups: [{ id, name? }] }.
              GET /user/tokens/permission_groups lists the group ids.

Management credential (stored in Vault): token, an API token of the same Cloudflare user with
the permission API Tokens Write (in the dashboard: User > API Tokens > Edit, which only the
"Create additional tokens" template offers). Rotor never revokes this token.

Restrictions:
  ip_allowlist   becomes the token's client IP filter (condition "request.ip".in); a bare
                 address becomes a /32 or /128. Cloudflare rejects the token from any other
                 address, so the list must include the worker's address or verification fails.
  scopes         permission group ids or names from the policies; the new token keeps only
                 those groups. Leave it empty to grant every group in the policies.
  expires_after  becomes the token's expires_on.

Limits: a Cloudflare user may have ${MAX_TOKENS_PER_USER} API tokens, counting tokens made for other
purposes, and the API allows 1200 requests per 5 minutes per user. With clear_stale_keys,
planning may revoke any disabled or long-unused token of the user to make room, so give
Rotor's tokens a Cloudflare user of their own. Rotor lists each token with its name as the
label (the rotation label for tokens it created) and its last_used_on as usage data.`;

export const cloudflareProvider: Provider<CloudflareConfig, CloudflareCredential> = {
  name: PROVIDER_NAME,
  summary: 'Cloudflare user API tokens (create, verify, delete), with IP filter, policies and expiry',
  help: HELP,
  configSchema: cloudflareConfigSchema,
  credentialSchema: cloudflareCredentialSchema,
  secretSchema: cloudflareSecretSchema,
  capabilities: {
    ipAllowlist: true,
    scopes: true,
    expiry: true,
    usageData: true,
    maxKeysPerPrincipal: MAX_TOKENS_PER_USER,
    // Cloudflare allows 1200 requests per 5 minutes per user, 4 per second on average, shared by
    // the dashboard and every token of the user, and blocks them all for 5 minutes past it
    // (https://developers.cloudflare.com/fundamentals/api/reference/limits/). Rotor takes half.
    defaultRateLimitPerSecond: 2,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => config.policies.filter((policy) => policy.effect === 'allow').flatMap((policy) => policy.permission_groups.map((group) => group.name ?? group.id)),
  keyUsage,
};

/** Lists every API token of the user, with its name as the label, or the rotation label inside it. */
async function listKeys(context: CloudflareContext): Promise<ProviderKey[]> {
  const tokens = await listTokens(context);
  context.logger.debug({ provider: PROVIDER_NAME, tokenCount: tokens.length }, 'Listed Cloudflare API tokens');

  return tokens.map((token) => {
    const listed: ProviderKey = {
      keyId: token.id,
      // Cloudflare's other statuses, disabled and expired, both reject the token.
      status: token.status === 'active' ? 'active' : 'inactive',
      label: labelFromTokenName(token.name),
      lastUsedAt: token.last_used_on ? toIsoTime(token.last_used_on) : null,
    };
    if (token.issued_on) {
      listed.createdAt = toIsoTime(token.issued_on);
    }
    return listed;
  });
}

/**
 * Creates a token with the config's policies, narrowed to the scopes, bound to the IP allowlist
 * and expiring as requested. Its name carries the rotation label, so a retried create finds it.
 */
async function createKey(context: CloudflareContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const name = tokenName(context.config, request.label);
  const { restrictions } = request;

  const body: CreateTokenBody = { name, policies: grantedPolicies(context.config.policies, restrictions.scopes ?? []) };
  const allowedAddresses = (restrictions.ipAllowlist ?? []).map(toCidr);
  if (allowedAddresses.length > 0) {
    body.condition = { 'request.ip': { in: allowedAddresses } };
  }
  if (restrictions.expiresAt !== undefined) {
    body.expires_on = toCloudflareTime(restrictions.expiresAt, 'expires_after');
  }

  // NOTE: POST /user/tokens takes no idempotency key. When its response is lost, the token still
  // exists under this name, and the create activity's retry revokes it by its rotation label.
  const call = managementCall(context, 'createKey', 'POST', '/user/tokens');
  const created = await callCloudflare(context, call, createdTokenSchema, { body: JSON.stringify(body) });
  context.logger.info({ provider: PROVIDER_NAME, keyId: created.id, tokenName: name }, 'Created Cloudflare API token');

  return {
    keyId: created.id,
    createdAt: created.issued_on ? toIsoTime(created.issued_on) : new Date().toISOString(),
    secret: { token_id: created.id, token: created.value },
  };
}

/**
 * Calls GET /user/tokens/verify with the new token and checks that Cloudflare reports this
 * token as active. Throws 'authentication' while Cloudflare does not accept it.
 */
async function verifyKey(context: CloudflareContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const parsedSecret = cloudflareSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for Cloudflare token ${keyId} is missing or has invalid fields: ${fields}. Expected token_id and token.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newToken = parsedSecret.data;
  if (newToken.token_id !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains Cloudflare token ${newToken.token_id}, not ${keyId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const call: CloudflareCall = {
    ...managementCall(context, 'verifyKey', 'GET', '/user/tokens/verify', keyId),
    bearer: newToken.token,
    signedWith: 'new token',
    secrets: [context.credential.token, newToken.token],
  };
  const verified = await callCloudflare(context, call, verifiedTokenSchema);

  if (verified.id !== keyId) {
    throw new ProviderError(
      'authentication',
      `The staged token for Cloudflare token ${keyId} authenticated as token ${verified.id}. Check that the staged secret belongs to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'UnexpectedToken' },
    );
  }
  if (verified.status !== 'active') {
    throw new ProviderError(
      'authentication',
      `Cloudflare reports the new token ${keyId} as ${verified.status}, not active. Check its not_before and expires_on in the Cloudflare dashboard.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: `status ${verified.status}` },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, keyId }, 'Verified Cloudflare API token');
}

/**
 * Deletes the token. A token that is already gone counts as revoked. Rejects the management
 * token itself, which Rotor needs for every later rotation.
 */
async function revokeKey(context: CloudflareContext, keyId: string): Promise<void> {
  const managementTokenId = await readManagementTokenId(context, 'revokeKey');
  if (managementTokenId === keyId) {
    throw new ProviderError(
      'invalid-config',
      `Cloudflare token ${keyId} is the management token of this integration, and Rotor will not revoke it. ` +
        'Store a different token at the consumer path, or revoke this one by hand after replacing the management credential.',
      { provider: PROVIDER_NAME, operation: 'revokeKey' },
    );
  }

  // Cloudflare can disable a token, but only by writing back the whole token with PUT, and the
  // delete follows at once, so disabling first would cost two calls and buy no time to undo.
  const call = managementCall(context, 'revokeKey', 'DELETE', `/user/tokens/${encodeURIComponent(keyId)}`, keyId);
  try {
    await callCloudflare(context, call, deletedTokenSchema);
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, keyId }, 'Cloudflare API token was already deleted');
      return;
    }
    throw error;
  }
  context.logger.info({ provider: PROVIDER_NAME, keyId }, 'Deleted Cloudflare API token');
}

/** Returns the token id of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.token_id;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

/** Reports the token's last_used_on from GET /user/tokens/{id}. */
async function keyUsage(context: CloudflareContext, keyId: string): Promise<KeyUsage> {
  const call = managementCall(context, 'keyUsage', 'GET', `/user/tokens/${encodeURIComponent(keyId)}`, keyId);
  const token = await callCloudflare(context, call, tokenDetailsSchema);

  const lastUsedAt = token.last_used_on ? toIsoTime(token.last_used_on) : null;
  context.logger.debug({ provider: PROVIDER_NAME, keyId, lastUsedAt }, 'Read Cloudflare API token usage');
  return { lastUsedAt };
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function listTokens(context: CloudflareContext): Promise<z.infer<typeof tokenDetailsSchema>[]> {
  const tokens: z.infer<typeof tokenDetailsSchema>[] = [];
  for (let page = 1; page <= MAX_LIST_PAGES; page++) {
    const call = managementCall(context, 'listKeys', 'GET', `/user/tokens?page=${page}&per_page=${LIST_PAGE_SIZE}`);
    const { result, resultInfo } = await callCloudflareWithInfo(context, call, z.array(tokenDetailsSchema));
    tokens.push(...result);

    const lastPage = resultInfo?.total_pages ?? (result.length < LIST_PAGE_SIZE ? page : page + 1);
    if (page >= lastPage || result.length === 0) {
      return tokens;
    }
  }
  throw new ProviderError(
    'transient',
    `Cloudflare returned an unexpected response to listKeys: more than ${MAX_LIST_PAGES} pages of API tokens, although a user may have at most ${MAX_TOKENS_PER_USER}.`,
    { provider: PROVIDER_NAME, operation: 'listKeys', vendorCode: 'UnexpectedResponse' },
  );
}

async function readManagementTokenId(context: CloudflareContext, operation: ProviderOperation): Promise<string> {
  const call = managementCall(context, operation, 'GET', '/user/tokens/verify');
  return (await callCloudflare(context, call, verifiedTokenSchema)).id;
}

/** Builds the token name: the label alone, or "<token_name> (<label>)". */
function tokenName(config: CloudflareConfig, label: string): string {
  const name = config.token_name ? `${config.token_name} (${label})` : label;
  if (name.length > MAX_TOKEN_NAME_LENGTH || labelFromTokenName(name) !== label) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${label}" cannot be stored in a Cloudflare token name: expected "rotor-" and up to 24 letters or digits, ` +
        `in a name of at most ${MAX_TOKEN_NAME_LENGTH} characters.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return name;
}

/** Returns the rotation label inside a token name, or the whole name for tokens Rotor did not create. */
function labelFromTokenName(name: string): string {
  return LABEL_IN_TOKEN_NAME.exec(name)?.[1] ?? name;
}

/**
 * Returns the policies the new token gets. Without scopes, every policy as configured. With
 * scopes, allow policies keep only the permission groups the scopes name (by id or name), and
 * deny policies stay whole because they only take permissions away.
 */
function grantedPolicies(policies: CloudflarePolicy[], scopes: string[]): WirePolicy[] {
  const requested = new Set(scopes);
  const matched = new Set<string>();
  const isRequested = (group: CloudflarePolicy['permission_groups'][number]): boolean => {
    const hits = [group.id, group.name].filter((key): key is string => key !== undefined && requested.has(key));
    hits.forEach((key) => matched.add(key));
    return hits.length > 0;
  };

  const granted: WirePolicy[] = [];
  for (const policy of policies) {
    const groups = policy.effect === 'allow' && requested.size > 0 ? policy.permission_groups.filter(isRequested) : policy.permission_groups;
    if (groups.length > 0) {
      granted.push({ effect: policy.effect, resources: policy.resources, permission_groups: groups.map(({ id, meta }) => (meta ? { id, meta } : { id })) });
    }
  }

  const unknown = scopes.filter((scope) => !matched.has(scope));
  if (unknown.length > 0) {
    const available = policies
      .filter((policy) => policy.effect === 'allow')
      .flatMap((policy) => policy.permission_groups.map((group) => (group.name ? `${group.name} (${group.id})` : group.id)));
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes names permission groups that no allow policy in the Cloudflare config grants: ${unknown.join(', ')}. ` +
        `Use ids or names from config.policies: ${available.join(', ')}.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return granted;
}

/** Writes an address or CIDR in the CIDR notation Cloudflare requires: a bare address becomes a /32 or /128. */
function toCidr(entry: string): string {
  if (entry.includes('/')) {
    return entry;
  }
  return isIP(entry) === 6 ? `${entry}/128` : `${entry}/32`;
}

/** Formats an instant as Cloudflare's examples write it, in whole seconds: 2018-07-01T05:20:00Z. */
function toCloudflareTime(instant: string, field: string): string {
  const time = Date.parse(instant);
  if (Number.isNaN(time)) {
    throw new ProviderError('invalid-config', `The ${field} instant "${instant}" is not a valid date.`, { provider: PROVIDER_NAME, operation: 'createKey' });
  }
  return new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function toIsoTime(text: string): string {
  return new Date(Date.parse(text)).toISOString();
}

// ---------------------------------------------------------------------------------------------
// Cloudflare requests and responses
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey' | 'keyUsage';

interface WirePolicy {
  effect: 'allow' | 'deny';
  resources: CloudflarePolicy['resources'];
  permission_groups: Array<{ id: string; meta?: { key: string; value: string } }>;
}

interface CreateTokenBody {
  name: string;
  policies: WirePolicy[];
  condition?: { 'request.ip': { in: string[] } };
  expires_on?: string;
}

/** One request to Cloudflare and what the error messages need to know about it. */
interface CloudflareCall {
  operation: ProviderOperation;
  method: VendorRequest['method'];
  /** Path below base_url, with its query string. */
  path: string;
  keyId?: string;
  bearer: string;
  signedWith: 'management token' | 'new token';
  /** Secret values removed from Cloudflare's error text before it goes into a message. */
  secrets: string[];
}

function managementCall(context: CloudflareContext, operation: ProviderOperation, method: VendorRequest['method'], path: string, keyId?: string): CloudflareCall {
  const token = context.credential.token;
  return { operation, method, path, keyId, bearer: token, signedWith: 'management token', secrets: [token] };
}

// Some dates may be absent; a present one must parse, because Rotor compares them.
const cloudflareTime = z.string().refine((text) => !Number.isNaN(Date.parse(text)), 'expected a date-time');

const tokenDetailsSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  status: z.string().min(1),
  issued_on: cloudflareTime.nullish(),
  last_used_on: cloudflareTime.nullish(),
});

const createdTokenSchema = z.object({
  id: z.string().min(1),
  value: z.string().min(1),
  issued_on: cloudflareTime.nullish(),
});

const verifiedTokenSchema = z.object({
  id: z.string().min(1),
  status: z.string().min(1),
});

// DELETE returns the id, or a null result.
const deletedTokenSchema = z.object({ id: z.string().min(1) }).nullish();

const cloudflareErrorSchema = z.object({ code: z.number(), message: z.string() });

const failureEnvelopeSchema = z.object({
  success: z.boolean(),
  errors: z.array(cloudflareErrorSchema).nullish(),
});

const resultInfoSchema = z.object({
  page: z.number(),
  per_page: z.number(),
  total_pages: z.number().optional(),
});

type CloudflareError = z.infer<typeof cloudflareErrorSchema>;

async function callCloudflare<T>(context: CloudflareContext, call: CloudflareCall, resultSchema: z.ZodType<T>, options: { body?: string } = {}): Promise<T> {
  return (await callCloudflareWithInfo(context, call, resultSchema, options)).result;
}

/**
 * Sends one request and returns the envelope's result, parsed. Throws a ProviderError for a
 * rejected request, whether Cloudflare reports it in the HTTP status or with success: false.
 */
async function callCloudflareWithInfo<T>(
  context: CloudflareContext,
  call: CloudflareCall,
  resultSchema: z.ZodType<T>,
  options: { body?: string } = {},
): Promise<{ result: T; resultInfo?: z.infer<typeof resultInfoSchema> }> {
  const headers: Record<string, string> = { Authorization: `Bearer ${call.bearer}`, Accept: 'application/json' };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method: call.method,
      url: `${context.config.base_url.replace(/\/+$/, '')}${call.path}`,
      headers,
      body: options.body,
      signal: context.signal,
    });
  } catch (error) {
    throw adaptSharedFailure(error, call);
  }

  const failure = failureEnvelopeSchema.safeParse(response.json);
  const failed = response.status >= 400 || (failure.success && !failure.data.success);
  if (failed) {
    const errors = failure.success ? (failure.data.errors ?? []) : [];
    throw cloudflareFailure(call, response, errors);
  }

  const envelope = parseResponse(
    z.object({ success: z.literal(true), result: resultSchema, result_info: resultInfoSchema.nullish() }),
    response.json,
    call,
  );
  return { result: envelope.result, resultInfo: envelope.result_info ?? undefined };
}

/**
 * Adapts a failure of the shared HTTP helper: a 429 gets jitter on its Retry-After delay, and
 * 401 and 403 get a message that names the token and what to check. The helper does not pass on
 * the body of 401 and 403 responses, so Cloudflare's error code (1000 invalid token, 9109 IP
 * filter, 10000 missing permission) cannot be distinguished here.
 */
function adaptSharedFailure(error: unknown, call: CloudflareCall): unknown {
  if (error instanceof ProviderError && error.kind === 'rate-limited') {
    return rateLimitedError(call, error.details.retryAfterMs ?? DEFAULT_RATE_LIMIT_DELAY_MS, error.details.vendorCode ?? 'HTTP 429');
  }
  if (!(error instanceof ProviderError) || (error.kind !== 'authentication' && error.kind !== 'permission')) {
    return error;
  }
  const status = error.details.vendorCode ?? error.kind;
  const details = { ...error.details, provider: PROVIDER_NAME, operation: call.operation };
  if (call.signedWith === 'new token') {
    return new ProviderError('authentication', newTokenRejectedMessage(call, status), details);
  }
  if (error.kind === 'authentication') {
    return new ProviderError('authentication', managementTokenRejectedMessage(call, status), details);
  }
  return new ProviderError(
    'permission',
    `Cloudflare denied ${call.method} ${pathOnly(call)} to the management token (${status}). The token needs the user permission ` +
      "API Tokens Write, and an IP filter on it must include this worker's address.",
    details,
  );
}

/** Maps a rejected request whose status the shared helper passed through: 4xx other than 401, 403 and 429, or success: false. */
function cloudflareFailure(call: CloudflareCall, response: VendorResponse, errors: CloudflareError[]): ProviderError {
  const codes = new Set(errors.map((error) => error.code));
  const vendorText = describeErrors(errors, call.secrets, response.status);
  const vendorCode = errors.length > 0 ? errors.map((error) => error.code).join(',') : `HTTP ${response.status}`;
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode };
  const kind = classifyFailure(call, response.status, codes, errors);

  switch (kind) {
    case 'rate-limited':
      return rateLimitedError(call, DEFAULT_RATE_LIMIT_DELAY_MS, vendorCode);
    case 'authentication':
      return new ProviderError(
        'authentication',
        call.signedWith === 'new token' ? newTokenRejectedMessage(call, vendorText) : managementTokenRejectedMessage(call, vendorText),
        details,
      );
    case 'permission':
      return new ProviderError(
        'permission',
        `Cloudflare does not accept the management token from this worker's address for ${call.method} ${pathOnly(call)}: ${vendorText}. ` +
          "Add the worker's address to the token's IP filter in the Cloudflare dashboard.",
        details,
      );
    case 'not-found':
      return new ProviderError('not-found', `Cloudflare found no ${call.keyId ? `API token ${call.keyId}` : 'such object'} for ${call.operation}: ${vendorText}.`, details);
    case 'limit-reached':
      return new ProviderError(
        'limit-reached',
        `The Cloudflare user already has the maximum of ${MAX_TOKENS_PER_USER} API tokens: ${vendorText}. ` +
          'Delete tokens it no longer uses, then start the rotation again.',
        details,
      );
    case 'invalid-config':
      return new ProviderError(
        'invalid-config',
        `Cloudflare rejected ${call.method} ${pathOnly(call)} as invalid: ${vendorText}. Check the integration's policies and restrictions.`,
        details,
      );
    case 'transient':
      return new ProviderError('transient', `Cloudflare ${call.method} ${pathOnly(call)} failed: ${vendorText}. Rotor retries it.`, details);
  }
}

function classifyFailure(call: CloudflareCall, status: number, codes: Set<number>, errors: CloudflareError[]): ProviderErrorKind {
  if (codes.has(RATE_LIMIT_ERROR_CODE)) {
    return 'rate-limited';
  }
  if (codes.has(LOCATION_ERROR_CODE)) {
    // A new token rejected from here is not accepted yet, but the management token's IP filter is a setup problem.
    return call.signedWith === 'new token' ? 'authentication' : 'permission';
  }
  if ([...codes].some((code) => AUTHENTICATION_ERROR_CODES.has(code))) {
    return 'authentication';
  }
  if (status === 404 || [...codes].some((code) => NOT_FOUND_ERROR_CODES.has(code))) {
    return 'not-found';
  }
  // NOTE: Cloudflare documents the 50-token quota but not the error code of a create past it,
  // so the message is matched.
  if (call.operation === 'createKey' && errors.some((error) => /quota|maximum number of/i.test(error.message))) {
    return 'limit-reached';
  }
  if (status >= 400) {
    return 'invalid-config';
  }
  // success: false inside a 2xx response, with no error code Rotor recognizes.
  return 'transient';
}

/** Creates the rate-limited error with Cloudflare's delay plus jitter, so throttled rotations spread out. */
function rateLimitedError(call: CloudflareCall, vendorDelayMs: number, vendorCode: string): ProviderError {
  const retryAfterMs = vendorDelayMs + Math.round(Math.random() * RATE_LIMIT_JITTER_MAX_MS);
  return new ProviderError(
    'rate-limited',
    `Cloudflare rate-limited ${call.method} ${pathOnly(call)} (${vendorCode}); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`,
    { provider: PROVIDER_NAME, operation: call.operation, vendorCode, retryAfterMs },
  );
}

function managementTokenRejectedMessage(call: CloudflareCall, reason: string): string {
  return (
    `Cloudflare rejected the management token during ${call.operation} (${call.method} ${pathOnly(call)}): ${reason}. ` +
    "Check the token at the integration's management credential path in Vault: it must be an active user API token."
  );
}

function newTokenRejectedMessage(call: CloudflareCall, reason: string): string {
  return (
    `Cloudflare did not accept the new API token ${call.keyId ?? ''} (${reason}). A new token usually works at once. ` +
    "If its ip_allowlist excludes this worker's address, Cloudflare rejects it from here and verification cannot succeed."
  );
}

function pathOnly(call: CloudflareCall): string {
  return call.path.split('?')[0];
}

/** Formats Cloudflare's errors as "1000 Invalid API Token", without secret values, on one line. */
function describeErrors(errors: CloudflareError[], secrets: string[], status: number): string {
  if (errors.length === 0) {
    return `HTTP ${status}`;
  }
  let text = errors.map((error) => `${error.code} ${error.message}`).join('; ');
  for (const secret of secrets) {
    if (secret !== '') {
      text = text.split(secret).join('[redacted]');
    }
  }
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/**
 * Parses a successful response. The error names the operation and the path of the first bad
 * field, never its value, because the response to a create contains the new token.
 */
function parseResponse<T>(schema: z.ZodType<T>, body: unknown, call: CloudflareCall): T {
  const result = schema.safeParse(body);
  if (result.success) {
    return result.data;
  }

  const issue = result.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(body, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `Cloudflare returned an unexpected response to ${call.operation} (${call.method} ${pathOnly(call)}): ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

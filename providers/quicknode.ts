import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { ProviderError, type CreateKeyRequest, type CreatedKey, type Provider, type ProviderContext, type ProviderKey } from './contract';
import { formatPath, valueAtPath } from './responses';
import { sendVendorRequest, type VendorRequest, type VendorResponse } from './http';

/**
 * The QuickNode provider keeps one authentication token of a QuickNode endpoint fresh. An
 * endpoint may have several tokens at once, so the new token and the old one both work during
 * grace. Tokens are managed with QuickNode's Admin API (header x-api-key), and a new token is
 * verified with a JSON-RPC call to the endpoint itself.
 *
 * Admin API reference: https://www.quicknode.com/docs/admin-api/endpoint-security/v0-endpoints-id-security-tokens
 * and https://www.quicknode.com/docs/admin-api/endpoints/v0-endpoints-id-security. Every Admin
 * API response is the envelope `{ data, error }`.
 */

const PROVIDER_NAME = 'quicknode';
const DEFAULT_BASE_URL = 'https://api.quicknode.com/v0';
const DEFAULT_VERIFY_METHOD = 'eth_blockNumber';

// QuickNode does not document a delay for its 429 responses. Its Admin API limit is a token bucket
// that refills at 3 or more requests per second on every plan, so one second frees at least 3
// requests. An estimate, used when a 429 has no Retry-After header.
const DEFAULT_RATE_LIMIT_DELAY_MS = 1_000;

// Rotations throttled together would retry together and collide again, so each waits a random
// extra time up to this.
const RATE_LIMIT_JITTER_MAX_MS = 1_000;

// JSON-RPC 2.0 error code for a method the node does not offer.
const METHOD_NOT_FOUND_CODE = -32601;

// Longest QuickNode error text Rotor copies into a message.
const MAX_VENDOR_TEXT_LENGTH = 300;

// ---------------------------------------------------------------------------------------------
// Config, credential and secret
// ---------------------------------------------------------------------------------------------

const httpUrl = (example: string) =>
  z
    .url({ protocol: /^https?$/, message: `expected an http or https URL such as ${example}` })
    .refine((text) => {
      const url = new URL(text);
      return url.search === '' && url.hash === '' && url.username === '' && url.password === '';
    }, 'expected a URL without query string, fragment, user name or password');

export const quicknodeConfigSchema = z
  .object({
    base_url: httpUrl(DEFAULT_BASE_URL)
      .default(DEFAULT_BASE_URL)
      .describe(`QuickNode Admin API base URL, including /v0 (default ${DEFAULT_BASE_URL}); tests point it at a local emulator`),
    endpoint_id: z
      .union([z.number().int().nonnegative(), z.string().regex(/^[A-Za-z0-9_-]+$/, 'expected a QuickNode endpoint id of letters, digits, - and _')])
      .transform((id) => String(id))
      .describe('Id of the QuickNode endpoint whose token Rotor keeps fresh, as GET /v0/endpoints lists it'),
    rpc_url: httpUrl('https://example-name.quiknode.pro').describe(
      "The endpoint's HTTP URL without its token, such as https://example-name.quiknode.pro; consumers get <rpc_url>/<token>/",
    ),
    rpc_path: z
      .string()
      .regex(/^[A-Za-z0-9._~/-]*$/, 'expected a URL path such as ext/bc/C/rpc')
      .transform((path) => path.replace(/^\/+|\/+$/g, ''))
      .default('')
      .describe('Path that follows the token in the endpoint URL, for endpoints whose URL continues after it (default: none)'),
    verify_method: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_.]*$/, 'expected a JSON-RPC method name such as eth_blockNumber or getSlot')
      .default(DEFAULT_VERIFY_METHOD)
      .describe(`JSON-RPC method, called without parameters, that verifies a new token (default ${DEFAULT_VERIFY_METHOD}; getSlot for Solana)`),
  })
  .strict();

export type QuicknodeConfig = z.infer<typeof quicknodeConfigSchema>;

/** The management credential Rotor reads from Vault: a QuickNode API key with Admin API access. */
export const quicknodeCredentialSchema = z.object({
  api_key: z.string().min(1).describe('QuickNode API key with Admin API access, sent as the x-api-key header'),
});

export type QuicknodeCredential = z.infer<typeof quicknodeCredentialSchema>;

/** The secret consumers read from Vault: the token and the endpoint URL that contains it. */
export const quicknodeSecretSchema = z.object({
  token_id: z.string().min(1).describe('Id of the authentication token in the Admin API'),
  token: z.string().min(1).describe('The authentication token, the path segment after the host or the x-token header'),
  endpoint_url: z.string().min(1).describe('The endpoint URL with the token, such as https://example-name.quiknode.pro/<token>/'),
});

type QuicknodeContext = ProviderContext<QuicknodeConfig, QuicknodeCredential>;

const HELP = `Rotates one authentication token of a QuickNode endpoint with QuickNode's Admin API. Each
rotation adds a token to the endpoint, verifies it with a JSON-RPC call, and deletes the old token
after grace. Both tokens work during grace, because an endpoint accepts every token it lists.

Config:
  base_url       Admin API base URL, including /v0 (default ${DEFAULT_BASE_URL}).
  endpoint_id    Id of the endpoint whose token Rotor keeps fresh, as GET /v0/endpoints lists it.
  rpc_url        The endpoint's HTTP URL without its token, such as https://example-name.quiknode.pro.
  rpc_path       Path that follows the token in the endpoint URL, for endpoints whose URL continues
                 after it (default: none).
  verify_method  JSON-RPC method, called without parameters, that verifies a new token
                 (default ${DEFAULT_VERIFY_METHOD}; use getSlot for Solana endpoints).

Management credential (stored in Vault): api_key, a QuickNode API key with Admin API access
(dashboard: avatar menu > API Keys). The Admin API is available on paid plans only.

Consumers read token_id, token and endpoint_url (<rpc_url>/<token>/<rpc_path>) from the
integration's Vault path. QuickNode also accepts the token in an x-token header.

Restrictions:
  ip_allowlist   Not applied per token. QuickNode's IP allowlist belongs to the endpoint and binds
                 every token of it, the old one included, and Rotor does not change it: adding
                 entries would widen access for all tokens, and enabling it could cut off
                 consumers the rotation knows nothing about. Maintain the allowlist in the
                 endpoint's Security settings. When the integration lists ip_allowlist, each
                 create compares it with the endpoint's allowlist and logs a warning when the
                 endpoint admits addresses outside it. The worker's own address must be on an
                 enabled allowlist, or verification fails.
  scopes         Not applied: QuickNode tokens have no scopes. Method allowlists are endpoint-wide too.
  expires_after  Not applied: QuickNode tokens do not expire.

Labels: QuickNode tokens have no name or note, so listKeys reports no rotation label.
Rotor rejects an endpoint with token authentication disabled, because such an endpoint accepts
requests without any token. It never deletes an endpoint's only token.
Limits: QuickNode documents no maximum number of tokens per endpoint. The Admin API allows 20
requests per second with bursts of 60 on the Build plan, shared with the Streams, Webhooks,
Key-Value Store and SQL Explorer APIs; Rotor's default is 5 per second.`;

/** The QuickNode provider plugin. */
export const quicknodeProvider: Provider<QuicknodeConfig, QuicknodeCredential> = {
  name: PROVIDER_NAME,
  summary: 'QuickNode endpoint authentication tokens (Admin API create / delete, verified with a JSON-RPC call)',
  help: HELP,
  configSchema: quicknodeConfigSchema,
  credentialSchema: quicknodeCredentialSchema,
  secretSchema: quicknodeSecretSchema,
  capabilities: {
    // The IP allowlist, method allowlist and everything else in an endpoint's security settings
    // apply to every token of the endpoint. A token itself has only an id and a value.
    ipAllowlist: false,
    scopes: false,
    expiry: false,
    usageData: false,
    // The Admin API allows 3 requests per second on the Free plan and 20 on Build, the smallest
    // paid plan, with all five platform APIs drawing on one bucket
    // (https://www.quicknode.com/docs/platform/platform-api-rate-limits). The Admin API needs a
    // paid plan, and Rotor takes a quarter of Build's rate to leave room for other clients.
    defaultRateLimitPerSecond: 5,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
};

/** Lists the endpoint's authentication tokens. QuickNode stores no label, creation time or last use for them. */
async function listKeys(context: QuicknodeContext): Promise<ProviderKey[]> {
  const security = await readEndpointSecurity(context, 'listKeys');
  context.logger.debug({ provider: PROVIDER_NAME, endpointId: context.config.endpoint_id, tokenCount: security.tokens.length }, 'Listed QuickNode endpoint tokens');
  return security.tokens.map((token) => ({ keyId: token.id, status: 'active' }));
}

/**
 * Adds an authentication token to the endpoint. Rejects an endpoint with token authentication
 * disabled, and compares a requested IP allowlist with the endpoint's own, which binds every token.
 */
async function createKey(context: QuicknodeContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const endpointId = context.config.endpoint_id;

  const security = await readEndpointSecurity(context, 'createKey');
  requireTokenAuthentication(context, security, 'createKey');
  reportUnappliedRestrictions(context, request, security);

  // NOTE: QuickNode tokens carry no label, and the POST takes no idempotency key. If its
  // response is lost, the token stays on the endpoint, and no later step can tell it from a
  // token made by hand. Delete such a token in the endpoint's Security settings.
  const call: AdminCall = { operation: 'createKey', method: 'POST', path: `/endpoints/${encodeURIComponent(endpointId)}/security/tokens` };
  const created = await callAdminApi(context, call, createdTokenSchema);
  context.logger.info({ provider: PROVIDER_NAME, endpointId, keyId: created.id, label: request.label }, 'Created QuickNode endpoint token');

  return {
    keyId: created.id,
    // QuickNode returns no creation time, and the token exists from this moment.
    createdAt: new Date().toISOString(),
    secret: { token_id: created.id, token: created.token, endpoint_url: endpointUrl(context.config, created.token) },
  };
}

/**
 * Calls the configured JSON-RPC method with the new token, then checks with the Admin API that
 * the endpoint lists this token id with this value. Throws 'authentication' while QuickNode
 * does not accept the token.
 */
async function verifyKey(context: QuicknodeContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const endpointId = context.config.endpoint_id;

  const parsedSecret = quicknodeSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for QuickNode token ${keyId} of endpoint ${endpointId} is missing or has invalid fields: ${fields}. Expected token_id, token and endpoint_url.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newToken = parsedSecret.data;
  if (newToken.token_id !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains QuickNode token ${newToken.token_id}, not ${keyId}, for endpoint ${endpointId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  await callRpc(context, keyId, newToken.token);

  // With token authentication off, the endpoint accepts requests with any token, so the call
  // above proves nothing until the Admin API confirms the token.
  const security = await readEndpointSecurity(context, 'verifyKey').catch((error: unknown) => {
    // Verification retries 'authentication' as a new token not accepted yet, but this failure
    // concerns the management key, and retrying cannot fix it.
    if (error instanceof ProviderError && error.kind === 'authentication') {
      throw new ProviderError('invalid-config', error.message, error.details);
    }
    throw error;
  });
  requireTokenAuthentication(context, security, 'verifyKey');
  const listed = security.tokens.find((token) => token.id === keyId);
  if (!listed) {
    throw new ProviderError(
      'authentication',
      `QuickNode endpoint ${endpointId} does not list token ${keyId}, although the endpoint accepted a call with it. Rotor retries until the token appears.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'TokenNotListed' },
    );
  }
  if (listed.token !== newToken.token) {
    throw new ProviderError(
      'invalid-config',
      `QuickNode endpoint ${endpointId} lists token ${keyId} with a value other than the staged one. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'TokenMismatch' },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, endpointId, keyId, method: context.config.verify_method }, 'Verified QuickNode endpoint token');
}

/**
 * Deletes a token of the endpoint. A token the endpoint does not list counts as revoked. Rejects
 * deleting the endpoint's only token, because every consumer would lose access at once.
 */
async function revokeKey(context: QuicknodeContext, keyId: string): Promise<void> {
  const endpointId = context.config.endpoint_id;

  // QuickNode documents no response for deleting a token that does not exist, so the list decides.
  const security = await readEndpointSecurity(context, 'revokeKey');
  if (!security.tokens.some((token) => token.id === keyId)) {
    context.logger.info({ provider: PROVIDER_NAME, endpointId, keyId }, 'QuickNode endpoint does not list the token, so it counts as revoked');
    return;
  }
  if (security.tokens.length === 1) {
    throw new ProviderError(
      'invalid-config',
      `Token ${keyId} is the only authentication token of QuickNode endpoint ${endpointId}, and deleting it would cut off every consumer. ` +
        'Rotor revokes an old token only after its successor exists; check that nobody deleted the new token by hand.',
      { provider: PROVIDER_NAME, operation: 'revokeKey' },
    );
  }

  const call: AdminCall = {
    operation: 'revokeKey',
    method: 'DELETE',
    path: `/endpoints/${encodeURIComponent(endpointId)}/security/tokens/${encodeURIComponent(keyId)}`,
    keyId,
  };
  let deleted: boolean;
  try {
    deleted = await callAdminApi(context, call, z.boolean());
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, endpointId, keyId }, 'QuickNode endpoint token was already deleted');
      return;
    }
    throw error;
  }
  if (!deleted) {
    throw new ProviderError('transient', `QuickNode returned false for deleting token ${keyId} of endpoint ${endpointId}. Rotor retries it.`, {
      provider: PROVIDER_NAME,
      operation: 'revokeKey',
      vendorCode: 'NotDeleted',
    });
  }
  context.logger.info({ provider: PROVIDER_NAME, endpointId, keyId }, 'Deleted QuickNode endpoint token');
}

/** Returns the token id of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.token_id;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function readEndpointSecurity(context: QuicknodeContext, operation: ProviderOperation): Promise<EndpointSecurity> {
  const call: AdminCall = { operation, method: 'GET', path: `/endpoints/${encodeURIComponent(context.config.endpoint_id)}/security` };
  return callAdminApi(context, call, endpointSecuritySchema);
}

function requireTokenAuthentication(context: QuicknodeContext, security: EndpointSecurity, operation: ProviderOperation): void {
  // Only an explicit false counts: QuickNode's schema lets the option be null.
  if (security.options.tokens === false) {
    throw new ProviderError(
      'invalid-config',
      `Token authentication is disabled on QuickNode endpoint ${context.config.endpoint_id}, so the endpoint accepts requests without any token ` +
        "and rotating tokens protects nothing. Enable Token Authentication in the endpoint's Security settings, then start the rotation again.",
      { provider: PROVIDER_NAME, operation, vendorCode: 'TokenAuthenticationDisabled' },
    );
  }
}

/** Logs the restrictions QuickNode cannot apply to one token, and how the endpoint's IP allowlist compares with the requested one. */
function reportUnappliedRestrictions(context: QuicknodeContext, request: CreateKeyRequest, security: EndpointSecurity): void {
  const endpointId = context.config.endpoint_id;
  const requested = request.restrictions.ipAllowlist ?? [];

  if (requested.length > 0) {
    const endpointEntries = security.ips.map((entry) => entry.ip);
    const wider = endpointEntries.filter((entry) => !insideAny(entry, requested));
    if (security.options.ips !== true) {
      context.logger.warn(
        { provider: PROVIDER_NAME, endpointId, requested },
        "QuickNode endpoint has no IP allowlist enabled, so restrictions.ip_allowlist does not bind the new token; enable it in the endpoint's Security settings",
      );
    } else if (wider.length > 0) {
      context.logger.warn(
        { provider: PROVIDER_NAME, endpointId, requested, wider },
        "QuickNode endpoint's IP allowlist admits addresses outside restrictions.ip_allowlist, and it binds every token of the endpoint",
      );
    } else {
      context.logger.info({ provider: PROVIDER_NAME, endpointId, endpointEntries }, "QuickNode endpoint's IP allowlist keeps every token within restrictions.ip_allowlist");
    }
  }
  if ((request.restrictions.scopes ?? []).length > 0) {
    context.logger.warn({ provider: PROVIDER_NAME, endpointId, scopes: request.restrictions.scopes }, 'QuickNode tokens have no scopes; restrictions.scopes is not applied');
  }
  if (request.restrictions.expiresAt !== undefined) {
    context.logger.warn(
      { provider: PROVIDER_NAME, endpointId, expiresAt: request.restrictions.expiresAt },
      'QuickNode tokens do not expire; restrictions.expires_after is not applied',
    );
  }
}

/** Returns true when the address or block lies inside one of the CIDRs. An entry Rotor cannot parse counts as outside. */
export function insideAny(entry: string, cidrs: string[]): boolean {
  const block = parseBlock(entry);
  if (!block) {
    return false;
  }
  return cidrs.some((cidr) => {
    const outer = parseBlock(cidr);
    return outer !== undefined && outer[0].kind() === block[0].kind() && block[1] >= outer[1] && block[0].match(outer[0], outer[1]);
  });
}

function parseBlock(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined {
  try {
    if (text.includes('/')) {
      return ipaddr.parseCIDR(text);
    }
    const address = ipaddr.parse(text);
    return [address, address.kind() === 'ipv4' ? 32 : 128];
  } catch {
    return undefined;
  }
}

/** Builds the URL consumers call: <rpc_url>/<token>/ and then rpc_path, with the trailing slash QuickNode requires. */
function endpointUrl(config: QuicknodeConfig, token: string): string {
  return `${config.rpc_url.replace(/\/+$/, '')}/${encodeURIComponent(token)}/${config.rpc_path}`;
}

// ---------------------------------------------------------------------------------------------
// Admin API requests and responses
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey';

/** One Admin API request and what the error messages need to know about it. */
interface AdminCall {
  operation: ProviderOperation;
  method: VendorRequest['method'];
  /** Path below base_url. */
  path: string;
  keyId?: string;
}

const endpointTokenSchema = z.object({ id: z.string().min(1), token: z.string().min(1) });

const endpointSecuritySchema = z.object({
  options: z.object({
    tokens: z.boolean().nullish(),
    ips: z.boolean().nullish(),
  }),
  tokens: z.array(endpointTokenSchema),
  ips: z.array(z.object({ id: z.string().min(1), ip: z.string().min(1) })).nullish().transform((ips) => ips ?? []),
});

type EndpointSecurity = z.infer<typeof endpointSecuritySchema>;

const createdTokenSchema = endpointTokenSchema;

const errorEnvelopeSchema = z.object({ error: z.string().nullish() });

/**
 * Sends one Admin API request and returns the envelope's data, parsed. Throws a ProviderError
 * for a rejected request, whether QuickNode reports it in the HTTP status or in `error`.
 */
async function callAdminApi<T>(context: QuicknodeContext, call: AdminCall, dataSchema: z.ZodType<T>): Promise<T> {
  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method: call.method,
      url: `${context.config.base_url.replace(/\/+$/, '')}${call.path}`,
      headers: { 'x-api-key': context.credential.api_key, Accept: 'application/json' },
      signal: context.signal,
      defaultRetryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS,
      describeError: (status, json) => adminFailure(context, call, status, json),
    });
  } catch (error) {
    throw withJitter(error, `${call.method} ${call.path}`);
  }

  // QuickNode reports some failures in `error` of a 2xx response.
  const envelope = errorEnvelopeSchema.safeParse(response.json);
  if (envelope.success && envelope.data.error) {
    throw new ProviderError(
      'transient',
      `QuickNode reported an error for ${call.method} ${call.path}: ${vendorText(context, envelope.data.error)}. Rotor retries it.`,
      { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${response.status}` },
    );
  }

  const parsed = parseResponse(z.object({ data: dataSchema }), response.json, call.operation, `${call.method} ${call.path}`);
  return parsed.data;
}

/**
 * Maps an Admin API error status to a ProviderError with QuickNode's error text. Returns
 * undefined for 429 and 5xx, which the shared helper maps (429 with its Retry-After).
 */
function adminFailure(context: QuicknodeContext, call: AdminCall, status: number, json: unknown): ProviderError | undefined {
  if (status === 429 || status >= 500) {
    return undefined;
  }
  const envelope = errorEnvelopeSchema.safeParse(json);
  const reason = envelope.success && envelope.data.error ? `HTTP ${status} ${vendorText(context, envelope.data.error)}` : `HTTP ${status}`;
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${status}` };
  const target = `${call.method} ${call.path}`;
  const endpointId = context.config.endpoint_id;

  if (status === 401) {
    return new ProviderError(
      'authentication',
      `QuickNode rejected the Admin API key during ${call.operation} (${target}): ${reason}. ` +
        "Check api_key at the integration's management credential path in Vault: it must be an active QuickNode API key with Admin API access.",
      details,
    );
  }
  if (status === 403) {
    return new ProviderError(
      'permission',
      `QuickNode denied ${target} to the Admin API key: ${reason}. The key needs Admin API access to endpoint ${endpointId}, and the account a paid plan.`,
      details,
    );
  }
  if (status === 404) {
    const missing = call.keyId ? `token ${call.keyId} on endpoint ${endpointId}` : `endpoint ${endpointId}`;
    return new ProviderError('not-found', `QuickNode found no ${missing} for ${call.operation} (${target}): ${reason}. Check config.endpoint_id.`, details);
  }
  // NOTE: QuickNode documents no maximum number of tokens per endpoint and no error for one, so
  // a rejected create whose text names a limit is taken as one.
  if (call.operation === 'createKey' && envelope.success && /limit|maximum|too many tokens/i.test(envelope.data.error ?? '')) {
    return new ProviderError(
      'limit-reached',
      `QuickNode endpoint ${endpointId} cannot take another token: ${reason}. Delete tokens nobody uses in the endpoint's Security settings, then start the rotation again.`,
      details,
    );
  }
  return new ProviderError('invalid-config', `QuickNode rejected ${target} as invalid: ${reason}. Check the integration's QuickNode config.`, details);
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC verification call
// ---------------------------------------------------------------------------------------------

const jsonRpcResponseSchema = z.object({
  jsonrpc: z.literal('2.0'),
  result: z.unknown().optional(),
  error: z.object({ code: z.number(), message: z.string() }).optional(),
});

/**
 * Calls verify_method with the token in the x-token header, which QuickNode accepts in place of
 * the token in the URL path. The token thus never enters a URL, which error messages show.
 */
async function callRpc(context: QuicknodeContext, keyId: string, token: string): Promise<void> {
  const { config } = context;
  const url = config.rpc_path === '' ? config.rpc_url : `${config.rpc_url.replace(/\/+$/, '')}/${config.rpc_path}`;
  const target = `POST ${new URL(url).pathname}`;

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: 'verifyKey',
      method: 'POST',
      url,
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'x-token': token },
      body: JSON.stringify({ jsonrpc: '2.0', method: config.verify_method, params: [], id: 1 }),
      signal: context.signal,
      defaultRetryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS,
      describeError: (status) => rpcFailure(context, keyId, status),
    });
  } catch (error) {
    throw withJitter(error, target);
  }

  const reply = parseResponse(jsonRpcResponseSchema, response.json, 'verifyKey', target);
  if (reply.error) {
    throw rpcError(context, reply.error, token);
  }
  if (!('result' in (response.json as object))) {
    throw new ProviderError('transient', `QuickNode returned an unexpected response to verifyKey (${target}): missing result`, {
      provider: PROVIDER_NAME,
      operation: 'verifyKey',
      vendorCode: 'UnexpectedResponse',
    });
  }
}

/**
 * Maps an error status of the endpoint. QuickNode returns 401 when a security requirement is not
 * met (an unknown token, an address missing from the IP allowlist, an invalid JWT) and 403 when
 * the endpoint is disabled (https://quicknode.com/docs/stacks/error-references).
 */
function rpcFailure(context: QuicknodeContext, keyId: string, status: number): ProviderError | undefined {
  const details = { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: `HTTP ${status}` };
  const endpointId = context.config.endpoint_id;
  if (status === 401) {
    return new ProviderError(
      'authentication',
      `QuickNode endpoint ${endpointId} did not accept the new token ${keyId} (HTTP 401). A new token usually works at once. ` +
        "QuickNode also returns 401 when the endpoint's IP allowlist excludes the caller, and then verification cannot succeed from this worker.",
      details,
    );
  }
  if (status === 403) {
    return new ProviderError(
      'permission',
      `QuickNode endpoint ${endpointId} returned HTTP 403: the endpoint is disabled, such as for a past-due payment. Re-enable it in the QuickNode dashboard.`,
      details,
    );
  }
  if (status === 404 || status === 405) {
    return new ProviderError(
      'invalid-config',
      `QuickNode endpoint ${endpointId} returned HTTP ${status} for the JSON-RPC call: check config.rpc_url and config.rpc_path against the endpoint's HTTP URL.`,
      details,
    );
  }
  if (status >= 400 && status < 500 && status !== 429) {
    return new ProviderError(
      'invalid-config',
      `QuickNode endpoint ${endpointId} rejected the JSON-RPC call to ${context.config.verify_method} (HTTP ${status}). Check config.verify_method.`,
      details,
    );
  }
  return undefined;
}

function rpcError(context: QuicknodeContext, error: { code: number; message: string }, token: string): ProviderError {
  const text = vendorText(context, `${error.code} ${error.message}`, [token]);
  const details = { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: `JSON-RPC ${error.code}` };
  // QuickNode's documented rate-limit response is a JSON-RPC error with code 429.
  if (error.code === 429) {
    const retryAfterMs = DEFAULT_RATE_LIMIT_DELAY_MS + jitterMs();
    return new ProviderError('rate-limited', `QuickNode rate-limited the JSON-RPC call (${text}); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`, { ...details, retryAfterMs });
  }
  if (error.code === METHOD_NOT_FOUND_CODE) {
    return new ProviderError(
      'invalid-config',
      `QuickNode endpoint ${context.config.endpoint_id} does not offer ${context.config.verify_method} (${text}). Set config.verify_method to a method of this chain that takes no parameters, such as getSlot for Solana.`,
      details,
    );
  }
  return new ProviderError('transient', `QuickNode endpoint ${context.config.endpoint_id} returned an error for the JSON-RPC call: ${text}. Rotor retries it.`, details);
}

// ---------------------------------------------------------------------------------------------
// Shared by both kinds of request
// ---------------------------------------------------------------------------------------------

/** Adds jitter to a rate-limited error's delay, so throttled rotations spread out. Other errors pass unchanged. */
function withJitter(error: unknown, target: string): unknown {
  if (!(error instanceof ProviderError) || error.kind !== 'rate-limited') {
    return error;
  }
  const retryAfterMs = (error.details.retryAfterMs ?? DEFAULT_RATE_LIMIT_DELAY_MS) + jitterMs();
  return new ProviderError('rate-limited', `QuickNode rate-limited ${target} (${error.details.vendorCode ?? 'HTTP 429'}); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`, {
    ...error.details,
    retryAfterMs,
  });
}

function jitterMs(): number {
  return Math.round(Math.random() * RATE_LIMIT_JITTER_MAX_MS);
}

/** Returns QuickNode's error text on one line, shortened, with the management key and any other given secret removed. */
function vendorText(context: QuicknodeContext, text: string, secrets: string[] = []): string {
  let cleaned = text;
  for (const secret of [context.credential.api_key, ...secrets]) {
    if (secret !== '') {
      cleaned = cleaned.split(secret).join('[redacted]');
    }
  }
  cleaned = cleaned.replace(/\s+/g, ' ').trim();
  return cleaned.length > MAX_VENDOR_TEXT_LENGTH ? `${cleaned.slice(0, MAX_VENDOR_TEXT_LENGTH)}…` : cleaned;
}

/**
 * Parses a successful response. The error names the operation and the path of the first bad
 * field, never its value, because these responses contain token values.
 */
function parseResponse<T>(schema: z.ZodType<T>, body: unknown, operation: ProviderOperation, target: string): T {
  const result = schema.safeParse(body);
  if (result.success) {
    return result.data;
  }

  const issue = result.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(body, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `QuickNode returned an unexpected response to ${operation} (${target}): ${problem}`, {
    provider: PROVIDER_NAME,
    operation,
    vendorCode: 'UnexpectedResponse',
  });
}

import crypto from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

/**
 * An in-memory emulator of the part of Cloudflare's v4 API that manages one user's API tokens:
 * list, create, read and delete tokens, and verify a token with GET /user/tokens/verify. It
 * listens on 127.0.0.1 only, under the base path /client/v4 like the real API, and wraps every
 * response in Cloudflare's envelope `{ success, errors, messages, result }`.
 *
 * Rules it enforces, as Cloudflare documents them:
 * - every request needs "Authorization: Bearer <token>" of an active token of the user: unknown,
 *   deleted, disabled, expired or not-yet-valid tokens get 401 with error 1000;
 * - a token's client IP filter (condition "request.ip" with in and not_in CIDRs) is checked
 *   against the caller's address, and a request from any other address gets 403 with error 9109;
 * - listing tokens needs API Tokens Read or Write, and creating or deleting needs Write;
 * - a user may have at most 50 tokens;
 * - past the rate limit, requests get 429 with Retry-After in whole seconds and error 971.
 *
 * Differences from Cloudflare: the rate limit is a token bucket refilled every second, where
 * Cloudflare counts 1200 requests per 5 minutes, in bursts as large as that, and then blocks for
 * 5 minutes. Cloudflare does not document
 * the error for a create past the token quota, nor codes for invalid create requests, so those
 * codes are the emulator's own (see QUOTA_ERROR_CODE and INVALID_REQUEST_CODE).
 */

const HOST = '127.0.0.1';
const BASE_PATH = '/client/v4';

/** Cloudflare's quota of API tokens per user (https://developers.cloudflare.com/fundamentals/api/reference/limits/). */
export const CLOUDFLARE_TOKEN_LIMIT = 50;

/**
 * Permission group ids the emulator recognizes. Zone Read and DNS Read are the ids in Cloudflare's
 * example at https://developers.cloudflare.com/fundamentals/api/how-to/create-via-api/. The two
 * API Tokens groups are the emulator's own ids, because Cloudflare's public docs do not list them.
 */
export const EMULATOR_PERMISSION_GROUPS = {
  apiTokensWrite: '00000000000000000000000000a0e0e1',
  apiTokensRead: '00000000000000000000000000a0e0e2',
  zoneRead: 'c8fed203ed3043cba015a93ad1616f1f',
  dnsRead: '82e64a83756745bbbb1c9c2701bf816b',
} as const;

// The emulator's own error codes, because Cloudflare documents none for these cases.
const QUOTA_ERROR_CODE = 1400;
const INVALID_REQUEST_CODE = 1401;

export interface CloudflareEmulatorOptions {
  /** Requests per second the user may make, refilling a token bucket. Unlimited when absent. */
  rateLimitPerSecond?: number;
  /** Requests the bucket contains when full, which may arrive at once. Default: one second's worth. */
  rateLimitBurst?: number;
  /** API tokens the user may hold. Default 50, Cloudflare's quota. */
  tokenLimit?: number;
}

export interface TokenPolicy {
  id?: string;
  effect: 'allow' | 'deny';
  resources: Record<string, string | Record<string, string>>;
  permission_groups: Array<{ id: string; name?: string; meta?: { key: string; value: string } }>;
}

export interface TokenCondition {
  'request.ip'?: { in?: string[]; not_in?: string[] };
}

/** A token as GET /user/tokens/{id} returns it, without the token's value. */
export interface TokenView {
  id: string;
  name: string;
  status: 'active' | 'disabled' | 'expired';
  issued_on: string;
  modified_on: string;
  last_used_on?: string;
  not_before?: string;
  expires_on?: string;
  policies: TokenPolicy[];
  condition?: TokenCondition;
}

export interface SeedTokenOptions {
  name: string;
  policies?: TokenPolicy[];
  condition?: TokenCondition;
  expiresOn?: string;
  disabled?: boolean;
}

/** An API token as Cloudflare returns it once, at creation. */
export interface EmulatedToken {
  id: string;
  value: string;
}

export interface SeededCloudflareUser {
  /** A token with API Tokens Write: the management credential. */
  managementToken: EmulatedToken;
  /** A DNS Read token: the key consumers use before the first rotation. */
  currentToken: EmulatedToken;
}

/** A canned response to the next request to one endpoint, for tests of malformed responses. */
export interface InjectedResponse {
  method: string;
  /** Path below /client/v4, without the query string, such as /user/tokens. */
  path: string;
  status: number;
  body: unknown;
}

export interface CloudflareEmulator {
  /** Base URL including /client/v4, such as http://127.0.0.1:5123/client/v4. */
  url: string;
  /** The emulated user's id, as user resources name it. */
  userTag: string;
  stop(): Promise<void>;
  /** Creates the management token and a first app token, as a person would in the dashboard. */
  seedAccount(): SeededCloudflareUser;
  seedToken(options: SeedTokenOptions): EmulatedToken;
  /** The stored token, or undefined when it does not exist (any more). */
  token(id: string): TokenView | undefined;
  tokenIds(): string[];
  /** Number of requests that received 429 so far. */
  throttledResponses(): number;
  injectResponse(response: InjectedResponse): void;
  /** Makes the next create store its token and then fail with HTTP 500, as when the response is lost on the way. */
  loseNextCreateResponse(): void;
}

interface StoredToken {
  id: string;
  value: string;
  name: string;
  policies: TokenPolicy[];
  condition?: TokenCondition;
  issuedOn: string;
  modifiedOn: string;
  lastUsedOn?: string;
  notBefore?: string;
  expiresOn?: string;
  disabled: boolean;
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

class RequestRejected extends Error {
  constructor(readonly reply: Reply) {
    super(`HTTP ${reply.status}`);
  }
}

/** Starts the emulator on a free loopback port. */
export async function startCloudflareEmulator(options: CloudflareEmulatorOptions = {}): Promise<CloudflareEmulator> {
  const userTag = randomHex(16);
  const tokenLimit = options.tokenLimit ?? CLOUDFLARE_TOKEN_LIMIT;
  const tokens = new Map<string, StoredToken>();
  const injected: InjectedResponse[] = [];
  const rateLimiter =
    options.rateLimitPerSecond === undefined ? undefined : createRateLimiter(options.rateLimitPerSecond, options.rateLimitBurst ?? options.rateLimitPerSecond);
  let throttled = 0;
  let loseNextCreateResponse = false;

  const storeToken = (fields: Omit<StoredToken, 'id' | 'value' | 'issuedOn' | 'modifiedOn'>): StoredToken => {
    const now = new Date().toISOString();
    const token: StoredToken = {
      ...fields,
      id: randomHex(16),
      // Cloudflare's user API tokens are 40 characters of letters, digits, - and _.
      value: crypto.randomBytes(30).toString('base64url'),
      issuedOn: now,
      modifiedOn: now,
      policies: fields.policies.map((policy) => ({ ...policy, id: randomHex(16) })),
    };
    tokens.set(token.id, token);
    return token;
  };

  const routes = (method: string, path: string, request: ParsedRequest): Reply => {
    if (method === 'GET' && path === '/user/tokens/verify') {
      const caller = authenticate(request);
      const result: Record<string, string> = { id: caller.id, status: statusOf(caller) };
      if (caller.expiresOn) result.expires_on = caller.expiresOn;
      if (caller.notBefore) result.not_before = caller.notBefore;
      return success(result, { messages: [{ code: 10000, message: 'This API Token is valid and active', type: null }] });
    }
    if (path === '/user/tokens' && method === 'GET') {
      requirePermission(authenticate(request), 'read');
      return listTokens(request.query);
    }
    if (path === '/user/tokens' && method === 'POST') {
      requirePermission(authenticate(request), 'write');
      return createToken(request.body);
    }
    const match = /^\/user\/tokens\/([^/]+)$/.exec(path);
    if (match && (method === 'GET' || method === 'DELETE')) {
      requirePermission(authenticate(request), method === 'GET' ? 'read' : 'write');
      const token = tokens.get(match[1]);
      if (!token) {
        throw new RequestRejected(failure(404, 7003, `Could not route to ${BASE_PATH}${path}, perhaps your object identifier is invalid?`));
      }
      if (method === 'GET') {
        return success(viewOf(token));
      }
      tokens.delete(token.id);
      return success({ id: token.id });
    }
    return failure(404, 7000, 'No route for that URI');
  };

  const authenticate = (request: ParsedRequest): StoredToken => {
    const header = request.authorization;
    if (header === undefined) {
      throw new RequestRejected(failure(400, 9106, 'Missing X-Auth-Key, X-Auth-Email or Authorization headers'));
    }
    const bearer = /^Bearer ([A-Za-z0-9_-]+)$/.exec(header);
    if (!bearer) {
      throw new RequestRejected({
        status: 400,
        body: envelope(false, null, [{ code: 6003, message: 'Invalid request headers', error_chain: [{ code: 6111, message: 'Invalid format for Authorization header' }] }]),
      });
    }
    const token = [...tokens.values()].find((candidate) => candidate.value === bearer[1]);
    const notYetValid = token?.notBefore !== undefined && Date.parse(token.notBefore) > Date.now();
    if (!token || statusOf(token) !== 'active' || notYetValid) {
      throw new RequestRejected(failure(401, 1000, 'Invalid API Token'));
    }
    if (!addressAllowed(token.condition, request.remoteAddress)) {
      throw new RequestRejected(failure(403, 9109, `Cannot use the access token from location: ${request.remoteAddress}`));
    }
    token.lastUsedOn = new Date().toISOString();
    return token;
  };

  const listTokens = (query: URLSearchParams): Reply => {
    // Cloudflare's bounds for per_page: 5 to 50, default 20.
    const perPage = Math.min(50, Math.max(5, Number(query.get('per_page') ?? 20) || 20));
    const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
    const all = [...tokens.values()].filter((token) => statusOf(token) !== 'expired');
    const slice = all.slice((page - 1) * perPage, page * perPage);
    return success(slice.map(viewOf), {
      result_info: { page, per_page: perPage, count: slice.length, total_count: all.length, total_pages: Math.max(1, Math.ceil(all.length / perPage)) },
    });
  };

  const createToken = (body: unknown): Reply => {
    const fields = validateCreateBody(body);
    if (tokens.size >= tokenLimit) {
      return failure(400, QUOTA_ERROR_CODE, `You have reached the maximum number of API tokens (${tokenLimit}) for this user`);
    }
    const token = storeToken({ ...fields, disabled: false });
    if (loseNextCreateResponse) {
      loseNextCreateResponse = false;
      return failure(500, 10001, 'Internal server error');
    }
    return success({ ...viewOf(token), value: token.value });
  };

  const server = http.createServer((req, res) => {
    void handle(req).then((reply) => {
      res.writeHead(reply.status, { 'Content-Type': 'application/json', ...reply.headers });
      res.end(JSON.stringify(reply.body));
    });
  });

  const handle = async (req: http.IncomingMessage): Promise<Reply> => {
    try {
      const url = new URL(req.url ?? '/', `http://${HOST}`);
      const method = req.method ?? 'GET';
      const text = await readBody(req);

      const retryAfterSeconds = rateLimiter?.take();
      if (retryAfterSeconds !== undefined) {
        throttled++;
        return { ...failure(429, 971, 'Please wait and consider throttling your request speed'), headers: { 'Retry-After': String(retryAfterSeconds) } };
      }
      if (!url.pathname.startsWith(`${BASE_PATH}/`)) {
        return failure(404, 7000, 'No route for that URI');
      }
      const path = url.pathname.slice(BASE_PATH.length);

      const cannedIndex = injected.findIndex((canned) => canned.method === method && canned.path === path);
      if (cannedIndex >= 0) {
        const [canned] = injected.splice(cannedIndex, 1);
        return { status: canned.status, body: canned.body };
      }

      let body: unknown;
      if (text !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          return failure(400, 6007, 'Malformed JSON in request body');
        }
      }
      const remoteAddress = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      return routes(method, path, { authorization: req.headers.authorization, query: url.searchParams, body, remoteAddress });
    } catch (error) {
      if (error instanceof RequestRejected) {
        return error.reply;
      }
      return failure(500, 10001, `emulator error: ${error instanceof Error ? error.message : String(error)}`);
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${HOST}:${port}${BASE_PATH}`,
    userTag,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    seedAccount: () => {
      const managementToken = storeToken({
        name: 'Rotor management',
        policies: [{ effect: 'allow', resources: { [`com.cloudflare.api.user.${userTag}`]: '*' }, permission_groups: [{ id: EMULATOR_PERMISSION_GROUPS.apiTokensWrite, name: 'API Tokens Write' }] }],
        disabled: false,
      });
      const currentToken = storeToken({ name: 'dns reader', policies: [dnsReadPolicy()], disabled: false });
      return { managementToken: { id: managementToken.id, value: managementToken.value }, currentToken: { id: currentToken.id, value: currentToken.value } };
    },
    seedToken: (seed) => {
      const token = storeToken({ name: seed.name, policies: seed.policies ?? [dnsReadPolicy()], condition: seed.condition, expiresOn: seed.expiresOn, disabled: seed.disabled ?? false });
      return { id: token.id, value: token.value };
    },
    token: (id) => {
      const token = tokens.get(id);
      return token ? viewOf(token) : undefined;
    },
    tokenIds: () => [...tokens.keys()].sort(),
    throttledResponses: () => throttled,
    injectResponse: (response) => {
      injected.push(response);
    },
    loseNextCreateResponse: () => {
      loseNextCreateResponse = true;
    },
  };
}

/** Returns a policy that grants Zone Read and DNS Read on one made-up zone. */
export function dnsReadPolicy(zoneId = '023e105f4ecef8ad9ca31a8372d0c353'): TokenPolicy {
  return {
    effect: 'allow',
    resources: { [`com.cloudflare.api.account.zone.${zoneId}`]: '*' },
    permission_groups: [
      { id: EMULATOR_PERMISSION_GROUPS.zoneRead, name: 'Zone Read' },
      { id: EMULATOR_PERMISSION_GROUPS.dnsRead, name: 'DNS Read' },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

interface ParsedRequest {
  authorization?: string;
  query: URLSearchParams;
  body: unknown;
  remoteAddress: string;
}

function statusOf(token: StoredToken): TokenView['status'] {
  if (token.disabled) {
    return 'disabled';
  }
  return token.expiresOn !== undefined && Date.parse(token.expiresOn) <= Date.now() ? 'expired' : 'active';
}

function viewOf(token: StoredToken): TokenView {
  const view: TokenView = {
    id: token.id,
    name: token.name,
    status: statusOf(token),
    issued_on: token.issuedOn,
    modified_on: token.modifiedOn,
    policies: token.policies,
  };
  if (token.lastUsedOn) view.last_used_on = token.lastUsedOn;
  if (token.notBefore) view.not_before = token.notBefore;
  if (token.expiresOn) view.expires_on = token.expiresOn;
  if (token.condition) view.condition = token.condition;
  return view;
}

/** Rejects the caller with 403 and error 10000 unless an allow policy grants an API Tokens group and no deny policy takes it away. */
function requirePermission(token: StoredToken, access: 'read' | 'write'): void {
  const groups = access === 'write' ? [EMULATOR_PERMISSION_GROUPS.apiTokensWrite] : [EMULATOR_PERMISSION_GROUPS.apiTokensWrite, EMULATOR_PERMISSION_GROUPS.apiTokensRead];
  const grants = (effect: TokenPolicy['effect']) =>
    token.policies.some((policy) => policy.effect === effect && policy.permission_groups.some((group) => (groups as string[]).includes(group.id)));
  if (!grants('allow') || grants('deny')) {
    throw new RequestRejected(failure(403, 10000, 'Authentication error'));
  }
}

/** Applies the token's client IP filter: the caller must match an `in` CIDR, when any is set, and no `not_in` CIDR. */
function addressAllowed(condition: TokenCondition | undefined, address: string): boolean {
  const filter = condition?.['request.ip'];
  if (!filter) {
    return true;
  }
  const family = net.isIP(address) === 6 ? 'ipv6' : 'ipv4';
  if (filter.in && filter.in.length > 0 && !subnetList(filter.in).check(address, family)) {
    return false;
  }
  return !(filter.not_in && filter.not_in.length > 0 && subnetList(filter.not_in).check(address, family));
}

function subnetList(cidrs: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [address, prefix] = cidr.split('/');
    list.addSubnet(address, Number(prefix), net.isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

/** Checks a create request as Cloudflare's schema describes it and returns the token's fields. */
function validateCreateBody(body: unknown): Omit<StoredToken, 'id' | 'value' | 'issuedOn' | 'modifiedOn' | 'disabled'> {
  const invalid = (message: string): never => {
    throw new RequestRejected(failure(400, INVALID_REQUEST_CODE, message));
  };
  if (!isObject(body)) {
    return invalid('Request body must be a JSON object');
  }
  const { name, policies, condition, expires_on: expiresOn, not_before: notBefore, ...unknownFields } = body;
  if (Object.keys(unknownFields).length > 0) {
    invalid(`Unknown fields: ${Object.keys(unknownFields).join(', ')}`);
  }
  if (typeof name !== 'string' || name.length === 0 || name.length > 120) {
    invalid('name must be a string of 1 to 120 characters');
  }
  if (!Array.isArray(policies) || policies.length === 0) {
    return invalid('policies must be a non-empty list');
  }
  policies.forEach((policy, index) => validatePolicy(policy, `policies[${index}]`, invalid));
  if (condition !== undefined) {
    validateCondition(condition, invalid);
  }
  for (const [field, value] of [['expires_on', expiresOn], ['not_before', notBefore]] as const) {
    if (value !== undefined && (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(value))) {
      invalid(`${field} must be a UTC timestamp such as 2018-07-01T05:20:00Z`);
    }
  }
  if (typeof expiresOn === 'string' && Date.parse(expiresOn) <= Date.now()) {
    invalid('expires_on must be in the future');
  }
  return {
    name: name as string,
    policies: policies as TokenPolicy[],
    condition: condition as TokenCondition | undefined,
    expiresOn: expiresOn as string | undefined,
    notBefore: notBefore as string | undefined,
  };
}

function validatePolicy(policy: unknown, path: string, invalid: (message: string) => never): void {
  if (!isObject(policy)) {
    invalid(`${path} must be an object`);
    return;
  }
  if (policy.effect !== 'allow' && policy.effect !== 'deny') {
    invalid(`${path}.effect must be allow or deny`);
  }
  const resources = policy.resources;
  if (!isObject(resources) || Object.keys(resources).length === 0) {
    invalid(`${path}.resources must name at least one resource`);
  }
  const groups = policy.permission_groups;
  if (!Array.isArray(groups) || groups.length === 0) {
    invalid(`${path}.permission_groups must be a non-empty list`);
    return;
  }
  groups.forEach((group, index) => {
    if (!isObject(group) || typeof group.id !== 'string' || !/^[0-9a-f]{32}$/.test(group.id)) {
      invalid(`${path}.permission_groups[${index}].id must be a permission group id`);
    }
  });
}

function validateCondition(condition: unknown, invalid: (message: string) => never): void {
  if (!isObject(condition)) {
    invalid('condition must be an object');
    return;
  }
  const unknownKeys = Object.keys(condition).filter((key) => key !== 'request.ip');
  if (unknownKeys.length > 0) {
    invalid(`Unknown condition ${unknownKeys.join(', ')}; client IP filters go under "request.ip"`);
  }
  const filter = condition['request.ip'];
  if (!isObject(filter)) {
    invalid('condition["request.ip"] must be an object with in and not_in lists');
    return;
  }
  for (const key of ['in', 'not_in']) {
    const cidrs = filter[key];
    if (cidrs === undefined) {
      continue;
    }
    if (!Array.isArray(cidrs) || !cidrs.every((cidr) => typeof cidr === 'string' && isCidr(cidr))) {
      invalid(`condition["request.ip"].${key} must list addresses in CIDR notation, such as 192.168.0.1/32`);
    }
  }
}

function isCidr(text: string): boolean {
  const [address, prefix, extra] = text.split('/');
  const family = net.isIP(address);
  if (extra !== undefined || family === 0 || !/^\d{1,3}$/.test(prefix ?? '')) {
    return false;
  }
  return Number(prefix) <= (family === 6 ? 128 : 32);
}

function createRateLimiter(perSecond: number, capacity: number) {
  let available = capacity;
  let updatedAt = Date.now();
  return {
    /** Takes one request from the bucket and returns the Retry-After seconds when the bucket is empty. */
    take(): number | undefined {
      const now = Date.now();
      available = Math.min(capacity, available + ((now - updatedAt) / 1000) * perSecond);
      updatedAt = now;
      if (available >= 1) {
        available -= 1;
        return undefined;
      }
      // Cloudflare rounds Retry-After up to whole seconds.
      return Math.max(1, Math.ceil((1 - available) / perSecond));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

function envelope(succeeded: boolean, result: unknown, errors: unknown[] = [], extra: Record<string, unknown> = {}) {
  return { success: succeeded, errors, messages: [], result, ...extra };
}

function success(result: unknown, extra: Record<string, unknown> = {}): Reply {
  return { status: 200, body: envelope(true, result, [], extra) };
}

function failure(status: number, code: number, message: string): Reply {
  return { status, body: envelope(false, null, [{ code, message }]) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function randomHex(bytes: number): string {
  return crypto.randomBytes(bytes).toString('hex');
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * An in-memory emulator of the Gate.io APIv4 endpoints that manage sub-account API keys, for the
 * tests, the demo and the benchmark. It listens on 127.0.0.1 only and enforces the rules of
 * Gate.io's reference:
 * - the KEY, Timestamp and SIGN headers, with a 60-second clock window;
 * - unknown and deleted keys rejected;
 * - IP whitelists of single IPv4 addresses, checked against the caller's address;
 * - 20 keys per account;
 * - the per-endpoint rate limit, rejected with HTTP 429, TOO_MANY_REQUESTS and the
 *   X-Gate-RateLimit headers.
 * Every error is Gate.io's { label, message }.
 *
 * Endpoints, below /api/v4: GET, POST /sub_accounts/{user_id}/keys, GET and DELETE
 * /sub_accounts/{user_id}/keys/{key}, and GET /account/detail.
 *
 * It signs and checks requests with node:crypto directly, so the provider's own signing code is
 * tested against it rather than with it.
 */

const HOST = '127.0.0.1';
const API_PREFIX = '/api/v4';

// "the gap between its value and current time cannot exceed 60 seconds"
const TIMESTAMP_TOLERANCE_MS = 60_000;

// Gate.io's documented limit for sub-account endpoints: 80 requests per 10 seconds per endpoint
// and user ID.
const DEFAULT_RATE_LIMIT = { requests: 80, windowMs: 10_000 };

// "Each account can create 20 API keys."
const DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT = 20;

// "Each key can have at most 20 IPs formatted in IPv4 (not supporting IP range though)."
const MAX_IP_ADDRESSES_PER_KEY = 20;

const PERMISSION_NAMES = ['wallet', 'spot', 'futures', 'delivery', 'earn', 'custody', 'options', 'account', 'loan', 'margin', 'unified', 'copy'];

export interface GateioEmulatorOptions {
  /**
   * Requests per second that each user ID may send to each endpoint. Past it, the emulator
   * returns HTTP 429 as Gate.io does. Default: Gate.io's own 80 requests per 10 seconds.
   */
  rateLimitPerSecond?: number;
  /** API keys one sub-account may hold. Default 20, as Gate.io documents. */
  maxKeysPerSubAccount?: number;
}

/** An API key and its secret, in the shape of the provider's credential and secret. */
export interface GateioKeyPair {
  api_key: string;
  api_secret: string;
}

export interface GateioPermission {
  name: string;
  read_only: boolean;
}

export interface SeedGateioAccountOptions {
  /** Adds the sub-account to this existing main account and returns its management key, instead of a new main account. */
  masterUserId?: string;
  /** IP whitelist of the management key. Default none, which Gate.io accepts from any address. */
  managementIps?: string[];
  /** Seeds a management key whose permissions are all read-only, which cannot create or delete keys. */
  managementReadOnly?: boolean;
  /** IP whitelist of the seeded sub-account key. Default none. */
  currentKeyIps?: string[];
}

export interface SeededGateioAccount {
  masterUserId: string;
  /** The sub-account's user ID, the provider's `user_id`. */
  userId: string;
  /** APIv4 key of the main account, for Vault's management credential path. */
  managementCredential: GateioKeyPair;
  /** The sub-account's first API key, which a rotation replaces. */
  currentKey: GateioKeyPair;
}

/** A key as the emulator stores it, for assertions. Its secret is left out. */
export interface EmulatedGateioKey {
  key: string;
  userId: string;
  name: string;
  perms: GateioPermission[];
  ipWhitelist: string[];
  mode: number;
  state: number;
  createdAt: number;
  /** Unix seconds of the last accepted request signed with the key, or 0 before its first. */
  lastAccess: number;
}

export interface GateioEmulator {
  /** Base URL including /api/v4, such as http://127.0.0.1:41234/api/v4. */
  url: string;
  stop(): Promise<void>;
  /** Creates a main account with a management key and a sub-account with one key. */
  seedAccount(options?: SeedGateioAccountOptions): SeededGateioAccount;
  /** Adds keys to a sub-account without any request, such as to fill it up to its limit. */
  seedSubAccountKeys(userId: string, count: number): string[];
  /** The sub-account's keys, oldest first. */
  keys(userId: string): EmulatedGateioKey[];
  /**
   * Returns this body with HTTP 200 for the next authenticated request to the endpoint. The
   * endpoint is written as in the reference, such as `POST /sub_accounts/{user_id}/keys`.
   */
  replaceNextResponse(endpoint: string, body: unknown): void;
  /** How many requests the emulator rejected with HTTP 429. */
  readonly rateLimitedResponses: number;
}

interface StoredKey extends EmulatedGateioKey {
  secret: string;
  isMaster: boolean;
}

interface Account {
  userId: string;
  /** Main account of a sub-account, or undefined for a main account. */
  masterUserId?: string;
}

/** A Gate.io error response. */
class GateioFailure extends Error {
  constructor(
    readonly status: number,
    readonly label: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

interface RouteContext {
  caller: StoredKey;
  params: Record<string, string>;
  body: unknown;
}

interface Reply {
  status: number;
  body?: unknown;
}

interface Route {
  method: string;
  /** Path below /api/v4 as the reference writes it, such as /sub_accounts/{user_id}/keys. */
  template: string;
  pattern: RegExp;
  handle(route: RouteContext): Reply;
}

export async function startGateioEmulator(options: GateioEmulatorOptions = {}): Promise<GateioEmulator> {
  const accounts = new Map<string, Account>();
  const keys = new Map<string, StoredKey>();
  const requestTimes = new Map<string, number[]>();
  const replacements = new Map<string, unknown>();
  const rateLimit = options.rateLimitPerSecond === undefined ? DEFAULT_RATE_LIMIT : { requests: options.rateLimitPerSecond, windowMs: 1_000 };
  const maxKeys = options.maxKeysPerSubAccount ?? DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT;
  let rateLimitedResponses = 0;

  const routes: Route[] = [
    route('GET', '/sub_accounts/{user_id}/keys', listKeys),
    route('POST', '/sub_accounts/{user_id}/keys', createKey),
    route('GET', '/sub_accounts/{user_id}/keys/{key}', getKey),
    route('DELETE', '/sub_accounts/{user_id}/keys/{key}', deleteKey),
    route('GET', '/account/detail', accountDetail),
  ];

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      respond(request, Buffer.concat(chunks).toString('utf8'), response);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const origin = `http://${HOST}:${(server.address() as AddressInfo).port}`;

  function respond(request: http.IncomingMessage, rawBody: string, response: http.ServerResponse): void {
    const target = new URL(request.url ?? '/', origin);
    let headers: Record<string, string> = {};
    try {
      const matched = matchRoute(request.method ?? '', target.pathname);
      if (!matched) {
        throw new GateioFailure(404, 'NOT_FOUND', 'Request URL not exists');
      }
      const caller = authenticate(request, target, rawBody);
      checkIpWhitelist(caller, request.socket.remoteAddress);
      const endpoint = `${matched.route.method} ${matched.route.template}`;
      headers = consumeRateLimit(caller.userId, endpoint);
      caller.lastAccess = Math.floor(Date.now() / 1000);

      if (replacements.has(endpoint)) {
        const replacement = replacements.get(endpoint);
        replacements.delete(endpoint);
        sendJson(response, 200, headers, replacement);
        return;
      }

      const body = request.method === 'POST' ? parseBody(rawBody) : undefined;
      const reply = matched.route.handle({ caller, params: matched.params, body });
      sendJson(response, reply.status, headers, reply.body);
    } catch (error) {
      if (!(error instanceof GateioFailure)) {
        // A bug in the emulator returns HTTP 500 as a server error would, so the test gets an error response instead of a crash.
        sendJson(response, 500, {}, { label: 'INTERNAL', message: error instanceof Error ? error.message : String(error) });
        return;
      }
      if (error.status === 429) {
        rateLimitedResponses += 1;
      }
      sendJson(response, error.status, { ...headers, ...error.headers }, { label: error.label, message: error.detail });
    }
  }

  function matchRoute(method: string, pathname: string): { route: Route; params: Record<string, string> } | undefined {
    if (!pathname.startsWith(`${API_PREFIX}/`)) {
      return undefined;
    }
    const path = pathname.slice(API_PREFIX.length);
    for (const candidate of routes) {
      const match = candidate.method === method ? candidate.pattern.exec(path) : null;
      if (match) {
        return { route: candidate, params: Object.fromEntries(Object.entries(match.groups ?? {}).map(([name, value]) => [name, decodeURIComponent(value)])) };
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Authentication, rate limit and IP whitelist
  // -------------------------------------------------------------------------------------------

  function authenticate(request: http.IncomingMessage, target: URL, rawBody: string): StoredKey {
    const apiKey = headerValue(request, 'key');
    const timestamp = headerValue(request, 'timestamp');
    const sign = headerValue(request, 'sign');
    if (apiKey === undefined || timestamp === undefined || sign === undefined) {
      throw new GateioFailure(401, 'MISSING_REQUIRED_HEADER', 'Missing required authentication header: KEY, Timestamp and SIGN');
    }

    const sentAtMs = Number(timestamp) * 1000;
    if (!Number.isFinite(sentAtMs) || Math.abs(Date.now() - sentAtMs) > TIMESTAMP_TOLERANCE_MS) {
      throw new GateioFailure(401, 'REQUEST_EXPIRED', `gap between request Timestamp and server time exceeds ${TIMESTAMP_TOLERANCE_MS / 1000}`);
    }

    const caller = keys.get(apiKey);
    if (!caller) {
      throw new GateioFailure(401, 'INVALID_KEY', 'Invalid key provided');
    }

    const query = target.search.replace(/^\?/, '');
    const hashedBody = crypto.createHash('sha512').update(rawBody, 'utf8').digest('hex');
    const signatureString = `${request.method ?? ''}\n${target.pathname}\n${query}\n${hashedBody}\n${timestamp}`;
    const expected = crypto.createHmac('sha512', caller.secret).update(signatureString, 'utf8').digest('hex');
    if (!constantTimeEqual(sign, expected)) {
      throw new GateioFailure(401, 'INVALID_SIGNATURE', 'Signature mismatch');
    }
    return caller;
  }

  function consumeRateLimit(userId: string, endpoint: string): Record<string, string> {
    const now = Date.now();
    const bucket = `${userId} ${endpoint}`;
    const recent = (requestTimes.get(bucket) ?? []).filter((time) => time > now - rateLimit.windowMs);
    if (recent.length >= rateLimit.requests) {
      requestTimes.set(bucket, recent);
      // The window frees a slot when its oldest request leaves it.
      throw new GateioFailure(429, 'TOO_MANY_REQUESTS', 'Request Rate limit Exceeded', {
        'X-Gate-RateLimit-Requests-Remain': '0',
        'X-Gate-RateLimit-Limit': String(rateLimit.requests),
        'X-Gate-RateLimit-Reset-Timestamp': String(recent[0] + rateLimit.windowMs),
      });
    }
    recent.push(now);
    requestTimes.set(bucket, recent);
    // Below the limit, Gate.io sends the current time as the reset timestamp.
    return {
      'X-Gate-RateLimit-Requests-Remain': String(rateLimit.requests - recent.length),
      'X-Gate-RateLimit-Limit': String(rateLimit.requests),
      'X-Gate-RateLimit-Reset-Timestamp': String(now),
    };
  }

  function checkIpWhitelist(caller: StoredKey, remoteAddress: string | undefined): void {
    if (caller.ipWhitelist.length === 0) {
      return;
    }
    const address = remoteAddress === undefined ? '' : ipaddr.process(remoteAddress).toString();
    if (!caller.ipWhitelist.includes(address)) {
      throw new GateioFailure(401, 'IP_FORBIDDEN', `Request IP ${address} not in whitelist`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints
  // -------------------------------------------------------------------------------------------

  function listKeys({ caller, params }: RouteContext): Reply {
    const userId = ownSubAccount(caller, params.user_id);
    return { status: 200, body: keysOf(userId).map(keyView) };
  }

  function createKey({ caller, params, body }: RouteContext): Reply {
    requireWritable(caller);
    const userId = ownSubAccount(caller, params.user_id);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new GateioFailure(400, 'INVALID_REQUEST_BODY', 'request body must be a JSON object');
    }
    const fields = body as Record<string, unknown>;
    if (fields.name !== undefined && typeof fields.name !== 'string') {
      throw new GateioFailure(400, 'INVALID_PARAM_VALUE', 'Invalid parameter `name`');
    }
    if (fields.mode !== undefined && fields.mode !== 1 && fields.mode !== 2) {
      throw new GateioFailure(400, 'INVALID_PARAM_VALUE', 'Invalid parameter `mode`, expected 1 or 2');
    }
    const perms = parsePermissions(fields.perms);
    const ipWhitelist = parseIpWhitelist(fields.ip_whitelist);
    // NOTE: Gate.io documents the limit of 20 keys but not its response to a create past it. The
    // emulator returns INVALID_PARAM_VALUE, and the provider counts the keys to explain it.
    if (keysOf(userId).length >= maxKeys) {
      throw new GateioFailure(400, 'INVALID_PARAM_VALUE', `API key count exceeds the limit of ${maxKeys}`);
    }

    const key = storeKey({ userId, name: fields.name ?? '', perms, ipWhitelist, mode: (fields.mode as number | undefined) ?? 1, isMaster: false });
    return { status: 200, body: { ...keyView(key), secret: key.secret } };
  }

  function getKey({ caller, params }: RouteContext): Reply {
    const key = ownKey(caller, params.user_id, params.key);
    return { status: 200, body: keyView(key) };
  }

  function deleteKey({ caller, params }: RouteContext): Reply {
    requireWritable(caller);
    const key = ownKey(caller, params.user_id, params.key);
    keys.delete(key.key);
    return { status: 204 };
  }

  function accountDetail({ caller }: RouteContext): Reply {
    return {
      status: 200,
      body: { user_id: Number(caller.userId), ip_whitelist: caller.ipWhitelist, currency_pairs: [], key: { mode: caller.mode }, tier: 0, copy_trading_role: 0 },
    };
  }

  /** Returns the sub-account's user ID when the caller's main account owns it. */
  function ownSubAccount(caller: StoredKey, userId: string): string {
    if (!caller.isMaster) {
      throw new GateioFailure(403, 'FORBIDDEN', 'Sub-account API keys may not manage sub-accounts');
    }
    if (accounts.get(userId)?.masterUserId !== caller.userId) {
      throw new GateioFailure(400, 'SUB_ACCOUNT_NOT_FOUND', `Sub account ${userId} not found`);
    }
    return userId;
  }

  // NOTE: Gate.io documents no response for a key that does not exist, so the emulator returns 404 NOT_FOUND.
  function ownKey(caller: StoredKey, userId: string, apiKey: string): StoredKey {
    ownSubAccount(caller, userId);
    const key = keys.get(apiKey);
    if (!key || key.userId !== userId) {
      throw new GateioFailure(404, 'NOT_FOUND', 'API key not found');
    }
    return key;
  }

  /**
   * NOTE: Gate.io does not document which permission manages sub-account keys. The emulator
   * rejects writes by a key whose permissions are all read-only with READ_ONLY, as the label
   * list describes it.
   */
  function requireWritable(caller: StoredKey): void {
    if (caller.perms.every((permission) => permission.read_only)) {
      throw new GateioFailure(403, 'READ_ONLY', 'API key is read-only');
    }
  }

  // -------------------------------------------------------------------------------------------
  // State
  // -------------------------------------------------------------------------------------------

  function storeKey(fields: Pick<StoredKey, 'userId' | 'name' | 'perms' | 'ipWhitelist' | 'mode' | 'isMaster'>): StoredKey {
    const createdAt = Math.floor(Date.now() / 1000);
    const key: StoredKey = {
      ...fields,
      key: crypto.randomBytes(16).toString('hex'),
      secret: crypto.randomBytes(32).toString('hex'),
      state: 1,
      createdAt,
      lastAccess: 0,
    };
    keys.set(key.key, key);
    return key;
  }

  function keysOf(userId: string): StoredKey[] {
    return [...keys.values()].filter((key) => key.userId === userId);
  }

  function newUserId(): string {
    let userId: string;
    do {
      userId = String(crypto.randomInt(10_000_000, 99_999_999));
    } while (accounts.has(userId));
    return userId;
  }

  function seedAccount(seed: SeedGateioAccountOptions = {}): SeededGateioAccount {
    const masterUserId = seed.masterUserId ?? newUserId();
    let management: StoredKey | undefined;
    if (seed.masterUserId === undefined) {
      accounts.set(masterUserId, { userId: masterUserId });
      management = storeKey({
        userId: masterUserId,
        name: 'rotor management',
        perms: [{ name: 'account', read_only: seed.managementReadOnly ?? false }],
        ipWhitelist: seed.managementIps ?? [],
        mode: 1,
        isMaster: true,
      });
    } else {
      management = keysOf(masterUserId).find((key) => key.isMaster);
      if (!accounts.has(masterUserId) || !management) {
        throw new Error(`The Gate.io emulator has no main account ${masterUserId}.`);
      }
    }

    const userId = newUserId();
    accounts.set(userId, { userId, masterUserId });
    const current = storeKey({ userId, name: 'seeded', perms: [{ name: 'spot', read_only: true }], ipWhitelist: seed.currentKeyIps ?? [], mode: 1, isMaster: false });
    return {
      masterUserId,
      userId,
      managementCredential: { api_key: management.key, api_secret: management.secret },
      currentKey: { api_key: current.key, api_secret: current.secret },
    };
  }

  function seedSubAccountKeys(userId: string, count: number): string[] {
    if (accounts.get(userId)?.masterUserId === undefined) {
      throw new Error(`The Gate.io emulator has no sub-account ${userId}.`);
    }
    return Array.from(
      { length: count },
      (_, index) => storeKey({ userId, name: `filler-${index}`, perms: [{ name: 'spot', read_only: true }], ipWhitelist: [], mode: 1, isMaster: false }).key,
    );
  }

  return {
    url: `${origin}${API_PREFIX}`,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
    seedAccount,
    seedSubAccountKeys,
    keys: (userId) =>
      keysOf(userId).map(({ key, userId: owner, name, perms, ipWhitelist, mode, state, createdAt, lastAccess }) => ({
        key,
        userId: owner,
        name,
        perms: perms.map((permission) => ({ ...permission })),
        ipWhitelist: [...ipWhitelist],
        mode,
        state,
        createdAt,
        lastAccess,
      })),
    replaceNextResponse: (endpoint, body) => {
      replacements.set(endpoint, body);
    },
    get rateLimitedResponses() {
      return rateLimitedResponses;
    },
  };
}

/**
 * Returns Gate.io's error label when the emulator rejects the key for GET /account/detail, or
 * null when it accepts it. Signs with node:crypto, independently of the provider.
 */
export async function gateioKeyRejection(url: string, key: GateioKeyPair): Promise<string | null> {
  const target = new URL(`${url}/account/detail`);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const hashedBody = crypto.createHash('sha512').update('', 'utf8').digest('hex');
  const sign = crypto.createHmac('sha512', key.api_secret).update(`GET\n${target.pathname}\n\n${hashedBody}\n${timestamp}`, 'utf8').digest('hex');
  const response = await fetch(target, { headers: { KEY: key.api_key, Timestamp: timestamp, SIGN: sign }, signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { label?: string };
  return response.ok ? null : (body.label ?? `HTTP ${response.status}`);
}

// ---------------------------------------------------------------------------------------------
// Request parsing and responses
// ---------------------------------------------------------------------------------------------

function route(method: string, template: string, handle: (route: RouteContext) => Reply): Route {
  const pattern = new RegExp(`^${template.replace(/\{(\w+)\}/g, '(?<$1>[^/]+)')}$`);
  return { method, template, pattern, handle };
}

function keyView(key: StoredKey) {
  return {
    user_id: key.userId,
    mode: key.mode,
    name: key.name,
    perms: key.perms,
    ip_whitelist: key.ipWhitelist,
    key: key.key,
    state: key.state,
    created_at: key.createdAt,
    updated_at: key.createdAt,
    last_access: key.lastAccess,
  };
}

function headerValue(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function parseBody(rawBody: string): unknown {
  try {
    return JSON.parse(rawBody === '' ? '{}' : rawBody);
  } catch {
    throw new GateioFailure(400, 'INVALID_REQUEST_BODY', 'request body is not valid JSON');
  }
}

/** Checks the create endpoint's perms: known names, each with an optional boolean read_only. */
function parsePermissions(value: unknown): GateioPermission[] {
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value)) {
    throw new GateioFailure(400, 'INVALID_PARAM_VALUE', 'Invalid parameter `perms`, expected an array');
  }
  return value.map((entry: unknown) => {
    const permission = entry as { name?: unknown; read_only?: unknown } | null;
    if (permission === null || typeof permission !== 'object' || typeof permission.name !== 'string' || !PERMISSION_NAMES.includes(permission.name)) {
      throw new GateioFailure(400, 'INVALID_PARAM_VALUE', 'Invalid parameter `perms.name`');
    }
    if (permission.read_only !== undefined && typeof permission.read_only !== 'boolean') {
      throw new GateioFailure(400, 'INVALID_PARAM_VALUE', 'Invalid parameter `perms.read_only`');
    }
    return { name: permission.name, read_only: permission.read_only ?? false };
  });
}

/** Checks Gate.io's rule for ip_whitelist: at most 20 single IPv4 addresses. */
function parseIpWhitelist(value: unknown): string[] {
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value) || value.length > MAX_IP_ADDRESSES_PER_KEY) {
    throw new GateioFailure(400, 'INVALID_PARAM_VALUE', `Invalid parameter \`ip_whitelist\`, expected at most ${MAX_IP_ADDRESSES_PER_KEY} IPv4 addresses`);
  }
  return value.map((address: unknown) => {
    if (typeof address !== 'string' || !ipaddr.IPv4.isValidFourPartDecimal(address)) {
      throw new GateioFailure(400, 'INVALID_PARAM_VALUE', `Invalid parameter \`ip_whitelist\`: ${String(address)} is not an IPv4 address`);
    }
    return address;
  });
}

function sendJson(response: http.ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  if (body === undefined) {
    response.writeHead(status, headers);
    response.end();
    return;
  }
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

function constantTimeEqual(left: string, right: string): boolean {
  const a = Buffer.from(left);
  const b = Buffer.from(right);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

import crypto from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

/**
 * An in-memory emulator of the part of Datadog's API that manages one organization's keys: the
 * v2 Key Management endpoints for API keys and for the current user's application keys, and the
 * validation endpoints GET /api/v1/validate and GET /api/v2/validate_keys. It listens on
 * 127.0.0.1 only.
 *
 * Rules it enforces, as Datadog documents them:
 * - DD-API-KEY must be an existing API key of the organization, and every endpoint but
 *   /api/v1/validate also needs DD-APPLICATION-KEY of an existing application key. Anything
 *   else gets HTTP 403 {"errors": ["Forbidden"]}, as Datadog returns for an unknown key;
 * - an application key with scopes may only call endpoints one of its scopes grants:
 *   api_keys_read, api_keys_write and api_keys_delete for API keys, user_app_keys for the
 *   current user's application keys. An application key without scopes has every permission;
 * - an organization may have at most 50 API keys (the list reports it as meta.max_allowed);
 * - with an organization IP allowlist, requests from other addresses get 403;
 * - past the rate limit, key-management requests get 429 with X-RateLimit-Limit, -Period,
 *   -Remaining, -Reset (seconds until the period ends) and -Name, in calendar-aligned periods;
 * - in One-Time Read mode (the default, as for organizations created after August 20th, 2025)
 *   reading an application key omits its `key`.
 *
 * Differences from Datadog: the error for a create past the API key limit and for unknown
 * scopes are the emulator's own wording, because Datadog documents neither. Scope names are
 * checked against KNOWN_SCOPES, a small part of Datadog's permission list.
 */

const HOST = '127.0.0.1';

/** Datadog's documented limit of API keys per organization. */
export const DATADOG_API_KEY_LIMIT = 50;

/** Scope names the emulator accepts for application keys. */
export const KNOWN_SCOPES = [
  'api_keys_read',
  'api_keys_write',
  'api_keys_delete',
  'user_app_keys',
  'dashboards_read',
  'dashboards_write',
  'monitors_read',
  'metrics_read',
  'timeseries_query',
] as const;

export interface DatadogEmulatorOptions {
  /** Key-management requests allowed per second, counted in calendar-aligned periods. Unlimited when absent. */
  rateLimitPerSecond?: number;
  /** Length of one rate-limit period in seconds (X-RateLimit-Period). Default 1. */
  rateLimitPeriodSeconds?: number;
  /** API keys the organization may hold. Default 50. */
  apiKeyLimit?: number;
  /** Organization IP allowlist in CIDR notation. Absent or empty, it lets every address call. */
  ipAllowlist?: string[];
  /** Whether reading an application key omits its `key`. Default true. */
  oneTimeRead?: boolean;
}

/** A key as Datadog returns it once, at creation. */
export interface EmulatedKey {
  id: string;
  key: string;
}

export interface SeededDatadogOrganization {
  /** The API key half of the management credential. */
  managementApiKey: EmulatedKey;
  /** The application key half of the management credential, without scopes. */
  managementApplicationKey: EmulatedKey;
  /** An API key consumers use before the first rotation. */
  currentApiKey: EmulatedKey;
  /** An application key (scoped to dashboards_read) consumers use before the first rotation. */
  currentApplicationKey: EmulatedKey;
}

/** A stored key as the emulator keeps it, without its value. */
export interface StoredKeyView {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  scopes: string[] | null;
}

/** A canned response to the next request to one endpoint, for tests of malformed responses. */
export interface InjectedResponse {
  method: string;
  /** Path without the query string, such as /api/v2/api_keys. */
  path: string;
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface DatadogEmulator {
  /** Base URL, such as http://127.0.0.1:5123. */
  url: string;
  stop(): Promise<void>;
  /** Creates the management credential and a first API key and application key, as a person would in the web app. */
  seedAccount(): SeededDatadogOrganization;
  seedApiKey(name: string): EmulatedKey;
  seedApplicationKey(name: string, scopes?: string[] | null): EmulatedKey;
  /** The stored API key, or undefined when it does not exist (any more). */
  apiKey(id: string): StoredKeyView | undefined;
  applicationKey(id: string): StoredKeyView | undefined;
  apiKeyIds(): string[];
  applicationKeyIds(): string[];
  /** Number of requests that received 429 so far. */
  throttledResponses(): number;
  injectResponse(response: InjectedResponse): void;
}

interface StoredKey {
  id: string;
  key: string;
  name: string;
  createdAt: string;
  modifiedAt: string;
  lastUsedAt: string | null;
  /** Application keys only: null grants every permission of the user. */
  scopes: string[] | null;
}

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface ParsedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  apiKey?: string;
  applicationKey?: string;
  body: unknown;
  remoteAddress: string;
}

class RequestRejected extends Error {
  constructor(readonly reply: Reply) {
    super(`HTTP ${reply.status}`);
  }
}

const FORBIDDEN: Reply = { status: 403, body: { errors: ['Forbidden'] } };

/** Starts the emulator on a free loopback port. */
export async function startDatadogEmulator(options: DatadogEmulatorOptions = {}): Promise<DatadogEmulator> {
  const apiKeyLimit = options.apiKeyLimit ?? DATADOG_API_KEY_LIMIT;
  const oneTimeRead = options.oneTimeRead ?? true;
  const apiKeys = new Map<string, StoredKey>();
  const applicationKeys = new Map<string, StoredKey>();
  const injected: InjectedResponse[] = [];
  const allowlist = options.ipAllowlist && options.ipAllowlist.length > 0 ? subnetList(options.ipAllowlist) : undefined;
  const rateLimiter =
    options.rateLimitPerSecond === undefined ? undefined : createRateLimiter(options.rateLimitPerSecond, options.rateLimitPeriodSeconds ?? 1);
  let throttled = 0;

  const storeKey = (store: Map<string, StoredKey>, name: string, keyBytes: number, scopes: string[] | null): StoredKey => {
    const now = new Date().toISOString();
    // Datadog API keys are 32 hexadecimal characters and application keys 40.
    const stored: StoredKey = { id: crypto.randomUUID(), key: randomHex(keyBytes), name, createdAt: now, modifiedAt: now, lastUsedAt: null, scopes };
    store.set(stored.id, stored);
    return stored;
  };

  const findByKey = (store: Map<string, StoredKey>, value: string | undefined): StoredKey | undefined =>
    value === undefined ? undefined : [...store.values()].find((candidate) => candidate.key === value);

  /** Checks the caller's address and keys, marks them used and returns the application key. */
  const authenticate = (request: ParsedRequest, needsApplicationKey: boolean): StoredKey | undefined => {
    if (allowlist && !allowlist.check(request.remoteAddress, net.isIP(request.remoteAddress) === 6 ? 'ipv6' : 'ipv4')) {
      throw new RequestRejected(FORBIDDEN);
    }
    const apiKey = findByKey(apiKeys, request.apiKey);
    if (!apiKey) {
      throw new RequestRejected(FORBIDDEN);
    }
    const now = new Date().toISOString();
    apiKey.lastUsedAt = now;
    if (!needsApplicationKey) {
      return undefined;
    }
    const applicationKey = findByKey(applicationKeys, request.applicationKey);
    if (!applicationKey) {
      throw new RequestRejected(FORBIDDEN);
    }
    applicationKey.lastUsedAt = now;
    return applicationKey;
  };

  const requireScope = (applicationKey: StoredKey | undefined, scope: string): void => {
    if (applicationKey?.scopes && !applicationKey.scopes.includes(scope)) {
      throw new RequestRejected(FORBIDDEN);
    }
  };

  const routes = (request: ParsedRequest): Reply => {
    const { method, path } = request;
    if (method === 'GET' && path === '/api/v1/validate') {
      authenticate(request, false);
      return { status: 200, body: { valid: true } };
    }
    if (method === 'GET' && path === '/api/v2/validate_keys') {
      authenticate(request, true);
      return { status: 200, body: { status: 'ok' } };
    }

    const collection = keyCollection(path);
    if (!collection) {
      return { status: 404, body: { errors: ['Not found'] } };
    }
    const caller = authenticate(request, true);
    const retryAfter = rateLimiter?.take();
    if (retryAfter) {
      throttled++;
      return { status: 429, body: { errors: ['Too many requests'] }, headers: retryAfter };
    }

    const isApi = collection.type === 'api';
    const store = isApi ? apiKeys : applicationKeys;
    if (collection.id === undefined && method === 'GET') {
      requireScope(caller, isApi ? 'api_keys_read' : 'user_app_keys');
      return listKeys(store, isApi, request.query);
    }
    if (collection.id === undefined && method === 'POST') {
      requireScope(caller, isApi ? 'api_keys_write' : 'user_app_keys');
      return isApi ? createApiKey(request.body) : createApplicationKey(request.body);
    }
    if (collection.id !== undefined && (method === 'GET' || method === 'DELETE')) {
      let scope = 'user_app_keys';
      if (isApi) {
        scope = method === 'GET' ? 'api_keys_read' : 'api_keys_delete';
      }
      requireScope(caller, scope);
      const stored = store.get(collection.id);
      if (!stored) {
        return { status: 404, body: { errors: [`${isApi ? 'API key' : 'Application key'} not found`] } };
      }
      if (method === 'GET') {
        return { status: 200, body: { data: resourceOf(stored, isApi, isApi || !oneTimeRead) } };
      }
      store.delete(stored.id);
      return { status: 204 };
    }
    return { status: 405, body: { errors: ['Method Not Allowed'] } };
  };

  const listKeys = (store: Map<string, StoredKey>, isApi: boolean, query: URLSearchParams): Reply => {
    // Datadog's page[size] is at most 100 and 10 by default, and page[number] starts at 0.
    const size = Math.min(100, Math.max(1, Number(query.get('page[size]') ?? 10) || 10));
    const number = Math.max(0, Number(query.get('page[number]') ?? 0) || 0);
    const all = [...store.values()].sort((left, right) => left.name.localeCompare(right.name));
    const slice = all.slice(number * size, (number + 1) * size);
    const meta: Record<string, unknown> = { page: { total_filtered_count: all.length } };
    if (isApi) {
      meta.max_allowed = apiKeyLimit;
    }
    return { status: 200, body: { data: slice.map((stored) => resourceOf(stored, isApi, false)), meta } };
  };

  const createApiKey = (body: unknown): Reply => {
    const { name } = validateCreateBody(body, 'api_keys');
    if (apiKeys.size >= apiKeyLimit) {
      return { status: 400, body: { errors: [`API key limit reached: an organization may have at most ${apiKeyLimit} API keys`] } };
    }
    const stored = storeKey(apiKeys, name, 16, null);
    return { status: 201, body: { data: resourceOf(stored, true, true) } };
  };

  const createApplicationKey = (body: unknown): Reply => {
    const { name, scopes } = validateCreateBody(body, 'application_keys');
    const stored = storeKey(applicationKeys, name, 20, scopes);
    return { status: 201, body: { data: resourceOf(stored, false, true) } };
  };

  const handle = async (req: http.IncomingMessage): Promise<Reply> => {
    try {
      const url = new URL(req.url ?? '/', `http://${HOST}`);
      const method = req.method ?? 'GET';
      const text = await readBody(req);

      const cannedIndex = injected.findIndex((canned) => canned.method === method && canned.path === url.pathname);
      if (cannedIndex >= 0) {
        const [canned] = injected.splice(cannedIndex, 1);
        return { status: canned.status, body: canned.body, headers: canned.headers };
      }

      let body: unknown;
      if (text !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          return { status: 400, body: { errors: ['Invalid JSON'] } };
        }
      }
      return routes({
        method,
        path: url.pathname,
        query: url.searchParams,
        apiKey: headerValue(req.headers['dd-api-key']),
        applicationKey: headerValue(req.headers['dd-application-key']),
        body,
        remoteAddress: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      });
    } catch (error) {
      if (error instanceof RequestRejected) {
        return error.reply;
      }
      return { status: 500, body: { errors: [`emulator error: ${error instanceof Error ? error.message : String(error)}`] } };
    }
  };

  const server = http.createServer((req, res) => {
    void handle(req).then((reply) => {
      if (reply.body === undefined) {
        res.writeHead(reply.status, reply.headers);
        res.end();
        return;
      }
      res.writeHead(reply.status, { 'Content-Type': 'application/json', ...reply.headers });
      res.end(JSON.stringify(reply.body));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${HOST}:${port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    seedAccount: () => {
      const managementApiKey = storeKey(apiKeys, 'Rotor management', 16, null);
      const managementApplicationKey = storeKey(applicationKeys, 'Rotor management', 20, null);
      const currentApiKey = storeKey(apiKeys, 'metrics shipper', 16, null);
      const currentApplicationKey = storeKey(applicationKeys, 'dashboard reader', 20, ['dashboards_read']);
      return {
        managementApiKey: emulatedKey(managementApiKey),
        managementApplicationKey: emulatedKey(managementApplicationKey),
        currentApiKey: emulatedKey(currentApiKey),
        currentApplicationKey: emulatedKey(currentApplicationKey),
      };
    },
    seedApiKey: (name) => emulatedKey(storeKey(apiKeys, name, 16, null)),
    seedApplicationKey: (name, scopes = null) => emulatedKey(storeKey(applicationKeys, name, 20, scopes)),
    apiKey: (id) => viewOf(apiKeys.get(id)),
    applicationKey: (id) => viewOf(applicationKeys.get(id)),
    apiKeyIds: () => [...apiKeys.keys()].sort(),
    applicationKeyIds: () => [...applicationKeys.keys()].sort(),
    throttledResponses: () => throttled,
    injectResponse: (response) => {
      injected.push(response);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Rules and resources
// ---------------------------------------------------------------------------------------------

/** Returns which key collection a path addresses, and the key id when it names one. */
function keyCollection(path: string): { type: 'api' | 'application'; id?: string } | undefined {
  const match = /^\/api\/v2\/(api_keys|current_user\/application_keys)(?:\/([^/]+))?$/.exec(path);
  if (!match) {
    return undefined;
  }
  const type = match[1] === 'api_keys' ? 'api' : 'application';
  return match[2] === undefined ? { type } : { type, id: decodeURIComponent(match[2]) };
}

/** Returns the JSON:API resource of a key; `withKey` includes the key itself. */
function resourceOf(stored: StoredKey, isApi: boolean, withKey: boolean): Record<string, unknown> {
  const attributes: Record<string, unknown> = {
    name: stored.name,
    created_at: stored.createdAt,
    last4: stored.key.slice(-4),
  };
  if (isApi) {
    attributes.modified_at = stored.modifiedAt;
    attributes.date_last_used = stored.lastUsedAt;
    attributes.remote_config_read_enabled = false;
  } else {
    attributes.last_used_at = stored.lastUsedAt;
    attributes.scopes = stored.scopes;
  }
  if (withKey) {
    attributes.key = stored.key;
  }
  return { id: stored.id, type: isApi ? 'api_keys' : 'application_keys', attributes };
}

/** Checks a create request body as Datadog's schema describes it and returns the key's fields. */
function validateCreateBody(body: unknown, resourceType: 'api_keys' | 'application_keys'): { name: string; scopes: string[] | null } {
  const invalid = (message: string): never => {
    throw new RequestRejected({ status: 400, body: { errors: [message] } });
  };
  if (!isObject(body) || !isObject(body.data)) {
    return invalid('Invalid request: expected {"data": {"type": ..., "attributes": ...}}');
  }
  const { type, attributes } = body.data;
  if (type !== resourceType) {
    invalid(`Invalid request: data.type must be ${resourceType}`);
  }
  if (!isObject(attributes)) {
    return invalid('Invalid request: data.attributes is required');
  }
  if (typeof attributes.name !== 'string' || attributes.name.trim() === '') {
    invalid('Key names cannot be blank');
  }
  let scopes: string[] | null = null;
  if (resourceType === 'application_keys' && attributes.scopes !== undefined && attributes.scopes !== null) {
    if (!Array.isArray(attributes.scopes) || !attributes.scopes.every((scope) => typeof scope === 'string')) {
      return invalid('Invalid request: scopes must be a list of scope names');
    }
    const unknown = attributes.scopes.filter((scope) => !(KNOWN_SCOPES as readonly string[]).includes(scope as string));
    if (unknown.length > 0) {
      invalid(`Invalid scopes: ${unknown.join(', ')}`);
    }
    scopes = attributes.scopes as string[];
  } else if (resourceType === 'api_keys' && attributes.scopes !== undefined) {
    invalid('Invalid request: API keys have no scopes');
  }
  return { name: attributes.name as string, scopes };
}

function createRateLimiter(perSecond: number, periodSeconds: number) {
  const limit = Math.max(1, Math.round(perSecond * periodSeconds));
  const periodMs = periodSeconds * 1000;
  let periodStart = 0;
  let used = 0;
  return {
    /** Counts one request and returns the 429 headers when the period's limit is spent. */
    take(): Record<string, string> | undefined {
      const now = Date.now();
      // Calendar-aligned: periods start at multiples of their length since the epoch.
      const currentStart = now - (now % periodMs);
      if (currentStart !== periodStart) {
        periodStart = currentStart;
        used = 0;
      }
      if (used < limit) {
        used++;
        return undefined;
      }
      return {
        'X-RateLimit-Limit': String(limit),
        'X-RateLimit-Period': String(periodSeconds),
        'X-RateLimit-Remaining': '0',
        'X-RateLimit-Reset': String(Math.max(1, Math.ceil((periodStart + periodMs - now) / 1000))),
        'X-RateLimit-Name': 'api_keys',
      };
    },
  };
}

function subnetList(cidrs: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [address, prefix] = cidr.split('/');
    const family = net.isIP(address) === 6 ? 'ipv6' : 'ipv4';
    const singleAddressPrefix = family === 'ipv6' ? 128 : 32;
    list.addSubnet(address, prefix === undefined ? singleAddressPrefix : Number(prefix), family);
  }
  return list;
}

function viewOf(stored: StoredKey | undefined): StoredKeyView | undefined {
  return stored ? { id: stored.id, name: stored.name, createdAt: stored.createdAt, lastUsedAt: stored.lastUsedAt, scopes: stored.scopes } : undefined;
}

function emulatedKey(stored: StoredKey): EmulatedKey {
  return { id: stored.id, key: stored.key };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
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

import crypto from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

/**
 * An in-memory emulator of QuickNode for one account: the part of the Admin API that manages an
 * endpoint's authentication tokens (GET /v0/endpoints/{id}/security, POST and DELETE
 * /v0/endpoints/{id}/security/tokens), and each endpoint's JSON-RPC interface. It listens on
 * 127.0.0.1 only. Admin API responses use QuickNode's envelope `{ data, error }`; an endpoint's
 * JSON-RPC interface is served under /rpc/<endpoint name>, where QuickNode uses the host name.
 *
 * Rules it enforces, as QuickNode documents them:
 * - every Admin API request needs the header x-api-key with a key of the account;
 * - a JSON-RPC call needs a token of the endpoint, as the first path segment or in the x-token
 *   header, unless the endpoint has token authentication disabled. A deleted token is rejected;
 * - an endpoint with its IP allowlist enabled rejects callers whose address matches no entry;
 * - both rejections are HTTP 401, and a paused endpoint returns HTTP 403;
 * - past the account's rate limit, Admin API requests get HTTP 429.
 *
 * Differences from QuickNode, where its documentation is silent: the bodies of error responses,
 * the form of ids and tokens, and the 429 response, which has no Retry-After header here.
 * QuickNode documents no token limit, so the emulator has none unless asked, and its error text
 * for one is the emulator's own.
 */

const HOST = '127.0.0.1';
const ADMIN_BASE_PATH = '/v0';
const RPC_BASE_PATH = '/rpc';

export interface QuicknodeEmulatorOptions {
  /** Admin API requests per second the account may make, refilling a token bucket. Unlimited when absent. */
  rateLimitPerSecond?: number;
  /** Requests the bucket contains when full. Default: twice the rate, the smallest ratio QuickNode's plans have. */
  rateLimitBurst?: number;
  /** Tokens one endpoint may have. Unlimited when absent, because QuickNode documents no maximum. */
  tokenLimit?: number;
}

/** An authentication token as the Admin API returns it. */
export interface EmulatedToken {
  id: string;
  token: string;
}

export interface SeededQuicknodeAccount {
  /** The Admin API key: the management credential. */
  apiKey: string;
  endpointId: string;
  /** The endpoint's HTTP URL without a token, for the provider's rpc_url. */
  rpcUrl: string;
  /** The token consumers use before the first rotation. */
  currentToken: EmulatedToken;
}

/** A canned response to the next request to one path, for tests of malformed and throttled responses. */
export interface InjectedResponse {
  method: string;
  /** Path below /v0, such as /endpoints/<id>/security, or the whole path of a JSON-RPC call, which starts with /rpc/. */
  path: string;
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface QuicknodeEmulator {
  /** Admin API base URL including /v0, such as http://127.0.0.1:5123/v0. */
  url: string;
  stop(): Promise<void>;
  /** Creates an Admin API key and an endpoint with one token, as a person would in the dashboard. */
  seedAccount(): SeededQuicknodeAccount;
  /** Adds a token to an endpoint without any request. */
  seedToken(endpointId: string): EmulatedToken;
  /** Replaces the endpoint's IP allowlist and turns it on or off, as the Security settings do. */
  setIpAllowlist(endpointId: string, entries: string[], enabled?: boolean): void;
  setTokenAuthentication(endpointId: string, enabled: boolean): void;
  setPaused(endpointId: string, paused: boolean): void;
  /** The endpoint's token ids, oldest first. */
  tokenIds(endpointId: string): string[];
  /** Number of requests that received 429 so far. */
  throttledResponses(): number;
  injectResponse(response: InjectedResponse): void;
}

interface StoredEndpoint {
  id: string;
  name: string;
  tokens: EmulatedToken[];
  tokenAuthentication: boolean;
  ipAllowlistEnabled: boolean;
  ips: Array<{ id: string; ip: string }>;
  paused: boolean;
  blockNumber: number;
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
export async function startQuicknodeEmulator(options: QuicknodeEmulatorOptions = {}): Promise<QuicknodeEmulator> {
  const apiKeys = new Set<string>();
  const endpoints = new Map<string, StoredEndpoint>();
  const injected: InjectedResponse[] = [];
  const rateLimiter =
    options.rateLimitPerSecond === undefined ? undefined : createRateLimiter(options.rateLimitPerSecond, options.rateLimitBurst ?? 2 * options.rateLimitPerSecond);
  let throttled = 0;
  let port = 0;

  const endpointOrThrow = (id: string): StoredEndpoint => {
    const endpoint = endpoints.get(id);
    if (!endpoint) {
      throw new Error(`The emulator has no endpoint ${id}`);
    }
    return endpoint;
  };

  const addToken = (endpoint: StoredEndpoint): EmulatedToken => {
    // QuickNode tokens in its examples are 40 lowercase hexadecimal characters.
    const token = { id: crypto.randomUUID(), token: crypto.randomBytes(20).toString('hex') };
    endpoint.tokens.push(token);
    return token;
  };

  const adminRoutes = (method: string, path: string, request: ParsedRequest): Reply => {
    authenticateAdmin(request);

    const security = /^\/endpoints\/([^/]+)\/security$/.exec(path);
    if (security && method === 'GET') {
      return success(securityView(findEndpoint(security[1])));
    }
    const tokens = /^\/endpoints\/([^/]+)\/security\/tokens$/.exec(path);
    if (tokens && method === 'POST') {
      const endpoint = findEndpoint(tokens[1]);
      if (options.tokenLimit !== undefined && endpoint.tokens.length >= options.tokenLimit) {
        return failure(400, `Maximum number of tokens (${options.tokenLimit}) reached for this endpoint`);
      }
      return success(addToken(endpoint));
    }
    const token = /^\/endpoints\/([^/]+)\/security\/tokens\/([^/]+)$/.exec(path);
    if (token && method === 'DELETE') {
      const endpoint = findEndpoint(token[1]);
      const index = endpoint.tokens.findIndex((candidate) => candidate.id === token[2]);
      if (index < 0) {
        return failure(404, 'Token not found');
      }
      endpoint.tokens.splice(index, 1);
      return success(true);
    }
    return failure(404, 'Not found');
  };

  const authenticateAdmin = (request: ParsedRequest): void => {
    const apiKey = request.headers['x-api-key'];
    if (typeof apiKey !== 'string' || !apiKeys.has(apiKey)) {
      throw new RequestRejected(failure(401, 'Unauthorized: invalid API key'));
    }
  };

  const findEndpoint = (id: string): StoredEndpoint => {
    const endpoint = endpoints.get(decodeURIComponent(id));
    if (!endpoint) {
      throw new RequestRejected(failure(404, 'Endpoint not found'));
    }
    return endpoint;
  };

  const rpcRoute = (path: string, request: ParsedRequest): Reply => {
    const [name, ...rest] = path.split('/').filter((segment) => segment !== '');
    const endpoint = [...endpoints.values()].find((candidate) => candidate.name === name);
    if (!endpoint) {
      return { status: 404, body: { error: 'Not found' } };
    }
    if (endpoint.paused) {
      return { status: 403, body: { error: 'Endpoint disabled' } };
    }
    const headerToken = request.headers['x-token'];
    const presented = typeof headerToken === 'string' ? headerToken : rest[0];
    if (endpoint.tokenAuthentication && !endpoint.tokens.some((token) => token.token === presented)) {
      return { status: 401, body: { error: 'Unauthorized' } };
    }
    if (endpoint.ipAllowlistEnabled && !addressAllowed(endpoint.ips.map((entry) => entry.ip), request.remoteAddress)) {
      return { status: 401, body: { error: 'Unauthorized' } };
    }
    return { status: 200, body: jsonRpcResponse(endpoint, request.body) };
  };

  const takeInjected = (method: string, path: string): Reply | undefined => {
    const index = injected.findIndex((canned) => canned.method === method && canned.path === path);
    if (index < 0) {
      return undefined;
    }
    const [canned] = injected.splice(index, 1);
    return { status: canned.status, body: canned.body, headers: canned.headers };
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
      let body: unknown;
      if (text !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          return failure(400, 'Malformed JSON in request body');
        }
      }
      const request: ParsedRequest = { headers: req.headers, body, remoteAddress: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '') };

      if (url.pathname.startsWith(`${RPC_BASE_PATH}/`)) {
        return takeInjected(method, url.pathname) ?? rpcRoute(url.pathname.slice(RPC_BASE_PATH.length), request);
      }
      if (!url.pathname.startsWith(`${ADMIN_BASE_PATH}/`)) {
        return failure(404, 'Not found');
      }

      if (rateLimiter && !rateLimiter.take()) {
        throttled++;
        return failure(429, 'Too many requests');
      }
      const path = url.pathname.slice(ADMIN_BASE_PATH.length);
      return takeInjected(method, path) ?? adminRoutes(method, path, request);
    } catch (error) {
      if (error instanceof RequestRejected) {
        return error.reply;
      }
      return failure(500, `emulator error: ${error instanceof Error ? error.message : String(error)}`);
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  port = (server.address() as AddressInfo).port;

  return {
    url: `http://${HOST}:${port}${ADMIN_BASE_PATH}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    seedAccount: () => {
      const apiKey = `QN_${crypto.randomBytes(16).toString('hex')}`;
      apiKeys.add(apiKey);
      const endpoint: StoredEndpoint = {
        id: crypto.randomUUID(),
        name: `rotor-${crypto.randomBytes(4).toString('hex')}`,
        tokens: [],
        tokenAuthentication: true,
        ipAllowlistEnabled: false,
        ips: [],
        paused: false,
        blockNumber: 19_000_000,
      };
      endpoints.set(endpoint.id, endpoint);
      const currentToken = addToken(endpoint);
      return { apiKey, endpointId: endpoint.id, rpcUrl: `http://${HOST}:${port}${RPC_BASE_PATH}/${endpoint.name}`, currentToken: { ...currentToken } };
    },
    seedToken: (endpointId) => ({ ...addToken(endpointOrThrow(endpointId)) }),
    setIpAllowlist: (endpointId, entries, enabled = true) => {
      const endpoint = endpointOrThrow(endpointId);
      endpoint.ips = entries.map((ip) => ({ id: crypto.randomUUID(), ip }));
      endpoint.ipAllowlistEnabled = enabled;
    },
    setTokenAuthentication: (endpointId, enabled) => {
      endpointOrThrow(endpointId).tokenAuthentication = enabled;
    },
    setPaused: (endpointId, paused) => {
      endpointOrThrow(endpointId).paused = paused;
    },
    tokenIds: (endpointId) => endpointOrThrow(endpointId).tokens.map((token) => token.id),
    throttledResponses: () => throttled,
    injectResponse: (response) => {
      injected.push(response);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

interface ParsedRequest {
  headers: http.IncomingHttpHeaders;
  body: unknown;
  remoteAddress: string;
}

/** Returns the endpoint's security settings in the shape of GET /v0/endpoints/{id}/security. */
function securityView(endpoint: StoredEndpoint) {
  return {
    options: {
      tokens: endpoint.tokenAuthentication,
      referrers: false,
      jwts: false,
      ips: endpoint.ipAllowlistEnabled,
      domainMasks: false,
      hsts: false,
      cors: false,
      responseLogging: false,
      requestFilters: false,
      ipCustomHeader: { value: null },
    },
    tokens: endpoint.tokens.map((token) => ({ ...token })),
    jwts: [],
    referrers: [],
    domain_masks: [],
    ips: endpoint.ips.map((entry) => ({ ...entry })),
    request_filters: [],
  };
}

/** Checks the caller against allowlist entries: single addresses or CIDR blocks. */
function addressAllowed(entries: string[], address: string): boolean {
  const family = net.isIP(address) === 6 ? 'ipv6' : 'ipv4';
  const list = new net.BlockList();
  for (const entry of entries) {
    const [base, prefix] = entry.split('/');
    const entryFamily = net.isIP(base) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) {
      list.addAddress(base, entryFamily);
    } else {
      list.addSubnet(base, Number(prefix), entryFamily);
    }
  }
  return list.check(address, family);
}

/** Returns the JSON-RPC response an Ethereum or Solana node would send for the few methods the tests use. */
function jsonRpcResponse(endpoint: StoredEndpoint, body: unknown): unknown {
  const request = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const id = request.id ?? null;
  switch (request.method) {
    case 'eth_blockNumber':
      endpoint.blockNumber += 1;
      return { jsonrpc: '2.0', id, result: `0x${endpoint.blockNumber.toString(16)}` };
    case 'getSlot':
      return { jsonrpc: '2.0', id, result: endpoint.blockNumber * 2 };
    case 'net_version':
      return { jsonrpc: '2.0', id, result: '1' };
    default:
      return { jsonrpc: '2.0', id, error: { code: -32601, message: `the method ${String(request.method)} does not exist/is not available` } };
  }
}

function createRateLimiter(perSecond: number, capacity: number) {
  let available = capacity;
  let updatedAt = Date.now();
  return {
    /** Takes one request from the bucket; false when the bucket is empty. */
    take(): boolean {
      const now = Date.now();
      available = Math.min(capacity, available + ((now - updatedAt) / 1000) * perSecond);
      updatedAt = now;
      if (available < 1) {
        return false;
      }
      available -= 1;
      return true;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

function success(data: unknown): Reply {
  return { status: 200, body: { data, error: null } };
}

function failure(status: number, error: string): Reply {
  return { status, body: { data: null, error } };
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

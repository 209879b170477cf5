import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * An in-memory emulator of the KuCoin endpoints the kucoin provider uses: add, list and delete
 * a sub-account's API key, and GET /api/v1/user/api-key to verify a key. It listens on
 * 127.0.0.1 only and enforces KuCoin's documented rules. It checks the KC-API signature, the
 * HMAC'd passphrase and the 5-second timestamp window, and rejects unknown, deleted and expired
 * keys. Each key's IP whitelist is checked against the caller's address, only master keys manage
 * keys, and a delete needs the passphrase of the deleted key. Requests draw on the weighted
 * Management rate-limit pool, reported with HTTP 429, code 429000 and the gw-ratelimit headers.
 *
 * It signs and checks requests with node:crypto directly, so the provider's own signing code is
 * tested against it rather than with it.
 */

const HOST = '127.0.0.1';

// KuCoin rejects a request whose timestamp is more than 5 seconds from its clock (400002).
const TIMESTAMP_TOLERANCE_MS = 5_000;

// KuCoin's Management pool at VIP0: 2000 weight per 30 s, counted from the first request of a window.
const DEFAULT_POOL = { quota: 2_000, windowMs: 30_000 };
// Weights of the endpoints from their documentation pages. NOTE: 20 for the key information is
// an estimate, because the unified-account edition of that endpoint weighs 30.
const WEIGHTS = { list: 20, create: 20, delete: 30, keyInfo: 20 };
// With rateLimitPerSecond, the pool refills every second with this much weight per allowed
// request: one create (20) and one delete (30), so a list and a create always fit one window.
const WEIGHT_PER_REQUEST_PER_SECOND = 50;

// NOTE: KuCoin documents neither a maximum number of keys per sub-account nor the code for
// reaching one or for a wrong passphrase on delete. The emulator uses the provider's estimate of
// 20 keys and its generic parameter error, 400100, for both.
const DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT = 20;
const MAX_IP_ADDRESSES_PER_KEY = 20;
const EXPIRY_DAYS = ['-1', '30', '90', '180', '360'];
const PERMISSIONS = ['general', 'spot', 'margin', 'futures', 'unified', 'innertransfer'];

export interface KucoinEmulatorOptions {
  /**
   * Key-management requests per second. Past it, the emulator returns HTTP 429 with code 429000.
   * Absent: KuCoin's VIP0 Management pool, 2000 weight per 30 s.
   */
  rateLimitPerSecond?: number;
  /** API keys one sub-account may hold. Default 20. */
  maxKeysPerSubAccount?: number;
}

/** An API key in the shape of the kucoin provider's credential and secret schemas. */
export interface KucoinKeyCredential {
  api_key: string;
  api_secret: string;
  passphrase: string;
}

export interface SeedKucoinAccountOptions {
  /** Sub-account name; a unique one is generated when absent. */
  subName?: string;
  /** IP whitelist of the management key. Default none. */
  managementIps?: string[];
  /** IP whitelist of the first app key. Default ['127.0.0.1']. */
  appKeyIps?: string[];
}

export interface SeededKucoinAccount {
  subName: string;
  /** An API key of the master account, in the shape of the kucoin provider's credential schema. */
  managementCredential: KucoinKeyCredential;
  /** The sub-account's first API key, created by hand: the key consumers use before the first rotation. */
  currentKey: KucoinKeyCredential;
}

/** An API key as the emulator stores it, without its secrets. */
export interface EmulatedKucoinKey {
  apiKey: string;
  remark: string;
  permission: string;
  ips: string[];
  /** Expiry in days as requested, -1 for never. */
  expire: string;
  createdAt: number;
}

export interface KucoinEmulator {
  /** Base URL, such as http://127.0.0.1:5123. */
  url: string;
  /** Number of requests rejected with code 429000 so far. */
  readonly rateLimitedCount: number;
  /** Adds a management key of the master account and a sub-account with one API key. */
  seedAccount(options?: SeedKucoinAccountOptions): SeededKucoinAccount;
  /** Adds an API key to an existing sub-account, past the rate limit and the key limit checks. */
  seedKey(subName: string, options?: { remark?: string; ips?: string[] }): KucoinKeyCredential;
  /** The sub-account's keys, oldest first. */
  keys(subName: string): EmulatedKucoinKey[];
  /** Returns this body with HTTP 200 for the next authenticated request to this method and path. */
  replaceNextResponse(method: string, path: string, body: unknown): void;
  stop(): Promise<void>;
}

interface StoredKey extends EmulatedKucoinKey {
  apiSecret: string;
  passphrase: string;
  expiresAt: number | null;
}

interface Account {
  kind: 'master' | 'sub';
  name: string;
  uid: string;
  keys: Map<string, StoredKey>;
}

interface Caller {
  key: StoredKey;
  account: Account;
}

interface EmulatorResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Starts the emulator on a free loopback port. */
export async function startKucoinEmulator(options: KucoinEmulatorOptions = {}): Promise<KucoinEmulator> {
  const pool =
    options.rateLimitPerSecond === undefined ? DEFAULT_POOL : { quota: options.rateLimitPerSecond * WEIGHT_PER_REQUEST_PER_SECOND, windowMs: 1_000 };
  const maxKeys = options.maxKeysPerSubAccount ?? DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT;

  const master: Account = { kind: 'master', name: 'master', uid: randomUid(), keys: new Map() };
  const subAccounts = new Map<string, Account>();
  const keyOwners = new Map<string, Account>();
  const replacements: Array<{ route: string; body: unknown }> = [];
  // KuCoin counts one pool per user; sub-account keys share nothing with the master's pool here.
  const windows = new Map<string, { startedAt: number; used: number }>();
  let rateLimitedCount = 0;

  const addKey = (account: Account, fields: { remark: string; permission: string; ips: string[]; expire?: string; passphrase?: string }): StoredKey => {
    const now = Date.now();
    const expire = fields.expire ?? '-1';
    const key: StoredKey = {
      apiKey: crypto.randomBytes(12).toString('hex'),
      apiSecret: crypto.randomUUID(),
      passphrase: fields.passphrase ?? `seed${crypto.randomBytes(8).toString('hex')}`,
      remark: fields.remark,
      permission: fields.permission,
      ips: fields.ips,
      expire,
      createdAt: now,
      expiresAt: expire === '-1' ? null : now + Number(expire) * 86_400_000,
    };
    account.keys.set(key.apiKey, key);
    keyOwners.set(key.apiKey, account);
    return key;
  };

  /** Charges the weight to the caller's pool, and returns the 429 response when the pool is spent. */
  const charge = (account: Account, weight: number): EmulatorResponse | undefined => {
    const now = Date.now();
    const bucket = account.uid;
    let window = windows.get(bucket);
    if (!window || now - window.startedAt >= pool.windowMs) {
      window = { startedAt: now, used: 0 };
      windows.set(bucket, window);
    }
    const resetMs = Math.max(0, window.startedAt + pool.windowMs - now);
    if (window.used + weight > pool.quota) {
      rateLimitedCount++;
      return { status: 429, body: { code: '429000', msg: 'Too Many Requests' }, headers: rateLimitHeaders(pool.quota, pool.quota - window.used, resetMs) };
    }
    window.used += weight;
    return undefined;
  };

  const poolHeaders = (account: Account): Record<string, string> => {
    const window = windows.get(account.uid);
    const now = Date.now();
    if (!window || now - window.startedAt >= pool.windowMs) {
      return rateLimitHeaders(pool.quota, pool.quota, pool.windowMs);
    }
    return rateLimitHeaders(pool.quota, pool.quota - window.used, window.startedAt + pool.windowMs - now);
  };

  const requireMaster = (caller: Caller): EmulatorResponse | undefined =>
    caller.account.kind === 'master' ? undefined : failure(403, '400007', 'Access denied, requires more permission.');

  const subAccountNamed = (name: string | null): Account | EmulatorResponse => {
    if (!name) {
      return failure(400, '400100', 'subName can not be empty');
    }
    return subAccounts.get(name) ?? failure(400, '400100', 'sub-account does not exist');
  };

  const listKeys = (query: URLSearchParams): EmulatorResponse => {
    const subAccount = subAccountNamed(query.get('subName'));
    if ('status' in subAccount) {
      return subAccount;
    }
    const only = query.get('apiKey');
    const keys = [...subAccount.keys.values()].filter((key) => !only || key.apiKey === only);
    return success(
      keys.map((key) => ({ subName: subAccount.name, remark: key.remark, apiKey: key.apiKey, permission: key.permission, ipWhitelist: key.ips.join(','), createdAt: key.createdAt })),
    );
  };

  const createKey = (body: Record<string, unknown>): EmulatorResponse => {
    for (const parameter of ['subName', 'passphrase', 'remark']) {
      if (typeof body[parameter] !== 'string' || body[parameter] === '') {
        return failure(400, '400100', `${parameter} can not be empty`);
      }
    }
    const { passphrase, remark } = body as Record<'passphrase' | 'remark', string>;
    const subAccount = subAccountNamed(body.subName as string);
    if ('status' in subAccount) {
      return subAccount;
    }
    if (passphrase.length < 7 || passphrase.length > 32 || /\s/.test(passphrase)) {
      return failure(400, '400100', 'passphrase must contain 7-32 characters without spaces');
    }
    if (remark.length > 24) {
      return failure(400, '400100', 'remark must contain 1-24 characters');
    }
    const permissions = typeof body.permission === 'string' && body.permission !== '' ? body.permission.split(',').map((entry) => entry.trim()) : ['General'];
    if (!permissions.every((permission) => PERMISSIONS.includes(permission.toLowerCase()))) {
      return failure(400, '400100', 'permission is invalid');
    }
    const ips = typeof body.ipWhitelist === 'string' && body.ipWhitelist !== '' ? body.ipWhitelist.split(',').map((entry) => entry.trim()) : [];
    if (ips.length > MAX_IP_ADDRESSES_PER_KEY || !ips.every((entry) => ipaddr.isValid(entry))) {
      return failure(400, '400100', 'ipWhitelist is invalid: up to 20 IP addresses');
    }
    const expire = typeof body.expire === 'string' ? body.expire : '-1';
    if (!EXPIRY_DAYS.includes(expire)) {
      return failure(400, '400100', 'expire is invalid');
    }
    if (subAccount.keys.size >= maxKeys) {
      return failure(400, '400100', 'The number of API keys of this sub-account has reached the limit');
    }

    const key = addKey(subAccount, { remark, permission: permissions.join(','), ips, expire, passphrase });
    return success({
      subName: subAccount.name,
      remark,
      apiKey: key.apiKey,
      apiSecret: key.apiSecret,
      apiVersion: 3,
      passphrase,
      permission: key.permission,
      ipWhitelist: ips.join(','),
      createdAt: key.createdAt,
    });
  };

  const deleteKey = (query: URLSearchParams): EmulatorResponse => {
    const apiKey = query.get('apiKey') ?? '';
    const passphrase = query.get('passphrase') ?? '';
    if (apiKey === '' || passphrase === '') {
      return failure(400, '400100', 'apiKey and passphrase can not be empty');
    }
    const subAccount = subAccountNamed(query.get('subName'));
    if ('status' in subAccount) {
      return subAccount;
    }
    const key = subAccount.keys.get(apiKey);
    if (!key) {
      return failure(400, '400100', 'apiKey does not exist');
    }
    if (!constantTimeEqual(passphrase, key.passphrase)) {
      return failure(400, '400100', 'passphrase is incorrect');
    }
    subAccount.keys.delete(apiKey);
    keyOwners.delete(apiKey);
    return success({ subName: subAccount.name, apiKey });
  };

  const keyInfo = (caller: Caller): EmulatorResponse => {
    const info: Record<string, unknown> = {
      remark: caller.key.remark,
      apiKey: caller.key.apiKey,
      apiVersion: 3,
      permission: caller.key.permission,
      ipWhitelist: caller.key.ips.join(','),
      createdAt: caller.key.createdAt,
      uid: Number(caller.account.uid),
      isMaster: caller.account.kind === 'master',
    };
    if (caller.account.kind === 'sub') {
      info.subName = caller.account.name;
    }
    return success(info);
  };

  type Route = { weight: number; management: boolean; handle: (caller: Caller, query: URLSearchParams, body: Record<string, unknown>) => EmulatorResponse };
  const routes: Record<string, Route> = {
    'GET /api/v1/sub/api-key': { weight: WEIGHTS.list, management: true, handle: (_caller, query) => listKeys(query) },
    'POST /api/v1/sub/api-key': { weight: WEIGHTS.create, management: true, handle: (_caller, _query, body) => createKey(body) },
    'DELETE /api/v1/sub/api-key': { weight: WEIGHTS.delete, management: true, handle: (_caller, query) => deleteKey(query) },
    'GET /api/v1/user/api-key': { weight: WEIGHTS.keyInfo, management: false, handle: (caller) => keyInfo(caller) },
  };

  /** Checks the KC-API headers and the caller's address, and returns the caller or KuCoin's rejection. */
  const authenticate = (request: http.IncomingMessage, rawBody: string): Caller | EmulatorResponse => {
    const header = (name: string) => {
      const value = request.headers[name];
      return typeof value === 'string' ? value : '';
    };
    const apiKey = header('kc-api-key');
    const signature = header('kc-api-sign');
    const timestamp = header('kc-api-timestamp');
    const passphrase = header('kc-api-passphrase');
    if (apiKey === '' || signature === '' || timestamp === '' || passphrase === '') {
      return failure(401, '400001', 'Any of KC-API-KEY, KC-API-SIGN, KC-API-TIMESTAMP, KC-API-PASSPHRASE is missing in your request header.');
    }
    if (!/^\d{13}$/.test(timestamp) || Math.abs(Date.now() - Number(timestamp)) > TIMESTAMP_TOLERANCE_MS) {
      return failure(401, '400002', 'Invalid KC-API-TIMESTAMP.');
    }
    if (header('kc-api-key-version') !== '2') {
      return failure(401, '400009', 'Invalid KC-API-KEY-VERSION.');
    }

    const account = keyOwners.get(apiKey);
    const key = account?.keys.get(apiKey);
    if (!account || !key || (key.expiresAt !== null && key.expiresAt <= Date.now())) {
      return failure(401, '400003', 'KC-API-KEY does not exist.');
    }
    const expectedPassphrase = crypto.createHmac('sha256', key.apiSecret).update(key.passphrase, 'utf8').digest('base64');
    if (!constantTimeEqual(passphrase, expectedPassphrase)) {
      return failure(401, '400004', 'Invalid KC-API-PASSPHRASE.');
    }
    // KuCoin signs the endpoint as written before URL encoding.
    const expectedSignature = crypto
      .createHmac('sha256', key.apiSecret)
      .update(`${timestamp}${request.method ?? ''}${decodedEndpoint(request.url ?? '/')}${rawBody}`, 'utf8')
      .digest('base64');
    if (!constantTimeEqual(signature, expectedSignature)) {
      return failure(401, '400005', 'Invalid KC-API-SIGN.');
    }
    const address = callerAddress(request);
    if (key.ips.length > 0 && !key.ips.some((entry) => ipaddr.process(entry).toString() === address)) {
      return failure(401, '400006', `Invalid request IP, the current client IP is: ${address}.`);
    }
    return { key, account };
  };

  const respond = (request: http.IncomingMessage, rawBody: string): EmulatorResponse => {
    const url = new URL(request.url ?? '/', 'http://emulator');
    const route = `${request.method ?? ''} ${url.pathname}`;
    const handler = routes[route];
    if (!handler) {
      return failure(404, '404000', 'Url Not Found');
    }

    const caller = authenticate(request, rawBody);
    if ('status' in caller) {
      return caller;
    }
    const limited = charge(caller.account, handler.weight);
    if (limited) {
      return limited;
    }
    if (handler.management) {
      const rejection = requireMaster(caller);
      if (rejection) {
        return rejection;
      }
    }

    const replacement = replacements.findIndex((entry) => entry.route === route);
    if (replacement >= 0) {
      const [{ body }] = replacements.splice(replacement, 1);
      return { status: 200, body };
    }

    let body: Record<string, unknown> = {};
    if (request.method === 'POST') {
      try {
        body = JSON.parse(rawBody) as Record<string, unknown>;
      } catch {
        return failure(400, '400100', 'The request body is not valid JSON.');
      }
    }
    const response = handler.handle(caller, url.searchParams, body);
    return { ...response, headers: { ...poolHeaders(caller.account), ...response.headers } };
  };

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const { status, body, headers } = respond(request, Buffer.concat(chunks).toString('utf8'));
      response.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      response.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const url = `http://${HOST}:${(server.address() as AddressInfo).port}`;

  return {
    url,
    get rateLimitedCount() {
      return rateLimitedCount;
    },
    seedAccount(seed = {}) {
      const name = seed.subName ?? `sub${crypto.randomBytes(6).toString('hex')}`;
      if (subAccounts.has(name)) {
        throw new Error(`Sub-account "${name}" already exists in this KuCoin emulator; pick another name.`);
      }
      const management = addKey(master, { remark: `rotor management ${master.keys.size + 1}`, permission: 'General', ips: seed.managementIps ?? [] });
      const subAccount: Account = { kind: 'sub', name, uid: randomUid(), keys: new Map() };
      subAccounts.set(name, subAccount);
      const current = addKey(subAccount, { remark: 'trading bot', permission: 'General,Spot', ips: seed.appKeyIps ?? [HOST] });
      return { subName: name, managementCredential: credentialOf(management), currentKey: credentialOf(current) };
    },
    seedKey(subName, seed = {}) {
      const subAccount = subAccounts.get(subName);
      if (!subAccount) {
        throw new Error(`No sub-account "${subName}" in the KuCoin emulator; seed it with seedAccount first.`);
      }
      const key = addKey(subAccount, { remark: seed.remark ?? `extra ${subAccount.keys.size + 1}`, permission: 'General', ips: seed.ips ?? [HOST] });
      return credentialOf(key);
    },
    keys(subName) {
      const subAccount = subAccounts.get(subName);
      return [...(subAccount?.keys.values() ?? [])].map(({ apiKey, remark, permission, ips, expire, createdAt }) => ({
        apiKey,
        remark,
        permission,
        ips: [...ips],
        expire,
        createdAt,
      }));
    },
    replaceNextResponse(method, path, body) {
      replacements.push({ route: `${method} ${path}`, body });
    },
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/**
 * Returns KuCoin's error code when the emulator rejects the key for GET /api/v1/user/api-key,
 * or null when it accepts it. Signs with node:crypto, independently of the provider.
 */
export async function kucoinKeyRejection(url: string, key: KucoinKeyCredential): Promise<string | null> {
  const timestamp = String(Date.now());
  const path = '/api/v1/user/api-key';
  const sign = (message: string) => crypto.createHmac('sha256', key.api_secret).update(message, 'utf8').digest('base64');
  const response = await fetch(`${url}${path}`, {
    headers: {
      'KC-API-KEY': key.api_key,
      'KC-API-SIGN': sign(`${timestamp}GET${path}`),
      'KC-API-TIMESTAMP': timestamp,
      'KC-API-PASSPHRASE': sign(key.passphrase),
      'KC-API-KEY-VERSION': '2',
    },
    signal: AbortSignal.timeout(5_000),
  });
  const body = (await response.json()) as { code?: string };
  return body.code === '200000' ? null : (body.code ?? `HTTP ${response.status}`);
}

function success(data: unknown): EmulatorResponse {
  return { status: 200, body: { code: '200000', data } };
}

function failure(status: number, code: string, msg: string): EmulatorResponse {
  return { status, body: { code, msg } };
}

function rateLimitHeaders(limit: number, remaining: number, resetMs: number): Record<string, string> {
  return { 'gw-ratelimit-limit': String(limit), 'gw-ratelimit-remaining': String(Math.max(0, remaining)), 'gw-ratelimit-reset': String(Math.ceil(resetMs)) };
}

/** Returns the path and query of a request URL with every query component URL-decoded. */
function decodedEndpoint(requestUrl: string): string {
  const [path, query] = requestUrl.split('?', 2);
  if (query === undefined) {
    return path;
  }
  const decoded = query.split('&').map((pair) =>
    pair
      .split('=')
      .map((part) => decodeURIComponent(part.replace(/\+/g, ' ')))
      .join('='),
  );
  return `${path}?${decoded.join('&')}`;
}

function credentialOf(key: StoredKey): KucoinKeyCredential {
  return { api_key: key.apiKey, api_secret: key.apiSecret, passphrase: key.passphrase };
}

function randomUid(): string {
  return String(crypto.randomInt(100_000_000, 999_999_999));
}

function callerAddress(request: http.IncomingMessage): string {
  // ipaddr.process turns an IPv4-mapped IPv6 address (::ffff:127.0.0.1) into plain IPv4.
  return ipaddr.process(request.socket.remoteAddress ?? '0.0.0.0').toString();
}

function constantTimeEqual(left: string, right: string): boolean {
  const a = Buffer.from(left);
  const b = Buffer.from(right);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

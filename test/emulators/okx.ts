import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * An in-memory emulator of the OKX v5 endpoints the okx provider uses: create, query and delete
 * a sub-account's API key, and GET /api/v5/account/config to verify a key. It listens on
 * 127.0.0.1 only and enforces OKX's documented rules. It checks the OK-ACCESS signature,
 * passphrase and timestamp, and the caller's address against each key's IP allowlist. Key
 * management needs a master key bound to IP addresses with the Trade permission, and a
 * sub-account holds at most 50 keys with unique notes and at most 20 IP addresses each. The
 * per-endpoint rate limits apply as OKX documents them.
 *
 * It signs and checks requests with node:crypto directly, so the provider's own signing code is
 * tested against it rather than with it.
 */

const HOST = '127.0.0.1';

// OKX rejects a request whose timestamp is more than 30 seconds from its clock (error 50102).
const TIMESTAMP_TOLERANCE_MS = 30_000;

// OKX documents these per-user limits: 1 request per second to create or delete a sub-account
// key, 20 requests per 2 seconds to list them, and 5 per 2 seconds to read the account config.
const DEFAULT_MANAGEMENT_RATE_LIMIT_PER_SECOND = 1;
const LIST_RATE_LIMIT = { requests: 20, windowMs: 2_000 };
const ACCOUNT_CONFIG_RATE_LIMIT = { requests: 5, windowMs: 2_000 };

const DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT = 50;
const MAX_IP_ADDRESSES_PER_KEY = 20;
const OKX_LABEL = /^[A-Za-z0-9]{1,50}$/;
const SUB_ACCOUNT_NAME = /^[A-Za-z0-9]{6,20}$/;
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const API_KEY_FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface OkxEmulatorOptions {
  /** Create and delete requests allowed per second for the master account. Default 1, as OKX documents. */
  rateLimitPerSecond?: number;
  /**
   * Response to a rate-limited request. OKX documents both forms of code 50011: HTTP 429
   * "Too Many Requests" (default), and HTTP 200 with the code in the body.
   */
  rateLimitResponse?: 'http-429' | 'in-body';
  /** API keys one sub-account may hold. Default 50, as OKX documents. */
  maxKeysPerSubAccount?: number;
}

/** An API key in the shape of the okx provider's credential and secret schemas. */
export interface OkxKeyCredential {
  api_key: string;
  secret_key: string;
  passphrase: string;
}

export interface SeedOkxAccountOptions {
  /** Sub-account name; a unique one is generated when absent. */
  subAccount?: string;
  /** Addresses the management key is bound to. Default ['127.0.0.1']. OKX requires at least one for key management. */
  managementIps?: string[];
  /** Permission of the management key. Default 'trade', which key management requires. */
  managementPerm?: 'read_only' | 'trade';
  /** Addresses the first app key is bound to. Default ['127.0.0.1']. */
  appKeyIps?: string[];
}

export interface SeededOkxAccount {
  subAccount: string;
  /** An API key of the master account, in the shape of the okx provider's credential schema. */
  managementCredential: OkxKeyCredential;
  /** The sub-account's first API key: the key consumers use before the first rotation. */
  currentKey: OkxKeyCredential;
}

/** An API key as the emulator stores it, without its secrets. */
export interface EmulatedOkxKey {
  apiKey: string;
  label: string;
  perm: string;
  ips: string[];
  createdAt: number;
}

export interface OkxEmulator {
  /** Base URL, such as http://127.0.0.1:5123. */
  url: string;
  /** Number of requests rejected with code 50011 so far. */
  readonly rateLimitedCount: number;
  /** Adds a management key of the master account and a sub-account with one API key. */
  seedAccount(options?: SeedOkxAccountOptions): SeededOkxAccount;
  /** Adds an API key to an existing sub-account, past the rate limit and the key limit checks. */
  seedKey(subAccount: string, options?: { label?: string; perm?: 'read_only' | 'trade'; ips?: string[] }): OkxKeyCredential;
  /** The sub-account's keys, oldest first. */
  keys(subAccount: string): EmulatedOkxKey[];
  /** Returns this body with HTTP 200 for the next authenticated request to this method and path. */
  replaceNextResponse(method: string, path: string, body: unknown): void;
  stop(): Promise<void>;
}

interface StoredKey extends EmulatedOkxKey {
  secretKey: string;
  passphrase: string;
}

interface Account {
  uid: string;
  kind: 'master' | 'sub';
  name: string;
  keys: Map<string, StoredKey>;
}

interface Caller {
  key: StoredKey;
  account: Account;
}

interface EmulatorResponse {
  status: number;
  body: unknown;
}

/** Starts the emulator on a free loopback port. */
export async function startOkxEmulator(options: OkxEmulatorOptions = {}): Promise<OkxEmulator> {
  const managementLimit = { requests: options.rateLimitPerSecond ?? DEFAULT_MANAGEMENT_RATE_LIMIT_PER_SECOND, windowMs: 1_000 };
  const rateLimitResponse = options.rateLimitResponse ?? 'http-429';
  const maxKeys = options.maxKeysPerSubAccount ?? DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT;

  const master: Account = { uid: randomUid(), kind: 'master', name: 'master', keys: new Map() };
  const subAccounts = new Map<string, Account>();
  const keyOwners = new Map<string, Account>();
  const requestLog = new Map<string, number[]>();
  const replacements: Array<{ route: string; body: unknown }> = [];
  let rateLimitedCount = 0;

  const addKey = (account: Account, fields: { label: string; perm: string; ips: string[]; passphrase?: string }): StoredKey => {
    const key: StoredKey = {
      apiKey: crypto.randomUUID(),
      secretKey: crypto.randomBytes(16).toString('hex').toUpperCase(),
      passphrase: fields.passphrase ?? seedPassphrase(),
      label: fields.label,
      perm: fields.perm,
      ips: fields.ips,
      createdAt: Date.now(),
    };
    account.keys.set(key.apiKey, key);
    keyOwners.set(key.apiKey, account);
    return key;
  };

  /** Admits and counts the request when its bucket has room, and returns false when the bucket is full. */
  const admit = (bucket: string, limit: { requests: number; windowMs: number }): boolean => {
    const now = Date.now();
    const recent = (requestLog.get(bucket) ?? []).filter((time) => now - time < limit.windowMs);
    if (recent.length >= limit.requests) {
      requestLog.set(bucket, recent);
      return false;
    }
    recent.push(now);
    requestLog.set(bucket, recent);
    return true;
  };

  const rateLimited = (): EmulatorResponse => {
    rateLimitedCount++;
    return rateLimitResponse === 'http-429'
      ? { status: 429, body: { code: '50011', msg: 'Too Many Requests', data: [] } }
      : failure(200, '50011', 'Rate limit reached. Please refer to API documentation and throttle requests accordingly.');
  };

  /** Checks what every key-management endpoint shares: a master key, and for writes an IP-bound Trade key. */
  const managementRejection = (caller: Caller, write: boolean): EmulatorResponse | undefined => {
    if (caller.account.kind !== 'master') {
      return failure(200, '59500', 'Only the API key of the main account has permission.');
    }
    if (write && caller.key.ips.length === 0) {
      return failure(403, '50035', 'This endpoint requires that APIKey must be bound to IP');
    }
    if (write && !caller.key.perm.split(',').includes('trade')) {
      return failure(200, '50120', "This API key doesn't have permission to use this function");
    }
    return undefined;
  };

  const listKeys = (caller: Caller, query: URLSearchParams): EmulatorResponse => {
    const rejection = managementRejection(caller, false);
    if (rejection) {
      return rejection;
    }
    if (!admit(`list:${master.uid}`, LIST_RATE_LIMIT)) {
      return rateLimited();
    }
    const name = query.get('subAcct') ?? '';
    if (name === '') {
      return failure(400, '50014', 'Parameter subAcct can not be empty.');
    }
    const subAccount = subAccounts.get(name);
    if (!subAccount) {
      return failure(200, '59510', 'Sub-account does not exist');
    }
    const only = query.get('apiKey');
    const keys = [...subAccount.keys.values()].filter((key) => !only || key.apiKey === only);
    return success(keys.map((key) => ({ label: key.label, apiKey: key.apiKey, perm: key.perm, ip: key.ips.join(','), ts: String(key.createdAt) })));
  };

  const createKey = (caller: Caller, body: Record<string, unknown>): EmulatorResponse => {
    const rejection = managementRejection(caller, true);
    if (rejection) {
      return rejection;
    }
    if (!admit(`manage:${master.uid}`, managementLimit)) {
      return rateLimited();
    }
    for (const parameter of ['subAcct', 'label', 'passphrase']) {
      if (typeof body[parameter] !== 'string' || body[parameter] === '') {
        return failure(400, '50014', `Parameter ${parameter} can not be empty.`);
      }
    }
    const { subAcct, label, passphrase } = body as Record<'subAcct' | 'label' | 'passphrase', string>;
    const subAccount = subAccounts.get(subAcct);
    if (!subAccount) {
      return failure(200, '59510', 'Sub-account does not exist');
    }
    if (!OKX_LABEL.test(label)) {
      return failure(400, '51000', 'Parameter label error');
    }
    if (!isValidPassphrase(passphrase)) {
      return failure(200, '59505', 'The passphrase format is incorrect.');
    }
    const perm = body.perm ?? 'read_only';
    if (perm !== 'read_only' && perm !== 'trade') {
      return failure(400, '51000', 'Parameter perm error');
    }
    const ips = typeof body.ip === 'string' && body.ip !== '' ? body.ip.split(',').map((entry) => entry.trim()) : [];
    if (ips.length > MAX_IP_ADDRESSES_PER_KEY) {
      return failure(200, '59503', 'Each API key can bind up to 20 IP addresses');
    }
    if (!ips.every(isIpOrCidr)) {
      return failure(400, '51000', 'Parameter ip error');
    }
    if ([...subAccount.keys.values()].some((key) => key.label === label)) {
      return failure(200, '59502', 'This note name already exists. Enter a unique API key note name');
    }
    if (subAccount.keys.size >= maxKeys) {
      return failure(200, '59501', `Each account can create up to ${maxKeys} API keys`);
    }

    const key = addKey(subAccount, { label, perm: perm === 'trade' ? 'read_only,trade' : 'read_only', ips, passphrase });
    return success([
      { subAcct, label, apiKey: key.apiKey, secretKey: key.secretKey, passphrase, perm, ip: ips.join(','), ts: String(key.createdAt) },
    ]);
  };

  const deleteKey = (caller: Caller, body: Record<string, unknown>): EmulatorResponse => {
    const rejection = managementRejection(caller, true);
    if (rejection) {
      return rejection;
    }
    if (!admit(`manage:${master.uid}`, managementLimit)) {
      return rateLimited();
    }
    for (const parameter of ['subAcct', 'apiKey']) {
      if (typeof body[parameter] !== 'string' || body[parameter] === '') {
        return failure(400, '50014', `Parameter ${parameter} can not be empty.`);
      }
    }
    const { subAcct, apiKey } = body as Record<'subAcct' | 'apiKey', string>;
    const subAccount = subAccounts.get(subAcct);
    if (!subAccount) {
      return failure(200, '59510', 'Sub-account does not exist');
    }
    if (!subAccount.keys.delete(apiKey)) {
      return failure(200, '59506', "API key doesn't exist.");
    }
    keyOwners.delete(apiKey);
    return success([{ subAcct }]);
  };

  const accountConfig = (caller: Caller): EmulatorResponse => {
    if (!admit(`config:${caller.account.uid}`, ACCOUNT_CONFIG_RATE_LIMIT)) {
      return rateLimited();
    }
    return success([
      {
        uid: caller.account.uid,
        mainUid: master.uid,
        acctLv: '2',
        posMode: 'net_mode',
        label: caller.key.label,
        ip: caller.key.ips.join(','),
        perm: caller.key.perm,
        type: caller.account.kind === 'master' ? '0' : '1',
      },
    ]);
  };

  const routes: Record<string, (caller: Caller, query: URLSearchParams, body: Record<string, unknown>) => EmulatorResponse> = {
    'GET /api/v5/users/subaccount/apikey': (caller, query) => listKeys(caller, query),
    'POST /api/v5/users/subaccount/apikey': (caller, _query, body) => createKey(caller, body),
    'POST /api/v5/users/subaccount/delete-apikey': (caller, _query, body) => deleteKey(caller, body),
    'GET /api/v5/account/config': (caller) => accountConfig(caller),
  };

  /** Checks the OK-ACCESS headers and the caller's address, and returns the caller or OKX's rejection. */
  const authenticate = (request: http.IncomingMessage, rawBody: string): Caller | EmulatorResponse => {
    const header = (name: string) => {
      const value = request.headers[name];
      return typeof value === 'string' ? value : '';
    };
    const apiKey = header('ok-access-key');
    const passphrase = header('ok-access-passphrase');
    const signature = header('ok-access-sign');
    const timestamp = header('ok-access-timestamp');
    if (apiKey === '') {
      return failure(401, '50103', 'Request header "OK-ACCESS-KEY" cannot be empty.');
    }
    if (passphrase === '') {
      return failure(401, '50104', 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.');
    }
    if (signature === '') {
      return failure(401, '50106', 'Request header "OK-ACCESS-SIGN" cannot be empty.');
    }
    if (timestamp === '') {
      return failure(401, '50107', 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.');
    }
    if (!ISO_TIMESTAMP.test(timestamp) || Number.isNaN(Date.parse(timestamp))) {
      return failure(401, '50112', 'Invalid OK-ACCESS-TIMESTAMP.');
    }
    if (Math.abs(Date.now() - Date.parse(timestamp)) > TIMESTAMP_TOLERANCE_MS) {
      return failure(401, '50102', 'Timestamp request expired.');
    }
    if (!API_KEY_FORMAT.test(apiKey)) {
      return failure(401, '50111', 'Invalid OK-ACCESS-KEY.');
    }

    // OKX's error table lists 50119 with HTTP 200, but recorded live responses for an unknown key
    // carry HTTP 401. The provider handles both.
    const account = keyOwners.get(apiKey);
    const key = account?.keys.get(apiKey);
    if (!account || !key) {
      return failure(401, '50119', "API key doesn't exist");
    }
    if (passphrase !== key.passphrase) {
      return failure(401, '50105', 'Request header "OK-ACCESS-PASSPHRASE" incorrect.');
    }
    const expected = crypto
      .createHmac('sha256', key.secretKey)
      .update(`${timestamp}${request.method ?? ''}${request.url ?? ''}${rawBody}`, 'utf8')
      .digest('base64');
    if (!constantTimeEqual(signature, expected)) {
      return failure(401, '50113', 'Invalid signature.');
    }
    const address = callerAddress(request);
    if (key.ips.length > 0 && !key.ips.some((entry) => ipMatches(address, entry))) {
      return failure(401, '50110', `Your IP ${address} is not included in your API key's IP whitelist.`);
    }
    return { key, account };
  };

  const respond = (request: http.IncomingMessage, rawBody: string): EmulatorResponse => {
    const url = new URL(request.url ?? '/', 'http://emulator');
    const route = `${request.method ?? ''} ${url.pathname}`;
    const handler = routes[route];
    if (!handler) {
      return { status: 404, body: { code: '404', msg: 'Not Found' } };
    }

    const caller = authenticate(request, rawBody);
    if ('status' in caller) {
      return caller;
    }

    const replacement = replacements.findIndex((entry) => entry.route === route);
    if (replacement >= 0) {
      const [{ body }] = replacements.splice(replacement, 1);
      return { status: 200, body };
    }

    let body: Record<string, unknown> = {};
    if (request.method === 'POST') {
      if (rawBody === '') {
        return failure(400, '50000', 'Body for POST request cannot be empty.');
      }
      try {
        body = JSON.parse(rawBody) as Record<string, unknown>;
      } catch {
        return failure(400, '50002', 'JSON syntax error');
      }
    }
    return handler(caller, url.searchParams, body);
  };

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const { status, body } = respond(request, Buffer.concat(chunks).toString('utf8'));
      response.writeHead(status, { 'Content-Type': 'application/json' });
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
      const name = seed.subAccount ?? `sub${crypto.randomBytes(6).toString('hex')}`;
      if (!SUB_ACCOUNT_NAME.test(name) || subAccounts.has(name)) {
        throw new Error(`Sub-account name "${name}" is invalid or taken: expected 6 to 20 letters or digits, unique in this emulator.`);
      }
      const management = addKey(master, {
        label: `rotormanagement${master.keys.size + 1}`,
        perm: seed.managementPerm === 'read_only' ? 'read_only' : 'read_only,trade',
        ips: seed.managementIps ?? [HOST],
      });
      const subAccount: Account = { uid: randomUid(), kind: 'sub', name, keys: new Map() };
      subAccounts.set(name, subAccount);
      const current = addKey(subAccount, { label: 'seeded', perm: 'read_only', ips: seed.appKeyIps ?? [HOST] });
      return { subAccount: name, managementCredential: credentialOf(management), currentKey: credentialOf(current) };
    },
    seedKey(subAccountName, seed = {}) {
      const subAccount = subAccounts.get(subAccountName);
      if (!subAccount) {
        throw new Error(`No sub-account "${subAccountName}" in the OKX emulator; seed it with seedAccount first.`);
      }
      const label = seed.label ?? `extra${subAccount.keys.size + 1}`;
      const key = addKey(subAccount, { label, perm: seed.perm === 'trade' ? 'read_only,trade' : 'read_only', ips: seed.ips ?? [HOST] });
      return credentialOf(key);
    },
    keys(subAccountName) {
      const subAccount = subAccounts.get(subAccountName);
      return [...(subAccount?.keys.values() ?? [])].map(({ apiKey, label, perm, ips, createdAt }) => ({ apiKey, label, perm, ips: [...ips], createdAt }));
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
 * Returns OKX's error code when the emulator rejects the key for GET /api/v5/account/config,
 * or null when it accepts it. Signs with node:crypto, independently of the provider.
 */
export async function okxKeyRejection(url: string, key: OkxKeyCredential): Promise<string | null> {
  const timestamp = new Date().toISOString();
  const path = '/api/v5/account/config';
  const signature = crypto.createHmac('sha256', key.secret_key).update(`${timestamp}GET${path}`, 'utf8').digest('base64');
  const response = await fetch(`${url}${path}`, {
    headers: { 'OK-ACCESS-KEY': key.api_key, 'OK-ACCESS-SIGN': signature, 'OK-ACCESS-TIMESTAMP': timestamp, 'OK-ACCESS-PASSPHRASE': key.passphrase },
    signal: AbortSignal.timeout(5_000),
  });
  const body = (await response.json()) as { code?: string };
  return body.code === '0' ? null : (body.code ?? `HTTP ${response.status}`);
}

function success(data: unknown[]): EmulatorResponse {
  return { status: 200, body: { code: '0', msg: '', data } };
}

function failure(status: number, code: string, msg: string): EmulatorResponse {
  return { status, body: { code, msg, data: [] } };
}

function credentialOf(key: StoredKey): OkxKeyCredential {
  return { api_key: key.apiKey, secret_key: key.secretKey, passphrase: key.passphrase };
}

function randomUid(): string {
  return String(crypto.randomInt(100_000_000, 999_999_999));
}

/** Generates a passphrase that meets OKX's rule, for seeded keys. */
function seedPassphrase(): string {
  return `Seed${crypto.randomBytes(8).toString('hex')}!7`;
}

/** OKX's passphrase rule: 8 to 32 characters with a digit, an uppercase and a lowercase letter and a special character. */
function isValidPassphrase(passphrase: string): boolean {
  return (
    passphrase.length >= 8 &&
    passphrase.length <= 32 &&
    !/\s/.test(passphrase) &&
    /\d/.test(passphrase) &&
    /[A-Z]/.test(passphrase) &&
    /[a-z]/.test(passphrase) &&
    /[^A-Za-z0-9]/.test(passphrase)
  );
}

function isIpOrCidr(entry: string): boolean {
  return entry.includes('/') ? ipaddr.isValidCIDR(entry) : ipaddr.isValid(entry);
}

function ipMatches(address: string, entry: string): boolean {
  const caller = ipaddr.process(address);
  if (!entry.includes('/')) {
    return ipaddr.process(entry).toString() === caller.toString();
  }
  const [network, prefixLength] = ipaddr.parseCIDR(entry);
  return network.kind() === caller.kind() && caller.match(network, prefixLength);
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

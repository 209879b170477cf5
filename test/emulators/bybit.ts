import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';
import { hmacSha256Hex, signaturesEqual } from '../../providers/signing';

/**
 * An in-memory emulator of the Bybit v5 endpoints that manage sub-account API keys, for the
 * tests, the demo and the benchmark. It listens on 127.0.0.1 only and enforces Bybit's rules as
 * its documentation states them: HMAC signatures and the receive window, unknown and deleted
 * keys, IP bindings checked against the caller's address, read-only and master-only endpoints,
 * the 90-day expiry of keys without an IP binding, and the per-UID rate limit, which it reports
 * with retCode 10006 and the X-Bapi-Limit headers.
 *
 * Endpoints: GET /v5/user/sub-apikeys, POST /v5/user/create-sub-api,
 * POST /v5/user/delete-sub-api and GET /v5/user/query-api.
 */

const HOST = '127.0.0.1';

// Bybit expires an API key without an IP binding 90 days after it was created.
const UNBOUND_KEY_LIFETIME_MS = 90 * 24 * 3_600_000;

// Bybit accepts a request whose timestamp is at most 1 second ahead of its clock.
const FUTURE_TIMESTAMP_TOLERANCE_MS = 1_000;

// NOTE: Bybit documents neither a maximum number of keys per sub account nor the retCode for
// reaching one. The emulator uses the provider's estimate of 20 and returns retCode 10001.
const DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT = 20;

const MASTER_PERMISSIONS_FOR_KEY_MANAGEMENT = ['AccountTransfer', 'SubMemberTransfer', 'Withdraw'];

const PERMISSION_VALUES: Record<string, string[]> = {
  ContractTrade: ['Order', 'Position'],
  Spot: ['SpotTrade'],
  Wallet: ['AccountTransfer', 'SubMemberTransferList'],
  Options: ['OptionsTrade'],
  Exchange: ['ExchangeHistory'],
  Earn: ['Earn'],
  CopyTrading: ['CopyTrading'],
};

export interface BybitEmulatorOptions {
  /**
   * Requests per rolling second that each UID may send to each endpoint. Past it, the emulator
   * returns retCode 10006 as Bybit does. Unlimited when absent.
   */
  rateLimitPerSecond?: number;
  /** API keys one sub account may hold. Default 20. */
  maxKeysPerSubAccount?: number;
}

/** An API key and its secret, in the shape of the provider's credential and secret. */
export interface BybitKeyPair {
  api_key: string;
  api_secret: string;
}

export interface SeedBybitAccountOptions {
  /** Adds the sub account to this existing master account instead of a new one. */
  masterUid?: string;
  /** IP binding of the seeded sub-account key. Absent means none, which Bybit lists as "*". */
  currentKeyIps?: string[];
  /** Seeds a read-only management key, which Bybit does not allow to manage keys. */
  managementReadOnly?: boolean;
}

export interface SeededBybitAccount {
  masterUid: string;
  subUid: string;
  /** API key of the master account, for Vault's management credential path. */
  managementCredential: BybitKeyPair;
  /** The sub account's first API key, which a rotation replaces. */
  currentKey: BybitKeyPair;
}

/** A key as the emulator stores it, for assertions. Its secret is left out. */
export interface EmulatedKeyDetails {
  apiKey: string;
  uid: string;
  note: string;
  readOnly: boolean;
  /** Bound addresses, or ['*'] when the key has no IP binding. */
  ips: string[];
  permissions: Record<string, string[]>;
  createdAt: string;
  expiredAt: string;
}

export interface BybitEmulator {
  /** Base URL, such as http://127.0.0.1:41234. */
  url: string;
  stop(): Promise<void>;
  seedAccount(options?: SeedBybitAccountOptions): SeededBybitAccount;
  /** Adds keys to a sub account without any request, such as to fill it up to its limit. */
  seedSubAccountKeys(subUid: string, count: number): string[];
  /** The sub account's API keys, oldest first. */
  keyIds(subUid: string): string[];
  keyDetails(apiKey: string): EmulatedKeyDetails | undefined;
  /** True when the emulator accepts the key: GET /v5/user/query-api signed with it returns retCode 0. */
  accepts(key: BybitKeyPair): Promise<boolean>;
  /** Answers the next authenticated request to the endpoint (such as `GET /v5/user/sub-apikeys`) with this body. */
  replaceNextResponse(endpoint: string, body: unknown): void;
  /** How many requests the emulator rejected with retCode 10006. */
  readonly rateLimitedResponses: number;
}

interface StoredKey extends EmulatedKeyDetails {
  secret: string;
  id: string;
  isMaster: boolean;
}

interface Account {
  uid: string;
  /** Master UID of a sub account, or undefined for a master account. */
  masterUid?: string;
}

/** A Bybit error response: HTTP 200 with a non-zero retCode. */
class BybitFailure extends Error {
  constructor(
    readonly retCode: number,
    readonly retMsg: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(retMsg);
  }
}

interface RouteContext {
  caller: StoredKey;
  query: URLSearchParams;
  body: Record<string, unknown>;
}

export async function startBybitEmulator(options: BybitEmulatorOptions = {}): Promise<BybitEmulator> {
  const accounts = new Map<string, Account>();
  const keys = new Map<string, StoredKey>();
  const requestTimes = new Map<string, number[]>();
  const replacements = new Map<string, unknown>();
  const maxKeys = options.maxKeysPerSubAccount ?? DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT;
  let rateLimitedResponses = 0;

  const routes: Record<string, (route: RouteContext) => unknown> = {
    'GET /v5/user/sub-apikeys': listSubApiKeys,
    'POST /v5/user/create-sub-api': createSubApiKey,
    'POST /v5/user/delete-sub-api': deleteSubApiKey,
    'GET /v5/user/query-api': queryApiKey,
  };

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      respond(request, Buffer.concat(chunks).toString('utf8'), response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const url = `http://${HOST}:${(server.address() as AddressInfo).port}`;

  function respond(request: http.IncomingMessage, rawBody: string, response: http.ServerResponse): void {
    const target = new URL(request.url ?? '/', url);
    const endpoint = `${request.method} ${target.pathname}`;
    const route = routes[endpoint];
    if (!route) {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end('Not Found');
      return;
    }

    let headers: Record<string, string> = {};
    try {
      const caller = authenticate(request, target, rawBody);
      headers = consumeRateLimit(caller.uid, endpoint);
      checkIpBinding(caller, request.socket.remoteAddress);

      if (replacements.has(endpoint)) {
        const replacement = replacements.get(endpoint);
        replacements.delete(endpoint);
        sendJson(response, headers, replacement);
        return;
      }

      const body = request.method === 'POST' ? parseBody(rawBody) : {};
      const result = route({ caller, query: target.searchParams, body });
      sendJson(response, headers, { retCode: 0, retMsg: 'OK', result, retExtInfo: {}, time: Date.now() });
    } catch (error) {
      if (!(error instanceof BybitFailure)) {
        // A bug in the emulator returns HTTP 500 as a server error would, so the test sees it instead of a crash.
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end(error instanceof Error ? error.message : String(error));
        return;
      }
      if (error.retCode === 10006) {
        rateLimitedResponses += 1;
      }
      sendJson(response, { ...headers, ...error.headers }, { retCode: error.retCode, retMsg: error.retMsg, result: {}, retExtInfo: {}, time: Date.now() });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Authentication, rate limit and IP binding, in the order Bybit applies them
  // -------------------------------------------------------------------------------------------

  function authenticate(request: http.IncomingMessage, target: URL, rawBody: string): StoredKey {
    const apiKey = headerValue(request, 'x-bapi-api-key');
    const timestamp = headerValue(request, 'x-bapi-timestamp');
    const recvWindow = headerValue(request, 'x-bapi-recv-window') ?? '5000';
    const sign = headerValue(request, 'x-bapi-sign');

    const caller = apiKey === undefined ? undefined : keys.get(apiKey);
    if (!caller) {
      throw new BybitFailure(10003, 'API key is invalid.');
    }

    const now = Date.now();
    const sentAt = Number(timestamp);
    const window = Number(recvWindow);
    if (!Number.isInteger(sentAt) || !Number.isInteger(window) || now - window > sentAt || sentAt >= now + FUTURE_TIMESTAMP_TOLERANCE_MS) {
      throw new BybitFailure(
        10002,
        `invalid request, please check your server timestamp or recv_window param. req_timestamp[${timestamp}],server_timestamp[${now}],recv_window[${recvWindow}]`,
      );
    }

    const payload = request.method === 'GET' ? target.search.replace(/^\?/, '') : rawBody;
    const expected = hmacSha256Hex(caller.secret, `${timestamp}${caller.apiKey}${recvWindow}${payload}`);
    if (sign === undefined || !signaturesEqual(sign, expected)) {
      throw new BybitFailure(10004, 'Error sign, please check your signature generation algorithm.');
    }

    if (caller.expiredAt !== '' && Date.parse(caller.expiredAt) <= now) {
      throw new BybitFailure(33004, 'Your api key has expired.');
    }
    return caller;
  }

  function consumeRateLimit(uid: string, endpoint: string): Record<string, string> {
    const limit = options.rateLimitPerSecond;
    const now = Date.now();
    if (limit === undefined) {
      return { 'X-Bapi-Limit-Status': '1000', 'X-Bapi-Limit': '1000', 'X-Bapi-Limit-Reset-Timestamp': String(now) };
    }

    const bucket = `${uid} ${endpoint}`;
    const recent = (requestTimes.get(bucket) ?? []).filter((time) => time > now - 1_000);
    if (recent.length >= limit) {
      requestTimes.set(bucket, recent);
      // The window frees a slot when its oldest request is one second old.
      const reset = recent[0] + 1_000;
      throw new BybitFailure(10006, 'Too many visits!', {
        'X-Bapi-Limit-Status': '0',
        'X-Bapi-Limit': String(limit),
        'X-Bapi-Limit-Reset-Timestamp': String(reset),
      });
    }
    recent.push(now);
    requestTimes.set(bucket, recent);
    return { 'X-Bapi-Limit-Status': String(limit - recent.length), 'X-Bapi-Limit': String(limit), 'X-Bapi-Limit-Reset-Timestamp': String(now) };
  }

  function checkIpBinding(caller: StoredKey, remoteAddress: string | undefined): void {
    if (caller.ips.includes('*')) {
      return;
    }
    const address = remoteAddress === undefined ? '' : ipaddr.process(remoteAddress).toString();
    if (!caller.ips.includes(address)) {
      throw new BybitFailure(10010, "Unmatched IP, please check your API key's bound IP addresses.");
    }
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints
  // -------------------------------------------------------------------------------------------

  function listSubApiKeys({ caller, query }: RouteContext) {
    requireMaster(caller);
    const subUid = query.get('subMemberId') ?? '';
    requireOwnSubAccount(caller, subUid);

    const limit = Number(query.get('limit') ?? '20');
    if (!Number.isInteger(limit) || limit < 1 || limit > 20) {
      throw new BybitFailure(10001, 'limit must be between 1 and 20');
    }
    const offset = Number(query.get('cursor') ?? '0');
    if (!Number.isInteger(offset) || offset < 0) {
      throw new BybitFailure(10001, 'invalid cursor');
    }

    const owned = keysOf(subUid);
    const page = owned.slice(offset, offset + limit);
    const nextOffset = offset + page.length;
    return {
      result: page.map((key) => ({
        id: key.id,
        ips: key.ips,
        apiKey: key.apiKey,
        note: key.note,
        status: key.ips.includes('*') ? 3 : 1,
        expiredAt: key.expiredAt,
        createdAt: key.createdAt,
        type: 1,
        permissions: key.permissions,
        secret: '******',
        readOnly: key.readOnly,
        deadlineDay: key.expiredAt === '' ? 0 : Math.ceil((Date.parse(key.expiredAt) - Date.now()) / 86_400_000),
        flag: 'hmac',
      })),
      nextPageCursor: nextOffset < owned.length ? String(nextOffset) : '',
    };
  }

  function createSubApiKey({ caller, body }: RouteContext) {
    requireKeyManager(caller);
    const subUid = typeof body.subuid === 'number' ? String(body.subuid) : '';
    if (subUid === '') {
      throw new BybitFailure(10001, 'subuid must be an integer');
    }
    requireOwnSubAccount(caller, subUid);
    if (body.readOnly !== 0 && body.readOnly !== 1) {
      throw new BybitFailure(10001, 'readOnly must be 0 or 1');
    }
    if (body.note !== undefined && typeof body.note !== 'string') {
      throw new BybitFailure(10001, 'note must be a string');
    }
    const permissions = parsePermissions(body.permissions);
    const ips = parseIps(body.ips);
    if (keysOf(subUid).length >= maxKeys) {
      throw new BybitFailure(10001, `the number of API keys of this account has reached the limit of ${maxKeys}`);
    }

    const key = storeKey({ uid: subUid, note: body.note ?? '', readOnly: body.readOnly === 1, ips, permissions, isMaster: false });
    return { id: key.id, note: key.note, apiKey: key.apiKey, readOnly: body.readOnly, secret: key.secret, permissions: key.permissions };
  }

  function deleteSubApiKey({ caller, body }: RouteContext) {
    requireKeyManager(caller);
    const target = body.apikey;
    if (caller.isMaster) {
      // The master key must name the key. A sub key deletes itself and must not name one.
      if (typeof target !== 'string' || target === '') {
        throw new BybitFailure(10001, 'apikey is required when the master account manages a sub account key');
      }
      const key = keys.get(target);
      if (!key || key.isMaster || accounts.get(key.uid)?.masterUid !== caller.uid) {
        throw new BybitFailure(10001, 'apikey does not exist');
      }
      keys.delete(target);
      return {};
    }
    if (target !== undefined) {
      throw new BybitFailure(10001, 'apikey must not be passed when a sub account key deletes itself');
    }
    keys.delete(caller.apiKey);
    return {};
  }

  function queryApiKey({ caller }: RouteContext) {
    const account = accounts.get(caller.uid);
    return {
      id: caller.id,
      note: caller.note,
      apiKey: caller.apiKey,
      readOnly: caller.readOnly ? 1 : 0,
      secret: '',
      permissions: caller.permissions,
      ips: caller.ips,
      type: 1,
      deadlineDay: caller.expiredAt === '' ? 0 : Math.ceil((Date.parse(caller.expiredAt) - Date.now()) / 86_400_000),
      expiredAt: caller.expiredAt,
      createdAt: caller.createdAt,
      unified: 0,
      uta: 1,
      userID: Number(caller.uid),
      inviterID: 0,
      vipLevel: 'No VIP',
      mktMakerLevel: '0',
      affiliateID: 0,
      rsaPublicKey: '',
      isMaster: caller.isMaster,
      parentUid: account?.masterUid ?? '0',
    };
  }

  function requireMaster(caller: StoredKey): void {
    if (!caller.isMaster) {
      throw new BybitFailure(10005, 'Permission denied, please check your API key permissions.');
    }
  }

  /**
   * Key management needs a transfer or withdrawal permission, as Bybit documents. NOTE: that a
   * read-only key is rejected with retCode 10005 is assumed, because the endpoint pages do not state it.
   */
  function requireKeyManager(caller: StoredKey): void {
    const wallet = caller.permissions.Wallet ?? [];
    const allowed = caller.isMaster
      ? wallet.some((permission) => MASTER_PERMISSIONS_FOR_KEY_MANAGEMENT.includes(permission))
      : wallet.includes('AccountTransfer') || wallet.includes('SubMemberTransferList');
    if (caller.readOnly || !allowed) {
      throw new BybitFailure(10005, 'Permission denied, please check your API key permissions.');
    }
  }

  function requireOwnSubAccount(caller: StoredKey, subUid: string): void {
    if (accounts.get(subUid)?.masterUid !== caller.uid) {
      throw new BybitFailure(500010, 'The subaccount specified does not belong to the parent account');
    }
  }

  // -------------------------------------------------------------------------------------------
  // State
  // -------------------------------------------------------------------------------------------

  function storeKey(fields: Pick<StoredKey, 'uid' | 'note' | 'readOnly' | 'ips' | 'permissions' | 'isMaster'>): StoredKey {
    const created = new Date();
    const key: StoredKey = {
      ...fields,
      id: String(crypto.randomInt(1_000_000, 9_999_999)),
      apiKey: randomToken(18),
      secret: randomToken(36),
      createdAt: bybitDate(created),
      expiredAt: fields.ips.includes('*') ? bybitDate(new Date(created.getTime() + UNBOUND_KEY_LIFETIME_MS)) : '',
    };
    keys.set(key.apiKey, key);
    return key;
  }

  function keysOf(uid: string): StoredKey[] {
    return [...keys.values()].filter((key) => key.uid === uid);
  }

  function newUid(): string {
    let uid: string;
    do {
      uid = String(crypto.randomInt(100_000_000, 999_999_999));
    } while (accounts.has(uid));
    return uid;
  }

  function seedAccount(seed: SeedBybitAccountOptions = {}): SeededBybitAccount {
    let masterUid = seed.masterUid;
    let managementCredential: BybitKeyPair | undefined;
    if (masterUid === undefined) {
      masterUid = newUid();
      accounts.set(masterUid, { uid: masterUid });
      const master = storeKey({
        uid: masterUid,
        note: 'rotor management',
        readOnly: seed.managementReadOnly ?? false,
        ips: ['*'],
        permissions: { Wallet: ['AccountTransfer', 'SubMemberTransfer'] },
        isMaster: true,
      });
      managementCredential = { api_key: master.apiKey, api_secret: master.secret };
    } else {
      const existing = [...keys.values()].find((key) => key.uid === masterUid && key.isMaster);
      if (!accounts.has(masterUid) || !existing) {
        throw new Error(`The Bybit emulator has no master account ${masterUid}.`);
      }
      managementCredential = { api_key: existing.apiKey, api_secret: existing.secret };
    }

    const subUid = newUid();
    accounts.set(subUid, { uid: subUid, masterUid });
    const current = storeKey({
      uid: subUid,
      note: 'seeded',
      readOnly: true,
      ips: seed.currentKeyIps && seed.currentKeyIps.length > 0 ? seed.currentKeyIps : ['*'],
      permissions: { ContractTrade: ['Order', 'Position'] },
      isMaster: false,
    });
    return { masterUid, subUid, managementCredential, currentKey: { api_key: current.apiKey, api_secret: current.secret } };
  }

  function seedSubAccountKeys(subUid: string, count: number): string[] {
    if (accounts.get(subUid)?.masterUid === undefined) {
      throw new Error(`The Bybit emulator has no sub account ${subUid}.`);
    }
    return Array.from({ length: count }, (_, index) =>
      storeKey({ uid: subUid, note: `filler-${index}`, readOnly: true, ips: ['*'], permissions: { Spot: ['SpotTrade'] }, isMaster: false }).apiKey,
    );
  }

  async function accepts(key: BybitKeyPair): Promise<boolean> {
    const timestamp = String(Date.now());
    const recvWindow = '5000';
    const response = await fetch(`${url}/v5/user/query-api`, {
      headers: {
        'X-BAPI-API-KEY': key.api_key,
        'X-BAPI-TIMESTAMP': timestamp,
        'X-BAPI-RECV-WINDOW': recvWindow,
        'X-BAPI-SIGN': hmacSha256Hex(key.api_secret, `${timestamp}${key.api_key}${recvWindow}`),
      },
    });
    const answer = (await response.json()) as { retCode: number };
    return answer.retCode === 0;
  }

  return {
    url,
    stop: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
    seedAccount,
    seedSubAccountKeys,
    keyIds: (subUid) => keysOf(subUid).map((key) => key.apiKey),
    keyDetails: (apiKey) => {
      const key = keys.get(apiKey);
      if (!key) {
        return undefined;
      }
      const { apiKey: id, uid, note, readOnly, ips, permissions, createdAt, expiredAt } = key;
      return { apiKey: id, uid, note, readOnly, ips, permissions, createdAt, expiredAt };
    },
    accepts,
    replaceNextResponse: (endpoint, body) => {
      replacements.set(endpoint, body);
    },
    get rateLimitedResponses() {
      return rateLimitedResponses;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------------

function headerValue(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function parseBody(rawBody: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(rawBody === '' ? '{}' : rawBody);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // Falls through to Bybit's error for a body that is not a JSON object.
  }
  throw new BybitFailure(10001, 'body not json');
}

/** Checks Bybit's rule that at least one known permission group with known values is passed. */
function parsePermissions(value: unknown): Record<string, string[]> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BybitFailure(10001, 'permissions is required');
  }
  const permissions: Record<string, string[]> = {};
  for (const [group, values] of Object.entries(value as Record<string, unknown>)) {
    const allowed = PERMISSION_VALUES[group];
    if (!allowed || !Array.isArray(values) || !values.every((item) => typeof item === 'string' && allowed.includes(item))) {
      throw new BybitFailure(10001, `invalid permissions for ${group}`);
    }
    if (values.length > 0) {
      permissions[group] = values as string[];
    }
  }
  if (Object.keys(permissions).length === 0) {
    throw new BybitFailure(10001, 'at least one permission type must be passed');
  }
  return permissions;
}

/** Reads Bybit's ips: absent or "*" means no binding, otherwise comma-separated addresses. */
function parseIps(value: unknown): string[] {
  if (value === undefined || value === '*') {
    return ['*'];
  }
  if (typeof value !== 'string') {
    throw new BybitFailure(10001, 'ips must be a string');
  }
  const addresses = value.split(',').map((address) => address.trim());
  if (addresses.some((address) => address.includes('/') || !ipaddr.isValid(address))) {
    throw new BybitFailure(10001, 'ips must list IP addresses separated by commas');
  }
  return addresses.map((address) => ipaddr.parse(address).toString());
}

function sendJson(response: http.ServerResponse, headers: Record<string, string>, body: unknown): void {
  response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', ...headers });
  response.end(JSON.stringify(body));
}

/** Bybit's datetime format, as in createdAt: ISO 8601 in UTC without milliseconds. */
function bybitDate(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function randomToken(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(crypto.randomBytes(length), (byte) => alphabet[byte % alphabet.length]).join('');
}

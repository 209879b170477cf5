import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';
import { hmacSha256Hex, signaturesEqual } from '../../providers/signing';

/**
 * An in-memory emulator of the Binance Link (broker) endpoints that manage sub-account API keys,
 * plus GET /sapi/v1/account/apiRestrictions, for the tests, the demo and the benchmark. It
 * listens on 127.0.0.1 only and enforces Binance's documented rules:
 * - HMAC signatures over the query string followed by the body, and recvWindow;
 * - unknown and deleted keys rejected with code -2015;
 * - IP restrictions checked against the caller's address;
 * - the "trade" permission the broker endpoints require;
 * - a per-account rate limit on key management, rejected with HTTP 429, Retry-After and -1003.
 * NOTE: Binance documents its codes, not the HTTP status of each, so 401 for -2014 and -2015 and
 * 400 for the other codes are assumed.
 *
 * Endpoints: GET, POST and DELETE /sapi/v1/broker/subAccountApi,
 * POST /sapi/v2/broker/subAccountApi/ipRestriction and GET /sapi/v1/account/apiRestrictions.
 */

const HOST = '127.0.0.1';

// Binance rejects a timestamp 1000 ms or more ahead of its clock, and recvWindow above 60000.
const FUTURE_TIMESTAMP_TOLERANCE_MS = 1_000;
const MAX_RECV_WINDOW_MS = 60_000;

// Binance documents neither a maximum number of keys per broker sub-account nor the code for
// reaching one. The emulator uses the provider's guess of 30 and returns code -1130.
const DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT = 30;

const KEY_MANAGEMENT_ENDPOINTS = new Set([
  'GET /sapi/v1/broker/subAccountApi',
  'POST /sapi/v1/broker/subAccountApi',
  'DELETE /sapi/v1/broker/subAccountApi',
  'POST /sapi/v2/broker/subAccountApi/ipRestriction',
]);

export interface BinanceEmulatorOptions {
  /**
   * Key-management requests per rolling second that each master account may send. Past it, the
   * emulator returns HTTP 429 with Retry-After and code -1003 as Binance does. Unlimited when absent.
   */
  rateLimitPerSecond?: number;
  /** API keys one sub-account may hold. Default 30. */
  maxKeysPerSubAccount?: number;
}

/** An API key and its secret, in the shape of the provider's credential and secret. */
export interface BinanceKeyPair {
  api_key: string;
  api_secret: string;
}

export interface SeedBinanceAccountOptions {
  /** Adds the sub-account to this existing master account instead of a new one. */
  masterUid?: string;
  /** IP restriction of the seeded sub-account key. Absent means none. */
  currentKeyIps?: string[];
  /** Seeds a management key without "Enable Spot & Margin Trading", which the broker endpoints reject. */
  managementWithoutTrade?: boolean;
}

export interface SeededBinanceAccount {
  masterUid: string;
  subAccountId: string;
  /** API key of the master account, for Vault's management credential path. */
  managementCredential: BinanceKeyPair;
  /** The sub-account's first API key, which a rotation replaces. */
  currentKey: BinanceKeyPair;
}

/** A key as the emulator stores it, for assertions. Its secret is left out. */
export interface EmulatedBinanceKeyDetails {
  apiKey: string;
  uid: string;
  canTrade: boolean;
  marginTrade: boolean;
  futuresTrade: boolean;
  /** Allowed addresses, or empty when the key has no IP restriction. */
  ipList: string[];
  createTime: number;
}

export interface BinanceEmulator {
  /** Base URL, such as http://127.0.0.1:41234. */
  url: string;
  stop(): Promise<void>;
  seedAccount(options?: SeedBinanceAccountOptions): SeededBinanceAccount;
  /** Adds keys to a sub-account without any request, such as to fill it up to its limit. */
  seedSubAccountKeys(subAccountId: string, count: number): string[];
  /** The sub-account's API keys, oldest first. */
  keyIds(subAccountId: string): string[];
  keyDetails(apiKey: string): EmulatedBinanceKeyDetails | undefined;
  /** True when the emulator accepts the key: GET /sapi/v1/account/apiRestrictions signed with it succeeds. */
  accepts(key: BinanceKeyPair): Promise<boolean>;
  /** Replaces the response to the next authenticated request to the endpoint (such as `GET /sapi/v1/broker/subAccountApi`) with this body and HTTP 200. */
  replaceNextResponse(endpoint: string, body: unknown): void;
  /** Turns on a permission flag in the next apiRestrictions response, as a key changed in the console would show. */
  grantNextRestrictionsFlag(flag: string): void;
  /** How many requests the emulator rejected with HTTP 429. */
  readonly rateLimitedResponses: number;
}

interface StoredKey extends EmulatedBinanceKeyDetails {
  secret: string;
  isMaster: boolean;
}

/** A Binance error response: an HTTP status with `{code, msg}`. */
class BinanceFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    readonly msg: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(msg);
  }
}

interface RouteContext {
  caller: StoredKey;
  params: URLSearchParams;
}

export async function startBinanceEmulator(options: BinanceEmulatorOptions = {}): Promise<BinanceEmulator> {
  const masterOf = new Map<string, string | undefined>();
  const keys = new Map<string, StoredKey>();
  const requestTimes = new Map<string, number[]>();
  const replacements = new Map<string, unknown>();
  const extraFlags: string[] = [];
  const maxKeys = options.maxKeysPerSubAccount ?? DEFAULT_MAX_KEYS_PER_SUB_ACCOUNT;
  let rateLimitedResponses = 0;

  const routes: Record<string, (route: RouteContext) => unknown> = {
    'GET /sapi/v1/broker/subAccountApi': querySubAccountApiKeys,
    'POST /sapi/v1/broker/subAccountApi': createSubAccountApiKey,
    'DELETE /sapi/v1/broker/subAccountApi': deleteSubAccountApiKey,
    'POST /sapi/v2/broker/subAccountApi/ipRestriction': updateIpRestriction,
    'GET /sapi/v1/account/apiRestrictions': apiRestrictions,
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
      sendJson(response, 404, {}, { code: -1000, msg: 'Not found.' });
      return;
    }

    try {
      const { caller, params } = authenticate(request, target, rawBody);
      consumeRateLimit(caller, endpoint);
      checkIpRestriction(caller, request.socket.remoteAddress);

      if (replacements.has(endpoint)) {
        const replacement = replacements.get(endpoint);
        replacements.delete(endpoint);
        sendJson(response, 200, {}, replacement);
        return;
      }
      sendJson(response, 200, {}, route({ caller, params }));
    } catch (error) {
      if (!(error instanceof BinanceFailure)) {
        // A bug in the emulator returns HTTP 500 as a server error would, so the test gets a response instead of a crash.
        sendJson(response, 500, {}, { code: -1000, msg: error instanceof Error ? error.message : String(error) });
        return;
      }
      if (error.status === 429) {
        rateLimitedResponses += 1;
      }
      sendJson(response, error.status, error.headers, { code: error.code, msg: error.msg });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Authentication, rate limit and IP restriction, in the order Binance applies them
  // -------------------------------------------------------------------------------------------

  function authenticate(request: http.IncomingMessage, target: URL, rawBody: string): { caller: StoredKey; params: URLSearchParams } {
    const apiKey = headerValue(request, 'x-mbx-apikey');
    if (apiKey === undefined || !/^[A-Za-z0-9]{1,128}$/.test(apiKey)) {
      throw new BinanceFailure(401, -2014, 'API-key format invalid.');
    }
    const caller = keys.get(apiKey);
    if (!caller) {
      throw new BinanceFailure(401, -2015, 'Invalid API-key, IP, or permissions for action.');
    }

    // totalParams is the query string followed by the body; the signature is the last parameter of either.
    const query = target.search.replace(/^\?/, '');
    const body = request.method === 'POST' ? rawBody : '';
    const { unsigned: unsignedQuery, signature: querySignature } = splitSignature(query);
    const { unsigned: unsignedBody, signature: bodySignature } = splitSignature(body);
    const signature = querySignature ?? bodySignature;
    const params = new URLSearchParams(unsignedBody);
    for (const [name, value] of new URLSearchParams(unsignedQuery)) {
      params.set(name, value);
    }

    const now = Date.now();
    const timestamp = Number(params.get('timestamp'));
    const recvWindow = Number(params.get('recvWindow') ?? '5000');
    if (!params.has('timestamp') || !Number.isInteger(timestamp)) {
      throw new BinanceFailure(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.");
    }
    if (!Number.isInteger(recvWindow) || recvWindow <= 0 || recvWindow > MAX_RECV_WINDOW_MS) {
      throw new BinanceFailure(400, -1131, 'recvWindow must be less than 60000');
    }
    if (timestamp >= now + FUTURE_TIMESTAMP_TOLERANCE_MS || now - timestamp > recvWindow) {
      throw new BinanceFailure(400, -1021, 'Timestamp for this request is outside of the recvWindow.');
    }

    const expected = hmacSha256Hex(caller.secret, `${unsignedQuery}${unsignedBody}`);
    if (signature === undefined || !signaturesEqual(signature.toLowerCase(), expected)) {
      throw new BinanceFailure(400, -1022, 'Signature for this request is not valid.');
    }
    return { caller, params };
  }

  function consumeRateLimit(caller: StoredKey, endpoint: string): void {
    const limit = options.rateLimitPerSecond;
    if (limit === undefined || !KEY_MANAGEMENT_ENDPOINTS.has(endpoint)) {
      return;
    }
    const now = Date.now();
    const recent = (requestTimes.get(caller.uid) ?? []).filter((time) => time > now - 1_000);
    if (recent.length >= limit) {
      requestTimes.set(caller.uid, recent);
      // Retry-After is whole seconds, rounded up to when the oldest request leaves the window.
      const retryAfterSeconds = Math.max(1, Math.ceil((recent[0] + 1_000 - now) / 1000));
      throw new BinanceFailure(429, -1003, `Too much request weight used; current limit is ${limit} requests per second.`, {
        'Retry-After': String(retryAfterSeconds),
      });
    }
    recent.push(now);
    requestTimes.set(caller.uid, recent);
  }

  function checkIpRestriction(caller: StoredKey, remoteAddress: string | undefined): void {
    if (caller.ipList.length === 0) {
      return;
    }
    const address = remoteAddress === undefined ? '' : ipaddr.process(remoteAddress).toString();
    if (!caller.ipList.includes(address)) {
      throw new BinanceFailure(401, -2015, `Invalid API-key, IP, or permissions for action, request ip: ${address}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints
  // -------------------------------------------------------------------------------------------

  function querySubAccountApiKeys({ caller, params }: RouteContext) {
    requireBrokerKey(caller);
    const subAccountId = ownSubAccount(caller, params);
    const page = Number(params.get('page') ?? '1');
    const size = Number(params.get('size') ?? '500');
    if (!Number.isInteger(page) || page < 1 || !Number.isInteger(size) || size < 1 || size > 500) {
      throw new BinanceFailure(400, -1130, 'Data sent for parameter page or size is not valid.');
    }
    const filter = params.get('subAccountApiKey');
    const owned = keysOf(subAccountId).filter((key) => filter === null || key.apiKey === filter);
    return owned.slice((page - 1) * size, page * size).map((key) => ({
      apikey: key.apiKey,
      subaccountId: subAccountId,
      canTrade: key.canTrade,
      marginTrade: key.marginTrade,
      futuresTrade: key.futuresTrade,
    }));
  }

  function createSubAccountApiKey({ caller, params }: RouteContext) {
    requireBrokerKey(caller);
    const subAccountId = ownSubAccount(caller, params);
    const canTrade = booleanParam(params, 'canTrade', true);
    const marginTrade = booleanParam(params, 'marginTrade', false);
    const futuresTrade = booleanParam(params, 'futuresTrade', false);
    if (keysOf(subAccountId).length >= maxKeys) {
      throw new BinanceFailure(400, -1130, `The number of API keys of this sub account has reached the limit of ${maxKeys}.`);
    }
    const key = storeKey({ uid: subAccountId, canTrade, marginTrade, futuresTrade, ipList: [], isMaster: false });
    return { subaccountId: subAccountId, apiKey: key.apiKey, secretKey: key.secret, canTrade, marginTrade, futuresTrade };
  }

  function deleteSubAccountApiKey({ caller, params }: RouteContext) {
    requireBrokerKey(caller);
    const subAccountId = ownSubAccount(caller, params);
    const key = keys.get(params.get('subAccountApiKey') ?? '');
    if (!key || key.uid !== subAccountId) {
      throw new BinanceFailure(400, -1130, 'Data sent for parameter subAccountApiKey is not valid.');
    }
    keys.delete(key.apiKey);
    return {};
  }

  function updateIpRestriction({ caller, params }: RouteContext) {
    requireBrokerKey(caller);
    const subAccountId = ownSubAccount(caller, params);
    const key = keys.get(params.get('subAccountApiKey') ?? '');
    if (!key || key.uid !== subAccountId) {
      throw new BinanceFailure(400, -1130, 'Data sent for parameter subAccountApiKey is not valid.');
    }
    const status = params.get('status');
    if (status === '1') {
      key.ipList = [];
    } else if (status === '2') {
      key.ipList = parseAddresses(params.get('ipAddress'));
    } else {
      throw new BinanceFailure(400, -1102, "Mandatory parameter 'status' was not sent, was empty/null, or malformed.");
    }
    const answer: Record<string, unknown> = { status, updateTime: Date.now(), apiKey: key.apiKey };
    if (key.ipList.length > 0) {
      answer.ipList = key.ipList;
    }
    return answer;
  }

  function apiRestrictions({ caller }: RouteContext) {
    const answer: Record<string, unknown> = {
      ipRestrict: caller.ipList.length > 0,
      createTime: caller.createTime,
      enableInternalTransfer: false,
      enableFutures: caller.futuresTrade,
      enablePortfolioMarginTrading: false,
      enableVanillaOptions: false,
      permitsUniversalTransfer: false,
      enableReading: true,
      enableSpotAndMarginTrading: caller.canTrade,
      enableWithdrawals: false,
      enableMargin: caller.marginTrade,
    };
    for (const flag of extraFlags.splice(0)) {
      answer[flag] = true;
    }
    return answer;
  }

  /** Rejects a caller that is not a master-account key with "Enable Spot & Margin Trading", as the broker endpoints require. */
  function requireBrokerKey(caller: StoredKey): void {
    if (!caller.isMaster || !caller.canTrade) {
      throw new BinanceFailure(401, -2015, 'Invalid API-key, IP, or permissions for action.');
    }
  }

  // NOTE: Binance documents no code for a subAccountId outside the broker's account; -1130 is assumed.
  function ownSubAccount(caller: StoredKey, params: URLSearchParams): string {
    const subAccountId = params.get('subAccountId');
    if (subAccountId === null || subAccountId === '') {
      throw new BinanceFailure(400, -1102, "Mandatory parameter 'subAccountId' was not sent, was empty/null, or malformed.");
    }
    if (masterOf.get(subAccountId) !== caller.uid) {
      throw new BinanceFailure(400, -1130, 'Data sent for parameter subAccountId is not valid.');
    }
    return subAccountId;
  }

  // -------------------------------------------------------------------------------------------
  // State
  // -------------------------------------------------------------------------------------------

  function storeKey(fields: Pick<StoredKey, 'uid' | 'canTrade' | 'marginTrade' | 'futuresTrade' | 'ipList' | 'isMaster'>): StoredKey {
    const key: StoredKey = { ...fields, apiKey: randomToken(64), secret: randomToken(64), createTime: Date.now() };
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
    } while (masterOf.has(uid));
    return uid;
  }

  function seedAccount(seed: SeedBinanceAccountOptions = {}): SeededBinanceAccount {
    let masterUid = seed.masterUid;
    let master: StoredKey | undefined;
    if (masterUid === undefined) {
      masterUid = newUid();
      masterOf.set(masterUid, undefined);
      master = storeKey({ uid: masterUid, canTrade: !seed.managementWithoutTrade, marginTrade: false, futuresTrade: false, ipList: [], isMaster: true });
    } else {
      master = [...keys.values()].find((key) => key.uid === masterUid && key.isMaster);
      if (!master) {
        throw new Error(`The Binance emulator has no master account ${masterUid}.`);
      }
    }

    const subAccountId = newUid();
    masterOf.set(subAccountId, masterUid);
    const current = storeKey({ uid: subAccountId, canTrade: false, marginTrade: false, futuresTrade: false, ipList: seed.currentKeyIps ?? [], isMaster: false });
    return {
      masterUid,
      subAccountId,
      managementCredential: { api_key: master.apiKey, api_secret: master.secret },
      currentKey: { api_key: current.apiKey, api_secret: current.secret },
    };
  }

  function seedSubAccountKeys(subAccountId: string, count: number): string[] {
    if (masterOf.get(subAccountId) === undefined) {
      throw new Error(`The Binance emulator has no sub-account ${subAccountId}.`);
    }
    return Array.from(
      { length: count },
      () => storeKey({ uid: subAccountId, canTrade: false, marginTrade: false, futuresTrade: false, ipList: [], isMaster: false }).apiKey,
    );
  }

  async function accepts(key: BinanceKeyPair): Promise<boolean> {
    const query = `recvWindow=5000&timestamp=${Date.now()}`;
    const response = await fetch(`${url}/sapi/v1/account/apiRestrictions?${query}&signature=${hmacSha256Hex(key.api_secret, query)}`, {
      headers: { 'X-MBX-APIKEY': key.api_key },
    });
    await response.text();
    return response.status === 200;
  }

  return {
    url,
    stop: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
    seedAccount,
    seedSubAccountKeys,
    keyIds: (subAccountId) => keysOf(subAccountId).map((key) => key.apiKey),
    keyDetails: (apiKey) => {
      const key = keys.get(apiKey);
      if (!key) {
        return undefined;
      }
      const { apiKey: id, uid, canTrade, marginTrade, futuresTrade, ipList, createTime } = key;
      return { apiKey: id, uid, canTrade, marginTrade, futuresTrade, ipList: [...ipList], createTime };
    },
    accepts,
    replaceNextResponse: (endpoint, body) => {
      replacements.set(endpoint, body);
    },
    grantNextRestrictionsFlag: (flag) => {
      extraFlags.push(flag);
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

/** Splits `a=1&signature=ff` into the signed part and the signature, which must come last. */
function splitSignature(text: string): { unsigned: string; signature?: string } {
  const match = /(^|&)signature=([0-9A-Fa-f]*)$/.exec(text);
  if (!match) {
    return { unsigned: text };
  }
  return { unsigned: text.slice(0, match.index), signature: match[2] };
}

function booleanParam(params: URLSearchParams, name: string, mandatory: boolean): boolean {
  const value = params.get(name);
  if (value === null && !mandatory) {
    return false;
  }
  if (value !== 'true' && value !== 'false') {
    throw new BinanceFailure(400, -1102, `Mandatory parameter '${name}' was not sent, was empty/null, or malformed.`);
  }
  return value === 'true';
}

/** Reads ipAddress: static addresses separated by commas. */
function parseAddresses(value: string | null): string[] {
  const addresses = (value ?? '').split(',').map((address) => address.trim()).filter((address) => address !== '');
  if (addresses.length === 0 || addresses.some((address) => !ipaddr.isValid(address))) {
    throw new BinanceFailure(400, -1130, 'Data sent for parameter ipAddress is not valid.');
  }
  return [...new Set(addresses.map((address) => ipaddr.parse(address).toString()))];
}

function sendJson(response: http.ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json;charset=UTF-8', ...headers });
  response.end(JSON.stringify(body));
}

function randomToken(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(crypto.randomBytes(length), (byte) => alphabet[byte % alphabet.length]).join('');
}

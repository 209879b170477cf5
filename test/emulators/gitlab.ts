import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An in-memory emulator of the part of GitLab's REST API v4 that manages access tokens: project
 * and group access tokens (list, read, create, revoke), personal access tokens of a user (list,
 * read, create as an administrator, revoke) and GET /personal_access_tokens/self. It listens on
 * 127.0.0.1 only, under the base path /api/v4 like the real API.
 *
 * Rules it enforces, as GitLab documents them:
 * - every request needs "PRIVATE-TOKEN: <token>" or "Authorization: Bearer <token>" with a
 *   token that exists, is not revoked and has not expired, or it gets 401. Tokens expire at
 *   00:00 UTC on their expires_at date;
 * - listing tokens needs the api or read_api scope, creating and revoking needs api, and a token
 *   without them gets 403 insufficient_scope; /personal_access_tokens/self accepts any scope;
 * - project access tokens need the Maintainer role on the project and group access tokens the
 *   Owner role on the group. A token's role cannot exceed its creator's. Personal access tokens
 *   of another user need an administrator. Project and group access tokens cannot create tokens;
 * - expires_at is required for project and group tokens and may be at most the maximum lifetime
 *   (365 days by default) ahead; scopes must be known GitLab scopes;
 * - past the rate limit, requests get 429 with the plain-text body "Retry later", Retry-After in
 *   seconds and the RateLimit-* headers.
 *
 * Differences from GitLab: the rate limit is a token bucket shared by all callers, where GitLab
 * counts requests per user in a one-minute window. last_used_at changes on every request, where
 * GitLab updates it at most every 10 minutes. GitLab documents no limit on the number of tokens,
 * so the optional tokenLimit responds with the message GitLab EE uses when it refuses one.
 */

const HOST = '127.0.0.1';
const BASE_PATH = '/api/v4';

const ACCESS_LEVELS = { guest: 10, planner: 15, reporter: 20, developer: 30, maintainer: 40, owner: 50 } as const;

// Scopes a project or group access token may have (Gitlab::Auth.resource_bot_scopes).
const RESOURCE_BOT_SCOPES = new Set([
  'api',
  'read_api',
  'read_repository',
  'write_repository',
  'read_registry',
  'write_registry',
  'read_virtual_registry',
  'write_virtual_registry',
  'create_runner',
  'manage_runner',
  'ai_features',
  'k8s_proxy',
  'self_rotate',
]);
const PERSONAL_SCOPES = new Set([...RESOURCE_BOT_SCOPES, 'read_user', 'sudo', 'admin_mode', 'read_service_ping']);

export interface GitLabEmulatorOptions {
  /** Requests per second across all callers, refilling a token bucket. Unlimited when absent. */
  rateLimitPerSecond?: number;
  /** Requests the bucket contains when full, which may arrive at once. Default: one second's worth. */
  rateLimitBurst?: number;
  /** Active tokens one project, group or user may hold. Unlimited when absent, as GitLab documents. */
  tokenLimit?: number;
  /** Maximum token lifetime in days. Default 365, GitLab's default. */
  maxLifetimeDays?: number;
}

export type EmulatedTokenType = 'project' | 'group' | 'personal';

/** An access token as GitLab returns it once, at creation. */
export interface EmulatedToken {
  id: string;
  value: string;
}

export interface SeedGitLabAccountOptions {
  /** Kind of token consumers hold. Default project. */
  tokenType?: EmulatedTokenType;
  /** Scopes of the current token. Default read_api. */
  scopes?: string[];
}

export interface SeededGitLabAccount {
  tokenType: EmulatedTokenType;
  projectId: number;
  /** Full path of the project, such as team-1/app-1. */
  projectPath: string;
  groupId: number;
  /** The user whose personal access tokens are rotated (token_type personal). */
  userId: number;
  /** Personal access token of the user who manages tokens: Maintainer of the project, Owner of the group, administrator for personal tokens. */
  managementToken: EmulatedToken;
  /** The token consumers use before the first rotation, of tokenType. */
  currentToken: EmulatedToken;
}

export interface SeedTokenOptions {
  tokenType: EmulatedTokenType;
  /** Project id, group id or user id that owns the token. */
  ownerId: number;
  name: string;
  scopes?: string[];
  expiresAt?: string;
  accessLevel?: number;
}

/** A stored token as GitLab's API describes it, without the token's value. */
export interface TokenView {
  id: number;
  name: string;
  user_id: number;
  scopes: string[];
  active: boolean;
  revoked: boolean;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  access_level?: number;
}

/** A canned response to the next request to one endpoint, for tests of malformed responses. */
export interface InjectedResponse {
  method: string;
  /** Path below /api/v4, without the query string, such as /personal_access_tokens/self. */
  path: string;
  status: number;
  body: unknown;
}

export interface GitLabEmulator {
  /** Base URL including /api/v4, such as http://127.0.0.1:5123/api/v4. */
  url: string;
  stop(): Promise<void>;
  /** Creates the users, project and group, the management token and a first app token, as a person would in GitLab. */
  seedAccount(options?: SeedGitLabAccountOptions): SeededGitLabAccount;
  seedToken(options: SeedTokenOptions): EmulatedToken;
  /** The stored token, or undefined when it does not exist. */
  token(id: string): TokenView | undefined;
  /** Ids of the active tokens of a project, group or user. */
  activeTokenIds(tokenType: EmulatedTokenType, ownerId: number): string[];
  /** Number of requests that received 429 so far. */
  throttledResponses(): number;
  injectResponse(response: InjectedResponse): void;
}

interface User {
  id: number;
  username: string;
  admin: boolean;
  /** Bot users of project and group access tokens belong to one resource. */
  bot?: { tokenType: 'project' | 'group'; ownerId: number };
}

interface Resource {
  id: number;
  path: string;
  /** Role of each member, by user id. */
  members: Map<number, number>;
}

interface StoredToken {
  id: number;
  value: string;
  userId: number;
  name: string;
  scopes: string[];
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revoked: boolean;
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

interface ParsedRequest {
  method: string;
  /** Path segments below /api/v4, each decoded, so "team-1%2Fapp-1" is one segment. */
  segments: string[];
  query: URLSearchParams;
  body: unknown;
  tokenValue?: string;
}

/** Starts the emulator on a free loopback port. */
export async function startGitLabEmulator(options: GitLabEmulatorOptions = {}): Promise<GitLabEmulator> {
  const maxLifetimeDays = options.maxLifetimeDays ?? 365;
  const users = new Map<number, User>();
  const projects = new Map<number, Resource>();
  const groups = new Map<number, Resource>();
  const tokens = new Map<number, StoredToken>();
  const injected: InjectedResponse[] = [];
  const rateLimiter =
    options.rateLimitPerSecond === undefined ? undefined : createRateLimiter(options.rateLimitPerSecond, options.rateLimitBurst ?? options.rateLimitPerSecond);
  let throttled = 0;
  let nextId = 100;

  const addUser = (fields: Omit<User, 'id'>): User => {
    const user: User = { ...fields, id: nextId++ };
    users.set(user.id, user);
    return user;
  };

  const storeToken = (userId: number, name: string, scopes: string[], expiresAt: string | null): StoredToken => {
    const token: StoredToken = {
      id: nextId++,
      // GitLab's personal access tokens start with glpat- followed by 20 or more URL-safe characters.
      value: `glpat-${crypto.randomBytes(20).toString('base64url')}`,
      userId,
      name,
      scopes,
      createdAt: new Date().toISOString(),
      expiresAt,
      lastUsedAt: null,
      revoked: false,
    };
    tokens.set(token.id, token);
    return token;
  };

  /** Creates a project or group bot user with the role and a token for it, as GitLab does for each resource token. */
  const storeResourceToken = (tokenType: 'project' | 'group', resource: Resource, name: string, scopes: string[], expiresAt: string | null, accessLevel: number) => {
    const bot = addUser({ username: `${tokenType}_${resource.id}_bot_${crypto.randomBytes(4).toString('hex')}`, admin: false, bot: { tokenType, ownerId: resource.id } });
    resource.members.set(bot.id, accessLevel);
    return storeToken(bot.id, name, scopes, expiresAt);
  };

  const resourceOf = (tokenType: 'project' | 'group', idOrPath: string): Resource | undefined => {
    const all = tokenType === 'project' ? projects : groups;
    const byId = /^\d+$/.test(idOrPath) ? all.get(Number(idOrPath)) : undefined;
    return byId ?? [...all.values()].find((resource) => resource.path === idOrPath);
  };

  const ownerTokens = (tokenType: EmulatedTokenType, ownerId: number): StoredToken[] =>
    [...tokens.values()].filter((token) => {
      const user = users.get(token.userId);
      if (tokenType === 'personal') {
        return token.userId === ownerId && !user?.bot;
      }
      return user?.bot?.tokenType === tokenType && user.bot.ownerId === ownerId;
    });

  const viewOf = (token: StoredToken): TokenView => {
    const view: TokenView = {
      id: token.id,
      name: token.name,
      user_id: token.userId,
      scopes: token.scopes,
      active: isActive(token),
      revoked: token.revoked,
      created_at: token.createdAt,
      expires_at: token.expiresAt,
      last_used_at: token.lastUsedAt,
    };
    const bot = users.get(token.userId)?.bot;
    if (bot) {
      const resource = (bot.tokenType === 'project' ? projects : groups).get(bot.ownerId);
      view.access_level = resource?.members.get(token.userId) ?? 0;
    }
    return view;
  };

  // -------------------------------------------------------------------------------------------
  // Authentication and authorization
  // -------------------------------------------------------------------------------------------

  const authenticate = (request: ParsedRequest): { token: StoredToken; user: User } => {
    const token = request.tokenValue === undefined ? undefined : [...tokens.values()].find((candidate) => candidate.value === request.tokenValue);
    if (!token) {
      throw new RequestRejected({ status: 401, body: { message: '401 Unauthorized' } });
    }
    if (token.revoked) {
      throw new RequestRejected({ status: 401, body: { error: 'invalid_token', error_description: 'Token was revoked. You have to re-authorize from the user.' } });
    }
    if (!isActive(token)) {
      throw new RequestRejected({ status: 401, body: { error: 'invalid_token', error_description: 'Token has expired.' } });
    }
    token.lastUsedAt = new Date().toISOString();
    return { token, user: users.get(token.userId) as User };
  };

  const requireScope = (token: StoredToken, accepted: string[]): void => {
    if (!token.scopes.some((scope) => accepted.includes(scope))) {
      throw new RequestRejected({
        status: 403,
        body: { error: 'insufficient_scope', error_description: 'The request requires higher privileges than provided by the access token.', scope: accepted.join(' ') },
      });
    }
  };

  // -------------------------------------------------------------------------------------------
  // Routes
  // -------------------------------------------------------------------------------------------

  const routes = (request: ParsedRequest): Reply => {
    const { method, segments } = request;
    const [first, second, third, fourth] = segments;

    if (first === 'personal_access_tokens' && second === 'self' && segments.length === 2 && method === 'GET') {
      const { token } = authenticate(request);
      return ok(viewOf(token));
    }
    if (first === 'personal_access_tokens' && segments.length === 1 && method === 'GET') {
      return listPersonalTokens(request);
    }
    if (first === 'personal_access_tokens' && segments.length === 2 && (method === 'GET' || method === 'DELETE')) {
      return personalToken(request, second);
    }
    if (first === 'users' && third === 'personal_access_tokens' && segments.length === 3 && method === 'POST') {
      return createPersonalToken(request, second);
    }
    if ((first === 'projects' || first === 'groups') && third === 'access_tokens') {
      const tokenType = first === 'projects' ? 'project' : 'group';
      if (segments.length === 3 && method === 'GET') {
        return listResourceTokens(request, tokenType, second);
      }
      if (segments.length === 3 && method === 'POST') {
        return createResourceToken(request, tokenType, second);
      }
      if (segments.length === 4 && (method === 'GET' || method === 'DELETE')) {
        return resourceToken(request, tokenType, second, fourth);
      }
    }
    return { status: 404, body: { error: '404 Not Found' } };
  };

  const listPersonalTokens = (request: ParsedRequest): Reply => {
    const { token, user } = authenticate(request);
    requireScope(token, ['api', 'read_api']);
    const requestedUser = request.query.get('user_id');
    const userId = requestedUser === null ? user.id : Number(requestedUser);
    if (userId !== user.id && !user.admin) {
      throw new RequestRejected({ status: 401, body: { message: '401 Unauthorized' } });
    }
    return page(filterByState(ownerTokens('personal', userId), request.query).map(viewOf), request.query);
  };

  const personalToken = (request: ParsedRequest, tokenId: string): Reply => {
    const { token: caller, user } = authenticate(request);
    requireScope(caller, request.method === 'GET' ? ['api', 'read_api'] : ['api']);
    const token = /^\d+$/.test(tokenId) ? tokens.get(Number(tokenId)) : undefined;
    const mayAccess = token !== undefined && (user.admin || token.userId === user.id);
    if (!mayAccess) {
      // Only administrators learn that a token does not exist.
      throw new RequestRejected(user.admin ? { status: 404, body: { message: '404 Not Found' } } : { status: 401, body: { message: '401 Unauthorized' } });
    }
    if (request.method === 'GET') {
      return ok(viewOf(token));
    }
    token.revoked = true;
    return { status: 204, body: undefined };
  };

  const createPersonalToken = (request: ParsedRequest, userIdText: string): Reply => {
    const { token: caller, user } = authenticate(request);
    requireScope(caller, ['api']);
    if (!user.admin) {
      throw new RequestRejected({ status: 403, body: { message: '403 Forbidden' } });
    }
    const target = users.get(Number(userIdText));
    if (!target || target.bot) {
      throw new RequestRejected({ status: 404, body: { message: '404 User Not Found' } });
    }
    const fields = validateCreateBody(request.body, PERSONAL_SCOPES, false);
    checkTokenLimit(ownerTokens('personal', target.id));
    const token = storeToken(target.id, fields.name, fields.scopes, fields.expiresAt);
    return { status: 201, body: { ...viewOf(token), token: token.value } };
  };

  const listResourceTokens = (request: ParsedRequest, tokenType: 'project' | 'group', idOrPath: string): Reply => {
    const { token: caller, user } = authenticate(request);
    requireScope(caller, ['api', 'read_api']);
    const resource = findResource(tokenType, idOrPath, user);
    // GitLab returns 401, not 403, when the caller may not read the resource's tokens.
    if (!canManageTokens(tokenType, resource, user)) {
      throw new RequestRejected({ status: 401, body: { message: '401 Unauthorized' } });
    }
    return page(filterByState(ownerTokens(tokenType, resource.id), request.query).map(viewOf), request.query);
  };

  const createResourceToken = (request: ParsedRequest, tokenType: 'project' | 'group', idOrPath: string): Reply => {
    const { token: caller, user } = authenticate(request);
    requireScope(caller, ['api']);
    const resource = findResource(tokenType, idOrPath, user);
    const fields = validateCreateBody(request.body, RESOURCE_BOT_SCOPES, true);
    const accessLevel = fields.accessLevel ?? ACCESS_LEVELS.maintainer;
    if (user.bot || !canManageTokens(tokenType, resource, user)) {
      return badRequest(`User does not have permission to create ${tokenType} access token`);
    }
    if (!user.admin && accessLevel > (resource.members.get(user.id) ?? 0)) {
      return badRequest('Access level of the token contains permissions not held by the creating user');
    }
    checkTokenLimit(ownerTokens(tokenType, resource.id));
    const token = storeResourceToken(tokenType, resource, fields.name, fields.scopes, fields.expiresAt, accessLevel);
    return { status: 201, body: { ...viewOf(token), token: token.value } };
  };

  const resourceToken = (request: ParsedRequest, tokenType: 'project' | 'group', idOrPath: string, tokenId: string): Reply => {
    const { token: caller, user } = authenticate(request);
    requireScope(caller, request.method === 'GET' ? ['api', 'read_api'] : ['api']);
    const resource = findResource(tokenType, idOrPath, user);
    if (!canManageTokens(tokenType, resource, user)) {
      throw new RequestRejected({ status: 401, body: { message: '401 Unauthorized' } });
    }
    const token = ownerTokens(tokenType, resource.id).find((candidate) => String(candidate.id) === tokenId);
    if (!token) {
      return { status: 404, body: { message: `404 ${tokenType === 'project' ? 'Project' : 'Group'} Access Token Not Found` } };
    }
    if (request.method === 'GET') {
      return ok(viewOf(token));
    }
    // GitLab 17 and later keep the bot user, so revoking a revoked token succeeds again.
    token.revoked = true;
    return { status: 204, body: undefined };
  };

  const findResource = (tokenType: 'project' | 'group', idOrPath: string, user: User): Resource => {
    const resource = resourceOf(tokenType, idOrPath);
    // GitLab hides projects and groups the caller is not a member of.
    if (!resource || (!user.admin && !resource.members.has(user.id))) {
      throw new RequestRejected({ status: 404, body: { message: `404 ${tokenType === 'project' ? 'Project' : 'Group'} Not Found` } });
    }
    return resource;
  };

  const checkTokenLimit = (existing: StoredToken[]): void => {
    if (options.tokenLimit !== undefined && existing.filter(isActive).length >= options.tokenLimit) {
      throw new RequestRejected(badRequest('Access token limit reached'));
    }
  };

  const validateCreateBody = (
    body: unknown,
    allowedScopes: Set<string>,
    resourceToken: boolean,
  ): { name: string; scopes: string[]; expiresAt: string | null; accessLevel?: number } => {
    const invalid = (error: string): never => {
      throw new RequestRejected({ status: 400, body: { error } });
    };
    if (!isObject(body)) {
      return invalid('name is missing, scopes is missing');
    }
    const { name, scopes, expires_at: expiresAt, access_level: accessLevel } = body;
    if (typeof name !== 'string' || name.trim() === '') {
      invalid('name is missing');
    }
    if (!Array.isArray(scopes) || scopes.length === 0) {
      invalid('scopes is missing');
    }
    if (!(scopes as unknown[]).every((scope) => typeof scope === 'string' && allowedScopes.has(scope))) {
      invalid('scopes does not have a valid value');
    }
    if (resourceToken && accessLevel !== undefined && !(Object.values(ACCESS_LEVELS) as number[]).includes(accessLevel as number)) {
      invalid('access_level does not have a valid value');
    }
    if (expiresAt === undefined || expiresAt === null) {
      // GitLab 16.0 and later require an expiry date for project and group tokens.
      if (resourceToken) {
        invalid('expires_at is missing');
      }
    } else if (typeof expiresAt !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(expiresAt) || Number.isNaN(Date.parse(expiresAt))) {
      invalid('expires_at is invalid');
    }
    if ((name as string).length > 255) {
      throw new RequestRejected(badRequest('Name is too long (maximum is 255 characters)'));
    }
    const latest = new Date(Date.now() + maxLifetimeDays * 86_400_000).toISOString().slice(0, 10);
    if (typeof expiresAt === 'string' && expiresAt > latest) {
      throw new RequestRejected(badRequest(`Expires at must be before ${latest}`));
    }
    return { name: name as string, scopes: scopes as string[], expiresAt: (expiresAt as string | undefined) ?? null, accessLevel: accessLevel as number | undefined };
  };

  // -------------------------------------------------------------------------------------------
  // Server
  // -------------------------------------------------------------------------------------------

  const handle = async (req: http.IncomingMessage): Promise<Reply> => {
    try {
      const url = new URL(req.url ?? '/', `http://${HOST}`);
      const method = req.method ?? 'GET';
      const text = await readBody(req);

      const limited = rateLimiter?.take();
      if (limited !== undefined) {
        throttled++;
        return rateLimitedReply(limited, options.rateLimitPerSecond ?? 0);
      }
      if (!url.pathname.startsWith(`${BASE_PATH}/`)) {
        return { status: 404, body: { error: '404 Not Found' } };
      }
      const rawPath = url.pathname.slice(BASE_PATH.length);

      const segments = rawPath.split('/').filter((segment) => segment !== '').map((segment) => decodeURIComponent(segment));
      const path = `/${segments.join('/')}`;
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
          return { status: 400, body: { error: 'The request body is not valid JSON' } };
        }
      }
      const privateToken = req.headers['private-token'];
      const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
      const tokenValue = typeof privateToken === 'string' ? privateToken : bearer;
      return routes({ method, segments, query: url.searchParams, body, tokenValue });
    } catch (error) {
      if (error instanceof RequestRejected) {
        return error.reply;
      }
      return { status: 500, body: { message: `500 Internal Server Error: ${error instanceof Error ? error.message : String(error)}` } };
    }
  };

  const server = http.createServer((req, res) => {
    void handle(req).then((reply) => {
      if (reply.body === undefined) {
        res.writeHead(reply.status, reply.headers);
        res.end();
      } else if (typeof reply.body === 'string') {
        res.writeHead(reply.status, { 'Content-Type': 'text/plain', ...reply.headers });
        res.end(reply.body);
      } else {
        res.writeHead(reply.status, { 'Content-Type': 'application/json', ...reply.headers });
        res.end(JSON.stringify(reply.body));
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const seedAccount = (seed: SeedGitLabAccountOptions = {}): SeededGitLabAccount => {
    const tokenType = seed.tokenType ?? 'project';
    const suffix = crypto.randomBytes(3).toString('hex');
    const manager = addUser({ username: `manager-${suffix}`, admin: tokenType === 'personal' });
    const appUser = addUser({ username: `app-${suffix}`, admin: false });
    const group: Resource = { id: nextId++, path: `team-${suffix}`, members: new Map([[manager.id, ACCESS_LEVELS.owner]]) };
    const project: Resource = { id: nextId++, path: `${group.path}/app-${suffix}`, members: new Map([[manager.id, ACCESS_LEVELS.maintainer]]) };
    groups.set(group.id, group);
    projects.set(project.id, project);

    const expiresAt = new Date(Date.now() + 90 * 86_400_000).toISOString().slice(0, 10);
    const managementToken = storeToken(manager.id, 'rotor management', ['api'], expiresAt);
    const scopes = seed.scopes ?? ['read_api'];
    const currentToken =
      tokenType === 'personal'
        ? storeToken(appUser.id, 'app token', scopes, expiresAt)
        : storeResourceToken(tokenType, tokenType === 'project' ? project : group, 'app token', scopes, expiresAt, ACCESS_LEVELS.reporter);

    return {
      tokenType,
      projectId: project.id,
      projectPath: project.path,
      groupId: group.id,
      userId: appUser.id,
      managementToken: { id: String(managementToken.id), value: managementToken.value },
      currentToken: { id: String(currentToken.id), value: currentToken.value },
    };
  };

  return {
    url: `http://${HOST}:${port}${BASE_PATH}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    seedAccount,
    seedToken: (seed) => {
      const expiresAt = seed.expiresAt ?? new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
      const scopes = seed.scopes ?? ['read_api'];
      if (seed.tokenType === 'personal') {
        const token = storeToken(seed.ownerId, seed.name, scopes, expiresAt);
        return { id: String(token.id), value: token.value };
      }
      const resource = (seed.tokenType === 'project' ? projects : groups).get(seed.ownerId);
      if (!resource) {
        throw new Error(`The emulator has no ${seed.tokenType} ${seed.ownerId}.`);
      }
      const token = storeResourceToken(seed.tokenType, resource, seed.name, scopes, expiresAt, seed.accessLevel ?? ACCESS_LEVELS.reporter);
      return { id: String(token.id), value: token.value };
    },
    token: (id) => {
      const token = tokens.get(Number(id));
      return token ? viewOf(token) : undefined;
    },
    activeTokenIds: (tokenType, ownerId) =>
      ownerTokens(tokenType, ownerId)
        .filter(isActive)
        .map((token) => String(token.id)),
    throttledResponses: () => throttled,
    injectResponse: (response) => {
      injected.push(response);
    },
  };
}

/** Returns the HTTP status of GET /personal_access_tokens/self with the token: 200 when the emulator accepts it. */
export async function selfStatus(url: string, tokenValue: string): Promise<number> {
  const response = await fetch(`${url}/personal_access_tokens/self`, { headers: { 'PRIVATE-TOKEN': tokenValue } });
  await response.arrayBuffer();
  return response.status;
}

// ---------------------------------------------------------------------------------------------
// Rules and replies
// ---------------------------------------------------------------------------------------------

/** Returns whether the token works: it is not revoked and 00:00 UTC on its expiry date has not passed. */
function isActive(token: StoredToken): boolean {
  return !token.revoked && (token.expiresAt === null || Date.parse(`${token.expiresAt}T00:00:00Z`) > Date.now());
}

function canManageTokens(tokenType: 'project' | 'group', resource: Resource, user: User): boolean {
  const required = tokenType === 'project' ? ACCESS_LEVELS.maintainer : ACCESS_LEVELS.owner;
  return user.admin || (resource.members.get(user.id) ?? 0) >= required;
}

/** Applies GitLab's state filter: active tokens work, inactive ones are revoked or expired. */
function filterByState(tokens: StoredToken[], query: URLSearchParams): StoredToken[] {
  const state = query.get('state');
  if (state === 'active') {
    return tokens.filter(isActive);
  }
  if (state === 'inactive') {
    return tokens.filter((token) => !isActive(token));
  }
  return tokens;
}

/** Returns one page of items with GitLab's offset pagination headers; per_page is 20 by default and at most 100. */
function page(items: unknown[], query: URLSearchParams): Reply {
  const perPage = Math.min(100, Math.max(1, Number(query.get('per_page') ?? 20) || 20));
  const pageNumber = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const totalPages = Math.max(1, Math.ceil(items.length / perPage));
  const slice = items.slice((pageNumber - 1) * perPage, pageNumber * perPage);
  return {
    status: 200,
    body: slice,
    headers: {
      'X-Page': String(pageNumber),
      'X-Per-Page': String(perPage),
      'X-Total': String(items.length),
      'X-Total-Pages': String(totalPages),
      'X-Next-Page': pageNumber < totalPages ? String(pageNumber + 1) : '',
      'X-Prev-Page': pageNumber > 1 ? String(pageNumber - 1) : '',
    },
  };
}

function rateLimitedReply(retryAfterSeconds: number, perSecond: number): Reply {
  const resetAt = Math.ceil(Date.now() / 1000) + retryAfterSeconds;
  return {
    status: 429,
    body: 'Retry later\n',
    headers: {
      'Retry-After': String(retryAfterSeconds),
      'RateLimit-Name': 'throttle_authenticated_api',
      'RateLimit-Limit': String(Math.round(perSecond * 60)),
      'RateLimit-Observed': String(Math.round(perSecond * 60)),
      'RateLimit-Remaining': '0',
      'RateLimit-Reset': String(resetAt),
      'RateLimit-ResetTime': new Date(resetAt * 1000).toUTCString(),
    },
  };
}

function ok(body: unknown): Reply {
  return { status: 200, body };
}

/** GitLab's bad_request! reply: {"message": "400 Bad request - <reason>"}. */
function badRequest(reason: string): Reply {
  return { status: 400, body: { message: `400 Bad request - ${reason}` } };
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
      return Math.max(1, Math.ceil((1 - available) / perSecond));
    },
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

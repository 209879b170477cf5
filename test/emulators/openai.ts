import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An in-memory emulator of the part of OpenAI's API that manages one organization's project
 * API keys through the Administration API, plus GET /v1/models, which any project key may call.
 * It listens on 127.0.0.1 only, under the base path /v1 like the real API, and returns errors in
 * OpenAI's shape `{ error: { message, type, param, code } }`.
 *
 * Rules it enforces, from OpenAI's API reference and the error responses OpenAI returns:
 * - the /v1/organization endpoints take "Authorization: Bearer <admin key>", and an unknown or
 *   deleted key gets 401 with code invalid_api_key;
 * - GET /v1/models takes a project key. Unknown, deleted or expired keys get 401
 *   invalid_api_key. A key restricted to scopes without api.model.read, or whose service account
 *   has no project role, gets 401 "You have insufficient permissions for this operation";
 * - creating a service account returns its first API key, unless create_service_account_only is
 *   set, which leaves the account with role none and no key;
 * - expires_in_seconds must be an integer from 1 to 31536000 (365 days);
 * - deleting a service account deletes its keys, and deleting a key leaves its service account;
 * - past the rate limit, Administration API requests get 429 with x-ratelimit-* headers and code
 *   rate_limit_exceeded, and the message ends "Please try again in <n>s."
 *
 * Differences from OpenAI: the rate limit is a token bucket refilled every second on the
 * Administration API only, because OpenAI publishes no limit for it. OpenAI documents no limit on
 * service accounts per project, so `serviceAccountLimit` and its error code are the emulator's
 * own. The 403 for a project key on the Administration API is an assumption, because OpenAI does
 * not document that status. OpenAI keys cannot be bound to IP addresses, so the emulator checks
 * no caller address.
 */

const HOST = '127.0.0.1';
const BASE_PATH = '/v1';

/** The scope a restricted key needs for GET /v1/models, as OpenAI's "Missing scopes" errors name it. */
export const MODELS_READ_SCOPE = 'api.model.read';

// OpenAI's bound for expires_in_seconds: 365 days.
const MAX_EXPIRES_IN_SECONDS = 31_536_000;

// The emulator's own error code for a create past serviceAccountLimit.
const SERVICE_ACCOUNT_LIMIT_CODE = 'service_account_limit_reached';

const MODELS = ['gpt-4o-mini', 'text-embedding-3-small'];

export interface OpenAIEmulatorOptions {
  /** Administration API requests per second per organization, refilling a token bucket. Unlimited when absent. */
  rateLimitPerSecond?: number;
  /** Requests the bucket contains when full, which may arrive at once. Default: one second's worth. */
  rateLimitBurst?: number;
  /** Service accounts one project may hold. Unlimited when absent, as OpenAI documents none. */
  serviceAccountLimit?: number;
}

/** A project API key as GET …/api_keys/{id} returns it, without its value. */
export interface ProjectApiKeyView {
  object: 'organization.project.api_key';
  id: string;
  name: string;
  redacted_value: string;
  created_at: number;
  last_used_at: number | null;
  expires_at?: number | null;
  owner: {
    type: 'user' | 'service_account';
    user?: { id: string; name: string; email: string; role: string; created_at: number };
    service_account?: { id: string; name: string; role: string; created_at: number };
  };
}

/** An API key as OpenAI returns it once, at creation. */
export interface EmulatedKey {
  id: string;
  value: string;
  serviceAccountId?: string;
}

export interface SeededOpenAIProject {
  projectId: string;
  /** An organization admin key: the management credential. */
  adminKey: EmulatedKey;
  /** The key of a service account of the project: the key consumers use before the first rotation. */
  currentKey: EmulatedKey & { serviceAccountId: string };
}

export interface SeedServiceAccountOptions {
  name: string;
  /** Number of keys the service account gets; default 1. */
  keys?: number;
  scopes?: string[];
}

/** A canned response to the next request to one endpoint, for tests of malformed responses. */
export interface InjectedResponse {
  method: string;
  /** Path below /v1, without the query string, such as /models. */
  path: string;
  status: number;
  body: unknown;
}

export interface OpenAIEmulator {
  /** Base URL including /v1, such as http://127.0.0.1:5123/v1. */
  url: string;
  stop(): Promise<void>;
  /** Creates a project, the organization's admin key and a first service-account key, as a person would in the dashboard. */
  seedProject(): SeededOpenAIProject;
  seedServiceAccount(projectId: string, options: SeedServiceAccountOptions): EmulatedKey[];
  /** Creates a key owned by a person, which only the dashboard can create. */
  seedUserKey(projectId: string, name: string): EmulatedKey;
  /** The stored key, or undefined when it does not exist (any more). */
  apiKey(projectId: string, keyId: string): (ProjectApiKeyView & { scopes: string[] }) | undefined;
  apiKeyIds(projectId: string): string[];
  /** Ids of the project's service accounts. */
  serviceAccountIds(projectId: string): string[];
  /** Request counts: all requests, and those that received 429. */
  counters: { requests: number; throttled: number };
  injectResponse(response: InjectedResponse): void;
}

interface StoredServiceAccount {
  id: string;
  name: string;
  role: 'member' | 'owner' | 'none';
  createdAt: number;
}

interface StoredKey {
  id: string;
  value: string;
  name: string;
  createdAt: number;
  lastUsedAt: number | null;
  expiresAt: number | null;
  scopes: string[];
  serviceAccountId?: string;
  userName?: string;
}

interface StoredProject {
  id: string;
  serviceAccounts: Map<string, StoredServiceAccount>;
  keys: Map<string, StoredKey>;
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
export async function startOpenAIEmulator(options: OpenAIEmulatorOptions = {}): Promise<OpenAIEmulator> {
  const projects = new Map<string, StoredProject>();
  const adminKeys = new Map<string, EmulatedKey>();
  const injected: InjectedResponse[] = [];
  const counters = { requests: 0, throttled: 0 };
  const rateLimiter =
    options.rateLimitPerSecond === undefined ? undefined : createRateLimiter(options.rateLimitPerSecond, options.rateLimitBurst ?? options.rateLimitPerSecond);

  const createServiceAccount = (project: StoredProject, name: string, role: StoredServiceAccount['role']): StoredServiceAccount => {
    const account: StoredServiceAccount = { id: `svc_acct_${randomId(24)}`, name, role, createdAt: nowSeconds() };
    project.serviceAccounts.set(account.id, account);
    return account;
  };

  const createKey = (project: StoredProject, fields: { name: string; scopes?: string[]; expiresInSeconds?: number | null; serviceAccountId?: string; userName?: string }): StoredKey => {
    const createdAt = nowSeconds();
    const key: StoredKey = {
      id: `key_${randomId(16)}`,
      // Service-account keys start with sk-svcacct-, keys of people with sk-proj-.
      value: `${fields.serviceAccountId ? 'sk-svcacct-' : 'sk-proj-'}${crypto.randomBytes(36).toString('base64url')}`,
      name: fields.name,
      createdAt,
      lastUsedAt: null,
      expiresAt: fields.expiresInSeconds ? createdAt + fields.expiresInSeconds : null,
      scopes: fields.scopes ?? [],
      serviceAccountId: fields.serviceAccountId,
      userName: fields.userName,
    };
    project.keys.set(key.id, key);
    return key;
  };

  const newProject = (): StoredProject => {
    const project: StoredProject = { id: `proj_${randomId(24)}`, serviceAccounts: new Map(), keys: new Map() };
    projects.set(project.id, project);
    return project;
  };

  const routes = (method: string, path: string, request: ParsedRequest): Reply => {
    if (method === 'GET' && path === '/models') {
      authenticateProjectKey(request);
      return ok({ object: 'list', data: MODELS.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'system' })) });
    }

    const projectMatch = /^\/organization\/projects\/([^/]+)(\/.*)$/.exec(path);
    if (!projectMatch) {
      return notFound(`Invalid URL (${method} ${BASE_PATH}${path})`);
    }
    authenticateAdmin(request);
    const retryAfterSeconds = rateLimiter?.take();
    if (retryAfterSeconds !== undefined) {
      counters.throttled++;
      return rateLimited(retryAfterSeconds);
    }
    const project = projects.get(projectMatch[1]);
    if (!project) {
      return notFound(`No such project: ${projectMatch[1]}`);
    }
    return projectRoutes(method, projectMatch[2], request, project);
  };

  const projectRoutes = (method: string, path: string, request: ParsedRequest, project: StoredProject): Reply => {
    if (path === '/api_keys' && method === 'GET') {
      return listKeys(project, request.query);
    }
    const keyMatch = /^\/api_keys\/([^/]+)$/.exec(path);
    if (keyMatch && (method === 'GET' || method === 'DELETE')) {
      const key = project.keys.get(keyMatch[1]);
      if (!key) {
        return notFound(`No such API key: ${keyMatch[1]}`);
      }
      if (method === 'GET') {
        return ok(viewOf(project, key));
      }
      project.keys.delete(key.id);
      return ok({ object: 'organization.project.api_key.deleted', id: key.id, deleted: true });
    }
    if (path === '/service_accounts' && method === 'POST') {
      return createServiceAccountRoute(project, request.body);
    }
    const accountMatch = /^\/service_accounts\/([^/]+)(\/api_keys)?$/.exec(path);
    if (accountMatch) {
      const account = project.serviceAccounts.get(accountMatch[1]);
      if (!account) {
        return notFound(`No such service account: ${accountMatch[1]}`);
      }
      if (accountMatch[2] && method === 'POST') {
        return createServiceAccountKeyRoute(project, account, request.body);
      }
      if (!accountMatch[2] && method === 'POST') {
        return updateServiceAccountRoute(account, request.body);
      }
      if (!accountMatch[2] && method === 'DELETE') {
        project.serviceAccounts.delete(account.id);
        for (const key of [...project.keys.values()].filter((candidate) => candidate.serviceAccountId === account.id)) {
          project.keys.delete(key.id);
        }
        return ok({ object: 'organization.project.service_account.deleted', id: account.id, deleted: true });
      }
    }
    return notFound(`Invalid URL (${method} ${BASE_PATH}/organization/projects/${project.id}${path})`);
  };

  const authenticateAdmin = (request: ParsedRequest): void => {
    const bearer = bearerOf(request);
    if ([...adminKeys.values()].some((key) => key.value === bearer)) {
      return;
    }
    if (findProjectKey(bearer)) {
      throw new RequestRejected(
        failure(403, 'You have insufficient permissions for this operation. The Administration API takes an admin API key.', 'invalid_request_error', null),
      );
    }
    throw new RequestRejected(invalidApiKey(bearer));
  };

  const findProjectKey = (value: string): { project: StoredProject; key: StoredKey } | undefined => {
    for (const project of projects.values()) {
      for (const key of project.keys.values()) {
        if (key.value === value) {
          return { project, key };
        }
      }
    }
    return undefined;
  };

  const authenticateProjectKey = (request: ParsedRequest): void => {
    const bearer = bearerOf(request);
    const found = findProjectKey(bearer);
    if (!found || (found.key.expiresAt !== null && found.key.expiresAt <= Date.now() / 1000)) {
      throw new RequestRejected(invalidApiKey(bearer));
    }
    const { project, key } = found;
    const role = key.serviceAccountId ? project.serviceAccounts.get(key.serviceAccountId)?.role : 'member';
    if (role === 'none') {
      throw new RequestRejected(insufficientPermissions('the key has no role in the project'));
    }
    if (key.scopes.length > 0 && !key.scopes.includes(MODELS_READ_SCOPE)) {
      throw new RequestRejected(insufficientPermissions(`Missing scopes: ${MODELS_READ_SCOPE}.`));
    }
    key.lastUsedAt = nowSeconds();
  };

  const listKeys = (project: StoredProject, query: URLSearchParams): Reply => {
    const limit = Number(query.get('limit') ?? 20);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return failure(400, 'limit must be an integer from 1 to 100.', 'invalid_request_error', null, 'limit');
    }
    const all = [...project.keys.values()];
    const after = query.get('after');
    const start = after ? all.findIndex((key) => key.id === after) + 1 : 0;
    const page = all.slice(start, start + limit);
    return ok({
      object: 'list',
      data: page.map((key) => viewOf(project, key)),
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
      has_more: start + limit < all.length,
    });
  };

  const createServiceAccountRoute = (project: StoredProject, body: unknown): Reply => {
    const fields = validateBody(body, { name: 'string', create_service_account_only: 'boolean', expires_in_seconds: 'integer' }, ['name']);
    const keyOnly = fields.create_service_account_only === true;
    if (keyOnly && fields.expires_in_seconds !== undefined && fields.expires_in_seconds !== null) {
      return failure(400, 'expires_in_seconds cannot be set when create_service_account_only is true.', 'invalid_request_error', null, 'expires_in_seconds');
    }
    const expiresInSeconds = checkExpiresIn(fields.expires_in_seconds);
    if (options.serviceAccountLimit !== undefined && project.serviceAccounts.size >= options.serviceAccountLimit) {
      return failure(
        400,
        `Project ${project.id} already has the maximum number of service accounts (${options.serviceAccountLimit}).`,
        'invalid_request_error',
        SERVICE_ACCOUNT_LIMIT_CODE,
      );
    }

    const account = createServiceAccount(project, fields.name as string, keyOnly ? 'none' : 'member');
    const response: Record<string, unknown> = { object: 'organization.project.service_account', id: account.id, name: account.name, role: account.role, created_at: account.createdAt, api_key: null };
    if (!keyOnly) {
      const key = createKey(project, { name: 'Secret Key', expiresInSeconds, serviceAccountId: account.id });
      response.api_key = createdKeyView(key);
    }
    return ok(response);
  };

  const updateServiceAccountRoute = (account: StoredServiceAccount, body: unknown): Reply => {
    const fields = validateBody(body, { name: 'string', role: 'string' }, []);
    if (fields.role !== undefined && fields.role !== 'member' && fields.role !== 'owner') {
      return failure(400, "role must be 'member' or 'owner'.", 'invalid_request_error', null, 'role');
    }
    if (typeof fields.name === 'string') account.name = fields.name;
    if (fields.role === 'member' || fields.role === 'owner') account.role = fields.role;
    return ok({ object: 'organization.project.service_account', id: account.id, name: account.name, role: account.role, created_at: account.createdAt });
  };

  const createServiceAccountKeyRoute = (project: StoredProject, account: StoredServiceAccount, body: unknown): Reply => {
    const fields = validateBody(body, { name: 'string', scopes: 'strings', expires_in_seconds: 'integer' }, []);
    const expiresInSeconds = checkExpiresIn(fields.expires_in_seconds);
    const key = createKey(project, { name: (fields.name as string | undefined) ?? 'Secret Key', scopes: fields.scopes as string[] | undefined, expiresInSeconds, serviceAccountId: account.id });
    return ok(createdKeyView(key));
  };

  const viewOf = (project: StoredProject, key: StoredKey): ProjectApiKeyView => {
    const account = key.serviceAccountId ? project.serviceAccounts.get(key.serviceAccountId) : undefined;
    const owner: ProjectApiKeyView['owner'] = account
      ? { type: 'service_account', service_account: { id: account.id, name: account.name, role: account.role, created_at: account.createdAt } }
      : { type: 'user', user: { id: `user_${key.id.slice(4)}`, name: key.userName ?? 'someone', email: 'someone@example.com', role: 'owner', created_at: key.createdAt } };
    return {
      object: 'organization.project.api_key',
      id: key.id,
      name: key.name,
      redacted_value: redact(key.value),
      created_at: key.createdAt,
      last_used_at: key.lastUsedAt,
      expires_at: key.expiresAt,
      owner,
    };
  };

  const server = http.createServer((req, res) => {
    void handle(req).then((reply) => {
      res.writeHead(reply.status, { 'Content-Type': 'application/json', ...reply.headers });
      res.end(JSON.stringify(reply.body));
    });
  });

  const handle = async (req: http.IncomingMessage): Promise<Reply> => {
    try {
      counters.requests++;
      const url = new URL(req.url ?? '/', `http://${HOST}`);
      const method = req.method ?? 'GET';
      const text = await readBody(req);
      if (!url.pathname.startsWith(`${BASE_PATH}/`)) {
        return notFound(`Invalid URL (${method} ${url.pathname})`);
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
          return failure(400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
        }
      }
      return routes(method, path, { authorization: req.headers.authorization, query: url.searchParams, body });
    } catch (error) {
      if (error instanceof RequestRejected) {
        return error.reply;
      }
      return failure(500, `emulator error: ${error instanceof Error ? error.message : String(error)}`, 'server_error', null);
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const projectOf = (projectId: string): StoredProject => {
    const project = projects.get(projectId);
    if (!project) {
      throw new Error(`The emulator has no project ${projectId}; call seedProject() first.`);
    }
    return project;
  };

  return {
    url: `http://${HOST}:${port}${BASE_PATH}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    seedProject: () => {
      if (adminKeys.size === 0) {
        const adminKey = { id: `key_${randomId(16)}`, value: `sk-admin-${crypto.randomBytes(36).toString('base64url')}` };
        adminKeys.set(adminKey.id, adminKey);
      }
      const adminKey = [...adminKeys.values()][0];
      const project = newProject();
      const account = createServiceAccount(project, 'app backend', 'member');
      const key = createKey(project, { name: 'Secret Key', serviceAccountId: account.id });
      return { projectId: project.id, adminKey: { ...adminKey }, currentKey: { id: key.id, value: key.value, serviceAccountId: account.id } };
    },
    seedServiceAccount: (projectId, seed) => {
      const project = projectOf(projectId);
      const account = createServiceAccount(project, seed.name, 'member');
      return Array.from({ length: seed.keys ?? 1 }, (_, index) => {
        const key = createKey(project, { name: `${seed.name} key ${index + 1}`, scopes: seed.scopes, serviceAccountId: account.id });
        return { id: key.id, value: key.value, serviceAccountId: account.id };
      });
    },
    seedUserKey: (projectId, name) => {
      const key = createKey(projectOf(projectId), { name, userName: 'Ada Lovelace' });
      return { id: key.id, value: key.value };
    },
    apiKey: (projectId, keyId) => {
      const project = projects.get(projectId);
      const key = project?.keys.get(keyId);
      return project && key ? { ...viewOf(project, key), scopes: key.scopes } : undefined;
    },
    apiKeyIds: (projectId) => [...(projects.get(projectId)?.keys.keys() ?? [])].sort(),
    serviceAccountIds: (projectId) => [...(projects.get(projectId)?.serviceAccounts.keys() ?? [])].sort(),
    counters,
    injectResponse: (response) => {
      injected.push(response);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------------------

interface ParsedRequest {
  authorization?: string;
  query: URLSearchParams;
  body: unknown;
}

type FieldType = 'string' | 'boolean' | 'integer' | 'strings';

/** Checks a JSON body against the fields an endpoint takes; unknown fields and wrong types get 400. */
function validateBody(body: unknown, fields: Record<string, FieldType>, required: string[]): Record<string, unknown> {
  const invalid = (message: string, param: string | null): never => {
    throw new RequestRejected(failure(400, message, 'invalid_request_error', null, param));
  };
  const object = body ?? {};
  if (typeof object !== 'object' || Array.isArray(object)) {
    return invalid('The request body must be a JSON object.', null);
  }
  const values = object as Record<string, unknown>;
  for (const [name, value] of Object.entries(values)) {
    const type = fields[name];
    if (type === undefined) {
      invalid(`Unrecognized request argument supplied: ${name}`, name);
    }
    if (value === null) {
      continue;
    }
    const valid =
      (type === 'string' && typeof value === 'string' && value.length > 0) ||
      (type === 'boolean' && typeof value === 'boolean') ||
      (type === 'integer' && Number.isInteger(value)) ||
      (type === 'strings' && Array.isArray(value) && value.every((item) => typeof item === 'string' && item.length > 0));
    if (!valid) {
      invalid(`Invalid type for '${name}'.`, name);
    }
  }
  for (const name of required) {
    if (values[name] === undefined || values[name] === null) {
      invalid(`Missing required parameter: '${name}'.`, name);
    }
  }
  return values;
}

function checkExpiresIn(value: unknown): number | null {
  if (value === undefined || value === null) {
    return null;
  }
  const seconds = value as number;
  if (seconds < 1 || seconds > MAX_EXPIRES_IN_SECONDS) {
    throw new RequestRejected(failure(400, `expires_in_seconds must be from 1 to ${MAX_EXPIRES_IN_SECONDS}.`, 'invalid_request_error', null, 'expires_in_seconds'));
  }
  return seconds;
}

function bearerOf(request: ParsedRequest): string {
  const bearer = /^Bearer (\S+)$/.exec(request.authorization ?? '');
  if (!bearer) {
    throw new RequestRejected(
      failure(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        'invalid_request_error',
        null,
      ),
    );
  }
  return bearer[1];
}

function createdKeyView(key: StoredKey) {
  return { object: 'organization.project.service_account.api_key', id: key.id, name: key.name, value: key.value, created_at: key.createdAt, expires_at: key.expiresAt };
}

/** OpenAI's redaction: the prefix and the last four characters, as in "sk-svcacct-****abcd". */
function redact(value: string): string {
  const prefix = /^sk-[a-z]+-/.exec(value)?.[0] ?? 'sk-';
  return `${prefix}****${value.slice(-4)}`;
}

function invalidApiKey(value: string): Reply {
  // OpenAI quotes the start and end of the rejected key in this message.
  const quoted = value.length > 12 ? `${value.slice(0, 8)}${'*'.repeat(10)}${value.slice(-4)}` : '********';
  return failure(
    401,
    `Incorrect API key provided: ${quoted}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    'invalid_request_error',
    'invalid_api_key',
  );
}

function insufficientPermissions(detail: string): Reply {
  return failure(
    401,
    `You have insufficient permissions for this operation. ${detail} Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.`,
    'invalid_request_error',
    null,
  );
}

function rateLimited(retryAfterSeconds: number): Reply {
  return {
    ...failure(
      429,
      `Rate limit reached for requests in organization org-emulator on requests per second: Please try again in ${retryAfterSeconds}s.`,
      'requests',
      'rate_limit_exceeded',
    ),
    headers: { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': `${retryAfterSeconds}s` },
  };
}

function notFound(message: string): Reply {
  return failure(404, message, 'invalid_request_error', null);
}

function failure(status: number, message: string, type: string, code: string | null, param: string | null = null): Reply {
  return { status, body: { error: { message, type, param, code } } };
}

function ok(body: unknown): Reply {
  return { status: 200, body };
}

function createRateLimiter(perSecond: number, capacity: number) {
  let available = capacity;
  let updatedAt = Date.now();
  return {
    /** Takes one request from the bucket and returns the seconds to wait when the bucket is empty. */
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

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function randomId(length: number): string {
  return crypto.randomBytes(length).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x').slice(0, length);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

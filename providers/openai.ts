import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import {
  ProviderError,
  type CreateKeyRequest,
  type CreatedKey,
  type KeyUsage,
  type Provider,
  type ProviderContext,
  type ProviderErrorKind,
  type ProviderKey,
} from './contract';
import { formatPath, valueAtPath } from './responses';
import { sendVendorRequest, type VendorRequest, type VendorResponse } from './http';

/**
 * The OpenAI provider keeps one project API key fresh. Every new key belongs to a service account
 * of its own, created with the rotation label in its name, so revoking the key deletes that
 * service account too. The management credential is an organization admin key, which only the
 * Administration API (/v1/organization/...) accepts. New keys are verified with GET /v1/models.
 *
 * Vendor facts below come from the openai-node SDK, which OpenAI generates from its OpenAPI spec
 * (src/resources/admin/organization/projects/ in github.com/openai/openai-node), and from a
 * November 2026 translation of OpenAI's API reference for the same endpoints at
 * https://www.w3cschool.cn/openai_api/. Errors have the shape `{ error: { message, type, param, code } }`.
 */

const PROVIDER_NAME = 'openai';
const DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/** The scope a restricted key needs for GET /v1/models, which Rotor calls to verify it. */
export const MODELS_READ_SCOPE = 'api.model.read';

// OpenAI's bound for expires_in_seconds on new keys: 365 days.
const MAX_EXPIRES_IN_SECONDS = 31_536_000;

// An expiry OpenAI reports more than this far from the requested one was not applied as requested.
const EXPIRY_TOLERANCE_SECONDS = 120;

// GET …/api_keys returns at most 100 keys a page. Past MAX_LIST_PAGES pages (10,000 keys) the
// cursor is assumed broken rather than followed forever.
const LIST_PAGE_SIZE = 100;
const MAX_LIST_PAGES = 100;

// A rotation label inside a service account name: the whole name, or the last word in parentheses.
const LABEL_IN_NAME = /(?:^|\()(rotor-[A-Za-z0-9]{1,24})\)?$/;

// Rate limits a later step of a scoped create waits out in place before the create fails. Each
// wait is OpenAI's delay plus jitter, a few seconds, well inside the activity's 1-minute timeout.
const IN_PLACE_RATE_LIMIT_WAITS = 4;

// Rotations throttled together would otherwise retry at the same moment and collide again, so
// each waits a random extra time up to this.
const RATE_LIMIT_JITTER_MAX_MS = 2_000;

// OpenAI's rate-limit messages end with "Please try again in 20s." or "in 446ms" or "in 1m30s".
const RETRY_DELAY_IN_MESSAGE = /try again in ((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)/i;

// Key values as OpenAI writes them in messages (sk-proj-…, sk-svcacct-…, sk-admin-…), including
// the partly starred form of "Incorrect API key provided: sk-proj-ab**********wxyz".
const KEY_IN_TEXT = /sk-[A-Za-z0-9_*-]{4,}/g;

// ---------------------------------------------------------------------------------------------
// Config, credential and secret
// ---------------------------------------------------------------------------------------------

export const openaiConfigSchema = z
  .object({
    /** OpenAI API base URL, including /v1. Tests point it at a local emulator. */
    base_url: z
      .url({ protocol: /^https?$/, message: `expected an http or https URL such as ${DEFAULT_BASE_URL}` })
      .default(DEFAULT_BASE_URL)
      .describe(`OpenAI API base URL including /v1 (default ${DEFAULT_BASE_URL}); tests point it at a local emulator`),
    /** The project whose API key Rotor keeps fresh. */
    project_id: z
      .string()
      .regex(/^proj_[A-Za-z0-9_-]+$/, 'expected an OpenAI project id such as proj_abc123')
      .describe('Id of the OpenAI project that owns the key, such as proj_abc123'),
    /** Readable part of each new service account's name; the rotation label follows it in parentheses. */
    service_account_name: z
      .string()
      .min(1)
      .max(80, 'expected at most 80 characters, because the rotation label follows')
      .optional()
      .describe('Readable name for the service account of each new key, such as "ci-summarizer"; Rotor appends the rotation label'),
  })
  .strict();

export type OpenAIConfig = z.infer<typeof openaiConfigSchema>;

/** The management credential Rotor reads from Vault: an organization admin key. */
export const openaiCredentialSchema = z.object({
  admin_key: z.string().min(1).describe('Admin API key of the OpenAI organization (sk-admin-…)'),
});

export type OpenAICredential = z.infer<typeof openaiCredentialSchema>;

/** The secret consumers read from Vault: the project API key and the ids that name it. */
export const openaiSecretSchema = z.object({
  api_key_id: z.string().min(1).describe('Id of the project API key, such as key_abc'),
  api_key: z.string().min(1).describe('The API key, sent as "Authorization: Bearer <api_key>"'),
  service_account_id: z.string().min(1).optional().describe('Id of the service account that owns the key'),
});

type OpenAIContext = ProviderContext<OpenAIConfig, OpenAICredential>;

const HELP = `Rotates one OpenAI project API key. Each new key belongs to a new service account of
the project, named after the rotation, so the key survives people leaving the organization.
Revoking the old key deletes its service account when that account has no other key, and
otherwise deletes the key alone. Keys owned by people can be revoked but never created over the
API.

Config:
  base_url              OpenAI API base URL including /v1 (default ${DEFAULT_BASE_URL}).
  project_id            Id of the project that owns the key, such as proj_abc123.
  service_account_name  Readable name for new service accounts, such as "ci-summarizer"
                        (optional). The account's name in OpenAI is
                        "<service_account_name> (<rotation label>)", or the label alone.

Management credential (stored in Vault): admin_key, an admin API key of the organization
(sk-admin-…). Only organization owners can create admin keys. Rotor never revokes it.

Restrictions:
  ip_allowlist   Not applied: OpenAI API keys cannot be bound to addresses.
  scopes         OpenAI key scopes, such as ${MODELS_READ_SCOPE} and model.request; empty means all
                 permissions. Rotor verifies new keys with GET /v1/models, so a scope list must
                 include ${MODELS_READ_SCOPE}. A scoped key is created in three calls: a service
                 account without a key, its role set to member, then a key with the scopes.
  expires_after  Becomes the key's expires_in_seconds, at most 365 days. Rotor checks the
                 expires_at OpenAI returns and rejects a key whose expiry was not applied.

Usage data: the project's key list reports last_used_at, so grace can wait until the old key
is idle. Rotor lists every key of the project, so give Rotor's keys a project of their own when
rotation.clear_stale_keys is on.`;

export const openaiProvider: Provider<OpenAIConfig, OpenAICredential> = {
  name: PROVIDER_NAME,
  summary: 'OpenAI project API keys of service accounts (create, verify with /v1/models, delete), with scopes and expiry',
  help: HELP,
  configSchema: openaiConfigSchema,
  credentialSchema: openaiCredentialSchema,
  secretSchema: openaiSecretSchema,
  capabilities: {
    ipAllowlist: false,
    scopes: true,
    expiry: true,
    usageData: true,
    // NOTE: OpenAI documents no limit on service accounts or keys per project, so none is set.
    // NOTE: OpenAI publishes no rate limit for the Administration API. 2 requests per second is
    // an estimate, and the provider waits the delay of any 429 OpenAI sends.
    defaultRateLimitPerSecond: 2,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  keyUsage,
};

/** Lists the project's API keys, labelled with the name of their service account (or their own name). */
async function listKeys(context: OpenAIContext): Promise<ProviderKey[]> {
  const keys = await listProjectKeys(context, 'listKeys');
  context.logger.debug({ provider: PROVIDER_NAME, projectId: context.config.project_id, keyCount: keys.length }, 'Listed OpenAI project API keys');

  const now = Date.now();
  return keys.map((key) => {
    const expired = key.expires_at !== undefined && key.expires_at !== null && key.expires_at * 1000 <= now;
    // A key whose owner lost access to the project is rejected like an expired one.
    const ownerLostAccess = key.owner_project_access === 'inactive';
    return {
      keyId: key.id,
      status: expired || ownerLostAccess ? 'inactive' : 'active',
      createdAt: isoFromUnixSeconds(key.created_at),
      label: labelFromName(key.owner.service_account?.name ?? key.name),
      lastUsedAt: key.last_used_at === null ? null : isoFromUnixSeconds(key.last_used_at),
    };
  });
}

/**
 * Creates a service account named with the rotation label and its API key, restricted to the
 * scopes and expiring as requested. Without scopes one call creates both; with scopes the key is
 * created separately, because only that endpoint takes scopes.
 */
async function createKey(context: OpenAIContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const name = serviceAccountName(context.config, request.label);
  const scopes = request.restrictions.scopes ?? [];
  checkScopes(scopes);
  const expiresInSeconds = request.restrictions.expiresAt === undefined ? undefined : secondsUntil(request.restrictions.expiresAt);
  if ((request.restrictions.ipAllowlist ?? []).length > 0) {
    context.logger.warn({ provider: PROVIDER_NAME, projectId: context.config.project_id }, 'restrictions.ip_allowlist is not applied because OpenAI API keys cannot be bound to addresses');
  }

  const requestedAt = Math.floor(Date.now() / 1000);
  const created = scopes.length === 0 ? await createAccountWithKey(context, name, expiresInSeconds) : await createAccountWithScopedKey(context, name, scopes, expiresInSeconds);
  context.logger.info(
    { provider: PROVIDER_NAME, projectId: context.config.project_id, keyId: created.key.id, serviceAccountId: created.serviceAccountId, serviceAccountName: name },
    'Created OpenAI service account and API key',
  );

  if (expiresInSeconds !== undefined) {
    await checkExpiryApplied(context, created, requestedAt + expiresInSeconds);
  }
  return {
    keyId: created.key.id,
    createdAt: isoFromUnixSeconds(created.key.created_at),
    secret: { api_key_id: created.key.id, api_key: created.key.value, service_account_id: created.serviceAccountId },
  };
}

/** Calls GET /v1/models with the new key. Throws 'authentication' while OpenAI does not accept it. */
async function verifyKey(context: OpenAIContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const parsedSecret = openaiSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError('invalid-config', `The staged secret for OpenAI API key ${keyId} is missing or has invalid fields: ${fields}. Expected api_key_id and api_key.`, {
      provider: PROVIDER_NAME,
      operation: 'verifyKey',
    });
  }
  const newKey = parsedSecret.data;
  if (newKey.api_key_id !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains OpenAI API key ${newKey.api_key_id}, not ${keyId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const call: OpenAICall = { operation: 'verifyKey', method: 'GET', path: '/models', keyId, bearer: newKey.api_key, signedWith: 'new key', secrets: [context.credential.admin_key, newKey.api_key] };
  await callOpenAI(context, call, modelListSchema);
  context.logger.info({ provider: PROVIDER_NAME, projectId: context.config.project_id, keyId }, 'Verified OpenAI API key');
}

/**
 * Revokes the key. When its service account has no other key, the service account is deleted
 * with it, so no empty accounts pile up. Any other key is deleted alone. A key that is already
 * gone counts as revoked.
 */
async function revokeKey(context: OpenAIContext, keyId: string): Promise<void> {
  let key: ProjectApiKey;
  try {
    key = await readProjectKey(context, 'revokeKey', keyId);
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, keyId }, 'OpenAI API key was already deleted');
      return;
    }
    throw error;
  }

  const serviceAccountId = key.owner.service_account?.id;
  if (serviceAccountId !== undefined) {
    const keys = await listProjectKeys(context, 'revokeKey');
    const otherKeys = keys.filter((other) => other.id !== keyId && other.owner.service_account?.id === serviceAccountId);
    if (otherKeys.length === 0) {
      await deleteServiceAccount(context, 'revokeKey', serviceAccountId, keyId);
      context.logger.info({ provider: PROVIDER_NAME, keyId, serviceAccountId }, 'Deleted OpenAI service account and its API key');
      return;
    }
  }

  // NOTE: OpenAI's reference of November 2026 deletes service-account keys here, but older SDK
  // releases document that this endpoint rejects them. Keys Rotor creates never take this path.
  const call = adminCall(context, 'revokeKey', 'DELETE', `${projectPath(context)}/api_keys/${encodeURIComponent(keyId)}`, keyId);
  try {
    await callOpenAI(context, call, deletedSchema);
  } catch (error) {
    if (!(error instanceof ProviderError && error.kind === 'not-found')) {
      throw error;
    }
  }
  context.logger.info({ provider: PROVIDER_NAME, keyId, serviceAccountId }, 'Deleted OpenAI API key');
}

/** Returns the key id of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.api_key_id;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

/** Reports the key's last_used_at from GET …/api_keys/{id}. */
async function keyUsage(context: OpenAIContext, keyId: string): Promise<KeyUsage> {
  const key = await readProjectKey(context, 'keyUsage', keyId);
  const lastUsedAt = key.last_used_at === null ? null : isoFromUnixSeconds(key.last_used_at);
  context.logger.debug({ provider: PROVIDER_NAME, keyId, lastUsedAt }, 'Read OpenAI API key usage');
  return { lastUsedAt };
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

interface CreatedAccountKey {
  serviceAccountId: string;
  key: z.infer<typeof createdKeySchema>;
}

/** Creates the service account with its first key in one call. */
async function createAccountWithKey(context: OpenAIContext, name: string, expiresInSeconds: number | undefined): Promise<CreatedAccountKey> {
  const body: Record<string, unknown> = { name };
  if (expiresInSeconds !== undefined) {
    body.expires_in_seconds = expiresInSeconds;
  }
  // NOTE: this POST takes no idempotency key. When its response is lost, the service account
  // still exists under the rotation label, and the create activity's retry revokes it by label.
  const call = adminCall(context, 'createKey', 'POST', `${projectPath(context)}/service_accounts`);
  const account = await callOpenAI(context, call, createdServiceAccountSchema, JSON.stringify(body));
  if (!account.api_key) {
    await deleteServiceAccount(context, 'createKey', account.id);
    throw new ProviderError(
      'transient',
      `OpenAI returned an unexpected response to createKey (POST ${call.path}): missing api_key. Rotor deleted service account ${account.id} and retries.`,
      { provider: PROVIDER_NAME, operation: 'createKey', vendorCode: 'UnexpectedResponse' },
    );
  }
  return { serviceAccountId: account.id, key: account.api_key };
}

/**
 * Creates a service account without a key, gives it the member role and creates a key with the
 * scopes. When a later step fails, the account is deleted again, because without a key it would
 * not show in the key list and no retry could find it.
 */
async function createAccountWithScopedKey(context: OpenAIContext, name: string, scopes: string[], expiresInSeconds: number | undefined): Promise<CreatedAccountKey> {
  const accountsPath = `${projectPath(context)}/service_accounts`;
  const account = await callOpenAI(context, adminCall(context, 'createKey', 'POST', accountsPath), createdServiceAccountSchema, JSON.stringify({ name, create_service_account_only: true }));

  try {
    const accountPath = `${accountsPath}/${encodeURIComponent(account.id)}`;
    await waitingOutRateLimits(context, () =>
      callOpenAI(context, adminCall(context, 'createKey', 'POST', accountPath), serviceAccountSchema, JSON.stringify({ role: 'member' })),
    );

    const keyBody: Record<string, unknown> = { name, scopes };
    if (expiresInSeconds !== undefined) {
      keyBody.expires_in_seconds = expiresInSeconds;
    }
    const key = await waitingOutRateLimits(context, () =>
      callOpenAI(context, adminCall(context, 'createKey', 'POST', `${accountPath}/api_keys`), createdKeySchema, JSON.stringify(keyBody)),
    );
    return { serviceAccountId: account.id, key };
  } catch (error) {
    await deleteAccountOfFailedCreate(context, account.id);
    throw error;
  }
}

/** Deletes the service account of a failed scoped create, or logs that a person has to. */
async function deleteAccountOfFailedCreate(context: OpenAIContext, serviceAccountId: string): Promise<void> {
  try {
    await waitingOutRateLimits(context, () => deleteServiceAccount(context, 'createKey', serviceAccountId));
    context.logger.info({ provider: PROVIDER_NAME, serviceAccountId }, 'Deleted the OpenAI service account of a failed create');
  } catch (error) {
    context.logger.warn(
      { provider: PROVIDER_NAME, serviceAccountId, error: error instanceof Error ? error.message : String(error) },
      'Could not delete the OpenAI service account of a failed create; it holds no key, so delete it by hand',
    );
  }
}

/**
 * Runs one step of a multi-call create, waiting out up to IN_PLACE_RATE_LIMIT_WAITS rate limits
 * in place. Failing the whole activity instead would throw away the service account the earlier
 * steps made, and under a shared limit the retries could keep failing at the same step.
 */
async function waitingOutRateLimits<T>(context: OpenAIContext, step: () => Promise<T>): Promise<T> {
  for (let wait = 0; ; wait++) {
    try {
      return await step();
    } catch (error) {
      if (!(error instanceof ProviderError && error.kind === 'rate-limited') || wait >= IN_PLACE_RATE_LIMIT_WAITS) {
        throw error;
      }
      context.logger.debug({ provider: PROVIDER_NAME, retryAfterMs: error.details.retryAfterMs }, 'OpenAI rate-limited a create step; waiting in place');
      await sleep(error.details.retryAfterMs ?? RATE_LIMIT_JITTER_MAX_MS, undefined, { signal: context.signal });
    }
  }
}

/** Deletes the new service account and fails when OpenAI did not set the expiry Rotor asked for. */
async function checkExpiryApplied(context: OpenAIContext, created: CreatedAccountKey, expectedExpiresAt: number): Promise<void> {
  const reported = created.key.expires_at;
  if (reported !== undefined && reported !== null && Math.abs(reported - expectedExpiresAt) <= EXPIRY_TOLERANCE_SECONDS) {
    return;
  }
  await deleteServiceAccount(context, 'createKey', created.serviceAccountId, created.key.id);
  const applied = reported === undefined || reported === null ? 'no expiry' : `expires_at ${isoFromUnixSeconds(reported)}`;
  throw new ProviderError(
    'invalid-config',
    `OpenAI created API key ${created.key.id} with ${applied} instead of ${isoFromUnixSeconds(expectedExpiresAt)}, so Rotor deleted it again. ` +
      'Check that the organization supports key expiry, or remove restrictions.expires_after.',
    { provider: PROVIDER_NAME, operation: 'createKey', vendorCode: 'ExpiryNotApplied' },
  );
}

async function deleteServiceAccount(context: OpenAIContext, operation: ProviderOperation, serviceAccountId: string, keyId?: string): Promise<void> {
  const call = adminCall(context, operation, 'DELETE', `${projectPath(context)}/service_accounts/${encodeURIComponent(serviceAccountId)}`, keyId);
  try {
    await callOpenAI(context, call, deletedSchema);
  } catch (error) {
    if (!(error instanceof ProviderError && error.kind === 'not-found')) {
      throw error;
    }
  }
}

async function listProjectKeys(context: OpenAIContext, operation: ProviderOperation): Promise<ProjectApiKey[]> {
  const keys: ProjectApiKey[] = [];
  let after: string | undefined;
  for (let page = 1; page <= MAX_LIST_PAGES; page++) {
    const query = new URLSearchParams({ limit: String(LIST_PAGE_SIZE) });
    if (after !== undefined) {
      query.set('after', after);
    }
    const call = adminCall(context, operation, 'GET', `${projectPath(context)}/api_keys?${query.toString()}`);
    const result = await callOpenAI(context, call, keyListSchema);
    keys.push(...result.data);

    after = result.last_id ?? result.data.at(-1)?.id;
    if (!result.has_more || result.data.length === 0 || after === undefined) {
      return keys;
    }
  }
  throw new ProviderError(
    'transient',
    `OpenAI returned an unexpected response to ${operation}: more than ${MAX_LIST_PAGES} pages of API keys for project ${context.config.project_id}.`,
    { provider: PROVIDER_NAME, operation, vendorCode: 'UnexpectedResponse' },
  );
}

async function readProjectKey(context: OpenAIContext, operation: ProviderOperation, keyId: string): Promise<ProjectApiKey> {
  const call = adminCall(context, operation, 'GET', `${projectPath(context)}/api_keys/${encodeURIComponent(keyId)}`, keyId);
  return callOpenAI(context, call, projectApiKeySchema);
}

function checkScopes(scopes: string[]): void {
  if (scopes.length > 0 && !scopes.includes(MODELS_READ_SCOPE)) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes (${scopes.join(', ')}) must include ${MODELS_READ_SCOPE}, because Rotor verifies new OpenAI keys with GET /v1/models. ` +
        'Add it, or leave scopes empty for a key with all permissions.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
}

/** Converts the requested expiry instant to OpenAI's expires_in_seconds, rejecting values OpenAI would. */
function secondsUntil(instant: string): number {
  const seconds = Math.ceil((Date.parse(instant) - Date.now()) / 1000);
  if (Number.isNaN(seconds) || seconds < 1 || seconds > MAX_EXPIRES_IN_SECONDS) {
    throw new ProviderError(
      'invalid-config',
      `The expires_after instant "${instant}" is not between 1 second and 365 days from now, the range OpenAI accepts for expires_in_seconds.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return seconds;
}

/** Builds the service account name: the label alone, or "<service_account_name> (<label>)". */
function serviceAccountName(config: OpenAIConfig, label: string): string {
  const name = config.service_account_name ? `${config.service_account_name} (${label})` : label;
  if (labelFromName(name) !== label) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${label}" cannot be stored in an OpenAI service account name: expected "rotor-" and up to 24 letters or digits.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return name;
}

/** Returns the rotation label inside a name, or the whole name for keys Rotor did not create. */
function labelFromName(name: string): string {
  return LABEL_IN_NAME.exec(name)?.[1] ?? name;
}

function projectPath(context: OpenAIContext): string {
  return `/organization/projects/${encodeURIComponent(context.config.project_id)}`;
}

function isoFromUnixSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

// ---------------------------------------------------------------------------------------------
// OpenAI requests and responses
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey' | 'keyUsage';

/** One request to OpenAI and what the error messages need to know about it. */
interface OpenAICall {
  operation: ProviderOperation;
  method: VendorRequest['method'];
  /** Path below base_url, with its query string. */
  path: string;
  keyId?: string;
  bearer: string;
  signedWith: 'admin key' | 'new key';
  /** Secret values removed from OpenAI's error text before it goes into a message. */
  secrets: string[];
}

function adminCall(context: OpenAIContext, operation: ProviderOperation, method: VendorRequest['method'], path: string, keyId?: string): OpenAICall {
  const adminKey = context.credential.admin_key;
  return { operation, method, path, keyId, bearer: adminKey, signedWith: 'admin key', secrets: [adminKey] };
}

const unixSeconds = z.number().int().nonnegative();

const createdKeySchema = z.object({
  id: z.string().min(1),
  value: z.string().min(1),
  name: z.string().nullish(),
  created_at: unixSeconds,
  expires_at: unixSeconds.nullish(),
});

const serviceAccountSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  role: z.string(),
});

const createdServiceAccountSchema = serviceAccountSchema.extend({ api_key: createdKeySchema.nullish() });

const projectApiKeySchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  created_at: unixSeconds,
  last_used_at: unixSeconds.nullable(),
  expires_at: unixSeconds.nullish(),
  owner_project_access: z.enum(['active', 'inactive']).optional(),
  owner: z.object({
    type: z.enum(['user', 'service_account']).optional(),
    service_account: z.object({ id: z.string().min(1), name: z.string() }).optional(),
  }),
});

type ProjectApiKey = z.infer<typeof projectApiKeySchema>;

const keyListSchema = z.object({
  data: z.array(projectApiKeySchema),
  has_more: z.boolean(),
  last_id: z.string().nullish(),
});

const deletedSchema = z.object({ id: z.string().min(1), deleted: z.boolean() });

const modelListSchema = z.object({ data: z.array(z.object({ id: z.string().min(1) })) });

const errorBodySchema = z.object({
  error: z.object({
    message: z.string().nullish(),
    type: z.string().nullish(),
    code: z.union([z.string(), z.number()]).nullish(),
  }),
});

/** Sends one request and returns the body, parsed. Throws a ProviderError for every rejected request. */
async function callOpenAI<T>(context: OpenAIContext, call: OpenAICall, schema: z.ZodType<T>, body?: string): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${call.bearer}`, Accept: 'application/json' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }

  let response: VendorResponse;
  try {
    response = await sendVendorRequest({
      provider: PROVIDER_NAME,
      operation: call.operation,
      method: call.method,
      url: `${context.config.base_url.replace(/\/+$/, '')}${call.path}`,
      headers,
      body,
      signal: context.signal,
      describeError: (status, json) => describeFailure(call, status, json),
    });
  } catch (error) {
    throw withJitter(error, call);
  }

  if (response.status < 200 || response.status >= 300) {
    throw new ProviderError('transient', `OpenAI ${call.method} ${pathOnly(call)} returned HTTP ${response.status}. Rotor retries it.`, {
      provider: PROVIDER_NAME,
      operation: call.operation,
      vendorCode: `HTTP ${response.status}`,
    });
  }
  return parseResponse(schema, response.json, call);
}

/**
 * Maps an OpenAI error response (HTTP 4xx) to a ProviderError. Server errors are left to the
 * shared mapping (transient), and so is a 429 whose message names no delay, which then waits
 * for Retry-After.
 */
function describeFailure(call: OpenAICall, status: number, json: unknown): ProviderError | undefined {
  if (status >= 500) {
    return undefined;
  }
  const parsed = errorBodySchema.safeParse(json);
  const error = parsed.success ? parsed.data.error : undefined;
  const code = error?.code === undefined || error.code === null ? undefined : String(error.code);
  const vendorCode = code ?? `HTTP ${status}`;
  const vendorText = describeVendorError(status, error?.message ?? undefined, call.secrets);
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode };

  const kind = classifyFailure(call, status, code, error?.message ?? '');
  switch (kind) {
    case 'rate-limited': {
      const vendorDelayMs = retryDelayFromMessage(error?.message ?? '');
      return vendorDelayMs === undefined ? undefined : rateLimitedError(call, vendorDelayMs, vendorCode);
    }
    case 'authentication':
      return new ProviderError('authentication', call.signedWith === 'new key' ? newKeyRejectedMessage(call, vendorText) : adminKeyRejectedMessage(call, vendorText), details);
    case 'permission':
      return new ProviderError(
        'permission',
        code === 'insufficient_quota'
          ? `OpenAI reports that the organization has no quota left for ${call.method} ${pathOnly(call)}: ${vendorText}. Check the organization's billing.`
          : `OpenAI denied ${call.method} ${pathOnly(call)} to the admin key: ${vendorText}. ` +
              "The integration's management credential must be an organization admin key (sk-admin-…), not a project key.",
        details,
      );
    case 'not-found':
      return new ProviderError('not-found', `OpenAI found no ${call.keyId ? `API key ${call.keyId}` : 'such object'} for ${call.operation}: ${vendorText}.`, details);
    case 'limit-reached':
      return new ProviderError(
        'limit-reached',
        `OpenAI refused another service account in project ${projectIdOf(call)}: ${vendorText}. Delete service accounts the project no longer uses, then start the rotation again.`,
        details,
      );
    case 'invalid-config':
      return new ProviderError(
        'invalid-config',
        `OpenAI rejected ${call.method} ${pathOnly(call)} as invalid: ${vendorText}. Check the integration's project_id and restrictions.`,
        details,
      );
    case 'transient':
      return new ProviderError('transient', `OpenAI ${call.method} ${pathOnly(call)} failed: ${vendorText}. Rotor retries it.`, details);
  }
}

function classifyFailure(call: OpenAICall, status: number, code: string | undefined, message: string): ProviderErrorKind {
  if (status === 429) {
    // OpenAI returns 429 for an exhausted billing quota too, and waiting does not help there.
    return code === 'insufficient_quota' ? 'permission' : 'rate-limited';
  }
  if (status === 401) {
    return 'authentication';
  }
  if (status === 403) {
    // A new key rejected here is not accepted yet, but a rejected admin key is a setup problem.
    return call.signedWith === 'new key' ? 'authentication' : 'permission';
  }
  if (status === 404) {
    return 'not-found';
  }
  // NOTE: OpenAI documents no limit on service accounts per project, nor an error for one, so a
  // create refused with a message about a maximum or limit counts as limit-reached.
  if (call.operation === 'createKey' && (/limit/i.test(code ?? '') || /maximum number|limit reached/i.test(message))) {
    return 'limit-reached';
  }
  if (status === 408 || status === 409) {
    return 'transient';
  }
  return 'invalid-config';
}

/** Creates the rate-limited error with OpenAI's delay plus jitter, so throttled rotations spread out. */
function rateLimitedError(call: OpenAICall, vendorDelayMs: number, vendorCode: string): ProviderError {
  const retryAfterMs = vendorDelayMs + Math.round(Math.random() * RATE_LIMIT_JITTER_MAX_MS);
  return new ProviderError('rate-limited', `OpenAI rate-limited ${call.method} ${pathOnly(call)} (${vendorCode}); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode,
    retryAfterMs,
  });
}

/** Adds jitter to a rate limit the shared helper mapped from Retry-After; other failures pass unchanged. */
function withJitter(error: unknown, call: OpenAICall): unknown {
  if (error instanceof ProviderError && error.kind === 'rate-limited' && error.details.provider === PROVIDER_NAME && error.details.vendorCode === 'HTTP 429') {
    return rateLimitedError(call, error.details.retryAfterMs ?? 0, 'HTTP 429');
  }
  return error;
}

/** Parses the delay in "Please try again in 1m30s." as milliseconds; undefined when the message names none. */
export function retryDelayFromMessage(message: string): number | undefined {
  const match = RETRY_DELAY_IN_MESSAGE.exec(message);
  if (!match) {
    return undefined;
  }
  const unitsMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const [, amount, unit] of match[1].matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(amount) * unitsMs[unit];
  }
  return Math.ceil(total);
}

function adminKeyRejectedMessage(call: OpenAICall, reason: string): string {
  return (
    `OpenAI rejected the admin key during ${call.operation} (${call.method} ${pathOnly(call)}): ${reason}. ` +
    "Check the admin_key at the integration's management credential path in Vault: it must be an active organization admin key."
  );
}

function newKeyRejectedMessage(call: OpenAICall, reason: string): string {
  return `OpenAI did not accept the new API key ${call.keyId ?? ''} for GET /v1/models: ${reason}. A new key usually works at once; Rotor retries until verify_timeout.`;
}

function pathOnly(call: OpenAICall): string {
  return call.path.split('?')[0];
}

function projectIdOf(call: OpenAICall): string {
  return decodeURIComponent(/^\/organization\/projects\/([^/]+)/.exec(call.path)?.[1] ?? 'unknown');
}

/** Formats OpenAI's error message on one line, without secret values or quoted key fragments. */
function describeVendorError(status: number, message: string | undefined, secrets: string[]): string {
  if (message === undefined || message.trim() === '') {
    return `HTTP ${status}`;
  }
  let text = message;
  for (const secret of secrets) {
    if (secret !== '') {
      text = text.split(secret).join('[redacted]');
    }
  }
  text = text.replace(KEY_IN_TEXT, '[redacted key]').replace(/\s+/g, ' ').trim();
  return `HTTP ${status}, ${text.length > 300 ? `${text.slice(0, 300)}…` : text}`;
}

/**
 * Parses a successful response. The error names the operation and the path of the first bad
 * field, never its value, because the response to a create contains the new key.
 */
function parseResponse<T>(schema: z.ZodType<T>, body: unknown, call: OpenAICall): T {
  const result = schema.safeParse(body);
  if (result.success) {
    return result.data;
  }

  const issue = result.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(body, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `OpenAI returned an unexpected response to ${call.operation} (${call.method} ${pathOnly(call)}): ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

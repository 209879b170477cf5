import { z } from 'zod';
import {
  ProviderError,
  type CreateKeyRequest,
  type CreatedKey,
  type KeyUsage,
  type Provider,
  type ProviderContext,
  type ProviderKey,
} from './contract';
import { sendVendorRequest, type VendorResponse } from './http';
import { formatPath, valueAtPath } from './responses';

/**
 * The Datadog provider keeps one Datadog API key or application key fresh through the v2 Key
 * Management API. Its management credential is an API key and application key pair, sent as
 * the DD-API-KEY and DD-APPLICATION-KEY headers. New API keys are verified with
 * GET /api/v1/validate and new application keys with GET /api/v2/validate_keys.
 *
 * Vendor facts below come from Datadog's API reference, "Key Management" and "Authentication"
 * (https://docs.datadoghq.com/api/latest/key-management/), its "Rate Limits" page
 * (https://docs.datadoghq.com/api/latest/rate-limits/) and the v2 OpenAPI schema published in
 * the DataDog/datadog-api-client-typescript repository.
 */

const PROVIDER_NAME = 'datadog';
const DEFAULT_BASE_URL = 'https://api.datadoghq.com';

/** API host of each Datadog site, for the help text. */
const DATADOG_SITE_URLS = [
  'https://api.datadoghq.com (US1, the default)',
  'https://api.us3.datadoghq.com (US3)',
  'https://api.us5.datadoghq.com (US5)',
  'https://api.datadoghq.eu (EU1)',
  'https://api.ap1.datadoghq.com (AP1)',
  'https://api.ap2.datadoghq.com (AP2)',
  'https://api.uk1.datadoghq.com (UK1)',
  'https://api.ddog-gov.com (US1-FED)',
  'https://api.us2.ddog-gov.com (US2-FED)',
];

// NOTE: older editions of Datadog's "API and Application Keys" page state "at most 50 API keys"
// per organization, and the current edition states no number. The list response reports the
// organization's limit as meta.max_allowed. Datadog documents no limit on application keys, but
// planning applies this capability to them too.
const MAX_API_KEYS_PER_ORG = 50;

// GET /api/v2/api_keys and /api/v2/current_user/application_keys return at most 100 keys a page
// (page[size]). MAX_LIST_PAGES bounds the loop against a response that never ends.
const LIST_PAGE_SIZE = 100;
const MAX_LIST_PAGES = 50;

// A rotation label inside a key name: the whole name, or the last word in parentheses.
const LABEL_IN_KEY_NAME = /(?:^|\()(rotor-[A-Za-z0-9]{1,24})\)?$/;

// Datadog's scopes are permission names such as dashboards_read.
const SCOPE_NAME = /^[a-z0-9_]+$/;

// Used when a 429 response has neither X-RateLimit-Reset nor X-RateLimit-Period. An estimate:
// Datadog's limit periods are counted in seconds and calendar-aligned.
const DEFAULT_RATE_LIMIT_DELAY_MS = 2_000;

// Rotations throttled in the same window would all retry when it resets and collide again, so
// each waits a random extra time up to this.
const RATE_LIMIT_JITTER_MAX_MS = 1_000;

const REQUEST_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Config, credential and secret
// ---------------------------------------------------------------------------------------------

export const DATADOG_KEY_TYPES = ['api', 'application'] as const;
export type DatadogKeyType = (typeof DATADOG_KEY_TYPES)[number];

export const datadogConfigSchema = z
  .object({
    /** API host of the organization's Datadog site. */
    base_url: z
      .url({ protocol: /^https?$/, message: `expected an http or https URL such as ${DEFAULT_BASE_URL}` })
      .refine(isOrigin, `expected an origin without a path, query or fragment, such as ${DEFAULT_BASE_URL}`)
      .default(DEFAULT_BASE_URL)
      .describe(`API host of the organization's Datadog site (default ${DEFAULT_BASE_URL}), such as https://api.datadoghq.eu`),
    /** Kind of key Rotor keeps fresh. */
    key_type: z
      .enum(DATADOG_KEY_TYPES)
      .default('api')
      .describe('api: an organization API key (DD-API-KEY); application: an application key of the management user (DD-APPLICATION-KEY). Default api.'),
    /** Readable part of each new key's name. The rotation label follows it in parentheses. */
    key_name: z
      .string()
      .trim()
      .min(1)
      .optional()
      .describe('Readable name for new keys, such as "ci-metrics"; Rotor appends the rotation label'),
  })
  .strict();

export type DatadogConfig = z.infer<typeof datadogConfigSchema>;

/** The management credential Rotor reads from Vault: an API key and application key pair. */
export const datadogCredentialSchema = z.object({
  api_key: z.string().min(1).describe('A Datadog API key of the organization, sent as DD-API-KEY'),
  application_key: z
    .string()
    .min(1)
    .describe(
      'Application key of the user or service account that manages the keys, sent as DD-APPLICATION-KEY. ' +
        'It needs api_keys_read, api_keys_write and api_keys_delete for key_type api, or user_app_keys for key_type application.',
    ),
});

export type DatadogCredential = z.infer<typeof datadogCredentialSchema>;

/** The secret consumers read from Vault: the key's id and either the API key or the application key. */
export const datadogSecretSchema = z
  .object({
    key_id: z.string().min(1).describe('Id of the key in Datadog, a UUID'),
    api_key: z.string().min(1).optional().describe('The API key, sent as DD-API-KEY (key_type api)'),
    application_key: z.string().min(1).optional().describe('The application key, sent as DD-APPLICATION-KEY (key_type application)'),
  })
  .refine((secret) => (secret.api_key === undefined) !== (secret.application_key === undefined), 'expected exactly one of api_key and application_key');

type DatadogContext = ProviderContext<DatadogConfig, DatadogCredential>;

const HELP = `Rotates one Datadog API key or application key. The old key is deleted after grace.

Config:
  base_url   API host of the organization's Datadog site (default ${DEFAULT_BASE_URL}):
             ${DATADOG_SITE_URLS.join('\n             ')}
  key_type   api (default): an organization API key, the key Agents and intake use.
             application: an application key owned by the management credential's user or
             service account, created under /api/v2/current_user/application_keys.
  key_name   Readable name for new keys, such as "ci-metrics" (optional). The key's name in
             Datadog is "<key_name> (<rotation label>)", or the label alone.

Management credential (stored in Vault): api_key, any API key of the organization, and
application_key, an application key of the user or service account that manages the keys.
For key_type api that user needs the permissions api_keys_read, api_keys_write and
api_keys_delete; for key_type application, user_app_keys. Rotor never revokes the
management credential's own key.

Secret written for consumers: key_id and api_key, or key_id and application_key. Consumers of
an application key also need an API key, which this integration does not rotate.

Restrictions:
  scopes         key_type application only: the new application key gets exactly these
                 Datadog scopes, such as dashboards_read. Rotor reads them back from Datadog
                 and deletes the key if they differ. Without scopes the key has every
                 permission of its user. API keys have no scopes, so scopes with key_type api
                 are rejected.
  ip_allowlist   Not applied: Datadog's IP allowlist covers the whole organization, not one key.
  expires_after  Not applied: Datadog keys have no expiry date.

Limits: Datadog has allowed at most ${MAX_API_KEYS_PER_ORG} API keys per organization, counting keys made for
other purposes. Rotor lists each key with its name as the label (the rotation label for keys
it created), and Datadog's date_last_used or last_used_at as usage data. Datadog rejects a
request past its rate limit with HTTP 429 and X-RateLimit-Reset, and Rotor retries after
that many seconds.`;

export const datadogProvider: Provider<DatadogConfig, DatadogCredential> = {
  name: PROVIDER_NAME,
  summary: 'Datadog API keys and application keys (create, validate, delete), with application-key scopes',
  help: HELP,
  configSchema: datadogConfigSchema,
  credentialSchema: datadogCredentialSchema,
  secretSchema: datadogSecretSchema,
  capabilities: {
    ipAllowlist: false,
    scopes: true,
    expiry: false,
    usageData: true,
    maxKeysPerPrincipal: MAX_API_KEYS_PER_ORG,
    // Datadog publishes no limit for the key-management endpoints and reports each endpoint's
    // limit only in X-RateLimit-* headers, so 1 request per second is an estimate. A rotation
    // makes about 8 key-management requests.
    defaultRateLimitPerSecond: 1,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  keyUsage,
};

/** Lists every key of the configured type, with its name as the label, or the rotation label inside it. */
async function listKeys(context: DatadogContext): Promise<ProviderKey[]> {
  const kind = keyKindOf(context.config);
  const keys = await listAllKeys(context, kind);
  context.logger.debug({ provider: PROVIDER_NAME, keyType: context.config.key_type, keyCount: keys.length }, `Listed Datadog ${kind.plural}`);

  return keys.map((key) => {
    // Datadog cannot disable a key: it exists and works, or it has been deleted.
    const listed: ProviderKey = { keyId: key.id, status: 'active', label: labelFromKeyName(key.name), lastUsedAt: key.lastUsedAt };
    if (key.createdAt) {
      listed.createdAt = key.createdAt;
    }
    return listed;
  });
}

/**
 * Creates a key named with the rotation label. An application key gets the requested scopes,
 * which are read back from Datadog's response; a key created with other scopes is deleted.
 */
async function createKey(context: DatadogContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const kind = keyKindOf(context.config);
  const name = keyName(context.config, request.label);
  const scopes = requestedScopes(kind, request.restrictions.scopes ?? []);
  logUnappliedRestrictions(context, request);

  const attributes: { name: string; scopes?: string[] } = { name };
  if (scopes.length > 0) {
    attributes.scopes = scopes;
  }
  const body = JSON.stringify({ data: { type: kind.resourceType, attributes } });

  // NOTE: Datadog takes no idempotency key on create. When its response is lost, the key still
  // exists under this name, and the create activity's retry revokes it by its rotation label.
  const call = managementCall(context, 'createKey', 'POST', kind.collectionPath);
  const created = await callDatadog(context, call, singleKeyResponseSchema(kind, 'create'), body);
  const key = toDatadogKey(created.data);
  context.logger.info({ provider: PROVIDER_NAME, keyType: context.config.key_type, keyId: key.id, keyName: name, scopes }, `Created Datadog ${kind.singular}`);

  if (kind.type === 'application' && scopes.length > 0 && !sameScopes(key.scopes ?? [], scopes)) {
    await deleteKey(context, kind, key.id, 'createKey');
    throw new ProviderError(
      'invalid-config',
      `Datadog created application key ${key.id} with the scopes [${(key.scopes ?? []).join(', ')}] instead of the requested [${scopes.join(', ')}], ` +
        'so Rotor deleted it. Check that scoped application keys are enabled for the organization and that the management user holds every requested permission.',
      { provider: PROVIDER_NAME, operation: 'createKey', vendorCode: 'ScopesDiffer' },
    );
  }

  return {
    keyId: key.id,
    createdAt: key.createdAt ?? new Date().toISOString(),
    secret: { key_id: key.id, [kind.secretField]: created.data.attributes.key },
  };
}

/**
 * Validates the new key with Datadog's validation endpoint, then checks that the key with this
 * id ends in the staged secret's last four characters, because the validation endpoints do
 * not say which key they accepted. Throws 'authentication' while Datadog does not accept the key.
 */
async function verifyKey(context: DatadogContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const kind = keyKindOf(context.config);
  const newKey = stagedKey(kind, keyId, secret);

  if (kind.type === 'api') {
    const call: DatadogCall = {
      operation: 'verifyKey',
      method: 'GET',
      path: '/api/v1/validate',
      keyId,
      apiKey: newKey,
      sentWith: 'new key',
      secrets: [newKey, context.credential.api_key, context.credential.application_key],
    };
    const validation = await callDatadog(context, call, z.object({ valid: z.boolean() }));
    if (!validation.valid) {
      throw new ProviderError('authentication', newKeyRejectedMessage(kind, keyId, 'valid: false'), {
        provider: PROVIDER_NAME,
        operation: 'verifyKey',
        vendorCode: 'valid false',
      });
    }
  } else {
    const call: DatadogCall = {
      operation: 'verifyKey',
      method: 'GET',
      path: '/api/v2/validate_keys',
      keyId,
      apiKey: context.credential.api_key,
      applicationKey: newKey,
      sentWith: 'new key',
      secrets: [newKey, context.credential.api_key, context.credential.application_key],
    };
    await callDatadog(context, call, z.object({ status: z.literal('ok') }));
  }

  const stored = await readKey(context, kind, keyId, 'verifyKey');
  const matches = stored.key !== undefined ? stored.key === newKey : stored.last4 === newKey.slice(-4);
  if (!matches) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret for Datadog ${kind.singular} ${keyId} is a different key: Datadog accepted it, but ${keyId} ends in "${stored.last4 ?? '?'}". ` +
        'The staging path in Vault does not belong to this rotation.',
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'KeyMismatch' },
    );
  }
  context.logger.info({ provider: PROVIDER_NAME, keyType: context.config.key_type, keyId }, `Verified Datadog ${kind.singular}`);
}

/**
 * Deletes the key, because Datadog cannot deactivate one first. A key that is already gone
 * counts as revoked. Rejects the management credential's own key, which later rotations need.
 */
async function revokeKey(context: DatadogContext, keyId: string): Promise<void> {
  const kind = keyKindOf(context.config);

  let existing: DatadogKey;
  try {
    existing = await readKey(context, kind, keyId, 'revokeKey');
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, keyId }, `Datadog ${kind.singular} was already deleted`);
      return;
    }
    throw error;
  }

  const managementKey = kind.managementKey(context.credential);
  // Datadog may omit the key itself (application keys in One-Time Read mode), and then only its
  // last four characters can tell. A rare other key that shares them is protected too.
  const isManagementKey = existing.key !== undefined ? existing.key === managementKey : existing.last4 === managementKey.slice(-4);
  if (isManagementKey) {
    throw new ProviderError(
      'invalid-config',
      `Datadog ${kind.singular} ${keyId} is, or ends like, the management credential's ${kind.credentialField} of this integration, and Rotor will not revoke it. ` +
        'Store a different key at the consumer path, or revoke this one by hand after replacing the management credential.',
      { provider: PROVIDER_NAME, operation: 'revokeKey' },
    );
  }

  await deleteKey(context, kind, keyId, 'revokeKey');
}

/** Returns the key id of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.key_id;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

/** Reports the key's date_last_used (API keys) or last_used_at (application keys). */
async function keyUsage(context: DatadogContext, keyId: string): Promise<KeyUsage> {
  const kind = keyKindOf(context.config);
  const key = await readKey(context, kind, keyId, 'keyUsage');
  context.logger.debug({ provider: PROVIDER_NAME, keyId, lastUsedAt: key.lastUsedAt }, `Read Datadog ${kind.singular} usage`);
  return { lastUsedAt: key.lastUsedAt };
}

// ---------------------------------------------------------------------------------------------
// Key types
// ---------------------------------------------------------------------------------------------

/** Endpoints, resource type and secret fields of one Datadog key type. */
interface KeyKind {
  type: DatadogKeyType;
  singular: string;
  plural: string;
  collectionPath: string;
  /** JSON:API resource type in requests and responses. */
  resourceType: 'api_keys' | 'application_keys';
  /** Field of the consumer secret that contains the key. */
  secretField: 'api_key' | 'application_key';
  /** Field of the management credential of the same type. */
  credentialField: 'api_key' | 'application_key';
  managementKey(credential: DatadogCredential): string;
}

const KEY_KINDS: Record<DatadogKeyType, KeyKind> = {
  api: {
    type: 'api',
    singular: 'API key',
    plural: 'API keys',
    collectionPath: '/api/v2/api_keys',
    resourceType: 'api_keys',
    secretField: 'api_key',
    credentialField: 'api_key',
    managementKey: (credential) => credential.api_key,
  },
  application: {
    type: 'application',
    singular: 'application key',
    plural: 'application keys',
    collectionPath: '/api/v2/current_user/application_keys',
    resourceType: 'application_keys',
    secretField: 'application_key',
    credentialField: 'application_key',
    managementKey: (credential) => credential.application_key,
  },
};

function keyKindOf(config: DatadogConfig): KeyKind {
  return KEY_KINDS[config.key_type];
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

/** A key as Rotor uses it, from either of Datadog's key resources. */
interface DatadogKey {
  id: string;
  name: string;
  createdAt?: string;
  lastUsedAt: string | null;
  last4?: string;
  /** The key itself; Datadog omits it from most responses other than create. */
  key?: string;
  scopes?: string[] | null;
}

async function listAllKeys(context: DatadogContext, kind: KeyKind): Promise<DatadogKey[]> {
  const keys: DatadogKey[] = [];
  for (let page = 0; page < MAX_LIST_PAGES; page++) {
    const query = new URLSearchParams({ 'page[size]': String(LIST_PAGE_SIZE), 'page[number]': String(page) });
    const call = managementCall(context, 'listKeys', 'GET', `${kind.collectionPath}?${query.toString()}`);
    const response = await callDatadog(context, call, keyListResponseSchema(kind));
    keys.push(...response.data.map(toDatadogKey));

    const total = response.meta?.page?.total_filtered_count;
    const finished = total !== undefined && total !== null ? keys.length >= total : response.data.length < LIST_PAGE_SIZE;
    if (finished || response.data.length === 0) {
      return keys;
    }
  }
  throw new ProviderError(
    'transient',
    `Datadog returned an unexpected response to listKeys: more than ${MAX_LIST_PAGES} pages of ${LIST_PAGE_SIZE} ${kind.plural}.`,
    { provider: PROVIDER_NAME, operation: 'listKeys', vendorCode: 'UnexpectedResponse' },
  );
}

async function readKey(context: DatadogContext, kind: KeyKind, keyId: string, operation: ProviderOperation): Promise<DatadogKey> {
  const call = managementCall(context, operation, 'GET', `${kind.collectionPath}/${encodeURIComponent(keyId)}`, keyId);
  const response = await callDatadog(context, call, singleKeyResponseSchema(kind, 'read'));
  return toDatadogKey(response.data);
}

/** Deletes a key. A key that is already gone counts as deleted. */
async function deleteKey(context: DatadogContext, kind: KeyKind, keyId: string, operation: ProviderOperation): Promise<void> {
  const call = managementCall(context, operation, 'DELETE', `${kind.collectionPath}/${encodeURIComponent(keyId)}`, keyId);
  try {
    await callDatadog(context, call, z.unknown());
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, keyId }, `Datadog ${kind.singular} was already deleted`);
      return;
    }
    throw error;
  }
  context.logger.info({ provider: PROVIDER_NAME, keyId }, `Deleted Datadog ${kind.singular}`);
}

/** Builds the key name: the label alone, or "<key_name> (<label>)". */
function keyName(config: DatadogConfig, label: string): string {
  const name = config.key_name ? `${config.key_name} (${label})` : label;
  if (labelFromKeyName(name) !== label) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${label}" cannot be stored in a Datadog key name: expected "rotor-" and up to 24 letters or digits.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return name;
}

/** Returns the rotation label inside a key name, or the whole name for keys Rotor did not create. */
function labelFromKeyName(name: string): string {
  return LABEL_IN_KEY_NAME.exec(name)?.[1] ?? name;
}

/** Checks the requested scopes: none for API keys, and Datadog permission names for application keys. */
function requestedScopes(kind: KeyKind, scopes: string[]): string[] {
  if (scopes.length === 0) {
    return [];
  }
  if (kind.type === 'api') {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes lists ${scopes.join(', ')}, but Datadog API keys have no scopes. ` +
        'Remove restrictions.scopes, or rotate an application key with key_type: application.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  const invalid = scopes.filter((scope) => !SCOPE_NAME.test(scope));
  if (invalid.length > 0) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes contains ${invalid.map((scope) => `"${scope}"`).join(', ')}, which is not a Datadog scope name. ` +
        'Expected permission names in lowercase letters, digits and underscores, such as dashboards_read.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return [...new Set(scopes)];
}

function sameScopes(actual: string[], requested: string[]): boolean {
  const actualSet = new Set(actual);
  return actualSet.size === requested.length && requested.every((scope) => actualSet.has(scope));
}

function logUnappliedRestrictions(context: DatadogContext, request: CreateKeyRequest): void {
  const { ipAllowlist, expiresAt } = request.restrictions;
  if (ipAllowlist !== undefined && ipAllowlist.length > 0) {
    context.logger.warn(
      { provider: PROVIDER_NAME, ipCount: ipAllowlist.length },
      "restrictions.ip_allowlist is not applied because Datadog cannot bind one key to addresses; use the organization's IP allowlist",
    );
  }
  if (expiresAt !== undefined) {
    context.logger.debug({ provider: PROVIDER_NAME }, 'restrictions.expires_after is not applied because Datadog keys have no expiry date');
  }
}

/** Returns the key inside a staged secret, after checking that it is of this type and belongs to keyId. */
function stagedKey(kind: KeyKind, keyId: string, secret: Record<string, string>): string {
  const parsed = z.object({ key_id: z.string().min(1), [kind.secretField]: z.string().min(1) }).safeParse(secret);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for Datadog ${kind.singular} ${keyId} is missing or has invalid fields: ${fields}. Expected key_id and ${kind.secretField}.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const stagedKeyId = parsed.data.key_id as string;
  if (stagedKeyId !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains Datadog ${kind.singular} ${stagedKeyId}, not ${keyId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  return parsed.data[kind.secretField] as string;
}

function isOrigin(value: string): boolean {
  const url = new URL(value);
  return url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
}

// ---------------------------------------------------------------------------------------------
// Datadog responses
// ---------------------------------------------------------------------------------------------

// Datadog writes times such as 2020-11-23T10:00:00.000Z or 2021-01-12T17:10:02.016366+00:00.
const datadogTime = z.string().refine((text) => !Number.isNaN(Date.parse(text)), 'expected a date-time');

const apiKeyAttributesSchema = z.object({
  name: z.string(),
  created_at: datadogTime.nullish(),
  date_last_used: datadogTime.nullish(),
  last4: z.string().nullish(),
  key: z.string().min(1).optional(),
});

const applicationKeyAttributesSchema = z.object({
  name: z.string(),
  created_at: datadogTime.nullish(),
  last_used_at: datadogTime.nullish(),
  last4: z.string().nullish(),
  key: z.string().min(1).optional(),
  scopes: z.array(z.string()).nullish(),
});

type ApiKeyResource = { id: string; type: 'api_keys'; attributes: z.infer<typeof apiKeyAttributesSchema> };
type ApplicationKeyResource = { id: string; type: 'application_keys'; attributes: z.infer<typeof applicationKeyAttributesSchema> };
type KeyResource = ApiKeyResource | ApplicationKeyResource;

function keyResourceSchema(kind: KeyKind, purpose: 'create' | 'read' | 'list'): z.ZodType<KeyResource> {
  const base = kind.type === 'api' ? apiKeyAttributesSchema : applicationKeyAttributesSchema;
  // Only the response to a create must contain the key: Datadog shows it once.
  const attributes = purpose === 'create' ? base.extend({ key: z.string().min(1) }) : base;
  return z.object({ id: z.string().min(1), type: z.literal(kind.resourceType), attributes }) as unknown as z.ZodType<KeyResource>;
}

function singleKeyResponseSchema(kind: KeyKind, purpose: 'create' | 'read') {
  return z.object({ data: keyResourceSchema(kind, purpose) }) as unknown as z.ZodType<{ data: KeyResource & { attributes: { key: string } } }>;
}

function keyListResponseSchema(kind: KeyKind) {
  return z.object({
    data: z.array(keyResourceSchema(kind, 'list')),
    meta: z
      .object({ page: z.object({ total_filtered_count: z.number().int().nonnegative().nullish() }).nullish() })
      .nullish(),
  });
}

function toDatadogKey(resource: KeyResource): DatadogKey {
  const { attributes } = resource;
  const lastUsed = resource.type === 'api_keys' ? resource.attributes.date_last_used : resource.attributes.last_used_at;
  const key: DatadogKey = { id: resource.id, name: attributes.name, lastUsedAt: lastUsed ? toIsoTime(lastUsed) : null };
  if (attributes.created_at) {
    key.createdAt = toIsoTime(attributes.created_at);
  }
  if (attributes.last4) {
    key.last4 = attributes.last4;
  }
  if (attributes.key !== undefined) {
    key.key = attributes.key;
  }
  if (resource.type === 'application_keys') {
    key.scopes = resource.attributes.scopes ?? null;
  }
  return key;
}

function toIsoTime(text: string): string {
  return new Date(Date.parse(text)).toISOString();
}

const errorBodySchema = z.object({ errors: z.array(z.string()) });

// ---------------------------------------------------------------------------------------------
// Calling Datadog
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey' | 'keyUsage';

/** One request to Datadog and what the error messages need to know about it. */
interface DatadogCall {
  operation: ProviderOperation;
  method: 'GET' | 'POST' | 'DELETE';
  /** Path with its query string. */
  path: string;
  keyId?: string;
  apiKey: string;
  applicationKey?: string;
  sentWith: 'management credential' | 'new key';
  /** Secret values removed from Datadog's error text before it goes into a message. */
  secrets: string[];
}

function managementCall(context: DatadogContext, operation: ProviderOperation, method: DatadogCall['method'], path: string, keyId?: string): DatadogCall {
  const { api_key: apiKey, application_key: applicationKey } = context.credential;
  return { operation, method, path, keyId, apiKey, applicationKey, sentWith: 'management credential', secrets: [apiKey, applicationKey] };
}

/** Sends one request and returns its parsed body. Throws a ProviderError for every failure. */
async function callDatadog<T>(context: DatadogContext, call: DatadogCall, schema: z.ZodType<T>, body?: string): Promise<T> {
  const response = await sendDatadogRequest(context, call, body);
  if (response.status >= 400) {
    throw await datadogFailure(context, call, response);
  }
  return parseResponse(schema, response.json, call);
}

/** Sends the request with the activity's cancellation signal. Resolves for every HTTP status, and only network failures throw (as transient). */
async function sendDatadogRequest(context: DatadogContext, call: DatadogCall, body?: string): Promise<VendorResponse> {
  const headers: Record<string, string> = { Accept: 'application/json', 'DD-API-KEY': call.apiKey };
  if (call.applicationKey !== undefined) {
    headers['DD-APPLICATION-KEY'] = call.applicationKey;
  }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  return sendVendorRequest({
    provider: PROVIDER_NAME,
    operation: call.operation,
    method: call.method,
    url: new URL(call.path, context.config.base_url).toString(),
    headers,
    body,
    signal: context.signal,
    timeoutMs: REQUEST_TIMEOUT_MS,
    returnErrorResponses: true,
  });
}

/**
 * Maps an error response to a ProviderError. Datadog rejects an unknown API key or application
 * key with HTTP 403, the same status as a missing permission, so a management request rejected
 * with 401 or 403 is followed by GET /api/v2/validate_keys to tell the two apart.
 */
async function datadogFailure(context: DatadogContext, call: DatadogCall, response: VendorResponse): Promise<ProviderError> {
  const vendorText = describeErrorBody(response, call.secrets);
  const vendorCode = `HTTP ${response.status}`;
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode };

  if (response.status === 429) {
    return rateLimitedError(call, response.headers);
  }
  if (response.status === 401 || response.status === 403) {
    if (call.sentWith === 'new key') {
      return new ProviderError('authentication', newKeyRejectedMessage(keyKindOf(context.config), call.keyId ?? '', vendorText), details);
    }
    const credentialValid = await managementCredentialIsValid(context, call);
    if (!credentialValid) {
      return new ProviderError(
        'authentication',
        `Datadog rejected the management credential during ${call.operation} (${call.method} ${pathOnly(call)}): ${vendorText}. ` +
          "Check api_key and application_key at the integration's management credential path in Vault, and that base_url is the organization's Datadog site.",
        details,
      );
    }
    return new ProviderError(
      'permission',
      `Datadog denied ${call.method} ${pathOnly(call)} to the management credential (${vendorText}), although its keys are valid. ` +
        `The application key's user needs ${requiredPermission(context.config, call)}, and a scoped application key needs that scope.`,
      details,
    );
  }
  if (response.status === 404) {
    const subject = call.keyId ? `${keyKindOf(context.config).singular} ${call.keyId}` : `endpoint ${pathOnly(call)}`;
    return new ProviderError('not-found', `Datadog found no ${subject} for ${call.operation}: ${vendorText}.`, details);
  }
  // NOTE: Datadog documents no error for a create past the organization's API key limit, so the
  // message is matched.
  if (call.operation === 'createKey' && response.status < 500 && /limit|maximum|too many/i.test(vendorText)) {
    return new ProviderError(
      'limit-reached',
      `The Datadog organization already has the maximum number of ${keyKindOf(context.config).plural}: ${vendorText}. ` +
        'Delete keys it no longer uses, then start the rotation again.',
      { ...details, vendorCode: 'KeyLimit' },
    );
  }
  if (response.status >= 500) {
    return new ProviderError('transient', `Datadog ${call.method} ${pathOnly(call)} failed: ${vendorText}. Rotor retries it.`, details);
  }
  return new ProviderError(
    'invalid-config',
    `Datadog rejected ${call.method} ${pathOnly(call)} as invalid: ${vendorText}. Check the integration's key_name and restrictions.scopes.`,
    details,
  );
}

/** Returns whether Datadog accepts the management credential's key pair at all. */
async function managementCredentialIsValid(context: DatadogContext, failedCall: DatadogCall): Promise<boolean> {
  const probe = managementCall(context, failedCall.operation, 'GET', '/api/v2/validate_keys');
  const response = await sendDatadogRequest(context, probe);
  if (response.status === 429) {
    throw rateLimitedError(probe, response.headers);
  }
  if (response.status === 401 || response.status === 403) {
    return false;
  }
  if (response.status >= 400) {
    throw new ProviderError(
      'transient',
      `Datadog denied ${failedCall.method} ${pathOnly(failedCall)} to the management credential, and checking the credential with GET /api/v2/validate_keys failed with HTTP ${response.status}. Rotor retries it.`,
      { provider: PROVIDER_NAME, operation: failedCall.operation, vendorCode: `HTTP ${response.status}` },
    );
  }
  return true;
}

function requiredPermission(config: DatadogConfig, call: DatadogCall): string {
  if (config.key_type === 'application') {
    return 'the permission user_app_keys';
  }
  const byMethod = { GET: 'api_keys_read', POST: 'api_keys_write', DELETE: 'api_keys_delete' } as const;
  return `the permission ${byMethod[call.method]}`;
}

/**
 * Creates the rate-limited error. X-RateLimit-Reset is the number of seconds until the limit's
 * period ends, and jitter spreads out rotations throttled in the same period.
 */
function rateLimitedError(call: DatadogCall, headers: Headers): ProviderError {
  const resetSeconds = secondsHeader(headers, 'x-ratelimit-reset') ?? secondsHeader(headers, 'x-ratelimit-period');
  const vendorDelayMs = resetSeconds === undefined ? DEFAULT_RATE_LIMIT_DELAY_MS : resetSeconds * 1000;
  const retryAfterMs = vendorDelayMs + Math.round(Math.random() * RATE_LIMIT_JITTER_MAX_MS);
  const limitName = headers.get('x-ratelimit-name');
  return new ProviderError(
    'rate-limited',
    `Datadog rate-limited ${call.method} ${pathOnly(call)} (HTTP 429${limitName ? `, limit ${limitName}` : ''}); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`,
    { provider: PROVIDER_NAME, operation: call.operation, vendorCode: 'HTTP 429', retryAfterMs },
  );
}

function secondsHeader(headers: Headers, name: string): number | undefined {
  const value = headers.get(name);
  if (value === null || value.trim() === '') {
    return undefined;
  }
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

function newKeyRejectedMessage(kind: KeyKind, keyId: string, reason: string): string {
  return (
    `Datadog did not accept the new ${kind.singular} ${keyId} (${reason}). A new key usually works within seconds. ` +
    "If the organization's IP allowlist excludes this worker's address, Datadog rejects every key from here."
  );
}

function pathOnly(call: DatadogCall): string {
  return call.path.split('?')[0];
}

/** Formats Datadog's `errors` list on one line without secret values. An HTML or empty body becomes the status alone. */
function describeErrorBody(response: VendorResponse, secrets: string[]): string {
  const parsed = errorBodySchema.safeParse(response.json);
  if (!parsed.success || parsed.data.errors.length === 0) {
    return `HTTP ${response.status}`;
  }
  let text = `HTTP ${response.status}: ${parsed.data.errors.join('; ')}`;
  for (const secret of secrets) {
    if (secret !== '') {
      text = text.split(secret).join('[redacted]');
    }
  }
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/**
 * Parses a successful response. The error names the operation and the path of the first bad
 * field, never its value, because the response to a create contains the new key.
 */
function parseResponse<T>(schema: z.ZodType<T>, body: unknown, call: DatadogCall): T {
  const result = schema.safeParse(body);
  if (result.success) {
    return result.data;
  }

  const issue = result.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(body, issue.path) === undefined ? `${path} is missing` : `${path}: ${issue.message}`;
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `Datadog returned an unexpected response to ${call.operation} (${call.method} ${pathOnly(call)}): ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

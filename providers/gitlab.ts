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
import { parseRetryAfter, sendVendorRequest, type VendorRequest, type VendorResponse } from './http';
import { formatPath, valueAtPath } from './responses';

/**
 * The GitLab provider keeps one project, group or personal access token fresh. Its management
 * credential is a personal access token of a user who may create that kind of token. New tokens
 * are verified with GET /personal_access_tokens/self, which any token may call about itself and
 * which reports the token's scopes, expiry date and state, so Rotor reads the restrictions back.
 *
 * GitLab's rotate endpoints revoke the old token at once, so Rotor never calls them: it creates
 * a second token and revokes the old one after grace.
 */

const PROVIDER_NAME = 'gitlab';
const DEFAULT_BASE_URL = 'https://gitlab.com/api/v4';

// GitLab's default maximum lifetime of access tokens since GitLab 16.0. GitLab 17.6 and later
// can raise it to 400 days (feature flag buffered_token_expiration_limit), and administrators of
// GitLab Ultimate can lower it (https://docs.gitlab.com/user/profile/personal_access_tokens/).
const DEFAULT_MAX_LIFETIME_DAYS = 365;
const MAX_LIFETIME_DAYS_CAP = 400;

// Token names are varchar(255) in GitLab's database.
const MAX_TOKEN_NAME_LENGTH = 255;

// GitLab returns at most 100 items a page. More than MAX_LIST_PAGES pages of active tokens for
// one project, group or user means something other than Rotor creates tokens there.
const LIST_PAGE_SIZE = 100;
const MAX_LIST_PAGES = 20;

// A rotation label inside a token name: the whole name, or the last word in parentheses.
const LABEL_IN_TOKEN_NAME = /(?:^|\()(rotor-[A-Za-z0-9]{1,24})\)?$/;

// Roles a project or group access token can have, with GitLab's access_level numbers
// (https://docs.gitlab.com/api/project_access_tokens/).
const ACCESS_LEVELS = { guest: 10, planner: 15, reporter: 20, developer: 30, maintainer: 40, owner: 50 } as const;
type AccessLevelName = keyof typeof ACCESS_LEVELS;
const ACCESS_LEVEL_NAMES = Object.keys(ACCESS_LEVELS) as [AccessLevelName, ...AccessLevelName[]];
// GitLab gives a project or group access token this role when the request names none.
const DEFAULT_ACCESS_LEVEL: AccessLevelName = 'maintainer';

// Used when GitLab returns 429 without Retry-After. An estimate: GitLab's documented limits
// count requests per minute, and its throttles send Retry-After, but limits inside the
// application may not.
const DEFAULT_RATE_LIMIT_DELAY_MS = 30_000;

// Rotations throttled together would otherwise all retry after the same Retry-After and collide
// again, so each waits a random extra time up to this.
const RATE_LIMIT_JITTER_MAX_MS = 2_000;

// ---------------------------------------------------------------------------------------------
// Config, credential and secret
// ---------------------------------------------------------------------------------------------

const resourceIdSchema = z.union([
  z.number().int().positive(),
  z.string().regex(/^[A-Za-z0-9_.\-/]+$/, 'expected a numeric id or a full path such as my-group/my-project'),
]);

const scopeSchema = z.string().regex(/^[a-z][a-z_]*$/, 'expected a GitLab scope name such as read_api or read_repository');

export const gitlabConfigSchema = z
  .object({
    base_url: z
      .url({ protocol: /^https?$/, message: `expected an http or https URL such as ${DEFAULT_BASE_URL}` })
      .default(DEFAULT_BASE_URL)
      .describe('GitLab REST API base URL, ending in /api/v4; tests point it at a local emulator'),
    token_type: z
      .enum(['project', 'group', 'personal'])
      .describe('Kind of token Rotor rotates: a project access token, a group access token, or a personal access token of user_id'),
    project_id: resourceIdSchema.optional().describe('Project that owns the token (token_type project): its numeric id or full path'),
    group_id: resourceIdSchema.optional().describe('Group that owns the token (token_type group): its numeric id or full path'),
    user_id: z.number().int().positive().optional().describe('User who owns the token (token_type personal): numeric user id'),
    access_level: z
      .enum(ACCESS_LEVEL_NAMES)
      .optional()
      .describe(`Role of a project or group access token: ${ACCESS_LEVEL_NAMES.join(', ')}; GitLab's default is ${DEFAULT_ACCESS_LEVEL}`),
    scopes: z
      .array(scopeSchema)
      .min(1, 'expected at least one scope')
      .optional()
      .describe('Scopes of each new token when restrictions.scopes is empty, such as [read_api, read_repository]'),
    token_name: z
      .string()
      .min(1)
      .max(MAX_TOKEN_NAME_LENGTH - 40, `expected at most ${MAX_TOKEN_NAME_LENGTH - 40} characters, because the rotation label follows`)
      .optional()
      .describe('Readable name for new tokens, such as "ci-deployer"; Rotor appends the rotation label'),
    max_lifetime_days: z
      .number()
      .int()
      .min(1)
      .max(MAX_LIFETIME_DAYS_CAP)
      .default(DEFAULT_MAX_LIFETIME_DAYS)
      .describe('Maximum token lifetime the GitLab instance allows, in days; new tokens without expires_after expire this many days ahead'),
  })
  .strict()
  .superRefine((config, issues) => {
    const owners = { project: 'project_id', group: 'group_id', personal: 'user_id' } as const;
    const expected = owners[config.token_type];
    for (const field of Object.values(owners)) {
      const present = config[field] !== undefined;
      if (field === expected && !present) {
        issues.addIssue({ code: 'custom', path: [field], message: `missing; token_type ${config.token_type} needs ${field}` });
      }
      if (field !== expected && present) {
        issues.addIssue({ code: 'custom', path: [field], message: `not used with token_type ${config.token_type}; set ${expected} instead` });
      }
    }
    if (config.token_type === 'personal' && config.access_level !== undefined) {
      issues.addIssue({ code: 'custom', path: ['access_level'], message: 'only project and group access tokens have a role; remove access_level' });
    }
  });

export type GitLabConfig = z.infer<typeof gitlabConfigSchema>;

/** The management credential Rotor reads from Vault: a personal access token with the api scope. */
export const gitlabCredentialSchema = z.object({
  token: z.string().min(1).describe('Personal access token with the api scope of a user who may create the tokens (see help)'),
});

export type GitLabCredential = z.infer<typeof gitlabCredentialSchema>;

/** The secret consumers read from Vault: the token, its id and the restrictions it was created with. */
export const gitlabSecretSchema = z.object({
  token_id: z.string().regex(/^\d+$/).describe('Numeric id of the access token'),
  token: z.string().min(1).describe('The access token, sent as "PRIVATE-TOKEN: <token>" or "Authorization: Bearer <token>"'),
  expires_at: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).describe('Date the token expires, at 00:00 UTC, as YYYY-MM-DD'),
  scopes: z.string().min(1).describe('Scopes of the token, separated by spaces'),
});

type GitLabContext = ProviderContext<GitLabConfig, GitLabCredential>;

const HELP = `Rotates one GitLab project access token, group access token or personal access token.
Each new token is created next to the current one, and Rotor revokes the old token after grace.
Rotor never uses GitLab's rotate endpoints, because they revoke the old token at once.

Config:
  base_url           GitLab REST API base URL (default ${DEFAULT_BASE_URL}).
  token_type         project, group or personal.
  project_id         project id or full path, for token_type project.
  group_id           group id or full path, for token_type group.
  user_id            numeric user id, for token_type personal.
  access_level       role of a project or group token: ${ACCESS_LEVEL_NAMES.join(', ')}
                     (default ${DEFAULT_ACCESS_LEVEL}).
  scopes             scopes of each new token when restrictions.scopes is empty.
  token_name         readable name for new tokens (optional). The token's name in GitLab is
                     "<token_name> (<rotation label>)", or the label alone.
  max_lifetime_days  the instance's maximum token lifetime (default ${DEFAULT_MAX_LIFETIME_DAYS}; GitLab 17.6 and
                     later may allow ${MAX_LIFETIME_DAYS_CAP}, and an administrator may set less).

Management credential (stored in Vault): token, a personal access token with the api scope.
  project tokens   its user needs the Maintainer role on the project, or Owner for an owner token.
  group tokens     its user needs the Owner role on the group.
  personal tokens  its user must be an administrator; with Admin Mode on, the token also needs
                   the admin_mode scope. GitLab.com has no API to create personal access tokens
                   for a user, so this works on GitLab Self-Managed and Dedicated only.
GitLab accepts only personal access tokens here, not project or group access tokens. On GitLab.com,
project and group access tokens need the Premium or Ultimate tier.

Restrictions:
  scopes         the token's scopes, such as read_api or read_repository; they replace the
                 config's scopes. Verification reads them back and fails on a difference.
  expires_after  becomes the token's expires_at date. GitLab tokens expire at 00:00 UTC on that
                 date, so Rotor takes the date on or before the requested instant. Without it,
                 tokens expire max_lifetime_days ahead, because GitLab requires an expiry date.
  ip_allowlist   not supported: GitLab cannot bind a token to addresses, and rotor audit reports it.

Each project or group access token gets its own bot user, so a new token does not inherit
protected-branch rules given to the bot of the old one. GitLab updates last_used_at at most
every 10 minutes, which is the granularity of grace's idle check. Rotor lists the active tokens
of the project, group or user, with their name as the label.`;

export const gitlabProvider: Provider<GitLabConfig, GitLabCredential> = {
  name: PROVIDER_NAME,
  summary: 'GitLab project, group and personal access tokens (create, verify, revoke), with scopes and expiry',
  help: HELP,
  configSchema: gitlabConfigSchema,
  credentialSchema: gitlabCredentialSchema,
  secretSchema: gitlabSecretSchema,
  capabilities: {
    ipAllowlist: false,
    scopes: true,
    expiry: true,
    usageData: true,
    // GitLab documents no limit on the number of access tokens, but GitLab EE can reject a
    // create with "Access token limit reached", which Rotor reports as limit-reached.
    // GitLab.com allows 2,000 authenticated API requests per minute per user
    // (https://about.gitlab.com/blog/2020/12/17/automation-check-in-and-rate-limit-changes-on-gitlab-dot-com/).
    // Self-Managed instances that turn on the authenticated API limit default to 7,200 per hour,
    // 2 per second (https://docs.gitlab.com/administration/settings/user_and_ip_rate_limits/).
    // Rotor takes the lower.
    defaultRateLimitPerSecond: 2,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  configuredScopes: (config) => config.scopes ?? [],
  keyUsage,
};

/** Lists the active tokens of the project, group or user, with their name as the label, or the rotation label inside it. */
async function listKeys(context: GitLabContext): Promise<ProviderKey[]> {
  const tokens = await listTokens(context);
  context.logger.debug({ provider: PROVIDER_NAME, tokenType: context.config.token_type, tokenCount: tokens.length }, 'Listed GitLab access tokens');

  return tokens.map((token) => ({
    keyId: String(token.id),
    status: token.active && !token.revoked ? 'active' : 'inactive',
    createdAt: toIsoTime(token.created_at),
    label: labelFromTokenName(token.name),
    lastUsedAt: token.last_used_at ? toIsoTime(token.last_used_at) : null,
  }));
}

/**
 * Creates a token with the requested scopes, expiry date and role. Its name carries the rotation
 * label, so a retried create finds it.
 */
async function createKey(context: GitLabContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const { config } = context;
  const { restrictions } = request;
  const name = tokenName(config, request.label);
  const scopes = requestedScopes(config, restrictions.scopes ?? []);
  const expiresAt = expiryDate(restrictions.expiresAt, config.max_lifetime_days, new Date());

  if ((restrictions.ipAllowlist ?? []).length > 0) {
    context.logger.warn(
      { provider: PROVIDER_NAME, label: request.label },
      'GitLab cannot bind access tokens to IP addresses; the new token works from any address',
    );
  }

  const body: CreateTokenBody = { name, scopes, expires_at: expiresAt };
  if (config.token_type !== 'personal') {
    body.access_level = ACCESS_LEVELS[config.access_level ?? DEFAULT_ACCESS_LEVEL];
  }

  // NOTE: GitLab's create endpoints take no idempotency key. When a response is lost, the token
  // still exists under this name, and the create activity's retry revokes it by its rotation label.
  const call = managementCall(context, 'createKey', 'POST', createPath(config));
  const created = await callGitLab(context, call, createdTokenSchema, { body: JSON.stringify(body) });
  context.logger.info({ provider: PROVIDER_NAME, keyId: String(created.id), tokenName: name, expiresAt, scopes }, 'Created GitLab access token');

  return {
    keyId: String(created.id),
    createdAt: toIsoTime(created.created_at),
    secret: { token_id: String(created.id), token: created.token, expires_at: expiresAt, scopes: scopes.join(' ') },
  };
}

/**
 * Calls GET /personal_access_tokens/self with the new token and checks that GitLab reports it
 * active, with the scopes and expiry date it was created with, and for project and group tokens
 * with the configured role. Throws 'authentication' while GitLab does not accept the token, and
 * 'invalid-config' when a restriction differs.
 */
async function verifyKey(context: GitLabContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const staged = parseStagedSecret(keyId, secret);

  const call: GitLabCall = {
    operation: 'verifyKey',
    method: 'GET',
    path: '/personal_access_tokens/self',
    keyId,
    token: staged.token,
    sentWith: 'new token',
    secrets: [context.credential.token, staged.token],
  };
  const self = await callGitLab(context, call, tokenDetailsSchema);

  if (String(self.id) !== keyId) {
    throw new ProviderError(
      'authentication',
      `The staged token for GitLab access token ${keyId} authenticated as token ${self.id}. Check that the staged secret belongs to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'UnexpectedToken' },
    );
  }
  if (self.revoked || !self.active) {
    const state = self.revoked ? 'revoked' : 'inactive';
    throw new ProviderError(
      'authentication',
      `GitLab reports the new access token ${keyId} as ${state}. Check its expiry date and whether someone revoked it in GitLab.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: state },
    );
  }

  const requestedScopes = staged.scopes.split(' ').sort();
  const grantedScopes = [...self.scopes].sort();
  if (requestedScopes.join(' ') !== grantedScopes.join(' ')) {
    throw restrictionMismatch(keyId, 'scopes', grantedScopes.join(', '), requestedScopes.join(', '));
  }
  if (self.expires_at !== staged.expires_at) {
    throw restrictionMismatch(keyId, 'expires_at', self.expires_at ?? 'no expiry date', staged.expires_at);
  }
  if (context.config.token_type !== 'personal') {
    await verifyAccessLevel(context, keyId);
  }
  context.logger.info({ provider: PROVIDER_NAME, keyId }, 'Verified GitLab access token');
}

/**
 * Revokes the token. A token that is already revoked or gone counts as revoked. Rejects the
 * management token itself, which Rotor needs for every later rotation.
 */
async function revokeKey(context: GitLabContext, keyId: string): Promise<void> {
  // Only a personal token can be the management token: project and group tokens belong to bot users.
  if (context.config.token_type === 'personal') {
    const management = await callGitLab(context, managementCall(context, 'revokeKey', 'GET', '/personal_access_tokens/self'), tokenDetailsSchema);
    if (String(management.id) === keyId) {
      throw new ProviderError(
        'invalid-config',
        `GitLab access token ${keyId} is the management token of this integration, and Rotor will not revoke it. ` +
          'Store a different token at the consumer path, or revoke this one by hand after replacing the management credential.',
        { provider: PROVIDER_NAME, operation: 'revokeKey' },
      );
    }
  }

  const call = managementCall(context, 'revokeKey', 'DELETE', tokenPath(context.config, keyId), keyId);
  try {
    await callGitLab(context, call, z.unknown());
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      context.logger.info({ provider: PROVIDER_NAME, keyId }, 'GitLab access token was already gone');
      return;
    }
    // GitLab returns 400 when it cannot revoke a token, which some versions do for a token
    // that is already revoked. Only the token's own state separates the two cases.
    if (error instanceof ProviderError && error.kind === 'invalid-config' && (await isRevokedOrGone(context, keyId))) {
      context.logger.info({ provider: PROVIDER_NAME, keyId }, 'GitLab access token was already revoked');
      return;
    }
    throw error;
  }
  context.logger.info({ provider: PROVIDER_NAME, keyId }, 'Revoked GitLab access token');
}

/** Returns the token id of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.token_id;
  return typeof keyId === 'string' && /^\d+$/.test(keyId) ? keyId : undefined;
}

/** Reports the token's last_used_at, which GitLab updates at most every 10 minutes. */
async function keyUsage(context: GitLabContext, keyId: string): Promise<KeyUsage> {
  const call = managementCall(context, 'keyUsage', 'GET', tokenPath(context.config, keyId), keyId);
  const token = await callGitLab(context, call, tokenDetailsSchema);

  const lastUsedAt = token.last_used_at ? toIsoTime(token.last_used_at) : null;
  context.logger.debug({ provider: PROVIDER_NAME, keyId, lastUsedAt }, 'Read GitLab access token usage');
  return { lastUsedAt };
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function listTokens(context: GitLabContext): Promise<TokenDetails[]> {
  const tokens: TokenDetails[] = [];
  for (let page = 1; page <= MAX_LIST_PAGES; page++) {
    const call = managementCall(context, 'listKeys', 'GET', listPath(context.config, page));
    const { result, response } = await callGitLabWithResponse(context, call, z.array(tokenDetailsSchema));
    tokens.push(...result);

    // GitLab leaves X-Next-Page empty on the last page.
    const nextPage = response.headers.get('x-next-page');
    if (!nextPage || result.length === 0) {
      return tokens;
    }
  }
  throw new ProviderError(
    'transient',
    `GitLab returned an unexpected response to listKeys: more than ${MAX_LIST_PAGES} pages of ${LIST_PAGE_SIZE} active access tokens. ` +
      'Revoke tokens the project, group or user no longer uses.',
    { provider: PROVIDER_NAME, operation: 'listKeys', vendorCode: 'UnexpectedResponse' },
  );
}

/** Compares the role of a project or group token, read with the management token, with the configured one. */
async function verifyAccessLevel(context: GitLabContext, keyId: string): Promise<void> {
  const call = managementCall(context, 'verifyKey', 'GET', tokenPath(context.config, keyId), keyId);
  let token: z.infer<typeof tokenDetailsSchema>;
  try {
    token = await callGitLab(context, call, tokenDetailsSchema);
  } catch (error) {
    // The verify activity retries 'authentication' as a new token GitLab does not accept yet, but
    // a rejected management token stays rejected, so it fails the verification at once.
    if (error instanceof ProviderError && error.kind === 'authentication') {
      throw new ProviderError('permission', error.message, error.details);
    }
    throw error;
  }

  const requested = context.config.access_level ?? DEFAULT_ACCESS_LEVEL;
  if (token.access_level !== ACCESS_LEVELS[requested]) {
    const granted = ACCESS_LEVEL_NAMES.find((name) => ACCESS_LEVELS[name] === token.access_level) ?? String(token.access_level);
    throw restrictionMismatch(keyId, 'access_level', granted, requested);
  }
}

async function isRevokedOrGone(context: GitLabContext, keyId: string): Promise<boolean> {
  try {
    const token = await callGitLab(context, managementCall(context, 'revokeKey', 'GET', tokenPath(context.config, keyId), keyId), tokenDetailsSchema);
    return token.revoked;
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      return true;
    }
    throw error;
  }
}

function parseStagedSecret(keyId: string, secret: Record<string, string>): z.infer<typeof gitlabSecretSchema> {
  const parsed = gitlabSecretSchema.safeParse(secret);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for GitLab access token ${keyId} is missing or has invalid fields: ${fields}. Expected token_id, token, expires_at and scopes.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  if (parsed.data.token_id !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains GitLab access token ${parsed.data.token_id}, not ${keyId}. The staging path in Vault does not belong to this rotation.`,
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  return parsed.data;
}

function restrictionMismatch(keyId: string, field: string, granted: string, requested: string): ProviderError {
  return new ProviderError(
    'invalid-config',
    `GitLab reports ${field} ${granted} for the new access token ${keyId}, but Rotor requested ${requested}. ` +
      "Rotor revokes the token. Check that the management token's user may grant this, and the instance's token settings.",
    { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'RestrictionMismatch' },
  );
}

/** Returns the scopes of a new token: restrictions.scopes when set, otherwise the config's. */
function requestedScopes(config: GitLabConfig, restrictionScopes: string[]): string[] {
  const scopes = restrictionScopes.length > 0 ? restrictionScopes : (config.scopes ?? []);
  if (scopes.length === 0) {
    throw new ProviderError(
      'invalid-config',
      'GitLab requires scopes for every access token, and neither restrictions.scopes nor config.scopes lists any. Set one of them, such as [read_api].',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  const invalid = scopes.filter((scope) => !scopeSchema.safeParse(scope).success);
  if (invalid.length > 0) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.scopes contains names that are not GitLab scopes: ${invalid.join(', ')}. Use GitLab scope names such as read_api or read_repository.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return [...new Set(scopes)];
}

/**
 * Returns the expires_at date for a new token. GitLab tokens expire at 00:00 UTC on their date,
 * so the date is the UTC day of the requested instant, which expires the token no later than
 * requested. Without a request, the token expires max_lifetime_days ahead.
 */
export function expiryDate(requestedInstant: string | undefined, maxLifetimeDays: number, now: Date): string {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const latest = today + maxLifetimeDays * 86_400_000;
  if (requestedInstant === undefined) {
    return toDate(latest);
  }

  const instant = Date.parse(requestedInstant);
  if (Number.isNaN(instant)) {
    throw new ProviderError('invalid-config', `The expires_after instant "${requestedInstant}" is not a valid date.`, { provider: PROVIDER_NAME, operation: 'createKey' });
  }
  const requestedDay = instant - (instant % 86_400_000);
  if (requestedDay <= today) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.expires_after ends on ${toDate(requestedDay)}, but a GitLab token expires at 00:00 UTC on its date, so it would not work at all. ` +
        'Set expires_after to at least 2d.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  if (requestedDay > latest) {
    throw new ProviderError(
      'invalid-config',
      `restrictions.expires_after ends on ${toDate(requestedDay)}, past the instance's maximum token lifetime of ${maxLifetimeDays} days (${toDate(latest)}). ` +
        `Set expires_after to ${maxLifetimeDays}d or less, or raise config.max_lifetime_days if the instance allows more.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return toDate(requestedDay);
}

/** Builds the token name: the label alone, or "<token_name> (<label>)". */
function tokenName(config: GitLabConfig, label: string): string {
  const name = config.token_name ? `${config.token_name} (${label})` : label;
  if (name.length > MAX_TOKEN_NAME_LENGTH || labelFromTokenName(name) !== label) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${label}" cannot be stored in a GitLab token name: expected "rotor-" and up to 24 letters or digits, ` +
        `in a name of at most ${MAX_TOKEN_NAME_LENGTH} characters.`,
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }
  return name;
}

/** Returns the rotation label inside a token name, or the whole name for tokens Rotor did not create. */
function labelFromTokenName(name: string): string {
  return LABEL_IN_TOKEN_NAME.exec(name)?.[1] ?? name;
}

function toDate(time: number): string {
  return new Date(time).toISOString().slice(0, 10);
}

function toIsoTime(text: string): string {
  return new Date(Date.parse(text)).toISOString();
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/** Path of the project's or group's access tokens, such as /projects/my-group%2Fmy-project/access_tokens. */
function resourceTokensPath(config: GitLabConfig): string {
  if (config.token_type === 'project') {
    return `/projects/${encodeURIComponent(String(config.project_id))}/access_tokens`;
  }
  return `/groups/${encodeURIComponent(String(config.group_id))}/access_tokens`;
}

function createPath(config: GitLabConfig): string {
  return config.token_type === 'personal' ? `/users/${config.user_id}/personal_access_tokens` : resourceTokensPath(config);
}

function listPath(config: GitLabConfig, page: number): string {
  const query = `state=active&per_page=${LIST_PAGE_SIZE}&page=${page}`;
  return config.token_type === 'personal' ? `/personal_access_tokens?user_id=${config.user_id}&${query}` : `${resourceTokensPath(config)}?${query}`;
}

function tokenPath(config: GitLabConfig, keyId: string): string {
  const id = encodeURIComponent(keyId);
  return config.token_type === 'personal' ? `/personal_access_tokens/${id}` : `${resourceTokensPath(config)}/${id}`;
}

function owningResource(config: GitLabConfig): string {
  switch (config.token_type) {
    case 'project':
      return `project ${config.project_id}`;
    case 'group':
      return `group ${config.group_id}`;
    case 'personal':
      return `user ${config.user_id}`;
  }
}

// ---------------------------------------------------------------------------------------------
// GitLab requests and responses
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey' | 'keyUsage';

interface CreateTokenBody {
  name: string;
  scopes: string[];
  expires_at: string;
  access_level?: number;
}

/** One request to GitLab and what the error messages need to know about it. */
interface GitLabCall {
  operation: ProviderOperation;
  method: VendorRequest['method'];
  /** Path below base_url, with its query string. */
  path: string;
  keyId?: string;
  token: string;
  sentWith: 'management token' | 'new token';
  /** Secret values removed from GitLab's error text before it goes into a message. */
  secrets: string[];
}

function managementCall(context: GitLabContext, operation: ProviderOperation, method: VendorRequest['method'], path: string, keyId?: string): GitLabCall {
  const token = context.credential.token;
  return { operation, method, path, keyId, token, sentWith: 'management token', secrets: [token] };
}

// A present date must parse, because Rotor compares them.
const gitlabTime = z.string().refine((text) => !Number.isNaN(Date.parse(text)), 'expected a date-time');
const gitlabDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected a date such as 2026-01-31');

const tokenDetailsSchema = z.object({
  id: z.number().int(),
  name: z.string(),
  scopes: z.array(z.string()),
  active: z.boolean(),
  revoked: z.boolean(),
  created_at: gitlabTime,
  expires_at: gitlabDate.nullish(),
  last_used_at: gitlabTime.nullish(),
  // Only project and group access tokens have a role.
  access_level: z.number().int().optional(),
});

type TokenDetails = z.infer<typeof tokenDetailsSchema>;

const createdTokenSchema = z.object({
  id: z.number().int(),
  token: z.string().min(1),
  created_at: gitlabTime,
});

async function callGitLab<T>(context: GitLabContext, call: GitLabCall, schema: z.ZodType<T>, options: { body?: string } = {}): Promise<T> {
  return (await callGitLabWithResponse(context, call, schema, options)).result;
}

/**
 * Sends one request and returns its parsed body and the response, for its headers. Throws a
 * ProviderError for a rejected request.
 */
async function callGitLabWithResponse<T>(
  context: GitLabContext,
  call: GitLabCall,
  schema: z.ZodType<T>,
  options: { body?: string } = {},
): Promise<{ result: T; response: VendorResponse }> {
  const headers: Record<string, string> = { 'PRIVATE-TOKEN': call.token, Accept: 'application/json' };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }

  const response = await sendVendorRequest({
    provider: PROVIDER_NAME,
    operation: call.operation,
    method: call.method,
    url: `${context.config.base_url.replace(/\/+$/, '')}${call.path}`,
    headers,
    body: options.body,
    signal: context.signal,
    defaultRetryAfterMs: DEFAULT_RATE_LIMIT_DELAY_MS,
    describeError: (status, json, responseHeaders) => {
      if (status === 401 || status === 403) {
        return rejectedCredential(context, call, status, json);
      }
      return status === 429 ? rateLimitedError(call, rateLimitDelayMs(responseHeaders)) : undefined;
    },
  });

  if (response.status >= 400) {
    throw gitlabFailure(context, call, response.status, response.json);
  }
  return { result: parseResponse(schema, response.json, call), response };
}

/** Maps 401 and 403, whose meaning depends on which token was sent. */
function rejectedCredential(context: GitLabContext, call: GitLabCall, status: number, json: unknown): ProviderError {
  const reason = `HTTP ${status}: ${describeGitLabError(json, call.secrets)}`;
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${status}` };

  if (call.sentWith === 'new token') {
    return new ProviderError(
      'authentication',
      `GitLab did not accept the new access token ${call.keyId ?? ''} (${reason}). A new token usually works at once; an expired or revoked one never does.`,
      details,
    );
  }
  if (status === 401) {
    // GitLab returns 401, not 403, when a valid token's user may not read a project's or group's tokens.
    return new ProviderError(
      'authentication',
      `GitLab rejected the management token during ${call.operation} (${call.method} ${pathOnly(call)}): ${reason}. ` +
        `Check the token at the integration's management credential path in Vault: it must be an active personal access token whose user ${requiredRole(context.config)}.`,
      details,
    );
  }
  return new ProviderError(
    'permission',
    `GitLab denied ${call.method} ${pathOnly(call)} to the management token (${reason}). ` +
      `The token needs the api scope, and its user ${requiredRole(context.config)}.`,
    details,
  );
}

/** Maps an error status the shared helper passed through: 4xx other than 401, 403 and 429. */
function gitlabFailure(context: GitLabContext, call: GitLabCall, status: number, json: unknown): ProviderError {
  const vendorText = describeGitLabError(json, call.secrets);
  const details = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: `HTTP ${status}` };
  const kind = classifyFailure(call, status, vendorText);

  switch (kind) {
    case 'not-found':
      return new ProviderError('not-found', `GitLab found no access token ${call.keyId ?? ''} for ${call.operation}: ${vendorText}.`, details);
    case 'limit-reached':
      return new ProviderError(
        'limit-reached',
        `GitLab refused a new access token for ${owningResource(context.config)}: ${vendorText}. Revoke tokens it no longer uses, then start the rotation again.`,
        details,
      );
    case 'permission':
      return new ProviderError(
        'permission',
        `GitLab denied ${call.method} ${pathOnly(call)} to the management token: ${vendorText}. Its user ${requiredRole(context.config)}.`,
        details,
      );
    default:
      if (call.operation === 'revokeKey') {
        return new ProviderError(
          'invalid-config',
          `GitLab did not revoke access token ${call.keyId ?? ''} (${call.method} ${pathOnly(call)}): ${vendorText}. ` +
            'Check the token in GitLab and revoke it by hand if it is still active.',
          details,
        );
      }
      if (status === 404) {
        return new ProviderError(
          'invalid-config',
          `GitLab found no ${owningResource(context.config)} for ${call.method} ${pathOnly(call)}: ${vendorText}. ` +
            "Check the integration's config, and that the management token's user can see it.",
          details,
        );
      }
      return new ProviderError(
        'invalid-config',
        `GitLab rejected ${call.method} ${pathOnly(call)} as invalid: ${vendorText}. Check the integration's scopes, access_level and expires_after.`,
        details,
      );
  }
}

function classifyFailure(call: GitLabCall, status: number, vendorText: string): ProviderErrorKind {
  if (status === 404 && call.keyId !== undefined) {
    return 'not-found';
  }
  // GitLab puts the reason of a refused create in the message of a 400 response.
  if (call.operation === 'createKey' && /access token limit reached/i.test(vendorText)) {
    return 'limit-reached';
  }
  if (/does not have permission|not held by the creating user|can't be greater|cannot delete/i.test(vendorText)) {
    return 'permission';
  }
  return 'invalid-config';
}

/** Creates the rate-limited error with GitLab's delay plus jitter, so throttled rotations spread out. */
/**
 * Returns GitLab's delay after a 429: Retry-After, else RateLimit-Reset (a Unix time in
 * seconds), else the estimate.
 */
export function rateLimitDelayMs(headers: Headers, now = Date.now()): number {
  const retryAfter = parseRetryAfter(headers.get('retry-after'));
  if (retryAfter !== undefined) {
    return retryAfter;
  }
  const reset = Number(headers.get('ratelimit-reset'));
  if (Number.isFinite(reset) && reset > 0) {
    return Math.max(0, reset * 1000 - now);
  }
  return DEFAULT_RATE_LIMIT_DELAY_MS;
}

function rateLimitedError(call: GitLabCall, vendorDelayMs: number): ProviderError {
  const retryAfterMs = vendorDelayMs + Math.round(Math.random() * RATE_LIMIT_JITTER_MAX_MS);
  return new ProviderError('rate-limited', `GitLab rate-limited ${call.method} ${pathOnly(call)} (HTTP 429); retrying in ${(retryAfterMs / 1000).toFixed(1)} s.`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'HTTP 429',
    retryAfterMs,
  });
}

function requiredRole(config: GitLabConfig): string {
  switch (config.token_type) {
    case 'project':
      return `has the Maintainer role (Owner for an owner token) on project ${config.project_id}`;
    case 'group':
      return `has the Owner role on group ${config.group_id}`;
    case 'personal':
      return 'is an administrator (with the admin_mode scope when Admin Mode is on)';
  }
}

function pathOnly(call: GitLabCall): string {
  return call.path.split('?')[0];
}

/**
 * Formats GitLab's error body on one line, without secret values. GitLab writes
 * {"message": "..."}, {"message": {"field": ["..."]}} for invalid records, or
 * {"error": "...", "error_description": "..."} for invalid parameters and tokens.
 */
function describeGitLabError(json: unknown, secrets: string[]): string {
  const parsed = gitlabErrorSchema.safeParse(json);
  let text = 'no error message';
  if (parsed.success) {
    const { message, error, error_description: description } = parsed.data;
    if (typeof message === 'string') {
      text = message;
    } else if (message) {
      text = Object.entries(message)
        .map(([field, problems]) => `${field} ${Array.isArray(problems) ? problems.join(', ') : problems}`)
        .join('; ');
    } else if (error) {
      text = description ? `${error}: ${description}` : error;
    }
  }
  for (const secret of secrets) {
    if (secret !== '') {
      text = text.split(secret).join('[redacted]');
    }
  }
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

const gitlabErrorSchema = z.object({
  message: z.union([z.string(), z.record(z.string(), z.union([z.string(), z.array(z.string())]))]).optional(),
  error: z.string().optional(),
  error_description: z.string().optional(),
});

/**
 * Parses a successful response. The error names the operation and the path of the first bad
 * field, never its value, because the response to a create contains the new token.
 */
function parseResponse<T>(schema: z.ZodType<T>, body: unknown, call: GitLabCall): T {
  const result = schema.safeParse(body);
  if (result.success) {
    return result.data;
  }

  const issue = result.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(body, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;
  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `GitLab returned an unexpected response to ${call.operation} (${call.method} ${pathOnly(call)}): ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

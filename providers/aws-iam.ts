import {
  CreateAccessKeyCommand,
  DeleteAccessKeyCommand,
  GetAccessKeyLastUsedCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListUserTagsCommand,
  TagUserCommand,
  UntagUserCommand,
  UpdateAccessKeyCommand,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
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
import { formatPath, scrubSecrets, valueAtPath } from './responses';

/**
 * The AWS IAM provider keeps one IAM user's access key fresh. Its management credential belongs
 * to an IAM identity that may manage that user's access keys. New keys are verified with
 * sts:GetCallerIdentity, which every valid key may call.
 */

const PROVIDER_NAME = 'aws-iam';

// IAM's own rule for user names: 1 to 64 characters from letters, digits and +=,.@_-.
const IAM_USER_NAME = /^[\w+=,.@-]{1,64}$/;

// IAM's rule for tag values, which store the rotation label: up to 256 characters from letters,
// digits, spaces and _.:/=+-@.
const IAM_TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$/u;

// IAM rejects CreateAccessKey with LimitExceeded once a user has two keys.
const MAX_ACCESS_KEYS_PER_USER = 2;

// Used when a throttled response has no Retry-After header, which is usual for AWS IAM's
// Throttling errors. It is an estimate, long enough for a burst to pass and short next to a rotation.
const DEFAULT_THROTTLE_DELAY_MS = 5_000;

// Without these an unreachable endpoint would hang the activity until its Temporal timeout.
const CONNECTION_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 30_000;

export const awsIamConfigSchema = z.object({
  /** The IAM user whose access key Rotor keeps fresh. */
  user_name: z
    .string()
    .regex(IAM_USER_NAME, 'expected an IAM user name: 1 to 64 letters, digits or +=,.@_-')
    .describe('IAM user whose access key Rotor keeps fresh'),
  /**
   * AWS region used to sign requests and to pick the regional STS endpoint. IAM itself is
   * global. Default: us-east-1.
   */
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'expected an AWS region such as us-east-1')
    .default('us-east-1')
    .describe('AWS region for request signing and the STS endpoint (default us-east-1)'),
  /**
   * Endpoint URL that both the IAM and the STS client use in place of AWS's own, for
   * IAM/STS-compatible servers such as a local moto server. Leave it out for AWS itself.
   */
  endpoint: z
    .url({ protocol: /^https?$/, message: 'expected an http or https URL such as http://127.0.0.1:5000' })
    .optional()
    .describe('IAM and STS endpoint URL in place of AWS, such as a local moto server. Omit it for AWS itself.'),
  /**
   * STS endpoint used to verify new keys, when it differs from `endpoint`: a regional STS
   * endpoint, or a VPC endpoint in a network that blocks the global one.
   */
  sts_endpoint: z
    .url({ protocol: /^https?$/, message: 'expected an http or https URL such as https://sts.eu-west-1.amazonaws.com' })
    .optional()
    .describe('STS endpoint URL for verifying new keys, when it differs from endpoint (a regional or VPC endpoint)'),
}).strict();

export type AwsIamConfig = z.infer<typeof awsIamConfigSchema>;

/** The management credential Rotor reads from Vault: an access key of an IAM identity. */
export const awsIamCredentialSchema = z.object({
  access_key_id: z.string().min(1).describe('Access key id of the management identity'),
  secret_access_key: z.string().min(1).describe('Secret access key of the management identity'),
  session_token: z.string().min(1).optional().describe('Session token, when the credential is temporary (from STS)'),
});

export type AwsIamCredential = z.infer<typeof awsIamCredentialSchema>;

/** The secret consumers read from Vault: the user's current access key. */
export const awsIamSecretSchema = z.object({
  access_key_id: z.string().min(1).describe('Access key id, such as AKIA...'),
  secret_access_key: z.string().min(1).describe('Secret access key'),
});

export type AwsIamSecret = z.infer<typeof awsIamSecretSchema>;

type AwsIamContext = ProviderContext<AwsIamConfig, AwsIamCredential>;

const HELP = `Rotates the access key of one IAM user. AWS allows two access keys per user, so the
user must have at most one key when a rotation starts.

Config:
  user_name  IAM user whose access key Rotor keeps fresh.
  region     AWS region for request signing and the STS endpoint (default us-east-1).
  endpoint   URL of an IAM/STS-compatible endpoint, such as a local moto server; omit for AWS.
  sts_endpoint  STS endpoint for verifying new keys when it differs from endpoint.

Management credential (stored in Vault): access_key_id, secret_access_key and, for temporary
credentials, session_token. Its IAM identity needs these actions on the rotated user:
  iam:ListAccessKeys, iam:CreateAccessKey, iam:UpdateAccessKey, iam:DeleteAccessKey,
  iam:GetAccessKeyLastUsed, iam:TagUser, iam:UntagUser, iam:ListUserTags.
New keys are verified with sts:GetCallerIdentity, which needs no permission.

Labels: an access key cannot carry tags, so Rotor stores each key's rotation label as a tag on
the user whose key is the access key id. The IAM console shows this tag as the key's
description. An IAM user can have at most 50 tags.

Restrictions: IAM keys have no IP allowlist, scopes or expiry of their own (aws:SourceIp and
permissions live in IAM policies), so the restrictions of an integration are not applied.`;

/**
 * The AWS IAM provider plugin. Every operation builds SDK clients with the credential it is
 * given and a single attempt, because Temporal retries the activity.
 */
export const awsIamProvider: Provider<AwsIamConfig, AwsIamCredential> = {
  name: PROVIDER_NAME,
  summary: 'AWS IAM user access keys (CreateAccessKey / DeleteAccessKey, verified with STS)',
  help: HELP,
  configSchema: awsIamConfigSchema,
  credentialSchema: awsIamCredentialSchema,
  secretSchema: awsIamSecretSchema,
  capabilities: {
    ipAllowlist: false,
    scopes: false,
    expiry: false,
    usageData: true,
    maxKeysPerPrincipal: MAX_ACCESS_KEYS_PER_USER,
    // NOTE: an estimate. AWS publishes no per-second quota for IAM's key actions. It throttles
    // an account's bursts with Throttling, and 5 per second is meant to stay well below that.
    defaultRateLimitPerSecond: 5,
  },
  listKeys,
  createKey,
  verifyKey,
  revokeKey,
  keyIdFromSecret,
  keyUsage,
};

/** Lists the user's access keys, with the rotation label stored in the user's tags. */
async function listKeys(context: AwsIamContext): Promise<ProviderKey[]> {
  const userName = context.config.user_name;
  const iam = createIamClient(context);
  try {
    const keys = await listAccessKeys(iam, context, 'listKeys');
    const labels = await listLabels(iam, context, 'listKeys');
    context.logger.debug({ provider: PROVIDER_NAME, userName, keyCount: keys.length }, 'Listed AWS IAM access keys');

    return keys.map((key) => {
      // IAM's third status, Expired, only applies to service-specific credentials.
      const listed: ProviderKey = { keyId: key.AccessKeyId, status: key.Status === 'Active' ? 'active' : 'inactive' };
      if (key.CreateDate) {
        listed.createdAt = key.CreateDate.toISOString();
      }
      const label = labels.get(key.AccessKeyId);
      if (label !== undefined) {
        listed.label = label;
      }
      return listed;
    });
  } finally {
    iam.destroy();
  }
}

/**
 * Creates an access key for the user and stores the rotation label as a user tag. When tagging
 * fails the new key is deleted again, so a retried create never meets an unlabelled key.
 */
async function createKey(context: AwsIamContext, request: CreateKeyRequest): Promise<CreatedKey> {
  const userName = context.config.user_name;

  // Checked first so that a label IAM would reject never leaves a key behind.
  if (!IAM_TAG_VALUE.test(request.label)) {
    throw new ProviderError(
      'invalid-config',
      `The rotation label "${request.label}" cannot be stored as an IAM tag value for user ${userName}: ` +
        'expected 1 to 256 letters, digits, spaces or _.:/=+-@.',
      { provider: PROVIDER_NAME, operation: 'createKey' },
    );
  }

  const iam = createIamClient(context);
  try {
    const createCall = awsCall(context, 'createKey', 'CreateAccessKey');
    const created = await callAws(() => iam.send(new CreateAccessKeyCommand({ UserName: userName }), { abortSignal: context.signal }), createCall);
    const accessKey = parseResponse(createAccessKeyResponseSchema, created, createCall).AccessKey;
    const keyId = accessKey.AccessKeyId;
    context.logger.info({ provider: PROVIDER_NAME, userName, keyId }, 'Created AWS IAM access key');

    // NOTE: CreateAccessKey has no idempotency token. If its response is lost, listKeys later shows
    // the key without a label, and its secret cannot be read again, so the caller should revoke it.

    await tagNewKey(iam, context, keyId, request.label);

    return {
      keyId,
      // IAM always returns CreateDate. The fallback only keeps a created key from being lost.
      createdAt: (accessKey.CreateDate ?? new Date()).toISOString(),
      secret: { access_key_id: keyId, secret_access_key: accessKey.SecretAccessKey },
    };
  } finally {
    iam.destroy();
  }
}

/**
 * Calls sts:GetCallerIdentity signed with the new key and checks that AWS identifies the
 * configured user. Throws 'authentication' while AWS does not accept the key yet.
 */
async function verifyKey(context: AwsIamContext, keyId: string, secret: Record<string, string>): Promise<void> {
  const userName = context.config.user_name;

  const parsedSecret = awsIamSecretSchema.safeParse(secret);
  if (!parsedSecret.success) {
    const fields = parsedSecret.error.issues.map((issue) => formatPath(issue.path)).join(', ');
    throw new ProviderError(
      'invalid-config',
      `The staged secret for access key ${keyId} of user ${userName} is missing or has invalid fields: ${fields}. ` +
        'Expected access_key_id and secret_access_key.',
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }
  const newKey = parsedSecret.data;

  if (newKey.access_key_id !== keyId) {
    throw new ProviderError(
      'invalid-config',
      `The staged secret contains access key ${newKey.access_key_id}, not ${keyId}, for user ${userName}. ` +
        'The staging path in Vault does not belong to this rotation.',
      { provider: PROVIDER_NAME, operation: 'verifyKey' },
    );
  }

  const sts = createStsClient(context.config, {
    accessKeyId: newKey.access_key_id,
    secretAccessKey: newKey.secret_access_key,
  });
  try {
    const managementCall = awsCall(context, 'verifyKey', 'GetCallerIdentity', keyId);
    const identityCall: AwsCall = {
      ...managementCall,
      signedWith: 'new key',
      secrets: [...managementCall.secrets, newKey.secret_access_key],
    };
    const response = await callAws(() => sts.send(new GetCallerIdentityCommand({}), { abortSignal: context.signal }), identityCall);
    const arn = parseResponse(callerIdentityResponseSchema, response, identityCall).Arn;

    // moto returns a placeholder identity for unknown keys unless it checks signatures, and a
    // key of another user must not pass either, so the caller's user name is compared.
    const callerUserName = iamUserNameFromArn(arn);
    if (callerUserName !== userName) {
      throw new ProviderError(
        'authentication',
        `The new access key ${keyId} authenticated as ${arn}, not as IAM user ${userName}. ` +
          'Check that the key was created for this user.',
        { provider: PROVIDER_NAME, operation: 'verifyKey', vendorCode: 'UnexpectedCaller' },
      );
    }

    context.logger.info({ provider: PROVIDER_NAME, userName, keyId }, 'Verified AWS IAM access key with STS');
  } finally {
    sts.destroy();
  }
}

/**
 * Deactivates the key, deletes it and removes its label tag. A key or user that no longer
 * exists counts as revoked, unless the key still exists under another user.
 */
async function revokeKey(context: AwsIamContext, keyId: string): Promise<void> {
  const userName = context.config.user_name;
  const iam = createIamClient(context);
  try {
    // Deactivating first leaves a window in which a mistaken revoke can be undone by hand.
    const deactivated = await ignoreNotFound(() =>
      callAws(
        () => iam.send(new UpdateAccessKeyCommand({ UserName: userName, AccessKeyId: keyId, Status: 'Inactive' }), { abortSignal: context.signal }),
        awsCall(context, 'revokeKey', 'UpdateAccessKey', keyId),
      ),
    );
    if (deactivated) {
      context.logger.info({ provider: PROVIDER_NAME, userName, keyId }, 'Deactivated AWS IAM access key');
    } else {
      await assertKeyNotOwnedByOtherUser(iam, context, keyId);
    }

    const deleted = await ignoreNotFound(() =>
      callAws(
        () => iam.send(new DeleteAccessKeyCommand({ UserName: userName, AccessKeyId: keyId }), { abortSignal: context.signal }),
        awsCall(context, 'revokeKey', 'DeleteAccessKey', keyId),
      ),
    );
    context.logger.info(
      { provider: PROVIDER_NAME, userName, keyId },
      deleted ? 'Deleted AWS IAM access key' : 'AWS IAM access key was already deleted',
    );

    // UntagUser succeeds when the tag is absent, and NoSuchEntity here means the user is gone.
    await ignoreNotFound(() =>
      callAws(
        () => iam.send(new UntagUserCommand({ UserName: userName, TagKeys: [keyId] }), { abortSignal: context.signal }),
        awsCall(context, 'revokeKey', 'UntagUser', keyId),
      ),
    );
  } finally {
    iam.destroy();
  }
}

/** Returns the access key id of a consumer secret, or undefined when it has none. */
function keyIdFromSecret(secret: Record<string, string>): string | undefined {
  const keyId = secret.access_key_id;
  return typeof keyId === 'string' && keyId !== '' ? keyId : undefined;
}

/** Reports when AWS last saw the key used, from iam:GetAccessKeyLastUsed. */
async function keyUsage(context: AwsIamContext, keyId: string): Promise<KeyUsage> {
  const userName = context.config.user_name;
  const iam = createIamClient(context);
  try {
    const lastUsedCall = awsCall(context, 'keyUsage', 'GetAccessKeyLastUsed', keyId);
    const response = await callAws(() => iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: keyId }), { abortSignal: context.signal }), lastUsedCall);
    const lastUsed = parseResponse(accessKeyLastUsedResponseSchema, response, lastUsedCall);

    // GetAccessKeyLastUsed finds keys of every user in the account, not only the configured one.
    if (lastUsed.UserName !== undefined && lastUsed.UserName !== userName) {
      throw new ProviderError(
        'not-found',
        `Access key ${keyId} belongs to IAM user ${lastUsed.UserName}, not to ${userName}. ` +
          "Check user_name in the integration's provider config.",
        { provider: PROVIDER_NAME, operation: 'keyUsage' },
      );
    }

    const lastUsedAt = lastUsed.AccessKeyLastUsed?.LastUsedDate?.toISOString() ?? null;
    context.logger.debug({ provider: PROVIDER_NAME, userName, keyId, lastUsedAt }, 'Read AWS IAM access key usage');
    return { lastUsedAt };
  } finally {
    iam.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Steps shared by the operations
// ---------------------------------------------------------------------------------------------

async function listAccessKeys(iam: IAMClient, context: AwsIamContext, operation: ProviderOperation) {
  const keys: z.infer<typeof accessKeyMetadataSchema>[] = [];
  const listCall = awsCall(context, operation, 'ListAccessKeys');
  let marker: string | undefined;
  do {
    const response = await callAws(
      () => iam.send(new ListAccessKeysCommand({ UserName: context.config.user_name, Marker: marker }), { abortSignal: context.signal }),
      listCall,
    );
    const page = parseResponse(listAccessKeysResponseSchema, response, listCall);
    keys.push(...page.AccessKeyMetadata);
    marker = page.IsTruncated ? page.Marker : undefined;
  } while (marker);
  return keys;
}

/** Reads the user's tags and returns the rotation label of each access key, by key id. */
async function listLabels(iam: IAMClient, context: AwsIamContext, operation: ProviderOperation) {
  const labels = new Map<string, string>();
  const listCall = awsCall(context, operation, 'ListUserTags');
  let marker: string | undefined;
  do {
    const response = await callAws(
      () => iam.send(new ListUserTagsCommand({ UserName: context.config.user_name, Marker: marker }), { abortSignal: context.signal }),
      listCall,
    );
    const page = parseResponse(listUserTagsResponseSchema, response, listCall);
    for (const tag of page.Tags) {
      labels.set(tag.Key, tag.Value);
    }
    marker = page.IsTruncated ? page.Marker : undefined;
  } while (marker);
  return labels;
}

/** Tags the user with the key's label, deleting the key again when tagging fails. */
async function tagNewKey(iam: IAMClient, context: AwsIamContext, keyId: string, label: string): Promise<void> {
  const userName = context.config.user_name;
  try {
    await callAws(
      () => iam.send(new TagUserCommand({ UserName: userName, Tags: [{ Key: keyId, Value: label }] }), { abortSignal: context.signal }),
      awsCall(context, 'createKey', 'TagUser', keyId),
    );
    return;
  } catch (error) {
    if (!(error instanceof ProviderError)) {
      throw error;
    }
    const tagError = error;

    try {
      await callAws(
        () => iam.send(new DeleteAccessKeyCommand({ UserName: userName, AccessKeyId: keyId }), { abortSignal: context.signal }),
        awsCall(context, 'createKey', 'DeleteAccessKey', keyId),
      );
    } catch (deleteError) {
      const reason = deleteError instanceof ProviderError ? deleteError.details.vendorCode ?? deleteError.kind : 'unknown error';
      context.logger.error(
        { provider: PROVIDER_NAME, userName, keyId, reason },
        'Failed to delete an AWS IAM access key whose label could not be stored',
      );
      throw new ProviderError(
        tagError.kind,
        `${tagError.message} Deleting the unlabelled access key ${keyId} also failed (${reason}). Delete it with ` +
          `\`aws iam delete-access-key --user-name ${userName} --access-key-id ${keyId}\` before the next rotation.`,
        tagError.details,
      );
    }

    context.logger.warn(
      { provider: PROVIDER_NAME, userName, keyId, reason: tagError.details.vendorCode ?? tagError.kind },
      'Deleted a new AWS IAM access key because its label could not be stored',
    );
    throw new ProviderError(tagError.kind, `${tagError.message} The new access key ${keyId} was deleted again.`, tagError.details);
  }
}

/**
 * Rejects a revoke whose key exists under a user other than the configured one. UpdateAccessKey
 * returns NoSuchEntity for such a key too, and reporting it as revoked would leave it active.
 */
async function assertKeyNotOwnedByOtherUser(iam: IAMClient, context: AwsIamContext, keyId: string): Promise<void> {
  const userName = context.config.user_name;

  // NOTE: checked against moto only, which returns NoSuchEntity for a deleted key. If AWS
  // still returns the former owner for a deleted key, that owner is the configured user and
  // the key counts as revoked, which is also correct.
  const lastUsedCall = awsCall(context, 'revokeKey', 'GetAccessKeyLastUsed', keyId);
  const response = await ignoreNotFound(() =>
    callAws(() => iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: keyId }), { abortSignal: context.signal }), lastUsedCall),
  );
  if (response === undefined) {
    return;
  }

  const owner = parseResponse(accessKeyLastUsedResponseSchema, response, lastUsedCall).UserName;
  if (owner !== undefined && owner !== userName) {
    throw new ProviderError(
      'invalid-config',
      `Access key ${keyId} belongs to IAM user ${owner}, not to ${userName}, so Rotor did not revoke it and it is ` +
        "still usable. Check user_name in the integration's provider config.",
      { provider: PROVIDER_NAME, operation: 'revokeKey' },
    );
  }
}

/** Runs an AWS call and returns undefined when it fails with 'not-found'. */
async function ignoreNotFound<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ProviderError && error.kind === 'not-found') {
      return undefined;
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// SDK clients
// ---------------------------------------------------------------------------------------------

interface AwsCredentialIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

function createIamClient(context: AwsIamContext): IAMClient {
  return new IAMClient({ ...clientOptions(context.config), credentials: managementIdentity(context.credential) });
}

function createStsClient(config: AwsIamConfig, credentials: AwsCredentialIdentity): STSClient {
  return new STSClient({ ...clientOptions(config), endpoint: config.sts_endpoint ?? config.endpoint, credentials });
}

function clientOptions(config: AwsIamConfig) {
  return {
    region: config.region,
    endpoint: config.endpoint,
    // One attempt per call: Temporal's retry policy decides when and how often to try again.
    maxAttempts: 1,
    requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
  };
}

function managementIdentity(credential: AwsIamCredential): AwsCredentialIdentity {
  return {
    accessKeyId: credential.access_key_id,
    secretAccessKey: credential.secret_access_key,
    sessionToken: credential.session_token,
  };
}

// ---------------------------------------------------------------------------------------------
// Parsing AWS responses
// ---------------------------------------------------------------------------------------------

const accessKeyMetadataSchema = z.object({
  AccessKeyId: z.string().min(1),
  Status: z.enum(['Active', 'Inactive', 'Expired']),
  CreateDate: z.date().optional(),
});

const listAccessKeysResponseSchema = z.object({
  AccessKeyMetadata: z.array(accessKeyMetadataSchema),
  IsTruncated: z.boolean().optional(),
  Marker: z.string().optional(),
});

const listUserTagsResponseSchema = z.object({
  Tags: z.array(z.object({ Key: z.string(), Value: z.string() })),
  IsTruncated: z.boolean().optional(),
  Marker: z.string().optional(),
});

const createAccessKeyResponseSchema = z.object({
  AccessKey: z.object({
    AccessKeyId: z.string().min(1),
    SecretAccessKey: z.string().min(1),
    CreateDate: z.date().optional(),
  }),
});

const callerIdentityResponseSchema = z.object({ Arn: z.string().min(1) });

const accessKeyLastUsedResponseSchema = z.object({
  UserName: z.string().optional(),
  AccessKeyLastUsed: z.object({ LastUsedDate: z.date().nullish() }).optional(),
});

/**
 * Parses the fields Rotor uses from an SDK response. The error names the action and the path
 * of the first bad field, never its value, because some responses contain a secret access key.
 */
function parseResponse<T>(schema: z.ZodType<T>, response: unknown, call: AwsCall): T {
  const result = schema.safeParse(response);
  if (result.success) {
    return result.data;
  }

  const issue = result.error.issues[0];
  const path = formatPath(issue.path);
  const problem = valueAtPath(response, issue.path) === undefined ? `missing ${path}` : `${path}: ${issue.message}`;

  // No error kind describes a malformed response, so it counts as transient and the activity's
  // bounded retry policy decides when to give up.
  throw new ProviderError('transient', `${serviceOf(call.action)} returned an unexpected response to ${call.action}: ${problem}`, {
    provider: PROVIDER_NAME,
    operation: call.operation,
    vendorCode: 'UnexpectedResponse',
  });
}

/** Returns the user name of an IAM user ARN (`arn:aws:iam::123456789012:user/path/name`), or undefined. */
function iamUserNameFromArn(arn: string): string | undefined {
  const match = /^arn:aws[a-z-]*:iam::\d{12}:user\/(?:[^/]+\/)*([^/]+)$/.exec(arn);
  return match?.[1];
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

type ProviderOperation = 'listKeys' | 'createKey' | 'verifyKey' | 'revokeKey' | 'keyUsage';

type AwsAction =
  | 'ListAccessKeys'
  | 'ListUserTags'
  | 'CreateAccessKey'
  | 'TagUser'
  | 'UntagUser'
  | 'UpdateAccessKey'
  | 'DeleteAccessKey'
  | 'GetAccessKeyLastUsed'
  | 'GetCallerIdentity';

/** A failed call's context, which `toProviderError` uses to write its message. */
export interface AwsCall {
  operation: ProviderOperation;
  action: AwsAction;
  userName: string;
  keyId?: string;
  /** The credential that signed the request: the management credential or the key being verified. */
  signedWith: 'management credential' | 'new key';
  /** Secret values removed from AWS's own error text before it goes into a message. */
  secrets: string[];
}

function awsCall(context: AwsIamContext, operation: ProviderOperation, action: AwsAction, keyId?: string): AwsCall {
  const secrets = [context.credential.secret_access_key];
  if (context.credential.session_token) {
    secrets.push(context.credential.session_token);
  }
  return { operation, action, userName: context.config.user_name, keyId, signedWith: 'management credential', secrets };
}

/** Runs one SDK call and turns any failure into a ProviderError. */
async function callAws<T>(send: () => Promise<T>, call: AwsCall): Promise<T> {
  try {
    return await send();
  } catch (error) {
    throw toProviderError(error, call);
  }
}

const THROTTLING_CODES = new Set([
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
]);
const AUTHENTICATION_CODES = new Set([
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'ExpiredTokenException',
  'UnrecognizedClientException',
  'InvalidAccessKeyId',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'RequestExpired',
]);
const PERMISSION_CODES = new Set(['AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation']);
const INVALID_INPUT_CODES = new Set(['ValidationError', 'MalformedInput', 'InvalidInput', 'InvalidParameterValue']);
const TRANSIENT_CLIENT_CODES = new Set(['ConcurrentModification', 'EntityTemporarilyUnmodifiable', 'RequestTimeout']);

/** The parts of an SDK or network error that the mapping reads. None of them contains a secret. */
interface AwsFailure {
  code: string;
  httpStatus?: number;
  vendorMessage: string;
  retryAfterHeader?: string;
}

/**
 * Maps an AWS SDK or network error to a ProviderError with a new message. The SDK error itself
 * is never attached, because its `$response` can contain the signed request headers.
 */
export function toProviderError(error: unknown, call: AwsCall): ProviderError {
  if (error instanceof ProviderError) {
    return error;
  }

  const failure = readAwsFailure(error, call.secrets);
  const kind = classifyAwsFailure(failure);
  const details: ProviderError['details'] = { provider: PROVIDER_NAME, operation: call.operation, vendorCode: failure.code };
  if (kind === 'rate-limited') {
    details.retryAfterMs = retryAfterMs(failure.retryAfterHeader);
  }
  return new ProviderError(kind, describeFailure(kind, failure, call, details.retryAfterMs), details);
}

function classifyAwsFailure(failure: AwsFailure): ProviderErrorKind {
  const { code, httpStatus } = failure;
  if (httpStatus === 429 || THROTTLING_CODES.has(code)) {
    return 'rate-limited';
  }
  if (AUTHENTICATION_CODES.has(code)) {
    return 'authentication';
  }
  if (PERMISSION_CODES.has(code)) {
    return 'permission';
  }
  if (code === 'LimitExceeded') {
    return 'limit-reached';
  }
  if (code === 'NoSuchEntity') {
    return 'not-found';
  }
  if (INVALID_INPUT_CODES.has(code)) {
    return 'invalid-config';
  }

  // No HTTP status means the request got no response: the connection was refused, reset or timed out.
  if (httpStatus === undefined || httpStatus >= 500 || TRANSIENT_CLIENT_CODES.has(code)) {
    return 'transient';
  }
  return 'invalid-config';
}

function describeFailure(kind: ProviderErrorKind, failure: AwsFailure, call: AwsCall, delayMs?: number): string {
  const service = serviceOf(call.action);
  const user = `user ${call.userName}`;
  const key = call.keyId ? `access key ${call.keyId} of ${user}` : user;
  const vendorText = failure.vendorMessage ? ` (${failure.vendorMessage})` : '';

  switch (kind) {
    case 'rate-limited':
      return `${service} throttled ${call.action} for ${key}: ${failure.code}. Retry after ${delayMs} ms.`;
    case 'authentication':
      if (call.signedWith === 'new key') {
        return (
          `${service} rejected the new ${key}: ${failure.code}. A new IAM key can take several seconds ` +
          'before AWS accepts it. If it is still rejected later, check that the key was not deleted.'
        );
      }
      return (
        `${service} rejected the management credential for ${user} during ${call.action}: ${failure.code}. ` +
        authenticationHint(failure.code)
      );
    case 'permission':
      return (
        `The management credential is not allowed to call iam:${call.action} for ${user}: ${failure.code}${vendorText}. ` +
        `Allow iam:${call.action} on this user in the management identity's IAM policy.`
      );
    case 'limit-reached':
      if (call.action === 'CreateAccessKey') {
        return (
          `IAM ${user} already has the maximum of ${MAX_ACCESS_KEYS_PER_USER} access keys: ${failure.code}. ` +
          'Revoke the key that consumers no longer use, then start the rotation again.'
        );
      }
      return `${service} rejected ${call.action} for ${key} because an IAM quota is reached: ${failure.code}${vendorText}.`;
    case 'not-found':
      return (
        `${service} found no ${call.keyId ? key : user} during ${call.action}: ${failure.code}${vendorText}. ` +
        "Check user_name in the integration's provider config."
      );
    case 'invalid-config':
      return (
        `${service} rejected ${call.action} for ${key} as invalid: ${failure.code}${vendorText}. ` +
        "Check the integration's provider config (user_name, region, endpoint)."
      );
    case 'transient': {
      const status = failure.httpStatus === undefined ? 'no response' : `HTTP ${failure.httpStatus}`;
      return `${service} ${call.action} for ${key} failed with a temporary error: ${failure.code}, ${status}${vendorText}.`;
    }
  }
}

function authenticationHint(code: string): string {
  if (code === 'ExpiredToken' || code === 'ExpiredTokenException') {
    return 'The session token has expired. Write a fresh credential to the management credential path in Vault.';
  }
  if (code === 'RequestExpired') {
    return "The request's signing time is too far from AWS's clock. Check the worker host's clock.";
  }
  return 'Check the access key stored at the management credential path in Vault.';
}

function serviceOf(action: AwsAction): string {
  return action === 'GetCallerIdentity' ? 'AWS STS' : 'AWS IAM';
}

/** Reads the code, HTTP status, AWS message and Retry-After header from an SDK or Node error. */
function readAwsFailure(error: unknown, secrets: string[]): AwsFailure {
  if (!(error instanceof Error)) {
    return { code: 'UnknownError', vendorMessage: '' };
  }
  const fields = error as Error & {
    Code?: unknown;
    code?: unknown;
    $metadata?: { httpStatusCode?: unknown };
    $response?: { headers?: Record<string, unknown> };
  };

  // Service errors carry AWS's code in `Code`, while `name` has the SDK's class name, such as
  // LimitExceededException for LimitExceeded. Node network errors carry theirs (ECONNREFUSED) in `code`.
  const httpStatus = typeof fields.$metadata?.httpStatusCode === 'number' ? fields.$metadata.httpStatusCode : undefined;
  let code = error.name;
  if (typeof fields.Code === 'string' && fields.Code !== '') {
    code = fields.Code;
  } else if (httpStatus === undefined && typeof fields.code === 'string' && fields.code !== '') {
    code = fields.code;
  }

  const retryAfter = fields.$response?.headers?.['retry-after'];
  return {
    code,
    httpStatus,
    vendorMessage: scrubSecrets(error.message, secrets),
    retryAfterHeader: typeof retryAfter === 'string' ? retryAfter : undefined,
  };
}

/** Converts a Retry-After header (seconds or an HTTP date) to milliseconds, with a default. */
function retryAfterMs(header: string | undefined): number {
  if (header === undefined) {
    return DEFAULT_THROTTLE_DELAY_MS;
  }
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) {
    return Number(trimmed) * 1000;
  }
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) {
    return DEFAULT_THROTTLE_DELAY_MS;
  }
  return Math.max(0, date - Date.now());
}

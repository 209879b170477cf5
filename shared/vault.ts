import fs from 'node:fs';
import nodeVault from 'node-vault';
import { z } from 'zod';
import type { VaultConfig } from './config';

/**
 * Rotor's access to Vault's KV version 2 engine, on top of node-vault. node-vault returns
 * untyped bodies and puts whole response bodies on its errors, so every response is parsed here
 * and every error is rethrown as a VaultError that carries Vault's message and nothing else.
 */

/** A Vault request failed. The message names the operation and path, never a secret value. */
export class VaultError extends Error {
  constructor(
    message: string,
    readonly statusCode?: number,
  ) {
    super(message);
    this.name = 'VaultError';
  }
}

/** A check-and-set write lost: the secret's current version is not the one expected. */
export class VaultCasMismatchError extends VaultError {
  constructor(readonly path: string, readonly expectedVersion: number) {
    super(`Vault rejected the write to ${path}: its current version is not ${expectedVersion} (check-and-set). Another writer changed it.`, 400);
    this.name = 'VaultCasMismatchError';
  }
}

const secretResponseSchema = z.object({
  data: z.object({
    data: z.record(z.string(), z.unknown()).nullable(),
    metadata: z.object({
      version: z.number(),
      created_time: z.string(),
      deletion_time: z.string(),
      destroyed: z.boolean(),
    }),
  }),
});

const writeResponseSchema = z.object({
  data: z.object({ version: z.number(), created_time: z.string() }),
});

const metadataResponseSchema = z.object({
  data: z.object({
    current_version: z.number(),
    oldest_version: z.number(),
    created_time: z.string(),
    updated_time: z.string(),
    custom_metadata: z.record(z.string(), z.string()).nullable(),
    cas_required: z.boolean().optional(),
    versions: z.record(
      z.string(),
      z.object({ created_time: z.string(), deletion_time: z.string(), destroyed: z.boolean() }),
    ),
  }),
});

const healthResponseSchema = z.object({
  initialized: z.boolean(),
  sealed: z.boolean(),
  standby: z.boolean(),
  version: z.string(),
});

export interface SecretVersion {
  data: Record<string, string>;
  version: number;
  createdTime: string;
}

export interface SecretMetadata {
  currentVersion: number;
  customMetadata: Record<string, string>;
  versions: Record<number, { createdTime: string; deleted: boolean; destroyed: boolean }>;
}

export interface VaultStoreOptions {
  kvMount: string;
}

type NodeVaultClient = ReturnType<typeof nodeVault>;

export class VaultStore {
  private constructor(
    private readonly client: NodeVaultClient,
    readonly address: string,
    readonly kvMount: string,
  ) {}

  /** Connects with a token, or logs in with AppRole and keeps the returned token. */
  static async connect(config: VaultConfig): Promise<VaultStore> {
    const client = nodeVault({
      apiVersion: 'v1',
      endpoint: config.address,
      token: config.auth.method === 'token' ? config.auth.token : undefined,
      namespace: config.namespace,
      requestOptions: config.caCertPath ? { ca: fs.readFileSync(config.caCertPath) } : undefined,
      // node-vault logs whole request bodies, secrets included, when DEBUG=node-vault is set.
      debug: () => undefined,
    });
    const store = new VaultStore(client, config.address, config.kvMount);
    const { auth } = config;
    if (auth.method === 'approle') {
      await store.call(`AppRole login at auth/${auth.mount}`, () =>
        client.approleLogin({ role_id: auth.roleId, secret_id: auth.secretId, mount_point: auth.mount }),
      );
    }
    return store;
  }

  /** Reads a secret's latest version, or the given one; null when the path or version does not exist. */
  async readSecret(path: string, version?: number): Promise<SecretVersion | null> {
    const query = version === undefined ? '' : `?version=${version}`;
    const body = await this.callAllowingNotFound(`read ${this.describe(path, version)}`, () =>
      this.client.read(`${this.kvMount}/data/${path}${query}`),
    );
    if (body === null) {
      return null;
    }
    const parsed = parseResponse(secretResponseSchema, body, `read ${this.describe(path, version)}`);
    if (parsed.data.data === null) {
      return null;
    }
    return {
      data: toStringRecord(parsed.data.data, path),
      version: parsed.data.metadata.version,
      createdTime: parsed.data.metadata.created_time,
    };
  }

  /**
   * Writes a new version. With `cas`, Vault accepts the write only if the secret's current
   * version equals it (0 means the path must not exist yet) and VaultCasMismatchError is thrown
   * otherwise.
   */
  async writeSecret(path: string, data: Record<string, string>, options: { cas?: number } = {}): Promise<{ version: number }> {
    const body = await this.call(`write ${this.kvMount}/${path}`, () =>
      this.client.write(`${this.kvMount}/data/${path}`, {
        data,
        options: options.cas === undefined ? {} : { cas: options.cas },
      }),
      (error) => (options.cas !== undefined && isCasMismatch(error) ? new VaultCasMismatchError(`${this.kvMount}/${path}`, options.cas) : undefined),
    );
    const parsed = parseResponse(writeResponseSchema, body, `write ${this.kvMount}/${path}`);
    return { version: parsed.data.version };
  }

  async readMetadata(path: string): Promise<SecretMetadata | null> {
    const body = await this.callAllowingNotFound(`read metadata of ${this.kvMount}/${path}`, () =>
      this.client.read(`${this.kvMount}/metadata/${path}`),
    );
    if (body === null) {
      return null;
    }
    const parsed = parseResponse(metadataResponseSchema, body, `read metadata of ${this.kvMount}/${path}`);
    const versions: SecretMetadata['versions'] = {};
    for (const [version, entry] of Object.entries(parsed.data.versions)) {
      versions[Number(version)] = { createdTime: entry.created_time, deleted: entry.deletion_time !== '', destroyed: entry.destroyed };
    }
    return { currentVersion: parsed.data.current_version, customMetadata: parsed.data.custom_metadata ?? {}, versions };
  }

  /**
   * Merges keys into the secret's custom metadata; an empty value removes its key, because
   * Vault rejects empty values. KV v2 replaces the whole map on write, so this reads it first.
   */
  async mergeCustomMetadata(path: string, fields: Record<string, string>): Promise<void> {
    const existing = await this.readMetadata(path);
    const merged: Record<string, string> = { ...(existing?.customMetadata ?? {}) };
    for (const [key, value] of Object.entries(fields)) {
      if (value === '') {
        delete merged[key];
      } else {
        merged[key] = value;
      }
    }
    await this.call(`write metadata of ${this.kvMount}/${path}`, () =>
      this.client.write(`${this.kvMount}/metadata/${path}`, { custom_metadata: merged }),
    );
  }

  /** Deletes every version and the metadata of a secret; a path that does not exist is fine. */
  async destroySecret(path: string): Promise<void> {
    await this.callAllowingNotFound(`delete ${this.kvMount}/${path}`, () => this.client.delete(`${this.kvMount}/metadata/${path}`));
  }

  /**
   * Checks that Vault responds, is unsealed and accepts the token, so a process fails at start-up
   * with a clear message instead of at its first rotation.
   */
  async checkAccess(): Promise<void> {
    const health = await this.health();
    if (health.sealed) {
      throw new VaultError(`Vault at ${this.address} is sealed. Unseal it, then start again.`);
    }
    await this.call('look up the token', () => this.client.tokenLookupSelf());
  }

  async health(): Promise<z.infer<typeof healthResponseSchema>> {
    const body = await this.call('read health', () => this.client.health());
    return parseResponse(healthResponseSchema, body, 'read health');
  }

  private describe(path: string, version?: number): string {
    return `${this.kvMount}/${path}${version === undefined ? '' : ` version ${version}`}`;
  }

  private async callAllowingNotFound(operation: string, run: () => Promise<unknown>): Promise<unknown | null> {
    try {
      return await this.call(operation, run);
    } catch (error) {
      if (error instanceof VaultError && error.statusCode === 404) {
        return null;
      }
      throw error;
    }
  }

  private async call(operation: string, run: () => Promise<unknown>, translate?: (error: unknown) => VaultError | undefined): Promise<unknown> {
    try {
      return await run();
    } catch (error) {
      throw translate?.(error) ?? toVaultError(operation, this.address, error);
    }
  }
}

function isCasMismatch(error: unknown): boolean {
  return vaultMessages(error).some((message) => message.includes('check-and-set'));
}

function vaultMessages(error: unknown): string[] {
  const body = (error as { response?: { body?: unknown } })?.response?.body;
  const parsed = z.object({ errors: z.array(z.string()) }).safeParse(body);
  return parsed.success ? parsed.data.errors : [];
}

// Keeps only the status code and Vault's own error strings: node-vault's error objects carry the
// request, whose body may be a secret being written.
function toVaultError(operation: string, address: string, error: unknown): VaultError {
  const statusCode = (error as { response?: { statusCode?: number } })?.response?.statusCode;
  const code = (error as { code?: string })?.code;
  if (statusCode === undefined) {
    return new VaultError(`Vault at ${address} is unreachable (${code ?? 'no response'}) during ${operation}. Check VAULT_ADDR and that Vault is running.`);
  }
  // Vault lists several errors in one string, as "2 errors occurred:\n\t* permission denied\n\t*
  // invalid token", so whitespace is collapsed to keep the message on one line.
  const messages = vaultMessages(error)
    .filter((message) => message.length < 300)
    .map((message) => message.replace(/\s+/g, ' ').trim());
  const detail = messages.length > 0 ? `: ${messages.join('; ')}` : '';
  const invalidToken = messages.some((message) => message.includes('invalid token'));
  let hint = '';
  if (statusCode === 403) {
    hint = invalidToken
      ? ' The Vault token is invalid or expired: check VAULT_TOKEN, or the AppRole settings when Rotor logs in with VAULT_ROLE_ID.'
      : ' Check that the Vault token or AppRole has a policy for this path.';
  }
  return new VaultError(`Vault ${operation} failed with HTTP ${statusCode}${detail}.${hint}`, statusCode);
}

function parseResponse<S extends z.ZodType>(schema: S, body: unknown, operation: string): z.output<S> {
  const result = schema.safeParse(body);
  if (!result.success) {
    const fields = result.error.issues.map((issue) => issue.path.join('.')).join(', ');
    throw new VaultError(`Vault ${operation} returned an unexpected response (fields: ${fields}).`);
  }
  return result.data;
}

function toStringRecord(data: Record<string, unknown>, path: string): Record<string, string> {
  const record: Record<string, string> = {};
  for (const [key, value] of Object.entries(data)) {
    if (typeof value !== 'string') {
      throw new VaultError(`Secret at ${path} has a non-string field "${key}"; Rotor stores every field as a string.`);
    }
    record[key] = value;
  }
  return record;
}

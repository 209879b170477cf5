import type { z } from 'zod';
import type { Logger } from '../shared/logger';

/**
 * The contract every provider plugin implements. A provider speaks one vendor's
 * key-management API; the activities call it, and nothing else in Rotor talks to vendors.
 *
 * A provider never logs, throws or returns a secret outside `CreatedKey.secret`, which the
 * create activity writes straight to Vault.
 */

/** Features a provider offers for new keys and the vendor's limits; `rotor providers` prints them. */
export interface ProviderCapabilities {
  /** The new key can be bound to source IP addresses or CIDRs. */
  ipAllowlist: boolean;
  /** The new key can be limited to scopes or permissions. */
  scopes: boolean;
  /** The new key can be given an expiry date. */
  expiry: boolean;
  /** The vendor reports when a key was last used, so grace can wait for the old key to go idle. */
  usageData: boolean;
  /** How many keys one principal (user, sub-account, project) may hold; absent when unlimited. */
  maxKeysPerPrincipal?: number;
  /** Key-management requests per second the vendor allows, used as the task queue's rate limit. */
  defaultRateLimitPerSecond: number;
}

/** Restrictions the inventory requests for a new key. Providers apply the ones they support. */
export interface KeyRestrictions {
  ipAllowlist?: string[];
  scopes?: string[];
  /** ISO 8601 instant after which the vendor should reject the key. */
  expiresAt?: string;
}

/** A key as the provider lists it. Never contains a secret. */
export interface ProviderKey {
  keyId: string;
  status: 'active' | 'inactive';
  createdAt?: string;
  /** The rotation label the key was created with, where the vendor stores one. */
  label?: string;
  lastUsedAt?: string | null;
}

/** The only place a secret leaves a provider: the create activity writes it to Vault at once. */
export interface CreatedKey {
  keyId: string;
  createdAt: string;
  /** The fields consumers read from Vault, in the shape of the provider's `secretSchema`. */
  secret: Record<string, string>;
}

export interface KeyUsage {
  /** When the key was last used, or null when the vendor has no record of any use. */
  lastUsedAt: string | null;
}

/** Input of every provider operation: its parsed config, its management credential and a logger. */
export interface ProviderContext<Config, Credential> {
  config: Config;
  credential: Credential;
  logger: Logger;
  /** Aborted when Temporal cancels the activity, as at worker shutdown; pass it to every request. */
  signal?: AbortSignal;
}

export interface CreateKeyRequest {
  /** Label that ties the key to its rotation, so a retried create can find it. */
  label: string;
  restrictions: KeyRestrictions;
}

export interface Provider<Config = unknown, Credential = unknown> {
  name: string;
  /** One line for `rotor providers`. */
  summary: string;
  /** Longer help: what the config fields mean and what the management credential needs. */
  help: string;
  configSchema: z.ZodType<Config>;
  /** Shape of the management credential Rotor reads from Vault. */
  credentialSchema: z.ZodType<Credential>;
  /** Shape of the secret Rotor writes to the consumer path in Vault. */
  secretSchema: z.ZodType<Record<string, string>>;
  capabilities: ProviderCapabilities;

  /** Lists the principal's keys. */
  listKeys(context: ProviderContext<Config, Credential>): Promise<ProviderKey[]>;
  /** Creates a key restricted as asked and labelled with the rotation. */
  createKey(context: ProviderContext<Config, Credential>, request: CreateKeyRequest): Promise<CreatedKey>;
  /**
   * Calls the vendor's cheapest authenticated endpoint with the new secret. Throws
   * ProviderError 'authentication' while the vendor does not accept it yet. Where the vendor
   * reports the key's restrictions, compares them with `requested` and throws when they differ.
   */
  verifyKey(context: ProviderContext<Config, Credential>, keyId: string, secret: Record<string, string>, requested?: KeyRestrictions): Promise<void>;
  /** Revokes a key, deactivating it first where the vendor can. A key already gone counts as revoked. */
  revokeKey(context: ProviderContext<Config, Credential>, keyId: string): Promise<void>;
  /**
   * Returns the key id inside a secret of `secretSchema`'s shape, such as AWS's access_key_id.
   * Planning uses it when the consumer path has no `key_id` metadata, as after a hand-written secret.
   */
  keyIdFromSecret(secret: Record<string, string>): string | undefined;
  /**
   * Returns the permissions the provider config gives new keys when restrictions.scopes is empty,
   * such as OKX's perm, so the audit does not report such keys as unrestricted.
   */
  configuredScopes?(config: Config): string[];
  /** Reports when the key was last used; only for providers with `usageData`. */
  keyUsage?(context: ProviderContext<Config, Credential>, keyId: string): Promise<KeyUsage>;
}

/** The kinds of failure a provider reports; the activity layer maps each to retry behaviour. */
export type ProviderErrorKind =
  | 'rate-limited'
  | 'authentication'
  | 'permission'
  | 'invalid-config'
  | 'limit-reached'
  | 'not-found'
  | 'transient';

/**
 * A typed provider failure. Messages name the provider, the operation and what to do; they
 * never contain a secret.
 */
export class ProviderError extends Error {
  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly details: { provider: string; operation: string; retryAfterMs?: number; vendorCode?: string },
  ) {
    super(message);
    this.name = 'ProviderError';
  }

  /** Retrying the same call cannot help: the credential, its permissions or the config is wrong. */
  get retryable(): boolean {
    return this.kind === 'rate-limited' || this.kind === 'transient';
  }
}

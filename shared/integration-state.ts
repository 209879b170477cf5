import type { Provider } from '../providers/contract';
import { isManualIntegration, type IntegrationEntry } from './inventory';
import { parseCalendarDate } from './rotation-due';
import type { VaultStore } from './vault';

/**
 * Reads of Vault's records about an integration's key: when it was last rotated, whether a key
 * is stored for consumers, and whether the management credential is in place. They read
 * metadata and the management credential only, and never return or log a secret value.
 */

/**
 * Source of the last rotation time. `rotor`: Rotor's `last_rotated_at` metadata.
 * `vault-version`: Rotor has not rotated the key yet, so this is when the current secret
 * version was written, and the key is at least that old. `inventory`: a manual integration's
 * `last_rotated`.
 */
export type LastRotationSource = 'rotor' | 'vault-version' | 'inventory';

export interface LastRotation {
  at: Date;
  source: LastRotationSource;
}

export interface StoredKeyState {
  lastRotation?: LastRotation;
  /** A readable current version exists at vault_path; undefined for manual integrations, whose key Rotor does not read. */
  currentKeyStored?: boolean;
}

export type ManagementCredentialState =
  | { status: 'present' }
  | { status: 'missing' }
  /** The stored fields do not match the provider's credential schema; names only, never values. */
  | { status: 'invalid'; fields: string[] };

/** Reads the last rotation and whether a current key is stored; manual integrations need no Vault. */
export async function readStoredKeyState(vault: VaultStore | undefined, entry: IntegrationEntry): Promise<StoredKeyState> {
  if (isManualIntegration(entry)) {
    return { lastRotation: { at: parseCalendarDate(entry.last_rotated), source: 'inventory' } };
  }
  if (!vault) {
    throw new Error(`Reading the key state of ${entry.id} needs Vault.`);
  }

  const metadata = await vault.readMetadata(entry.vault_path);
  const current = metadata?.versions[metadata.currentVersion];
  const currentKeyStored = current !== undefined && !current.deleted && !current.destroyed;
  const rotatedAt = parseTimestamp(metadata?.customMetadata.last_rotated_at);
  if (rotatedAt) {
    return { lastRotation: { at: rotatedAt, source: 'rotor' }, currentKeyStored };
  }
  const storedAt = currentKeyStored ? parseTimestamp(current.createdTime) : undefined;
  return { lastRotation: storedAt ? { at: storedAt, source: 'vault-version' } : undefined, currentKeyStored };
}

/** Checks that the management credential exists in Vault and has the fields the provider expects. */
export async function readManagementCredentialState(vault: VaultStore, path: string, provider: Provider): Promise<ManagementCredentialState> {
  const stored = await vault.readSecret(path);
  if (!stored) {
    return { status: 'missing' };
  }
  const parsed = provider.credentialSchema.safeParse(stored.data);
  if (parsed.success) {
    return { status: 'present' };
  }
  return { status: 'invalid', fields: parsed.error.issues.map((issue) => issue.path.join('.') || '(root)') };
}

function parseTimestamp(text: string | undefined): Date | undefined {
  if (!text) {
    return undefined;
  }
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

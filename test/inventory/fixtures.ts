import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { VaultStore } from '../../shared/vault';
import { testEnvironment, uniqueSuffix } from '../support/environment';

/** Inventory files, dates and Vault state for the inventory, validate and audit tests. */

const dayMs = 86_400_000;

/** Writes inventory text to a fresh file in the test work directory and returns its path. */
export function writeInventoryText(text: string): string {
  const file = path.join(testEnvironment().ROTOR_TEST_WORK_DIR, `inventory-${uniqueSuffix()}.yaml`);
  fs.writeFileSync(file, text);
  return file;
}

/** Writes an inventory document (version 1 is added) and returns the file's path. */
export function writeInventoryDocument(document: { integrations: unknown[]; defaults?: unknown; providers?: unknown }): string {
  return writeInventoryText(stringify({ version: 1, ...document }));
}

export function daysAgo(days: number, now = new Date()): Date {
  return new Date(now.getTime() - days * dayMs);
}

/** YYYY-MM-DD of the day `days` ago, in UTC. */
export function dateDaysAgo(days: number): string {
  return daysAgo(days).toISOString().slice(0, 10);
}

/** Returns a complete vendor posture reviewed ten days ago, which raises no finding. */
export function reviewedPosture(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    two_factor_enforced: true,
    security_audit: 'SOC 2 Type II, 2025',
    breach_notification: 'https://vendor.example/security/breach-policy',
    last_reviewed: dateDaysAgo(10),
    ...overrides,
  };
}

/** Paths of one aws-iam test integration in Vault, unique per call. */
export interface AwsEntryPaths {
  id: string;
  managementCredential: string;
  vaultPath: string;
}

export function awsEntryPaths(prefix = 'aws'): AwsEntryPaths {
  const id = `${prefix}-${uniqueSuffix()}`;
  return { id, managementCredential: `rotor/management/${id}`, vaultPath: `apps/${id}/aws` };
}

/**
 * Returns an aws-iam inventory entry that raises no audit finding once seedHealthyAwsEntry has
 * run. It rotates every 30 days, has a reviewed posture and no restrictions, because IAM keys
 * have none of their own.
 */
export function awsEntry(paths: AwsEntryPaths, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: paths.id,
    provider: 'aws-iam',
    owner: 'platform-tests',
    config: { user_name: paths.id },
    management_credential: paths.managementCredential,
    vault_path: paths.vaultPath,
    rotation: { rotation_period: '30d' },
    posture: reviewedPosture(),
    ...overrides,
  };
}

/** Stores a current key written by a rotation at `rotatedAt`, with Rotor's last_rotated_at metadata. */
export async function seedRotatedKey(vault: VaultStore, vaultPath: string, rotatedAt: Date): Promise<void> {
  await vault.writeSecret(vaultPath, { access_key_id: 'test-key-id', secret_access_key: 'test-secret-value' });
  await vault.mergeCustomMetadata(vaultPath, { last_rotated_at: rotatedAt.toISOString() });
}

/** Stores a management credential with the fields aws-iam expects. */
export async function seedManagementCredential(vault: VaultStore, path: string): Promise<void> {
  await vault.writeSecret(path, { access_key_id: 'test-admin-key-id', secret_access_key: 'test-admin-secret' });
}

/** Seeds Vault so that awsEntry(paths) is healthy: a key rotated `rotatedDaysAgo` days ago and a valid management credential. */
export async function seedHealthyAwsEntry(vault: VaultStore, paths: AwsEntryPaths, rotatedDaysAgo = 5): Promise<void> {
  await seedRotatedKey(vault, paths.vaultPath, daysAgo(rotatedDaysAgo));
  await seedManagementCredential(vault, paths.managementCredential);
}

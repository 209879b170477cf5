import { z } from 'zod';
import { manualProviderName } from '../shared/inventory';
import { ProviderError, type Provider } from './contract';

/**
 * The manual provider stands for vendors with no API to create keys, such as Kraken or GitHub
 * personal access tokens. Rotor keeps such
 * keys in the inventory and the audit, and computes their age from `last_rotated`. A person
 * rotates them in the vendor's console and updates that date. Every key operation fails with
 * ProviderError 'invalid-config', which Temporal does not retry.
 */

export const manualConfigSchema = z
  .object({
    /** The vendor whose console issues the key, such as Kraken. */
    vendor: z.string().min(1, 'expected the vendor name, such as Kraken').describe('Vendor whose console issues the key, such as Kraken'),
    /** Vendor console page for rotating the key by hand, which `rotor rotate` names when it rejects the key. */
    console_url: z
      .url({ protocol: /^https?$/, message: 'expected an http or https URL of the vendor console page for API keys' })
      .optional()
      .describe('Vendor console page where a person rotates the key'),
  })
  .strict();

export type ManualConfig = z.infer<typeof manualConfigSchema>;

const HELP = `For keys whose vendor offers no key-management API. Rotor cannot create, verify or revoke
them, so \`rotor rotate\` rejects them. It tracks their age from last_rotated, and \`rotor audit\`
reports them when they are overdue.

Config:
  vendor       Vendor whose console issues the key, such as Kraken.
  console_url  Vendor console page where a person rotates the key (optional).

Integration fields: last_rotated (YYYY-MM-DD) is required and is the date of the last rotation
by hand. management_credential is not used. vault_path is optional and records where consumers
read the key.

To rotate one: create the new key in the vendor console with the restrictions the inventory lists,
write it to vault_path, let consumers pick it up, revoke the old key, then set last_rotated.`;

function rejectOperation(operation: string): never {
  throw new ProviderError(
    'invalid-config',
    `Manual keys cannot be rotated by Rotor: the vendor has no key-management API (${operation} was requested). Rotate the key by hand in the vendor console and update last_rotated in the inventory.`,
    { provider: manualProviderName, operation },
  );
}

export const manualProvider: Provider<ManualConfig, Record<string, never>> = {
  name: manualProviderName,
  summary: 'keys rotated by hand, for vendors with no key-management API (age tracked from last_rotated)',
  help: HELP,
  configSchema: manualConfigSchema,
  credentialSchema: z.object({}).strict(),
  secretSchema: z.record(z.string(), z.string()),
  capabilities: {
    ipAllowlist: false,
    scopes: false,
    expiry: false,
    usageData: false,
    // Rotor makes no vendor calls for manual keys, but the worker gives every provider a rate-limited task queue.
    defaultRateLimitPerSecond: 1,
  },
  listKeys: async () => rejectOperation('listKeys'),
  createKey: async () => rejectOperation('createKey'),
  verifyKey: async () => rejectOperation('verifyKey'),
  revokeKey: async () => rejectOperation('revokeKey'),
  keyIdFromSecret: () => undefined,
};

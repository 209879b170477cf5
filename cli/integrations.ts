import { getProvider, listProviders } from '../providers/registry';
import {
  findIntegration,
  isManualIntegration,
  loadInventory,
  type IntegrationEntry,
  type InventoryFile,
  type ManualIntegrationEntry,
} from '../shared/inventory';
import type { IntegrationSpec } from '../workflows/rotation-types';
import { UsageError } from './errors';

/** Returns the inventory file that commands read when --file is not given. */
export function defaultInventoryFile(): string {
  return process.env.ROTOR_INVENTORY || 'inventory.yaml';
}

/**
 * Loads the inventory and checks it completely, including each integration's provider name and
 * provider config against the built-in providers. Throws InventoryError listing every problem.
 */
export function loadCheckedInventory(file: string): InventoryFile {
  return loadInventory(file, { providers: listProviders() });
}

/** Loads one integration as a rotation needs it; a manual integration is rejected with UsageError. */
export function loadIntegrationSpec(file: string, integrationId: string): IntegrationSpec {
  const inventory = loadCheckedInventory(file);
  const entry = findIntegration(inventory, integrationId, file);
  if (isManualIntegration(entry)) {
    throw new UsageError(manualRotationMessage(entry, file));
  }
  return toIntegrationSpec(entry);
}

/** Converts an inventory entry to the rotation's input. Throws UsageError for a manual integration, which Rotor cannot rotate. */
export function toIntegrationSpec(entry: IntegrationEntry): IntegrationSpec {
  if (isManualIntegration(entry)) {
    throw new UsageError(manualRotationMessage(entry));
  }
  const provider = getProvider(entry.provider);
  return {
    id: entry.id,
    provider: entry.provider,
    providerConfig: provider.configSchema.parse(entry.config) as Record<string, unknown>,
    managementCredentialPath: entry.management_credential,
    vaultPath: entry.vault_path,
    owner: entry.owner,
    policy: {
      rotationPeriodMs: entry.rotation.rotation_period,
      gracePeriodMs: entry.rotation.grace_period,
      verifyTimeoutMs: entry.rotation.verify_timeout,
      idlePeriodMs: entry.rotation.idle_period,
      maxGraceMs: entry.rotation.max_grace,
      clearStaleKeys: entry.rotation.clear_stale_keys,
    },
    restrictions: {
      ipAllowlist: entry.restrictions.ip_allowlist,
      scopes: entry.restrictions.scopes,
      expiresAfterMs: entry.restrictions.expires_after,
    },
  };
}

/** Explains that a manual key is rotated by hand, where, and which date to update afterwards. */
export function manualRotationMessage(entry: ManualIntegrationEntry, file?: string): string {
  const vendor = typeof entry.config.vendor === 'string' ? entry.config.vendor : 'the vendor';
  const where = typeof entry.config.console_url === 'string' ? ` at ${entry.config.console_url}` : ` in the ${vendor} console`;
  const today = new Date().toISOString().slice(0, 10);
  return (
    `${entry.id} is a manual integration: ${vendor} has no key-management API, so Rotor cannot rotate its key. ` +
    `Rotate it by hand${where}, then set last_rotated: ${today} on ${entry.id} in ${file ?? 'the inventory'}.`
  );
}

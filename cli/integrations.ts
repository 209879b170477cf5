import { getProvider } from '../providers/registry';
import { InventoryError, findIntegration, loadInventory, type IntegrationEntry, type InventoryFile, type InventoryProblem } from '../shared/inventory';
import type { IntegrationSpec } from '../workflows/rotation-types';

/** Returns the inventory file that commands read when --file is not given. */
export function defaultInventoryFile(): string {
  return process.env.ROTOR_INVENTORY || 'inventory.yaml';
}

/**
 * Loads the inventory and checks each integration's provider name and provider config against
 * the provider's own schema. Throws InventoryError listing every problem.
 */
export function loadCheckedInventory(file: string): InventoryFile {
  const inventory = loadInventory(file);
  const problems: InventoryProblem[] = [];
  inventory.integrations.forEach((integration, index) => {
    let provider;
    try {
      provider = getProvider(integration.provider);
    } catch (error) {
      problems.push({ file, path: `integrations[${index}].provider`, message: (error as Error).message });
      return;
    }
    const config = provider.configSchema.safeParse(integration.config);
    if (!config.success) {
      for (const issue of config.error.issues) {
        problems.push({ file, path: `integrations[${index}].config${issue.path.map((part) => `.${String(part)}`).join('')}`, message: issue.message });
      }
    }
  });
  if (problems.length > 0) {
    throw new InventoryError(problems);
  }
  return inventory;
}

export function loadIntegrationSpec(file: string, integrationId: string): IntegrationSpec {
  const inventory = loadCheckedInventory(file);
  return toIntegrationSpec(findIntegration(inventory, integrationId, file));
}

export function toIntegrationSpec(entry: IntegrationEntry): IntegrationSpec {
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

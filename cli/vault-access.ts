import { loadVaultConfig } from '../shared/config';
import { isManualIntegration, type InventoryFile } from '../shared/inventory';
import { VaultError, VaultStore } from '../shared/vault';
import { OperationFailedError } from './errors';

/**
 * Vault access for the report commands. An inventory of manual integrations only needs no
 * Vault, so those commands work without VAULT_ADDR and VAULT_TOKEN.
 */
export async function connectVaultIfNeeded(inventory: InventoryFile): Promise<VaultStore | undefined> {
  if (inventory.integrations.every(isManualIntegration)) {
    return undefined;
  }
  return VaultStore.connect(loadVaultConfig());
}

/** Runs Vault reads and turns a Vault failure, such as an unreachable server, into exit code 1 with the reason. */
export async function readFromVault<T>(purpose: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof VaultError) {
      throw new OperationFailedError(`Cannot ${purpose}: ${error.message}`);
    }
    throw error;
  }
}

import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { IntegrationSpec } from '../../workflows/rotation-types';
import { testEnvironment, uniqueSuffix } from './environment';

/** Writes an inventory file for the integrations, as a user would keep it, and returns its path. */
export function writeInventoryFile(
  integrations: IntegrationSpec[],
  rotation: { grace_period: string; verify_timeout?: string; rotation_period?: string },
  extra: { tags?: string[]; providers?: Record<string, { rate_limit_per_second: number }> } = {},
): string {
  const file = path.join(testEnvironment().ROTOR_TEST_WORK_DIR, `inventory-${uniqueSuffix()}.yaml`);
  const document = {
    version: 1,
    ...(extra.providers ? { providers: extra.providers } : {}),
    integrations: integrations.map((integration) => ({
      id: integration.id,
      provider: integration.provider,
      config: integration.providerConfig,
      management_credential: integration.managementCredentialPath,
      vault_path: integration.vaultPath,
      ...(extra.tags ? { tags: extra.tags } : {}),
      rotation: { verify_timeout: '30s', ...rotation },
    })),
  };
  fs.writeFileSync(file, stringify(document));
  return file;
}

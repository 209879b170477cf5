import { Context } from '@temporalio/activity';
import type { Provider, ProviderContext } from '../providers/contract';
import type { Logger } from '../shared/logger';
import type { VaultStore } from '../shared/vault';
import type { IntegrationSpec } from '../workflows/rotation-types';
import { rotationRefused } from './errors';

/** Services the activities use, provided by the worker process. */
export interface ActivityDependencies {
  vault: VaultStore;
  /** KV prefix of staged secrets, which consumers never read. */
  stagingPrefix: string;
  logger: Logger;
  getProvider(name: string): Provider;
}

export interface RotationReference {
  integration: IntegrationSpec;
  rotationId: string;
}

export function stagingPath(dependencies: ActivityDependencies, reference: RotationReference): string {
  return `${dependencies.stagingPrefix}/${reference.integration.id}/${reference.rotationId}`;
}

export function rotationLogger(dependencies: ActivityDependencies, reference: RotationReference): Logger {
  return dependencies.logger.child({ integration: reference.integration.id, provider: reference.integration.provider, rotationId: reference.rotationId });
}

/**
 * Looks up the integration's provider, checks its config and reads its management credential
 * from Vault. Stops the rotation with a clear reason when either is missing or invalid.
 */
export async function openProvider(
  dependencies: ActivityDependencies,
  reference: RotationReference,
): Promise<{ provider: Provider; context: ProviderContext<unknown, unknown> }> {
  const { integration } = reference;
  const provider = dependencies.getProvider(integration.provider);

  const config = provider.configSchema.safeParse(integration.providerConfig);
  if (!config.success) {
    const problems = config.error.issues.map((issue) => `config.${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw rotationRefused(`Integration ${integration.id} has invalid ${provider.name} config: ${problems}. Fix it in the inventory.`);
  }

  const mount = dependencies.vault.kvMount;
  const stored = await dependencies.vault.readSecret(integration.managementCredentialPath);
  if (!stored) {
    throw rotationRefused(
      `The management credential of ${integration.id} is missing: nothing at ${mount}/${integration.managementCredentialPath} in Vault. ` +
        `Write the ${provider.name} credential there (fields: ${describeFields(provider.credentialSchema)}).`,
    );
  }
  const credential = provider.credentialSchema.safeParse(stored.data);
  if (!credential.success) {
    // Field names only: the values are the credential.
    const fields = credential.error.issues.map((issue) => issue.path.join('.') || '(root)').join(', ');
    throw rotationRefused(
      `The management credential of ${integration.id} at ${mount}/${integration.managementCredentialPath} is invalid for ${provider.name} (fields: ${fields}). ` +
        `Expected fields: ${describeFields(provider.credentialSchema)}.`,
    );
  }

  return {
    provider,
    context: {
      config: config.data,
      credential: credential.data,
      logger: rotationLogger(dependencies, reference),
      signal: Context.current().cancellationSignal,
    },
  };
}

function describeFields(schema: unknown): string {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape).join(', ') : 'see `rotor providers`';
}

import { ApplicationFailure } from '@temporalio/common';
import { VaultCasMismatchError } from '../shared/vault';
import type { PendingKeyReference } from '../workflows/rotation-types';
import { rotationLogger, type ActivityDependencies, type RotationReference } from './dependencies';
import { withFailureMapping } from './errors';

/** Activities that only touch Vault. They run on the base task queue. */
export function createVaultActivities(dependencies: ActivityDependencies) {
  const { vault } = dependencies;

  /**
   * Writes `data` as the next version of the consumer path with check-and-set. When the
   * check-and-set fails because an earlier attempt of this same activity already wrote exactly
   * this data, returns that version instead of failing.
   */
  async function writeWithCas(path: string, data: Record<string, string>, expectedVersion: number): Promise<number> {
    try {
      return (await vault.writeSecret(path, data, { cas: expectedVersion })).version;
    } catch (error) {
      if (!(error instanceof VaultCasMismatchError)) {
        throw error;
      }
      const latest = await vault.readSecret(path);
      if (latest && latest.version === expectedVersion + 1 && sameData(latest.data, data)) {
        return latest.version;
      }
      throw ApplicationFailure.create({
        message:
          `The consumer secret at ${vault.kvMount}/${path} changed since planning (expected version ${expectedVersion}, found ${latest?.version ?? 'none'}). ` +
          'Rotor did not overwrite it. Check who wrote it, then start the rotation again.',
        type: 'VaultCasMismatch',
        nonRetryable: true,
      });
    }
  }

  return {
    /**
     * Promotes the staged secret: writes it as the consumer path's next version with
     * check-and-set on the version planning saw, and records the rotation in custom metadata.
     */
    async promotePendingKey(
      reference: RotationReference & { pending: PendingKeyReference; expectedVersion: number; previousKeyId?: string },
    ): Promise<{ version: number }> {
      return withFailureMapping(async () => {
        const { integration } = reference;
        const staged = await vault.readSecret(reference.pending.stagingPath, reference.pending.stagingVersion);
        if (!staged) {
          throw ApplicationFailure.create({
            message: `The staged secret of key ${reference.pending.keyId} is missing at ${vault.kvMount}/${reference.pending.stagingPath}; nothing was promoted.`,
            type: 'StagedSecretMissing',
            nonRetryable: true,
          });
        }

        const version = await writeWithCas(integration.vaultPath, staged.data, reference.expectedVersion);
        await vault.mergeCustomMetadata(integration.vaultPath, {
          integration: integration.id,
          provider: integration.provider,
          key_id: reference.pending.keyId,
          previous_key_id: reference.previousKeyId ?? '',
          rotation_id: reference.rotationId,
          rotated_at: new Date().toISOString(),
        });

        rotationLogger(dependencies, reference).info(
          { phase: 'promoting', keyId: reference.pending.keyId, vaultPath: integration.vaultPath, version },
          'new key promoted',
        );
        return { version };
      });
    },

    /** Rollback: writes the previous version's secret back as the newest version. */
    async restorePreviousSecret(
      reference: RotationReference & { restoreVersion: number; expectedVersion: number; restoredKeyId?: string },
    ): Promise<{ version: number }> {
      return withFailureMapping(async () => {
        const { integration } = reference;
        const previous = await vault.readSecret(integration.vaultPath, reference.restoreVersion);
        if (!previous) {
          throw ApplicationFailure.create({
            message: `Version ${reference.restoreVersion} of ${vault.kvMount}/${integration.vaultPath} is not readable (deleted or destroyed), so it cannot be restored.`,
            type: 'PreviousSecretMissing',
            nonRetryable: true,
          });
        }

        const version = await writeWithCas(integration.vaultPath, previous.data, reference.expectedVersion);
        await vault.mergeCustomMetadata(integration.vaultPath, {
          key_id: reference.restoredKeyId ?? '',
          rotation_id: reference.rotationId,
          rolled_back_at: new Date().toISOString(),
        });

        rotationLogger(dependencies, reference).warn(
          { phase: 'rolling-back', keyId: reference.restoredKeyId, vaultPath: integration.vaultPath, version, restoredVersion: reference.restoreVersion },
          'previous secret restored',
        );
        return { version };
      });
    },

    /** Records the finished rotation in Vault metadata, removes the staged secret and writes the audit event. */
    async recordRotationCompleted(
      reference: RotationReference & { pending: PendingKeyReference; promotedVersion: number; previousKeyId?: string },
    ): Promise<void> {
      return withFailureMapping(async () => {
        const { integration } = reference;
        const completedAt = new Date();
        const nextDueAt =
          integration.policy.rotationPeriodMs === undefined ? '' : new Date(completedAt.getTime() + integration.policy.rotationPeriodMs).toISOString();
        await vault.mergeCustomMetadata(integration.vaultPath, { last_rotated_at: completedAt.toISOString(), next_due_at: nextDueAt });
        await vault.destroySecret(reference.pending.stagingPath);

        rotationLogger(dependencies, reference).info(
          {
            event: 'rotation.completed',
            phase: 'completed',
            keyId: reference.pending.keyId,
            previousKeyId: reference.previousKeyId,
            vaultPath: integration.vaultPath,
            version: reference.promotedVersion,
            nextDueAt: nextDueAt || undefined,
          },
          'rotation completed',
        );
      });
    },
  };
}

function sameData(left: Record<string, string>, right: Record<string, string>): boolean {
  const keys = Object.keys(left);
  return keys.length === Object.keys(right).length && keys.every((key) => left[key] === right[key]);
}

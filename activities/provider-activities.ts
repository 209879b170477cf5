import { Context, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ProviderError, type Provider, type ProviderContext, type ProviderKey } from '../providers/contract';
import { formatDuration } from '../shared/durations';
import type { Logger } from '../shared/logger';
import type { VaultStore } from '../shared/vault';
import { rotationLabel, type KeySummary, type PendingKeyReference, type RotationPlan } from '../workflows/rotation-types';
import { openProvider, rotationLogger, stagingPath, type ActivityDependencies, type RotationReference } from './dependencies';
import { rotationRefused, withFailureMapping } from './errors';

/** Without an idle_period, a key used within this window counts as in use and is never cleared. */
const defaultInUseWindowMs = 7 * 24 * 3_600_000;

/**
 * Activities that call a provider. They run on the provider's own task queue, which the worker
 * rate-limits to the vendor's key-management limit.
 */
export function createProviderActivities(dependencies: ActivityDependencies) {
  const { vault } = dependencies;

  return {
    /**
     * Reads the current key from Vault and the provider's key list, and decides whether the
     * rotation can go ahead. Refuses with a reason when it cannot.
     */
    async planRotation(reference: RotationReference): Promise<RotationPlan> {
      return withFailureMapping(async () => {
        const { integration } = reference;
        const { provider, context } = await openProvider(dependencies, reference);
        const logger = rotationLogger(dependencies, reference);

        const metadata = await vault.readMetadata(integration.vaultPath);
        const currentVersion = metadata?.currentVersion ?? 0;
        let currentKeyId = metadata?.customMetadata.key_id;
        if (!currentKeyId && metadata) {
          const current = await vault.readSecret(integration.vaultPath);
          currentKeyId = current ? provider.keyIdFromSecret(current.data) : undefined;
        }

        const keys = await provider.listKeys(context);
        const steps: string[] = [];
        if (currentKeyId && !keys.some((key) => key.keyId === currentKeyId)) {
          steps.push(`the current key ${currentKeyId} is not at the provider any more; consumers may already fail`);
          logger.warn({ keyId: currentKeyId }, 'current key not found at the provider');
        }

        const ownLabel = rotationLabel(reference.rotationId);
        const counted = keys.filter((key) => key.label !== ownLabel);
        const staleKeyIds: string[] = [];
        const limit = provider.capabilities.maxKeysPerPrincipal;
        if (limit !== undefined && counted.length >= limit) {
          const needed = counted.length - limit + 1;
          const others = counted.filter((key) => key.keyId !== currentKeyId);
          const stale: string[] = [];
          for (const key of others) {
            if (await isStale(key)) {
              stale.push(key.keyId);
            }
          }
          if (!integration.policy.clearStaleKeys || stale.length < needed) {
            const blocking = others.map((key) => key.keyId).join(', ');
            const hint = integration.policy.clearStaleKeys
              ? 'it is in use, so Rotor will not revoke it; retire it by hand'
              : 'delete it, or set rotation.clear_stale_keys: true to let Rotor revoke a key that is inactive or unused';
            throw rotationRefused(
              `${provider.name} allows ${limit} keys and ${integration.id} has ${counted.length}: ` +
                `${currentKeyId ? `${currentKeyId} is current and ` : ''}${blocking} blocks the new key; ${hint}.`,
            );
          }
          staleKeyIds.push(...stale.slice(0, needed));
          steps.push(`would revoke stale key${needed > 1 ? 's' : ''} ${staleKeyIds.join(', ')} to stay within ${limit} keys`);
        }

        steps.push(`would create a new ${provider.name} key labelled ${ownLabel}`);
        steps.push(`would verify it for up to ${formatDuration(integration.policy.verifyTimeoutMs)} and promote it to ${vault.kvMount}/${integration.vaultPath} (check-and-set on version ${currentVersion})`);
        steps.push(
          currentKeyId
            ? `would revoke the current key ${currentKeyId} after a grace of ${formatDuration(integration.policy.gracePeriodMs)}`
            : 'no current key to revoke: this rotation writes the first secret',
        );

        logger.info({ phase: 'planning', currentVersion, currentKeyId, providerKeys: keys.length, staleKeyIds }, 'rotation planned');
        return { currentVersion, currentKeyId, providerKeys: keys.map(toSummary), staleKeyIds, steps };

        async function isStale(key: ProviderKey): Promise<boolean> {
          if (key.status === 'inactive') {
            return true;
          }
          if (!provider.capabilities.usageData || !provider.keyUsage) {
            return false;
          }
          const usage = await provider.keyUsage(context, key.keyId);
          const window = integration.policy.idlePeriodMs ?? defaultInUseWindowMs;
          return usage.lastUsedAt === null || Date.now() - Date.parse(usage.lastUsedAt) > window;
        }
      });
    },

    /**
     * Creates the new key and writes its secret to the staging path in the same step, returning
     * references only. A retry finds the key an earlier attempt staged instead of minting another.
     */
    async createPendingKey(
      reference: RotationReference & { currentKeyId?: string; rotationStartedAt: string },
    ): Promise<PendingKeyReference> {
      return withFailureMapping(async () => {
        const { integration } = reference;
        const { provider, context } = await openProvider(dependencies, reference);
        const logger = rotationLogger(dependencies, reference);
        const path = stagingPath(dependencies, reference);
        const label = rotationLabel(reference.rotationId);

        // Only a retry can find a key of this rotation: planning listed the keys just before, and
        // skipping the listing on the first attempt saves a rate-limited call per rotation.
        if (Context.current().info.attempt > 1) {
          const earlier = await findEarlierAttempt(provider, context, { ...reference, stagingPath: path, label, logger, vault });
          if (earlier) {
            return earlier;
          }
        }

        const expiresAt =
          integration.restrictions.expiresAfterMs === undefined ? undefined : new Date(Date.now() + integration.restrictions.expiresAfterMs).toISOString();
        const created = await provider.createKey(context, {
          label,
          restrictions: { ipAllowlist: integration.restrictions.ipAllowlist, scopes: integration.restrictions.scopes, expiresAt },
        });
        const { version } = await vault.writeSecret(path, created.secret);
        logger.info({ phase: 'creating', keyId: created.keyId, stagingPath: path, stagingVersion: version }, 'pending key created and staged');
        return { keyId: created.keyId, createdAt: created.createdAt, stagingPath: path, stagingVersion: version };
      });
    },

    /**
     * Calls the provider with the staged secret. While the vendor does not accept the key yet,
     * throws a retryable failure; the workflow bounds the retries by the policy's verify_timeout.
     */
    async verifyPendingKey(reference: RotationReference & { pending: PendingKeyReference }): Promise<void> {
      return withFailureMapping(async () => {
        const { provider, context } = await openProvider(dependencies, reference);
        const logger = rotationLogger(dependencies, reference);
        const staged = await vault.readSecret(reference.pending.stagingPath, reference.pending.stagingVersion);
        if (!staged) {
          throw ApplicationFailure.create({
            message: `The staged secret of key ${reference.pending.keyId} is missing at ${vault.kvMount}/${reference.pending.stagingPath}.`,
            type: 'StagedSecretMissing',
            nonRetryable: true,
          });
        }

        heartbeat();
        try {
          const { ipAllowlist, scopes } = reference.integration.restrictions;
          await provider.verifyKey(context, reference.pending.keyId, staged.data, { ipAllowlist, scopes });
        } catch (error) {
          if (error instanceof ProviderError && error.kind === 'authentication') {
            logger.info({ phase: 'verifying', keyId: reference.pending.keyId, reason: error.message }, 'new key not accepted yet; will retry');
            throw ApplicationFailure.create({ message: error.message, type: 'KeyNotYetValid' });
          }
          throw error;
        }
        logger.info({ phase: 'verifying', keyId: reference.pending.keyId }, 'new key verified');
      });
    },

    /** Revokes a key at the provider; a key that is already gone counts as revoked. */
    async revokeProviderKey(reference: RotationReference & { keyId: string; reason: string }): Promise<void> {
      return withFailureMapping(async () => {
        const { provider, context } = await openProvider(dependencies, reference);
        try {
          await provider.revokeKey(context, reference.keyId);
        } catch (error) {
          if (!(error instanceof ProviderError && error.kind === 'not-found')) {
            throw error;
          }
        }
        rotationLogger(dependencies, reference).info({ keyId: reference.keyId, reason: reference.reason }, 'key revoked');
      });
    },

    /** Compensation: revokes a pending key and removes its staged secret. Consumers never saw it. */
    async discardPendingKey(reference: RotationReference & { pending: PendingKeyReference }): Promise<void> {
      return withFailureMapping(async () => {
        const { provider, context } = await openProvider(dependencies, reference);
        try {
          await provider.revokeKey(context, reference.pending.keyId);
        } catch (error) {
          if (!(error instanceof ProviderError && error.kind === 'not-found')) {
            throw error;
          }
        }
        await vault.destroySecret(reference.pending.stagingPath);
        rotationLogger(dependencies, reference).warn({ keyId: reference.pending.keyId }, 'pending key revoked and its staged secret removed');
      });
    },

    /** Returns when the provider last saw the key used, or null when the provider has no usage data. */
    async readKeyUsage(reference: RotationReference & { keyId: string }): Promise<{ lastUsedAt: string | null } | null> {
      return withFailureMapping(async () => {
        const { provider, context } = await openProvider(dependencies, reference);
        if (!provider.keyUsage) {
          return null;
        }
        return provider.keyUsage(context, reference.keyId);
      });
    },
  };
}

// Vendors report creation times in whole seconds, so allow for the rounding.
function createdSince(key: ProviderKey, instant: string): boolean {
  return key.createdAt !== undefined && Date.parse(key.createdAt) >= Date.parse(instant) - 1000;
}

function toSummary(key: ProviderKey): KeySummary {
  return { keyId: key.keyId, status: key.status, createdAt: key.createdAt, lastUsedAt: key.lastUsedAt, label: key.label };
}

/**
 * Returns the key an earlier attempt of createPendingKey created and staged, or revokes the keys an
 * earlier attempt created without staging them and returns undefined.
 */
async function findEarlierAttempt(
  provider: Provider,
  context: ProviderContext<unknown, unknown>,
  attempt: { currentKeyId?: string; rotationStartedAt: string; stagingPath: string; label: string; logger: Logger; vault: VaultStore },
): Promise<PendingKeyReference | undefined> {
  const keys = await provider.listKeys(context);
  const staged = await attempt.vault.readSecret(attempt.stagingPath);
  const stagedKeyId = staged ? provider.keyIdFromSecret(staged.data) : undefined;
  const stagedKey = keys.find((key) => key.keyId === stagedKeyId);
  if (staged && stagedKey) {
    attempt.logger.info({ phase: 'creating', keyId: stagedKey.keyId }, 'pending key already created by an earlier attempt');
    return { keyId: stagedKey.keyId, createdAt: stagedKey.createdAt ?? staged.createdTime, stagingPath: attempt.stagingPath, stagingVersion: staged.version };
  }

  // A key this rotation made whose secret never reached Vault cannot be used: its secret is
  // gone. Keys without a label count too when created after the rotation started, because a
  // crash can fall between creating and labelling.
  const orphans = keys.filter(
    (key) =>
      key.keyId !== attempt.currentKeyId &&
      (key.label === attempt.label || (key.label === undefined && createdSince(key, attempt.rotationStartedAt))),
  );
  for (const orphan of orphans) {
    attempt.logger.warn({ phase: 'creating', keyId: orphan.keyId }, 'revoking a key an earlier attempt created but never staged');
    await provider.revokeKey(context, orphan.keyId);
  }
  return undefined;
}

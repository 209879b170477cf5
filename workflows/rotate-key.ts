import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  defineQuery,
  defineSignal,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createProviderActivities, createVaultActivities } from '../activities';
import { phaseAttribute } from '../shared/search-attributes';
import { providerTaskQueue } from '../shared/task-queues';
import type { RotationPhase, RotationRequest, RotationResult, RotationState } from './rotation-types';

type ProviderActivities = ReturnType<typeof createProviderActivities>;
type VaultActivities = ReturnType<typeof createVaultActivities>;

export const stateQuery = defineQuery<RotationState>('state');
/** Ends grace now: the previous key is revoked without waiting for the timer or for idleness. */
export const finishGraceSignal = defineSignal('finishGrace');
/** During grace: consumers get the previous secret back and the new key is revoked. */
export const rollbackSignal = defineSignal<[{ reason?: string }]>('rollback');

// Error types the activities raise that retrying cannot fix.
const nonRetryableErrorTypes = [
  'RotationRefused',
  'ProviderAuthentication',
  'ProviderPermission',
  'ProviderInvalidConfig',
  'ProviderLimitReached',
  'VaultCasMismatch',
  'VaultPermission',
  'VaultRequestRejected',
  'StagedSecretMissing',
  'PreviousSecretMissing',
];

/** Interval at which grace checks with the provider whether the previous key is still in use. */
const usageCheckIntervalMs = 60_000;

/**
 * Rotates one integration's key: planning → creating → verifying → promoting → grace →
 * revoking → completed, or rolling-back → rolled-back, or failed. Nothing is revoked before its
 * successor is verified and promoted, and a failure before promotion leaves the current key as
 * it was.
 */
export async function rotateKey(request: RotationRequest): Promise<RotationResult> {
  const { integration } = request;
  const info = workflowInfo();

  // Bounded by time, not attempts: a vendor's rate-limit responses may need many retries, so a
  // rate limit delays a rotation by up to 30 minutes instead of failing it after a fixed count.
  const providerActivities = proxyActivities<ProviderActivities>({
    taskQueue: providerTaskQueue(request.taskQueue, integration.provider),
    startToCloseTimeout: '1 minute',
    scheduleToCloseTimeout: '30 minutes',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', nonRetryableErrorTypes },
  });
  // Verification retries through the vendor's propagation delay, bounded by the policy's window.
  // A short attempt timeout lets a retry start soon when a worker dies mid-call.
  const verifyActivities = proxyActivities<ProviderActivities>({
    taskQueue: providerTaskQueue(request.taskQueue, integration.provider),
    startToCloseTimeout: '10s',
    scheduleToCloseTimeout: integration.policy.verifyTimeoutMs,
    retry: { initialInterval: '1s', backoffCoefficient: 1.5, maximumInterval: '10s', nonRetryableErrorTypes },
  });
  const vaultActivities = proxyActivities<VaultActivities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
  });

  const state: RotationState = {
    integrationId: integration.id,
    provider: integration.provider,
    rotationId: info.runId,
    phase: 'planning',
    phaseStartedAt: {},
    dryRun: request.dryRun,
  };
  let finishGraceRequested = false;
  let rollbackRequested = false;
  let rollbackReason = '';

  setHandler(stateQuery, () => state);
  setHandler(finishGraceSignal, () => {
    if (state.phase !== 'grace') {
      log.warn('finishGrace signal ignored outside grace', { integration: integration.id, phase: state.phase });
      return;
    }
    finishGraceRequested = true;
  });
  setHandler(rollbackSignal, ({ reason }) => {
    if (state.phase !== 'grace' || state.plan?.currentVersion === 0) {
      log.warn('rollback signal ignored: rollback is possible only during grace and with a previous secret', { integration: integration.id, phase: state.phase });
      return;
    }
    rollbackRequested = true;
    rollbackReason = reason ?? '';
  });

  const enterPhase = (phase: RotationPhase): void => {
    state.phase = phase;
    state.phaseStartedAt[phase] = new Date().toISOString();
    upsertSearchAttributes([{ key: phaseAttribute, value: phase }]);
    setCurrentDetails(describeState(state));
    log.info('rotation phase entered', { integration: integration.id, provider: integration.provider, rotationId: state.rotationId, phase });
  };

  const reference = { integration, rotationId: state.rotationId };

  try {
    enterPhase('planning');
    const plan = await providerActivities.planRotation(reference);
    state.plan = plan;
    state.currentKeyId = plan.currentKeyId;
    if (request.dryRun) {
      enterPhase('completed');
      return { outcome: 'dry-run', state };
    }
    for (const staleKeyId of plan.staleKeyIds) {
      await providerActivities.revokeProviderKey({ ...reference, keyId: staleKeyId, reason: 'stale key cleared to make room' });
    }

    enterPhase('creating');
    const pending = await providerActivities.createPendingKey({ ...reference, currentKeyId: plan.currentKeyId, rotationStartedAt: info.startTime.toISOString() });
    state.pendingKeyId = pending.keyId;

    enterPhase('verifying');
    try {
      await verifyActivities.verifyPendingKey({ ...reference, pending });
    } catch (error) {
      await providerActivities.discardPendingKey({ ...reference, pending });
      throw error;
    }

    enterPhase('promoting');
    let promotedVersion: number;
    try {
      ({ version: promotedVersion } = await vaultActivities.promotePendingKey({ ...reference, pending, expectedVersion: plan.currentVersion, previousKeyId: plan.currentKeyId }));
    } catch (error) {
      await providerActivities.discardPendingKey({ ...reference, pending });
      throw error;
    }
    state.promotedVersion = promotedVersion;

    enterPhase('grace');
    const graceStarted = Date.now();
    state.graceEndsAt = new Date(graceStarted + integration.policy.gracePeriodMs).toISOString();
    setCurrentDetails(describeState(state));
    await condition(() => finishGraceRequested || rollbackRequested, integration.policy.gracePeriodMs);
    if (!finishGraceRequested && !rollbackRequested && plan.currentKeyId && integration.policy.idlePeriodMs !== undefined) {
      await waitForPreviousKeyIdle(plan.currentKeyId, graceStarted);
    }

    if (rollbackRequested) {
      enterPhase('rolling-back');
      log.warn('rotation rolling back on request', { integration: integration.id, rotationId: state.rotationId, reason: rollbackReason });
      await vaultActivities.restorePreviousSecret({ ...reference, restoreVersion: plan.currentVersion, expectedVersion: promotedVersion, restoredKeyId: plan.currentKeyId });
      await providerActivities.discardPendingKey({ ...reference, pending });
      enterPhase('rolled-back');
      return { outcome: 'rolled-back', state };
    }

    enterPhase('revoking');
    if (plan.currentKeyId) {
      await providerActivities.revokeProviderKey({ ...reference, keyId: plan.currentKeyId, reason: 'previous key retired after grace' });
    }

    enterPhase('completed');
    await vaultActivities.recordRotationCompleted({ ...reference, pending, promotedVersion, previousKeyId: plan.currentKeyId });
    return { outcome: 'completed', state };
  } catch (error) {
    const failedPhase = state.phase;
    const cause = describeFailure(error);
    state.failure = { phase: failedPhase, message: cause };
    enterPhase('failed');
    throw ApplicationFailure.nonRetryable(`Rotation of ${integration.id} failed in phase ${failedPhase}: ${cause}`, 'RotationFailed');
  }

  // Extends grace while the provider reports the previous key in use, up to max_grace.
  async function waitForPreviousKeyIdle(previousKeyId: string, graceStarted: number): Promise<void> {
    const idlePeriodMs = integration.policy.idlePeriodMs ?? 0;
    const latestEnd = graceStarted + Math.max(integration.policy.maxGraceMs, integration.policy.gracePeriodMs);
    for (;;) {
      const usage = await providerActivities.readKeyUsage({ ...reference, keyId: previousKeyId });
      if (usage === null || usage.lastUsedAt === null) {
        return;
      }
      const idleForMs = Date.now() - Date.parse(usage.lastUsedAt);
      if (idleForMs >= idlePeriodMs) {
        return;
      }
      if (Date.now() >= latestEnd) {
        log.warn('grace reached max_grace while the previous key is still in use; revoking it anyway', {
          integration: integration.id,
          rotationId: state.rotationId,
          keyId: previousKeyId,
          lastUsedAt: usage.lastUsedAt,
        });
        return;
      }
      const waitMs = Math.min(usageCheckIntervalMs, idlePeriodMs - idleForMs, latestEnd - Date.now());
      state.waitingReason = `previous key ${previousKeyId} was last used at ${usage.lastUsedAt}; waiting until it has been idle for ${Math.round(idlePeriodMs / 1000)} s (at most until ${new Date(latestEnd).toISOString()})`;
      setCurrentDetails(describeState(state));
      if (await condition(() => finishGraceRequested || rollbackRequested, Math.max(waitMs, 1000))) {
        return;
      }
    }
  }
}

function describeFailure(error: unknown): string {
  if (error instanceof ActivityFailure && error.cause) {
    return error.cause.message;
  }
  return error instanceof Error ? error.message : String(error);
}

// Markdown shown as "current details" in the Temporal UI.
function describeState(state: RotationState): string {
  const lines = [`**${state.integrationId}** (${state.provider}): phase **${state.phase}**`];
  if (state.currentKeyId) lines.push(`- current key: \`${state.currentKeyId}\``);
  if (state.pendingKeyId) lines.push(`- new key: \`${state.pendingKeyId}\``);
  if (state.promotedVersion !== undefined) lines.push(`- promoted as Vault version ${state.promotedVersion}`);
  if (state.graceEndsAt) lines.push(`- grace ends at ${state.graceEndsAt}`);
  if (state.waitingReason) lines.push(`- ${state.waitingReason}`);
  if (state.failure) lines.push(`- failed in ${state.failure.phase}: ${state.failure.message}`);
  return lines.join('\n');
}

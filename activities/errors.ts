import { ApplicationFailure } from '@temporalio/activity';
import { ProviderError, type ProviderErrorKind } from '../providers/contract';
import { VaultCasMismatchError, VaultError } from '../shared/vault';

/**
 * Maps Rotor's typed errors to Temporal failures: a vendor's rate-limit response becomes a retry
 * after the delay the vendor requested. Credential, permission and configuration errors are not
 * retried. The workflow lists the non-retryable types where it proxies the activities.
 */
const providerFailureTypes: Record<ProviderErrorKind, string> = {
  'rate-limited': 'ProviderRateLimited',
  authentication: 'ProviderAuthentication',
  permission: 'ProviderPermission',
  'invalid-config': 'ProviderInvalidConfig',
  'limit-reached': 'ProviderLimitReached',
  'not-found': 'ProviderNotFound',
  transient: 'ProviderTransient',
};

export function toActivityFailure(error: unknown): ApplicationFailure {
  if (error instanceof ApplicationFailure) {
    return error;
  }
  if (error instanceof ProviderError) {
    return ApplicationFailure.create({
      message: error.message,
      type: providerFailureTypes[error.kind],
      nonRetryable: !error.retryable,
      nextRetryDelay: error.kind === 'rate-limited' ? error.details.retryAfterMs : undefined,
      details: [{ provider: error.details.provider, operation: error.details.operation, vendorCode: error.details.vendorCode ?? null }],
    });
  }
  if (error instanceof VaultCasMismatchError) {
    return ApplicationFailure.create({ message: error.message, type: 'VaultCasMismatch', nonRetryable: true });
  }
  if (error instanceof VaultError) {
    if (error.statusCode === 403) {
      return ApplicationFailure.create({ message: error.message, type: 'VaultPermission', nonRetryable: true });
    }
    // Vault returns 4xx for a request that is wrong as sent, so only 429 and 5xx can pass on a retry.
    const rejected = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 && error.statusCode !== 429;
    return ApplicationFailure.create({ message: error.message, type: rejected ? 'VaultRequestRejected' : 'VaultError', nonRetryable: rejected });
  }
  // Unknown errors are retried. Only the message is kept: an SDK error object may carry the request.
  const message = error instanceof Error ? error.message : String(error);
  return ApplicationFailure.create({ message, type: 'UnexpectedError' });
}

/** Creates the failure planning raises to stop a rotation; retrying cannot help until a person acts. */
export function rotationRefused(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: 'RotationRefused', nonRetryable: true });
}

/** Runs an activity body and converts whatever it throws. */
export async function withFailureMapping<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toActivityFailure(error);
  }
}

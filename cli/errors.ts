import { ConfigError } from '../shared/config';
import { InventoryError } from '../shared/inventory';
import { PortInUseError, ServiceStartError } from '../shared/local-services';
import { UnknownProviderError } from '../providers/registry';
import { VaultError } from '../shared/vault';

/** Exit codes of every `rotor` command. */
export const exitCodes = {
  ok: 0,
  /** A rotation (or another operation the command waited for) failed. */
  failed: 1,
  /** Bad input, bad configuration, or a request the current state refuses. */
  badInput: 2,
} as const;

/** An error the user can fix by changing the command, the inventory or the environment. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The operation ran and failed; the message describes the failure. */
export class OperationFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OperationFailedError';
  }
}

/** Prints an error for people and returns the exit code it maps to. */
export function reportError(error: unknown): number {
  if (error instanceof OperationFailedError) {
    console.error(error.message);
    return exitCodes.failed;
  }
  if (
    error instanceof UsageError ||
    error instanceof ConfigError ||
    error instanceof InventoryError ||
    error instanceof UnknownProviderError ||
    error instanceof PortInUseError
  ) {
    console.error(error.message);
    return exitCodes.badInput;
  }
  if (error instanceof ServiceStartError || error instanceof VaultError) {
    console.error(error.message);
    return exitCodes.failed;
  }
  console.error(`rotor: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return exitCodes.failed;
}

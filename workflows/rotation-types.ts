/**
 * Types that cross the workflow/activity boundary and land in Temporal history. None of them
 * holds a secret: activities pass key ids and Vault references only.
 */

export type RotationPhase =
  | 'planning'
  | 'creating'
  | 'verifying'
  | 'promoting'
  | 'grace'
  | 'revoking'
  | 'completed'
  | 'rolling-back'
  | 'rolled-back'
  | 'failed';

/** One integration as the rotation needs it: the inventory entry with durations in milliseconds. */
export interface IntegrationSpec {
  id: string;
  provider: string;
  /** Non-secret provider config, already checked against the provider's schema. */
  providerConfig: Record<string, unknown>;
  managementCredentialPath: string;
  vaultPath: string;
  owner?: string;
  policy: {
    rotationPeriodMs?: number;
    gracePeriodMs: number;
    verifyTimeoutMs: number;
    idlePeriodMs?: number;
    maxGraceMs: number;
    clearStaleKeys: boolean;
  };
  restrictions: {
    ipAllowlist: string[];
    scopes: string[];
    expiresAfterMs?: number;
  };
}

export interface RotationRequest {
  integration: IntegrationSpec;
  /** Stop after planning and report what would happen. */
  dryRun: boolean;
  /** Base task queue; provider activities run on its per-provider queue. */
  taskQueue: string;
  /** Starter of the rotation: a user name, `schedule` or `fleet`. */
  requestedBy: string;
}

/** A key id with the provider's data about it; never a secret. */
export interface KeySummary {
  keyId: string;
  status: 'active' | 'inactive';
  createdAt?: string;
  lastUsedAt?: string | null;
  label?: string;
}

export interface RotationPlan {
  /** Version of the consumer path that promotion will check-and-set against; 0 when it does not exist yet. */
  currentVersion: number;
  currentKeyId?: string;
  providerKeys: KeySummary[];
  /** Extra keys planning revokes first to make room under the provider's key limit. */
  staleKeyIds: string[];
  /** Lines of the dry-run report, such as "would create a key for IAM user ci-deployer". */
  steps: string[];
}

export interface PendingKeyReference {
  keyId: string;
  createdAt: string;
  /** KV path of the staged secret, which consumers never read. */
  stagingPath: string;
  stagingVersion: number;
}

export interface RotationState {
  integrationId: string;
  provider: string;
  rotationId: string;
  phase: RotationPhase;
  /** When each phase was entered, ISO 8601. */
  phaseStartedAt: Partial<Record<RotationPhase, string>>;
  dryRun: boolean;
  currentKeyId?: string;
  pendingKeyId?: string;
  /** Version of the consumer path that contains the new key once promoted. */
  promotedVersion?: number;
  graceEndsAt?: string;
  /** Reason grace is still waiting, when it waits past `graceEndsAt` for the previous key to go idle. */
  waitingReason?: string;
  plan?: RotationPlan;
  failure?: { phase: RotationPhase; message: string };
}

export interface RotationResult {
  outcome: 'completed' | 'dry-run' | 'rolled-back';
  state: RotationState;
}

/** Label a new key carries so a retried create can find it. Short and plain: vendors limit label characters. */
export function rotationLabel(rotationId: string): string {
  return `rotor-${rotationId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}`;
}

/**
 * Task queue names, defined once. Workflows and Vault activities run on the base queue. Each
 * provider's activities run on a queue of their own, so the server can rate-limit every
 * vendor's key-management calls separately.
 */
export const defaultTaskQueue = 'rotor';

export function providerTaskQueue(baseTaskQueue: string, provider: string): string {
  return `${baseTaskQueue}-provider-${provider}`;
}

/** Workflow id of an integration's rotations: one id per integration keeps one rotation at a time. */
export function rotationWorkflowId(integrationId: string): string {
  return `rotate-${integrationId}`;
}

/**
 * Workflow id prefix of the runs a Temporal Schedule starts. Temporal appends the scheduled
 * time to it, so each run has its own id and starts the rotation under rotationWorkflowId.
 */
export function scheduledRotationWorkflowId(integrationId: string): string {
  return `scheduled-rotate-${integrationId}`;
}

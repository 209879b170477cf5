import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ParentClosePolicy, log, startChild } from '@temporalio/workflow';
import { rotationSearchAttributes } from '../shared/search-attributes';
import { rotationWorkflowId } from '../shared/task-queues';
import { rotateKey } from './rotate-key';
import type { RotationRequest } from './rotation-types';

export interface ScheduledRotationResult {
  outcome: 'started' | 'skipped';
  rotationWorkflowId: string;
  rotationRunId?: string;
  reason?: string;
}

/**
 * Starts one integration's rotation for a Temporal Schedule. Temporal gives each scheduled run
 * an id with the scheduled time appended, so this workflow starts the rotation itself under
 * the integration's own workflow id: a scheduled rotation then holds the same one-at-a-time
 * lock as `rotor rotate` and shows in `rotor status`. It returns once the rotation has started.
 */
export async function scheduledRotation(request: RotationRequest): Promise<ScheduledRotationResult> {
  const workflowId = rotationWorkflowId(request.integration.id);
  try {
    const rotation = await startChild(rotateKey, {
      workflowId,
      args: [request],
      taskQueue: request.taskQueue,
      // The rotation outlives this short workflow, which ends as soon as the rotation starts.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      typedSearchAttributes: rotationSearchAttributes(request.integration),
      staticSummary: `Scheduled rotation of ${request.integration.id} (${request.integration.provider}) into ${request.integration.vaultPath}`,
    });
    log.info('scheduled rotation started', { integration: request.integration.id, rotationWorkflowId: workflowId, rotationRunId: rotation.firstExecutionRunId });
    return { outcome: 'started', rotationWorkflowId: workflowId, rotationRunId: rotation.firstExecutionRunId };
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) {
      throw error;
    }
    const reason = `a rotation of ${request.integration.id} is already running as ${workflowId}; this scheduled run is skipped`;
    log.warn('scheduled rotation skipped', { integration: request.integration.id, rotationWorkflowId: workflowId, reason });
    return { outcome: 'skipped', rotationWorkflowId: workflowId, reason };
  }
}

import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { rotationSearchAttributes } from '../shared/search-attributes';
import { rotationWorkflowId } from '../shared/task-queues';
import { rotateKey, stateQuery } from '../workflows/rotate-key';
import type { IntegrationSpec, RotationRequest } from '../workflows/rotation-types';

/** A second rotation of an integration was refused because one is running. */
export class RotationAlreadyRunningError extends Error {
  constructor(
    readonly integrationId: string,
    readonly workflowId: string,
    readonly phase: string,
  ) {
    super(
      `A rotation of ${integrationId} is already running (workflow ${workflowId}, phase ${phase}); Rotor runs one rotation per integration at a time. ` +
        `Follow it with \`rotor status ${integrationId}\`${phase === 'grace' ? `, or end its grace with \`rotor finish-grace ${integrationId}\`` : ''}.`,
    );
    this.name = 'RotationAlreadyRunningError';
  }
}

export interface StartRotationOptions {
  taskQueue: string;
  dryRun: boolean;
  requestedBy: string;
}

/**
 * Returns the workflow start options that every rotation of an integration shares, whether
 * `rotor rotate` or a Temporal Schedule starts it: workflow id, task queue, input, search
 * attributes and summary.
 */
export function rotationStartOptions(integration: IntegrationSpec, options: StartRotationOptions) {
  const request: RotationRequest = { integration, dryRun: options.dryRun, taskQueue: options.taskQueue, requestedBy: options.requestedBy };
  return {
    workflowId: rotationWorkflowId(integration.id),
    taskQueue: options.taskQueue,
    args: [request] as [RotationRequest],
    typedSearchAttributes: rotationSearchAttributes(integration),
    staticSummary: `${options.dryRun ? 'Dry run: rotate' : 'Rotate'} ${integration.id} (${integration.provider}) into ${integration.vaultPath}`,
  };
}

/**
 * Starts the rotation workflow of one integration. The workflow id comes from the integration
 * id, and a start while a rotation of it runs is refused with RotationAlreadyRunningError.
 */
export async function startRotation(
  client: Client,
  integration: IntegrationSpec,
  options: StartRotationOptions,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof rotateKey>> {
  const startOptions = rotationStartOptions(integration, options);
  try {
    return await client.workflow.start(rotateKey, {
      ...startOptions,
      // A finished rotation may be followed by a new one under the same id; a running one may not.
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) {
      throw error;
    }
    const phase = await client.workflow
      .getHandle(startOptions.workflowId)
      .query(stateQuery)
      .then((state) => state.phase as string)
      .catch(() => 'unknown');
    throw new RotationAlreadyRunningError(integration.id, startOptions.workflowId, phase);
  }
}

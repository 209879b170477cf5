import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { integrationAttribute, phaseAttribute, providerAttribute } from '../shared/search-attributes';
import { rotationWorkflowId } from '../shared/task-queues';
import { rotateKey, stateQuery } from '../workflows/rotate-key';
import type { IntegrationSpec } from '../workflows/rotation-types';

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
 * Starts the rotation workflow of one integration. The workflow id comes from the integration
 * id, and a start while a rotation of it runs is refused with RotationAlreadyRunningError.
 */
export async function startRotation(
  client: Client,
  integration: IntegrationSpec,
  options: StartRotationOptions,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof rotateKey>> {
  const workflowId = rotationWorkflowId(integration.id);
  try {
    return await client.workflow.start(rotateKey, {
      taskQueue: options.taskQueue,
      workflowId,
      args: [{ integration, dryRun: options.dryRun, taskQueue: options.taskQueue, requestedBy: options.requestedBy }],
      // A finished rotation may be followed by a new one under the same id; a running one may not.
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      typedSearchAttributes: [
        { key: integrationAttribute, value: integration.id },
        { key: providerAttribute, value: integration.provider },
        { key: phaseAttribute, value: 'planning' },
      ],
      staticSummary: `${options.dryRun ? 'Dry run: rotate' : 'Rotate'} ${integration.id} (${integration.provider}) into ${integration.vaultPath}`,
    });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) {
      throw error;
    }
    const phase = await client.workflow
      .getHandle(workflowId)
      .query(stateQuery)
      .then((state) => state.phase as string)
      .catch(() => 'unknown');
    throw new RotationAlreadyRunningError(integration.id, workflowId, phase);
  }
}

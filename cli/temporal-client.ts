import { Client, Connection } from '@temporalio/client';
import type { TemporalConfig } from '../shared/config';
import { temporalConnectionOptions } from '../shared/temporal-connection';
import { OperationFailedError } from './errors';

/** Connects a Temporal client, turning an unreachable server into a message that names what to check. */
export async function connectClient(config: TemporalConfig): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...temporalConnectionOptions(config), connectTimeout: 5000 });
  } catch (error) {
    throw new OperationFailedError(
      `Cannot reach Temporal at ${config.address}: ${(error as Error).message}. ` +
        'Start the local stack with `npm run dev`, or set TEMPORAL_ADDRESS to your Temporal frontend.',
    );
  }
  return new Client({ connection, namespace: config.namespace });
}

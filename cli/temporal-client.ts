import fs from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import type { TemporalConfig } from '../shared/config';
import { OperationFailedError } from './errors';

/** Connects a Temporal client, turning an unreachable server into a message that names what to check. */
export async function connectClient(config: TemporalConfig): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: config.address,
      connectTimeout: 5000,
      tls: config.tls
        ? {
            serverNameOverride: config.tls.serverName,
            serverRootCACertificate: config.tls.caPath ? fs.readFileSync(config.tls.caPath) : undefined,
            clientCertPair:
              config.tls.certPath && config.tls.keyPath
                ? { crt: fs.readFileSync(config.tls.certPath), key: fs.readFileSync(config.tls.keyPath) }
                : undefined,
          }
        : undefined,
      apiKey: config.apiKey,
    });
  } catch (error) {
    throw new OperationFailedError(
      `Cannot reach Temporal at ${config.address}: ${(error as Error).message}. ` +
        'Start the local stack with `npm run dev`, or set TEMPORAL_ADDRESS to your Temporal frontend.',
    );
  }
  return new Client({ connection, namespace: config.namespace });
}

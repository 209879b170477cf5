import fs from 'node:fs';
import type { TemporalConfig } from './config';

/** Builds the connection options the Temporal client and the worker share: address, TLS files and API key. */
export function temporalConnectionOptions(config: TemporalConfig) {
  const tls = config.tls
    ? {
        serverNameOverride: config.tls.serverName,
        serverRootCACertificate: config.tls.caPath ? fs.readFileSync(config.tls.caPath) : undefined,
        clientCertPair:
          config.tls.certPath && config.tls.keyPath
            ? { crt: fs.readFileSync(config.tls.certPath), key: fs.readFileSync(config.tls.keyPath) }
            : undefined,
      }
    : undefined;
  return { address: config.address, tls, apiKey: config.apiKey };
}

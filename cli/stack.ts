import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { assertPortFree, startTemporalDevServer, startVaultDevServer, type RunningTemporal, type RunningVault } from '../shared/local-services';
import { repositoryRoot, resolveToolPaths } from '../shared/tools';
import { UsageError } from './errors';

export interface StackOptions {
  temporalPort: number;
  /** Port of the Temporal UI; no UI when absent. */
  uiPort?: number;
  vaultPort: number;
  /** Folder for the SQLite history, service logs and the dev environment file. */
  dataDirectory: string;
  /** Keep workflow history in a SQLite file across restarts; in memory otherwise. */
  persistHistory: boolean;
}

export interface LocalStack {
  temporal: RunningTemporal;
  vault: RunningVault;
  vaultToken: string;
  /** Environment that points Rotor's commands at this stack. */
  environment: Record<string, string>;
  stop(): Promise<void>;
}

/** Returns the data folder of `rotor dev` and the demo: .rotor/ in the repository, ignored by git. */
export function defaultDataDirectory(): string {
  return path.join(repositoryRoot, '.rotor');
}

/** Starts a Temporal dev server and a Vault dev server on loopback, failing fast on a taken port. */
export async function startLocalStack(options: StackOptions): Promise<LocalStack> {
  let tools;
  try {
    tools = resolveToolPaths();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }

  const ports = [options.temporalPort, options.uiPort, options.vaultPort].filter((port) => port !== undefined);
  if (new Set(ports).size !== ports.length) {
    throw new UsageError(`The Temporal, UI and Vault ports must differ; got ${ports.join(', ')}. Choose distinct --temporal-port, --ui-port and --vault-port values.`);
  }
  await assertPortFree(options.temporalPort, 'the Temporal dev server', 'choose another with --temporal-port');
  if (options.uiPort !== undefined) {
    await assertPortFree(options.uiPort, 'the Temporal UI', 'choose another with --ui-port');
  }
  await assertPortFree(options.vaultPort, 'the Vault dev server', 'choose another with --vault-port');

  const logs = path.join(options.dataDirectory, 'logs');
  fs.mkdirSync(logs, { recursive: true });
  const vaultToken = `dev-${crypto.randomBytes(12).toString('hex')}`;

  // Vault first: the Temporal dev server binds random ports of its own that could take Vault's.
  const vault = await startVaultDevServer({ binary: tools.vault, port: options.vaultPort, rootToken: vaultToken, logFile: path.join(logs, 'vault.log') });
  let temporal: RunningTemporal;
  try {
    temporal = await startTemporalDevServer({
      binary: tools.temporal,
      port: options.temporalPort,
      uiPort: options.uiPort,
      databaseFile: options.persistHistory ? path.join(options.dataDirectory, 'temporal.sqlite') : undefined,
      logFile: path.join(logs, 'temporal.log'),
    });
  } catch (error) {
    await vault.stop();
    throw error;
  }

  const environment: Record<string, string> = {
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: 'default',
    VAULT_ADDR: vault.address,
    VAULT_TOKEN: vaultToken,
  };
  if (temporal.uiUrl) {
    environment.TEMPORAL_UI_URL = temporal.uiUrl;
  }

  return {
    temporal,
    vault,
    vaultToken,
    environment,
    stop: async () => {
      await Promise.all([vault.stop(), temporal.stop()]);
    },
  };
}

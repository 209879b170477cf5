import fs from 'node:fs';
import path from 'node:path';
import { loadWorkerConfig } from '../../shared/config';
import { createLogger } from '../../shared/logger';
import { assertPortFree, findFreePort, retryWhenPortTaken } from '../../shared/local-services';
import { repositoryRoot, resolveToolPaths } from '../../shared/tools';
import { VaultStore } from '../../shared/vault';
import { motoRejectionOf, seedAwsAccount, startMoto, type AwsAccessKey } from '../../test/emulators/moto';
import { installTemporalRuntime } from '../../worker/logging';
import { createRotorWorker } from '../../worker/worker';
import { OperationFailedError, UsageError } from '../errors';
import { loadCheckedInventory, toIntegrationSpec } from '../integrations';
import { startLocalStack, type LocalStack } from '../stack';
import { startRotation } from '../start-rotation';
import { followRotation } from './rotation';
import { connectClient } from '../temporal-client';

export interface DemoOptions {
  file: string;
  dataDir: string;
}

/**
 * Runs `rotor demo`, the main job end to end on emulators. It starts Temporal, Vault, the
 * emulators and a worker, and seeds each demo integration's current key and management
 * credential. Then it rotates every integration and prints the old and new key ids, the Vault
 * path and version, and whether the emulator now rejects the old key. At the end it stops everything.
 */
export async function runDemoCommand(options: DemoOptions): Promise<number> {
  const inventory = loadCheckedInventory(options.file);
  const integrations = inventory.integrations.map(toIntegrationSpec);
  const unsupported = integrations.filter((integration) => integration.provider !== 'aws-iam');
  if (unsupported.length > 0) {
    throw new UsageError(`The demo can seed only aws-iam integrations on moto; ${unsupported.map((integration) => integration.id).join(', ')} use other providers.`);
  }
  const motoPort = motoPortOf(integrations.map((integration) => String(integration.providerConfig.endpoint ?? '')));
  await assertPortFree(motoPort, 'the moto AWS emulator', `change the endpoint port in ${options.file}`);

  const logs = path.join(options.dataDir, 'logs');
  fs.mkdirSync(logs, { recursive: true });
  console.log('Starting Temporal, Vault and the moto AWS emulator…');
  const moto = await startMoto({ binary: resolveToolPaths().motoServer, port: motoPort, logFile: path.join(logs, 'moto.log') });
  let stack: LocalStack;
  try {
    stack = await retryWhenPortTaken(async () =>
      startLocalStack({ temporalPort: await findFreePort(), vaultPort: await findFreePort(), dataDirectory: options.dataDir, persistHistory: false }),
    );
  } catch (error) {
    await moto.stop();
    throw error;
  }
  let stopWorker: (() => Promise<void>) | undefined;
  try {
    const environment = { ...process.env, ...stack.environment };
    const config = loadWorkerConfig(environment);
    const vault = await VaultStore.connect(config.vault);

    const currentKeys = new Map<string, AwsAccessKey>();
    for (const integration of integrations) {
      const account = await seedAwsAccount(moto.url, { adminUser: `rotor-admin-${integration.id}`, appUser: String(integration.providerConfig.user_name) });
      await vault.writeSecret(integration.managementCredentialPath, { ...account.managementCredential });
      await vault.writeSecret(integration.vaultPath, { ...account.currentKey }, { cas: 0 });
      currentKeys.set(integration.id, account.currentKey);
      console.log(`Seeded ${integration.id}: IAM user ${account.appUserName} with key ${account.currentKey.access_key_id}, stored at secret/${integration.vaultPath}`);
    }

    const workerLog = path.join(logs, 'demo-worker.log');
    const logger = createLogger({ level: 'info', destination: fs.createWriteStream(workerLog, { flags: 'a' }), bindings: { component: 'worker' } });
    installTemporalRuntime(logger);
    const worker = await createRotorWorker({ config, logger });
    const running = worker.run();
    stopWorker = async () => {
      await worker.shutdown();
      await running;
    };

    const client = await connectClient(config.temporal);
    let failures = 0;
    for (const integration of integrations) {
      console.log('');
      console.log(`Rotating ${integration.id} (${integration.provider}):`);
      const handle = await startRotation(client, integration, { taskQueue: config.temporal.taskQueue, dryRun: false, requestedBy: 'demo' });
      try {
        await followRotation(handle, integration.id);
      } catch (error) {
        failures += 1;
        console.error((error as Error).message);
        continue;
      }

      const latest = await vault.readSecret(integration.vaultPath);
      const oldKey = currentKeys.get(integration.id) as AwsAccessKey;
      const rejection = await motoRejectionOf(moto.url, oldKey);
      console.log(`  Vault: secret/${integration.vaultPath} is now version ${latest?.version}, holding key ${latest?.data.access_key_id}`);
      console.log(
        rejection === null
          ? `  The emulator still accepts the old key ${oldKey.access_key_id}: revocation did not take effect.`
          : `  The emulator now rejects the old key ${oldKey.access_key_id} (${rejection}).`,
      );
      if (rejection === null) {
        failures += 1;
      }
    }
    await client.connection.close();

    console.log('');
    console.log(`Worker log: ${path.relative(process.cwd(), workerLog) || workerLog}`);
    if (failures > 0) {
      throw new OperationFailedError(`${failures} of ${integrations.length} demo rotations failed.`);
    }
    console.log(`Demo finished: ${integrations.length} rotation${integrations.length === 1 ? '' : 's'} completed.`);
    return 0;
  } finally {
    await stopWorker?.();
    await moto.stop();
    await stack.stop();
  }
}

/** All demo aws-iam integrations share one moto server, so their endpoints must agree. */
function motoPortOf(endpoints: string[]): number {
  const ports = new Set(endpoints.map((endpoint) => {
    const url = new URL(endpoint);
    if (!['127.0.0.1', 'localhost'].includes(url.hostname)) {
      throw new UsageError(`The demo runs moto on 127.0.0.1 only, but an integration's endpoint is ${endpoint}.`);
    }
    return Number(url.port || 80);
  }));
  if (ports.size !== 1) {
    throw new UsageError(`The demo starts one moto server, but the aws-iam endpoints name ${ports.size} different ports.`);
  }
  return [...ports][0];
}

export const defaultDemoInventory = path.join(repositoryRoot, 'examples', 'inventory.yaml');

import fs from 'node:fs';
import path from 'node:path';
import { loadWorkerConfig } from '../../shared/config';
import { createLogger } from '../../shared/logger';
import { findFreePort, retryWhenPortTaken } from '../../shared/local-services';
import { repositoryRoot } from '../../shared/tools';
import { VaultStore } from '../../shared/vault';
import { installTemporalRuntime } from '../../worker/logging';
import { createRotorWorker } from '../../worker/worker';
import { oldKeyRejection, startDemoEmulators, type SeededIntegration } from '../demo-emulators';
import { OperationFailedError } from '../errors';
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
  const logs = path.join(options.dataDir, 'logs');
  fs.mkdirSync(logs, { recursive: true });

  console.log(`Starting Temporal, Vault and the emulators for ${[...new Set(integrations.map((integration) => integration.provider))].join(', ')}…`);
  const emulators = await startDemoEmulators(integrations, logs);
  let stack: LocalStack;
  try {
    stack = await retryWhenPortTaken(async () =>
      startLocalStack({ temporalPort: await findFreePort(), vaultPort: await findFreePort(), dataDirectory: options.dataDir, persistHistory: false }),
    );
  } catch (error) {
    await emulators.stop();
    throw error;
  }
  let stopWorker: (() => Promise<void>) | undefined;
  try {
    const environment = { ...process.env, ...stack.environment };
    const config = loadWorkerConfig(environment);
    const vault = await VaultStore.connect(config.vault);

    const seededIntegrations: SeededIntegration[] = [];
    for (const integration of integrations) {
      const seeded = await emulators.seed(integration);
      await vault.writeSecret(integration.managementCredentialPath, seeded.managementCredential);
      await vault.writeSecret(integration.vaultPath, seeded.currentSecret, { cas: 0 });
      seededIntegrations.push(seeded);
      console.log(`Seeded ${integration.id}: ${seeded.description} with key ${seeded.currentKeyId}, stored at secret/${integration.vaultPath}`);
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
    for (const seeded of seededIntegrations) {
      const { integration } = seeded;
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
      const newKeyId = (await vault.readMetadata(integration.vaultPath))?.customMetadata.key_id;
      console.log(`  Vault: secret/${integration.vaultPath} is now version ${latest?.version}, holding key ${newKeyId}`);
      let rejection: string | null;
      try {
        rejection = await oldKeyRejection(seeded);
      } catch (error) {
        failures += 1;
        console.error(`  Could not check whether the emulator rejects the old key ${seeded.currentKeyId}: ${(error as Error).message}`);
        continue;
      }
      console.log(
        rejection === null
          ? `  The emulator still accepts the old key ${seeded.currentKeyId}: revocation did not take effect.`
          : `  The emulator now rejects the old key ${seeded.currentKeyId} (${rejection}).`,
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
    await emulators.stop();
    await stack.stop();
  }
}

export const defaultDemoInventory = path.join(repositoryRoot, 'examples', 'inventory.yaml');

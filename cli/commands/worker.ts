import { loadWorkerConfig } from '../../shared/config';
import { rateLimitOverrides } from '../../shared/inventory';
import { createLogger } from '../../shared/logger';
import { loadCheckedInventory } from '../integrations';
import { installTemporalRuntime } from '../../worker/logging';
import { createRotorWorker } from '../../worker/worker';

/**
 * Runs `rotor worker` until SIGINT or SIGTERM, then shuts down gracefully. With an inventory
 * file, its `providers:` section overrides each provider task queue's rate limit.
 */
export async function runWorkerCommand(options: { file?: string }): Promise<number> {
  const config = loadWorkerConfig();
  const rateLimits = options.file ? rateLimitOverrides(loadCheckedInventory(options.file)) : {};
  const logger = createLogger({ level: config.logLevel, bindings: { component: 'worker' } });
  installTemporalRuntime(logger);

  const worker = await createRotorWorker({ config, logger, rateLimits });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'shutdown signal received');
      void worker.shutdown();
    });
  }
  await worker.run();
  return 0;
}

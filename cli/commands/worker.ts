import { loadWorkerConfig } from '../../shared/config';
import { createLogger } from '../../shared/logger';
import { installTemporalRuntime } from '../../worker/logging';
import { createRotorWorker } from '../../worker/worker';

/** `rotor worker`: runs the worker until SIGINT or SIGTERM, then shuts down gracefully. */
export async function runWorkerCommand(): Promise<number> {
  const config = loadWorkerConfig();
  const logger = createLogger({ level: config.logLevel, bindings: { component: 'worker' } });
  installTemporalRuntime(logger);

  const worker = await createRotorWorker({ config, logger });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'shutdown signal received');
      void worker.shutdown();
    });
  }
  await worker.run();
  return 0;
}

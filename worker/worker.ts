import { NativeConnection, Worker, type ActivityInterceptorsFactory, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities } from '../activities';
import { getProvider, listProviders } from '../providers/registry';
import type { TemporalConfig, WorkerConfig } from '../shared/config';
import type { Logger } from '../shared/logger';
import { manualProviderName } from '../shared/inventory';
import { providerTaskQueue } from '../shared/task-queues';
import { temporalConnectionOptions } from '../shared/temporal-connection';
import { VaultStore } from '../shared/vault';

/** An activity the worker is running, recorded so the shutdown log can list unfinished ones. */
interface RunningActivity {
  activityType: string;
  workflowId: string;
  attempt: number;
  startedAt: string;
}

export interface RotorWorker {
  /** Resolves when every task queue's worker has stopped. */
  run(): Promise<void>;
  /**
   * Stops polling, gives running activities the configured grace to finish, then cancels them.
   * Logs what was still running.
   */
  shutdown(): Promise<void>;
  taskQueues: string[];
}

export interface RotorWorkerOptions {
  config: WorkerConfig;
  logger: Logger;
  /** A prebuilt workflow bundle; tests pass one to skip bundling per worker. */
  workflowBundle?: WorkflowBundleOption;
  /** Per-provider override of the task queue's activities-per-second limit. */
  rateLimits?: Record<string, number>;
}

export async function connectToTemporal(config: TemporalConfig): Promise<NativeConnection> {
  return NativeConnection.connect(temporalConnectionOptions(config));
}

/**
 * Creates one Temporal worker for the base task queue (workflows and Vault activities) and one
 * per provider, each provider queue rate-limited server-side to the vendor's known limit.
 */
export async function createRotorWorker(options: RotorWorkerOptions): Promise<RotorWorker> {
  const { config, logger } = options;
  const vault = await VaultStore.connect(config.vault);
  await vault.checkAccess();
  const activities = createActivities({ vault, stagingPrefix: config.vault.stagingPrefix, logger, getProvider });
  const connection = await connectToTemporal(config.temporal);

  const running = new Map<string, RunningActivity>();
  const trackRunningActivities: ActivityInterceptorsFactory = (context) => ({
    inbound: {
      execute: async (input, next) => {
        const { info } = context;
        const workflowId = info.workflowExecution?.workflowId ?? '(none)';
        const key = `${workflowId}/${info.activityId}`;
        running.set(key, { activityType: info.activityType, workflowId, attempt: info.attempt, startedAt: new Date().toISOString() });
        try {
          return await next(input);
        } finally {
          running.delete(key);
        }
      },
    },
  });
  const interceptors = { activity: [trackRunningActivities] };

  const common = {
    connection,
    namespace: config.temporal.namespace,
    activities,
    interceptors,
    shutdownGraceTime: config.shutdownGraceMs,
    // Bounds shutdown even when an activity ignores its cancellation.
    shutdownForceTime: config.shutdownGraceMs + 10_000,
  };
  const workflowSource = options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath: require.resolve('../workflows') };

  const workers: Worker[] = [await Worker.create({ ...common, ...workflowSource, taskQueue: config.temporal.taskQueue })];
  const providerRateLimits: Record<string, number> = {};
  // Manual integrations never run activities, so their provider gets no task queue.
  for (const provider of listProviders().filter((candidate) => candidate.name !== manualProviderName)) {
    const limit = options.rateLimits?.[provider.name] ?? provider.capabilities.defaultRateLimitPerSecond;
    providerRateLimits[providerTaskQueue(config.temporal.taskQueue, provider.name)] = limit;
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: providerTaskQueue(config.temporal.taskQueue, provider.name),
        maxTaskQueueActivitiesPerSecond: limit,
      }),
    );
  }
  const taskQueues = workers.map((worker) => worker.options.taskQueue);

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ runningActivities: [...running.values()], graceMs: config.shutdownGraceMs }, 'worker shutting down; running activities get the grace period to finish');
      const reportTimer = setTimeout(() => {
        if (running.size > 0) {
          logger.warn({ runningActivities: [...running.values()] }, 'grace period over; these activities are cancelled and Temporal retries them on another worker');
        }
      }, config.shutdownGraceMs);
      reportTimer.unref();
      for (const worker of workers) {
        if (worker.getState() === 'RUNNING') {
          worker.shutdown();
        }
      }
    })();
    return stopping;
  };

  const run = async (): Promise<void> => {
    logger.info({ taskQueues, providerRateLimits, namespace: config.temporal.namespace, address: config.temporal.address }, 'worker started');
    try {
      await Promise.all(workers.map((worker) => worker.run()));
    } finally {
      await connection.close();
      logger.info({ unfinishedActivities: [...running.values()] }, 'worker stopped');
    }
  };

  return { run, shutdown, taskQueues };
}

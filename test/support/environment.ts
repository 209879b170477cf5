import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, type WorkflowBundleOption } from '@temporalio/worker';
import { loadWorkerConfig, type WorkerConfig } from '../../shared/config';
import { createLogger, type Logger } from '../../shared/logger';
import { VaultStore } from '../../shared/vault';
import { installTemporalRuntime } from '../../worker/logging';
import { createRotorWorker, type RotorWorker } from '../../worker/worker';

/**
 * What every test file shares: the services the test harness started (their addresses come in
 * the environment), a log capture, the workflow bundle and a worker factory.
 */

const required = ['TEMPORAL_ADDRESS', 'VAULT_ADDR', 'VAULT_TOKEN', 'ROTOR_TEST_MOTO_URL', 'ROTOR_TEST_WORK_DIR'];

export function testEnvironment(): Record<string, string> {
  const missing = required.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(`${missing.join(', ')} not set: run the tests with \`npm test\`, which starts Temporal, Vault and moto and sets them.`);
  }
  return Object.fromEntries(required.map((name) => [name, process.env[name] as string]));
}

/** Collects every log line written during a test file, to search them for secrets. */
export class LogCapture {
  private readonly chunks: string[] = [];
  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      this.chunks.push(chunk.toString('utf8'));
      callback();
    },
  });

  text(): string {
    return this.chunks.join('');
  }

  /** Parsed JSON log lines. */
  lines(): Array<Record<string, unknown>> {
    return this.text()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

let runtimeCapture: { capture: LogCapture; logger: Logger } | undefined;

/** Installs the Temporal runtime once per test process with a logger that writes into a capture. */
export function capturedRuntimeLogger(): { capture: LogCapture; logger: Logger } {
  if (!runtimeCapture) {
    const capture = new LogCapture();
    const logger = createLogger({ level: 'debug', destination: capture.stream, bindings: { component: 'test-worker' } });
    installTemporalRuntime(logger);
    runtimeCapture = { capture, logger };
  }
  return runtimeCapture;
}

export function testWorkerConfig(taskQueue: string): WorkerConfig {
  testEnvironment();
  const config = loadWorkerConfig({ ...process.env, ROTOR_TASK_QUEUE: taskQueue, ROTOR_SHUTDOWN_GRACE: '2s' });
  return config;
}

/** Bundles the workflows once per test run and shares the file between test processes. */
export async function sharedWorkflowBundle(): Promise<WorkflowBundleOption> {
  const file = path.join(testEnvironment().ROTOR_TEST_WORK_DIR, 'workflow-bundle.js');
  if (!fs.existsSync(file)) {
    const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: silentLogger });
    fs.writeFileSync(`${file}.partial`, code);
    fs.renameSync(`${file}.partial`, file);
  }
  return { codePath: file };
}

export interface RunningTestWorker {
  worker: RotorWorker;
  stop(): Promise<void>;
}

/** Starts Rotor's real worker in this process on its own task queue. */
export async function startTestWorker(taskQueue: string, options: { rateLimits?: Record<string, number> } = {}): Promise<RunningTestWorker> {
  const { logger } = capturedRuntimeLogger();
  const worker = await createRotorWorker({
    config: testWorkerConfig(taskQueue),
    logger,
    workflowBundle: await sharedWorkflowBundle(),
    rateLimits: options.rateLimits,
  });
  const running = worker.run();
  return {
    worker,
    stop: async () => {
      await worker.shutdown();
      await running;
    },
  };
}

export async function testClient(): Promise<Client> {
  const connection = await Connection.connect({ address: testEnvironment().TEMPORAL_ADDRESS });
  return new Client({ connection, namespace: 'default' });
}

export async function testVault(): Promise<VaultStore> {
  return VaultStore.connect(testWorkerConfig('unused').vault);
}

/** Returns a short unique suffix for ids, task queues and Vault paths, so tests never share state. */
export function uniqueSuffix(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

const silentLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { rotorSearchAttributes } from './search-attributes';

/**
 * Starts and stops the local services of `rotor dev`, the demo and the tests: the Temporal
 * dev server and a Vault dev server, each a child process bound to loopback, logging to a file.
 */

export class PortInUseError extends Error {
  constructor(readonly port: number, what: string, hint: string) {
    super(`Port ${port} on 127.0.0.1 is already in use, so ${what} cannot start there. Stop whatever listens on it, or ${hint}.`);
    this.name = 'PortInUseError';
  }
}

export class ServiceStartError extends Error {
  constructor(name: string, reason: string, logFile: string) {
    super(`${name} did not start: ${reason}. Last lines of ${logFile}:\n${lastLines(logFile, 15)}`);
    this.name = 'ServiceStartError';
  }
}

export interface LocalService {
  name: string;
  pid: number;
  logFile: string;
  /** Sends SIGTERM, then SIGKILL after the timeout, and resolves when the process has exited. */
  stop(timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (or signal name) when the process ends for any reason. */
  exited: Promise<number | string>;
}

/** Asks the kernel for a free loopback port. Another process may take it before it is used. */
export async function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs a start-up again, up to `attempts` times, when it failed because another process took
 * a port picked for it. Ports are picked free, but free is only true until someone binds them:
 * the Temporal dev server binds random ports of its own, and Vault binds its port + 1 too.
 */
export async function retryWhenPortTaken<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await start();
    } catch (error) {
      const taken = error instanceof ServiceStartError && /address already in use/.test(error.message);
      if (!taken || attempt >= attempts) {
        throw error;
      }
    }
  }
}

/** Starts a service on a port picked just before the start; see retryWhenPortTaken. Start the Temporal dev server last. */
export async function startOnFreePort<T>(start: (port: number) => Promise<T>, attempts = 3): Promise<T> {
  return retryWhenPortTaken(async () => start(await findFreePort()), attempts);
}

/** Throws PortInUseError when something already listens on 127.0.0.1:port. */
export async function assertPortFree(port: number, what: string, hint: string): Promise<void> {
  const free = await new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
  if (!free) {
    throw new PortInUseError(port, what, hint);
  }
}

/** Spawns a long-running process with its output in a log file. */
export function spawnService(name: string, command: string, args: string[], options: { logFile: string; env?: NodeJS.ProcessEnv }): LocalService {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
  const log = fs.openSync(options.logFile, 'a');
  const child: ChildProcess = spawn(command, args, {
    stdio: ['ignore', log, log],
    env: options.env ?? process.env,
  });
  fs.closeSync(log);

  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (error) => resolve(`spawn error: ${error.message}`));
  });

  const stop = async (timeoutMs = 10_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    child.kill('SIGTERM');
    const outcome = await Promise.race([exited, delay(timeoutMs).then(() => 'timeout' as const)]);
    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  };

  return { name, pid: child.pid ?? -1, logFile: options.logFile, stop, exited };
}

export interface TemporalDevServerOptions {
  binary: string;
  port: number;
  /** Port of the Temporal UI; the UI is off when absent. */
  uiPort?: number;
  /** SQLite file that keeps workflow history across restarts; in memory when absent. */
  databaseFile?: string;
  logFile: string;
}

export interface RunningTemporal extends LocalService {
  address: string;
  uiUrl?: string;
}

/** Starts `temporal server start-dev` on loopback with Rotor's search attributes and waits until it serves. */
export async function startTemporalDevServer(options: TemporalDevServerOptions): Promise<RunningTemporal> {
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(options.port), '--log-format', 'json', '--log-level', 'warn'];
  if (options.uiPort === undefined) {
    args.push('--headless');
  } else {
    args.push('--ui-port', String(options.uiPort));
  }
  if (options.databaseFile) {
    fs.mkdirSync(path.dirname(options.databaseFile), { recursive: true });
    args.push('--db-filename', options.databaseFile);
  }
  for (const attribute of rotorSearchAttributes) {
    args.push('--search-attribute', `${attribute.name}=Keyword`);
  }

  const service = spawnService('Temporal dev server', options.binary, args, { logFile: options.logFile });
  const address = `127.0.0.1:${options.port}`;
  const uiUrl = options.uiPort === undefined ? undefined : `http://127.0.0.1:${options.uiPort}`;
  try {
    await waitUntilReady(service, 60_000, async () => {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.describeNamespace({ namespace: 'default' });
      } finally {
        await connection.close();
      }
    });
    if (uiUrl) {
      await waitUntilReady(service, 30_000, async () => {
        const response = await fetch(uiUrl);
        if (!response.ok) {
          throw new Error(`HTTP ${response.status}`);
        }
      });
    }
  } catch (error) {
    await service.stop();
    throw error;
  }
  return { ...service, address, uiUrl };
}

export interface VaultDevServerOptions {
  binary: string;
  port: number;
  rootToken: string;
  logFile: string;
}

export interface RunningVault extends LocalService {
  address: string;
}

/** Starts `vault server -dev` on loopback (in memory, KV v2 at secret/) and waits until it is unsealed. */
export async function startVaultDevServer(options: VaultDevServerOptions): Promise<RunningVault> {
  const address = `http://127.0.0.1:${options.port}`;
  const service = spawnService(
    'Vault dev server',
    options.binary,
    ['server', '-dev', `-dev-listen-address=127.0.0.1:${options.port}`, `-dev-root-token-id=${options.rootToken}`, '-dev-no-store-token'],
    // The Vault CLI inside the server process would otherwise read VAULT_ADDR and VAULT_TOKEN meant for Rotor.
    { logFile: options.logFile, env: { PATH: process.env.PATH, HOME: process.env.HOME } },
  );
  try {
    await waitUntilReady(service, 30_000, async () => {
      const response = await fetch(`${address}/v1/sys/health`);
      if (response.status !== 200) {
        throw new Error(`HTTP ${response.status}`);
      }
    });
  } catch (error) {
    await service.stop();
    throw error;
  }
  return { ...service, address };
}

/** Retries a probe until it passes, the deadline passes, or the process exits. */
export async function waitUntilReady(service: LocalService, timeoutMs: number, probe: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitStatus: number | string | undefined;
  void service.exited.then((status) => {
    exitStatus = status;
  });
  let lastError = 'no response yet';
  while (Date.now() < deadline) {
    if (exitStatus !== undefined) {
      throw new ServiceStartError(service.name, `the process exited with ${exitStatus}`, service.logFile);
    }
    try {
      await probe();
      return;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    await delay(250);
  }
  throw new ServiceStartError(service.name, `not ready after ${timeoutMs / 1000} s (last probe: ${lastError})`, service.logFile);
}

function lastLines(file: string, count: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '(no log)';
  }
}

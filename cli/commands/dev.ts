import { spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import path from 'node:path';
import { repositoryRoot } from '../../shared/tools';
import { startLocalStack, type LocalStack } from '../stack';

export interface DevOptions {
  temporalPort: number;
  uiPort: number;
  vaultPort: number;
  dataDir: string;
}

/**
 * `rotor dev`: the Temporal dev server with its UI, a Vault dev server and a Rotor worker, until
 * Ctrl-C. Workflow history survives restarts in .rotor/temporal.sqlite; Vault's dev mode keeps
 * secrets in memory only.
 */
export async function runDevCommand(options: DevOptions): Promise<number> {
  console.log('Starting the Temporal dev server and Vault…');
  const stack = await startLocalStack({
    temporalPort: options.temporalPort,
    uiPort: options.uiPort,
    vaultPort: options.vaultPort,
    dataDirectory: options.dataDir,
    persistHistory: true,
  });

  const environmentFile = path.join(options.dataDir, 'dev.env');
  fs.writeFileSync(environmentFile, Object.entries(stack.environment).map(([name, value]) => `export ${name}=${value}\n`).join(''), { mode: 0o600 });

  const worker = spawn(process.execPath, [path.join(repositoryRoot, 'bin', 'rotor.js'), 'worker'], {
    env: { ...process.env, ...stack.environment },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // The full JSON log goes to a file; the terminal gets one short line per rotation event.
  const workerLog = fs.createWriteStream(path.join(options.dataDir, 'logs', 'worker.log'), { flags: 'a' });
  readline.createInterface({ input: worker.stdout }).on('line', (line) => {
    workerLog.write(`${line}\n`);
    const short = summariseLogLine(line);
    if (short !== undefined) {
      console.log(short);
    }
  });
  const workerExited = new Promise<number | string>((resolve) => worker.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));

  console.log('');
  console.log(`Temporal:    ${stack.temporal.address} (namespace default)`);
  console.log(`Temporal UI: ${stack.temporal.uiUrl}`);
  console.log(`Vault:       ${stack.vault.address} (dev mode, in memory; root token in ${environmentFile})`);
  console.log(`Logs:        ${path.join(options.dataDir, 'logs')} (worker.log has every worker log line as JSON)`);
  console.log(`Run \`source ${path.relative(process.cwd(), environmentFile) || environmentFile}\` in another shell to use \`rotor\` against this stack.`);
  console.log('Press Ctrl-C to stop everything.');
  console.log('');

  const stopRequested = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  const reason = await Promise.race([
    stopRequested.then((signal) => `received ${signal}`),
    workerExited.then((status) => `the worker exited (${status})`),
    stack.temporal.exited.then((status) => `the Temporal dev server exited (${status}); see its log`),
    stack.vault.exited.then((status) => `the Vault dev server exited (${status}); see its log`),
  ]);

  console.log(`Stopping: ${reason}.`);
  await stopAll(stack, worker, workerExited);
  console.log('Stopped the worker, Vault and the Temporal dev server.');
  return reason.startsWith('received') ? 0 : 1;
}

/**
 * Shortens a worker log line for the terminal: time, level, message and the rotation fields.
 * Returns undefined for the SDK's routine worker lines (bundling, state changes).
 */
export function summariseLogLine(line: string): string | undefined {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = String(entry.level ?? 'info');
  const message = String(entry.msg ?? '');
  if (entry.sdkComponent === 'worker' && (level === 'info' || level === 'debug')) {
    return undefined;
  }
  const fields = ['integration', 'phase', 'keyId', 'rotationId']
    .filter((field) => entry[field] !== undefined)
    .map((field) => `${field}=${String(entry[field])}`);
  const error = entry.error as { message?: string } | undefined;
  if (error?.message) {
    fields.push(`error="${error.message}"`);
  }
  const time = String(entry.time ?? '').slice(11, 19);
  return `${time} ${level.padEnd(5)} ${message}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}`;
}

async function stopAll(stack: LocalStack, worker: ReturnType<typeof spawn>, workerExited: Promise<number | string>): Promise<void> {
  if (worker.exitCode === null && worker.signalCode === null) {
    worker.kill('SIGTERM');
    const forced = setTimeout(() => worker.kill('SIGKILL'), 40_000);
    await workerExited;
    clearTimeout(forced);
  }
  await stack.stop();
}

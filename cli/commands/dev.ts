import { spawn } from 'node:child_process';
import fs from 'node:fs';
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
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const workerExited = new Promise<number | string>((resolve) => worker.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));

  console.log('');
  console.log(`Temporal:    ${stack.temporal.address} (namespace default)`);
  console.log(`Temporal UI: ${stack.temporal.uiUrl}`);
  console.log(`Vault:       ${stack.vault.address} (dev mode, in memory; root token in ${environmentFile})`);
  console.log(`Logs:        ${path.join(options.dataDir, 'logs')}`);
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

async function stopAll(stack: LocalStack, worker: ReturnType<typeof spawn>, workerExited: Promise<number | string>): Promise<void> {
  if (worker.exitCode === null && worker.signalCode === null) {
    worker.kill('SIGTERM');
    const forced = setTimeout(() => worker.kill('SIGKILL'), 40_000);
    await workerExited;
    clearTimeout(forced);
  }
  await stack.stop();
}

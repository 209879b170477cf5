import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startOnFreePort, startTemporalDevServer, startVaultDevServer, type LocalService } from '../../shared/local-services';
import { repositoryRoot, resolveToolPaths } from '../../shared/tools';
import { startMoto } from '../emulators/moto';

/**
 * `npm test` after setup and build: starts a Temporal dev server, a Vault dev server and moto
 * on free loopback ports, runs every compiled test file with node's test runner against them,
 * stops them, and exits with the runner's exit code. Arguments narrow the run to matching files.
 */
async function main(): Promise<number> {
  const tools = resolveToolPaths();
  const workDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'rotor-test-'));
  const services: LocalService[] = [];
  let keepWorkDirectory = true;
  const stopAll = async (): Promise<void> => {
    await Promise.all(services.map((service) => service.stop()));
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stopAll().then(() => process.exit(143)));

  try {
    const started = Date.now();
    const vaultToken = `test-${crypto.randomBytes(12).toString('hex')}`;
    // One after another, Temporal last: it binds random ports of its own that could take a
    // port picked for another service.
    const vault = await startOnFreePort((port) => startVaultDevServer({ binary: tools.vault, port, rootToken: vaultToken, logFile: path.join(workDirectory, 'vault.log') }));
    services.push(vault);
    const moto = await startOnFreePort((port) => startMoto({ binary: tools.motoServer, port, logFile: path.join(workDirectory, 'moto.log') }));
    services.push(moto);
    const temporal = await startOnFreePort((port) => startTemporalDevServer({ binary: tools.temporal, port, logFile: path.join(workDirectory, 'temporal.log') }));
    services.push(temporal);
    console.log(
      `test services ready in ${((Date.now() - started) / 1000).toFixed(1)} s: Temporal ${temporal.address}, Vault ${vault.address}, moto ${moto.url} (logs in ${workDirectory})`,
    );

    const files = findTestFiles(path.join(repositoryRoot, 'dist', 'test'), process.argv.slice(2));
    if (files.length === 0) {
      console.error('No test files matched.');
      return 1;
    }
    const runner = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
      stdio: 'inherit',
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: temporal.address,
        TEMPORAL_NAMESPACE: 'default',
        VAULT_ADDR: vault.address,
        VAULT_TOKEN: vaultToken,
        ROTOR_TEST_MOTO_URL: moto.url,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ROTOR_TEST_WORK_DIR: workDirectory,
        ROTOR_TOOLS_DIR: path.dirname(path.dirname(path.dirname(tools.temporal))),
      },
    });
    const code = await new Promise<number>((resolve) => runner.once('exit', (exitCode) => resolve(exitCode ?? 1)));
    if (code === 0) {
      keepWorkDirectory = false;
    } else {
      console.log(`Service logs and test files kept in ${workDirectory}`);
    }
    return code;
  } finally {
    await stopAll();
    if (!keepWorkDirectory) {
      fs.rmSync(workDirectory, { recursive: true, force: true });
    }
  }
}

function findTestFiles(directory: string, filters: string[]): string[] {
  const files: string[] = [];
  const walk = (current: string): void => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        walk(full);
      } else if (entry.name.endsWith('.test.js') && (filters.length === 0 || filters.some((filter) => path.relative(directory, full).includes(filter)))) {
        files.push(full);
      }
    }
  };
  walk(directory);
  return files.sort();
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`Test setup failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);

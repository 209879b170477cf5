import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { listProviders } from '../../providers/registry';
import { findFreePort } from '../../shared/local-services';
import { repositoryRoot } from '../../shared/tools';
import { runCli } from '../support/cli';
import { testEnvironment, uniqueSuffix } from '../support/environment';

function scratchDirectory(name: string): string {
  const directory = path.join(testEnvironment().ROTOR_TEST_WORK_DIR, `${name}-${uniqueSuffix()}`);
  fs.mkdirSync(directory, { recursive: true });
  return directory;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((line) => Number(line.trim()))
      .filter((child) => child > 0);
  } catch {
    return [];
  }
}

describe('rotor dev', () => {
  it('serves the Temporal UI and Vault, and Ctrl-C stops every process', async () => {
    const [temporalPort, uiPort, vaultPort] = [await findFreePort(), await findFreePort(), await findFreePort()];
    const dataDirectory = scratchDirectory('dev');
    const dev = spawn(
      process.execPath,
      [path.join(repositoryRoot, 'bin', 'rotor.js'), 'dev', '--temporal-port', String(temporalPort), '--ui-port', String(uiPort), '--vault-port', String(vaultPort), '--data-dir', dataDirectory],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    dev.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    dev.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => dev.once('exit', (code) => resolve(code)));

    const deadline = Date.now() + 90_000;
    while (!/ info {2}worker started/.test(output) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const children = childPids(dev.pid ?? 0);
    const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
    const vault = await fetch(`http://127.0.0.1:${vaultPort}/v1/sys/health`);
    const environmentFile = fs.readFileSync(path.join(dataDirectory, 'dev.env'), 'utf8');

    dev.kill('SIGINT');
    const code = await exited;

    assert.match(output, / info {2}worker started/, `the worker never started:\n${output}`);
    assert.doesNotMatch(output, /webpack|"level":/, 'the terminal should show short lines, not the JSON log');
    assert.match(fs.readFileSync(path.join(dataDirectory, 'logs', 'worker.log'), 'utf8'), /"msg":"worker started"/);
    assert.match(output, new RegExp(`Temporal UI: http://127\\.0\\.0\\.1:${uiPort}`));
    assert.equal(ui.status, 200);
    assert.equal(vault.status, 200);
    assert.match(environmentFile, new RegExp(`export TEMPORAL_ADDRESS=127\\.0\\.0\\.1:${temporalPort}`));
    assert.equal(fs.statSync(path.join(dataDirectory, 'dev.env')).mode & 0o777, 0o600);
    assert.equal(children.length, 3, `expected Temporal, Vault and the worker as children, found ${children.join(', ')}`);
    assert.equal(code, 0, output);
    assert.match(output, /Stopped the worker, Vault and the Temporal dev server\./);
    assert.deepEqual(children.filter(isRunning), []);
    assert.ok(fs.existsSync(path.join(dataDirectory, 'temporal.sqlite')));
  });

  it('reports a taken port at once', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;

    try {
      const result = await runCli(['dev', '--temporal-port', String(port), '--ui-port', String(await findFreePort()), '--vault-port', String(await findFreePort()), '--data-dir', scratchDirectory('dev-busy')], { timeoutMs: 15_000 });

      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`Port ${port} on 127\\.0\\.0\\.1 is already in use, so the Temporal dev server cannot start there\\. Stop whatever listens on it, or choose another with --temporal-port\\.`));
    } finally {
      blocker.close();
    }
  });

  it('rejects a port that is not a number', async () => {
    const result = await runCli(['dev', '--vault-port', 'eighty']);

    assert.equal(result.code, 2);
    assert.match(result.stderr, /expected a port number from 1 to 65535, got "eighty"/);
  });
});

describe('rotor demo', () => {
  // Every example integration, and the error code its emulator returns for the old key after revoke.
  const exampleRotations = [
    { id: 'aws-ci-deployer', provider: 'aws-iam', rejection: 'InvalidClientTokenId' },
    { id: 'cloudflare-dns-updater', provider: 'cloudflare', rejection: 'HTTP 401' },
    { id: 'okx-trading-bot', provider: 'okx', rejection: '50119' },
    { id: 'bybit-market-maker', provider: 'bybit', rejection: '10003' },
    { id: 'binance-spot-hedger', provider: 'binance', rejection: '-2015' },
    { id: 'datadog-status-page', provider: 'datadog', rejection: 'HTTP 403' },
    { id: 'gateio-treasury-reporter', provider: 'gateio', rejection: 'INVALID_KEY' },
    { id: 'gitlab-release-bot', provider: 'gitlab', rejection: 'HTTP 401' },
    { id: 'kucoin-grid-bot', provider: 'kucoin', rejection: '400003' },
    { id: 'openai-support-summarizer', provider: 'openai', rejection: 'invalid_api_key' },
    { id: 'quicknode-indexer-rpc', provider: 'quicknode', rejection: 'HTTP 401' },
  ];

  it('example inventory covers every provider', () => {
    const inventory = parse(fs.readFileSync(path.join(repositoryRoot, 'examples', 'inventory.yaml'), 'utf8'));
    const rotatable = listProviders()
      .map((provider) => provider.name)
      .filter((name) => name !== 'manual');

    assert.deepEqual(
      inventory.integrations.map((entry: { id: string; provider: string }) => `${entry.id} (${entry.provider})`),
      exampleRotations.map(({ id, provider }) => `${id} (${provider})`),
    );
    assert.deepEqual(exampleRotations.map(({ provider }) => provider).sort(), rotatable.sort());
  });

  it('rotates every example integration and shows old keys rejected', async () => {
    const directory = scratchDirectory('demo');
    const inventory = parse(fs.readFileSync(path.join(repositoryRoot, 'examples', 'inventory.yaml'), 'utf8'));
    const motoPort = await findFreePort();
    for (const integration of inventory.integrations.filter((entry: { provider: string }) => entry.provider === 'aws-iam')) {
      integration.config.endpoint = `http://127.0.0.1:${motoPort}`;
    }
    const file = path.join(directory, 'inventory.yaml');
    fs.writeFileSync(file, stringify(inventory));

    const result = await runCli(['demo', '--file', file, '--data-dir', directory], { timeoutMs: 240_000 });

    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /Vault: secret\/apps\/ci-deployer\/aws is now version 2, holding key \w+/);
    for (const { id, rejection } of exampleRotations) {
      const oldKey = new RegExp(`Seeded ${id}: .+ with key (\\S+), stored at`).exec(result.stdout)?.[1];
      assert.ok(oldKey, `no "Seeded ${id}" line:\n${result.stdout}`);
      assert.match(result.stdout, new RegExp(`Rotation of ${id} completed\\.\\n  old key: ${oldKey} \\(revoked\\)`));
      assert.ok(result.stdout.includes(`The emulator now rejects the old key ${oldKey} (${rejection}).`), `${id}: no rejection ${rejection} of ${oldKey}:\n${result.stdout}`);
    }
    assert.equal(result.stdout.match(/The emulator now rejects the old key/g)?.length, exampleRotations.length);
    assert.match(result.stdout, new RegExp(`Demo finished: ${exampleRotations.length} rotations completed\\.`));
    assert.equal(result.stderr, '');
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { startSpacingMs } from '../../cli/commands/fleet';
import { loadCheckedInventory, toIntegrationSpec } from '../../cli/integrations';
import { startRotation } from '../../cli/start-rotation';
import { ProviderError } from '../../providers/contract';
import { getProvider } from '../../providers/registry';
import { loadWorkerConfig } from '../../shared/config';
import { startOnFreePort, startTemporalDevServer, startVaultDevServer, type LocalService } from '../../shared/local-services';
import { createLogger } from '../../shared/logger';
import { repositoryRoot, resolveToolPaths } from '../../shared/tools';
import { VaultStore } from '../../shared/vault';
import type { IntegrationSpec } from '../../workflows/rotation-types';
import { startBybitEmulator, type BybitEmulator } from '../emulators/bybit';
import { dnsReadPolicy, startCloudflareEmulator, type CloudflareEmulator } from '../emulators/cloudflare';
import { startOkxEmulator, type OkxEmulator } from '../emulators/okx';

/**
 * `npm run bench [-- --integrations N]`: rotates N integrations, spread over the Cloudflare, OKX
 * and Bybit emulators, through a Rotor worker child process on a Temporal and a Vault dev server.
 * Then it rotates a sample once more with a plain sequential loop over the provider modules. It
 * prints one summary line and never fails on a timing. BENCHMARKS.md explains the numbers.
 */

/** Emulator rate limits in requests per second. The worker's task queue limit is set far above them. */
const EMULATOR_LIMITS = { cloudflare: 10, okx: 5, bybit: 5 } as const;
/** OKX's fixed limit on listing keys: 20 requests per 2 seconds per master account, as the emulator enforces it. */
const OKX_LIST_LIMIT_PER_SECOND = 10;
const QUEUE_LIMIT_PER_SECOND = 100;
const NAIVE_SAMPLE_PER_PROVIDER = 10;
/**
 * Integrations per Cloudflare user, each user being one emulator with its own rate limit. At 15,
 * a user has 30 seeded tokens plus up to 15 new ones during rotations: under Cloudflare's
 * quota of 50, and on one page of GET /user/tokens.
 */
const CLOUDFLARE_INTEGRATIONS_PER_USER = 15;
const FLEET_TIMEOUT_MS = 20 * 60_000;
const NAIVE_MAX_ATTEMPTS = 60;

type ProviderName = keyof typeof EMULATOR_LIMITS;
const PROVIDERS: ProviderName[] = ['cloudflare', 'okx', 'bybit'];

interface ProxiedRequest {
  endpoint: string;
  apiKey?: string;
  rateLimited: boolean;
  /** When the response arrived, in ms since the epoch. */
  at: number;
}

/** A loopback HTTP proxy in front of one emulator that records every request, because the emulators count only rejections. */
interface CountingProxy {
  url: string;
  requests: ProxiedRequest[];
  stop(): Promise<void>;
}

/**
 * Returns whether a response body contains Bybit's rate-limit retCode 10006, which comes with
 * HTTP 200. X-Bapi-Limit-Status is no guide: it is also 0 on the request that took the last slot.
 */
function isBybitRateLimit(body: Buffer): boolean {
  try {
    return (JSON.parse(body.toString('utf8')) as { retCode?: unknown }).retCode === 10006;
  } catch {
    return false;
  }
}

async function startCountingProxy(targetUrl: string): Promise<CountingProxy> {
  const target = new URL(targetUrl);
  const requests: ProxiedRequest[] = [];
  const server = http.createServer((request, response) => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers },
      (reply) => {
        const chunks: Buffer[] = [];
        reply.on('data', (chunk: Buffer) => chunks.push(chunk));
        reply.on('end', () => {
          const body = Buffer.concat(chunks);
          const apiKeyHeader = request.headers['x-bapi-api-key'];
          requests.push({
            endpoint: `${request.method ?? 'GET'} ${new URL(request.url ?? '/', 'http://127.0.0.1').pathname}`,
            apiKey: typeof apiKeyHeader === 'string' ? apiKeyHeader : undefined,
            rateLimited: reply.statusCode === 429 || isBybitRateLimit(body),
            at: Date.now(),
          });
          response.writeHead(reply.statusCode ?? 502, reply.headers);
          response.end(body);
        });
      },
    );
    upstream.on('error', (error) => {
      response.writeHead(502);
      response.end(error.message);
    });
    request.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${target.pathname.replace(/\/$/, '')}`,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Emulators {
  cloudflare: CloudflareEmulator[];
  okx: OkxEmulator;
  bybit: BybitEmulator;
  proxies: Record<ProviderName, CountingProxy[]>;
  bybitManagementKey?: string;
}

function throttledCount(emulators: Emulators): number {
  return emulators.cloudflare.reduce((sum, user) => sum + user.throttledResponses(), 0) + emulators.okx.rateLimitedCount + emulators.bybit.rateLimitedResponses;
}

interface InventoryEntry {
  id: string;
  provider: ProviderName;
  config: Record<string, unknown>;
  restrictions: Record<string, unknown>;
}

/** Seeds each integration's account at its emulator and writes the management credential and current key to Vault. */
async function seedIntegrations(count: number, emulators: Emulators, vault: VaultStore, runId: string): Promise<InventoryEntry[]> {
  const entries: InventoryEntry[] = [];
  let bybitMasterUid: string | undefined;
  let cloudflareIndex = 0;
  for (let index = 0; index < count; index++) {
    const provider = PROVIDERS[index % PROVIDERS.length];
    const id = `bench-${runId}-${provider}-${index}`;
    const managementPath = `rotor/management/${id}`;
    const vaultPath = `apps/${id}/${provider}`;
    if (provider === 'cloudflare') {
      const shard = Math.floor(cloudflareIndex / CLOUDFLARE_INTEGRATIONS_PER_USER);
      cloudflareIndex++;
      const user = emulators.cloudflare[shard].seedAccount();
      await vault.writeSecret(managementPath, { token: user.managementToken.value });
      await vault.writeSecret(vaultPath, { token_id: user.currentToken.id, token: user.currentToken.value });
      entries.push({
        id,
        provider,
        config: { base_url: emulators.proxies.cloudflare[shard].url, token_name: id, policies: [dnsReadPolicy()] },
        restrictions: { ip_allowlist: ['127.0.0.1/32'], scopes: ['DNS Read'] },
      });
    } else if (provider === 'okx') {
      const account = emulators.okx.seedAccount();
      await vault.writeSecret(managementPath, { ...account.managementCredential });
      await vault.writeSecret(vaultPath, { ...account.currentKey });
      entries.push({
        id,
        provider,
        config: { base_url: emulators.proxies.okx[0].url, sub_account: account.subAccount },
        restrictions: { ip_allowlist: ['127.0.0.1/32'], scopes: ['read_only'] },
      });
    } else {
      // One master account for every Bybit integration, so its per-endpoint limit binds the fleet.
      const account = emulators.bybit.seedAccount({ masterUid: bybitMasterUid });
      bybitMasterUid = account.masterUid;
      emulators.bybitManagementKey = account.managementCredential.api_key;
      await vault.writeSecret(managementPath, { ...account.managementCredential });
      await vault.writeSecret(vaultPath, { ...account.currentKey });
      entries.push({
        id,
        provider,
        config: { base_url: emulators.proxies.bybit[0].url, sub_uid: account.subUid, read_only: true },
        restrictions: { ip_allowlist: ['127.0.0.1/32'], scopes: ['ContractTrade:Order', 'ContractTrade:Position'] },
      });
    }
  }
  return entries;
}

function inventoryYaml(entries: InventoryEntry[]): string {
  const providers = PROVIDERS.map((name) => `  ${name}:\n    rate_limit_per_second: ${QUEUE_LIMIT_PER_SECOND}`).join('\n');
  // JSON is valid YAML, so each integration is written as one flow mapping.
  const integrations = entries
    .map((entry) =>
      `  - ${JSON.stringify({
        id: entry.id,
        provider: entry.provider,
        owner: 'bench',
        config: entry.config,
        management_credential: `rotor/management/${entry.id}`,
        vault_path: `apps/${entry.id}/${entry.provider}`,
        rotation: { grace_period: '1s', verify_timeout: '1m', max_grace: '1m' },
        restrictions: entry.restrictions,
      })}`,
    )
    .join('\n');
  return `version: 1\nproviders:\n${providers}\nintegrations:\n${integrations}\n`;
}

interface FleetOutcome {
  wallMs: number;
  /** When the first rotation started, in ms since the epoch. */
  startedAt: number;
  completed: Record<ProviderName, number>;
  /** When each provider's last rotation finished, from the first start. */
  lastFinishedMs: Record<ProviderName, number>;
  failed: number;
  failures: string[];
  completedIds: Set<string>;
}

/** Starts every rotation with `rotor rotate --all`'s per-provider spacing, with the bench's emulator limits as the rate, and waits for all. */
async function runFleet(client: Client, specs: IntegrationSpec[], taskQueue: string): Promise<FleetOutcome> {
  const outcome: FleetOutcome = { wallMs: 0, startedAt: 0, completed: { cloudflare: 0, okx: 0, bybit: 0 }, lastFinishedMs: { cloudflare: 0, okx: 0, bybit: 0 }, failed: 0, failures: [], completedIds: new Set() };
  const started = Date.now();
  const followers: Promise<void>[] = [];
  let finished = 0;
  const progress = setInterval(() => {
    console.log(`fleet progress: ${finished}/${specs.length} finished, ${outcome.failed} failed, ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }, 10_000);

  const starters = PROVIDERS.map(async (provider) => {
    const spacingMs = startSpacingMs(EMULATOR_LIMITS[provider]);
    const mine = specs.filter((spec) => spec.provider === provider);
    for (const [index, spec] of mine.entries()) {
      if (index > 0) {
        await delay(spacingMs);
      }
      const follow = async (): Promise<void> => {
        try {
          const handle = await startRotation(client, spec, { taskQueue, dryRun: false, requestedBy: 'bench' });
          const result = await handle.result();
          if (result.outcome === 'completed') {
            outcome.completed[provider]++;
            outcome.completedIds.add(spec.id);
          } else {
            outcome.failed++;
            outcome.failures.push(`${spec.id}: outcome ${result.outcome}`);
          }
        } catch (error) {
          outcome.failed++;
          const message = error instanceof WorkflowFailedError ? (error.cause?.message ?? error.message) : String(error);
          outcome.failures.push(`${spec.id}: ${message}`);
        } finally {
          finished++;
          outcome.lastFinishedMs[provider] = Date.now() - started;
        }
      };
      followers.push(follow());
    }
  });
  try {
    await Promise.all(starters);
    const all = Promise.all(followers);
    const timedOut = await Promise.race([all.then(() => false), delay(FLEET_TIMEOUT_MS).then(() => true)]);
    if (timedOut) {
      outcome.failures.push(`fleet timed out after ${FLEET_TIMEOUT_MS / 1000} s with ${specs.length - finished} rotations unfinished`);
      outcome.failed += specs.length - finished;
    }
  } finally {
    clearInterval(progress);
  }
  outcome.wallMs = Date.now() - started;
  outcome.startedAt = started;
  return outcome;
}

interface ProviderCeiling {
  provider: ProviderName;
  callsPerRotation: number;
  bucket: string;
  allowedPerSecond: number;
  /** Admitted requests in the binding bucket in each second of the fleet, which shows where the bucket went unused. */
  admittedPerSecond: number[];
}

/**
 * Computes each provider's ceiling in rotations per second from the admitted requests of the
 * fleet run. A provider may have several rate-limit buckets, and the tightest one binds.
 */
function providerCeilings(emulators: Emulators, completed: Record<ProviderName, number>, fleetStartedAt: number): ProviderCeiling[] {
  const admitted = (provider: ProviderName, matches: (request: ProxiedRequest) => boolean): ProxiedRequest[] =>
    emulators.proxies[provider].flatMap((proxy) => proxy.requests).filter((request) => !request.rateLimited && matches(request));
  const buckets: Record<ProviderName, Array<{ name: string; limit: number; calls: ProxiedRequest[] }>> = {
    // One token bucket for every request of a user, and the users' buckets fill side by side.
    cloudflare: [
      {
        name: `all requests of ${emulators.cloudflare.length} users`,
        limit: EMULATOR_LIMITS.cloudflare * emulators.cloudflare.length,
        calls: admitted('cloudflare', () => true),
      },
    ],
    okx: [
      {
        name: 'create + delete',
        limit: EMULATOR_LIMITS.okx,
        calls: admitted('okx', (request) => request.endpoint.startsWith('POST ')),
      },
      { name: 'list', limit: OKX_LIST_LIMIT_PER_SECOND, calls: admitted('okx', (request) => request.endpoint === 'GET /api/v5/users/subaccount/apikey') },
    ],
    // Bybit limits each caller per endpoint, and only the shared management key calls often enough to bind.
    bybit: ['GET /v5/user/sub-apikeys', 'POST /v5/user/create-sub-api', 'POST /v5/user/delete-sub-api'].map((endpoint) => ({
      name: endpoint,
      limit: EMULATOR_LIMITS.bybit,
      calls: admitted('bybit', (request) => request.endpoint === endpoint && request.apiKey === emulators.bybitManagementKey),
    })),
  };
  return PROVIDERS.filter((provider) => completed[provider] > 0).map((provider) => {
    const perBucket = buckets[provider].map((bucket) => ({
      bucket: bucket.name,
      callsPerRotation: bucket.calls.length / completed[provider],
      allowedPerSecond: bucket.calls.length === 0 ? Infinity : bucket.limit / (bucket.calls.length / completed[provider]),
      admittedPerSecond: countPerSecond(bucket.calls, fleetStartedAt),
    }));
    const tightest = perBucket.reduce((best, candidate) => (candidate.allowedPerSecond < best.allowedPerSecond ? candidate : best));
    return { provider, ...tightest };
  });
}

function countPerSecond(requests: ProxiedRequest[], startedAt: number): number[] {
  const counts: number[] = [];
  for (const request of requests) {
    const second = Math.max(0, Math.floor((request.at - startedAt) / 1000));
    while (counts.length <= second) {
      counts.push(0);
    }
    counts[second]++;
  }
  return counts;
}

/** Rotates each integration with direct provider calls, one after another, sleeping the vendor's delay on a rate-limited error. */
async function runNaiveLoop(specs: IntegrationSpec[], vault: VaultStore): Promise<number> {
  const logger = createLogger({ level: 'silent' });
  const withRetry = async <T>(operation: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await operation();
      } catch (error) {
        if (!(error instanceof ProviderError) || error.kind !== 'rate-limited' || attempt >= NAIVE_MAX_ATTEMPTS) {
          throw error;
        }
        await delay(error.details.retryAfterMs ?? 1000);
      }
    }
  };

  const started = Date.now();
  for (const [index, spec] of specs.entries()) {
    const provider = getProvider(spec.provider);
    const managementCredential = await vault.readSecret(spec.managementCredentialPath);
    const metadata = await vault.readMetadata(spec.vaultPath);
    const previousKeyId = metadata?.customMetadata.key_id;
    if (!managementCredential || !previousKeyId) {
      throw new Error(`Naive loop: ${spec.id} has no management credential or no key_id in Vault metadata at ${spec.vaultPath}.`);
    }
    const context = {
      config: provider.configSchema.parse(spec.providerConfig),
      credential: provider.credentialSchema.parse(managementCredential.data),
      logger,
    };
    await withRetry(() => provider.listKeys(context));
    const created = await withRetry(() =>
      provider.createKey(context, { label: `rotor-naive${crypto.randomBytes(6).toString('hex')}`, restrictions: { ipAllowlist: spec.restrictions.ipAllowlist, scopes: spec.restrictions.scopes } }),
    );
    await withRetry(() => provider.verifyKey(context, created.keyId, created.secret));
    await vault.writeSecret(spec.vaultPath, created.secret);
    await withRetry(() => provider.revokeKey(context, previousKeyId));
    if ((index + 1) % 10 === 0) {
      console.log(`naive progress: ${index + 1}/${specs.length} rotated, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
  }
  return Date.now() - started;
}

/** Peak resident set size (VmHWM) of a running process in KiB, read from /proc. */
function peakRssKib(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function parseIntegrationCount(argv: string[]): number {
  const index = argv.indexOf('--integrations');
  if (index < 0) {
    return 200;
  }
  const count = Number(argv[index + 1]);
  if (!Number.isInteger(count) || count < 3) {
    throw new Error(`--integrations must be an integer of at least 3, got ${argv[index + 1] ?? 'nothing'}.`);
  }
  return count;
}

async function main(): Promise<number> {
  const count = parseIntegrationCount(process.argv.slice(2));
  const tools = resolveToolPaths();
  const workDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'rotor-bench-'));
  const services: LocalService[] = [];
  const stoppers: Array<() => Promise<void>> = [];
  let worker: ChildProcess | undefined;
  const stopAll = async (): Promise<void> => {
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const exited = new Promise((resolve) => worker?.once('exit', resolve));
      worker.kill('SIGTERM');
      await Promise.race([exited, delay(15_000).then(() => worker?.kill('SIGKILL'))]);
    }
    await Promise.all(stoppers.splice(0).map((stop) => stop().catch(() => undefined)));
    await Promise.all(services.splice(0).map((service) => service.stop()));
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stopAll().then(() => process.exit(143)));

  try {
    const vaultToken = `bench-${crypto.randomBytes(12).toString('hex')}`;
    // One after another, Temporal last: it binds random ports of its own that could take a port picked for another service.
    const vaultServer = await startOnFreePort((port) => startVaultDevServer({ binary: tools.vault, port, rootToken: vaultToken, logFile: path.join(workDirectory, 'vault.log') }));
    services.push(vaultServer);
    const temporal = await startOnFreePort((port) => startTemporalDevServer({ binary: tools.temporal, port, logFile: path.join(workDirectory, 'temporal.log') }));
    services.push(temporal);
    console.log(`services ready: Temporal ${temporal.address}, Vault ${vaultServer.address} (logs in ${workDirectory})`);

    const cloudflareCount = Math.ceil(count / PROVIDERS.length);
    const cloudflare: CloudflareEmulator[] = [];
    for (let user = 0; user < Math.ceil(cloudflareCount / CLOUDFLARE_INTEGRATIONS_PER_USER); user++) {
      const emulator = await startCloudflareEmulator({ rateLimitPerSecond: EMULATOR_LIMITS.cloudflare });
      stoppers.push(() => emulator.stop());
      cloudflare.push(emulator);
    }
    const okx = await startOkxEmulator({ rateLimitPerSecond: EMULATOR_LIMITS.okx });
    stoppers.push(() => okx.stop());
    const bybit = await startBybitEmulator({ rateLimitPerSecond: EMULATOR_LIMITS.bybit });
    stoppers.push(() => bybit.stop());
    const proxies = {
      cloudflare: await Promise.all(cloudflare.map((user) => startCountingProxy(user.url))),
      okx: [await startCountingProxy(okx.url)],
      bybit: [await startCountingProxy(bybit.url)],
    };
    stoppers.push(...Object.values(proxies).flat().map((proxy) => () => proxy.stop()));
    const emulators: Emulators = { cloudflare, okx, bybit, proxies };
    console.log(
      `rate limits: emulators cloudflare ${EMULATOR_LIMITS.cloudflare}/s per user (all requests, ${cloudflare.length} users of up to ${CLOUDFLARE_INTEGRATIONS_PER_USER} integrations), okx ${EMULATOR_LIMITS.okx}/s (create + delete) and ${OKX_LIST_LIMIT_PER_SECOND}/s (list), ` +
        `bybit ${EMULATOR_LIMITS.bybit}/s per endpoint per caller; worker task queues ${QUEUE_LIMIT_PER_SECOND}/s per provider`,
    );

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: 'default',
      VAULT_ADDR: vaultServer.address,
      VAULT_TOKEN: vaultToken,
      ROTOR_TASK_QUEUE: `rotor-bench-${Date.now().toString(36)}`,
      ROTOR_LOG_LEVEL: 'warn',
    };
    const config = loadWorkerConfig(env);
    const vault = await VaultStore.connect(config.vault);
    const runId = Date.now().toString(36);
    const entries = await seedIntegrations(count, emulators, vault, runId);
    const inventoryFile = path.join(workDirectory, 'bench-inventory.yaml');
    fs.writeFileSync(inventoryFile, inventoryYaml(entries));
    const specs = loadCheckedInventory(inventoryFile).integrations.map(toIntegrationSpec);
    console.log(`seeded ${specs.length} integrations (${PROVIDERS.map((name) => `${name} ${specs.filter((spec) => spec.provider === name).length}`).join(', ')}), inventory ${inventoryFile}`);

    const workerLog = fs.openSync(path.join(workDirectory, 'worker.log'), 'a');
    worker = spawn(process.execPath, [path.join(repositoryRoot, 'bin', 'rotor.js'), 'worker', '--file', inventoryFile], { env, stdio: ['ignore', workerLog, workerLog] });
    fs.closeSync(workerLog);
    const workerPid = worker.pid ?? -1;
    // The worker has no readiness signal, and a rotation started before it polls simply waits in the task queue.
    await delay(2_000);
    if (worker.exitCode !== null) {
      throw new Error(`The Rotor worker exited with ${worker.exitCode}; see ${path.join(workDirectory, 'worker.log')}.`);
    }

    const connection = await Connection.connect({ address: config.temporal.address });
    stoppers.push(() => connection.close());
    const client = new Client({ connection, namespace: config.temporal.namespace });
    console.log(`fleet: starting ${specs.length} rotations`);
    const fleet = await runFleet(client, specs, config.temporal.taskQueue);
    const throttledInFleet = throttledCount(emulators);
    const peakKib = peakRssKib(workerPid);
    const completedTotal = PROVIDERS.reduce((sum, name) => sum + fleet.completed[name], 0);
    console.log(`fleet done in ${(fleet.wallMs / 1000).toFixed(1)} s: ${completedTotal} completed, ${fleet.failed} failed, 429s absorbed ${throttledInFleet}`);
    for (const failure of fleet.failures.slice(0, 5)) {
      console.log(`  failed: ${failure}`);
    }

    const ceilings = providerCeilings(emulators, fleet.completed, fleet.startedAt);
    for (const ceiling of ceilings) {
      console.log(
        `  ${ceiling.provider}: ${fleet.completed[ceiling.provider]} rotations, ${ceiling.callsPerRotation.toFixed(2)} admitted calls per rotation on ${ceiling.bucket}, ` +
          `allowed ${ceiling.allowedPerSecond.toFixed(2)} rotations/s, last one finished at ${(fleet.lastFinishedMs[ceiling.provider] / 1000).toFixed(1)} s`,
      );
      console.log(`    admitted per second on ${ceiling.bucket}: ${ceiling.admittedPerSecond.join(' ')}`);
    }
    const boundSeconds = Math.max(...ceilings.map((ceiling) => fleet.completed[ceiling.provider] / ceiling.allowedPerSecond));
    const ceilingPerSecond = completedTotal / boundSeconds;
    const achievedPerSecond = completedTotal / (fleet.wallMs / 1000);
    const ratio = achievedPerSecond / ceilingPerSecond;
    console.log(`ceiling ${ceilingPerSecond.toFixed(2)} rotations/s, achieved ${achievedPerSecond.toFixed(2)} rotations/s`);

    // The naive loop revokes the key the fleet promoted, so it only takes integrations whose rotation completed.
    const sample = PROVIDERS.flatMap((name) => specs.filter((spec) => spec.provider === name && fleet.completedIds.has(spec.id)).slice(0, NAIVE_SAMPLE_PER_PROVIDER));
    console.log(`naive loop: rotating ${sample.length} of ${specs.length} integrations one after another`);
    const naiveMs = await runNaiveLoop(sample, vault);
    const naiveEstimateMs = (naiveMs * specs.length) / sample.length;
    if (sample.length < specs.length) {
      console.log(`naive loop took ${(naiveMs / 1000).toFixed(1)} s for ${sample.length}; extrapolated linearly to ${specs.length}: ${(naiveEstimateMs / 1000).toFixed(1)} s`);
    } else {
      console.log(`naive loop took ${(naiveMs / 1000).toFixed(1)} s`);
    }
    const speedup = naiveEstimateMs / fleet.wallMs;
    const peakMib = peakKib === undefined ? 'unknown' : String(Math.round(peakKib / 1024));

    console.log(
      `fleet: ${specs.length} rotations, ${fleet.failed} failed, ceiling ratio ${ratio.toFixed(2)}, 429s absorbed ${throttledInFleet}, naive speedup ${speedup.toFixed(1)} x, worker peak RSS ${peakMib} MiB`,
    );
    fs.rmSync(workDirectory, { recursive: true, force: true });
    return 0;
  } finally {
    await stopAll();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`Benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);

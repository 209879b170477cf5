import { setTimeout as delay } from 'node:timers/promises';
import { SingleBar } from 'cli-progress';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { getProvider } from '../../providers/registry';
import { loadTemporalConfig } from '../../shared/config';
import { isManualIntegration, rateLimitOverrides, type IntegrationEntry, type InventoryFile } from '../../shared/inventory';
import type { IntegrationSpec, RotationResult } from '../../workflows/rotation-types';
import { OperationFailedError, UsageError } from '../errors';
import { loadCheckedInventory, toIntegrationSpec } from '../integrations';
import { RotationAlreadyRunningError, startRotation } from '../start-rotation';
import { connectClient } from '../temporal-client';

/**
 * Rate-limited key-management calls one rotation makes at the start (create, then delete after
 * grace; `npm run bench` measured 2.00 at OKX and at Bybit). Fleet starts are spaced by this
 * over the provider's rate, which smooths the load. The provider task queue's server-side
 * limit and the retry after a vendor's rate-limit response keep any excess from failing.
 */
const callsPerRotationStart = 2;

/** Returns the pause between two rotation starts at a provider with this rate limit (requests per second). */
export function startSpacingMs(rateLimitPerSecond: number): number {
  return (1000 * callsPerRotationStart) / rateLimitPerSecond;
}

export interface FleetOptions {
  file: string;
  all?: boolean;
  provider?: string;
  tag?: string;
  dryRun?: boolean;
}

type Outcome = 'completed' | 'dry-run' | 'rolled-back' | 'failed' | 'skipped';

interface FleetRow {
  integration: IntegrationSpec;
  outcome?: Outcome;
  detail: string;
}

/**
 * `rotor rotate --all | --provider P | --tag T`: one rotation per selected integration,
 * started with a per-provider stagger, followed with a progress bar, and summarised in a table.
 */
export async function runFleetCommand(options: FleetOptions): Promise<number> {
  const inventory = loadCheckedInventory(options.file);
  const rows = selectIntegrations(inventory, options).map((integration): FleetRow => ({ integration, detail: '' }));
  if (rows.length === 0) {
    throw new UsageError(`No integration in ${options.file} matches ${describeSelection(options)}.`);
  }
  const config = loadTemporalConfig();
  const client = await connectClient(config);

  const stagger = planStagger(rows, rateLimitOverrides(inventory));
  for (const group of stagger.filter((candidate) => candidate.rows.length > 1)) {
    console.log(`${group.providerName}: starting ${group.rows.length} rotations, one every ${(group.spacingMs / 1000).toFixed(2)} s (rate limit ${group.rateLimit}/s)`);
  }
  const progress = createProgress(rows.length);
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
  });

  const finished = startStaggered(client, stagger, config.taskQueue, Boolean(options.dryRun), () => progress.update(counts(rows)));
  while (!interrupted && rows.some((row) => row.outcome === undefined)) {
    progress.update(counts(rows));
    await Promise.race([finished, delay(500)]);
  }
  progress.update(counts(rows));
  progress.stop();

  if (interrupted) {
    console.log('Stopped following the fleet. Rotations already started keep running in Temporal.');
    console.log('Follow one with `rotor status <integration>`, or list them in the Temporal UI with: RotorPhase != "completed"');
    return 130;
  }
  await client.connection.close();

  printSummary(rows);
  const failed = rows.filter((row) => row.outcome === 'failed').length;
  if (failed > 0) {
    throw new OperationFailedError(`${failed} of ${rows.length} rotations failed.`);
  }
  return 0;
}

function selectIntegrations(inventory: InventoryFile, options: FleetOptions): IntegrationSpec[] {
  const chosen = [options.all, options.provider, options.tag].filter(Boolean).length;
  if (chosen !== 1) {
    throw new UsageError('Choose the integrations with exactly one of: an integration id, --all, --provider <name>, --tag <tag>.');
  }
  const matches = (entry: IntegrationEntry): boolean => {
    if (options.provider) return entry.provider === options.provider;
    if (options.tag) return entry.tags.includes(options.tag);
    return true;
  };
  // Manual keys have no key-management API; `rotor audit` reports them instead.
  return inventory.integrations
    .filter(matches)
    .filter((entry) => !isManualIntegration(entry))
    .map(toIntegrationSpec);
}

function describeSelection(options: FleetOptions): string {
  if (options.provider) return `provider ${options.provider}`;
  if (options.tag) return `tag ${options.tag}`;
  return '--all';
}

/** The rotations of one provider and how far apart they start. */
interface ProviderStagger {
  providerName: string;
  rows: FleetRow[];
  /** Requests per second: the inventory's providers section, else the provider's default. */
  rateLimit: number;
  spacingMs: number;
}

function planStagger(rows: FleetRow[], rateLimits: Record<string, number>): ProviderStagger[] {
  const byProvider = new Map<string, FleetRow[]>();
  for (const row of rows) {
    byProvider.set(row.integration.provider, [...(byProvider.get(row.integration.provider) ?? []), row]);
  }
  return [...byProvider.entries()].map(([providerName, providerRows]) => {
    const rateLimit = rateLimits[providerName] ?? getProvider(providerName).capabilities.defaultRateLimitPerSecond;
    return { providerName, rows: providerRows, rateLimit, spacingMs: startSpacingMs(rateLimit) };
  });
}

/** Starts each provider's rotations spaced by its rate limit; providers start side by side. */
async function startStaggered(client: Client, stagger: ProviderStagger[], taskQueue: string, dryRun: boolean, onChange: () => void): Promise<void> {
  const followers: Promise<void>[] = [];
  const starters = stagger.map(async (group) => {
    for (const [index, row] of group.rows.entries()) {
      if (index > 0) {
        await delay(group.spacingMs);
      }
      followers.push(startAndFollow(client, row, taskQueue, dryRun).finally(onChange));
    }
  });
  await Promise.all(starters);
  await Promise.all(followers);
}

async function startAndFollow(client: Client, row: FleetRow, taskQueue: string, dryRun: boolean): Promise<void> {
  try {
    const handle = await startRotation(client, row.integration, { taskQueue, dryRun, requestedBy: 'fleet' });
    const result: RotationResult = await handle.result();
    row.outcome = result.outcome;
    row.detail = result.outcome === 'completed' ? `new key ${result.state.pendingKeyId}, Vault version ${result.state.promotedVersion}` : '';
    if (result.outcome === 'dry-run') {
      row.detail = result.state.plan?.steps.join('; ') ?? '';
    }
  } catch (error) {
    if (error instanceof RotationAlreadyRunningError) {
      row.outcome = 'skipped';
      row.detail = `already running (phase ${error.phase})`;
      return;
    }
    row.outcome = 'failed';
    row.detail = error instanceof WorkflowFailedError ? (error.cause?.message ?? error.message) : (error as Error).message;
  }
}

interface Counts {
  done: number;
  running: number;
  failed: number;
}

function counts(rows: FleetRow[]): Counts {
  return {
    done: rows.filter((row) => row.outcome !== undefined && row.outcome !== 'failed').length,
    running: rows.filter((row) => row.outcome === undefined).length,
    failed: rows.filter((row) => row.outcome === 'failed').length,
  };
}

/** Creates a progress bar on a terminal, or one line per change elsewhere so CI logs stay readable. */
function createProgress(total: number): { update(counts: Counts): void; stop(): void } {
  if (process.stdout.isTTY) {
    const bar = new SingleBar({ format: 'rotations [{bar}] {value}/{total} | done {done} | running {running} | failed {failed}' });
    bar.start(total, 0, { done: 0, running: total, failed: 0 });
    return {
      update: (current) => bar.update(current.done + current.failed, { ...current }),
      stop: () => bar.stop(),
    };
  }
  let last = '';
  return {
    update: (current) => {
      const line = `rotations: done ${current.done}, running ${current.running}, failed ${current.failed} of ${total}`;
      if (line !== last) {
        console.log(line);
        last = line;
      }
    },
    stop: () => undefined,
  };
}

function printSummary(rows: FleetRow[]): void {
  const headers = ['integration', 'provider', 'outcome', 'detail'];
  const table = rows.map((row) => [row.integration.id, row.integration.provider, row.outcome ?? 'running', row.detail]);
  const widths = headers.map((header, column) => Math.max(header.length, ...table.map((cells) => cells[column].length)));
  const format = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd();
  console.log('');
  console.log(format(headers));
  console.log(format(widths.map((width) => '-'.repeat(width))));
  for (const cells of table) {
    console.log(format(cells));
  }
}

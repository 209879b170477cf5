import { getProvider } from '../../providers/registry';
import { isManualIntegration, type IntegrationEntry, type VendorPosture } from '../../shared/inventory';
import { readStoredKeyState, type LastRotationSource, type StoredKeyState } from '../../shared/integration-state';
import { keyAgeStatus } from '../../shared/rotation-due';
import { loadCheckedInventory } from '../integrations';
import { renderTextReport, type ReportFormat } from '../report-format';
import { connectVaultIfNeeded, readFromVault } from '../vault-access';

export interface InventoryCommandOptions {
  file: string;
  format: ReportFormat;
}

/** One integration as `rotor inventory` reports it; also the shape of its JSON output. */
export interface InventoryRow {
  id: string;
  provider: string;
  owner: string | null;
  /** ISO 8601; null when no key is stored and the integration is not manual. */
  lastRotatedAt: string | null;
  lastRotationSource: LastRotationSource | null;
  keyAgeDays: number | null;
  /** ISO 8601; null without a rotation policy or a known last rotation. */
  nextDueAt: string | null;
  overdue: boolean;
  /** `not-applied`: an allowlist is listed but the provider cannot bind keys to addresses. */
  ipRestricted: 'yes' | 'no' | 'not-applied';
  scopes: string[];
  tags: string[];
  dataAccess: string[];
  posture: VendorPosture | null;
}

/**
 * `rotor inventory`: one row per integration with its last rotation (Vault's `last_rotated_at`
 * metadata, or `last_rotated` for manual keys), key age, next due date and restrictions.
 */
export async function runInventoryCommand(options: InventoryCommandOptions): Promise<number> {
  const inventory = loadCheckedInventory(options.file);
  const now = new Date();

  const rows = await readFromVault('read the key ages from Vault', async () => {
    const vault = await connectVaultIfNeeded(inventory);
    const collected: InventoryRow[] = [];
    for (const entry of inventory.integrations) {
      collected.push(inventoryRow(entry, await readStoredKeyState(vault, entry), now));
    }
    return collected;
  });

  if (options.format === 'json') {
    console.log(JSON.stringify(rows, null, 2));
    return 0;
  }
  console.log(renderTextReport({ headers: inventoryHeaders, rows: rows.map(inventoryCells) }, options.format));
  if (options.format === 'table') {
    const overdue = rows.filter((row) => row.overdue).length;
    console.log(`\n${rows.length} integration${rows.length === 1 ? '' : 's'}, ${overdue} overdue.`);
  }
  return 0;
}

/** Builds the report row of one integration from its entry and what Vault records. */
export function inventoryRow(entry: IntegrationEntry, keyState: StoredKeyState, now: Date): InventoryRow {
  const status = keyAgeStatus(entry.rotation, keyState.lastRotation?.at, now);
  return {
    id: entry.id,
    provider: entry.provider,
    owner: entry.owner ?? null,
    lastRotatedAt: keyState.lastRotation?.at.toISOString() ?? null,
    lastRotationSource: keyState.lastRotation?.source ?? null,
    keyAgeDays: status.ageDays ?? null,
    nextDueAt: status.due?.nextDueAt.toISOString() ?? null,
    overdue: status.overdue,
    ipRestricted: ipRestriction(entry),
    scopes: entry.restrictions.scopes,
    tags: entry.tags,
    dataAccess: entry.data_access,
    posture: entry.posture ?? null,
  };
}

// A manual key's allowlist is what a person set in the vendor console, so it counts as applied.
function ipRestriction(entry: IntegrationEntry): InventoryRow['ipRestricted'] {
  const allowlist = entry.restrictions.ip_allowlist.filter((cidr) => cidr !== '0.0.0.0/0' && cidr !== '::/0');
  if (allowlist.length === 0) {
    return 'no';
  }
  return isManualIntegration(entry) || getProvider(entry.provider).capabilities.ipAllowlist ? 'yes' : 'not-applied';
}

const inventoryHeaders = ['id', 'provider', 'owner', 'last rotation', 'age (days)', 'next due (UTC)', 'overdue', 'ip-restricted', 'scopes', 'tags', 'posture'];

function inventoryCells(row: InventoryRow): string[] {
  return [
    row.id,
    row.provider,
    row.owner ?? '-',
    lastRotationCell(row),
    row.keyAgeDays === null ? '-' : String(row.keyAgeDays),
    row.nextDueAt === null ? '-' : row.nextDueAt.slice(0, 16).replace('T', ' '),
    yesNo(row.overdue),
    row.ipRestricted,
    row.scopes.join(',') || '-',
    row.tags.join(',') || '-',
    postureSummary(row.posture),
  ];
}

// "(stored)" marks a key Rotor has not rotated yet: the date is when the secret was written to Vault.
function lastRotationCell(row: InventoryRow): string {
  if (row.lastRotatedAt === null) {
    return 'no key';
  }
  const date = row.lastRotatedAt.slice(0, 10);
  return row.lastRotationSource === 'vault-version' ? `${date} (stored)` : date;
}

/** Summarises the vendor posture in one cell, such as "2FA, audit, breach policy, reviewed 2025-03-01". */
export function postureSummary(posture: VendorPosture | null): string {
  if (!posture) {
    return 'not recorded';
  }
  return [
    posture.two_factor_enforced ? '2FA' : 'no 2FA',
    posture.security_audit ? 'audit' : 'no audit',
    posture.breach_notification ? 'breach policy' : 'no breach policy',
    `reviewed ${posture.last_reviewed}`,
  ].join(', ');
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

import { getProvider } from '../../providers/registry';
import { auditIntegration, severities, severityRank, sortFindings, type Finding, type Severity } from '../../shared/audit';
import { isManualIntegration, type IntegrationEntry } from '../../shared/inventory';
import { readManagementCredentialState, readStoredKeyState } from '../../shared/integration-state';
import type { VaultStore } from '../../shared/vault';
import { OperationFailedError } from '../errors';
import { loadCheckedInventory } from '../integrations';
import { renderTextReport, type ReportFormat } from '../report-format';
import { connectVaultIfNeeded, readFromVault } from '../vault-access';

/** Severities --fail-on accepts; `info` findings never fail an audit. */
export const failOnSeverities = ['low', 'medium', 'high', 'critical'] as const;

export interface AuditCommandOptions {
  file: string;
  format: ReportFormat;
  failOn: (typeof failOnSeverities)[number];
}

/**
 * `rotor audit`: checks every integration's rotation age, restrictions, vendor posture and
 * management credential. Exits 1 when a finding is at or above --fail-on, so CI can gate on it.
 */
export async function runAuditCommand(options: AuditCommandOptions): Promise<number> {
  const inventory = loadCheckedInventory(options.file);
  const now = new Date();

  const findings = await readFromVault('audit the integrations against Vault', async () => {
    const vault = await connectVaultIfNeeded(inventory);
    const collected: Finding[] = [];
    for (const entry of inventory.integrations) {
      collected.push(...(await auditEntry(vault, entry, now)));
    }
    return sortFindings(collected);
  });
  const failing = findings.filter((finding) => severityRank(finding.severity) >= severityRank(options.failOn));

  printFindings(findings, options, inventory.integrations.length, failing.length);
  if (failing.length > 0) {
    throw new OperationFailedError(`Audit failed: ${failing.length} finding${failing.length === 1 ? '' : 's'} at or above ${options.failOn}.`);
  }
  return 0;
}

async function auditEntry(vault: VaultStore | undefined, entry: IntegrationEntry, now: Date): Promise<Finding[]> {
  const provider = getProvider(entry.provider);
  const keyState = await readStoredKeyState(vault, entry);
  const managementCredential =
    isManualIntegration(entry) || !vault ? undefined : await readManagementCredentialState(vault, entry.management_credential, provider);
  const config = provider.configSchema.safeParse(entry.config);
  const configuredScopes = config.success ? (provider.configuredScopes?.(config.data) ?? []) : [];
  return auditIntegration({ entry, capabilities: provider.capabilities, configuredScopes, keyState, managementCredential, kvMount: vault?.kvMount ?? 'secret', now });
}

function printFindings(findings: Finding[], options: AuditCommandOptions, integrationCount: number, failingCount: number): void {
  if (options.format === 'json') {
    console.log(JSON.stringify({ integrations: integrationCount, failOn: options.failOn, failing: failingCount, counts: countBySeverity(findings), findings }, null, 2));
    return;
  }
  if (findings.length > 0) {
    const rows = findings.map((finding) => [finding.severity, finding.integration, finding.check, finding.message]);
    console.log(renderTextReport({ headers: ['severity', 'integration', 'check', 'finding'], rows }, options.format));
  }
  if (options.format !== 'csv') {
    console.log(`${findings.length > 0 ? '\n' : ''}${summaryLine(findings, integrationCount)}`);
  }
}

function summaryLine(findings: Finding[], integrationCount: number): string {
  const integrations = `${integrationCount} integration${integrationCount === 1 ? '' : 's'}`;
  if (findings.length === 0) {
    return `No findings in ${integrations}.`;
  }
  const counts = countBySeverity(findings);
  const parts = [...severities]
    .reverse()
    .filter((severity) => counts[severity] > 0)
    .map((severity) => `${counts[severity]} ${severity}`);
  return `${findings.length} finding${findings.length === 1 ? '' : 's'} in ${integrations}: ${parts.join(', ')}.`;
}

function countBySeverity(findings: Finding[]): Record<Severity, number> {
  const counts = Object.fromEntries(severities.map((severity) => [severity, 0])) as Record<Severity, number>;
  for (const finding of findings) {
    counts[finding.severity] += 1;
  }
  return counts;
}

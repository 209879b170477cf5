import type { ProviderCapabilities } from '../providers/contract';
import { formatDuration } from './durations';
import { isManualIntegration, type IntegrationEntry } from './inventory';
import type { ManagementCredentialState, StoredKeyState } from './integration-state';
import { keyAgeStatus, parseCalendarDate } from './rotation-due';

/**
 * The audit's findings for one integration, from its inventory entry, its provider's
 * capabilities and what Vault records. Pure: the caller reads Vault and passes the result in.
 */

/** Severities in increasing order. `info` never fails an audit, because --fail-on starts at low. */
export const severities = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof severities)[number];

export type FindingCheck =
  | 'rotation-overdue'
  | 'no-rotation-policy'
  | 'current-key-missing'
  | 'management-credential-missing'
  | 'management-credential-invalid'
  | 'no-ip-allowlist'
  | 'restriction-not-applied'
  | 'broad-scopes'
  | 'no-expiry'
  | 'posture-missing'
  | 'posture-stale'
  | 'two-factor-not-enforced'
  | 'no-security-audit'
  | 'no-breach-notification'
  | 'manual-rotation';

export interface Finding {
  integration: string;
  severity: Severity;
  check: FindingCheck;
  /** The problem and the fix, without any secret value. */
  message: string;
}

export interface AuditSubject {
  entry: IntegrationEntry;
  capabilities: ProviderCapabilities;
  /** Permissions the provider config gives new keys when restrictions.scopes is empty (Provider.configuredScopes). */
  configuredScopes?: string[];
  keyState: StoredKeyState;
  /** Undefined for manual integrations, which have no management credential. */
  managementCredential?: ManagementCredentialState;
  /** KV mount, to name Vault paths as `secret/apps/...` in messages. */
  kvMount: string;
  now: Date;
}

/** Scopes that grant everything or nearly everything, in the words vendors use. */
export const broadScopes = ['*', 'admin', 'full', 'full-access', 'full_access', 'write-all', 'write_all', 'all'];

/** A vendor posture review older than this is reported as stale. */
export const postureReviewMaxAgeDays = 365;

const anyAddress = ['0.0.0.0/0', '::/0'];

export function severityRank(severity: Severity): number {
  return severities.indexOf(severity);
}

/** Returns every finding for one integration. */
export function auditIntegration(subject: AuditSubject): Finding[] {
  const found: Array<Omit<Finding, 'integration'>> = [
    ...rotationFindings(subject),
    ...vaultFindings(subject),
    ...restrictionFindings(subject),
    ...postureFindings(subject),
  ];
  return found.map((finding) => ({ integration: subject.entry.id, ...finding }));
}

/** Sorts findings with the most severe first, then by integration id, check and message, so reports are stable. */
export function sortFindings(findings: Finding[]): Finding[] {
  return [...findings].sort(
    (left, right) =>
      severityRank(right.severity) - severityRank(left.severity) ||
      left.integration.localeCompare(right.integration) ||
      left.check.localeCompare(right.check) ||
      left.message.localeCompare(right.message),
  );
}

type FindingDraft = Omit<Finding, 'integration'>;

function rotationFindings({ entry, keyState, now }: AuditSubject): FindingDraft[] {
  const findings: FindingDraft[] = [];
  const manual = isManualIntegration(entry);
  const rotateAdvice = manual ? 'rotate it by hand and update last_rotated' : `rotate it with \`rotor rotate ${entry.id}\``;

  if (manual) {
    const vendor = typeof entry.config.vendor === 'string' ? entry.config.vendor : 'the vendor';
    findings.push({
      severity: 'info',
      check: 'manual-rotation',
      message: `cannot be rotated automatically, because ${vendor} has no key-management API; rotate by hand and update last_rotated`,
    });
  }

  const status = keyAgeStatus(entry.rotation, keyState.lastRotation?.at, now);
  if (entry.rotation.rotation_period === undefined && entry.rotation.rotation_schedule === undefined) {
    findings.push({ severity: 'low', check: 'no-rotation-policy', message: 'neither rotation_period nor rotation_schedule is set, so the key is never due; set one of them' });
  } else if (status.overdue && status.due) {
    const age = `key is ${status.ageDays} days old`;
    const interval = formatDuration(status.due.intervalMs);
    const dueDate = status.due.nextDueAt.toISOString().slice(0, 10);
    findings.push(
      status.overdueTwice
        ? { severity: 'critical', check: 'rotation-overdue', message: `${age}, more than twice its rotation interval of ${interval} (due ${dueDate}); ${rotateAdvice}` }
        : { severity: 'high', check: 'rotation-overdue', message: `${age} and was due on ${dueDate} (every ${interval}); ${rotateAdvice}` },
    );
  }
  return findings;
}

function vaultFindings({ entry, keyState, managementCredential, kvMount }: AuditSubject): FindingDraft[] {
  if (isManualIntegration(entry)) {
    return [];
  }
  const findings: FindingDraft[] = [];
  if (keyState.currentKeyStored === false) {
    findings.push({
      severity: 'medium',
      check: 'current-key-missing',
      message: `no current key at ${kvMount}/${entry.vault_path} in Vault, so consumers have nothing to read; run \`rotor rotate ${entry.id}\` to create one`,
    });
  }
  const credentialPath = `${kvMount}/${entry.management_credential}`;
  if (managementCredential?.status === 'missing') {
    findings.push({
      severity: 'high',
      check: 'management-credential-missing',
      message: `management credential missing: nothing at ${credentialPath} in Vault, so rotations fail in planning; write the ${entry.provider} credential there (\`rotor providers\` lists its fields)`,
    });
  }
  if (managementCredential?.status === 'invalid') {
    findings.push({
      severity: 'high',
      check: 'management-credential-invalid',
      message: `management credential at ${credentialPath} does not match what ${entry.provider} expects (fields: ${managementCredential.fields.join(', ')}), so rotations fail in planning; fix the stored fields`,
    });
  }
  return findings;
}

function restrictionFindings(subject: AuditSubject): FindingDraft[] {
  return isManualIntegration(subject.entry) ? manualRestrictionFindings(subject) : providerRestrictionFindings(subject);
}

function providerRestrictionFindings({ entry, capabilities, configuredScopes = [] }: AuditSubject): FindingDraft[] {
  const findings: FindingDraft[] = [];
  const { ip_allowlist: allowlist, scopes, expires_after: expiresAfter } = entry.restrictions;
  const notApplied = (field: string, feature: string): FindingDraft => ({
    severity: 'medium',
    check: 'restriction-not-applied',
    message: `restrictions.${field} is set but not applied by the provider: ${entry.provider} keys have no ${feature}; enforce it another way or remove it`,
  });

  if (capabilities.ipAllowlist) {
    findings.push(...allowlistFindings(allowlist, 'high', `${entry.provider} can bind keys to IP addresses`));
  } else if (allowlist.length > 0) {
    findings.push(notApplied('ip_allowlist', 'IP allowlist'));
  }

  if (capabilities.scopes && scopes.length === 0 && configuredScopes.length > 0) {
    findings.push(...scopeFindings(configuredScopes, true, 'the provider config grants'));
  } else if (capabilities.scopes) {
    findings.push(...scopeFindings(scopes, true));
  } else if (scopes.length > 0) {
    findings.push(notApplied('scopes', 'scopes'));
  }

  if (!capabilities.expiry && expiresAfter !== undefined) {
    findings.push(notApplied('expires_after', 'expiry'));
  } else if (capabilities.expiry && expiresAfter === undefined) {
    findings.push({
      severity: 'low',
      check: 'no-expiry',
      message: `no restrictions.expires_after, although ${entry.provider} can make keys expire; set one to bound how long a leaked key works`,
    });
  }
  return findings;
}

// Rotor does not know which restrictions a manual vendor offers, so the inventory's values are
// taken as what a person set in the console, and a missing allowlist is a question to check.
function manualRestrictionFindings({ entry }: AuditSubject): FindingDraft[] {
  const vendor = typeof entry.config.vendor === 'string' ? entry.config.vendor : 'the vendor';
  return [...allowlistFindings(entry.restrictions.ip_allowlist, 'medium', `if ${vendor} supports IP allowlists, set one in its console and record it`), ...scopeFindings(entry.restrictions.scopes, false)];
}

function allowlistFindings(allowlist: string[], severity: Severity, reason: string): FindingDraft[] {
  if (allowlist.length === 0) {
    return [{ severity, check: 'no-ip-allowlist', message: `no restrictions.ip_allowlist, so the key works from any address; ${reason}` }];
  }
  const open = allowlist.filter((entry) => anyAddress.includes(entry));
  if (open.length > 0) {
    return [{ severity, check: 'no-ip-allowlist', message: `restrictions.ip_allowlist contains ${open.join(' and ')}, which allows every address; list the consumers' addresses instead` }];
  }
  return [];
}

function scopeFindings(scopes: string[], providerAppliesScopes: boolean, source = 'restrictions.scopes includes'): FindingDraft[] {
  if (scopes.length === 0) {
    return providerAppliesScopes
      ? [{ severity: 'medium', check: 'broad-scopes', message: "no restrictions.scopes, so new keys get the provider's broadest permissions; list the scopes consumers need" }]
      : [];
  }
  const broad = scopes.filter((scope) => broadScopes.includes(scope.toLowerCase()));
  if (broad.length === 0) {
    return [];
  }
  return [{ severity: 'medium', check: 'broad-scopes', message: `${source} ${broad.map((scope) => `"${scope}"`).join(', ')}, which grants broad access; list narrower scopes` }];
}

function postureFindings({ entry, now }: AuditSubject): FindingDraft[] {
  const posture = entry.posture;
  if (!posture) {
    return [
      {
        severity: 'medium',
        check: 'posture-missing',
        message: 'vendor posture not recorded; add posture with two_factor_enforced, security_audit, breach_notification and last_reviewed',
      },
    ];
  }
  const findings: FindingDraft[] = [];
  const reviewAgeDays = Math.floor((now.getTime() - parseCalendarDate(posture.last_reviewed).getTime()) / 86_400_000);
  if (reviewAgeDays > postureReviewMaxAgeDays) {
    findings.push({
      severity: 'low',
      check: 'posture-stale',
      message: `vendor posture last reviewed on ${posture.last_reviewed}, ${reviewAgeDays} days ago (more than ${postureReviewMaxAgeDays}); review it and update posture.last_reviewed`,
    });
  }
  if (!posture.two_factor_enforced) {
    findings.push({
      severity: 'medium',
      check: 'two-factor-not-enforced',
      message: 'the vendor account does not enforce two-factor authentication; enforce it and set posture.two_factor_enforced: true',
    });
  }
  if (posture.security_audit === null) {
    findings.push({ severity: 'low', check: 'no-security-audit', message: 'the vendor publishes no security audit report (posture.security_audit is null)' });
  }
  if (posture.breach_notification === null) {
    findings.push({ severity: 'low', check: 'no-breach-notification', message: 'the vendor has no breach notification policy on record (posture.breach_notification is null)' });
  }
  return findings;
}

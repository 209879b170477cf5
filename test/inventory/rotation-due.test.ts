import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RotationPolicy } from '../../shared/inventory';
import { keyAgeStatus, rotationDue } from '../../shared/rotation-due';

const dayMs = 86_400_000;

function policy(fields: Partial<RotationPolicy>): RotationPolicy {
  return { disable_automated_rotation: false, grace_period: 3_600_000, verify_timeout: 120_000, max_grace: 86_400_000, clear_stale_keys: false, ...fields };
}

describe('rotationDue', () => {
  it('adds rotation_period to the last rotation', () => {
    const due = rotationDue(policy({ rotation_period: 30 * dayMs }), new Date('2025-01-01T10:00:00Z'));

    assert.equal(due?.nextDueAt.toISOString(), '2025-01-31T10:00:00.000Z');
    assert.equal(due?.intervalMs, 30 * dayMs);
    assert.equal(due?.overdueAfter.toISOString(), '2025-01-31T10:00:00.000Z');
  });

  it('takes the next cron time after the last rotation', () => {
    // Mondays 03:00 UTC; 2025-01-01 is a Wednesday.
    const due = rotationDue(policy({ rotation_schedule: '0 3 * * 1', rotation_window: 2 * 3_600_000 }), new Date('2025-01-01T10:00:00Z'));

    assert.equal(due?.nextDueAt.toISOString(), '2025-01-06T03:00:00.000Z');
    assert.equal(due?.intervalMs, 7 * dayMs);
    assert.equal(due?.overdueAfter.toISOString(), '2025-01-06T05:00:00.000Z');
  });

  it('skips a cron time the rotation itself passed', () => {
    // A rotation that started at 03:00 and completed after grace at 04:00 is not due again that day.
    const due = rotationDue(policy({ rotation_schedule: '0 3 * * *' }), new Date('2025-01-01T04:00:00Z'));

    assert.equal(due?.nextDueAt.toISOString(), '2025-01-02T03:00:00.000Z');
  });

  it('is undefined without period or schedule', () => {
    assert.equal(rotationDue(policy({}), new Date('2025-01-01T00:00:00Z')), undefined);
  });
});

describe('keyAgeStatus', () => {
  const now = new Date('2025-03-01T00:00:00Z');
  const thirtyDays = policy({ rotation_period: 30 * dayMs });

  it('fresh key is not overdue', () => {
    const status = keyAgeStatus(thirtyDays, new Date(now.getTime() - 10 * dayMs), now);

    assert.equal(status.ageDays, 10);
    assert.equal(status.overdue, false);
    assert.equal(status.overdueTwice, false);
  });

  it('key past its due time is overdue', () => {
    const status = keyAgeStatus(thirtyDays, new Date(now.getTime() - 31 * dayMs), now);

    assert.equal(status.ageDays, 31);
    assert.equal(status.overdue, true);
    assert.equal(status.overdueTwice, false);
  });

  it('rotation_window delays overdue', () => {
    const windowed = policy({ rotation_period: 30 * dayMs, rotation_window: 2 * dayMs });

    const status = keyAgeStatus(windowed, new Date(now.getTime() - 31 * dayMs), now);

    assert.equal(status.overdue, false);
  });

  it('older than twice the period', () => {
    const status = keyAgeStatus(thirtyDays, new Date(now.getTime() - 61 * dayMs), now);

    assert.equal(status.overdue, true);
    assert.equal(status.overdueTwice, true);
  });

  it('unknown last rotation is neither aged nor overdue', () => {
    const status = keyAgeStatus(thirtyDays, undefined, now);

    assert.equal(status.ageDays, undefined);
    assert.equal(status.due, undefined);
    assert.equal(status.overdue, false);
  });
});

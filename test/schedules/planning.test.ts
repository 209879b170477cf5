import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IntervalSpec, ScheduleDescription } from '@temporalio/client';
import { cronCalendars, parseCron, UnsupportedCronError } from '../../shared/cron-calendars';
import { formatDuration } from '../../shared/durations';
import type { RotationPolicy } from '../../shared/inventory';
import { desiredSchedule, formatChange, jitterShareOfWindow, planSchedules, scheduleTiming, stableSlot, type ScheduleTiming } from '../../shared/schedules';

const day = 86_400_000;
const hour = 3_600_000;
const minute = 60_000;

function policy(fields: Partial<RotationPolicy>): RotationPolicy {
  return {
    disable_automated_rotation: false,
    grace_period: hour,
    verify_timeout: 2 * minute,
    max_grace: day,
    clear_stale_keys: false,
    ...fields,
  } as RotationPolicy;
}

function timingOf(integrationId: string, fields: Partial<RotationPolicy>): ScheduleTiming {
  const timing = scheduleTiming(integrationId, policy(fields));
  assert.ok(timing, `expected a schedule for ${JSON.stringify(fields)}`);
  return timing;
}

function intervalOf(timing: ScheduleTiming): IntervalSpec {
  const [interval] = timing.spec.intervals ?? [];
  assert.ok(interval, 'expected an interval spec');
  return interval;
}

describe('stable offsets', () => {
  it('same id gives the same slot', () => {
    assert.equal(stableSlot('okx-trading-bot', 1000), stableSlot('okx-trading-bot', 1000));
  });

  it('slots stay in range and differ between ids', () => {
    const slots = ['okx-trading-bot', 'aws-ci-deployer', 'bybit-market-maker', 'cloudflare-dns'].map((id) => stableSlot(id, 40_000));
    for (const slot of slots) {
      assert.ok(slot >= 0, `slot ${slot}`);
      assert.ok(slot < 40_000, `slot ${slot}`);
    }
    assert.equal(new Set(slots).size, slots.length, `slots ${slots.join(', ')}`);
  });

  it('one slot or none gives 0', () => {
    assert.equal(stableSlot('okx-trading-bot', 1), 0);
    assert.equal(stableSlot('okx-trading-bot', 0), 0);
  });
});

describe('interval timing', () => {
  it('spreads over the whole period without a window', () => {
    const timing = timingOf('aws-ci-deployer', { rotation_period: 30 * day });
    const interval = intervalOf(timing);

    assert.equal(interval.every, 30 * day);
    assert.equal(timing.windowMs, 30 * day);
    assert.equal(timing.jitterMs, 30 * day * jitterShareOfWindow);
    assert.equal(timing.spec.jitter, timing.jitterMs);
    assert.equal(interval.offset, timing.offsetMs);
    assert.equal(timing.offsetMs % minute, 0);
    assert.ok(timing.offsetMs + timing.jitterMs < 30 * day, `offset ${timing.offsetMs}`);
  });

  it('keeps offset plus jitter inside rotation_window', () => {
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) {
      const timing = timingOf(id, { rotation_period: 7 * day, rotation_window: 2 * hour });

      assert.equal(timing.windowMs, 2 * hour);
      assert.equal(timing.jitterMs, 12 * minute);
      assert.ok(timing.offsetMs + timing.jitterMs < 2 * hour, `offset ${timing.offsetMs} for ${id}`);
    }
  });

  it('is the same for the same id', () => {
    assert.deepEqual(timingOf('okx-trading-bot', { rotation_period: 30 * day }), timingOf('okx-trading-bot', { rotation_period: 30 * day }));
  });

  it('returns undefined without period or schedule', () => {
    assert.equal(scheduleTiming('okx-trading-bot', policy({})), undefined);
  });
});

describe('cron timing', () => {
  it('starts at the cron time without a window', () => {
    const timing = timingOf('okx-trading-bot', { rotation_schedule: '0 3 * * 1' });

    assert.equal(timing.offsetMs, 0);
    assert.equal(timing.jitterMs, 0);
    assert.equal(timing.windowMs, undefined);
    assert.equal(timing.spec.calendars?.length, 1);
    assert.equal(timing.spec.calendars?.[0].comment, 'cron "0 3 * * 1"');
  });

  it('shifts inside rotation_window', () => {
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) {
      const timing = timingOf(id, { rotation_schedule: '0 3 * * 1', rotation_window: 4 * hour });

      assert.equal(timing.jitterMs, 24 * minute);
      assert.ok(timing.offsetMs + timing.jitterMs < 4 * hour, `offset ${timing.offsetMs} for ${id}`);
    }
  });

  it('never shifts past midnight', () => {
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) {
      const timing = timingOf(id, { rotation_schedule: '50 23 * * *', rotation_window: 6 * hour });

      assert.ok(timing.offsetMs < 10 * minute, `offset ${timing.offsetMs} for ${id}`);
    }
  });

  it('seeds H with the integration id', () => {
    const first = timingOf('okx-trading-bot', { rotation_schedule: 'H 3 * * *' });
    const again = timingOf('okx-trading-bot', { rotation_schedule: 'H 3 * * *' });

    assert.deepEqual(first.spec, again.spec);
  });
});

describe('cron calendars', () => {
  it('splits restricted day-of-month and day-of-week', () => {
    const calendars = cronCalendars(parseCron('0 4 1,15 * 1', 'seed'), 0, 'test');

    assert.equal(calendars.length, 2);
    assert.deepEqual(calendars[0].dayOfMonth, [
      { start: 1, end: 1, step: 1 },
      { start: 15, end: 15, step: 1 },
    ]);
    assert.equal(calendars[0].dayOfWeek, '*');
    assert.equal(calendars[1].dayOfMonth, '*');
    assert.deepEqual(calendars[1].dayOfWeek, [{ start: 'MONDAY', end: 'MONDAY', step: 1 }]);
  });

  it('carries shifted minutes into the next hour', () => {
    const calendars = cronCalendars(parseCron('10,40 2,3 * * *', 'seed'), 90, 'test');

    assert.equal(calendars.length, 2);
    assert.deepEqual(calendars[0].minute, [{ start: 40, end: 40, step: 1 }]);
    assert.deepEqual(calendars[0].hour, [{ start: 3, end: 4, step: 1 }]);
    assert.deepEqual(calendars[1].minute, [{ start: 10, end: 10, step: 1 }]);
    assert.deepEqual(calendars[1].hour, [{ start: 4, end: 5, step: 1 }]);
  });

  it('folds Sunday 7 into 0', () => {
    const cron = parseCron('0 0 * * 7', 'seed');

    assert.deepEqual(cron.daysOfWeek, [0]);
  });

  it('rejects L and #', () => {
    assert.throws(() => parseCron('0 0 L * *', 'seed'), UnsupportedCronError);
    assert.throws(() => parseCron('0 0 * * 5L', 'seed'), UnsupportedCronError);
    assert.throws(() => parseCron('0 0 * * 5#2', 'seed'), UnsupportedCronError);
  });

  it('rejects a shift past midnight', () => {
    assert.throws(() => cronCalendars(parseCron('50 23 * * *', 'seed'), 10, 'test'), RangeError);
  });
});

describe('schedule plan', () => {
  const action = { type: 'startWorkflow' as const, workflowType: 'rotateKey', taskQueue: 'rotor', args: [] };
  const desired = desiredSchedule({ integrationId: 'billing-okx', provider: 'aws-iam', timing: timingOf('billing-okx', { rotation_period: 30 * day }), paused: false, action });

  function described(memo: Record<string, unknown> | undefined): ScheduleDescription {
    return { memo, state: { paused: false } } as unknown as ScheduleDescription;
  }

  it('creates a missing schedule', () => {
    const plan = planSchedules({ desired: [desired], existing: new Map(), unscheduled: new Map() });

    assert.deepEqual(
      plan.changes.map((change) => formatChange(change, 'plan')),
      [`create rotor-billing-okx: every 30d offset ${formatDuration(desired.timing.offsetMs)} jitter 3d (window 30d)`],
    );
    assert.deepEqual(plan.conflicts, []);
  });

  it('reports a foreign schedule at a desired id', () => {
    const plan = planSchedules({ desired: [desired], existing: new Map([['rotor-billing-okx', described(undefined)]]), unscheduled: new Map() });

    assert.deepEqual(plan.changes, []);
    assert.equal(plan.conflicts.length, 1);
    assert.match(plan.conflicts[0].message, /^Schedule rotor-billing-okx exists in Temporal but Rotor did not create it/);
  });

  it('deletes only its own schedules', () => {
    const existing = new Map([
      ['rotor-gone', described({ managedBy: 'rotor' })],
      ['rotor-idle', described({ managedBy: 'rotor' })],
      ['rotor-stranger', described({ owner: 'billing' })],
      ['nightly-report', described({ managedBy: 'rotor' })],
    ]);
    const unscheduled = new Map([['idle', 'integration has no rotation_period or rotation_schedule']]);

    const plan = planSchedules({ desired: [], existing, unscheduled });

    assert.deepEqual(
      plan.changes.map((change) => formatChange(change, 'apply')),
      ['deleted rotor-gone: integration no longer in the inventory', 'deleted rotor-idle: integration has no rotation_period or rotation_schedule'],
    );
  });
});

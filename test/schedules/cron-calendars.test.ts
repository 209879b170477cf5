import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@temporalio/client';
import { CronExpressionParser } from 'cron-parser';
import { cronCalendars, parseCron } from '../../shared/cron-calendars';
import { testClient, uniqueSuffix } from '../support/environment';

// Each case: a cron expression and a shift in minutes. Temporal's next fire times for the
// calendars must be cron-parser's times for the expression plus the shift.
const cases: Array<[string, number]> = [
  ['0 3 * * 1', 0],
  ['0 3 * * 1', 135],
  ['0 4 1,15 * 1', 0],
  ['50 22 * * *', 65],
  ['10,40 2-5 * * 1-5', 50],
  ['30 9 */2 jan,jul *', 20],
  ['*/20 0-22 * * 0', 59],
];

describe('cron calendars on Temporal', () => {
  let client: Client;
  const scheduleIds: string[] = [];

  before(async () => {
    client = await testClient();
  });

  after(async () => {
    for (const scheduleId of scheduleIds) {
      await client.schedule.getHandle(scheduleId).delete();
    }
    await client.connection.close();
  });

  for (const [expression, shiftMinutes] of cases) {
    it(`"${expression}" shifted ${shiftMinutes}m fires at cron times`, async () => {
      const scheduleId = `cron-calendars-${uniqueSuffix()}`;
      const calendars = cronCalendars(parseCron(expression, scheduleId), shiftMinutes, 'test');
      // Paused, on a task queue no worker polls: the schedule only reports its next times.
      await client.schedule.create({
        scheduleId,
        spec: { calendars, jitter: 0 },
        action: { type: 'startWorkflow', workflowType: 'rotateKey', taskQueue: `nobody-${scheduleId}`, args: [] },
        state: { paused: true },
      });
      scheduleIds.push(scheduleId);

      const described = await client.schedule.getHandle(scheduleId).describe();
      const temporalTimes = described.info.nextActionTimes.map((time) => time.toISOString());
      const expected = cronTimes(expression, shiftMinutes, 40).filter((time) => time >= temporalTimes[0]).slice(0, temporalTimes.length);

      assert.equal(temporalTimes.length, 10);
      assert.deepEqual(temporalTimes, expected);
    });
  }
});

// cron-parser's fire times, shifted, starting early enough to include Temporal's first time.
function cronTimes(expression: string, shiftMinutes: number, count: number): string[] {
  const start = new Date(Date.now() - shiftMinutes * 60_000 - 60_000);
  const parsed = CronExpressionParser.parse(expression, { tz: 'UTC', currentDate: start });
  return parsed.take(count).map((time) => new Date(time.getTime() + shiftMinutes * 60_000).toISOString());
}

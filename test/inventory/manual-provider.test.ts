import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProviderError, type ProviderContext } from '../../providers/contract';
import { manualProvider } from '../../providers/manual';
import { createLogger } from '../../shared/logger';
import { runCli } from '../support/cli';
import { dateDaysAgo, writeInventoryDocument } from './fixtures';

describe('manual provider', () => {
  it('rotate rejects a manual integration with exit 2', async () => {
    const file = writeInventoryDocument({
      integrations: [
        {
          id: 'kraken-treasury',
          provider: 'manual',
          config: { vendor: 'Kraken', console_url: 'https://pro.kraken.com/app/settings/api' },
          last_rotated: dateDaysAgo(30),
        },
      ],
    });

    const result = await runCli(['rotate', 'kraken-treasury', '--file', file]);

    assert.equal(result.code, 2);
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(
      result.stderr,
      `kraken-treasury is a manual integration: Kraken has no key-management API, so Rotor cannot rotate its key. ` +
        `Rotate it by hand at https://pro.kraken.com/app/settings/api, then set last_rotated: ${today} on kraken-treasury in ${file}.\n`,
    );
  });

  it('every key operation fails as invalid-config', async () => {
    const context: ProviderContext<{ vendor: string }, Record<string, never>> = {
      config: { vendor: 'Kraken' },
      credential: {},
      logger: createLogger({ level: 'silent' }),
    };
    const operations: Array<[string, () => Promise<unknown>]> = [
      ['listKeys', () => manualProvider.listKeys(context)],
      ['createKey', () => manualProvider.createKey(context, { label: 'rotor-test', restrictions: {} })],
      ['verifyKey', () => manualProvider.verifyKey(context, 'key', {})],
      ['revokeKey', () => manualProvider.revokeKey(context, 'key')],
    ];

    for (const [operation, call] of operations) {
      await assert.rejects(call, (error: unknown) => {
        assert.ok(error instanceof ProviderError);
        assert.equal(error.kind, 'invalid-config');
        assert.equal(error.retryable, false);
        assert.equal(error.details.operation, operation);
        assert.match(error.message, /^Manual keys cannot be rotated by Rotor/);
        return true;
      });
    }
  });

  it('providers command lists it', async () => {
    const result = await runCli(['providers']);

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^manual — keys rotated by hand/m);
    assert.match(result.stdout, /vendor \(string, required\)/);
  });
});

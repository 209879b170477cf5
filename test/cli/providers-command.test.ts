import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getProvider } from '../../providers/registry';
import { runCli } from '../support/cli';

const expectedProviders = ['aws-iam', 'binance', 'bybit', 'cloudflare', 'datadog', 'gateio', 'gitlab', 'kucoin', 'manual', 'okx', 'openai', 'quicknode'];

describe('rotor providers', () => {
  it('lists every provider with capabilities', async () => {
    const result = await runCli(['providers']);

    assert.equal(result.code, 0, result.stderr);
    for (const name of expectedProviders) {
      assert.match(result.stdout, new RegExp(`^${name} — `, 'm'));
    }
    assert.match(result.stdout, /^okx — .*\n {2}capabilities: IP allowlist yes, scopes yes, expiry no, usage data no, max keys per principal 50, rate limit 1\/s$/m);
  });

  it('--json gives fields, secret and help', async () => {
    const result = await runCli(['providers', '--json']);
    const providers = JSON.parse(result.stdout) as Array<{ name: string; help: string; config: { properties?: object }; secret: { properties?: object } }>;
    const gitlab = providers.find((provider) => provider.name === 'gitlab');

    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      providers.map((provider) => provider.name),
      expectedProviders,
    );
    assert.ok(providers.every((provider) => provider.help.length > 0), 'every provider should carry its help text');
    assert.ok(Object.keys(gitlab?.config.properties ?? {}).includes('token_type'));
    assert.ok(Object.keys(gitlab?.secret.properties ?? {}).includes('token'));
  });

  it('configured scopes of default configs', () => {
    const scopesOf = (name: string, config: Record<string, unknown>): string[] | undefined => {
      const provider = getProvider(name);
      return provider.configuredScopes?.(provider.configSchema.parse(config));
    };

    assert.deepEqual(scopesOf('okx', { sub_account: 'tradingbot01' }), ['read_only']);
    assert.deepEqual(scopesOf('bybit', { sub_uid: 53888002 }), ['read-only']);
    assert.deepEqual(scopesOf('binance', { sub_account_id: 437329423 }), ['read-only']);
    assert.deepEqual(scopesOf('kucoin', { sub_name: 'gridbot01' }), ['General']);
    assert.deepEqual(scopesOf('bybit', { sub_uid: 53888002, read_only: false, permissions: { ContractTrade: ['Order'] } }), ['ContractTrade:Order']);
  });
});

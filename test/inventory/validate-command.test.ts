import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import { listProviders } from '../../providers/registry';
import { runCli } from '../support/cli';
import { writeInventoryText } from './fixtures';

/**
 * `rotor validate` on bad inventories: each problem is one line of stderr,
 * `file:line: yaml.path: message`, and the exit code is 2.
 */

const header = 'version: 1\nintegrations:\n';

// Six lines; as the first integration its id is on line 3 and vault_path on line 8.
function awsIntegration(id: string): string {
  return `  - id: ${id}
    provider: aws-iam
    config:
      user_name: ci-deployer
    management_credential: rotor/management/${id}
    vault_path: apps/${id}/aws
`;
}

const storeInVault = 'The inventory must not contain secrets: store it in Vault and reference its KV path instead.';
const knownProviders = `expected one of: ${listProviders().map((provider) => provider.name).join(', ')} (\`rotor providers\` describes them)`;
const cidrExample = 'expected an IPv4 or IPv6 address or CIDR block, such as 203.0.113.0/24 or 2001:db8::/32';

async function validate(text: string): Promise<{ file: string; code: number | null; lines: string[]; stdout: string; stderr: string }> {
  const file = writeInventoryText(text);
  const result = await runCli(['validate', '--file', file]);
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  return { file, code: result.code, lines, stdout: result.stdout, stderr: result.stderr };
}

async function assertProblems(text: string, expected: Array<[number, string]>): Promise<void> {
  const result = await validate(text);
  const expectedLines = expected.map(([line, problem]) => `${result.file}:${line}: ${problem}`);

  assert.equal(result.code, 2, result.stdout);
  assert.deepEqual(result.lines, expectedLines);
}

describe('rotor validate', () => {
  it('valid inventory prints a summary', async () => {
    const result = await validate(header + awsIntegration('ci') + awsIntegration('billing'));

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${result.file}: valid, 2 integrations across 1 provider.\n`);
    assert.equal(result.stderr, '');
  });

  it('missing file says how to name one', async () => {
    const result = await runCli(['validate', '--file', '/nonexistent/rotor-inventory.yaml']);

    assert.equal(result.code, 2);
    assert.match(result.stderr, /^\/nonexistent\/rotor-inventory\.yaml: \(root\): cannot read the inventory: file not found; pass the file with --file or set ROTOR_INVENTORY$/m);
  });

  it('folder instead of a file', async () => {
    const result = await runCli(['validate', '--file', path.dirname(writeInventoryText(header))]);

    assert.equal(result.code, 2);
    assert.match(result.stderr, /cannot read the inventory: this is a folder; pass the inventory file itself with --file/);
  });

  it('duplicate ids', async () => {
    await assertProblems(header + awsIntegration('ci') + awsIntegration('ci'), [[9, 'integrations[1].id: duplicate id "ci": integrations[0] has it already']]);
  });

  it('unknown provider of an integration', async () => {
    const text = header + awsIntegration('ci').replace('provider: aws-iam', 'provider: kraken');

    await assertProblems(text, [[4, `integrations[0].provider: unknown provider "kraken"; ${knownProviders}`]]);
  });

  it('unknown provider and bad rate limit in providers', async () => {
    const text = `version: 1
providers:
  kraken:
    rate_limit_per_second: 2
  aws-iam:
    rate_limit_per_second: 0
integrations:
${awsIntegration('ci')}`;

    await assertProblems(text, [
      [3, `providers.kraken: unknown provider "kraken"; ${knownProviders}`],
      [6, 'providers.aws-iam.rate_limit_per_second: expected a number greater than 0'],
    ]);
  });

  it('provider config that fails the provider schema', async () => {
    const text = `${header}  - id: ci
    provider: aws-iam
    config:
      user_name: ci-deployer
      region: moon-base
      regoin: us-east-1
    management_credential: rotor/management/ci
    vault_path: apps/ci/aws
`;

    await assertProblems(text, [
      [7, 'integrations[0].config.region: expected an AWS region such as us-east-1'],
      [8, 'integrations[0].config.regoin: unknown field "regoin"; expected one of: user_name, region, endpoint, sts_endpoint'],
    ]);
  });

  it('bad CIDRs in ip_allowlist, IPv4 and IPv6', async () => {
    const text = `${header}${awsIntegration('ci')}    restrictions:
      ip_allowlist:
        - 10.0.0.0/8
        - 10.0.0.300/24
        - 203.0.113.7/24
        - 2001:db8::/129
        - "2001:db8::zz"
        - 2001:db8::1/64
        - 10.0.0.1/33
        - 2001:db8::/32
        - 198.51.100.7
`;

    await assertProblems(text, [
      [12, `integrations[0].restrictions.ip_allowlist[1]: invalid address "10.0.0.300/24": ${cidrExample}`],
      [13, 'integrations[0].restrictions.ip_allowlist[2]: "203.0.113.7/24" has bits set after its /24 prefix; expected the network address 203.0.113.0/24, or a /32 for one address'],
      [14, 'integrations[0].restrictions.ip_allowlist[3]: invalid prefix length in "2001:db8::/129": expected /0 to /128 for an IPv6 address'],
      [15, `integrations[0].restrictions.ip_allowlist[4]: invalid address "2001:db8::zz": ${cidrExample}`],
      [16, 'integrations[0].restrictions.ip_allowlist[5]: "2001:db8::1/64" has bits set after its /64 prefix; expected the network address 2001:db8::/64, or a /128 for one address'],
      [17, 'integrations[0].restrictions.ip_allowlist[6]: invalid prefix length in "10.0.0.1/33": expected /0 to /32 for an IPv4 address'],
    ]);
  });

  it('bad cron in rotation_schedule', async () => {
    const text = `${header}${awsIntegration('ci')}    rotation:
      rotation_schedule: "61 3 * * *"
  - id: billing
    provider: aws-iam
    config: { user_name: billing }
    management_credential: rotor/management/billing
    vault_path: apps/billing/aws
    rotation:
      rotation_schedule: "0 3 * *"
`;

    await assertProblems(text, [
      [10, 'integrations[0].rotation.rotation_schedule: invalid cron expression: Constraint error, got value 61 expected range 0-59'],
      [17, 'integrations[1].rotation.rotation_schedule: expected a cron expression with 5 fields (minute hour day-of-month month day-of-week), got 4'],
    ]);
  });

  it('rotation_window shorter than 1h', async () => {
    const text = `${header}${awsIntegration('ci')}    rotation:
      rotation_period: 30d
      rotation_window: 30m
`;

    await assertProblems(text, [[11, 'integrations[0].rotation.rotation_window: expected a window of at least 1h, the minimum Vault accepts']]);
  });

  it('rotation_window without period or schedule', async () => {
    const text = `${header}${awsIntegration('ci')}    rotation:
      rotation_window: 2h
`;

    await assertProblems(text, [
      [10, 'integrations[0].rotation.rotation_window: rotation_window needs a due time to count from; expected rotation_period or rotation_schedule beside it'],
    ]);
  });

  it('rotation_window as long as the period', async () => {
    const text = `${header}${awsIntegration('ci')}    rotation:
      rotation_period: 1d
      rotation_window: 24h
`;

    await assertProblems(text, [[11, 'integrations[0].rotation.rotation_window: expected a rotation_window shorter than rotation_period']]);
  });

  it('period and schedule together', async () => {
    const text = `${header}${awsIntegration('ci')}    rotation:
      rotation_period: 30d
      rotation_schedule: "0 3 * * 1"
`;

    await assertProblems(text, [[11, 'integrations[0].rotation.rotation_schedule: set either rotation_period or rotation_schedule, not both']]);
  });

  it('fields a rotation needs are required', async () => {
    const text = `${header}  - id: ci
    provider: aws-iam
    config: { user_name: ci-deployer }
    last_rotated: "2025-01-01"
`;

    await assertProblems(text, [
      [3, 'integrations[0].management_credential: missing; expected the KV path of the credential that creates and revokes keys, such as rotor/management/okx (only manual integrations go without)'],
      [3, 'integrations[0].vault_path: missing; expected the KV path consumers read the key from, such as apps/billing/okx'],
      [6, 'integrations[0].last_rotated: last_rotated is for manual integrations only; Rotor records rotations of aws-iam keys in Vault metadata, so remove it'],
    ]);
  });

  it('manual integration needs last_rotated and a vendor', async () => {
    const text = `${header}  - id: kraken
    provider: manual
    config:
      console_url: not-a-url
`;

    await assertProblems(text, [
      [3, 'integrations[0].last_rotated: missing; expected the date the key was last rotated by hand, as YYYY-MM-DD'],
      [5, 'integrations[0].config.vendor: missing; expected a string'],
      [6, 'integrations[0].config.console_url: expected an http or https URL of the vendor console page for API keys'],
    ]);
  });

  it('dates that are invalid or in the future', async () => {
    const text = `${header}  - id: kraken
    provider: manual
    config: { vendor: Kraken }
    last_rotated: "2025-02-30"
    posture:
      two_factor_enforced: yes
      security_audit: null
      breach_notification: null
      last_reviewed: "2999-01-01"
`;

    await assertProblems(text, [
      [6, 'integrations[0].last_rotated: expected a date as YYYY-MM-DD, such as 2025-03-01'],
      [8, 'integrations[0].posture.two_factor_enforced: expected true or false'],
      [11, 'integrations[0].posture.last_reviewed: expected a date that is not in the future'],
    ]);
  });

  it('bad defaults are reported once at their own line', async () => {
    const text = `version: 1
defaults:
  owner: platform-team
  rotation:
    grace_period: soon
    colour: blue
integrations:
${awsIntegration('ci')}${awsIntegration('billing')}`;

    await assertProblems(text, [
      [5, 'defaults.rotation.grace_period: expected a duration with a unit, such as 90s, 15m, 12h or 30d (units: ms, s, m, h, d, w, y)'],
      [
        6,
        'defaults.rotation.colour: unknown field "colour"; expected one of: rotation_period, rotation_schedule, rotation_window, disable_automated_rotation, grace_period, verify_timeout, idle_period, max_grace, clear_stale_keys',
      ],
    ]);
  });

  it('unknown field names the expected fields', async () => {
    const text = `${header}${awsIntegration('ci')}    restrictions:
      ip_allow_list: [10.0.0.0/8]
`;

    await assertProblems(text, [[10, 'integrations[0].restrictions.ip_allow_list: unknown field "ip_allow_list"; expected one of: ip_allowlist, scopes, expires_after, usage_limits']]);
  });

  it('lists every problem of a file at once', async () => {
    const text = `${header}${awsIntegration('ci')}    rotation:
      grace_period: soon
${awsIntegration('ci')}    owner: ${['AKIA', 'IOSFODNN7', 'EXAMPLE'].join('')}
`;

    await assertProblems(text, [
      [10, 'integrations[0].rotation.grace_period: expected a duration with a unit, such as 90s, 15m, 12h or 30d (units: ms, s, m, h, d, w, y)'],
      [11, 'integrations[1].id: duplicate id "ci": integrations[0] has it already'],
      [17, `integrations[1].owner: looks like an AWS access key id. ${storeInVault}`],
    ]);
  });
});

// Built at run time so that no key-shaped literal sits in the repository, where secret
// scanners would flag it.
const randomBody = 'Xq7Lm2Rt9Vb4Nc8Kd1Wf6Hs3';
const jwtPart = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const literalSecrets: Array<{ name: string; value: string; looksLike: string }> = [
  { name: 'AWS access key id', value: ['AKIA', 'Z7Q2M4X8R1T6Y3W5'].join(''), looksLike: 'an AWS access key id' },
  { name: 'AWS temporary key id', value: ['ASIA', 'Z7Q2M4X8R1T6Y3W5'].join(''), looksLike: 'an AWS access key id' },
  {
    name: 'PEM private key',
    value: ['-----BEGIN ', 'RSA PRIVATE KEY-----\nMIIEow', randomBody, '\n-----END RSA PRIVATE KEY-----'].join(''),
    looksLike: 'a PEM private key (RSA PRIVATE KEY)',
  },
  { name: 'sk- key', value: ['sk', '-proj-', randomBody].join(''), looksLike: 'an API secret key (sk- prefix, as OpenAI and others issue)' },
  { name: 'Anthropic key', value: ['sk', '-ant-api03-', randomBody].join(''), looksLike: 'an Anthropic API key (sk-ant- prefix)' },
  { name: 'Stripe live key', value: ['sk', '_live_', randomBody].join(''), looksLike: 'a Stripe secret or restricted key' },
  { name: 'GitHub token', value: ['gh', 'p_', randomBody, 'Zz90Yy81'].join(''), looksLike: 'a GitHub token (ghp_, gho_, ghu_, ghs_ or ghr_ prefix)' },
  { name: 'GitLab token', value: ['gl', 'pat-', randomBody].join(''), looksLike: 'a GitLab personal access token' },
  { name: 'Slack bot token', value: ['xo', 'xb-', '1234567890-', randomBody].join(''), looksLike: 'a Slack token (xox prefix)' },
  {
    name: 'JWT',
    value: [jwtPart({ alg: 'HS256', typ: 'JWT' }), jwtPart({ sub: 'rotor-test', iat: 1700000000 }), randomBody].join('.'),
    looksLike: 'a JSON Web Token',
  },
  { name: 'high-entropy string', value: crypto.createHash('sha256').update('rotor literal secret test').digest('base64'), looksLike: 'a long random string, as keys and tokens are' },
  { name: 'hex key', value: crypto.createHash('sha256').update('rotor literal secret test').digest('hex'), looksLike: 'a long random string, as keys and tokens are' },
  { name: 'URL with a password', value: 'https://rotor:hunter2@vendor.example/api', looksLike: 'a URL with an embedded password' },
];

describe('rotor validate: literal secrets', () => {
  for (const secret of literalSecrets) {
    it(`rejects ${secret.name} without echoing it`, async () => {
      const text = `${header}${awsIntegration('ci')}    owner: ${JSON.stringify(secret.value)}\n`;

      const result = await validate(text);

      assert.equal(result.code, 2, result.stdout);
      assert.deepEqual(result.lines, [`${result.file}:9: integrations[0].owner: looks like ${secret.looksLike}. ${storeInVault}`]);
      assert.ok(!result.stderr.includes(secret.value), 'the message repeats the secret');
    });
  }

  it('rejects secret-named fields with a value', async () => {
    const text = `version: 1
defaults:
  posture:
    api_key: not-even-random
integrations:
  - id: kraken
    provider: manual
    config:
      vendor: Kraken
      client_secret: plain-words-here
    last_rotated: "2025-01-01"
`;

    const result = await validate(text);

    assert.equal(result.code, 2);
    assert.ok(result.lines.includes(`${result.file}:4: defaults.posture.api_key: "api_key" names a secret and has a value. ${storeInVault}`), result.stderr);
    assert.ok(result.lines.includes(`${result.file}:10: integrations[0].config.client_secret: "client_secret" names a secret and has a value. ${storeInVault}`), result.stderr);
    assert.ok(!result.stderr.includes('plain-words-here'));
    assert.ok(!result.stderr.includes('not-even-random'));
  });

  it('accepts ordinary values', async () => {
    const text = `version: 1
defaults:
  owner: platform-team@example.com
integrations:
  - id: okx-trading-bot-production-eu-west-1
    provider: aws-iam
    config:
      user_name: okx-trading-bot
      endpoint: https://iam.eu-west-1.amazonaws.com/?Version=2010-05-08
    management_credential: rotor/management/okx-trading-bot-production-eu-west-1
    vault_path: Apps/TradingBotProduction2/OKX/Key1
    tags: [123e4567-e89b-12d3-a456-426614174000, team-payments, "arn:aws:iam::123456789012:user/ci-deployer"]
    data_access: [balances, trading, withdrawals]
    rotation:
      rotation_schedule: "15 3 * * 1-5"
      rotation_window: 6h
      grace_period: 90m
    restrictions:
      scopes: [read:secrets, tokens:write]
    posture:
      two_factor_enforced: true
      security_audit: SOC 2 Type II, 2025
      breach_notification: https://trust.vendor.example/security/SOC2-Type-II-2025/breach-notification
      last_reviewed: "2025-03-01"
  - id: kraken-treasury
    provider: manual
    config:
      vendor: Kraken
      console_url: https://pro.kraken.com/app/settings/api
    last_rotated: "2025-01-01"
`;

    const result = await validate(text);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${result.file}: valid, 2 integrations (1 manual) across 2 providers.\n`);
  });
});

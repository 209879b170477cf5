import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { parseDocument } from 'yaml';
import { describeLiteralSecret, findLiteralSecrets, isSecretKeyName, shannonEntropy } from '../../shared/literal-secrets';

describe('describeLiteralSecret', () => {
  const ordinary = [
    'okx-trading-bot',
    'platform-team-kraken-treasury-withdrawals',
    'rotor/management/aws-ci-deployer-production',
    'apps/billing/okx/tradingbotproduction/key1',
    'https://pro.kraken.com/app/settings/api',
    'https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08',
    '123e4567-e89b-12d3-a456-426614174000',
    '0 3 * * 1-5',
    '30d',
    '2025-03-01',
    'SOC 2 Type II, 2025',
    'arn:aws:iam::123456789012:user/ci-deployer',
    'security@vendor.example',
    'sk-trading-bot-production-eu-west',
    'ghp_is_not_a_token_without_random_body',
    'us-east-1',
  ];
  for (const value of ordinary) {
    it(`ignores ${value}`, () => {
      assert.equal(describeLiteralSecret(value), undefined);
    });
  }

  it('finds a key inside a longer string', () => {
    const value = `export AWS_ACCESS_KEY_ID=${['AKIA', 'Z7Q2M4X8R1T6Y3W5'].join('')}`;

    assert.equal(describeLiteralSecret(value), 'an AWS access key id');
  });

  it('finds a secret in a URL query', () => {
    assert.equal(describeLiteralSecret('https://vendor.example/api?api_key=abc123'), 'a URL with a secret in its query (parameter "api_key")');
  });

  it('skips randomness for references', () => {
    const mixedCasePath = 'Apps/TradingBotProduction2/OKX/Key1Secondary';

    assert.equal(describeLiteralSecret(mixedCasePath, { checkRandomness: false }), undefined);
  });

  it('flags random base64 of 32 characters', () => {
    const value = crypto.createHash('sha256').update('rotor').digest('base64').slice(0, 32);

    assert.equal(describeLiteralSecret(value), 'a long random string, as keys and tokens are');
  });

  it('ignores random strings shorter than 32', () => {
    assert.equal(describeLiteralSecret('Xq7Lm2Rt9Vb4Nc8Kd1Wf6Hs3'), undefined);
  });

  it('names PEM blocks by their label', () => {
    assert.equal(describeLiteralSecret(['-----BEGIN ', 'OPENSSH PRIVATE KEY-----\nabc'].join('')), 'a PEM private key (OPENSSH PRIVATE KEY)');
    assert.equal(describeLiteralSecret(['-----BEGIN ', 'CERTIFICATE-----\nabc'].join('')), 'a PEM block (CERTIFICATE)');
  });
});

describe('isSecretKeyName', () => {
  const secretNames = ['password', 'api_key', 'apiKey', 'ApiKey', 'api-key', 'apikey', 'private_key', 'privateKey', 'client_secret', 'secret', 'secret_access_key', 'passphrase', 'auth_token', 'db_passwd'];
  for (const name of secretNames) {
    it(`flags ${name}`, () => {
      assert.equal(isSecretKeyName(name), true);
    });
  }

  const referenceNames = ['secret_path', 'token_url', 'api_key_id', 'management_credential', 'vault_path', 'max_tokens', 'access_key_id', 'private_key_file', 'tokenEndpoint', 'token_type'];
  for (const name of referenceNames) {
    it(`ignores ${name}`, () => {
      assert.equal(isSecretKeyName(name), false);
    });
  }
});

describe('findLiteralSecrets', () => {
  it('reports paths and never the value', () => {
    const value = ['gl', 'pat-', 'Xq7Lm2Rt9Vb4Nc8Kd1Wf6Hs3'].join('');
    const document = parseDocument(`integrations:\n  - config:\n      token_url: https://vendor.example/token\n      nested: [ok, "${value}"]\n      password: hunter2\n`);

    const findings = findLiteralSecrets(document);

    assert.deepEqual(
      findings.map((finding) => finding.path),
      [
        ['integrations', 0, 'config', 'nested', 1],
        ['integrations', 0, 'config', 'password'],
      ],
    );
    assert.ok(findings.every((finding) => !finding.message.includes(value) && !finding.message.includes('hunter2')));
  });

  it('reports a key that is itself a secret', () => {
    const document = parseDocument(`config:\n  ${['AKIA', 'Z7Q2M4X8R1T6Y3W5'].join('')}: value\n`);

    const [finding] = findLiteralSecrets(document);

    assert.match(finding.message, /^the key itself looks like an AWS access key id\./);
  });

  it('ignores empty secret-named fields', () => {
    assert.deepEqual(findLiteralSecrets(parseDocument('password: ""\ntoken:\n')), []);
  });
});

describe('shannonEntropy', () => {
  it('is 0 for one repeated character', () => {
    assert.equal(shannonEntropy('aaaa'), 0);
  });

  it('is 4 bits for 16 distinct characters', () => {
    assert.equal(shannonEntropy('0123456789abcdef'), 4);
  });
});

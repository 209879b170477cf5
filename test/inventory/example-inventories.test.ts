import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { repositoryRoot } from '../../shared/tools';
import { runCli } from '../support/cli';

describe('example inventories', () => {
  it('reference inventory validates', async () => {
    const file = path.join(repositoryRoot, 'examples', 'inventory.full.yaml');

    const result = await runCli(['validate', '--file', file]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${file}: valid, 2 integrations (1 manual) across 2 providers.\n`);
  });

  it('demo inventory validates', async () => {
    const file = path.join(repositoryRoot, 'examples', 'inventory.yaml');

    const result = await runCli(['validate', '--file', file]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${file}: valid, 11 integrations across 11 providers.\n`);
  });
});

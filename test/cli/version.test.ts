import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { repositoryRoot } from '../../shared/tools';
import { runCli } from '../support/cli';

describe('rotor --version', () => {
  it('prints the package version', async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(repositoryRoot, 'package.json'), 'utf8')) as { version: string };

    const result = await runCli(['--version']);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${version}\n`);
  });
});

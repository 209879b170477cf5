import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';
import { repositoryRoot } from '../../shared/tools';

const workflowFile = path.join(repositoryRoot, 'workflows', 'example.ts');

async function lintWorkflowSource(source: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: repositoryRoot });
  const [result] = await eslint.lintText(source, { filePath: workflowFile });
  return result.messages.map((message) => `${message.ruleId}: ${message.message}`);
}

describe('workflow import rule', () => {
  it('rejects a Node built-in', async () => {
    const messages = await lintWorkflowSource("import fs from 'node:fs';\nexport const size = fs.statSync('x').size;\n");

    assert.equal(messages.length, 1);
    assert.match(messages[0], /no-restricted-imports: .*deterministic sandbox/);
  });

  it('rejects the Temporal client and node-vault', async () => {
    const messages = await lintWorkflowSource("import { Client } from '@temporalio/client';\nimport vault from 'node-vault';\nexport const both = [Client, vault];\n");

    assert.equal(messages.length, 2);
  });

  it('rejects a value import of the activities', async () => {
    const messages = await lintWorkflowSource("import { createActivities } from '../activities';\nexport const activities = createActivities;\n");

    assert.equal(messages.length, 1);
  });

  it('accepts a type-only import of the activities', async () => {
    const messages = await lintWorkflowSource("import type { createActivities } from '../activities';\nexport type Activities = ReturnType<typeof createActivities>;\n");

    assert.deepEqual(messages, []);
  });

  it('passes on every file in the repository', async () => {
    const eslint = new ESLint({ cwd: repositoryRoot });
    const results = await eslint.lintFiles(['.']);
    const problems = results.flatMap((result) => result.messages.map((message) => `${path.relative(repositoryRoot, result.filePath)}:${message.line}: ${message.message}`));

    assert.deepEqual(problems, []);
  });
});

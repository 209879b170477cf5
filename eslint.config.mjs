import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Workflow code runs in Temporal's deterministic sandbox: no Node built-ins, no clients and no
// I/O. Activities may be imported for their types only.
const workflowImportMessage =
  'Workflow files run in the deterministic sandbox: import types only, and do I/O in an activity.';
const nodeBuiltins = builtinModules.filter((name) => !name.startsWith('_'));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.rotor/**', 'bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [...nodeBuiltins, ...nodeBuiltins.map((name) => `node:${name}`)].map((name) => ({
            name,
            message: workflowImportMessage,
          })),
          patterns: [
            {
              group: [
                '@temporalio/client',
                '@temporalio/worker',
                '@temporalio/activity',
                '@temporalio/testing',
                'node-vault',
                'pino',
                '@aws-sdk/*',
                '**/activities',
                '**/activities/*',
                '**/providers/*',
                '**/worker/*',
                '**/cli/*',
                '**/shared/vault',
                '**/shared/logger',
                '**/shared/config',
                '**/shared/local-services',
                '**/shared/tools',
                '**/shared/inventory',
              ],
              message: workflowImportMessage,
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
);

import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { failOnSeverities, runAuditCommand, type AuditCommandOptions } from './commands/audit';
import { defaultDemoInventory, runDemoCommand } from './commands/demo';
import { runDevCommand } from './commands/dev';
import { runFleetCommand } from './commands/fleet';
import { runInventoryCommand, type InventoryCommandOptions } from './commands/inventory';
import { runProvidersCommand } from './commands/providers';
import { runGraceSignalCommand, runRotateCommand, runStatusCommand } from './commands/rotation';
import { runSchedulesApplyCommand, runSchedulesPlanCommand } from './commands/schedules';
import { runValidateCommand } from './commands/validate';
import { runWorkerCommand } from './commands/worker';
import { exitCodes, reportError, UsageError } from './errors';
import { defaultInventoryFile } from './integrations';
import { reportFormats } from './report-format';
import { repositoryRoot } from '../shared/tools';
import { defaultDataDirectory } from './stack';

interface RotateCommandOptions {
  file: string;
  all?: boolean;
  provider?: string;
  tag?: string;
  dryRun?: boolean;
  wait?: boolean;
}

/** Returns the version in package.json, which `npm version` keeps current. */
function packageVersion(): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(repositoryRoot, 'package.json'), 'utf8')) as { version?: string };
  return manifest.version ?? 'unknown';
}

const program = new Command();

program
  .name('rotor')
  .description('Rotate third-party API keys with Temporal workflows and HashiCorp Vault.')
  .version(packageVersion(), '-V, --version', 'print the Rotor version')
  .showHelpAfterError()
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text) });

const fileOption = () => new Option('-f, --file <path>', 'inventory file (env ROTOR_INVENTORY)').default(defaultInventoryFile());

program
  .command('validate')
  .description('check the inventory file and list every problem with its line')
  .addOption(fileOption())
  .action(async (options: { file: string }) => finish(() => runValidateCommand(options)));

const formatOption = () => new Option('--format <format>', 'output format').choices(reportFormats).default('table');

program
  .command('inventory')
  .description('list every integration with its last rotation, key age, next due date, restrictions and vendor posture (reads Vault)')
  .addOption(fileOption())
  .addOption(formatOption())
  .action(async (options: InventoryCommandOptions) => finish(() => runInventoryCommand(options)));

program
  .command('audit')
  .description('report overdue keys, missing restrictions, vendor posture and management credentials; exit 1 when a finding reaches --fail-on')
  .addOption(fileOption())
  .addOption(formatOption())
  .addOption(new Option('--fail-on <severity>', 'lowest severity that makes the audit exit 1').choices(failOnSeverities).default('high'))
  .action(async (options: AuditCommandOptions) => finish(() => runAuditCommand(options)));

program
  .command('providers')
  .description('list the providers with their capabilities, config fields and help')
  .option('--json', 'print JSON')
  .action(async (options: { json?: boolean }) => finish(async () => runProvidersCommand(options)));

program
  .command('rotate')
  .description('start a rotation of one integration, or of a selection with --all, --provider or --tag')
  .argument('[integration]', 'integration id from the inventory')
  .addOption(fileOption())
  .option('--all', 'rotate every integration in the inventory')
  .option('--provider <name>', "rotate every integration of this provider")
  .option('--tag <tag>', 'rotate every integration with this tag')
  .option('--dry-run', 'plan only: report what would happen and change nothing')
  .option('--wait', 'show the phases as they pass and end with the outcome (one integration)')
  .action(async (integration: string | undefined, options: RotateCommandOptions) =>
    finish(() => {
      if (integration === undefined) {
        return runFleetCommand(options);
      }
      if (options.all || options.provider || options.tag) {
        throw new UsageError(`Name one integration or use --all, --provider or --tag, not both (got "${integration}" and a selection option).`);
      }
      return runRotateCommand(integration, options);
    }),
  );

program
  .command('status')
  .description("show the latest rotation of an integration: phase, key ids, outcome")
  .argument('<integration>', 'integration id')
  .option('--json', 'print JSON')
  .action(async (integration: string, options: { json?: boolean }) => finish(() => runStatusCommand(integration, options)));

program
  .command('rollback')
  .description('during grace: give consumers the previous secret back and revoke the new key')
  .argument('<integration>', 'integration id')
  .option('--reason <text>', 'why, recorded in the worker log')
  .option('--wait', 'follow the rotation to its end')
  .action(async (integration: string, options: { reason?: string; wait?: boolean }) => finish(() => runGraceSignalCommand(integration, 'rollback', options)));

program
  .command('finish-grace')
  .description('end grace now and revoke the previous key')
  .argument('<integration>', 'integration id')
  .option('--wait', 'follow the rotation to its end')
  .action(async (integration: string, options: { wait?: boolean }) => finish(() => runGraceSignalCommand(integration, 'finish-grace', options)));

const schedules = program
  .command('schedules')
  .description('keep one Temporal Schedule per inventory integration that has rotation_period or rotation_schedule');

schedules
  .command('plan')
  .description('print what `schedules apply` would create, update, pause, unpause or delete, and change nothing')
  .addOption(fileOption())
  .action(async (options: { file: string }) => finish(() => runSchedulesPlanCommand(options)));

schedules
  .command('apply')
  .description("change Temporal's schedules to match the inventory and print each change made")
  .addOption(fileOption())
  .action(async (options: { file: string }) => finish(() => runSchedulesApplyCommand(options)));

program
  .command('worker')
  .description('run the Rotor worker (configured by TEMPORAL_* and VAULT_* variables) until SIGINT or SIGTERM')
  .option('-f, --file <path>', "inventory whose providers: section overrides rate limits (env ROTOR_INVENTORY)", process.env.ROTOR_INVENTORY)
  .action(async (options: { file?: string }) => finish(() => runWorkerCommand(options)));

program
  .command('dev')
  .description('run the local stack: Temporal dev server with UI, Vault dev server and a worker, until Ctrl-C')
  .option('--temporal-port <port>', 'Temporal frontend port', parsePort, 7233)
  .option('--ui-port <port>', 'Temporal UI port', parsePort, 8233)
  .option('--vault-port <port>', 'Vault port', parsePort, 8200)
  .option('--data-dir <path>', 'folder for history, logs and dev.env', defaultDataDirectory())
  .action(async (options: { temporalPort: number; uiPort: number; vaultPort: number; dataDir: string }) => finish(() => runDevCommand(options)));

program
  .command('demo')
  .description('rotate the example inventory end to end on local Temporal, Vault and emulators')
  .option('-f, --file <path>', 'demo inventory', defaultDemoInventory)
  .option('--data-dir <path>', 'folder for logs', defaultDataDirectory())
  .action(async (options: { file: string; dataDir: string }) => finish(() => runDemoCommand(options)));

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`expected a port number from 1 to 65535, got "${value}"`);
  }
  return port;
}

async function finish(run: () => Promise<number>): Promise<void> {
  let code: number;
  try {
    code = await run();
  } catch (error) {
    code = reportError(error);
  }
  process.exit(code);
}

program.parseAsync(process.argv).catch((error: { code?: string; exitCode?: number }) => {
  // commander has already printed help or the usage error.
  const helpShown = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help';
  process.exit(helpShown ? exitCodes.ok : exitCodes.badInput);
});

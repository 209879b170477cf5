import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Locations of the tools that tools/setup.sh installs: the Temporal CLI, Vault and moto. The
 * pinned versions live in tools/versions.env, which the setup script reads too.
 */
export interface ToolPaths {
  temporal: string;
  vault: string;
  motoServer: string;
}

export const repositoryRoot = findRepositoryRoot(__dirname);

export function toolsDirectory(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ROTOR_TOOLS_DIR) {
    return env.ROTOR_TOOLS_DIR;
  }
  const cacheHome = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), '.cache');
  return path.join(cacheHome, 'rotor', 'tools');
}

export function readPinnedVersions(): Record<string, string> {
  const file = path.join(repositoryRoot, 'tools', 'versions.env');
  const versions: Record<string, string> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(\S+)$/.exec(line.trim());
    if (match) {
      versions[match[1]] = match[2];
    }
  }
  return versions;
}

/** Returns the installed tool paths, or throws naming what is missing and how to install it. */
export function resolveToolPaths(env: NodeJS.ProcessEnv = process.env): ToolPaths {
  const directory = toolsDirectory(env);
  const versions = readPinnedVersions();
  const tools: ToolPaths = {
    temporal: env.ROTOR_TEMPORAL_BIN || path.join(directory, `temporal-cli-${versions.TEMPORAL_CLI_VERSION}`, 'bin', 'temporal'),
    vault: env.ROTOR_VAULT_BIN || path.join(directory, `vault-${versions.VAULT_VERSION}`, 'bin', 'vault'),
    motoServer: env.ROTOR_MOTO_BIN || path.join(directory, `moto-${versions.MOTO_VERSION}`, 'venv', 'bin', 'moto_server'),
  };
  const missing = Object.entries(tools).filter(([, file]) => !fs.existsSync(file));
  if (missing.length > 0) {
    throw new Error(
      `Missing tools: ${missing.map(([name, file]) => `${name} (${file})`).join(', ')}. ` +
        'Run `npm run setup` to build and install them into the tools cache.',
    );
  }
  return tools;
}

function findRepositoryRoot(start: string): string {
  let directory = start;
  while (!fs.existsSync(path.join(directory, 'package.json'))) {
    const parent = path.dirname(directory);
    if (parent === directory) {
      throw new Error(`Cannot find Rotor's package.json above ${start}.`);
    }
    directory = parent;
  }
  return directory;
}

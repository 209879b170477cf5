import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { loadWorkerConfig } from '../../shared/config';
import { rotorSearchAttributes } from '../../shared/search-attributes';
import { repositoryRoot } from '../../shared/tools';

/**
 * Static checks of docker-compose.yml, the worker's Dockerfile and .dockerignore. No Docker
 * engine is needed. `docker compose config` runs too when the Compose plugin is installed.
 */

const composeFile = path.join(repositoryRoot, 'docker-compose.yml');
const composeText = fs.readFileSync(composeFile, 'utf8');
const composeDocument = YAML.parseDocument(composeText);
const compose = (composeDocument.toJS() ?? {}) as ComposeFile;
const services = compose.services ?? {};

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  ports?: Array<string | number | { host_ip?: string; published?: string | number; target?: number }>;
  healthcheck?: { test?: string | string[] };
}

interface ComposeFile {
  services?: Record<string, ComposeService>;
}

/** One `$NAME` or `${NAME...}` found in a value, with the service and key it came from. */
interface Interpolation {
  location: string;
  expression: string;
  name: string;
  operator: string;
  argument: string;
}

describe('docker-compose.yml', () => {
  it('parses as YAML', () => {
    assert.deepEqual(composeDocument.errors.map(String), []);
    assert.equal(typeof compose.services, 'object');
  });

  it('defines the four services', () => {
    for (const name of ['temporal', 'temporal-ui', 'vault', 'rotor-worker']) {
      assert.ok(services[name], `service ${name} is missing`);
    }
  });

  it('depends_on names existing services', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const dependency of dependencyNames(service)) {
        assert.ok(services[dependency], `${name} depends on ${dependency}, which is not a service`);
      }
    }
  });

  it('waits for healthy Temporal and Vault', () => {
    const dependsOn = services['rotor-worker']?.depends_on;

    assert.ok(dependsOn, 'rotor-worker has no depends_on');
    assert.ok(!Array.isArray(dependsOn), 'rotor-worker depends_on is a list, so it cannot wait for health conditions');
    assert.equal(dependsOn.temporal?.condition, 'service_healthy');
    assert.equal(dependsOn.vault?.condition, 'service_healthy');
    assert.ok(services.temporal?.healthcheck?.test, 'temporal has no healthcheck');
    assert.ok(services.vault?.healthcheck?.test, 'vault has no healthcheck');
  });

  it('gives the worker only known variables', () => {
    const known = configVariableNames();
    const workerVariables = Object.keys(environmentOf(services['rotor-worker']));

    assert.ok(known.has('TEMPORAL_ADDRESS'), `no TEMPORAL_ADDRESS among the names read from shared/config.ts: ${[...known].join(', ')}`);
    assert.ok(known.has('VAULT_ADDR'), `no VAULT_ADDR among the names read from shared/config.ts: ${[...known].join(', ')}`);
    assert.ok(workerVariables.length > 0, 'rotor-worker has no environment');
    for (const name of workerVariables) {
      assert.ok(known.has(name), `rotor-worker sets ${name}, which shared/config.ts does not read`);
    }
  });

  it('worker environment passes config validation', () => {
    const environment = resolveWithDefaults(environmentOf(services['rotor-worker']));

    const config = loadWorkerConfig(environment);

    assert.equal(config.temporal.address, 'temporal:7233');
    assert.equal(config.vault.address, 'http://vault:8200');
    assert.equal(config.vault.auth.method, 'token');
  });

  it('interpolations have defaults or documentation', () => {
    const interpolations = findInterpolations(composeDocument.toJS(), 'docker-compose.yml');
    const comments = collectComments(composeDocument);

    for (const found of interpolations) {
      const hasDefault = found.operator === '-' || found.operator === ':-';
      const isRequiredWithMessage = (found.operator === '?' || found.operator === ':?') && found.argument.trim() !== '';
      const isDocumented = new RegExp(`\\b${found.name}\\b`).test(comments);
      assert.ok(
        hasDefault || isRequiredWithMessage || isDocumented,
        `${found.location} uses ${found.expression}, which has no default and no comment in docker-compose.yml names ${found.name}`,
      );
    }
  });

  it('pins every image to a tag', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.image === undefined) {
        assert.ok(service.build, `${name} has neither image nor build`);
        continue;
      }
      const tag = imageTag(service.image);
      const hasDigest = service.image.includes('@sha256:');
      assert.ok(tag !== undefined || hasDigest, `${name} uses ${service.image}, which has no tag`);
      assert.notEqual(tag, 'latest', `${name} uses the moving tag latest`);
    }
  });

  it('build context contains the Dockerfile', () => {
    const built = Object.entries(services).filter(([, service]) => service.build !== undefined);

    assert.ok(built.length > 0, 'no service has a build section');
    for (const [name, service] of built) {
      const build = typeof service.build === 'string' ? { context: service.build } : (service.build ?? {});
      const dockerfile = path.resolve(repositoryRoot, build.context ?? '.', build.dockerfile ?? 'Dockerfile');
      assert.ok(fs.existsSync(dockerfile), `${name} builds from ${dockerfile}, which does not exist`);
    }
  });

  it('registers Rotor search attributes', () => {
    const registered = optionValues(argumentList(services.temporal?.command), '--search-attribute');

    for (const attribute of rotorSearchAttributes) {
      assert.ok(registered.includes(`${attribute.name}=Keyword`), `temporal does not register ${attribute.name}=Keyword; registers ${registered.join(', ')}`);
    }
  });

  it('points the worker at the services', () => {
    const environment = resolveWithDefaults(environmentOf(services['rotor-worker']));
    const [temporalHost, temporalPort] = (environment.TEMPORAL_ADDRESS ?? '').split(':');
    const vaultUrl = new URL(environment.VAULT_ADDR ?? 'http://missing');

    assert.equal(temporalHost, 'temporal');
    assert.equal(temporalPort, '7233');
    assert.equal(vaultUrl.hostname, 'vault');
    assert.equal(vaultUrl.port, '8200');
  });

  it('shares the dev Vault token', () => {
    const vaultEnvironment = environmentOf(services.vault);
    const workerEnvironment = environmentOf(services['rotor-worker']);
    const rootToken = resolveWithDefaults(vaultEnvironment).VAULT_DEV_ROOT_TOKEN_ID ?? '';

    assert.equal(workerEnvironment.VAULT_TOKEN, vaultEnvironment.VAULT_DEV_ROOT_TOKEN_ID);
    assert.match(rootToken, /dev-only/, 'the default root token should say it is for development only');
  });

  it('publishes ports on loopback only', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const port of service.ports ?? []) {
        const hostIp = typeof port === 'object' ? port.host_ip : String(port).split(':').length === 3 ? String(port).split(':')[0] : undefined;
        assert.equal(hostIp, '127.0.0.1', `${name} publishes ${JSON.stringify(port)} beyond loopback`);
      }
    }
  });

  it('runs rotor worker in the image', () => {
    const entrypoint = dockerfileExecForm('ENTRYPOINT');
    const command = argumentList(services['rotor-worker']?.command);

    assert.deepEqual([...entrypoint, ...command], ['node', 'bin/rotor.js', 'worker']);
  });

  it('passes docker compose config', (t) => {
    const version = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8', timeout: 30_000 });
    if (version.error || version.status !== 0) {
      const output = version.error?.message ?? (version.stderr.trim() || `exit code ${version.status}`);
      const reason = output.split('\n')[0];
      t.skip(`docker compose is not available here (${reason}), so only the static checks ran`);
      return;
    }

    const result = spawnSync('docker', ['compose', '-f', composeFile, 'config', '--quiet'], {
      cwd: repositoryRoot,
      encoding: 'utf8',
      timeout: 60_000,
    });

    assert.equal(result.status, 0, `docker compose config failed:\n${result.stderr}`);
  });
});

describe('worker Dockerfile', () => {
  const dockerfile = fs.readFileSync(path.join(repositoryRoot, 'Dockerfile'), 'utf8');
  const instructions = dockerfileInstructions(dockerfile);

  it('pins the Node base image', () => {
    const bases = instructions.filter((line) => line.keyword === 'FROM').map((line) => line.argument.split(/\s+/)[0]);

    assert.ok(bases.length > 0, 'the Dockerfile has no FROM');
    for (const base of bases) {
      assert.match(base, /^node:20\.\d+(\.\d+)?-[a-z]+-slim$/, `base image ${base} is not node 20 pinned by minor version`);
    }
  });

  it('runs as a non-root user', () => {
    const users = instructions.filter((line) => line.keyword === 'USER').map((line) => line.argument.trim());
    const finalUser = users.at(-1);

    assert.ok(finalUser, 'the Dockerfile sets no USER, so the worker would run as root');
    assert.notEqual(finalUser, 'root');
    assert.notEqual(finalUser.split(':')[0], '0');
  });

  it('defaults to the worker command', () => {
    assert.deepEqual(dockerfileExecForm('ENTRYPOINT'), ['node', 'bin/rotor.js']);
    assert.deepEqual(dockerfileExecForm('CMD'), ['worker']);
  });

  it('installs with npm ci and builds', () => {
    const runs = instructions.filter((line) => line.keyword === 'RUN').map((line) => line.argument);

    assert.ok(runs.some((run) => /\bnpm ci\b/.test(run)), 'no RUN uses npm ci');
    assert.ok(runs.some((run) => /\bnpm run build\b/.test(run)), 'no RUN uses npm run build');
  });

  it('dockerignore excludes local output', () => {
    const ignored = fs
      .readFileSync(path.join(repositoryRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));

    for (const entry of ['node_modules', 'dist', '.rotor', '.git']) {
      assert.ok(ignored.includes(entry), `.dockerignore does not list ${entry}`);
    }
  });
});

function dependencyNames(service: ComposeService): string[] {
  if (service.depends_on === undefined) {
    return [];
  }
  return Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on);
}

/** Converts a service's environment to a map, whichever of Compose's two syntaxes it uses. */
function environmentOf(service: ComposeService | undefined): Record<string, string> {
  const environment = service?.environment;
  if (environment === undefined) {
    return {};
  }
  if (Array.isArray(environment)) {
    return Object.fromEntries(
      environment.map((entry) => {
        const separator = entry.indexOf('=');
        return separator === -1 ? [entry, ''] : [entry.slice(0, separator), entry.slice(separator + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, value === null ? '' : String(value)]));
}

/**
 * Reads the variable names of the zod env schemas in shared/config.ts from its source text,
 * because the module exports the loaders but not the schemas. A schema is a
 * `const <name>EnvSchema = z.object({ ... })`, and its keys are upper-case identifiers.
 */
function configVariableNames(): Set<string> {
  const source = fs.readFileSync(path.join(repositoryRoot, 'shared', 'config.ts'), 'utf8');
  const names = new Set<string>();
  const schemaStart = /const\s+\w+EnvSchema\s*=\s*z\s*\.object\(\s*\{/g;

  for (let match = schemaStart.exec(source); match !== null; match = schemaStart.exec(source)) {
    const body = balancedBlock(source, match.index + match[0].length - 1);
    for (const key of body.matchAll(/^\s*([A-Z][A-Z0-9_]*)\s*:/gm)) {
      names.add(key[1]);
    }
  }
  return names;
}

/** Returns the text from the `{` at openIndex to its matching `}`. */
function balancedBlock(text: string, openIndex: number): string {
  let depth = 0;
  for (let index = openIndex; index < text.length; index += 1) {
    if (text[index] === '{') {
      depth += 1;
    } else if (text[index] === '}') {
      depth -= 1;
      if (depth === 0) {
        return text.slice(openIndex, index + 1);
      }
    }
  }
  return text.slice(openIndex);
}

/**
 * Finds Compose interpolations in every string of the parsed file: `$NAME`, `${NAME}` and
 * `${NAME<operator><argument>}` with the operators -, :-, ?, :?, + and :+. `$$` is an escaped
 * dollar sign and is skipped.
 */
function findInterpolations(value: unknown, location: string): Interpolation[] {
  if (typeof value === 'string') {
    const found: Interpolation[] = [];
    for (const match of value.matchAll(/\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (match[0] === '$$') {
        continue;
      }
      if (match[2] !== undefined) {
        found.push({ location, expression: match[0], name: match[2], operator: '', argument: '' });
        continue;
      }
      const parts = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(match[1] ?? '');
      assert.ok(parts, `${location} has an invalid interpolation ${match[0]}`);
      found.push({ location, expression: match[0], name: parts[1], operator: parts[2] ?? '', argument: parts[3] ?? '' });
    }
    return found;
  }
  if (Array.isArray(value)) {
    return value.flatMap((item, index) => findInterpolations(item, `${location}[${index}]`));
  }
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => findInterpolations(item, `${location}.${key}`));
  }
  return [];
}

/** Joins every comment of a YAML document, so a test can check that a name is documented. */
function collectComments(document: YAML.Document): string {
  const comments: string[] = [document.commentBefore ?? '', document.comment ?? ''];
  YAML.visit(document, (_key, node) => {
    if (YAML.isNode(node)) {
      comments.push(node.commentBefore ?? '', node.comment ?? '');
    }
    if (YAML.isPair(node) && YAML.isNode(node.key)) {
      comments.push(node.key.commentBefore ?? '', node.key.comment ?? '');
    }
  });
  return comments.join('\n');
}

/**
 * Replaces each `${NAME:-default}` and `${NAME-default}` with its default, ignoring the
 * caller's environment, so the checks see what a user with no settings gets.
 */
function resolveWithDefaults(environment: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(environment).map(([name, value]) => [name, value.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/g, '$1')]),
  );
}

/** Extracts the tag of an image reference, or undefined when it has none. */
function imageTag(image: string): string | undefined {
  const withoutDigest = image.split('@')[0];
  const lastSegment = withoutDigest.slice(withoutDigest.lastIndexOf('/') + 1);
  const colon = lastSegment.indexOf(':');
  return colon === -1 ? undefined : lastSegment.slice(colon + 1);
}

function argumentList(command: string | string[] | undefined): string[] {
  if (command === undefined) {
    return [];
  }
  return Array.isArray(command) ? command : command.trim().split(/\s+/);
}

/** Collects the values of `--option value` and `--option=value` in an argument list. */
function optionValues(argumentsList: string[], option: string): string[] {
  const values: string[] = [];
  argumentsList.forEach((argument, index) => {
    if (argument === option && index + 1 < argumentsList.length) {
      values.push(argumentsList[index + 1]);
    } else if (argument.startsWith(`${option}=`)) {
      values.push(argument.slice(option.length + 1));
    }
  });
  return values;
}

/** Splits a Dockerfile into instructions, joining continuation lines and dropping comments. */
function dockerfileInstructions(text: string): Array<{ keyword: string; argument: string }> {
  const logicalLines = text
    .split('\n')
    .filter((line) => !line.trim().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return logicalLines.map((line) => {
    const [keyword, ...rest] = line.split(/\s+/);
    return { keyword: keyword.toUpperCase(), argument: rest.join(' ') };
  });
}

/** Parses the JSON (exec) form of the last ENTRYPOINT or CMD in the worker's Dockerfile. */
function dockerfileExecForm(keyword: 'ENTRYPOINT' | 'CMD'): string[] {
  const dockerfile = fs.readFileSync(path.join(repositoryRoot, 'Dockerfile'), 'utf8');
  const instruction = dockerfileInstructions(dockerfile)
    .filter((line) => line.keyword === keyword)
    .at(-1);
  assert.ok(instruction, `the Dockerfile has no ${keyword}`);
  const parsed: unknown = JSON.parse(instruction.argument);
  assert.ok(Array.isArray(parsed), `${keyword} is not in exec form: ${instruction.argument}`);
  return parsed.map(String);
}

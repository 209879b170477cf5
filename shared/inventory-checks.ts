import { isMap, isNode, isScalar, type Document, type LineCounter } from 'yaml';
import type { z } from 'zod';
import type { Provider } from '../providers/contract';
import { findLiteralSecrets } from './literal-secrets';

/**
 * The inventory's problems and the checks that the zod schema cannot make alone: duplicate
 * ids, provider names and provider config, literal secrets. Each problem names the file, the
 * line and the YAML path, so `rotor validate` can list every one of them at once.
 */

/** One problem in the inventory, located in the file. */
export interface InventoryProblem {
  file: string;
  line?: number;
  path: string;
  message: string;
}

export class InventoryError extends Error {
  constructor(readonly problems: InventoryProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'InventoryError';
  }
}

export function formatProblem(problem: InventoryProblem): string {
  const location = problem.line === undefined ? problem.file : `${problem.file}:${problem.line}`;
  return `${location}: ${problem.path || '(root)'}: ${problem.message}`;
}

/** The parsed YAML file, kept to map a path in the data back to its line. */
export interface InventorySource {
  file: string;
  document: Document;
  lineCounter: LineCounter;
}

type DataPath = PropertyKey[];

/** Builds a problem at a path of the data, with the line of the nearest node that exists. */
export function problemAt(source: InventorySource, path: DataPath, message: string): InventoryProblem {
  return { file: source.file, line: lineOf(source, path), path: formatPath(path), message };
}

/** Orders problems by line and drops repeats, as when one bad default reaches several integrations. */
export function orderProblems(problems: InventoryProblem[]): InventoryProblem[] {
  const unique = new Map(problems.map((problem) => [formatProblem(problem), problem]));
  return [...unique.values()].sort((left, right) => (left.line ?? 0) - (right.line ?? 0));
}

/**
 * Turns zod issues into problems. An unknown field becomes one problem per field, listing the
 * fields expected there, and zod's type messages are reworded in YAML's terms.
 */
export function schemaProblems(issues: readonly z.core.$ZodIssue[], source: InventorySource, schema: z.ZodType, prefix: DataPath = []): InventoryProblem[] {
  const problems: InventoryProblem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const known = fieldsAt(schema, issue.path);
      const expected = known ? `; expected one of: ${known.join(', ')}` : '';
      for (const key of issue.keys) {
        problems.push(problemAt(source, [...path, key], `unknown field "${key}"${expected}`));
      }
      continue;
    }
    problems.push(problemAt(source, path, rewordIssue(issue)));
  }
  return problems;
}

/** Finds ids used by more than one integration. It reads the raw data, so it reports even when the schema fails. */
export function duplicateIdProblems(integrations: unknown[], source: InventorySource): InventoryProblem[] {
  const problems: InventoryProblem[] = [];
  const seen = new Map<string, number>();
  integrations.forEach((integration, index) => {
    const id = isRecord(integration) ? integration.id : undefined;
    if (typeof id !== 'string') {
      return;
    }
    const earlier = seen.get(id);
    if (earlier !== undefined) {
      problems.push(problemAt(source, ['integrations', index, 'id'], `duplicate id "${id}": integrations[${earlier}] has it already`));
      return;
    }
    seen.set(id, index);
  });
  return problems;
}

/**
 * Checks each integration's provider name and config against the provider's own schema, and
 * the names in the top-level providers map.
 */
export function providerProblems(raw: Record<string, unknown>, source: InventorySource, providers: readonly Provider[]): InventoryProblem[] {
  const byName = new Map(providers.map((provider) => [provider.name, provider]));
  const known = [...byName.keys()].sort().join(', ');
  const unknownProvider = (name: string): string => `unknown provider "${name}"; expected one of: ${known} (\`rotor providers\` describes them)`;
  const problems: InventoryProblem[] = [];

  const integrations = Array.isArray(raw.integrations) ? raw.integrations : [];
  integrations.forEach((integration, index) => {
    if (!isRecord(integration) || typeof integration.provider !== 'string' || integration.provider === '') {
      return;
    }
    const provider = byName.get(integration.provider);
    if (!provider) {
      problems.push(problemAt(source, ['integrations', index, 'provider'], unknownProvider(integration.provider)));
      return;
    }
    problems.push(...providerConfigProblems(provider, integration.config, source, ['integrations', index, 'config']));
  });

  const overrides = isRecord(raw.providers) ? Object.keys(raw.providers) : [];
  for (const name of overrides.filter((name) => !byName.has(name))) {
    problems.push(problemAt(source, ['providers', name], unknownProvider(name)));
  }
  return problems;
}

function providerConfigProblems(provider: Provider, config: unknown, source: InventorySource, path: DataPath): InventoryProblem[] {
  if (config !== undefined && config !== null && !isRecord(config)) {
    return []; // The inventory schema reports a config that is not a mapping.
  }
  const values = config ?? {};
  const parsed = provider.configSchema.safeParse(values);
  const problems = parsed.success ? [] : schemaProblems(parsed.error.issues, source, provider.configSchema, path);

  // A plain zod object drops unknown fields silently, so a misspelt optional field would
  // simply be ignored. Strict and passthrough schemas decide for themselves.
  const fields = fieldsAt(provider.configSchema, []);
  const strips = (provider.configSchema as z.ZodType)._zod.def.type === 'object' && (provider.configSchema._zod.def as { catchall?: unknown }).catchall === undefined;
  if (fields && strips) {
    for (const key of Object.keys(values).filter((key) => !fields.includes(key))) {
      problems.push(problemAt(source, [...path, key], `unknown field "${key}"; expected one of: ${fields.join(', ')}`));
    }
  }
  return problems;
}

/** Reports every string in the file that looks like a key or token, and every secret-named field with a value. */
export function literalSecretProblems(source: InventorySource): InventoryProblem[] {
  return findLiteralSecrets(source.document).map((finding) => problemAt(source, finding.path, finding.message));
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const yamlTypeNames: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
  null: 'an empty value',
  undefined: 'nothing',
};

function rewordIssue(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'invalid_type' || !issue.message.startsWith('Invalid input: expected')) {
    return issue.message;
  }
  const expected = yamlTypeNames[issue.expected] ?? issue.expected;
  const received = /received (\w+)/.exec(issue.message)?.[1];
  if (received === 'undefined') {
    return `missing; expected ${expected}`;
  }
  return `expected ${expected}, got ${yamlTypeNames[received ?? ''] ?? received ?? 'another type'}`;
}

/** Returns the field names of the object schema at a path of the data, or undefined when it is not an object. */
function fieldsAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let current: z.core.$ZodType | undefined = unwrap(schema);
  for (const part of path) {
    const def = current?._zod.def as { type: string; shape?: Record<string, z.core.$ZodType>; element?: z.core.$ZodType; valueType?: z.core.$ZodType } | undefined;
    if (def?.type === 'object') {
      current = def.shape?.[String(part)];
    } else if (def?.type === 'array') {
      current = def.element;
    } else if (def?.type === 'record') {
      current = def.valueType;
    } else {
      return undefined;
    }
    current = current && unwrap(current);
  }
  const def = current?._zod.def as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : undefined;
}

// Looks through optional, default, nullable and pipe (transform) wrappers to the schema inside.
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  const def = schema._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
  if (def.innerType) {
    return unwrap(def.innerType);
  }
  if (def.type === 'pipe' && def.in) {
    return unwrap(def.in);
  }
  return schema;
}

function formatPath(path: DataPath): string {
  return path.map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`)).join('');
}

// Walks up the path until a node exists, so a missing field points at its parent's line. A
// field's line is the line of its key, which differs from its value's for a nested mapping.
function lineOf(source: InventorySource, path: DataPath): number | undefined {
  for (let length = path.length; length >= 0; length -= 1) {
    const node = keyNodeAt(source.document, path.slice(0, length)) ?? source.document.getIn(path.slice(0, length) as (string | number)[], true);
    if (isNode(node) && node.range) {
      return source.lineCounter.linePos(node.range[0]).line;
    }
  }
  return undefined;
}

function keyNodeAt(document: Document, path: DataPath): unknown {
  if (path.length === 0) {
    return undefined;
  }
  const parent = document.getIn(path.slice(0, -1) as (string | number)[], true);
  if (!isMap(parent)) {
    return undefined;
  }
  const last = String(path[path.length - 1]);
  return parent.items.find((pair) => isScalar(pair.key) && String(pair.key.value) === last)?.key;
}

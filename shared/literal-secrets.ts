import { isMap, isPair, isScalar, isSeq, type Document, type Node } from 'yaml';

/**
 * Detection of secrets pasted into the inventory. The inventory lives in git and in CI logs,
 * so a key found there counts as leaked. Detection never returns the value itself: callers put
 * the description in a message, and the message must not repeat the secret.
 */

interface TokenPattern {
  pattern: RegExp;
  description: string;
}

// Vendor prefixes whose keys are recognisable on sight. The body after the prefix must also
// pass looksRandom, so names such as "sk-trading-bot-eu" are not mistaken for keys.
const prefixedTokens: readonly TokenPattern[] = [
  { pattern: /sk-ant-[A-Za-z0-9_-]{16,}/, description: 'an Anthropic API key (sk-ant- prefix)' },
  { pattern: /sk-[A-Za-z0-9_-]{16,}/, description: 'an API secret key (sk- prefix, as OpenAI and others issue)' },
  { pattern: /[sr]k_(?:live|test)_[A-Za-z0-9]{16,}/, description: 'a Stripe secret or restricted key' },
  { pattern: /github_pat_[A-Za-z0-9_]{20,}/, description: 'a GitHub fine-grained personal access token' },
  { pattern: /gh[pousr]_[A-Za-z0-9]{20,}/, description: 'a GitHub token (ghp_, gho_, ghu_, ghs_ or ghr_ prefix)' },
  { pattern: /glpat-[A-Za-z0-9_-]{16,}/, description: 'a GitLab personal access token' },
  { pattern: /xox[abeoprs]-[A-Za-z0-9-]{10,}/, description: 'a Slack token (xox prefix)' },
  { pattern: /xapp-[A-Za-z0-9-]{10,}/, description: 'a Slack app-level token' },
];

const awsAccessKeyId = /(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])/;
const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----/;
const jsonWebToken = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const urlWithScheme = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Minimum length of a value that the entropy check considers, because shorter random strings are rarely keys. */
export const minimumRandomLength = 32;

// Bits per character above which a base64 or hex string reads as random. Yelp's detect-secrets
// defaults to 4.5 for base64 and 3.0 for hex. Base64 is lowered to 4.2 here because a
// 32-character string cannot exceed 5 bits per character.
const base64EntropyThreshold = 4.2;
const hexEntropyThreshold = 3.0;

// Words that mark a key as holding a secret, such as api_secret, db_password or auth-token.
const secretWords = new Set(['secret', 'password', 'passwd', 'passphrase', 'token', 'apikey', 'privatekey']);
const secretWordPairs = [['api', 'key'], ['private', 'key']];
// A last word that makes the key a reference or a label, not the secret: token_url, secret_path.
const referenceWords = new Set(['path', 'paths', 'url', 'uri', 'endpoint', 'file', 'id', 'ids', 'name', 'ref', 'type', 'field', 'fields']);
// Inventory fields that hold Vault paths without a reference word in their name.
const referenceKeys = new Set(['management_credential']);

/**
 * Returns what a string looks like when it looks like a key or token, such as "an AWS access
 * key id", or undefined for ordinary values (URLs without credentials, ids, paths, UUIDs).
 * `checkRandomness: false` skips the entropy check, for values known to be references such as
 * Vault paths, which may mix case and digits.
 */
export function describeLiteralSecret(value: string, options: { checkRandomness?: boolean } = {}): string | undefined {
  const pem = pemBlock.exec(value);
  if (pem) {
    return pem[1].includes('PRIVATE') ? `a PEM private key (${pem[1]})` : `a PEM block (${pem[1]})`;
  }
  if (awsAccessKeyId.test(value)) {
    return 'an AWS access key id';
  }
  for (const { pattern, description } of prefixedTokens) {
    const match = pattern.exec(value);
    if (match && looksRandom(match[0])) {
      return description;
    }
  }
  if (jsonWebToken.test(value)) {
    return 'a JSON Web Token';
  }
  if (urlWithScheme.test(value)) {
    return describeUrlCredentials(value);
  }
  if (options.checkRandomness !== false && isHighEntropyString(value.trim())) {
    return 'a long random string, as keys and tokens are';
  }
  return undefined;
}

/** Tells whether a mapping key names a secret (password, api_key, client_secret), not a reference to one (secret_path). */
export function isSecretKeyName(key: string): boolean {
  const words = splitWords(key);
  if (isReferenceKeyName(key)) {
    return false;
  }
  if (words.some((word) => secretWords.has(word))) {
    return true;
  }
  return words.some((word, index) => secretWordPairs.some(([first, second]) => word === first && words[index + 1] === second));
}

/** Tells whether a mapping key names a reference to a value, such as vault_path or token_url. */
function isReferenceKeyName(key: string): boolean {
  const words = splitWords(key);
  return words.length === 0 || referenceKeys.has(key) || referenceWords.has(words[words.length - 1]);
}

function splitWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== '');
}

/** A literal secret found in the YAML document: where it is and what it looks like. */
export interface LiteralSecretFinding {
  path: (string | number)[];
  /** The message for the inventory problem; it never contains the value. */
  message: string;
}

/** Walks every key and value of the document, at any depth, and reports each literal secret. */
export function findLiteralSecrets(document: Document): LiteralSecretFinding[] {
  const findings: LiteralSecretFinding[] = [];
  walkNode(document.contents, [], findings);
  return findings;
}

function walkNode(node: unknown, path: (string | number)[], findings: LiteralSecretFinding[], underReferenceKey = false): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair)) {
        continue;
      }
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      const childPath = [...path, key ?? '?'];
      if (key !== undefined) {
        checkKey(key, pair.value as Node | null, childPath, findings);
      }
      walkNode(pair.value, childPath, findings, key !== undefined && isReferenceKeyName(key));
    }
    return;
  }
  if (isSeq(node)) {
    node.items.forEach((item, index) => walkNode(item, [...path, index], findings, underReferenceKey));
    return;
  }
  if (isScalar(node) && typeof node.value === 'string') {
    const description = describeLiteralSecret(node.value, { checkRandomness: !underReferenceKey });
    if (description) {
      findings.push({ path, message: `looks like ${description}. ${storeInVaultAdvice}` });
    }
  }
}

function checkKey(key: string, value: Node | null, path: (string | number)[], findings: LiteralSecretFinding[]): void {
  const keyDescription = describeLiteralSecret(key);
  if (keyDescription) {
    findings.push({ path, message: `the key itself looks like ${keyDescription}. ${storeInVaultAdvice}` });
    return;
  }
  const text = isScalar(value) && typeof value.value === 'string' ? value.value.trim() : '';
  // A value that looks like a key is reported by the walk already, so the name is reported only for other values.
  if (isSecretKeyName(key) && text !== '' && describeLiteralSecret(text) === undefined) {
    findings.push({ path, message: `"${key}" names a secret and has a value. ${storeInVaultAdvice}` });
  }
}

const storeInVaultAdvice = 'The inventory must not contain secrets: store it in Vault and reference its KV path instead.';

function describeUrlCredentials(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.password !== '') {
    return 'a URL with an embedded password';
  }
  for (const [name, parameter] of url.searchParams) {
    if (parameter !== '' && (isSecretKeyName(name) || describeLiteralSecret(parameter) !== undefined)) {
      return `a URL with a secret in its query (parameter "${name}")`;
    }
  }
  return undefined;
}

function isHighEntropyString(value: string): boolean {
  if (value.length < minimumRandomLength || uuid.test(value)) {
    return false;
  }
  if (/^[0-9a-f]+$/.test(value) || /^[0-9A-F]+$/.test(value)) {
    return /[0-9]/.test(value) && /[a-fA-F]/.test(value) && shannonEntropy(value) >= hexEntropyThreshold;
  }
  const base64 = /^[A-Za-z0-9+/]+={0,2}$/.test(value) || /^[A-Za-z0-9_-]+={0,2}$/.test(value);
  return base64 && looksRandom(value) && shannonEntropy(value) >= base64EntropyThreshold;
}

// Random keys mix upper case, lower case and digits; identifiers, paths and words rarely do.
function looksRandom(value: string): boolean {
  return /[A-Z]/.test(value) && /[a-z]/.test(value) && /[0-9]/.test(value);
}

/** Shannon entropy of the string's characters, in bits per character. */
export function shannonEntropy(value: string): number {
  const counts = new Map<string, number>();
  for (const character of value) {
    counts.set(character, (counts.get(character) ?? 0) + 1);
  }
  let entropy = 0;
  for (const count of counts.values()) {
    const probability = count / value.length;
    entropy -= probability * Math.log2(probability);
  }
  return entropy;
}

import { z } from 'zod';
import { listProviders } from '../../providers/registry';

interface JsonSchemaObject {
  properties?: Record<string, { type?: string | string[]; description?: string; default?: unknown; format?: string }>;
  required?: string[];
}

/** `rotor providers`: each provider's capabilities, config fields and help, read from the provider itself. */
export function runProvidersCommand(options: { json?: boolean }): number {
  const providers = listProviders();
  if (options.json) {
    const described = providers.map((provider) => ({
      name: provider.name,
      summary: provider.summary,
      capabilities: provider.capabilities,
      config: z.toJSONSchema(provider.configSchema, { io: 'input', unrepresentable: 'any' }),
      managementCredential: z.toJSONSchema(provider.credentialSchema, { io: 'input', unrepresentable: 'any' }),
      secret: z.toJSONSchema(provider.secretSchema, { io: 'input', unrepresentable: 'any' }),
      help: provider.help.trim(),
    }));
    console.log(JSON.stringify(described, null, 2));
    return 0;
  }

  for (const provider of providers) {
    const capabilities = provider.capabilities;
    console.log(`${provider.name} — ${provider.summary}`);
    console.log(
      `  capabilities: IP allowlist ${yesNo(capabilities.ipAllowlist)}, scopes ${yesNo(capabilities.scopes)}, ` +
        `expiry ${yesNo(capabilities.expiry)}, usage data ${yesNo(capabilities.usageData)}, ` +
        `max keys per principal ${capabilities.maxKeysPerPrincipal ?? 'unlimited'}, rate limit ${capabilities.defaultRateLimitPerSecond}/s`,
    );
    console.log('  config fields:');
    printFields(z.toJSONSchema(provider.configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaObject);
    console.log('  management credential fields (stored in Vault):');
    printFields(z.toJSONSchema(provider.credentialSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaObject);
    console.log(indent(provider.help.trim(), '  '));
    console.log('');
  }
  return 0;
}

function printFields(schema: JsonSchemaObject): void {
  const required = new Set(schema.required ?? []);
  for (const [name, field] of Object.entries(schema.properties ?? {})) {
    const type = Array.isArray(field.type) ? field.type.join('|') : (field.type ?? field.format ?? 'value');
    let presence = 'optional';
    if (required.has(name)) {
      presence = 'required';
    } else if (field.default !== undefined) {
      presence = `default ${JSON.stringify(field.default)}`;
    }
    console.log(`    ${name} (${type}, ${presence})${field.description ? `: ${field.description}` : ''}`);
  }
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((line) => `${prefix}${line}`)
    .join('\n');
}

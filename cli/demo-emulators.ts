import path from 'node:path';
import { getProvider } from '../providers/registry';
import { ProviderError } from '../providers/contract';
import { assertPortFree } from '../shared/local-services';
import { createLogger } from '../shared/logger';
import { resolveToolPaths } from '../shared/tools';
import { startBybitEmulator, type BybitEmulator } from '../test/emulators/bybit';
import { dnsReadPolicy, startCloudflareEmulator, type CloudflareEmulator } from '../test/emulators/cloudflare';
import { seedAwsAccount, startMoto, type MotoServer } from '../test/emulators/moto';
import { startOkxEmulator, type OkxEmulator } from '../test/emulators/okx';
import type { IntegrationSpec } from '../workflows/rotation-types';
import { UsageError } from './errors';

/**
 * The emulators behind the demo inventory: moto for aws-iam (on the port the inventory's
 * endpoint names) and the in-process Cloudflare, OKX and Bybit emulators (on free ports, so the
 * demo points those integrations' base_url at them). Each seeding creates the management
 * credential and a first key, as an operator would have before Rotor takes over.
 */

export interface SeededIntegration {
  /** The integration with its provider config pointed at the emulator. */
  integration: IntegrationSpec;
  managementCredential: Record<string, string>;
  currentSecret: Record<string, string>;
  currentKeyId: string;
  /** One line for people, such as "IAM user ci-deployer". */
  description: string;
}

export interface DemoEmulators {
  seed(integration: IntegrationSpec): Promise<SeededIntegration>;
  stop(): Promise<void>;
}

export const demoProviders = ['aws-iam', 'cloudflare', 'okx', 'bybit'];

export async function startDemoEmulators(integrations: IntegrationSpec[], logDirectory: string): Promise<DemoEmulators> {
  const unsupported = integrations.filter((integration) => !demoProviders.includes(integration.provider));
  if (unsupported.length > 0) {
    throw new UsageError(
      `The demo has emulators for ${demoProviders.join(', ')} only; ${unsupported.map((integration) => `${integration.id} (${integration.provider})`).join(', ')} cannot run in it.`,
    );
  }
  const uses = (provider: string) => integrations.some((integration) => integration.provider === provider);

  let moto: MotoServer | undefined;
  let cloudflare: CloudflareEmulator | undefined;
  let okx: OkxEmulator | undefined;
  let bybit: BybitEmulator | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all([moto?.stop(), cloudflare?.stop(), okx?.stop(), bybit?.stop()]);
  };

  try {
    if (uses('aws-iam')) {
      const port = motoPortOf(integrations.filter((integration) => integration.provider === 'aws-iam').map((integration) => String(integration.providerConfig.endpoint ?? '')));
      await assertPortFree(port, 'the moto AWS emulator', 'change the aws-iam endpoint port in the demo inventory');
      moto = await startMoto({ binary: resolveToolPaths().motoServer, port, logFile: path.join(logDirectory, 'moto.log') });
    }
    cloudflare = uses('cloudflare') ? await startCloudflareEmulator() : undefined;
    okx = uses('okx') ? await startOkxEmulator() : undefined;
    bybit = uses('bybit') ? await startBybitEmulator() : undefined;
  } catch (error) {
    await stop();
    throw error;
  }

  const seed = async (integration: IntegrationSpec): Promise<SeededIntegration> => {
    const config = integration.providerConfig;
    switch (integration.provider) {
      case 'aws-iam': {
        const account = await seedAwsAccount((moto as MotoServer).url, { adminUser: `rotor-admin-${integration.id}`, appUser: String(config.user_name) });
        return {
          integration,
          managementCredential: { ...account.managementCredential },
          currentSecret: { ...account.currentKey },
          currentKeyId: account.currentKey.access_key_id,
          description: `IAM user ${account.appUserName}`,
        };
      }
      case 'cloudflare': {
        const emulator = cloudflare as CloudflareEmulator;
        const user = emulator.seedAccount();
        return {
          integration: { ...integration, providerConfig: { ...config, base_url: emulator.url, policies: config.policies ?? [dnsReadPolicy()] } },
          managementCredential: { token: user.managementToken.value },
          currentSecret: { token_id: user.currentToken.id, token: user.currentToken.value },
          currentKeyId: user.currentToken.id,
          description: 'Cloudflare user API token',
        };
      }
      case 'okx': {
        const emulator = okx as OkxEmulator;
        const account = emulator.seedAccount({ subAccount: String(config.sub_account) });
        return {
          integration: { ...integration, providerConfig: { ...config, base_url: emulator.url } },
          managementCredential: { ...account.managementCredential },
          currentSecret: { ...account.currentKey },
          currentKeyId: account.currentKey.api_key,
          description: `OKX sub-account ${account.subAccount}`,
        };
      }
      default: {
        const emulator = bybit as BybitEmulator;
        const account = emulator.seedAccount({ currentKeyIps: ['127.0.0.1'] });
        return {
          integration: { ...integration, providerConfig: { ...config, base_url: emulator.url, sub_uid: account.subUid } },
          managementCredential: { ...account.managementCredential },
          currentSecret: { ...account.currentKey },
          currentKeyId: account.currentKey.api_key,
          description: `Bybit sub account ${account.subUid}`,
        };
      }
    }
  };

  return { seed, stop };
}

/**
 * Calls the provider's verify operation with the old key. Returns the emulator's rejection,
 * or null when it still accepts the key.
 */
export async function oldKeyRejection(seeded: SeededIntegration): Promise<string | null> {
  const provider = getProvider(seeded.integration.provider);
  const context = {
    config: provider.configSchema.parse(seeded.integration.providerConfig),
    credential: provider.credentialSchema.parse(seeded.managementCredential),
    logger: createLogger({ level: 'silent' }),
  };
  try {
    await provider.verifyKey(context, seeded.currentKeyId, seeded.currentSecret);
    return null;
  } catch (error) {
    if (error instanceof ProviderError) {
      return error.details.vendorCode ?? error.kind;
    }
    throw error;
  }
}

/** All demo aws-iam integrations share one moto server, so their endpoints must agree. */
function motoPortOf(endpoints: string[]): number {
  const ports = new Set(
    endpoints.map((endpoint) => {
      const url = new URL(endpoint);
      if (!['127.0.0.1', 'localhost'].includes(url.hostname)) {
        throw new UsageError(`The demo runs moto on 127.0.0.1 only, but an integration's endpoint is ${endpoint}.`);
      }
      return Number(url.port || 80);
    }),
  );
  if (ports.size !== 1) {
    throw new UsageError(`The demo starts one moto server, but the aws-iam endpoints name ${ports.size} different ports.`);
  }
  return [...ports][0];
}

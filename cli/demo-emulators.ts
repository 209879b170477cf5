import path from 'node:path';
import { getProvider } from '../providers/registry';
import { ProviderError, type ProviderErrorKind } from '../providers/contract';
import { assertPortFree } from '../shared/local-services';
import { createLogger } from '../shared/logger';
import { resolveToolPaths } from '../shared/tools';
import { startBinanceEmulator, type BinanceEmulator } from '../test/emulators/binance';
import { startBybitEmulator, type BybitEmulator } from '../test/emulators/bybit';
import { dnsReadPolicy, startCloudflareEmulator, type CloudflareEmulator } from '../test/emulators/cloudflare';
import { startDatadogEmulator, type DatadogEmulator } from '../test/emulators/datadog';
import { startGateioEmulator, type GateioEmulator } from '../test/emulators/gateio';
import { startGitLabEmulator, type EmulatedTokenType, type GitLabEmulator, type TokenView } from '../test/emulators/gitlab';
import { startKucoinEmulator, type KucoinEmulator } from '../test/emulators/kucoin';
import { seedAwsAccount, startMoto, type MotoServer } from '../test/emulators/moto';
import { startOkxEmulator, type OkxEmulator } from '../test/emulators/okx';
import { startOpenAIEmulator, type OpenAIEmulator } from '../test/emulators/openai';
import { startQuicknodeEmulator, type QuicknodeEmulator } from '../test/emulators/quicknode';
import type { IntegrationSpec } from '../workflows/rotation-types';
import { UsageError } from './errors';

/**
 * The emulators behind the demo inventory: moto for aws-iam (on the port the inventory's
 * endpoint names) and an in-process emulator for every other provider (on free ports, so the
 * demo points those integrations' base_url, and QuickNode's rpc_url, at them). Each seeding
 * creates the management credential and a first key, as an operator would have before Rotor
 * takes over. Where the emulator generates the account ids, the demo also replaces the
 * inventory's sub-account, project or endpoint id with the seeded one.
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

export const demoProviders = ['aws-iam', 'cloudflare', 'okx', 'bybit', 'binance', 'datadog', 'gateio', 'gitlab', 'kucoin', 'openai', 'quicknode'];

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
  let binance: BinanceEmulator | undefined;
  let datadog: DatadogEmulator | undefined;
  let gateio: GateioEmulator | undefined;
  let gitlab: GitLabEmulator | undefined;
  let kucoin: KucoinEmulator | undefined;
  let openai: OpenAIEmulator | undefined;
  let quicknode: QuicknodeEmulator | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all(
      [moto, cloudflare, okx, bybit, binance, datadog, gateio, gitlab, kucoin, openai, quicknode].map((emulator) => emulator?.stop()),
    );
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
    binance = uses('binance') ? await startBinanceEmulator() : undefined;
    datadog = uses('datadog') ? await startDatadogEmulator() : undefined;
    gateio = uses('gateio') ? await startGateioEmulator() : undefined;
    gitlab = uses('gitlab') ? await startGitLabEmulator() : undefined;
    kucoin = uses('kucoin') ? await startKucoinEmulator() : undefined;
    openai = uses('openai') ? await startOpenAIEmulator() : undefined;
    quicknode = uses('quicknode') ? await startQuicknodeEmulator() : undefined;
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
      case 'bybit': {
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
      case 'binance':
        return seedBinance(binance as BinanceEmulator, integration);
      case 'datadog':
        return seedDatadog(datadog as DatadogEmulator, integration);
      case 'gateio':
        return seedGateio(gateio as GateioEmulator, integration);
      case 'gitlab':
        return seedGitLab(gitlab as GitLabEmulator, integration);
      case 'kucoin':
        return seedKucoin(kucoin as KucoinEmulator, integration);
      case 'openai':
        return seedOpenAI(openai as OpenAIEmulator, integration);
      case 'quicknode':
        return seedQuicknode(quicknode as QuicknodeEmulator, integration);
      default:
        throw new UsageError(`The demo has no emulator for ${integration.provider}, the provider of ${integration.id}.`);
    }
  };

  return { seed, stop };
}

// Failures that mean the emulator rejected the key. Any other failure, such as a malformed
// secret or an unreachable emulator, proves nothing about whether the key still works.
const rejectionKinds: ProviderErrorKind[] = ['authentication', 'permission'];

/**
 * Calls the provider's verify operation with the old key. Returns the emulator's rejection (the
 * vendor's error code, or else the error kind), or null when it still accepts the key. Throws
 * any other failure.
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
    if (error instanceof ProviderError && rejectionKinds.includes(error.kind)) {
      return error.details.vendorCode ?? error.kind;
    }
    throw error;
  }
}

/** Returns the integration with these provider config fields replaced, such as base_url pointed at an emulator. */
function withProviderConfig(integration: IntegrationSpec, fields: Record<string, unknown>): IntegrationSpec {
  return { ...integration, providerConfig: { ...integration.providerConfig, ...fields } };
}

function seedBinance(emulator: BinanceEmulator, integration: IntegrationSpec): SeededIntegration {
  const account = emulator.seedAccount({ currentKeyIps: ['127.0.0.1'] });
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url, sub_account_id: account.subAccountId }),
    managementCredential: { ...account.managementCredential },
    currentSecret: { ...account.currentKey },
    currentKeyId: account.currentKey.api_key,
    description: `Binance Link sub-account ${account.subAccountId}`,
  };
}

function seedDatadog(emulator: DatadogEmulator, integration: IntegrationSpec): SeededIntegration {
  const organization = emulator.seedAccount();
  const applicationKey = integration.providerConfig.key_type === 'application';
  const current = applicationKey ? organization.currentApplicationKey : organization.currentApiKey;
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url }),
    managementCredential: { api_key: organization.managementApiKey.key, application_key: organization.managementApplicationKey.key },
    currentSecret: applicationKey ? { key_id: current.id, application_key: current.key } : { key_id: current.id, api_key: current.key },
    currentKeyId: current.id,
    description: applicationKey ? 'Datadog application key of the management user' : 'Datadog organization API key',
  };
}

function seedGateio(emulator: GateioEmulator, integration: IntegrationSpec): SeededIntegration {
  const account = emulator.seedAccount({ currentKeyIps: ['127.0.0.1'] });
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url, user_id: account.userId }),
    managementCredential: { ...account.managementCredential },
    currentSecret: { ...account.currentKey },
    currentKeyId: account.currentKey.api_key,
    description: `Gate.io sub-account ${account.userId}`,
  };
}

function seedGitLab(emulator: GitLabEmulator, integration: IntegrationSpec): SeededIntegration {
  const tokenType = integration.providerConfig.token_type as EmulatedTokenType;
  const account = emulator.seedAccount({ tokenType });
  const owners = { project: ['project_id', account.projectPath], group: ['group_id', account.groupId], personal: ['user_id', account.userId] } as const;
  const [ownerField, owner] = owners[tokenType];
  // The provider's secret also records the token's expiry date and scopes, and verifying the old
  // token parses the whole secret before it calls GitLab.
  const current = emulator.token(account.currentToken.id) as TokenView;
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url, [ownerField]: owner }),
    managementCredential: { token: account.managementToken.value },
    currentSecret: { token_id: account.currentToken.id, token: account.currentToken.value, expires_at: String(current.expires_at), scopes: current.scopes.join(' ') },
    currentKeyId: account.currentToken.id,
    description: `GitLab ${tokenType} access token of ${owner}`,
  };
}

function seedKucoin(emulator: KucoinEmulator, integration: IntegrationSpec): SeededIntegration {
  const account = emulator.seedAccount({ subName: String(integration.providerConfig.sub_name) });
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url }),
    // KuCoin deletes a key only with its passphrase, which Rotor cannot derive for a key made by hand.
    managementCredential: { ...account.managementCredential, initial_key_passphrase: account.currentKey.passphrase },
    currentSecret: { ...account.currentKey },
    currentKeyId: account.currentKey.api_key,
    description: `KuCoin sub-account ${account.subName}`,
  };
}

function seedOpenAI(emulator: OpenAIEmulator, integration: IntegrationSpec): SeededIntegration {
  const project = emulator.seedProject();
  const { currentKey } = project;
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url, project_id: project.projectId }),
    managementCredential: { admin_key: project.adminKey.value },
    currentSecret: { api_key_id: currentKey.id, api_key: currentKey.value, service_account_id: currentKey.serviceAccountId },
    currentKeyId: currentKey.id,
    description: `OpenAI service account ${currentKey.serviceAccountId} of project ${project.projectId}`,
  };
}

function seedQuicknode(emulator: QuicknodeEmulator, integration: IntegrationSpec): SeededIntegration {
  const account = emulator.seedAccount();
  const { currentToken } = account;
  return {
    integration: withProviderConfig(integration, { base_url: emulator.url, endpoint_id: account.endpointId, rpc_url: account.rpcUrl }),
    managementCredential: { api_key: account.apiKey },
    // The endpoint URL as the provider writes it: <rpc_url>/<token>/<rpc_path>.
    currentSecret: { token_id: currentToken.id, token: currentToken.token, endpoint_url: `${account.rpcUrl}/${currentToken.token}/${String(integration.providerConfig.rpc_path ?? '')}` },
    currentKeyId: currentToken.id,
    description: `QuickNode endpoint ${account.endpointId}`,
  };
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

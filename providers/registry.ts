import { awsIamProvider } from './aws-iam';
import { binanceProvider } from './binance';
import { bybitProvider } from './bybit';
import { cloudflareProvider } from './cloudflare';
import { datadogProvider } from './datadog';
import type { Provider } from './contract';
import { gateioProvider } from './gateio';
import { gitlabProvider } from './gitlab';
import { kucoinProvider } from './kucoin';
import { manualProvider } from './manual';
import { okxProvider } from './okx';
import { openaiProvider } from './openai';
import { quicknodeProvider } from './quicknode';

/**
 * The providers built into Rotor, by name. The inventory names a provider in each integration,
 * and `rotor providers` lists these with their summary and help.
 */
const builtInProviders: readonly Provider[] = [awsIamProvider, binanceProvider, bybitProvider, cloudflareProvider, datadogProvider, gateioProvider, gitlabProvider, kucoinProvider, manualProvider, okxProvider, openaiProvider, quicknodeProvider];

const providersByName = indexByName(builtInProviders);

/** Thrown when an inventory or command names a provider that Rotor does not know. */
export class UnknownProviderError extends Error {
  constructor(
    readonly providerName: string,
    readonly knownProviders: string[],
  ) {
    super(
      `Unknown provider "${providerName}". Known providers: ${knownProviders.join(', ')}. ` +
        'Check the provider field of the integration; `rotor providers` lists them with their help.',
    );
    this.name = 'UnknownProviderError';
  }
}

/** Returns the provider with this name, or throws UnknownProviderError listing the known ones. */
export function getProvider(name: string): Provider {
  const provider = providersByName.get(name);
  if (!provider) {
    throw new UnknownProviderError(name, [...providersByName.keys()].sort());
  }
  return provider;
}

/** Returns every built-in provider, sorted by name. */
export function listProviders(): Provider[] {
  return [...providersByName.values()].sort((left, right) => left.name.localeCompare(right.name));
}

function indexByName(providers: readonly Provider[]): Map<string, Provider> {
  const index = new Map<string, Provider>();
  for (const provider of providers) {
    // Two providers under one name would make the inventory ambiguous, so fail at startup.
    if (index.has(provider.name)) {
      throw new Error(`Two built-in providers are named "${provider.name}". Provider names must be unique.`);
    }
    index.set(provider.name, provider);
  }
  return index;
}

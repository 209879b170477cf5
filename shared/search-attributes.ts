import { defineSearchAttributeKey } from '@temporalio/common';

/**
 * Search attributes Rotor sets on every rotation, so the Temporal UI and `temporal workflow
 * list --query` can filter by integration, provider and phase. The server must have them
 * registered as Keyword attributes; `rotor dev` and the tests register them at start-up.
 */
export const integrationAttribute = defineSearchAttributeKey('RotorIntegration', 'KEYWORD');
export const providerAttribute = defineSearchAttributeKey('RotorProvider', 'KEYWORD');
export const phaseAttribute = defineSearchAttributeKey('RotorPhase', 'KEYWORD');

export const rotorSearchAttributes = [integrationAttribute, providerAttribute, phaseAttribute];

/** Search attributes a rotation starts with, so the UI can filter it before its first phase. */
export function rotationSearchAttributes(integration: { id: string; provider: string }) {
  return [
    { key: integrationAttribute, value: integration.id },
    { key: providerAttribute, value: integration.provider },
    { key: phaseAttribute, value: 'planning' },
  ];
}

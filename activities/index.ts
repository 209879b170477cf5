export { createProviderActivities } from './provider-activities';
export { createVaultActivities } from './vault-activities';
export type { ActivityDependencies, RotationReference } from './dependencies';

import type { ActivityDependencies } from './dependencies';
import { createProviderActivities } from './provider-activities';
import { createVaultActivities } from './vault-activities';

/** Creates every activity the worker registers, bound to the worker's Vault client and logger. */
export function createActivities(dependencies: ActivityDependencies) {
  return { ...createProviderActivities(dependencies), ...createVaultActivities(dependencies) };
}

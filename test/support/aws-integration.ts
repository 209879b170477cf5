import { DeleteAccessKeyCommand, IAMClient, ListAccessKeysCommand } from '@aws-sdk/client-iam';
import type { VaultStore } from '../../shared/vault';
import type { IntegrationSpec } from '../../workflows/rotation-types';
import { motoRejectionOf, seedAwsAccount, type AwsAccessKey, type SeededAwsAccount } from '../emulators/moto';
import { testEnvironment, uniqueSuffix } from './environment';

/**
 * An aws-iam integration on the test moto server: an app user with one access key, its
 * management credential and current secret in Vault, and an IAM client to inspect moto.
 */
export interface AwsTestIntegration {
  integration: IntegrationSpec;
  account: SeededAwsAccount;
  /** Lists the app user's access key ids at moto, signed with the management credential. */
  listKeyIds(): Promise<string[]>;
  /** Deletes a key at moto behind Rotor's back. */
  deleteKey(keyId: string): Promise<void>;
}

export async function prepareAwsIntegration(
  vault: VaultStore,
  overrides: { policy?: Partial<IntegrationSpec['policy']>; providerConfig?: Record<string, unknown> } = {},
): Promise<AwsTestIntegration> {
  const motoUrl = testEnvironment().ROTOR_TEST_MOTO_URL;
  const suffix = uniqueSuffix();
  const account = await seedAwsAccount(motoUrl, { adminUser: `rotor-admin-${suffix}`, appUser: `app-${suffix}` });
  const id = `aws-${suffix}`;
  const managementCredentialPath = `rotor/management/${id}`;
  const vaultPath = `apps/${id}/aws`;
  await vault.writeSecret(managementCredentialPath, { ...account.managementCredential });
  await vault.writeSecret(vaultPath, { ...account.currentKey });

  const integration: IntegrationSpec = {
    id,
    provider: 'aws-iam',
    providerConfig: { user_name: account.appUserName, region: 'us-east-1', endpoint: motoUrl, ...overrides.providerConfig },
    managementCredentialPath,
    vaultPath,
    owner: 'platform-tests',
    policy: {
      gracePeriodMs: 1_000,
      verifyTimeoutMs: 30_000,
      maxGraceMs: 60_000,
      clearStaleKeys: false,
      ...overrides.policy,
    },
    restrictions: { ipAllowlist: [], scopes: [] },
  };

  const iam = new IAMClient({
    region: 'us-east-1',
    endpoint: motoUrl,
    credentials: { accessKeyId: account.managementCredential.access_key_id, secretAccessKey: account.managementCredential.secret_access_key },
  });
  return {
    integration,
    account,
    listKeyIds: async () => {
      const response = await iam.send(new ListAccessKeysCommand({ UserName: account.appUserName }));
      return (response.AccessKeyMetadata ?? []).map((key) => key.AccessKeyId ?? '').sort();
    },
    deleteKey: async (keyId) => {
      await iam.send(new DeleteAccessKeyCommand({ UserName: account.appUserName, AccessKeyId: keyId }));
    },
  };
}

/** True when moto accepts the key: STS GetCallerIdentity signed with it succeeds. */
export async function motoAcceptsKey(key: AwsAccessKey): Promise<boolean> {
  return (await motoRejectionOf(testEnvironment().ROTOR_TEST_MOTO_URL, key)) === null;
}

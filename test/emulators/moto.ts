import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  IAMClient,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { findFreePort, spawnService, waitUntilReady, type LocalService } from '../../shared/local-services';

/**
 * Helpers that run a real moto server (PyPI `moto[server]`) for the tests, the demo and the
 * benchmark, and seed it with an AWS account in which moto checks signatures and IAM policies.
 * moto listens on 127.0.0.1 only.
 */

const MOTO_HOST = '127.0.0.1';

// moto imports every AWS service model at startup, which takes a few seconds on a cold cache.
const DEFAULT_START_TIMEOUT_MS = 30_000;

export interface StartMotoOptions {
  /** Path of the `moto_server` executable. */
  binary: string;
  /** Loopback port to listen on. When absent, a free port is picked. */
  port?: number;
  /** File that receives moto's output. Output is appended, and missing folders are created. */
  logFile: string;
  /** Time to wait for moto's first HTTP response before giving up, in milliseconds. Default 30000. */
  startTimeoutMs?: number;
}

export interface MotoServer extends LocalService {
  /** Base URL, such as http://127.0.0.1:5123. */
  url: string;
  port: number;
}

/** Starts `moto_server` on a loopback port and resolves once it responds to HTTP requests. */
export async function startMoto(options: StartMotoOptions): Promise<MotoServer> {
  const port = options.port ?? (await findFreePort());
  const url = `http://${MOTO_HOST}:${port}`;
  const service = spawnService('moto server', options.binary, ['-H', MOTO_HOST, '-p', String(port)], { logFile: options.logFile });

  try {
    // /moto-api/config is moto's cheapest endpoint: a small JSON document, no AWS action.
    await waitUntilReady(service, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, async () => {
      const response = await fetch(`${url}/moto-api/config`, { signal: AbortSignal.timeout(1_000) });
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
    });
  } catch (error) {
    await service.stop();
    throw error;
  }
  return { ...service, url, port };
}

// ---------------------------------------------------------------------------------------------
// Seeding an account
// ---------------------------------------------------------------------------------------------

export interface AwsAccessKey {
  access_key_id: string;
  secret_access_key: string;
}

export interface SeedAwsAccountOptions {
  /** IAM user that owns the management credential. Its policy allows iam:* and sts:GetCallerIdentity. */
  adminUser: string;
  /** IAM user whose key Rotor rotates. Seeding gives it one access key. */
  appUser: string;
}

export interface SeededAwsAccount {
  /** The admin user's access key, in the shape of the aws-iam provider's credential schema. */
  managementCredential: AwsAccessKey;
  appUserName: string;
  /** The app user's first access key: the key consumers use before the first rotation. */
  currentKey: AwsAccessKey;
}

// The three actions that have to run before any access key exists: CreateUser,
// PutUserPolicy and CreateAccessKey for the admin user.
const UNAUTHENTICATED_ACTIONS = 3;

// AWS's documented example key. moto does not check it while its unauthenticated budget lasts.
const UNCHECKED_CREDENTIAL = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};

const ADMIN_POLICY = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: ['iam:*', 'sts:GetCallerIdentity'], Resource: '*' }],
});

/**
 * Turns on moto's request authentication and seeds an admin user (the management credential)
 * and an app user with one access key.
 *
 * moto checks signatures, access key existence and IAM policies once it has served the number
 * of unauthenticated actions set through POST /moto-api/reset-auth. That counter is one for the
 * whole server, so from then on every client of this server must sign with a key that exists
 * in moto. Seeding opens a window of exactly 3 unauthenticated actions, and a concurrent client
 * that spends part of it makes seeding fail. Seed before anything else talks to the server.
 * Unlike AWS, moto still accepts a key that is set Inactive. Only a deleted key is rejected.
 */
export async function seedAwsAccount(motoUrl: string, options: SeedAwsAccountOptions): Promise<SeededAwsAccount> {
  assertLoopbackUrl(motoUrl);
  await resetMotoAuth(motoUrl, UNAUTHENTICATED_ACTIONS);

  const unchecked = createSeedingClient(motoUrl, UNCHECKED_CREDENTIAL);
  let managementCredential: AwsAccessKey;
  try {
    await seedingStep('CreateUser for the admin user', () =>
      unchecked.send(new CreateUserCommand({ UserName: options.adminUser })),
    );
    await seedingStep('PutUserPolicy for the admin user', () =>
      unchecked.send(
        new PutUserPolicyCommand({ UserName: options.adminUser, PolicyName: 'rotor-admin', PolicyDocument: ADMIN_POLICY }),
      ),
    );
    managementCredential = await createAccessKey(unchecked, options.adminUser);
  } catch (error) {
    // A failed step leaves part of the window open, and moto would accept any request in it.
    await resetMotoAuth(motoUrl, 0);
    throw error;
  } finally {
    unchecked.destroy();
  }

  // From here moto checks every request, so the admin key signs the rest.
  const admin = createSeedingClient(motoUrl, {
    accessKeyId: managementCredential.access_key_id,
    secretAccessKey: managementCredential.secret_access_key,
  });
  try {
    await seedingStep('CreateUser for the app user', () => admin.send(new CreateUserCommand({ UserName: options.appUser })));
    const currentKey = await createAccessKey(admin, options.appUser);
    return { managementCredential, appUserName: options.appUser, currentKey };
  } finally {
    admin.destroy();
  }
}

/**
 * Sets how many actions moto serves without checking authentication from now on. moto 5.2.5
 * reads the body as a bare number (`float(body)`), and a JSON body makes it fail with HTTP 500.
 */
async function resetMotoAuth(motoUrl: string, unauthenticatedActions: number): Promise<void> {
  const response = await fetch(`${motoUrl}/moto-api/reset-auth`, {
    method: 'POST',
    body: String(unauthenticatedActions),
    signal: AbortSignal.timeout(5_000),
  });
  if (!response.ok) {
    throw new Error(`moto at ${motoUrl} returned HTTP ${response.status} to POST /moto-api/reset-auth.`);
  }
}

async function createAccessKey(client: IAMClient, userName: string): Promise<AwsAccessKey> {
  const response = await seedingStep(`CreateAccessKey for ${userName}`, () =>
    client.send(new CreateAccessKeyCommand({ UserName: userName })),
  );
  const accessKeyId = response.AccessKey?.AccessKeyId;
  const secretAccessKey = response.AccessKey?.SecretAccessKey;
  if (!accessKeyId || !secretAccessKey) {
    throw new Error(`moto returned no access key id or secret to CreateAccessKey for ${userName}.`);
  }
  return { access_key_id: accessKeyId, secret_access_key: secretAccessKey };
}

/** Runs one seeding call and names the step, and the likely cause, when it fails. */
async function seedingStep<T>(step: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    const code = error instanceof Error ? error.name : String(error);
    const hint =
      code === 'InvalidClientTokenId'
        ? ' moto checked authentication before seeding finished: another client used part of the' +
          ` ${UNAUTHENTICATED_ACTIONS} unauthenticated actions, so seed before anything else talks to this server.`
        : code === 'EntityAlreadyExistsException'
          ? ' Pick user names that are unique on this moto server.'
          : '';
    throw new Error(`Seeding moto failed at ${step}: ${code}.${hint}`);
  }
}

function createSeedingClient(motoUrl: string, credentials: { accessKeyId: string; secretAccessKey: string }): IAMClient {
  return new IAMClient({ region: 'us-east-1', endpoint: motoUrl, credentials, maxAttempts: 1 });
}

/** Rejects URLs that are not on this machine, so that seeding never touches another host. */
function assertLoopbackUrl(motoUrl: string): void {
  const hostname = new URL(motoUrl).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
    throw new Error(`Rejected moto URL ${motoUrl}: the moto helpers only connect to a server on 127.0.0.1, localhost or [::1].`);
  }
}

/**
 * Asks moto's STS who the key belongs to. Returns null when moto accepts the key, or the error
 * code of its response (InvalidClientTokenId for a deleted key).
 */
export async function motoRejectionOf(motoUrl: string, key: AwsAccessKey): Promise<string | null> {
  assertLoopbackUrl(motoUrl);
  const sts = new STSClient({
    region: 'us-east-1',
    endpoint: motoUrl,
    maxAttempts: 1,
    credentials: { accessKeyId: key.access_key_id, secretAccessKey: key.secret_access_key },
  });
  try {
    await sts.send(new GetCallerIdentityCommand({}));
    return null;
  } catch (error) {
    return error instanceof Error ? error.name : String(error);
  } finally {
    sts.destroy();
  }
}

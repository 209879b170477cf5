import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { startRotation, RotationAlreadyRunningError } from '../../cli/start-rotation';
import { providerTaskQueue } from '../../shared/task-queues';
import { repositoryRoot, resolveToolPaths } from '../../shared/tools';
import type { VaultStore } from '../../shared/vault';
import { finishGraceSignal, rollbackSignal, stateQuery } from '../../workflows/rotate-key';
import type { RotationResult } from '../../workflows/rotation-types';
import { seedAwsAccount, startMoto, type MotoServer } from '../emulators/moto';
import { motoAcceptsKey, prepareAwsIntegration, type AwsTestIntegration } from '../support/aws-integration';
import { capturedRuntimeLogger, startTestWorker, testClient, testEnvironment, testVault, uniqueSuffix, type RunningTestWorker } from '../support/environment';
import { historyText, waitForActivityCompleted, waitForPhase } from '../support/rotations';

describe('rotateKey workflow on real Temporal, Vault and moto', () => {
  let client: Client;
  let vault: VaultStore;
  let worker: RunningTestWorker;
  const taskQueue = `rotor-test-${uniqueSuffix()}`;
  const start = (aws: AwsTestIntegration, dryRun = false) => startRotation(client, aws.integration, { taskQueue, dryRun, requestedBy: 'test' });

  before(async () => {
    client = await testClient();
    vault = await testVault();
    worker = await startTestWorker(taskQueue);
  });

  after(async () => {
    await worker.stop();
    await client.connection.close();
  });

  describe('a full rotation', () => {
    let aws: AwsTestIntegration;
    let result: RotationResult;
    let history: string;

    before(async () => {
      aws = await prepareAwsIntegration(vault);
      const handle = await start(aws);
      result = await handle.result();
      history = await historyText(handle);
    });

    it('promotes the new key for consumers', async () => {
      const latest = await vault.readSecret(aws.integration.vaultPath);

      assert.equal(result.outcome, 'completed');
      assert.equal(latest?.version, 2);
      assert.equal(latest?.data.access_key_id, result.state.pendingKeyId);
      assert.notEqual(latest?.data.secret_access_key, aws.account.currentKey.secret_access_key);
      assert.equal(await motoAcceptsKey({ access_key_id: latest?.data.access_key_id ?? '', secret_access_key: latest?.data.secret_access_key ?? '' }), true);
    });

    it('deletes the old key at the provider', async () => {
      const keyIds = await aws.listKeyIds();

      assert.deepEqual(keyIds, [result.state.pendingKeyId]);
      assert.equal(await motoAcceptsKey(aws.account.currentKey), false);
    });

    it('keeps the previous Vault version readable', async () => {
      const previous = await vault.readSecret(aws.integration.vaultPath, 1);

      assert.deepEqual(previous?.data, aws.account.currentKey);
    });

    it('records the rotation in custom metadata', async () => {
      const metadata = await vault.readMetadata(aws.integration.vaultPath);
      const custom = metadata?.customMetadata ?? {};

      assert.equal(custom.provider, 'aws-iam');
      assert.equal(custom.key_id, result.state.pendingKeyId);
      assert.equal(custom.previous_key_id, aws.account.currentKey.access_key_id);
      assert.equal(custom.rotation_id, result.state.rotationId);
      assert.ok(!Number.isNaN(Date.parse(custom.rotated_at ?? '')), `rotated_at is ${custom.rotated_at}`);
      assert.ok(!Number.isNaN(Date.parse(custom.last_rotated_at ?? '')), `last_rotated_at is ${custom.last_rotated_at}`);
    });

    it('removes the staged secret', async () => {
      const staged = await vault.readMetadata(`rotor/staging/${aws.integration.id}/${result.state.rotationId}`);

      assert.equal(staged, null);
    });

    it('passes through every phase in order', () => {
      assert.deepEqual(Object.keys(result.state.phaseStartedAt), ['planning', 'creating', 'verifying', 'promoting', 'grace', 'revoking', 'completed']);
    });

    it('keeps both secrets out of the workflow history', async () => {
      const newSecret = (await vault.readSecret(aws.integration.vaultPath))?.data.secret_access_key ?? '';

      // The key ids are in the history, so the decoded text is the right place to search.
      assert.ok(history.includes(result.state.pendingKeyId ?? 'missing'), 'history text should contain the new key id');
      assert.ok(newSecret.length > 20);
      assert.equal(history.includes(newSecret), false, 'new secret found in history');
      assert.equal(history.includes(aws.account.currentKey.secret_access_key), false, 'old secret found in history');
      assert.equal(history.includes(aws.account.managementCredential.secret_access_key), false, 'management secret found in history');
    });

    it('keeps both secrets out of the logs', async () => {
      const logs = capturedRuntimeLogger().capture.text();
      const newSecret = (await vault.readSecret(aws.integration.vaultPath))?.data.secret_access_key ?? '';

      assert.ok(logs.includes(`"rotationId":"${result.state.rotationId}"`), 'logs should follow the rotation by its id');
      assert.ok(logs.includes('rotation completed'));
      assert.equal(logs.includes(newSecret), false, 'new secret found in logs');
      assert.equal(logs.includes(aws.account.currentKey.secret_access_key), false, 'old secret found in logs');
      assert.equal(logs.includes(aws.account.managementCredential.secret_access_key), false, 'management secret found in logs');
    });
  });

  it('dry run reports the plan and changes nothing', async () => {
    const aws = await prepareAwsIntegration(vault);

    const result = await (await start(aws, true)).result();

    assert.equal(result.outcome, 'dry-run');
    assert.equal(result.state.currentKeyId, aws.account.currentKey.access_key_id);
    assert.ok(result.state.plan?.steps.some((step) => step.startsWith('would create a new aws-iam key')));
    assert.ok(result.state.plan?.steps.some((step) => step.includes(`would revoke the current key ${aws.account.currentKey.access_key_id}`)));
    assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
    assert.equal((await vault.readSecret(aws.integration.vaultPath))?.version, 1);
  });

  describe('a key that never verifies', () => {
    let otherMoto: MotoServer;

    before(async () => {
      // A second moto that has none of the first one's keys plays an STS endpoint that
      // never accepts the new key.
      otherMoto = await startMoto({ binary: resolveToolPaths().motoServer, logFile: path.join(testEnvironment().ROTOR_TEST_WORK_DIR, 'moto-sts.log') });
      await seedAwsAccount(otherMoto.url, { adminUser: 'sts-admin', appUser: 'sts-app' });
    });

    after(async () => {
      await otherMoto.stop();
    });

    it('is revoked and leaves the current key in place', async () => {
      const aws = await prepareAwsIntegration(vault, { policy: { verifyTimeoutMs: 4_000 }, providerConfig: { sts_endpoint: otherMoto.url } });

      const failure = await (await start(aws)).result().catch((error: unknown) => error);

      assert.ok(failure instanceof WorkflowFailedError);
      assert.match(failure.cause?.message ?? '', new RegExp(`^Rotation of ${aws.integration.id} failed in phase verifying: `));
      assert.match(failure.cause?.message ?? '', /AWS STS rejected the new access key \w+ of user app-\w+: InvalidClientTokenId/);
      assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
      const current = await vault.readSecret(aws.integration.vaultPath);
      assert.equal(current?.version, 1);
      assert.deepEqual(current?.data, aws.account.currentKey);
      assert.equal(await motoAcceptsKey(aws.account.currentKey), true);
    });
  });

  it('rollback during grace restores the previous key', async () => {
    const aws = await prepareAwsIntegration(vault, { policy: { gracePeriodMs: 120_000 } });
    const handle = await start(aws);
    const inGrace = await waitForPhase(handle, 'grace');

    await handle.signal(rollbackSignal, { reason: 'consumers failed with the new key' });
    const result = await handle.result();

    assert.equal(result.outcome, 'rolled-back');
    const latest = await vault.readSecret(aws.integration.vaultPath);
    assert.equal(latest?.version, 3);
    assert.deepEqual(latest?.data, aws.account.currentKey);
    assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
    assert.ok(inGrace.pendingKeyId);
    assert.equal((await vault.readMetadata(aws.integration.vaultPath))?.customMetadata.key_id, aws.account.currentKey.access_key_id);
    assert.equal(await motoAcceptsKey(aws.account.currentKey), true);
  });

  it('grace waits while the old key is in use', async () => {
    const aws = await prepareAwsIntegration(vault, { policy: { gracePeriodMs: 1_000, idlePeriodMs: 4_000, maxGraceMs: 60_000 } });
    const handle = await start(aws);
    await waitForPhase(handle, 'grace');

    // A consumer that has not reloaded yet keeps calling with the old key for 3 seconds.
    const usedUntil = Date.now() + 3_000;
    while (Date.now() < usedUntil) {
      await motoAcceptsKey(aws.account.currentKey);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const waiting = await handle.query(stateQuery);
    const result = await handle.result();

    assert.equal(waiting.phase, 'grace');
    assert.match(waiting.waitingReason ?? '', new RegExp(`previous key ${aws.account.currentKey.access_key_id} was last used at .*; waiting until it has been idle for 4 s`));
    assert.equal(result.outcome, 'completed');
    const graceMs = Date.parse(result.state.phaseStartedAt.revoking ?? '') - Date.parse(result.state.phaseStartedAt.grace ?? '');
    assert.ok(graceMs >= 6_000, `grace lasted ${graceMs} ms; the old key was in use for 3 s and idle_period is 4 s`);
  });

  it('refuses a second rotation while one runs', async () => {
    const aws = await prepareAwsIntegration(vault, { policy: { gracePeriodMs: 120_000 } });
    const first = await start(aws);
    await waitForPhase(first, 'grace');

    const refusal = await start(aws).catch((error: unknown) => error);
    await first.signal(finishGraceSignal);
    const result = await first.result();

    assert.ok(refusal instanceof RotationAlreadyRunningError);
    assert.match(refusal.message, new RegExp(`A rotation of ${aws.integration.id} is already running \\(workflow rotate-${aws.integration.id}, phase grace\\)`));
    assert.equal(result.outcome, 'completed');
    assert.equal((await aws.listKeyIds()).length, 1);
  });

  it('stops in planning when a second key blocks the limit', async () => {
    const aws = await prepareAwsIntegration(vault);
    const extra = await seedExtraKey(aws);

    const failure = await (await start(aws)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(failure.cause?.message ?? '', /failed in phase planning: aws-iam allows 2 keys/);
    assert.match(failure.cause?.message ?? '', new RegExp(`${extra} blocks the new key`));
    assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id, extra].sort());
  });

  it('clears an inactive extra key when the policy allows', async () => {
    const aws = await prepareAwsIntegration(vault, { policy: { clearStaleKeys: true } });
    const extra = await seedExtraKey(aws, { deactivate: true });

    const result = await (await start(aws)).result();

    assert.equal(result.outcome, 'completed');
    assert.deepEqual(result.state.plan?.staleKeyIds, [extra]);
    assert.deepEqual(await aws.listKeyIds(), [result.state.pendingKeyId]);
  });

  it('stops in planning without a management credential', async () => {
    const aws = await prepareAwsIntegration(vault);
    await vault.destroySecret(aws.integration.managementCredentialPath);

    const failure = await (await start(aws)).result().catch((error: unknown) => error);

    assert.ok(failure instanceof WorkflowFailedError);
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(`failed in phase planning: The management credential of ${aws.integration.id} is missing: nothing at secret/${aws.integration.managementCredentialPath}`),
    );
    assert.deepEqual(await aws.listKeyIds(), [aws.account.currentKey.access_key_id]);
  });

  it('survives a worker killed after the create activity', async () => {
    const crashQueue = `rotor-crash-${uniqueSuffix()}`;
    const aws = await prepareAwsIntegration(vault, { policy: { gracePeriodMs: 1_000 } });
    const firstWorker = spawnWorkerProcess(crashQueue);
    const handle = await startRotation(client, aws.integration, { taskQueue: crashQueue, dryRun: false, requestedBy: 'test' });

    await waitForActivityCompleted(handle, 'createPendingKey');
    firstWorker.kill('SIGKILL');
    await firstWorker.exited;
    const secondWorker = spawnWorkerProcess(crashQueue);
    const result = await handle.result().finally(() => {
      secondWorker.kill('SIGTERM');
    });
    await secondWorker.exited;

    assert.equal(result.outcome, 'completed');
    assert.deepEqual(await aws.listKeyIds(), [result.state.pendingKeyId]);
    assert.equal((await vault.readSecret(aws.integration.vaultPath))?.data.access_key_id, result.state.pendingKeyId);
    const output = firstWorker.output() + secondWorker.output();
    assert.ok(output.includes(aws.integration.id), 'the worker processes should log the rotation');
    assert.equal(output.includes(aws.account.currentKey.secret_access_key), false, 'old secret found in worker output');
  });

  async function seedExtraKey(aws: AwsTestIntegration, options: { deactivate?: boolean } = {}): Promise<string> {
    const { CreateAccessKeyCommand, IAMClient, UpdateAccessKeyCommand } = await import('@aws-sdk/client-iam');
    const iam = new IAMClient({
      region: 'us-east-1',
      endpoint: testEnvironment().ROTOR_TEST_MOTO_URL,
      credentials: { accessKeyId: aws.account.managementCredential.access_key_id, secretAccessKey: aws.account.managementCredential.secret_access_key },
    });
    const created = await iam.send(new CreateAccessKeyCommand({ UserName: aws.account.appUserName }));
    const keyId = created.AccessKey?.AccessKeyId ?? '';
    if (options.deactivate) {
      await iam.send(new UpdateAccessKeyCommand({ UserName: aws.account.appUserName, AccessKeyId: keyId, Status: 'Inactive' }));
    }
    iam.destroy();
    return keyId;
  }
});

/** Runs `rotor worker` as a separate process on a task queue, keeping its output. */
function spawnWorkerProcess(taskQueue: string) {
  const chunks: string[] = [];
  const child = spawn(process.execPath, [path.join(repositoryRoot, 'bin', 'rotor.js'), 'worker'], {
    env: { ...process.env, ROTOR_TASK_QUEUE: taskQueue, ROTOR_SHUTDOWN_GRACE: '2s', ROTOR_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { kill: (signal: NodeJS.Signals) => child.kill(signal), exited, output: () => chunks.join(''), providerQueue: providerTaskQueue(taskQueue, 'aws-iam') };
}

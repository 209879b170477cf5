import { spawn } from 'node:child_process';
import path from 'node:path';
import { repositoryRoot } from '../../shared/tools';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `rotor` as a user would, through bin/rotor.js, and collects its output. */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repositoryRoot, 'bin', 'rotor.js'), ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`rotor ${args.join(' ')} did not finish in ${options.timeoutMs ?? 60_000} ms. Output so far:\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

import { spawn, type ChildProcess } from 'node:child_process';
import { EnvoyClient } from '../../src/authz/envoy-client.js';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const CLI = path.resolve(import.meta.dirname, '../../dist/cli.js');

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first JSON log line whose event matches. */
  logEvent(event: string, timeoutMs?: number): Promise<Record<string, any>>;
  exited: Promise<number | null>;
}

export interface CliOptions {
  /** Run as this user (and group): root reads files whatever their mode. */
  user?: { uid: number; gid: number };
  /** Node options before the CLI, e.g. `--require` of a probe. */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Run under this many file descriptors (soft and hard: node raises its soft limit to the hard one). */
  fdLimit?: number;
}

/** Runs the built CLI (`npm test` builds first) as a separate process. */
export function spawnCli(args: string[], options: CliOptions = {}): Spawned {
  const argv = [...(options.nodeArgs ?? []), CLI, ...args];
  const [command, commandArgs] = options.fdLimit === undefined ? [process.execPath, argv]
    : ['sh', ['-c', `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, process.execPath, ...argv]];
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.user && { uid: options.user.uid, gid: options.user.gid }),
    ...(options.env && { env: options.env }),
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async logEvent(event, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        for (const line of err.split('\n')) {
          if (!line.startsWith('{')) continue;
          const record = JSON.parse(line) as Record<string, any>;
          if (record.event === event) return record;
        }
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no "${event}" log event; stderr:\n${err}`);
    },
  };
}

export async function runCli(args: string[], options: CliOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const spawned = spawnCli(args, options);
  const code = await spawned.exited;
  return { code, stdout: spawned.stdout(), stderr: spawned.stderr() };
}

/** runCli, plus the process's peak resident memory (MiB) as it exited. */
export async function runCliMeasuringRss(args: string[]): Promise<Awaited<ReturnType<typeof runCli>> & { maxRssMiB: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-rss-'));
  try {
    const report = path.join(dir, 'max-rss');
    const result = await runCli(args, {
      nodeArgs: ['--require', path.resolve(import.meta.dirname, 'max-rss.cjs')],
      env: { ...process.env, HOPGUARD_TEST_MAX_RSS_FILE: report },
    });
    return { ...result, maxRssMiB: Number(readFileSync(report, 'utf8')) / 1024 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A running `hopguard authz` process and an Envoy-like client for it. */
export interface SidecarProcess {
  proc: Spawned;
  envoy: EnvoyClient;
  admin: string;
  stop(): Promise<void>;
}

/** `startTimeoutMs`: longer for suites that start several sidecars on a loaded machine. */
export async function startSidecar(configFile: string, startTimeoutMs = 10_000): Promise<SidecarProcess> {
  const proc = spawnCli(['authz', '--config', configFile]);
  const started = await proc.logEvent('authz_started', startTimeoutMs).catch((err: unknown) => {
    proc.child.kill('SIGKILL');
    throw err;
  });
  const envoy = new EnvoyClient(started.grpc);
  return {
    proc,
    envoy,
    admin: started.admin,
    stop: async () => {
      envoy.close();
      proc.child.kill('SIGTERM');
      await proc.exited;
    },
  };
}

/**
 * The servers under test run as processes of their own (hopguard exactly as deployed:
 * `hopguard authz --config FILE`), and are measured from /proc: CPU time of the process and
 * its workers, and peak RSS (VmHWM, reset before each measured run).
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = new URL('../src/cli.js', import.meta.url).pathname;
const NOOP = new URL('./noop-authz.js', import.meta.url).pathname;
const READY_TIMEOUT_MS = 60_000;
const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export interface ServerProcess {
  name: string;
  child: ChildProcess;
  /** host:port of the gRPC listener. */
  address: string;
  /** Spawn to first 200 from /readyz (hopguard) or to the printed port (floor), ms. */
  readyMs: number;
  stderr(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function track(name: string, child: ChildProcess) {
  let err = '';
  child.stderr?.on('data', (chunk) => { err += chunk; });
  const exited = once(child, 'exit');
  return {
    stderr: () => err,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
    failed: () => new Error(`${name} exited early (${child.exitCode ?? child.signalCode}):\n${err}`),
  };
}

/**
 * The node flags the image runs hopguard with (the Dockerfile's ENV NODE_OPTIONS), so the bench
 * measures hopguard as deployed.
 */
export const DEPLOYED_NODE_FLAGS: string[] = (/^ENV NODE_OPTIONS=(.+)$/m.exec(readFileSync(dockerfile(), 'utf8'))?.[1] ?? '')
  .split(/\s+/).filter(Boolean);

/** The project's Dockerfile, wherever tsc put this file under bench/out. */
function dockerfile(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'Dockerfile'))) return path.join(dir, 'Dockerfile');
  }
  throw new Error('no Dockerfile above the bench');
}

/**
 * `hopguard authz --config FILE`; resolves once /readyz answers 200. `onStdout`: what node prints
 * there (--trace-gc). `wrapper`: a command node runs under (valgrind ...), given more time to start.
 */
export async function startHopguard(
  name: string,
  configFile: string,
  ports: { grpc: number; admin: number },
  nodeFlags: string[] = [],
  onStdout?: (text: string) => void,
  wrapper: string[] = [],
): Promise<ServerProcess> {
  const started = performance.now();
  const [command, ...args] = [...wrapper, process.execPath, ...nodeFlags, CLI, 'authz', '--config', configFile];
  const child = spawn(command!, args, { stdio: ['ignore', onStdout ? 'pipe' : 'ignore', 'pipe'] });
  const readyTimeoutMs = wrapper.length > 0 ? 20 * READY_TIMEOUT_MS : READY_TIMEOUT_MS;
  if (onStdout) child.stdout!.setEncoding('utf8').on('data', onStdout);
  const tracked = track(name, child);
  for (;;) {
    if (child.exitCode !== null) throw tracked.failed();
    if (await ready(ports.admin)) break;
    if (performance.now() - started > readyTimeoutMs) {
      const readyz = await fetch(`http://127.0.0.1:${ports.admin}/readyz`).then((res) => res.text(), (err: Error) => err.message);
      await tracked.stop();
      throw new Error(`${name} was not ready within ${readyTimeoutMs / 1000} s: /readyz ${readyz}\n${tracked.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { name, child, address: `127.0.0.1:${ports.grpc}`, readyMs: performance.now() - started, stderr: tracked.stderr, stop: tracked.stop };
}

function ready(adminPort: number): Promise<boolean> {
  return fetch(`http://127.0.0.1:${adminPort}/readyz`).then((res) => res.status === 200, () => false);
}

/** The no-op floor server (noop-authz.ts). */
export function startNoop(name: string, port: number, window: number, nodeFlags: string[] = [], wrapper: string[] = []): Promise<ServerProcess> {
  return startFloor(name, NOOP, [String(port), String(window)], nodeFlags, wrapper);
}

/**
 * A floor server script that prints its bound port on stdout (noop-authz.ts, noop-http.ts).
 * `wrapper`: a command node runs under (valgrind ...).
 */
export async function startFloor(name: string, script: string, args: string[], nodeFlags: string[] = [], wrapper: string[] = []): Promise<ServerProcess> {
  const started = performance.now();
  const [command, ...rest] = [...wrapper, process.execPath, ...nodeFlags, script, ...args];
  const child = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tracked = track(name, child);
  const bound = await new Promise<string>((resolve, reject) => {
    child.stdout!.once('data', (chunk) => resolve(String(chunk).trim()));
    child.once('exit', () => reject(tracked.failed()));
  });
  return { name, child, address: `127.0.0.1:${bound}`, readyMs: performance.now() - started, stderr: tracked.stderr, stop: tracked.stop };
}

/** The process and every descendant (cluster workers). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const parent = Number(stat[1]);
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** Fields of /proc/PID/stat after the command name: [state, ppid, …]; undefined once gone. */
function readStat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds of these processes. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after the name.
    if (stat) ticks += Number(stat[11]) + Number(stat[12]);
  }
  return ticks / TICKS_PER_SECOND;
}

/** Resets VmHWM (peak RSS) so the next reading covers only what follows. */
export function resetPeakRss(pids: number[]): void {
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      // Not permitted here: the peak then covers the process's whole life.
    }
  }
}

function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** MB, summed over the processes: peak since the last reset, or current. */
export function peakRssMb(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + statusKb(pid, 'VmHWM'), 0) / 1024;
}

export function rssMb(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + statusKb(pid, 'VmRSS'), 0) / 1024;
}

/**
 * CPU seconds of the whole machine, all cores (from /proc/stat): busy running anything, and
 * stolen by the hypervisor (a virtual machine's cores run only part of the time it wants them).
 */
export function machineSeconds(): { busy: number; stolen: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return { busy: (user + nice + system + irq + softirq) / TICKS_PER_SECOND, stolen: steal / TICKS_PER_SECOND };
}

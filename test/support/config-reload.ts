import { lstatSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { EnvoyClient } from '../../src/authz/envoy-client.js';
import { authzYaml, type Fixtures } from './harness.js';
import { spawnCli, type Spawned } from './process.js';

/** Config files for reload tests: their contents, and the ways a file is replaced in production. */

let serial = 0;

/** routes: one GET route on /orders/ requiring `scope`, and a condition on data.allowed. */
export function reloadConfig(fixtures: Fixtures, { scope = 'orders:read', extra = '', listen = '127.0.0.1:0' } = {}): string {
  return `${authzYaml(fixtures, { listen })}${extra}
data:
  allowed: ${join(fixtures.dir, 'allowed.yaml')}
routes:
  - name: orders
    methods: [GET]
    path_prefix: /orders/
    scopes: [${scope}]
  - name: tenants
    path_prefix: /tenants/
    when:
      - name: allowed-tenant
        cel: token.claims.tenant in data.allowed
# ${serial++}
`;
}

/** Writes `text` beside `file` and renames it over: the file is never seen half-written. */
export function replaceFile(file: string, text: string): void {
  const tmp = `${file}.tmp-${serial++}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * A ConfigMap volume: `name` → `..data/name`, `..data` → `..<stamp>`. `swap` does what the kubelet
 * does on an update (a new stamp directory, `..data` renamed over), and makes `name` the symlink
 * again if something replaced it meanwhile.
 */
export function configMapDir(dir: string, name: string) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  return {
    file,
    swap(text: string) {
      const stamp = `..2026_12_01_${String(serial++).padStart(4, '0')}`;
      mkdirSync(join(dir, stamp));
      writeFileSync(join(dir, stamp, name), text);
      symlinkSync(stamp, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      if (!isLink(file)) {
        symlinkSync(join('..data', name), `${file}.link`);
        renameSync(`${file}.link`, file);
      }
    },
  };
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

export function reloads(metrics: string, outcome: 'ok' | 'failed'): number {
  return metrics.split('\n').filter((l) => l.startsWith('hopguard_config_reloads_total{') && l.includes(`outcome="${outcome}"`))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

export async function start(configFile: string) {
  const proc = spawnCli(['authz', '--config', configFile]);
  const started = await proc.logEvent('authz_started');
  return { proc, started, envoy: new EnvoyClient(started.grpc), admin: started.admin as string };
}

export async function stop(running: { proc: Spawned; envoy: EnvoyClient }) {
  running.envoy.close();
  running.proc.child.kill('SIGTERM');
  expect(await running.proc.exited).toBe(0);
}

export function logEvents(proc: Spawned, event: string): Record<string, any>[] {
  return proc.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((r) => r.event === event);
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

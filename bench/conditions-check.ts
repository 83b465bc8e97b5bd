/**
 * The conditions section (issue 15), `npm run bench -- --only conditions`:
 *
 * 1. cache-hit checks/s on a route with three `when:` conditions (the tenant in the path is the
 *    token's, the tenant is not in a data file, the caller's address is in a CIDR) beside a route
 *    with none, in the same sidecar and the same run, rounds alternating, and the no-op floor
 *    (noop-authz.ts) on the same request: target, three conditions within 10 % of none;
 * 2. p99.9 of cache-hit checks while the config file is replaced every 250 ms (each a whole
 *    reload: a new revision, new issuer keys, an empty verification cache), beside the same run
 *    with no reloads.
 *
 * Every answer must be the allow: h2load's DATA bytes must be exactly `requests` cached allows
 * (a denial's response differs in size), checked again with one sample after each run.
 */

import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { percentile, runH2load } from './h2load.js';
import { DEPLOYED_NODE_FLAGS, freePort, startHopguard, startNoop, type ServerProcess } from './processes.js';

export interface ConditionsBenchContext {
  dir: string;
  jwksPath: string;
  issuer: string;
  audience: string;
  /** A token for the audience, bound to checkout's certificate, with these claims added. */
  token(claims: Record<string, unknown>): Promise<string>;
  /** The CheckRequest Envoy sends for `token` on `path` (source address 10.8.3.17), as a gRPC frame file for h2load. */
  request(token: string, path: string): { message: Buffer; bodyFile: string };
  /** The outcome ('allow' or the deny code) and DATA bytes of one check of exactly these bytes. */
  sample(address: string, message: Buffer): Promise<{ outcome: string; bytes: number }>;
  checkPath: string;
  connections: number;
  streams: number;
  rounds: number;
  requests: number;
  window: number;
  say(line?: string): void;
  results: Record<string, unknown>;
}

const RELOAD_EVERY_MS = 250;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function sidecarConfig(ctx: ConditionsBenchContext, ports: { grpc: number; admin: number }, serial: number): string {
  return `${stringify({
    listen: `127.0.0.1:${ports.grpc}`,
    admin: `127.0.0.1:${ports.admin}`,
    audience: ctx.audience,
    issuers: [{ issuer: ctx.issuer, jwks_file: ctx.jwksPath, algorithms: ['ES256'], max_ttl: '2h' }],
    binding: 'mtls',
    data: { suspended: path.join(ctx.dir, 'suspended-tenants.yaml') },
    routes: [
      { name: 'none', methods: ['GET'], path_prefix: '/orders/', scopes: ['orders:read'] },
      {
        name: 'three', methods: ['GET'], path_prefix: '/tenants/', scopes: ['orders:read'],
        when: [
          { name: 'own-tenant', cel: "request.path.startsWith('/tenants/' + token.claims.tenant + '/')" },
          { name: 'tenant-active', cel: '!(token.claims.tenant in data.suspended)' },
          { name: 'from-cluster', cel: "request.source.address.inCidr('10.0.0.0/8')" },
        ],
      },
    ],
  })}# ${serial}\n`;
}

export async function conditionsSection(ctx: ConditionsBenchContext): Promise<void> {
  const { say } = ctx;
  say(`\n== conditions: cache hits on a route with three when: conditions vs none (same sidecar), ${ctx.connections} connections x ${ctx.streams} streams, median of ${ctx.rounds} rounds; p99.9 during reloads every ${RELOAD_EVERY_MS} ms`);
  writeFileSync(path.join(ctx.dir, 'suspended-tenants.yaml'), stringify(Array.from({ length: 200 }, (_, i) => `tenant-${i}`)));
  const ports = { grpc: await freePort(), admin: await freePort() };
  const file = path.join(ctx.dir, 'conditions-sidecar.yaml');
  let serial = 0;
  writeFileSync(file, sidecarConfig(ctx, ports, serial));
  const servers: ServerProcess[] = [];
  try {
    const sidecar = await startHopguard('hopguard-conditions', file, ports, DEPLOYED_NODE_FLAGS);
    servers.push(sidecar);
    const floor = await startNoop('floor-conditions', await freePort(), ctx.window);
    servers.push(floor);
    const token = await ctx.token({ tenant: 'acme' });
    const requests = { none: ctx.request(token, '/orders/42'), three: ctx.request(token, '/tenants/acme/orders/42') };
    // One cached allow's DATA bytes, per route: what every answer of a run must add up to.
    const allowBytes: Record<string, number> = {};
    const expectAllow = async (key: 'none' | 'three') => {
      const { outcome, bytes } = await ctx.sample(sidecar.address, requests[key].message);
      if (outcome !== 'allow') throw new Error(`conditions ${key}: expected allow, the sample got ${outcome}`);
      return bytes;
    };
    for (const key of ['none', 'three'] as const) {
      await expectAllow(key);
      allowBytes[key] = await expectAllow(key);
    }
    const run = async (key: 'none' | 'three' | 'floor', n: number, withLatencies: boolean) => {
      const server = key === 'floor' ? floor : sidecar;
      const request = key === 'floor' ? requests.none : requests[key];
      const result = await runH2load({
        url: `http://${server.address}${ctx.checkPath}`, bodyFile: request.bodyFile, requests: n,
        connections: ctx.connections, streamsPerConnection: ctx.streams,
        ...(withLatencies && { logFile: path.join(ctx.dir, `conditions-${key}.log`) }),
      });
      if (result.succeeded !== n || result.failed !== 0 || result.status2xx !== n) throw new Error(`conditions ${key}: ${result.succeeded} of ${n} succeeded`);
      if (key !== 'floor' && result.dataBytes !== n * allowBytes[key]!) {
        throw new Error(`conditions ${key}: ${result.dataBytes} DATA bytes, expected ${n} cached allows of ${allowBytes[key]} B: not every check was allowed`);
      }
      if (key !== 'floor' && await expectAllow(key) !== allowBytes[key]) throw new Error(`conditions ${key}: the answer changed size after the run`);
      return result;
    };

    const warmup = Math.max(5_000, Math.round(ctx.requests / 3));
    for (const key of ['floor', 'none', 'three'] as const) await run(key, warmup, false);
    const rates: Record<string, number[]> = { floor: [], none: [], three: [] };
    const p999: Record<string, number[]> = { floor: [], none: [], three: [] };
    for (let round = 0; round < ctx.rounds; round++) {
      for (const key of ['floor', 'none', 'three'] as const) {
        const result = await run(key, ctx.requests, true);
        rates[key]!.push(result.rate);
        p999[key]!.push(percentile(result.latenciesUs, 0.999) / 1000);
        say(`  round ${round + 1}/${ctx.rounds} ${key.padEnd(6)} ${Math.round(result.rate).toString().padStart(7)} checks/s  p99.9 ${(percentile(result.latenciesUs, 0.999) / 1000).toFixed(1)} ms`);
      }
    }
    const rate = (key: string) => median(rates[key]!);
    const rows = {
      floor: { checksPerSecond: Math.round(rate('floor')), p999Ms: Number(median(p999.floor!).toFixed(2)) },
      none: { checksPerSecond: Math.round(rate('none')), p999Ms: Number(median(p999.none!).toFixed(2)), xFloor: Number((rate('none') / rate('floor')).toFixed(3)) },
      three: { checksPerSecond: Math.round(rate('three')), p999Ms: Number(median(p999.three!).toFixed(2)), xFloor: Number((rate('three') / rate('floor')).toFixed(3)) },
    };
    const ratio = rate('three') / rate('none');
    say(`  (a) floor                          ${String(rows.floor.checksPerSecond).padStart(8)} checks/s`);
    say(`  (b) cache hit, no conditions       ${String(rows.none.checksPerSecond).padStart(8)} checks/s  ${rows.none.xFloor.toFixed(2)} x floor`);
    say(`  (c) cache hit, three conditions    ${String(rows.three.checksPerSecond).padStart(8)} checks/s  ${rows.three.xFloor.toFixed(2)} x floor, ${ratio.toFixed(3)} x (b) (target >= 0.9)`);

    // p99.9 with and without reloads: the same load on the conditions route.
    const quiet = await run('three', ctx.requests, true);
    let reloading = true;
    let reloads = 0;
    const writer = (async () => {
      while (reloading) {
        await new Promise((r) => setTimeout(r, RELOAD_EVERY_MS));
        if (!reloading) break;
        const next = `${file}.next`;
        writeFileSync(next, sidecarConfig(ctx, ports, ++serial));
        renameSync(next, file);
        reloads++;
      }
    })();
    let loud;
    try {
      loud = await run('three', ctx.requests, true);
    } finally {
      reloading = false;
      await writer;
    }
    const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
    const applied = metrics.split('\n').filter((l) => l.startsWith('hopguard_config_reloads_total{') && l.includes('outcome="ok"'))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
    const reload = {
      filesReplaced: reloads,
      reloadsApplied: applied,
      quiet: { checksPerSecond: Math.round(quiet.rate), p99Ms: Number((percentile(quiet.latenciesUs, 0.99) / 1000).toFixed(2)), p999Ms: Number((percentile(quiet.latenciesUs, 0.999) / 1000).toFixed(2)) },
      reloading: { checksPerSecond: Math.round(loud.rate), p99Ms: Number((percentile(loud.latenciesUs, 0.99) / 1000).toFixed(2)), p999Ms: Number((percentile(loud.latenciesUs, 0.999) / 1000).toFixed(2)) },
    };
    say(`  (d) three conditions, no reload    ${String(reload.quiet.checksPerSecond).padStart(8)} checks/s  p99 ${reload.quiet.p99Ms.toFixed(2)} ms  p99.9 ${reload.quiet.p999Ms.toFixed(2)} ms`);
    say(`  (e) the same, reloading            ${String(reload.reloading.checksPerSecond).padStart(8)} checks/s  p99 ${reload.reloading.p99Ms.toFixed(2)} ms  p99.9 ${reload.reloading.p999Ms.toFixed(2)} ms  (${reloads} files replaced, ${applied} reloads applied)`);
    ctx.results.conditions = { connections: ctx.connections, streams: ctx.streams, rows, threeOverNone: Number(ratio.toFixed(3)), reload };
  } finally {
    for (const server of servers) await server.stop();
  }
}

/**
 * npm run bench: hopguard's check path next to gRPC's own floor, measured side by side.
 *
 * The load is h2load (nghttp2) sending real envoy.service.auth.v3.Authorization/Check requests:
 * CheckRequests built as Envoy sends them (~2 KB: token, URL-encoded client certificate,
 * headers), serialized with the official protos, as length-prefixed gRPC frames, 16 connections
 * x 32 streams, a bounded count per run after a warm-up. Rounds alternate between the targets so
 * drift (other load, thermal) spreads over all of them; each figure is the median of the rounds.
 *
 * Every run is checked: h2load counts any gRPC answer as HTTP 200, so the response DATA bytes it
 * received must equal the sum of the expected responses' sizes (an allow and each deny code have
 * their own size, learned from a real gRPC client that decodes them), and that client samples the
 * same request again after each run.
 *
 *   npm run bench                         the table, egress, the window fix, workers, memory, startup, flat cost, soak (~35 min)
 *   npm run bench -- --only main,window   some sections (main breakdown egress messages conditions window workers memory startup flat soak)
 *   npm run bench -- --only breakdown     a cache miss by stage: the stage clock, and both threads' CPU profiles at 1 x 1 and 16 x 32
 *   npm run bench -- --only callgrind     instructions per check under valgrind (not in a full run; load does not move them)
 *   npm run bench -- --only soak --soak-seconds 900 --soak-rate 1000 --soak-store memory
 *                                         the soak: a new token every check, RSS over time (see soak.ts)
 *   npm run bench -- --quick              1 round, fewer requests: a smoke run, not figures
 *   npm run bench -- --profile            CPU profiles (--cpu-prof) of the check path: where the time goes (and the breakdown)
 *   BENCH_REQUESTS=100000 BENCH_ROUNDS=5 BENCH_REDIS=redis://127.0.0.1:6379 npm run bench
 *   BENCH_NODE_FLAGS=--max-semi-space-size=16 npm run bench -- --only breakdown   hopguard with more node flags
 *
 * Writes bench/out/results/bench.json and latency.svg (profiles: bench/out/profiles/).
 */

import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { checkRequestMessage } from '../src/authz/envoy-client.js';
import { PROTO_LOADER_OPTIONS } from '../src/authz/envoy-protos.js';
import { createSigningKey, signAccessToken, writeJwks, type AccessTokenInput, type SigningKey } from '../src/devkit/signing-key.js';
import { createTrustDomain } from '../src/devkit/trust-domain.js';
import { fingerprint } from '../src/token/access-token-verifier.js';
import { HANDLE_HEADER, outboundCheck, PAYMENTS_HOST, PER_REQUEST_HOST, startEgressChain } from './egress-chain.js';
import { GcTrace } from './gc-trace.js';
import { conditionsSection } from './conditions-check.js';
import { messagesSection } from './messages-check.js';
import { GrpcLoad } from './grpc-load.js';
import { H2LOAD_MISSING, h2loadVersion, percentile, runH2load } from './h2load.js';
import { latencySvg } from './plot.js';
import {
  cpuSeconds, DEPLOYED_NODE_FLAGS, freePort, machineSeconds, peakRssMb, processTree, resetPeakRss, rssMb, startHopguard, startNoop, type ServerProcess,
} from './processes.js';
import { STAGES, type StageClock, type StageSpec } from './miss-stages.js';
import { formatSummary, stageTimes, summarizeProfile } from './profile-summary.js';
import { soak } from './soak.js';
import { TokenPool } from './token-pool.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const PROFILE = args.includes('--profile');
const ONLY = args.includes('--only') ? new Set(args[args.indexOf('--only') + 1]?.split(',')) : undefined;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? (QUICK ? 20_000 : 60_000));
const WARMUP = Math.max(5_000, Math.round(REQUESTS / 3));
/** Checks a run, and warm-up, at one check in flight: ~0.1-0.5 ms each. */
const SINGLE_REQUESTS = Number(process.env.BENCH_SINGLE_REQUESTS ?? (QUICK ? 3_000 : 10_000));
const SINGLE_WARMUP = 2_000;
/** BENCH_NODE_FLAGS: more node flags for every hopguard process, to try one (a GC setting, say) against the image's. */
const EXTRA_NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
const CONNECTIONS = 16;
const STREAMS = 32;
const REDIS_URL = process.env.BENCH_REDIS ?? 'redis://127.0.0.1:6379';
const SOAK = {
  seconds: numberOption('--soak-seconds', 60, 1),
  /** 0: as fast as the in-flight bound allows. */
  rate: numberOption('--soak-rate', 1000, 0),
  concurrency: numberOption('--soak-concurrency', 256, 1),
  sampleSeconds: numberOption('--soak-sample-seconds', 5, 1),
  store: choiceOption('--soak-store', ['memory', 'redis']),
};
/** Issue 18's soak used 10-minute tokens: every one-time record of a shorter run stays live. */
const SOAK_TOKEN_TTL = 600;
const SOAK_CONNECTIONS = 4;
/** 1 MiB, as grpc-java and Envoy use; hopguard's default. */
const WINDOW = 1 << 20;

const OUT = new URL('../../results/', import.meta.url).pathname;
const PROFILES = new URL('../../profiles/', import.meta.url).pathname;
const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
const ISSUER = 'https://sts.bench.local';
const AUDIENCE = 'spiffe://bench.local/ns/shop/sa/orders';
const CHECKOUT = 'spiffe://bench.local/ns/shop/sa/checkout';
const ROUTES = [
  { name: 'create-payment', methods: ['POST'], path: '/payments', scopes: ['payments:write'], callers: [CHECKOUT], one_time: true },
  { name: 'read-orders', methods: ['GET'], path_prefix: '/orders/', scopes: ['orders:read'] },
  { name: 'health', path: '/healthz', public: true },
];

const definition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', PROTO_LOADER_OPTIONS);
const check = (definition['envoy.service.auth.v3.Authorization'] as protoLoader.ServiceDefinition).Check!;

// ---------------------------------------------------------------------------------------
// Requests and what they must get back.

/** 'allow', or the deny code. */
type Outcome = string;

interface Expected {
  outcome: Outcome;
  /** DATA bytes of one response: the 5-byte gRPC prefix and the CheckResponse. */
  bytes: number;
}

interface Load {
  message: Buffer;
  bodyFile: string;
  headers: Record<string, string>;
  /** A one-time route answers the first request differently from the rest. */
  first?: Expected;
  rest: Expected;
}

/** The value after `name` on the command line, or `fallback`. */
function option(name: string, fallback: string): string {
  const at = args.indexOf(name);
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : fallback;
}

function numberOption(name: string, fallback: number, min: number): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isFinite(value) || value < min) throw new Error(`${name}: a number of at least ${min}, not ${option(name, '')}`);
  return value;
}

/** The value after `name`, one of `choices`; the first by default. */
function choiceOption(name: string, choices: string[]): string {
  const value = option(name, choices[0]!);
  if (!choices.includes(value)) throw new Error(`${name}: ${choices.join(' or ')}, not ${value}`);
  return value;
}

/** 'allow', or the deny code of a serialized CheckResponse. */
function outcomeOf(raw: Buffer): Outcome {
  const response = check.responseDeserialize(raw) as { status?: { code?: number; message?: string } };
  const code = response.status?.code ?? 0;
  return code === 0 ? 'allow' : response.status?.message || `grpc status ${code}`;
}

/** A gRPC client that sends the exact bytes h2load sends and decodes the answer. */
class Sampler {
  private readonly client: grpc.Client;

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  async send(message: Buffer, headers: Record<string, string> = {}): Promise<Expected> {
    const raw = await this.call(message, headers);
    return { outcome: outcomeOf(raw), bytes: raw.length + 5 };
  }

  /** The handle an inbound allow of `message` sets for the application (egress on). */
  async handle(message: Buffer): Promise<string> {
    const response = check.responseDeserialize(await this.call(message, {})) as { ok_response?: { headers?: { header: { key: string; value: string } }[] } };
    const handle = response.ok_response?.headers?.find((h) => h.header.key === HANDLE_HEADER)?.header.value;
    if (!handle) throw new Error('the inbound allow set no handle: is egress on?');
    return handle;
  }

  private call(message: Buffer, headers: Record<string, string>): Promise<Buffer> {
    const metadata = new grpc.Metadata();
    for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(CHECK_PATH, (b: Buffer) => b, (b: Buffer) => b, message, metadata, { deadline: Date.now() + 10_000 },
        (err, raw) => {
          if (err || !raw) return reject(err ?? new Error('no response'));
          resolve(raw);
        });
    });
  }

  close(): void {
    this.client.close();
  }
}

function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

let fixtures: Awaited<ReturnType<typeof makeFixtures>>;

async function makeFixtures() {
  const domain = await createTrustDomain('bench', { checkout: CHECKOUT, orders: AUDIENCE });
  const keys = { ES256: domain.key, EdDSA: await createSigningKey('EdDSA'), RS256: await createSigningKey('RS256') };
  writeJwks(domain.jwksPath, Object.values(keys));
  const auditKey = path.join(domain.dir, 'audit-key.pem');
  writeFileSync(auditKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  let files = 0;
  const tokenInput = (extra: Partial<AccessTokenInput> = {}): AccessTokenInput => ({
    iss: ISSUER, aud: AUDIENCE, sub: CHECKOUT, scope: 'orders:read payments:write',
    certThumbprint: domain.workloads.checkout.thumbprint, ttl: 3600, ...extra,
  });
  /** A CheckRequest as a gRPC frame in a file, for h2load. */
  const framed = (message: Buffer): { message: Buffer; bodyFile: string } => {
    const bodyFile = path.join(domain.dir, `body-${++files}.bin`);
    writeFileSync(bodyFile, frame(message));
    return { message, bodyFile };
  };
  return {
    domain,
    framed,
    dir: domain.dir,
    jwksPath: domain.jwksPath,
    keys,
    auditKey,
    cleanup: domain.cleanup,
    /** A token for AUDIENCE from checkout, bound to its certificate, good for an hour. */
    token: (key: SigningKey = domain.key, extra: Partial<AccessTokenInput> = {}) => signAccessToken(key, tokenInput(extra)),
    tokenInput,
    /** The CheckRequest Envoy sends for this token, as a gRPC frame in a file for h2load. */
    request(token: string, http: { method?: string; path?: string } = {}): { message: Buffer; bodyFile: string } {
      const method = http.method ?? 'GET';
      const target = http.path ?? '/orders/42';
      const base = checkRequestMessage({
        method, path: target, host: 'orders.shop.svc.cluster.local',
        headers: {
          ':authority': 'orders.shop.svc.cluster.local', ':method': method, ':path': target, ':scheme': 'https',
          authorization: `Bearer ${token}`, accept: 'application/json', 'user-agent': 'checkout/1.4.2 grpc-go/1.64.0',
          'x-forwarded-proto': 'https', 'x-request-id': '3f0c6f9e-5b7a-4d3c-9a41-2f6b8e0d7c15', 'x-envoy-expected-rq-timeout-ms': '15000',
        },
        principal: CHECKOUT,
        certificatePem: domain.workloads.checkout.certPem,
      });
      // What else Envoy's ext_authz filter sends with mTLS: addresses, the local principal,
      // the request time and size, the TLS session. hopguard reads none of it.
      const { attributes } = base;
      const message = check.requestSerialize({
        attributes: {
          ...attributes,
          source: { ...attributes.source, address: { socket_address: { address: '10.8.3.17', port_value: 48_312 } } },
          destination: { address: { socket_address: { address: '10.8.5.4', port_value: 8443 } }, principal: AUDIENCE },
          request: { time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 }, http: { ...attributes.request.http, size: '-1' } },
          tls_session: { sni: 'orders.shop.svc.cluster.local' },
        },
      });
      return framed(message);
    },
  };
}

/** The same request every time; it must always get `outcome`. */
async function steadyLoad(sampler: Sampler, request: { message: Buffer; bodyFile: string }, outcome: Outcome, headers: Record<string, string> = {}): Promise<Load> {
  const sample = await sampler.send(request.message, headers);
  if (sample.outcome !== outcome) throw new Error(`expected ${outcome}, the sample got ${sample.outcome}`);
  return { ...request, headers, rest: sample };
}

// ---------------------------------------------------------------------------------------
// Servers.

interface HopguardOptions {
  cache?: number;
  store?: string;
  redisPrefix?: string;
  routes?: object[];
  issuers?: object[];
  telemetry?: object;
  audit?: object;
  workers?: number;
  window?: number;
  /** More keys of the authz config (issuer_client, egress), over the ones above. */
  extra?: Record<string, unknown>;
  /** Without the image's NODE_OPTIONS (its V8 heap cap). */
  undeployedFlags?: boolean;
  /** What the process prints on stdout (node's own output, such as --trace-gc). */
  onStdout?: (text: string) => void;
}

const running = new Set<ServerProcess>();
const samplers = new Set<Sampler>();
const redisPrefixes = new Set<string>();

async function hopguard(name: string, options: HopguardOptions = {}, nodeFlags: string[] = [], wrapper: string[] = []): Promise<ServerProcess> {
  const ports = { grpc: await freePort(), admin: await freePort() };
  const file = hopguardConfig(name, options, ports);
  const server = await startHopguard(name, file, ports, [...(options.undeployedFlags ? [] : DEPLOYED_NODE_FLAGS), ...EXTRA_NODE_FLAGS, ...nodeFlags], options.onStdout, wrapper);
  running.add(server);
  return server;
}

/** The authz config file of a sidecar with these options, listening on these ports. */
function hopguardConfig(name: string, options: HopguardOptions, ports: { grpc: number; admin: number }): string {
  const config = {
    listen: `127.0.0.1:${ports.grpc}`,
    admin: `127.0.0.1:${ports.admin}`,
    audience: AUDIENCE,
    issuers: options.issuers ?? [{ issuer: ISSUER, jwks_file: fixtures.jwksPath, algorithms: ['ES256', 'EdDSA', 'RS256'], max_ttl: '2h' }],
    binding: 'mtls',
    store: options.store ?? 'memory',
    // 512 checks in flight saturate the server: a Redis command waits behind them in the event
    // loop, past the 250 ms default on a slow or noisy machine, and the check fails closed
    // (state_unavailable). The bench measures throughput at saturation, so it allows 2 s.
    ...(options.redisPrefix !== undefined && { redis: { key_prefix: options.redisPrefix, command_timeout: '2s' } }),
    cache: { max_entries: options.cache ?? 10_000 },
    routes: options.routes ?? ROUTES,
    ...(options.telemetry && { telemetry: options.telemetry }),
    ...(options.audit && { audit: options.audit }),
    ...(options.workers !== undefined && { workers: options.workers }),
    ...(options.window !== undefined && { http2_connection_window: options.window }),
    ...options.extra,
  };
  const file = path.join(fixtures.dir, `${name.replace(/[^a-z0-9]+/gi, '-')}-${ports.grpc}.yaml`);
  writeFileSync(file, stringify(config));
  return file;
}

async function noop(name: string, window: number, nodeFlags: string[] = [], wrapper: string[] = []): Promise<ServerProcess> {
  const server = await startNoop(name, await freePort(), window, nodeFlags, wrapper);
  running.add(server);
  return server;
}

async function stop(...servers: ServerProcess[]): Promise<void> {
  for (const server of servers) {
    await server.stop();
    running.delete(server);
  }
}

function sampler(server: ServerProcess): Sampler {
  const created = new Sampler(server.address);
  samplers.add(created);
  return created;
}

// ---------------------------------------------------------------------------------------
// Measuring.

interface Run {
  rate: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  cpuUsPerCheck: number;
  peakRssMb: number;
  /** Cores busy with anything but the server under test during the run: h2load, this driver, and whatever else runs. */
  otherCores: number;
  /** Cores the hypervisor took from this machine during the run: above ~0.1, every figure is noisy. */
  stolenCores: number;
}

type Figures = Run & { rounds: Run[] };

interface Target {
  key: string;
  title: string;
  server: ServerProcess;
  sampler: Sampler;
  /** The load of round `round` (-1: the warm-up). */
  load(round: number): Promise<Load>;
  /** In flight: connections x streams each; CONNECTIONS x STREAMS unless set. */
  shape?: [number, number];
}

async function measure(target: Target, load: Load, requests: number, withLatencies = true): Promise<Run> {
  const pids = processTree(target.server.child.pid!);
  resetPeakRss(pids);
  const cpuBefore = cpuSeconds(pids);
  const machineBefore = machineSeconds();
  const started = performance.now();
  const result = await runH2load({
    url: `http://${target.server.address}${CHECK_PATH}`,
    bodyFile: load.bodyFile,
    headers: load.headers,
    requests,
    connections: target.shape?.[0] ?? CONNECTIONS,
    streamsPerConnection: target.shape?.[1] ?? STREAMS,
    ...(withLatencies && { logFile: path.join(fixtures.dir, `h2load-${target.key}.log`) }),
  });
  const cpu = cpuSeconds(pids) - cpuBefore;
  const seconds = (performance.now() - started) / 1000;
  const machine = machineSeconds();
  const otherCores = (machine.busy - machineBefore.busy - cpu) / seconds;
  const stolenCores = (machine.stolen - machineBefore.stolen) / seconds;
  const peak = peakRssMb(pids);

  const expectedBytes = load.first ? load.first.bytes + (requests - 1) * load.rest.bytes : requests * load.rest.bytes;
  const expectation = load.first ? `1 x ${load.first.outcome} (${load.first.bytes} B), then ${load.rest.outcome} (${load.rest.bytes} B)` : `${load.rest.outcome} (${load.rest.bytes} B each)`;
  if (result.succeeded !== requests || result.failed !== 0 || result.status2xx !== requests) {
    throw new Error(`${target.title}: h2load: ${result.succeeded} of ${requests} succeeded, ${result.failed} failed`);
  }
  if (result.dataBytes !== expectedBytes) {
    throw new Error(`${target.title}: responses were not all as expected: ${result.dataBytes} DATA bytes for ${requests} checks, expected ${expectedBytes}: ${expectation}`);
  }
  const after = await target.sampler.send(load.message, load.headers);
  if (after.outcome !== load.rest.outcome || after.bytes !== load.rest.bytes) {
    throw new Error(`${target.title}: after the run the sample got ${after.outcome} (${after.bytes} B), expected ${load.rest.outcome}`);
  }
  const ms = (p: number) => percentile(result.latenciesUs, p) / 1000;
  return { rate: result.rate, p50Ms: ms(0.5), p99Ms: ms(0.99), p999Ms: ms(0.999), cpuUsPerCheck: (cpu * 1e6) / requests, peakRssMb: peak, otherCores, stolenCores };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Warm-up for each, then ROUNDS rounds that alternate between the targets; medians. */
async function rounds(targets: Target[], requests = REQUESTS, warmup = WARMUP): Promise<Map<string, Figures>> {
  for (const target of targets) await measure(target, await target.load(-1), warmup, false);
  const runs = new Map<string, Run[]>(targets.map((t) => [t.key, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const target of targets) {
      const run = await measure(target, await target.load(round), requests);
      runs.get(target.key)!.push(run);
      process.stdout.write(`  round ${round + 1}/${ROUNDS} ${target.title.padEnd(44)} ${Math.round(run.rate).toString().padStart(6)} checks/s  p99.9 ${run.p999Ms.toFixed(1)} ms  (other load: ${run.otherCores.toFixed(2)} cores, stolen: ${run.stolenCores.toFixed(2)})\n`);
    }
  }
  const figures = new Map<string, Figures>();
  for (const [key, list] of runs) {
    const pick = (field: keyof Run) => median(list.map((r) => r[field]));
    figures.set(key, {
      rate: pick('rate'), p50Ms: pick('p50Ms'), p99Ms: pick('p99Ms'), p999Ms: pick('p999Ms'),
      cpuUsPerCheck: pick('cpuUsPerCheck'), peakRssMb: Math.max(...list.map((r) => r.peakRssMb)), otherCores: pick('otherCores'), stolenCores: pick('stolenCores'), rounds: list,
    });
  }
  return figures;
}

/** A target whose every request is the same and gets the same outcome. */
async function steadyTarget(key: string, title: string, server: ServerProcess, request: { message: Buffer; bodyFile: string }, outcome: Outcome, headers: Record<string, string> = {}): Promise<Target> {
  const client = sampler(server);
  const load = await steadyLoad(client, request, outcome, headers);
  return { key, title, server, sampler: client, load: async () => load };
}

/**
 * A one-time route: each round sends a token never used before, so exactly one check of the
 * run is allowed and every other is token_replayed. Each of them pays the Redis round trip.
 */
async function oneTimeTarget(key: string, title: string, server: ServerProcess): Promise<Target> {
  const client = sampler(server);
  const payment = async () => fixtures.request(await fixtures.token(), { method: 'POST', path: '/payments' });
  const probe = await payment();
  const first = await client.send(probe.message);
  const rest = await client.send(probe.message);
  if (first.outcome !== 'allow' || rest.outcome !== 'token_replayed') throw new Error(`${title}: one-time route answered ${first.outcome}, then ${rest.outcome}`);
  return { key, title, server, sampler: client, load: async () => ({ ...(await payment()), headers: {}, first, rest }) };
}

// ---------------------------------------------------------------------------------------
// Sections.

interface Row extends Figures {
  key: string;
  title: string;
  /** checks/s ÷ the reference's checks/s. */
  ratio: number;
  /** Checks per CPU-second ÷ the reference's: cost, nearly free of what the machine's other load does to rates. */
  cpuRatio: number;
  note?: string;
}

/** A row of `target`'s figures, compared with `reference`'s. */
function row(target: Target, figures: Map<string, Figures>, reference: string): Row {
  const own = figures.get(target.key)!;
  const base = figures.get(reference)!;
  return { key: target.key, title: target.title, ...own, ratio: own.rate / base.rate, cpuRatio: base.cpuUsPerCheck / own.cpuUsPerCheck };
}

const results: Record<string, unknown> = {};
const report: string[] = [];

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
  report.push(line);
}

function table(rows: Row[]): void {
  say(`  ${'scenario'.padEnd(46)} ${'checks/s'.padStart(8)} ${'x floor'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'p99.9 ms'.padStart(8)} ${'CPU µs/check'.padStart(12)} ${'CPU x floor'.padStart(11)} ${'cores'.padStart(5)} ${'peak RSS MB'.padStart(11)} ${'other cores'.padStart(11)} ${'stolen'.padStart(6)}`);
  for (const r of rows) {
    say(`  ${r.title.padEnd(46)} ${Math.round(r.rate).toString().padStart(8)} ${r.ratio.toFixed(2).padStart(7)} ${r.p50Ms.toFixed(2).padStart(7)} ${r.p99Ms.toFixed(2).padStart(7)} ${r.p999Ms.toFixed(2).padStart(8)} ${r.cpuUsPerCheck.toFixed(1).padStart(12)} ${r.cpuRatio.toFixed(2).padStart(11)} ${((r.rate * r.cpuUsPerCheck) / 1e6).toFixed(2).padStart(5)} ${r.peakRssMb.toFixed(0).padStart(11)} ${r.otherCores.toFixed(2).padStart(11)} ${r.stolenCores.toFixed(2).padStart(6)}`);
  }
  say('  (CPU x floor: checks per CPU-second of the server, over the reference\'s; cores: the server\'s CPU, all threads and workers;');
  say('   other cores: CPU the rest of the machine used, h2load and this driver included; stolen: cores the hypervisor took from');
  say('   this virtual machine, above ~0.1 every rate is noisy; medians)');
}

async function otlpSink(): Promise<{ endpoint: string; spans: () => number; close: () => void }> {
  let requests = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`, spans: () => requests, close: () => server.close() };
}

/** Scenario (e): a span per check to `sink`, every decision audited to `auditFile`. */
function tracedAndAudited(sink: { endpoint: string }, auditFile: string): HopguardOptions {
  return {
    telemetry: { tracing: true, endpoint: sink.endpoint, protocol: 'http/protobuf' },
    audit: { output: path.join(fixtures.dir, auditFile), allows: 'all', signing_key_file: fixtures.auditKey },
  };
}

/** A W3C traceparent with the sampled flag, as Envoy forwards one from a traced caller. */
function sampledTraceparent(): Record<string, string> {
  return { traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` };
}

async function mainSection(redis: boolean): Promise<void> {
  say(`\n== (a)-(e): checks/s, latency, CPU and memory, ${CONNECTIONS} connections x ${STREAMS} streams, ${REQUESTS} checks a run, median of ${ROUNDS} rounds`);
  const sink = await otlpSink();
  const floor = await noop('floor', WINDOW);
  const cached = await hopguard('hopguard');
  const uncached = await hopguard('hopguard-no-cache', { cache: 0 });
  const oneTime = redis ? await hopguard('hopguard-redis', { store: REDIS_URL, redisPrefix: await redisPrefix() }) : undefined;
  const traced = await hopguard('hopguard-traced', tracedAndAudited(sink, 'audit.jsonl'));
  const token = await fixtures.token();
  const read = fixtures.request(token);
  say(`  each CheckRequest: ${read.message.length + 5} bytes on the wire (an ES256 token of ${token.length} characters, the client certificate, 10 headers, addresses, TLS session)`);
  const traceparent = sampledTraceparent();
  const targets: Target[] = [
    await steadyTarget('a', '(a) floor: no-op grpc-js server', floor, read, 'allow'),
    await steadyTarget('b', '(b) hopguard, same token (cache hit)', cached, read, 'allow'),
  ];
  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    const request = fixtures.request(await fixtures.token(fixtures.keys[alg]));
    targets.push(await steadyTarget(`c-${alg}`, `(c) hopguard, full verification, ${alg}`, uncached, request, 'allow'));
  }
  if (oneTime) targets.push(await oneTimeTarget('d', '(d) hopguard, one-time route on Redis', oneTime));
  targets.push(await steadyTarget('e', '(e) hopguard, tracing + audit on', traced, read, 'allow', traceparent));

  const figures = await rounds(targets);
  const notes: Record<string, string> = {
    'c-ES256': 'cache off (cache.max_entries: 0): h2load sends one body, so every check verifies the same token in full',
    d: 'each round: a fresh token, so 1 allow then token_replayed; every check does SET NX on Redis',
    e: 'a span per check (sampled traceparent) to a local OTLP/HTTP sink; every decision audited to a file',
  };
  const rows: Row[] = targets.map((t) => ({ ...row(t, figures, 'a'), ...(notes[t.key] && { note: notes[t.key] }) }));
  table(rows);
  say('  notes:');
  for (const row of rows) if (row.note) say(`    ${row.key}: ${row.note}`);
  if (!oneTime) say(`    (d) skipped: no Redis at ${REDIS_URL} (set BENCH_REDIS)`);
  say(`    (e): the OTLP sink received ${sink.spans()} export requests`);
  results.main = rows;
  writeFileSync(path.join(OUT, 'latency.svg'), latencySvg(
    `hopguard check latency, ${CONNECTIONS}x${STREAMS} in flight (median of ${ROUNDS} rounds)`,
    rows.map((r) => ({ label: r.title.replace(/^\((\w)\) /, '$1 ').replace('hopguard, ', ''), p50Ms: r.p50Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms })),
  ));

  // One check in flight: latency without queueing, where a hand-off to the signature thread shows.
  const singles = targets.filter((t) => ['a', 'b', 'c-ES256', 'c-EdDSA', 'c-RS256'].includes(t.key))
    .map((t): Target => ({ ...t, key: `${t.key}-1x1`, title: t.title.replace(/^\((\w)\) (hopguard, )?/, '($1) 1 x 1, '), shape: [1, 1] }));
  say(`\n  one check in flight (1 connection x 1 stream), ${SINGLE_REQUESTS} checks a run, median of ${ROUNDS} rounds:`);
  const singleFigures = await rounds(singles, SINGLE_REQUESTS, SINGLE_WARMUP);
  const singleRows = singles.map((t) => row(t, singleFigures, 'a-1x1'));
  table(singleRows);
  results.mainOneInFlight = singleRows;
  await stop(floor, cached, uncached, traced, ...(oneTime ? [oneTime] : []));
  sink.close();
}

/**
 * Egress (issue 13): outbound Checks with one handle to a cached destination, inbound cache hits
 * with handles on beside the same sidecar without egress, each as a ratio to the floor on the
 * same request; then what a cache miss (an exchange at the issuer) costs, one check at a time.
 */
async function egressSection(): Promise<void> {
  say(`\n== egress: outbound checks with one handle (cached destination) and inbound cache hits with handles on, ${CONNECTIONS} connections x ${STREAMS} streams, median of ${ROUNDS} rounds`);
  const chain = await startEgressChain(fixtures.domain, { checkout: CHECKOUT, orders: AUDIENCE }, ISSUER);
  try {
    const egressPort = await freePort();
    const floor = await noop('floor', WINDOW);
    const plain = await hopguard('hopguard-no-egress', { extra: chain.sidecarConfig() });
    const withEgress = await hopguard('hopguard-egress', { extra: chain.sidecarConfig(egressPort) });
    const egress: ServerProcess = { ...withEgress, address: `127.0.0.1:${egressPort}` };
    const inbound = fixtures.request(await chain.checkoutToken());
    // What orders' application received on that inbound allow: the handle it sends on.
    const handle = await sampler(withEgress).handle(inbound.message);
    const outbound = fixtures.framed(check.requestSerialize(outboundCheck(PAYMENTS_HOST, handle)));
    const targets: Target[] = [
      await steadyTarget('floor-in', '(a) floor, the inbound request', floor, inbound, 'allow'),
      await steadyTarget('b', '(b) hopguard, cache hit, egress off', plain, inbound, 'allow'),
      await steadyTarget('b-egress', '(b) hopguard, cache hit, egress on (handle)', withEgress, inbound, 'allow'),
      await steadyTarget('floor-out', '(a) floor, the outbound request', floor, outbound, 'allow'),
      await steadyTarget('f', '(f) outbound, one handle, cached destination', egress, outbound, 'allow'),
    ];
    const figures = await rounds(targets);
    const rows = targets.map((t) => row(t, figures, t.key === 'f' || t.key === 'floor-out' ? 'floor-out' : 'floor-in'));
    say(`  (x floor columns: inbound rows over the floor on the inbound request (${inbound.message.length + 5} B), outbound over the floor on the outbound one (${outbound.message.length + 5} B))`);
    table(rows);

    // A miss: per_request makes every outbound check an exchange (mTLS to the issuer, which verifies and signs).
    const misses = QUICK ? 50 : 300;
    const once = sampler(egress);
    const timed = async (host: string) => {
      const message = check.requestSerialize(outboundCheck(host, handle));
      const times: number[] = [];
      for (let i = -5; i < misses; i++) {
        const started = performance.now();
        const answer = await once.send(message);
        if (answer.outcome !== 'allow') throw new Error(`outbound check to ${host}: ${answer.outcome}`);
        if (i >= 0) times.push(performance.now() - started);
      }
      return { medianMs: median(times), p90Ms: percentile(Float64Array.from(times).sort(), 0.9) };
    };
    const miss = await timed(PER_REQUEST_HOST);
    const hit = await timed(PAYMENTS_HOST);
    say(`  one outbound check at a time, ${misses} checks: cache miss (an exchange, per_request) median ${miss.medianMs.toFixed(2)} ms, p90 ${miss.p90Ms.toFixed(2)} ms;`
      + ` cache hit median ${hit.medianMs.toFixed(2)} ms, p90 ${hit.p90Ms.toFixed(2)} ms (the issuer runs in this driver process)`);
    results.egress = { rows, oneAtATime: { checks: misses, miss, hit } };
    await stop(floor, plain, withEgress);
  } finally {
    await chain.stop();
  }
}

async function windowSection(): Promise<void> {
  say(`\n== HTTP/2 connection window: Node's 64 KB default (before) vs ${WINDOW / 1024} KB (after), at ${CONNECTIONS} x ${STREAMS} and at 1 connection x 64 streams`);
  const read = fixtures.request(await fixtures.token());
  const servers = {
    floor64: await noop('floor 64K', 65_535),
    floor1m: await noop('floor 1M', WINDOW),
    hop64: await hopguard('hopguard-64k', { window: 65_535 }),
    hop1m: await hopguard('hopguard-1m', { window: WINDOW }),
  };
  const variants: [string, ServerProcess, string][] = [
    ['floor-64k', servers.floor64, 'floor, 64 KB'],
    ['floor-1m', servers.floor1m, `floor, ${WINDOW / 1024} KB`],
    ['hopguard-64k', servers.hop64, '(b) hopguard, 64 KB (before)'],
    ['hopguard-1m', servers.hop1m, `(b) hopguard, ${WINDOW / 1024} KB (after)`],
  ];
  const targets: Target[] = [];
  for (const shape of [[CONNECTIONS, STREAMS], [1, 64]] as [number, number][]) {
    for (const [key, server, title] of variants) {
      targets.push({ ...(await steadyTarget(`${key}-${shape.join('x')}`, `${title}, ${shape[0]} x ${shape[1]}`, server, read, 'allow')), shape });
    }
  }
  const figures = await rounds(targets);
  const rows = targets.map((t) => row(t, figures, `floor-1m-${t.shape!.join('x')}`));
  say('  (x floor columns: compared with the floor with the larger window, same shape)');
  table(rows);
  results.window = rows;
  await stop(...Object.values(servers));
}

async function workersSection(): Promise<void> {
  say(`\n== workers: one listener, N processes (node:cluster), ${cpus().length} cores (h2load shares them)`);
  const read = fixtures.request(await fixtures.token());
  const full = fixtures.request(await fixtures.token(fixtures.keys.ES256));
  // With store: memory, workers would each keep their own one-time records: no one-time route here.
  const routes = ROUTES.filter((route) => !route.one_time);
  const servers = {
    one: await hopguard('hopguard-1-worker', { workers: 1, routes }),
    two: await hopguard('hopguard-2-workers', { workers: 2, routes }),
    oneFull: await hopguard('hopguard-1-worker-no-cache', { workers: 1, cache: 0, routes }),
    twoFull: await hopguard('hopguard-2-workers-no-cache', { workers: 2, cache: 0, routes }),
  };
  const targets = [
    await steadyTarget('b-1', '(b) cache hit, workers: 1', servers.one, read, 'allow'),
    await steadyTarget('b-2', '(b) cache hit, workers: 2', servers.two, read, 'allow'),
    await steadyTarget('c-1', '(c) ES256 full verification, workers: 1', servers.oneFull, full, 'allow'),
    await steadyTarget('c-2', '(c) ES256 full verification, workers: 2', servers.twoFull, full, 'allow'),
  ];
  const figures = await rounds(targets);
  const rows = targets.map((t) => row(t, figures, `${t.key[0]}-1`));
  say('  (x floor columns: compared with the same scenario with workers: 1)');
  table(rows);
  results.workers = rows;
  await stop(...Object.values(servers));
}

/**
 * RSS at rest and its peak under load, with 0 and 100,000 revoked token ids in memory: as
 * deployed (the image's NODE_OPTIONS: a V8 heap cap) and without the cap, with what the cap
 * costs in throughput.
 */
async function memorySection(redis: boolean): Promise<void> {
  const deployed = DEPLOYED_NODE_FLAGS.join(' ') || 'no node flags';
  say(`\n== memory: RSS at rest and peak under load (${CONNECTIONS} x ${STREAMS}, cache hits), as deployed (${deployed}) and without the image's NODE_OPTIONS`);
  const read = fixtures.request(await fixtures.token());
  const variants: [string, string, HopguardOptions][] = [
    ['plain', '(b) memory store, as deployed', {}],
    ['plain-uncapped', '(b) memory store, no NODE_OPTIONS', { undeployedFlags: true }],
  ];
  if (redis) {
    const revoked = await redisPrefix(100_000);
    variants.push(
      ['revoked', '(b) 100,000 revoked token ids (Redis), as deployed', { store: REDIS_URL, redisPrefix: revoked }],
      ['revoked-uncapped', '(b) 100,000 revoked token ids, no NODE_OPTIONS', { store: REDIS_URL, redisPrefix: revoked, undeployedFlags: true }],
    );
  }
  const targets: Target[] = [];
  const atRest = new Map<string, { rssMb: number; readyMs: number }>();
  for (const [key, title, options] of variants) {
    const server = await hopguard(`memory-${key}`, options);
    // Once started and settled, before any check.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    atRest.set(key, { rssMb: rssMb(processTree(server.child.pid!)), readyMs: server.readyMs });
    targets.push(await steadyTarget(key, title, server, read, 'allow'));
  }
  const figures = await rounds(targets);
  say(`  ${'server'.padEnd(58)} ${'at rest MB'.padStart(10)} ${'peak MB'.padStart(8)} ${'checks/s'.padStart(8)} ${'CPU µs/check'.padStart(12)} ${'ready ms'.padStart(8)}`);
  const rows = targets.map((t) => {
    const f = figures.get(t.key)!;
    const rest = atRest.get(t.key)!;
    say(`  ${t.title.padEnd(58)} ${rest.rssMb.toFixed(0).padStart(10)} ${f.peakRssMb.toFixed(0).padStart(8)} ${Math.round(f.rate).toString().padStart(8)} ${f.cpuUsPerCheck.toFixed(1).padStart(12)} ${rest.readyMs.toFixed(0).padStart(8)}`);
    return { key: t.key, title: t.title, atRestRssMb: rest.rssMb, readyMs: rest.readyMs, ...f };
  });
  if (!redis) say(`  100,000 revoked token ids skipped: no Redis at ${REDIS_URL} (set BENCH_REDIS)`);
  results.memory = rows;
  await stop(...targets.map((t) => t.server));
}

async function startupSection(): Promise<void> {
  say('\n== startup to ready (spawn to the first 200 from /readyz), local JWKS, memory store');
  // Let the processes of the sections before finish exiting.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const server = await hopguard(`startup-${i}`);
    times.push(server.readyMs);
    await stop(server);
  }
  say(`  median ${median(times).toFixed(0)} ms (runs: ${times.map((t) => t.toFixed(0)).join(', ')} ms)`);
  results.startup = { medianMs: median(times), runsMs: times };
}

/** A fresh key prefix (deleted at the end), holding `revoked` revoked token ids as `hopguard revoke --jti` writes them. */
async function redisPrefix(revoked = 0): Promise<string> {
  const prefix = `hopguard-bench-${process.pid}-${randomBytes(3).toString('hex')}:`;
  redisPrefixes.add(prefix);
  if (revoked > 0) await seedRevocations(prefix, revoked);
  return prefix;
}

async function seedRevocations(prefix: string, count: number): Promise<void> {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    const expiresAtMs = Date.now() + 3 * 3600_000;
    for (let start = 0; start < count; start += 5_000) {
      const batch = client.pipeline();
      for (let i = start; i < Math.min(count, start + 5_000); i++) {
        const revocation = { kind: 'jti', fingerprint: fingerprint(ISSUER, randomUUID()) };
        batch.hset(`${prefix}revocations`, `jti:${revocation.fingerprint}`, JSON.stringify({ revocation, expiresAtMs, reason: 'bench' }));
      }
      await batch.exec();
    }
    await client.incr(`${prefix}revocations:version`);
  } finally {
    client.disconnect();
  }
}

async function flatSection(redis: boolean): Promise<void> {
  say('\n== flat cost as the work grows: checks/s of each pair, same run, alternating');
  const fillerRoutes = (n: number) => Array.from({ length: n }, (_, i) => (i % 2
    ? { name: `filler-${i}`, methods: ['GET'], path: `/svc-${i}/items` }
    : { name: `filler-${i}`, path_prefix: `/p${i}${'-'.repeat(i % 40)}/`, scopes: ['orders:read'] }));
  const issuerKeys = await Promise.all(Array.from({ length: 100 }, (_, i) => createSigningKey('ES256', `issuer-${i}`)));
  const issuers = issuerKeys.map((key, i) => {
    const jwks = path.join(fixtures.dir, `jwks-${i}.json`);
    writeJwks(jwks, [key]);
    return { issuer: i === 99 ? ISSUER : `https://sts-${i}.bench.local`, jwks_file: jwks, algorithms: ['ES256'], max_ttl: '2h' };
  });
  const lastIssuerToken = await fixtures.token(issuerKeys[99]);
  const pad = (length: number) => async () => {
    const bare = await fixtures.token();
    // base64url grows 4/3: pad the claims so the whole token is `length` characters.
    const token = await fixtures.token(undefined, { claims: { pad: 'x'.repeat(Math.max(0, Math.floor(((length - bare.length) * 3) / 4) - 10)) } });
    return token;
  };
  const token1k = await pad(1024)();
  const token8k = await pad(8192)();
  const read = fixtures.request(await fixtures.token());

  type Side = [string, HopguardOptions, { message: Buffer; bodyFile: string }];
  /** withFloor: the same two requests also against the no-op floor, to tell transport cost from hopguard's. */
  const pairs: { name: string; a: Side; b: Side; withFloor?: boolean }[] = [
    { name: 'routes', a: ['10 routes', { routes: [...fillerRoutes(7), ...ROUTES] }, read], b: ['10,000 routes', { routes: [...fillerRoutes(9_997), ...ROUTES] }, read] },
    {
      name: 'issuers (full verification, token from the last issuer)',
      a: ['1 issuer', { cache: 0, issuers: [issuers[99]!] }, fixtures.request(lastIssuerToken)],
      b: ['100 issuers', { cache: 0, issuers }, fixtures.request(lastIssuerToken)],
    },
    { name: 'token size', a: [`${token1k.length} B token`, {}, fixtures.request(token1k)], b: [`${token8k.length} B token`, {}, fixtures.request(token8k)], withFloor: true },
  ];
  if (redis) {
    pairs.push({
      name: 'revocations (Redis store)',
      a: ['0 revoked token ids', { store: REDIS_URL, redisPrefix: await redisPrefix(0) }, read],
      b: ['100,000 revoked token ids', { store: REDIS_URL, redisPrefix: await redisPrefix(100_000) }, read],
    });
  }
  const rows: Record<string, unknown>[] = [];
  say(`  ${'pair'.padEnd(58)} ${'A checks/s'.padStart(10)} ${'B checks/s'.padStart(10)} ${'B/A'.padStart(6)}  p99.9 A / B ms`);
  for (const pair of pairs) {
    const serverA = await hopguard(`flat-a-${pair.a[0]}`, pair.a[1]);
    const serverB = await hopguard(`flat-b-${pair.b[0]}`, pair.b[1]);
    const floor = pair.withFloor ? await noop('floor', WINDOW) : undefined;
    const targets = [
      await steadyTarget('A', pair.a[0], serverA, pair.a[2], 'allow'),
      await steadyTarget('B', pair.b[0], serverB, pair.b[2], 'allow'),
      ...(floor ? [await steadyTarget('floor A', `floor, ${pair.a[0]}`, floor, pair.a[2], 'allow'), await steadyTarget('floor B', `floor, ${pair.b[0]}`, floor, pair.b[2], 'allow')] : []),
    ];
    const figures = await rounds(targets);
    const line = (name: string, a: Figures, b: Figures) => say(`  ${name.padEnd(58)} ${Math.round(a.rate).toString().padStart(10)} ${Math.round(b.rate).toString().padStart(10)} ${(b.rate / a.rate).toFixed(2).padStart(6)}  ${a.p999Ms.toFixed(1)} / ${b.p999Ms.toFixed(1)}`);
    const [a, b] = [figures.get('A')!, figures.get('B')!];
    line(`${pair.name}: ${pair.a[0]} vs ${pair.b[0]}`, a, b);
    const row: Record<string, unknown> = { pair: pair.name, a: { label: pair.a[0], ...a }, b: { label: pair.b[0], ...b }, ratio: b.rate / a.rate };
    if (floor) {
      const [fa, fb] = [figures.get('floor A')!, figures.get('floor B')!];
      line(`  the floor, same two requests`, fa, fb);
      Object.assign(row, { floorA: fa, floorB: fb, floorRatio: fb.rate / fa.rate });
    }
    rows.push(row);
    await stop(serverA, serverB, ...(floor ? [floor] : []));
  }
  if (!redis) say(`  revocations pair skipped: no Redis at ${REDIS_URL} (set BENCH_REDIS)`);
  results.flat = rows;
}

/**
 * The churn load of issue 18: the one-time route, a token never seen before on every check, so
 * each check verifies a signature and leaves a one-time record. h2load cannot send it (one body
 * for every request), so grpc-load.ts does; a worker signs the tokens ahead (token-pool.ts).
 */
async function soakSection(redis: boolean): Promise<void> {
  if (SOAK.store === 'redis' && !redis) throw new Error(`--soak-store redis: no Redis at ${REDIS_URL} (set BENCH_REDIS)`);
  const pace = SOAK.rate > 0 ? `${SOAK.rate} checks/s` : 'as fast as it answers';
  say(`\n== soak: one-time route on store: ${SOAK.store}, a new ES256 token every check (${pace}, at most ${SOAK.concurrency} in flight, ${SOAK_CONNECTIONS} connections), ${SOAK.seconds} s, ${[...DEPLOYED_NODE_FLAGS, '--trace-gc'].join(' ')}`);
  const gc = new GcTrace();
  const store = SOAK.store === 'redis' ? { store: REDIS_URL, redisPrefix: await redisPrefix() } : {};
  const server = await hopguard('soak', { ...store, onStdout: (text) => gc.feed(text) }, ['--trace-gc']);
  const tokens = new TokenPool(fixtures.keys.ES256, fixtures.tokenInput({ ttl: SOAK_TOKEN_TTL }), Math.max(SOAK.rate, 2000) * 5);
  const load = new GrpcLoad(server.address, CHECK_PATH, SOAK_CONNECTIONS);
  try {
    await tokens.fill();
    const first = tokens.take()!;
    const template = tokenTemplate(frame(fixtures.request(first, { method: 'POST', path: '/payments' }).message), first);
    const result = await soak({
      ...SOAK, server, load, say, outcome: outcomeOf, liveHeapMb: () => gc.liveHeapMb(),
      nextRequest: () => {
        const token = tokens.take();
        return token === undefined ? undefined : template(token);
      },
    });
    const { errors, outcomes } = result;
    say(`  ${result.checks} checks in ${result.seconds.toFixed(0)} s: ${Math.round(result.rate)} checks/s${SOAK.rate ? ` (asked ${SOAK.rate})` : ''}, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, p99.9 ${result.p999Ms.toFixed(2)} ms`);
    say(`  outcomes: ${Object.entries(outcomes).map(([outcome, n]) => `${n} ${outcome}`).join(', ') || 'none'}${Object.keys(errors).length ? `; errors: ${Object.entries(errors).map(([error, n]) => `${n} x ${error}`).join(', ')}` : ''}`);
    say(`  RSS: ${result.rssAtStartMb.toFixed(1)} MB before the load, ${result.rssAtEndMb.toFixed(1)} MB at the end, peak ${result.peakRssMb.toFixed(1)} MB`);
    say(`  the load client and the token signer (this process) used ${result.loadCores.toFixed(2)} cores; ${tokens.stalls ? `the load waited on signing ${tokens.stalls} times: signing limited it` : 'signing kept ahead of the load'}`);
    say(`  verdict: ${result.verdict}`);
    say(`  verdict: ${result.heapVerdict}`);
    results.soak = {
      settings: { ...SOAK, tokenTtlS: SOAK_TOKEN_TTL, connections: SOAK_CONNECTIONS, nodeFlags: [...DEPLOYED_NODE_FLAGS, '--trace-gc'] },
      ...result, signingStalls: tokens.stalls,
    };
  } finally {
    load.close();
    await tokens.close();
    await stop(server);
  }
}

/**
 * The framed request `request` with another token of the same length where `token` is: one
 * copy and a write per check instead of serializing a CheckRequest.
 */
function tokenTemplate(request: Buffer, token: string): (token: string) => Buffer {
  const offsets: number[] = [];
  for (let at = request.indexOf(token); at >= 0; at = request.indexOf(token, at + token.length)) offsets.push(at);
  if (offsets.length === 0) throw new Error('the token is not in its CheckRequest');
  return (next) => {
    if (next.length !== token.length) throw new Error(`a token of ${next.length} characters where the template's has ${token.length}`);
    const copy = Buffer.from(request);
    for (const at of offsets) copy.write(next, at, 'latin1');
    return copy;
  };
}

/** --profile: each hopguard scenario under load with --cpu-prof, summarized. */
async function profileSection(redis: boolean): Promise<void> {
  mkdirSync(PROFILES, { recursive: true });
  const sink = await otlpSink();
  const prefix = await redisPrefix();
  const read = fixtures.request(await fixtures.token());
  const full = fixtures.request(await fixtures.token(fixtures.keys.ES256));
  const traceparent = sampledTraceparent();
  const scenarios: [string, HopguardOptions, (server: ServerProcess) => Promise<Target>][] = [
    ['b', {}, (s) => steadyTarget('b', '(b) cache hit', s, read, 'allow')],
    ['c-ES256', { cache: 0 }, (s) => steadyTarget('c-ES256', '(c) ES256 full verification', s, full, 'allow')],
    ...(redis ? [['d', { store: REDIS_URL, redisPrefix: prefix }, (s: ServerProcess) => oneTimeTarget('d', '(d) one-time on Redis', s)] as [string, HopguardOptions, (server: ServerProcess) => Promise<Target>]] : []),
    ['e', tracedAndAudited(sink, 'audit-profile.jsonl'), (s) => steadyTarget('e', '(e) tracing + audit', s, read, 'allow', traceparent)],
  ];
  for (const [key, options, makeTarget] of scenarios) {
    // One directory per scenario: every thread (main, signature worker, audit writer) writes its own profile there.
    const dir = path.join(PROFILES, key);
    rmSync(dir, { recursive: true, force: true });
    const server = await hopguard(`profile-${key}`, options, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
    const target = await makeTarget(server);
    await measure(target, await target.load(-1), WARMUP, false);
    const run = await measure(target, await target.load(0), REQUESTS);
    await stop(server);
    say(`\n== profile ${target.title}: ${Math.round(run.rate)} checks/s under the profiler, ${run.cpuUsPerCheck.toFixed(1)} µs CPU/check (all threads)`);
    // The busiest thread first: the main thread, except where a worker does the heavy part.
    const threads = readdirSync(dir).map((file) => ({ file, summary: summarizeProfile(path.join(dir, file)) }))
      .sort((a, b) => b.summary.busyMs - a.summary.busyMs);
    for (const { file, summary } of threads) say(formatSummary(`${key} ${file}`, summary, REQUESTS + WARMUP));
  }
  sink.close();
  writeFileSync(path.join(PROFILES, 'summary.txt'), `${report.join('\n')}\n`);
  say(`\nprofiles: ${PROFILES}`);
}

/**
 * Where a cache miss's time goes, by stage (issue 19). The stage clock first (miss-stages.ts, a
 * process of its own): each stage's wall time, one check at a time, per algorithm. Then CPU
 * profiles of both threads (main, signature) of a sidecar that verifies every ES256 check
 * (cache off), at 1 x 1 and at 16 x 32, split by stage (profile-summary.ts: stageTimes), beside
 * the floor's profile under the same load: µs of CPU per check, the profiler's overhead included.
 */
async function breakdownSection(): Promise<void> {
  say('\n== breakdown of a cache miss, by stage');
  const requests = Object.fromEntries(await Promise.all((['ES256', 'EdDSA', 'RS256'] as const).map(async (alg) =>
    [alg, fixtures.request(await fixtures.token(fixtures.keys[alg]))] as const)));
  const iterations = QUICK ? 300 : 2_000;
  const specFile = path.join(fixtures.dir, 'miss-stages.json');
  const spec: StageSpec = {
    config: hopguardConfig('miss-stages', { cache: 0 }, { grpc: await freePort(), admin: await freePort() }),
    requests: Object.fromEntries(Object.entries(requests).map(([alg, r]) => [alg, r.bodyFile])),
    iterations,
  };
  writeFileSync(specFile, JSON.stringify(spec));
  const stageClock = (flags: string[]) => {
    const child = spawnSync(process.execPath, [...DEPLOYED_NODE_FLAGS, ...flags, new URL('./miss-stages.js', import.meta.url).pathname, specFile], { encoding: 'utf8' });
    if (child.status !== 0) throw new Error(`the stage clock failed:\n${child.stderr}`);
    return JSON.parse(child.stdout) as StageClock;
  };
  // Times as deployed; bytes from a second run whose young generation is large enough that a
  // stage's loop allocates without a scavenge inside (see allocated() in miss-stages.ts).
  const clock = stageClock([]);
  const sized = stageClock(['--min-semi-space-size=64', '--max-semi-space-size=64']);
  for (const [alg, stages] of Object.entries(clock)) {
    for (const [stage, figure] of Object.entries(stages)) {
      const bytes = sized[alg]?.[stage]?.bytes;
      if (bytes === undefined) delete figure.bytes;
      else figure.bytes = bytes;
    }
  }
  const algs = Object.keys(clock);
  say(`  stage clock (miss-stages.ts), µs: warm stages are the mean of ${iterations} calls in a loop (median of 5 loops);`);
  say('  "one at a time" rows: median (p90) of single calls, each after a timer turn, as at one check in flight');
  say('  bytes: V8 heap allocated per call (warm stages)');
  say(`    ${'stage'.padEnd(50)} ${algs.map((alg) => `${alg} µs`.padStart(15)).join(' ')} ${algs.map((alg) => `${alg} B`.padStart(9)).join(' ')}`);
  for (const stage of STAGES) {
    const us = algs.map((alg) => {
      const f = clock[alg]![stage]!;
      return `${f.us.toFixed(1)}${f.p90Us === undefined ? '' : ` (${f.p90Us.toFixed(1)})`}`.padStart(15);
    });
    const bytes = algs.map((alg) => (clock[alg]![stage]!.bytes === undefined ? '' : Math.round(clock[alg]![stage]!.bytes!).toString()).padStart(9));
    say(`    ${stage.padEnd(50)} ${us.join(' ')} ${bytes.join(' ')}`);
  }

  mkdirSync(PROFILES, { recursive: true });
  const shapes: [number, number][] = [[1, 1], [CONNECTIONS, STREAMS]];
  const profiled: Record<string, unknown>[] = [];
  for (const shape of shapes) {
    const single = shape[0] * shape[1] === 1;
    const checks = single ? SINGLE_REQUESTS : REQUESTS;
    const columns: { name: string; checks: number; rate: number; p50Ms: number; threads: { thread: string; busyUs: number; idleUs: number; stages: Map<string, number> }[] }[] = [];
    for (const [key, start] of [
      ['floor', (flags: string[]) => noop('floor-profiled', WINDOW, flags)],
      ['hopguard', (flags: string[]) => hopguard('hopguard-no-cache-profiled', { cache: 0 }, flags)],
    ] as const) {
      const dir = path.join(PROFILES, `breakdown-${key}-${shape.join('x')}`);
      rmSync(dir, { recursive: true, force: true });
      const server = await start(['--cpu-prof', `--cpu-prof-dir=${dir}`]);
      const target = { ...(await steadyTarget(key, key, server, requests.ES256!, 'allow')), shape };
      await measure(target, await target.load(-1), single ? SINGLE_WARMUP : WARMUP, false);
      // The profiles' clock: only the measured run is counted, not startup or the warm-up.
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const run = await measure(target, await target.load(0), checks);
      const toUs = Number(process.hrtime.bigint() / 1000n);
      await stop(server);
      const threads = readdirSync(dir).sort().map((file) => {
        const { stages, idleUs } = stageTimes(path.join(dir, file), { fromUs, toUs });
        const busyUs = [...stages.values()].reduce((a, b) => a + b, 0);
        // CPU.date.time.pid.thread.seq.cpuprofile: thread 0 is the main thread.
        return { thread: file.split('.')[4] === '0' ? 'main' : 'signature', busyUs, idleUs, stages };
      });
      columns.push({ name: key, checks, rate: run.rate, p50Ms: run.p50Ms, threads });
    }
    say(`\n  CPU profiles at ${shape.join(' x ')}, ES256, cache off (every check verifies): µs of CPU per check, over the measured run`);
    for (const column of columns) {
      say(`    ${column.name}: ${Math.round(column.rate)} checks/s under the profiler, p50 ${column.p50Ms.toFixed(2)} ms; ${column.threads.map((t) => `${t.thread} thread ${(t.busyUs / column.checks).toFixed(1)} µs busy, ${(t.idleUs / column.checks).toFixed(1)} µs idle`).join('; ')}`);
    }
    const hop = columns.find((c) => c.name === 'hopguard')!;
    const names = [...new Set(hop.threads.flatMap((t) => [...t.stages.keys()]))];
    const perCheck = (us: number | undefined) => ((us ?? 0) / hop.checks).toFixed(1).padStart(10);
    say(`    ${'stage'.padEnd(50)} ${hop.threads.map((t) => `${t.thread} µs`.padStart(10)).join(' ')}`);
    for (const name of names.sort((a, b) => Math.max(...hop.threads.map((t) => t.stages.get(b) ?? 0)) - Math.max(...hop.threads.map((t) => t.stages.get(a) ?? 0)))) {
      say(`    ${name.padEnd(50)} ${hop.threads.map((t) => perCheck(t.stages.get(name))).join(' ')}`);
    }
    const floor = columns.find((c) => c.name === 'floor')!;
    say(`    (the floor under the same load: ${floor.threads.map((t) => [...t.stages].sort((a, b) => b[1] - a[1]).map(([stage, us]) => `${stage} ${(us / floor.checks).toFixed(1)}`).join(', ')).join('; ')} µs per check)`);
    profiled.push({
      shape,
      columns: columns.map((c) => ({ ...c, threads: c.threads.map((t) => ({ ...t, stages: Object.fromEntries([...t.stages].map(([k, v]) => [k, v / c.checks])) })) })),
    });
  }
  results.breakdown = { stageClock: clock, iterations, profiles: profiled };
}

/**
 * --only callgrind (issue 19; not part of a full run: ~10 min): instructions per check, counted
 * by valgrind's callgrind, which other load on the machine does not move as it moves time. Each
 * server runs under callgrind with instrumentation off until warmed up; then the counters are
 * zeroed, CALLGRIND_CHECKS checks are sent (h2load, same request), and the counts dumped: per
 * thread (the main thread is callgrind's thread 1), divided by the checks.
 */
async function callgrindSection(): Promise<void> {
  const checks = Number(process.env.CALLGRIND_CHECKS ?? (QUICK ? 300 : 1_000));
  say(`\n== callgrind: instructions per check (Ir), ${checks} checks after ${2 * checks} of warm-up, each server under valgrind --tool=callgrind`);
  const dir = path.join(PROFILES, 'callgrind');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const wrapper = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${dir}/callgrind.out.%p`, '--separate-threads=yes', '--instr-atstart=no'];
  const full = fixtures.request(await fixtures.token(fixtures.keys.ES256));
  const cases: [string, () => Promise<ServerProcess>][] = [
    ['(a) floor', () => noop('floor-callgrind', WINDOW, [], wrapper)],
    ['(b) cache hit', () => hopguard('hopguard-callgrind', {}, [], wrapper)],
    ['(c) ES256 full verification', () => hopguard('hopguard-no-cache-callgrind', { cache: 0 }, [], wrapper)],
  ];
  const rows: Record<string, unknown>[] = [];
  say(`  ${'server'.padEnd(34)} ${'shape'.padEnd(7)} ${'main thread'.padStart(12)} ${'other threads'.padStart(14)} ${'all'.padStart(12)}  (Ir per check)`);
  for (const [title, start] of cases) {
    const server = await start();
    const pid = server.child.pid!;
    const control = (...args: string[]) => {
      const run = spawnSync('callgrind_control', [...args, String(pid)], { encoding: 'utf8' });
      if (run.status !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${run.stderr}`);
    };
    for (const shape of [[1, 1], [CONNECTIONS, STREAMS]] as [number, number][]) {
      const target = { ...(await steadyTarget(title, title, server, full, 'allow')), shape };
      // Long enough for V8 to have compiled the hot code, which it does on other threads.
      await measure(target, await target.load(-1), 2 * checks, false);
      control('--instr=on');
      control('--zero');
      await measure(target, await target.load(0), checks, false);
      control('--dump');
      // One file per thread of the dump just made: callgrind.out.PID.N-TT.
      const dumps = readdirSync(dir).filter((file) => file.startsWith(`callgrind.out.${pid}.`));
      const last = Math.max(...dumps.map((file) => Number(/\.(\d+)-\d+$/.exec(file)![1])));
      let main = 0;
      let other = 0;
      for (const file of dumps.filter((f) => f.startsWith(`callgrind.out.${pid}.${last}-`))) {
        const ir = Number(/^summary: (\d+)/m.exec(readFileSync(path.join(dir, file), 'utf8'))?.[1] ?? 0);
        if (file.endsWith('-01')) main += ir;
        else other += ir;
      }
      control('--instr=off');
      const per = (ir: number) => Math.round(ir / checks).toLocaleString('en-US').padStart(12);
      say(`  ${title.padEnd(34)} ${shape.join('x').padEnd(7)} ${per(main)} ${per(other).padStart(14)} ${per(main + other)}`);
      rows.push({ server: title, shape, checks, mainIrPerCheck: main / checks, otherIrPerCheck: other / checks });
    }
    await stop(server);
  }
  results.callgrind = rows;
}

async function redisAvailable(): Promise<boolean> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function deleteRedisKeys(): Promise<void> {
  if (redisPrefixes.size === 0 || !(await redisAvailable())) return;
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    for (const prefix of redisPrefixes) {
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        if (keys.length > 0) await client.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
  } finally {
    client.disconnect();
  }
}

/** What the conditions section (conditions-check.ts) needs from this driver. */
function conditionsContext() {
  return {
    dir: fixtures.dir, jwksPath: fixtures.jwksPath, issuer: ISSUER, audience: AUDIENCE,
    token: (claims: Record<string, unknown>) => fixtures.token(fixtures.keys.ES256, { claims }),
    request: (token: string, target: string) => fixtures.request(token, { path: target }),
    sample: async (address: string, message: Buffer) => {
      const client = new Sampler(address);
      try {
        return await client.send(message);
      } finally {
        client.close();
      }
    },
    checkPath: CHECK_PATH, connections: CONNECTIONS, streams: STREAMS, rounds: ROUNDS, requests: REQUESTS, window: WINDOW, say, results,
  };
}

async function main(): Promise<number> {
  const h2load = h2loadVersion();
  // The soak drives its own client (grpc-load.ts): it alone runs without h2load.
  if (!h2load && (PROFILE || !ONLY || [...ONLY].some((section) => section !== 'soak'))) {
    process.stderr.write(`${H2LOAD_MISSING}\n`);
    return 1;
  }
  mkdirSync(OUT, { recursive: true });
  const load = loadavg()[0]!;
  say(`hopguard check-path benchmark: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${h2load ?? 'no h2load'}`);
  say(`hopguard runs with: ${[...DEPLOYED_NODE_FLAGS, ...EXTRA_NODE_FLAGS].join(' ') || 'no node flags'}${EXTRA_NODE_FLAGS.length ? ` (BENCH_NODE_FLAGS: ${EXTRA_NODE_FLAGS.join(' ')})` : ''}`);
  say(`load average at start: ${loadavg().map((l) => l.toFixed(2)).join(' ')}${load > 0.7 ? '  (the machine is not quiet: figures will be noisy)' : ''}`);
  const redis = await redisAvailable();
  fixtures = await makeFixtures();
  const wanted = (section: string) => !PROFILE && (!ONLY || ONLY.has(section));
  Object.assign(results, {
    machine: { node: process.version, cpus: cpus().length, model: cpus()[0]?.model, loadAverageAtStart: loadavg(), h2load: h2load ?? null },
    settings: { requests: REQUESTS, warmup: WARMUP, rounds: ROUNDS, connections: CONNECTIONS, streamsPerConnection: STREAMS, redis: redis ? REDIS_URL : null },
  });
  try {
    if (PROFILE) await profileSection(redis);
    if (PROFILE || wanted('breakdown')) await breakdownSection();
    if (ONLY?.has('callgrind')) await callgrindSection();
    if (wanted('main')) await mainSection(redis);
    if (wanted('egress')) await egressSection();
    if (wanted('messages')) await messagesSection({ domain: fixtures.domain, audience: AUDIENCE, issuer: ISSUER, quick: QUICK, rounds: ROUNDS, requests: REQUESTS, say, results });
    if (wanted('conditions')) await conditionsSection(conditionsContext());
    if (wanted('window')) await windowSection();
    if (wanted('workers')) await workersSection();
    if (wanted('memory')) await memorySection(redis);
    if (wanted('startup')) await startupSection();
    if (wanted('flat')) await flatSection(redis);
    if (wanted('soak')) await soakSection(redis);
  } finally {
    for (const client of samplers) client.close();
    for (const server of [...running]) await server.stop();
    await deleteRedisKeys();
    fixtures.cleanup();
  }
  if (!PROFILE) {
    writeFileSync(path.join(OUT, 'bench.json'), `${JSON.stringify(results, null, 2)}\n`);
    say(`\nwrote ${path.join(OUT, 'bench.json')}${results.main ? ` and ${path.join(OUT, 'latency.svg')}` : ''}`);
  }
  return 0;
}

process.exitCode = await main();

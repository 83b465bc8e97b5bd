/**
 * Where the time goes, from a V8 .cpuprofile (node --cpu-prof): self time grouped by who owns
 * the code (hopguard's files, each dependency, Node internals, GC, idle), and the functions
 * with the most self time.
 */

import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** µs, CLOCK_MONOTONIC on Linux (as process.hrtime). */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled ms, idle excluded. */
  busyMs: number;
  idleMs: number;
  byOwner: [string, number][];
  byFunction: [string, number][];
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const [id, us] of selfUs) {
    const frame = nodes.get(id)!.callFrame;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const owner = ownerOf(frame.url, frame.functionName);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    const name = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    functions.set(name, (functions.get(name) ?? 0) + us);
  }
  const ms = (entries: Map<string, number>, n: number) =>
    [...entries].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => [k, v / 1000] as [string, number]);
  return { busyMs: busy / 1000, idleMs: idle / 1000, byOwner: ms(owners, 30), byFunction: ms(functions, top) };
}

function ownerOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) {
    const module = url.replace(/^node:(internal\/)?/, '').split('/')[0]!.replace(/\.js$/, '');
    return `node:${module}`;
  }
  const own = /\/(src\/[^?]+)$/.exec(url);
  if (own) return `hopguard ${own[1]!.replace(/\.js$/, '')}`;
  return url;
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.+)$/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(src\/.+)$/.exec(url);
  return own ? own[1]! : url;
}

export function formatSummary(name: string, summary: ProfileSummary, checks: number): string {
  const pct = (ms: number) => `${((ms / summary.busyMs) * 100).toFixed(1).padStart(5)}%`;
  const perCheck = (ms: number) => `${((ms * 1000) / checks).toFixed(2).padStart(7)} µs/check`;
  const lines = [
    `${name}: ${summary.busyMs.toFixed(0)} ms busy over ${checks} checks (${((summary.busyMs * 1000) / checks).toFixed(1)} µs/check on this thread), ${summary.idleMs.toFixed(0)} ms idle`,
    '  self time by owner:',
    ...summary.byOwner.filter(([, ms]) => ms / summary.busyMs >= 0.005).map(([owner, ms]) => `    ${pct(ms)} ${perCheck(ms)}  ${owner}`),
    '  top functions (self time):',
    ...summary.byFunction.map(([fn, ms]) => `    ${pct(ms)} ${perCheck(ms)}  ${fn}`),
  ];
  return lines.join('\n');
}

/**
 * Where a cache miss's time goes on one thread, by stage of the check path: each sample goes to
 * the innermost frame on its stack that is hopguard's or grpc-js's (so Buffer.from under the JWS
 * decoder is the decoder's, and node:http2 under grpc-js is transport). Samples with neither are
 * the signature thread's own (crypto.verify there is the signature, the rest is its side of the
 * hand-off), the worker message port's (hand-off), GC, or other Node work. µs, idle apart.
 * `window`: only samples taken within it (µs of process.hrtime, the profile's clock on Linux).
 */
export function stageTimes(file: string, window?: { fromUs: number; toUs: number }): { stages: Map<string, number>; idleUs: number } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stageOf = new Map<number, string>();
  const classify = (id: number): string => {
    const known = stageOf.get(id);
    if (known !== undefined) return known;
    let stage: string | undefined;
    let inMessagePort = false;
    let inCryptoVerify = false;
    for (let at: number | undefined = id; at !== undefined && stage === undefined; at = parent.get(at)) {
      const { functionName, url } = nodes.get(at)!.callFrame;
      stage = stageOfFrame(functionName, url);
      if (/internal\/worker|per_context\/messageport/.test(url)) inMessagePort = true;
      if (url === 'node:internal/crypto/sig') inCryptoVerify = true;
    }
    const { functionName } = nodes.get(id)!.callFrame;
    // A signature thread's crypto.verify is the signature, even within its message handler.
    if (stage === undefined && inCryptoVerify) stage = 'signature (crypto.verify)';
    stage ??= functionName === '(garbage collector)' ? 'GC'
      : inMessagePort ? 'hand-off (message ports)'
      : functionName === '(program)' ? '(program: native, unattributed)'
      : 'Node, other';
    stageOf.set(id, stage);
    return stage;
  };
  const stages = new Map<string, number>();
  let idleUs = 0;
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    at += us;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    if (nodes.get(id)!.callFrame.functionName === '(idle)') {
      idleUs += us;
      return;
    }
    const stage = classify(id);
    stages.set(stage, (stages.get(stage) ?? 0) + us);
  });
  return { stages, idleUs };
}

/** hopguard's files by stage of the check path; grpc-js is transport; undefined: look further out. */
const STAGE_OF_FILE: [RegExp, string][] = [
  [/src\/authz\/(check-request-decoder|hop-request)\.js$/, 'decode CheckRequest'],
  [/src\/authz\/credentials\.js$/, 'credential'],
  [/src\/token\/compact-jws\.js$/, 'JWS decode (base64url, UTF-8)'],
  [/src\/token\/strict-json\.js$/, 'strict JSON'],
  [/src\/token\/(access-token-verifier|access-token-claims)\.js$/, 'verifier: header, claims, cache'],
  [/src\/token\/(jwks-source|kid-refetch)\.js$/, 'key lookup'],
  [/src\/token\/jws-signature\.js$/, 'signing input + signature bytes'],
  [/src\/token\/token-binding\.js$/, 'binding'],
  [/src\/authz\/(check-response|check-response-encoder)\.js$/, 'response'],
  [/src\/(authz\/authorize|policy\/.*|store\/.*)\.js$/, 'route, policy, state'],
  [/src\/(telemetry|audit)\/.*\.js$/, 'telemetry'],
  [/src\/authz\/authz-server\.js$/, 'server glue'],
];

function stageOfFrame(functionName: string, url: string): string | undefined {
  if (url.includes('/node_modules/')) {
    if (url.includes('/@grpc/grpc-js/')) return 'transport (grpc-js, node:http2)';
    if (/\/(protobufjs|@grpc\/proto-loader)\//.test(url)) return 'protobufjs (generic decode)';
    return undefined;
  }
  if (/src\/token\/signature-worker\.js$/.test(url)) return /^verify(Inline|Here)/.test(functionName) ? 'signature, inline (crypto.verify)' : 'hand-off (batching, messages)';
  for (const [pattern, stage] of STAGE_OF_FILE) if (pattern.test(url)) return stage;
  if (/\/src\/[^?]+\.js$/.test(url)) return 'hopguard, other';
  return undefined;
}

/**
 * The stage clock of a cache miss: each stage of the check path timed on its own with the real
 * functions, per algorithm. Run by `npm run bench -- --only breakdown` in a process of its own,
 * and usable alone (under valgrind too):
 *
 *   node bench/out/check/bench/miss-stages.js SPEC.json
 *
 * SPEC: { config: a hopguard authz config file, requests: { ALG: framed CheckRequest file },
 * iterations }. Prints one JSON object: per algorithm, per stage, µs. Two kinds of figure:
 * - warm: the stage alone in a loop of `iterations` calls (fresh inputs each call), the median of
 *   5 such loops: what the code costs when hot, nearly free of other load;
 * - one at a time: the signature thread's round trip and authorize() end to end, each after a
 *   timer turn (so the signature thread is asleep, as at one check in flight), median and p90;
 * - bytes: V8 heap allocated per call of each warm stage (run with --min-semi-space-size=64 so
 *   that no scavenge falls inside a loop), what the garbage collector later pays for.
 */

import { readFileSync } from 'node:fs';
import { authorize } from '../src/authz/authorize.js';
import { decodeCheckRequest } from '../src/authz/check-request-decoder.js';
import { checkResponse, encodeCheckResponse } from '../src/authz/check-response.js';
import { readCredential } from '../src/authz/credentials.js';
import { loadAuthzConfigFile } from '../src/config/load-authz-config.js';
import { RouteTable } from '../src/policy/route-table.js';
import { openStore } from '../src/store/open-store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { checkAudience, checkFreshness, readAccessTokenClaims } from '../src/token/access-token-claims.js';
import { AccessTokenVerifier, fingerprint, type TrustedIssuer } from '../src/token/access-token-verifier.js';
import { decodeCompactJws } from '../src/token/compact-jws.js';
import { createIssuerKeys } from '../src/token/jwks-source.js';
import { signatureJob } from '../src/token/jws-signature.js';
import { verifyHere, verifyInWorker } from '../src/token/signature-worker.js';
import { parseJsonObject } from '../src/token/strict-json.js';
import { bindingFor, checkCertificate, presentedCertificate } from '../src/token/token-binding.js';
import type { Algorithm } from '../src/vocabulary/algorithms.js';

export interface StageSpec {
  config: string;
  requests: Record<string, string>;
  iterations: number;
}

/** Per algorithm, per stage: µs (warm: mean of a loop, median of 5 loops; one at a time: median, p90). */
export type StageClock = Record<string, Record<string, Figure>>;

interface Figure {
  us: number;
  p90Us?: number;
  /** Bytes of V8 heap allocated per call (warm stages): what the garbage collector later pays for. */
  bytes?: number;
}

/** The stages, in the order a check goes through them. */
export const STAGES = [
  'decode CheckRequest',
  'credential (Authorization header)',
  'JWS decode: base64url, UTF-8, strict JSON',
  '  of which strict JSON (header + payload)',
  'claims, freshness, audience, fingerprint',
  'key lookup (kid, alg)',
  'signing input + signature bytes',
  'signature (crypto.verify, inline)',
  'binding (certificate thumbprint)',
  'response (build + encode)',
  'sum of the stages above (warm)',
  'authorize(), warm (a setImmediate between)',
  'signature thread round trip, one at a time',
  '  hand-off: round trip - inline signature',
  'authorize(), one at a time',
] as const;

type Stage = typeof STAGES[number];

const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

async function clock(spec: StageSpec): Promise<StageClock> {
  const config = loadAuthzConfigFile(spec.config);
  const issuers: TrustedIssuer[] = config.issuers.map((issuer) => ({
    config: issuer,
    keys: createIssuerKeys({
      issuer: issuer.issuer, jwksFile: issuer.jwksFile!, algorithms: issuer.algorithms,
      refreshIntervalMs: config.jwks.refreshIntervalMs, refetchIntervalMs: config.jwks.refetchIntervalMs,
      fetchTimeoutMs: config.jwks.fetchTimeoutMs, checkWaitMs: config.jwks.checkWaitMs,
    }),
  }));
  await Promise.all(issuers.map((issuer) => issuer.keys.start()));
  const verifier = new AccessTokenVerifier({ audience: config.audience, issuers, clockSkewMs: config.clockSkewMs, cacheMaxEntries: 0 });
  const deps = { config, routes: new RouteTable(config.routes), verifier, store: await openStore(config, silentLogger) };
  const out: StageClock = {};
  try {
    for (const [alg, file] of Object.entries(spec.requests)) {
      out[alg] = await stagesOf(readFileSync(file).subarray(5), alg as Algorithm, spec.iterations, { issuers, audience: config.audience, deps });
    }
  } finally {
    for (const issuer of issuers) issuer.keys.stop();
    await deps.store.close();
  }
  return out;
}

interface Context {
  issuers: TrustedIssuer[];
  audience: string;
  deps: Parameters<typeof authorize>[1];
}

async function stagesOf(bytes: Buffer, alg: Algorithm, n: number, { issuers, audience, deps }: Context): Promise<Record<string, Figure>> {
  const figures: Partial<Record<Stage, Figure>> = {};
  /** Mean µs per call of `fn` over inputs 0..n-1, median of 5 loops (after one unmeasured). */
  const warm = (stage: Stage, fn: (i: number) => unknown) => {
    const loops: number[] = [];
    for (let loop = -1; loop < 5; loop++) {
      const started = performance.now();
      for (let i = 0; i < n; i++) fn(i);
      if (loop >= 0) loops.push(((performance.now() - started) * 1000) / n);
    }
    figures[stage] = { us: median(loops), bytes: allocated(() => {
      for (let i = 0; i < n; i++) fn(i);
    }) / n };
  };
  /** Median and p90 µs of `fn`, one call at a time, a timer turn before each. */
  const oneAtATime = async (stage: Stage, fn: () => Promise<unknown>) => {
    const times: number[] = [];
    for (let i = -Math.min(200, n); i < n; i++) {
      await turn();
      const started = performance.now();
      await fn();
      if (i >= 0) times.push((performance.now() - started) * 1000);
    }
    const sorted = times.sort((a, b) => a - b);
    figures[stage] = { us: sorted[Math.floor(sorted.length / 2)]!, p90Us: sorted[Math.floor(sorted.length * 0.9)]! };
  };

  // The inputs of each stage, made by the stage before, fresh for every call as on the wire.
  const requests = Array.from({ length: n }, () => decodeCheckRequest(bytes));
  warm('decode CheckRequest', () => decodeCheckRequest(bytes));
  const credential = readCredential(requests[0]!, () => false);
  if (credential.kind !== 'bearer') throw new Error(`the request has no bearer token (${credential.kind})`);
  warm('credential (Authorization header)', (i) => readCredential(requests[i]!, () => false));
  const tokens = requests.map((request) => (readCredential(request, () => false) as { token: string }).token);
  warm('JWS decode: base64url, UTF-8, strict JSON', (i) => decodeCompactJws(tokens[i]!));
  const texts = tokens.map((token) => token.split('.').slice(0, 2).map((s) => Buffer.from(s, 'base64url').toString('utf8')) as [string, string]);
  warm('  of which strict JSON (header + payload)', (i) => {
    parseJsonObject(texts[i]![0], 'token header');
    parseJsonObject(texts[i]![1], 'token payload');
  });
  const decoded = tokens.map((token) => decodeCompactJws(token));
  const { header, payload } = decoded[0]!;
  const issuer = issuers.find((i) => i.config.issuer === payload.iss)!;
  const rules = { now: Date.now() / 1000, skewSeconds: deps.config.clockSkewMs / 1000, maxTtlSeconds: issuer.config.maxTtlMs / 1000 };
  const verifiedOf = (claimsOf: Record<string, unknown>) => {
    const claims = readAccessTokenClaims(claimsOf);
    checkFreshness(claims, rules);
    checkAudience(claims, issuer.audience ?? audience);
    return { ...claims, fingerprint: fingerprint(claims.iss, claims.jti), claims: Object.freeze(claimsOf) };
  };
  warm('claims, freshness, audience, fingerprint', (i) => verifiedOf(decoded[i]!.payload));
  const kid = header.kid as string | undefined;
  const key = await issuer.keys.resolve(kid, alg);
  if (!key) throw new Error(`no ${alg} key for kid ${String(kid)}`);
  // Async: awaited one after another, back to back.
  {
    const loops: number[] = [];
    for (let loop = -1; loop < 5; loop++) {
      const started = performance.now();
      for (let i = 0; i < n; i++) await issuer.keys.resolve(kid, alg);
      if (loop >= 0) loops.push(((performance.now() - started) * 1000) / n);
    }
    figures['key lookup (kid, alg)'] = { us: median(loops) };
  }
  warm('signing input + signature bytes', (i) => signatureJob(tokens[i]!, alg, key));
  const jobs = tokens.map((token) => signatureJob(token, alg, key)!);
  warm('signature (crypto.verify, inline)', (i) => {
    const job = jobs[i]!;
    if (!verifyHere(job)) throw new Error(`the ${alg} signature did not verify`);
  });
  const verified = verifiedOf(payload);
  warm('binding (certificate thumbprint)', (i) => {
    const binding = bindingFor(verified, 'mtls', 'Bearer');
    checkCertificate(verified, presentedCertificate(requests[i]!.certificate));
    return binding;
  });
  const route = deps.routes.match(requests[0]!.method, requests[0]!.path)!;
  warm('response (build + encode)', (i) => encodeCheckResponse(checkResponse({ allowed: true, route, token: verified, binding: 'mtls', cacheHit: false }, requests[i]!, '0af7651916cd43dd8448eb211c80319c')));
  const summed: Stage[] = ['decode CheckRequest', 'credential (Authorization header)', 'JWS decode: base64url, UTF-8, strict JSON', 'claims, freshness, audience, fingerprint',
    'key lookup (kid, alg)', 'signing input + signature bytes', 'signature (crypto.verify, inline)', 'binding (certificate thumbprint)', 'response (build + encode)'];
  figures['sum of the stages above (warm)'] = {
    us: summed.reduce((sum, stage) => sum + figures[stage]!.us, 0),
    bytes: summed.reduce((sum, stage) => sum + (figures[stage]!.bytes ?? 0), 0),
  };
  {
    const loops: number[] = [];
    for (let loop = -1; loop < 5; loop++) {
      let total = 0;
      for (let i = 0; i < n; i++) {
        // A new turn for each, as each request is: the signature is then verified inline, as at one in flight.
        await new Promise((resolve) => setImmediate(resolve));
        const started = performance.now();
        const decision = await authorize(decodeCheckRequest(bytes), deps);
        total += performance.now() - started;
        if (!decision.allowed) throw new Error(`authorize denied the ${alg} request: ${decision.code}`);
      }
      if (loop >= 0) loops.push((total * 1000) / n);
    }
    figures['authorize(), warm (a setImmediate between)'] = { us: median(loops) };
  }
  await oneAtATime('signature thread round trip, one at a time', () => verifyInWorker(jobs[0]!));
  const roundTrip = figures['signature thread round trip, one at a time']!;
  figures['  hand-off: round trip - inline signature'] = { us: roundTrip.us - figures['signature (crypto.verify, inline)']!.us };
  await oneAtATime('authorize(), one at a time', () => authorize(decodeCheckRequest(bytes), deps));
  return figures;
}

/**
 * Heap bytes `loop` allocates: heapUsed before and after, in a young generation made large
 * enough (the child runs with --min-semi-space-size) that no scavenge falls inside; a loop that
 * saw one (heapUsed fell) is run again.
 */
function allocated(loop: () => void): number {
  const deltas: number[] = [];
  for (let tries = 0; deltas.length < 3 && tries < 10; tries++) {
    const before = process.memoryUsage().heapUsed;
    loop();
    const delta = process.memoryUsage().heapUsed - before;
    if (delta >= 0) deltas.push(delta);
  }
  return deltas.length ? median(deltas) : Number.NaN;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as StageSpec;
  process.stdout.write(`${JSON.stringify(await clock(spec))}\n`);
}

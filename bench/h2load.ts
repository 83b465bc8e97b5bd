/**
 * h2load (nghttp2) as the load generator: an independent, native HTTP/2 client that sends the
 * same gRPC frame on every stream. It reports HTTP status 200 for any gRPC outcome, so what it
 * says is checked against byte counts (see check-path.ts), and latencies come from its
 * per-request log (--log-file: start µs, HTTP status, µs until the end of the response).
 */

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

export const H2LOAD_MISSING = [
  'h2load was not found on PATH. The benchmark uses it as its load generator (it is part of nghttp2):',
  '  Debian/Ubuntu:  apt-get install nghttp2-client',
  '  Fedora:         dnf install nghttp2',
  '  macOS:          brew install nghttp2',
].join('\n');

export function h2loadVersion(): string | undefined {
  const probe = spawnSync('h2load', ['--version'], { encoding: 'utf8' });
  return probe.status === 0 ? probe.stdout.trim() : undefined;
}

export interface H2loadRun {
  /** http://host:port/envoy.service.auth.v3.Authorization/Check */
  url: string;
  /** One length-prefixed gRPC message, sent as the body of every request. */
  bodyFile: string;
  requests: number;
  connections: number;
  streamsPerConnection: number;
  /** Extra request headers (gRPC metadata), such as traceparent. */
  headers?: Record<string, string>;
  /** Where to write the per-request log; latencies are read from it when given. */
  logFile?: string;
  /** HTTP/1.1 with a JSON body (the messages API) instead of gRPC over HTTP/2. */
  http1?: boolean;
}

export interface H2loadResult {
  rate: number;
  succeeded: number;
  failed: number;
  status2xx: number;
  /** Response DATA bytes, all requests together: gRPC frames, prefix included. */
  dataBytes: number;
  /** Sorted, µs; empty without logFile. */
  latenciesUs: Float64Array;
}

export async function runH2load(run: H2loadRun): Promise<H2loadResult> {
  const protocol = run.http1 ? { 'content-type': 'application/json' } : { 'content-type': 'application/grpc', te: 'trailers' };
  const headers = Object.entries({ ...protocol, ...run.headers })
    .flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const args = [
    '-n', String(run.requests), '-c', String(run.connections), '-m', String(run.streamsPerConnection), '-t', '1',
    ...(run.http1 ? ['--h1'] : []), ...headers, '-d', run.bodyFile, ...(run.logFile ? [`--log-file=${run.logFile}`] : []), run.url,
  ];
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (chunk) => { text += chunk; });
    child.stderr.on('data', (chunk) => { text += chunk; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`h2load exited with ${code}:\n${text}`))));
  });
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(output);
    if (!match) throw new Error(`unexpected h2load output (no ${pattern}):\n${output}`);
    return Number(match[1]);
  };
  const result: H2loadResult = {
    rate: number(/finished in [^,]+, ([\d.]+) req\/s/),
    succeeded: number(/(\d+) succeeded/),
    failed: number(/(\d+) failed/) + number(/(\d+) errored/) + number(/(\d+) timeout/),
    status2xx: number(/status codes: (\d+) 2xx/),
    dataBytes: number(/\((\d+)\) data/),
    latenciesUs: new Float64Array(0),
  };
  if (run.logFile) {
    result.latenciesUs = readLatencies(run.logFile);
    rmSync(run.logFile, { force: true });
  }
  return result;
}

function readLatencies(logFile: string): Float64Array {
  const lines = readFileSync(logFile, 'utf8').split('\n');
  const values = new Float64Array(lines.length);
  let n = 0;
  for (const line of lines) {
    const third = line.split('\t')[2];
    if (third !== undefined) values[n++] = Number(third);
  }
  return values.subarray(0, n).sort();
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

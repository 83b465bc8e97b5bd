import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { IssuedCert } from '../../src/devkit/pki.js';
import { parseHttpResponse } from './http-response.js';

const SOURCE = path.resolve(import.meta.dirname, 'renegotiate-client.c');
const OPENSSL_HEADER = '/usr/include/openssl/ssl.h';
const HOW_TO_GET = 'apt-get install gcc libssl-dev (.ci/run does this)';

/** Compiles renegotiate-client.c into `dir`; fails with directions when gcc or the OpenSSL headers are missing. */
export function buildRenegotiateClient(dir: string): string {
  if (spawnSync('gcc', ['--version']).error) throw new Error(`gcc is required to build the renegotiating TLS client: ${HOW_TO_GET}`);
  if (!existsSync(OPENSSL_HEADER)) throw new Error(`the OpenSSL headers (${OPENSSL_HEADER}) are required to build the renegotiating TLS client: ${HOW_TO_GET}`);
  const binary = path.join(dir, 'renegotiate-client');
  execFileSync('gcc', ['-O1', '-Wall', '-Werror', '-o', binary, SOURCE, '-lssl', '-lcrypto'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return binary;
}

export type RenegotiationOutcome =
  | { kind: 'refused'; reason: string }
  /** `body`: parsed when JSON, else the text. */
  | { kind: 'answered'; status: number; body: any };

type Identity = Pick<IssuedCert, 'certPath' | 'keyPath'>;

/**
 * Handshakes as `first`, renegotiates as `second`, then sends `POST path` with `form`.
 * 'refused' when the server would not renegotiate; otherwise the HTTP status and body.
 * Asynchronous: the server under test usually runs in this process.
 */
export async function renegotiateAndPost(
  binary: string,
  url: string,
  identities: { first: Identity; second: Identity },
  request: { path: string; form: Record<string, string>; headers?: Record<string, string> },
): Promise<RenegotiationOutcome> {
  const { hostname, port } = new URL(url);
  const body = new URLSearchParams(request.form).toString();
  const head = [
    `POST ${request.path} HTTP/1.1`, `host: ${hostname}:${port}`, 'content-type: application/x-www-form-urlencoded',
    `content-length: ${Buffer.byteLength(body)}`, 'connection: close',
    ...Object.entries(request.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
  ];
  const requestFile = `${binary}-request-${randomBytes(6).toString('hex')}`;
  writeFileSync(requestFile, `${head.join('\r\n')}\r\n\r\n${body}`);
  const args = [
    hostname, port, identities.first.certPath, identities.first.keyPath, identities.second.certPath, identities.second.keyPath, requestFile,
  ];
  const run = await new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) => {
    execFile(binary, args, { encoding: 'utf8', timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 'failed') : 0, stdout, stderr });
    });
  });
  if (run.code === 2) return { kind: 'refused', reason: run.stderr.trim() };
  if (run.code !== 0) throw new Error(`renegotiate-client failed (${run.code}): ${run.stderr}`);
  return { kind: 'answered', ...parseHttpResponse(run.stdout) };
}

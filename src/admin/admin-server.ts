import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Telemetry } from '../telemetry/telemetry.js';
import { listenFailure } from './listen-failure.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready, for operators: fixed texts naming issuers or the store, no secrets. */
  reasons: string[];
  /** Shared state: ok, degraded (feed lost, within max_staleness) or unavailable. */
  store: string;
}

/**
 * Admin HTTP: `/healthz` (the process answers), `/readyz` (keys loaded, state usable),
 * `/metrics` (Prometheus text). Kept off the gRPC port so probes never queue behind checks.
 */
export async function startAdminServer(
  host: string,
  port: number,
  deps: { readiness: () => Readiness; serveMetrics?: Telemetry['serveMetrics'] },
): Promise<{ address: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, { error: 'method not allowed' });
    if (path === '/healthz') return reply(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const readiness = deps.readiness();
      return reply(res, readiness.ready ? 200 : 503, {
        status: readiness.ready ? 'ready' : 'not ready', store: readiness.store, reasons: readiness.reasons,
      });
    }
    if (path === '/metrics' && deps.serveMetrics) return deps.serveMetrics(req, res);
    return reply(res, 404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenFailure('admin', formatAddress(host, port), err)));
    // exclusive: in a worker of `workers: N`, its own port rather than one shared through the primary.
    server.listen({ port, host, exclusive: true }, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    address: formatAddress(host, bound),
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function formatAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

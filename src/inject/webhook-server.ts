import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import type { Logger } from '../telemetry/log.js';
import { listenFailure } from '../admin/listen-failure.js';
import { readBody, RequestAborted } from '../tls/request-body.js';
import { createBoundedServer, SERVER_BOUNDS, type AbortPhase, type ServerBounds } from '../tls/server-bounds.js';
import { serverTlsOptions } from '../tls/server-tls.js';
import type { Decommission } from '../signals/decommission.js';
import { admit } from './admission.js';
import type { InjectConfig, OnError } from './inject-config.js';
import type { InjectionSettings } from './sidecar-injection.js';

/**
 * `hopguard inject` as a mutating admission webhook: HTTPS (the API server requires it) with the
 * certificate the MutatingWebhookConfiguration's caBundle vouches for.
 *
 *   POST /mutate    AdmissionReview in, AdmissionReview out (see admission.ts)
 *   POST /decommission  ServiceAccount DELETE reviews: always admitted, the workload's tokens revoked (signals/decommission.ts)
 *   GET  /healthz   200 while the process serves
 */

/** The API server sends one object per review; a pod spec is far below this. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** How often the certificate files are reread: cert-manager renews them in the mounted Secret. */
const TLS_RELOAD_MS = 60_000;

export interface RunningWebhook {
  url: string;
  stop(): Promise<void>;
}

export interface WebhookOptions {
  tlsReloadMs?: number;
  /** The design's bounds by default (SERVER_BOUNDS); tests shorten them. */
  bounds?: Partial<ServerBounds>;
  /** POST /decommission, the ValidatingWebhook for ServiceAccount DELETE; 404 without it. */
  decommission?: Decommission;
}

export async function startWebhook(
  config: InjectConfig & { tls: NonNullable<InjectConfig['tls']> },
  settingsFor: (namespace: string) => InjectionSettings,
  log: Logger,
  options: WebhookOptions = {},
): Promise<RunningWebhook> {
  const readTls = () => ({
    cert: readConfiguredFile(config.tls.certFile, 'tls.cert', FILE_KINDS.certificate),
    key: readConfiguredFile(config.tls.keyFile, 'tls.key', FILE_KINDS.key),
  });
  let tls = readTls();
  const bounds = { ...SERVER_BOUNDS, ...options.bounds };
  const { server, aborted } = createBoundedServer({
    tls: serverTlsOptions(tls),
    bounds,
    log,
    name: 'inject',
    refusal: (_status, description) => ({ contentType: 'text/plain', body: `${description}\n` }),
  }, (req, res) => {
    handle(req, res, { onError: config.onError, settingsFor, log, bodyMs: bounds.bodyMs, aborted, ...(options.decommission && { decommission: options.decommission }) }).catch((err: unknown) => {
      log.error('inject_failed', { error: err instanceof Error ? err.message : 'unknown' });
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenFailure('listen', `${config.listen.host}:${config.listen.port}`, err)));
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `https://${host}:${port}`;
  log.info('inject_started', { url, trust_domain: config.trustDomain, on_error: config.onError });
  const reload = setInterval(() => {
    try {
      const next = readTls();
      if (next.cert.equals(tls.cert) && next.key.equals(tls.key)) return;
      server.setSecureContext(serverTlsOptions(next));
      tls = next;
      log.info('inject_tls_reloaded');
    } catch (err) {
      // Half-written files or a key that does not match: keep serving with the last good pair.
      log.warn('inject_tls_reload_failed', { error: (err as NodeJS.ErrnoException).code ?? 'invalid certificate or key' });
    }
  }, options.tlsReloadMs ?? TLS_RELOAD_MS).unref();
  return {
    url,
    stop: () => new Promise<void>((resolve) => {
      clearInterval(reload);
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
  };
}

interface Serving {
  onError: OnError;
  settingsFor: (namespace: string) => InjectionSettings;
  log: Logger;
  bodyMs: number;
  aborted: (reason: RequestAborted['reason'], during: AbortPhase) => void;
  decommission?: Decommission;
}

async function handle(req: IncomingMessage, res: ServerResponse, { onError, settingsFor, log, bodyMs, aborted, decommission }: Serving) {
  const path = (req.url ?? '').split('?')[0];
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
  const route = path === '/mutate' || (path === '/decommission' && decommission) ? path : undefined;
  if (route === undefined) return send(res, 404, 'text/plain', 'not found\n');
  if (req.method !== 'POST') return send(res, 405, 'text/plain', 'use POST\n');

  let body: string;
  try {
    body = (await readBody(req, { maxBytes: MAX_BODY_BYTES, deadlineMs: bodyMs })).toString('utf8');
  } catch (err) {
    if (!(err instanceof RequestAborted)) throw err;
    aborted(err.reason, 'body');
    if (err.reason === 'client_closed') return void res.destroy();
    // The rest of the body is not read: the connection closes after the answer.
    res.setHeader('connection', 'close');
    return err.reason === 'too_large' ? send(res, 413, 'text/plain', 'the AdmissionReview is too large\n')
      : send(res, 408, 'text/plain', 'the request body took too long\n');
  }
  let review: unknown;
  try {
    review = JSON.parse(body);
  } catch {
    review = undefined;
  }
  if (route === '/decommission') {
    const answer = await decommission!.review(review);
    if (answer.kind === 'unanswerable') {
      log.warn('decommission_bad_request', { reason: answer.message });
      return send(res, 400, 'text/plain', `${answer.message}\n`);
    }
    return send(res, 200, 'application/json', JSON.stringify(answer.review));
  }
  const outcome = admit(review, settingsFor, onError);
  if (outcome.kind === 'unanswerable') {
    log.warn('inject_bad_request', { reason: outcome.message });
    return send(res, 400, 'text/plain', `${outcome.message}\n`);
  }
  const { outcome: what, ...fields } = outcome.event;
  (what === 'denied' || what === 'admitted_on_error' ? log.warn : log.info)(`inject_${what}`, fields);
  send(res, 200, 'application/json', JSON.stringify(outcome.review));
}

function send(res: ServerResponse, status: number, contentType: string, body: string) {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

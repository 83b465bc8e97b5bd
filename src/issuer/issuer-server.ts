import type { IncomingMessage, ServerResponse } from 'node:http';
import type https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import type { IssuerClient, IssuerConfig } from '../config/issuer-config.js';
import type { Logger } from '../telemetry/log.js';
import { listenFailure } from '../admin/listen-failure.js';
import { serverTlsOptions } from '../tls/server-tls.js';
import { readCaFile, readCertificateBundle } from '../tls/certificate-chain.js';
import { createBoundedServer, type AbortPhase, type ServerBounds } from '../tls/server-bounds.js';
import type { AbortReason } from '../tls/request-body.js';
import { ClientAuthenticator, type AuthenticatedClient } from './client-auth.js';
import { XfccAuthenticator } from './xfcc-client-auth.js';
import { BodyAborted, discardableBody, readForm } from './form-body.js';
import type { Keyring } from './keyring.js';
import { OAuthError } from './oauth-error.js';
import type { RateLimiter } from './rate-limiter.js';
import type { IssuerEvents } from './issuer-events.js';
import { DPOP_ALGORITHMS, TOKEN_EXCHANGE_GRANT, type TokenService } from './token-service.js';
import type { SsfReceiver } from '../signals/ssf-receiver.js';
import { ssfRoute } from './ssf-route.js';

export interface IssuerServerDeps {
  config: IssuerConfig;
  keyring: Keyring;
  tokens: TokenService;
  rateLimiter: RateLimiter;
  log: Logger;
  now: () => number;
  /** Spans and audit records of every /token and /revoke outcome. */
  events: IssuerEvents;
  bounds: ServerBounds;
  /** POST /ssf/events: Security Event Tokens from the signals transmitters. */
  signals: SsfReceiver;
}

/** Who the client of a /token or /revoke request is (client_auth: tls or xfcc); an OAuthError if nobody acceptable. */
type Authenticate = (req: IncomingMessage) => AuthenticatedClient;

/** What a request handler needs besides the deps: who the client is, and where to log a cut body. */
interface Serving {
  authenticate: Authenticate;
  aborted: (reason: AbortReason, during: AbortPhase) => void;
  ssf: ReturnType<typeof ssfRoute>;
}

/**
 * The issuer over HTTPS (node's TLS), or with client_auth: xfcc over plain HTTP to its own proxy
 * when tls is omitted (xfcc-client-auth.ts). With client_auth: tls client certificates are requested on every connection
 * and checked per request, so discovery needs none and /token answers invalid_client
 * (not a failed handshake) when one is missing. Certificate validity is checked against the
 * wall clock, as the handshake checks it, not `deps.now`. Held to `deps.bounds` (server-bounds.ts);
 * a rate-limited /token is refused before its body is read.
 */
export async function startIssuerServer(deps: IssuerServerDeps): Promise<{ url: string; close: () => Promise<void> }> {
  const { config } = deps;
  const clients = new Map<string, IssuerClient>(config.clients.map((c) => [c.id, c]));
  const tlsFiles = config.tls === undefined ? undefined : {
    cert: readConfiguredFile(config.tls.certFile, 'tls.cert', FILE_KINDS.certificate),
    key: readConfiguredFile(config.tls.keyFile, 'tls.key', FILE_KINDS.key),
  };
  let authenticate: Authenticate;
  let tls: https.ServerOptions | undefined;
  if (config.clientAuth.mode === 'xfcc') {
    const xfcc = new XfccAuthenticator(clients, config.clientAuth.trustedProxies);
    authenticate = (req) => xfcc.authenticate(req);
    tls = tlsFiles && serverTlsOptions(tlsFiles);
  } else {
    const clientCa = readCaFile(config.clientAuth.clientCaFile, 'tls.client_ca');
    const mtls = new ClientAuthenticator({ clients, clientCas: readCertificateBundle(clientCa.toString('utf8')) });
    authenticate = (req) => mtls.authenticate(req.socket as TLSSocket, Date.now());
    tls = { ...serverTlsOptions({ ...tlsFiles!, ca: clientCa }), requestCert: true, rejectUnauthorized: false };
  }
  const { server, aborted } = createBoundedServer({
    ...(tls !== undefined && { tls }),
    bounds: deps.bounds,
    log: deps.log,
    name: 'issuer',
    // A request node's parser refuses, or that ran out of time, gets an OAuth error like every other refusal.
    refusal: (_status, description) => ({ contentType: 'application/json', body: JSON.stringify({ error: 'invalid_request', error_description: description }) }),
  }, (req, res) => {
    handle(req, res, deps, { authenticate, aborted, ssf }).catch((err: unknown) => {
      deps.log.error('issuer_request_failed', { error: err instanceof Error ? err.name : 'unknown' });
      if (!res.headersSent) json(res, 500, { error: 'server_error' });
    });
  });
  const ssf = ssfRoute(deps.signals, deps.log, deps.bounds.bodyMs, aborted);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenFailure('listen', `${config.listen.host}:${config.listen.port}`, err)));
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  return {
    url: `${tls === undefined ? 'http' : 'https'}://${host}:${port}`,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: IssuerServerDeps, serving: Serving) {
  const path = (req.url ?? '').split('?')[0];
  const route = `${req.method} ${path}`;
  try {
    switch (route) {
      case 'GET /.well-known/jwks.json':
        return jwks(res, deps);
      case 'GET /.well-known/oauth-authorization-server':
        return json(res, 200, metadata(deps.config), { 'cache-control': 'public, max-age=3600' });
      case 'POST /token':
        return await deps.events.observe('token', req, async (outcome) => {
          const auth = serving.authenticate(req);
          outcome.caller = auth.client.id;
          const wait = deps.rateLimiter.take(auth.client.id);
          if (wait > 0) throw new RateLimited(wait);
          const form = await readForm(req, deps.bounds.bodyMs);
          outcome.grant = form.get('grant_type');
          const { response, issued } = await deps.tokens.token(auth, form, dpopHeader(req));
          outcome.issued = issued;
          json(res, 200, response, NO_STORE);
        });
      case 'POST /ssf/events':
        return await serving.ssf(req, res);
      case 'POST /revoke':
        return await deps.events.observe('revoke', req, async (outcome) => {
          const auth = serving.authenticate(req);
          outcome.caller = auth.client.id;
          const record = await deps.tokens.revoke(auth, await readForm(req, deps.bounds.bodyMs));
          if (record) outcome.revoked = record;
          res.writeHead(200, NO_STORE).end();
        });
      default:
        return json(res, 404, { error: 'not_found' });
    }
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    if (err instanceof BodyAborted) serving.aborted(err.reason, 'body');
    const retry: Record<string, string> = err instanceof RateLimited ? { 'retry-after': String(err.retryAfterSeconds) } : {};
    // Answered before the body was read: a body cut short, or too large to discard, is not read on; the connection closes.
    const close: Record<string, string> = !req.complete && (err instanceof BodyAborted || !discardableBody(req)) ? { connection: 'close' } : {};
    return json(res, err.status, { error: err.error, error_description: err.description }, { ...retry, ...close, ...NO_STORE });
  }
}

/** 429 with Retry-After: an OAuth error so it is audited and traced like any refusal. */
class RateLimited extends OAuthError {
  constructor(readonly retryAfterSeconds: number) {
    super('slow_down', 'too many token requests', 429);
  }
}

/** The one DPoP header, 'invalid' when sent more than once (node joins repeats with ", "). */
function dpopHeader(req: IncomingMessage): string | undefined {
  const value = req.headers.dpop;
  if (value === undefined) return undefined;
  return typeof value === 'string' && !value.includes(',') ? value : 'invalid';
}

// RFC 6749 §5.1: token responses must not be cached.
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' };

/**
 * The published keys. max-age is half of publish_ahead, so a sidecar that honours it has a
 * new key well before the key signs anything.
 */
function jwks(res: ServerResponse, deps: IssuerServerDeps) {
  const maxAge = Math.max(1, Math.floor(deps.config.keys.publishAheadMs / 2000));
  json(res, 200, { keys: deps.keyring.published(deps.now()).map((k) => k.publicJwk) }, { 'cache-control': `public, max-age=${maxAge}` });
}

/** RFC 8414 authorization server metadata. */
function metadata(config: IssuerConfig) {
  const base = config.issuer.replace(/\/$/, '');
  return {
    issuer: config.issuer,
    token_endpoint: `${base}/token`,
    jwks_uri: `${base}/.well-known/jwks.json`,
    revocation_endpoint: `${base}/revoke`,
    grant_types_supported: ['client_credentials', TOKEN_EXCHANGE_GRANT, 'refresh_token'],
    // No authorization endpoint: this issuer serves workloads, not browsers.
    response_types_supported: [],
    token_endpoint_auth_methods_supported: ['tls_client_auth'],
    revocation_endpoint_auth_methods_supported: ['tls_client_auth'],
    tls_client_certificate_bound_access_tokens: true,
    ...(config.clients.some((c) => c.dpop) && { dpop_signing_alg_values_supported: DPOP_ALGORITHMS }),
    scopes_supported: [...new Set(config.clients.flatMap((c) => c.scopes))],
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

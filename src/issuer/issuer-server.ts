import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { IssuerClient, IssuerConfig } from '../config/issuer-config.js';
import type { Logger } from '../telemetry/log.js';
import { authenticateClient } from './client-auth.js';
import { readForm } from './form-body.js';
import type { Keyring } from './keyring.js';
import { OAuthError } from './oauth-error.js';
import type { RateLimiter } from './rate-limiter.js';
import { DPOP_ALGORITHMS, TOKEN_EXCHANGE_GRANT, type IssuedToken, type TokenService } from './token-service.js';

export interface IssuerServerDeps {
  config: IssuerConfig;
  keyring: Keyring;
  tokens: TokenService;
  rateLimiter: RateLimiter;
  log: Logger;
  now: () => number;
  /** Told of every token issued and every revocation: identifiers only (audit, metrics). */
  onIssued?: (issued: IssuedToken) => void;
}

/**
 * The issuer over HTTPS (node's TLS). Client certificates are requested on every connection
 * and checked per request, so discovery needs none and /token answers invalid_client
 * (not a failed handshake) when one is missing.
 */
export async function startIssuerServer(deps: IssuerServerDeps): Promise<{ url: string; close: () => Promise<void> }> {
  const { config } = deps;
  const clients = new Map<string, IssuerClient>(config.clients.map((c) => [c.id, c]));
  const server = https.createServer({
    cert: readFileSync(config.tls.certFile),
    key: readFileSync(config.tls.keyFile),
    ca: readFileSync(config.tls.clientCaFile),
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  }, (req, res) => {
    handle(req, res, deps, clients).catch((err: unknown) => {
      deps.log.error('issuer_request_failed', { error: err instanceof Error ? err.name : 'unknown' });
      if (!res.headersSent) json(res, 500, { error: 'server_error' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  return {
    url: `https://${host}:${port}`,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: IssuerServerDeps, clients: Map<string, IssuerClient>) {
  const path = (req.url ?? '').split('?')[0];
  const route = `${req.method} ${path}`;
  try {
    switch (route) {
      case 'GET /.well-known/jwks.json':
        return jwks(res, deps);
      case 'GET /.well-known/oauth-authorization-server':
        return json(res, 200, metadata(deps.config), { 'cache-control': 'public, max-age=3600' });
      case 'POST /token': {
        const auth = authenticateClient(req.socket as TLSSocket, clients);
        const wait = deps.rateLimiter.take(auth.client.id);
        if (wait > 0) return json(res, 429, { error: 'slow_down', error_description: 'too many token requests' }, { 'retry-after': String(wait), ...NO_STORE });
        const { response, issued } = await deps.tokens.token(auth, await readForm(req), dpopHeader(req));
        deps.onIssued?.(issued);
        return json(res, 200, response, NO_STORE);
      }
      case 'POST /revoke': {
        const auth = authenticateClient(req.socket as TLSSocket, clients);
        const record = await deps.tokens.revoke(auth, await readForm(req));
        if (record) deps.log.info('token_revoked', { by: auth.client.id, kind: record.revocation.kind });
        res.writeHead(200, NO_STORE).end();
        return;
      }
      default:
        return json(res, 404, { error: 'not_found' });
    }
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    return json(res, err.status, { error: err.error, error_description: err.description }, NO_STORE);
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

/**
 * The egress scenario's parts: a real issuer (HTTPS, mTLS) in this process, the authz config
 * that turns egress on for orders' sidecar, checkout's token from that issuer, and the outbound
 * CheckRequest orders' Envoy sends for its application's call to payments, carrying the handle.
 * The issuer is idle while h2load runs against a cached destination; it only answers the misses.
 */

import path from 'node:path';
import { checkRequestMessage } from '../src/authz/envoy-client.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { postForm } from '../src/demo/https-form.js';
import { issueCert } from '../src/devkit/pki.js';
import type { TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { silentLogger } from '../src/telemetry/log.js';

export const PAYMENTS = 'spiffe://bench.local/ns/shop/sa/payments';
export const PAYMENTS_HOST = 'payments.shop.svc.cluster.local';
/** The same audience, a new token for every call: each outbound check is an exchange. */
export const PER_REQUEST_HOST = 'once.payments.svc';
export const HANDLE_HEADER = 'x-hopguard-handle';

type Workloads = 'checkout' | 'orders';

export interface EgressChain {
  issuer: RunningIssuer;
  /** `issuers`, `issuer_client` and `egress` for orders' sidecar, listening for egress on `egressPort`. */
  sidecarConfig(egressPort?: number): Record<string, unknown>;
  /** checkout's token for orders (client_credentials), bound to checkout's certificate. */
  checkoutToken(): Promise<string>;
  stop(): Promise<void>;
}

export async function startEgressChain(domain: TrustDomain<Workloads>, ids: Record<Workloads, string>, issuerName: string): Promise<EgressChain> {
  const server = issueCert(domain.ca, domain.dir, { name: 'bench-issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  const store = new MemoryStore();
  const issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${issuerName}
tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${domain.ca.certPath} }
keys: { dir: ${path.join(domain.dir, 'issuer-keys')} }
token_ttl: 1h
rate_limit: { per_second: 100000, burst: 100000 }
clients:
  - { id: ${ids.checkout}, grants: [client_credentials], audiences: [${ids.orders}], scopes: [orders:read, payments:write] }
  - { id: ${ids.orders}, grants: [token_exchange], audiences: [${PAYMENTS}], scopes: [payments:write] }
`, { baseDir: domain.dir }), { log: silentLogger, store });
  const orders = domain.workloads.orders;
  return {
    issuer,
    sidecarConfig: (egressPort) => ({
      issuers: [{ issuer: issuerName, jwks_uri: `${issuer.url}/.well-known/jwks.json`, jwks_ca_file: domain.ca.certPath, algorithms: ['ES256'], max_ttl: '2h' }],
      ...(egressPort !== undefined && {
        issuer_client: { token_endpoint: `${issuer.url}/token`, ca_file: domain.ca.certPath, cert_file: orders.certPath, key_file: orders.keyPath },
        egress: {
          listen: `127.0.0.1:${egressPort}`,
          destinations: [
            { host: PAYMENTS_HOST, audience: PAYMENTS, scopes: ['payments:write'] },
            { host: PER_REQUEST_HOST, audience: PAYMENTS, scopes: ['payments:write'], per_request: true },
          ],
        },
      }),
    }),
    checkoutToken: async () => {
      const checkout = domain.workloads.checkout;
      const reply = await postForm(`${issuer.url}/token`, { grant_type: 'client_credentials', audience: ids.orders, scope: 'orders:read payments:write' },
        { ca: domain.ca.certPem, cert: checkout.certPem, key: checkout.keyPem });
      if (reply.status !== 200) throw new Error(`the issuer refused checkout's token: ${reply.body.error}`);
      return String(reply.body.access_token);
    },
    stop: async () => {
      await issuer.stop();
      await store.close();
    },
  };
}

/** What orders' Envoy outbound listener sends for its application's POST to `host`: no peer certificate, the handle. */
export function outboundCheck(host: string, handle: string) {
  return checkRequestMessage({
    method: 'POST', path: '/payments', host, scheme: 'http',
    headers: {
      ':authority': host, ':method': 'POST', ':path': '/payments', ':scheme': 'http',
      [HANDLE_HEADER]: handle, 'content-type': 'application/json', 'user-agent': 'orders/2.3.0 okhttp/4.12.0',
      'x-request-id': '7d1e2c4b-8f3a-4e5d-b6c7-0a9f8e7d6c5b', 'x-envoy-expected-rq-timeout-ms': '15000',
    },
  });
}

import path from 'node:path';
import { startAuthz, type RunningAuthz } from '../authz/authz-service.js';
import { EnvoyClient, type CheckInput, type CheckOutput } from '../authz/envoy-client.js';
import { parseAuthzConfig } from '../config/load-authz-config.js';
import { parseIssuerConfig } from '../config/load-issuer-config.js';
import { issueCert, type IssuedCert } from '../devkit/pki.js';
import { createTrustDomain } from '../devkit/trust-domain.js';
import { startIssuer } from '../issuer/issuer-service.js';
import { MemoryStore } from '../store/memory-store.js';
import { silentLogger } from '../telemetry/log.js';
import { postForm } from './https-form.js';

const ISSUER = 'https://sts.demo.local';
const ID = {
  frontend: 'spiffe://demo.local/ns/shop/sa/frontend',
  orders: 'spiffe://demo.local/ns/shop/sa/orders',
  payments: 'spiffe://demo.local/ns/shop/sa/payments',
  stranger: 'spiffe://demo.local/ns/shop/sa/stranger',
} as const;
type Workload = keyof typeof ID;

// The embedded defaults: one issuer, a sidecar in front of orders and one in front of payments.
const ISSUER_CONFIG = (dir: string, server: IssuedCert, ca: string) => `
listen: 127.0.0.1:0
admin: off
issuer: ${ISSUER}
tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${ca} }
keys: { dir: ${path.join(dir, 'keys')} }
clients:
  - id: ${ID.frontend}
    grants: [client_credentials]
    audiences: [${ID.orders}]
    scopes: [orders:read, payments:write]
  - id: ${ID.orders}
    grants: [token_exchange]
    audiences: [${ID.payments}]
    scopes: [payments:write]
`;

const SIDECAR_CONFIG = (audience: string, jwksUri: string, ca: string, routes: string) => `
listen: 127.0.0.1:0
admin: off
audience: ${audience}
issuers:
  - { issuer: ${ISSUER}, jwks_uri: ${jwksUri}, jwks_ca_file: ${ca}, algorithms: [ES256] }
routes:
${routes}`;

/**
 * `hopguard demo`: the main job end to end on embedded defaults, no Redis. It makes a mesh CA
 * and workload certificates, starts the issuer (HTTPS, mTLS) and a sidecar for orders and for
 * payments, then walks a token along the chain: issue → call → exchange → next hop → revoke,
 * sending each sidecar the CheckRequests Envoy would send.
 */
export async function runDemo(print: (line: string) => void): Promise<number> {
  const mesh = await createTrustDomain('demo', ID);
  const store = new MemoryStore();
  const running: { stop(): Promise<void> }[] = [];
  try {
    const server = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
    const issuer = await startIssuer(parseIssuerConfig(ISSUER_CONFIG(mesh.dir, server, mesh.ca.certPath), { baseDir: mesh.dir }), { log: silentLogger, store });
    running.push(issuer);
    const sidecar = async (audience: string, routes: string) => {
      const config = parseAuthzConfig(SIDECAR_CONFIG(audience, `${issuer.url}/.well-known/jwks.json`, mesh.ca.certPath, routes), { baseDir: mesh.dir });
      const authz: RunningAuthz = await startAuthz(config, { log: silentLogger, store });
      const envoy = new EnvoyClient(authz.grpcAddress);
      running.push({ stop: async () => { envoy.close(); await authz.stop(); } });
      return envoy;
    };
    const orders = await sidecar(ID.orders, '  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }\n');
    const payments = await sidecar(ID.payments,
      `  - { name: pay, methods: [POST], path: /payments, scopes: [payments:write], callers: [${ID.orders}], one_time: true }\n`);

    const askIssuer = (who: Workload, endpoint: string, form: Record<string, string>) =>
      postForm(`${issuer.url}${endpoint}`, form, { ca: mesh.ca.certPem, cert: mesh.workloads[who].certPem, key: mesh.workloads[who].keyPem });
    const call = async (what: string, envoy: EnvoyClient, who: Workload, input: CheckInput) =>
      print(describe(what, input, await envoy.check({
        principal: ID[who], certificatePem: mesh.workloads[who].certPem, ...input,
      })));
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

    print('hopguard demo: an issuer, and a sidecar in front of orders and of payments (no Redis)');
    print('');
    const forOrders = await askIssuer('frontend', '/token', { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write' });
    print(`1. frontend asks the issuer for a token to call orders: ${forOrders.status === 200 ? `ok, ${forOrders.body.expires_in}s, bound to frontend's certificate` : forOrders.body.error}`);
    const t1 = String(forOrders.body.access_token);
    await call('frontend calls orders', orders, 'frontend', { path: '/orders/42', headers: bearer(t1) });
    await call('another workload replays that token', orders, 'stranger', { path: '/orders/42', headers: bearer(t1) });
    await call('frontend sends that token to payments', payments, 'frontend', { method: 'POST', path: '/payments', headers: bearer(t1) });
    await call('a path that tries to dodge the route', orders, 'frontend', { path: '/orders/../admin', headers: bearer(t1) });

    const forPayments = await askIssuer('orders', '/token', {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: t1,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience: ID.payments, scope: 'payments:write',
    });
    print(`2. orders exchanges it for a token to payments (RFC 8693): ${forPayments.status === 200 ? 'ok, acting for frontend, bound to orders\' certificate' : forPayments.body.error}`);
    const t2 = String(forPayments.body.access_token);
    await call('orders calls payments (one-time route)', payments, 'orders', { method: 'POST', path: '/payments', headers: bearer(t2) });
    await call('the same payment token again', payments, 'orders', { method: 'POST', path: '/payments', headers: bearer(t2) });

    const revoked = await askIssuer('frontend', '/revoke', { token: t1 });
    print(`3. frontend revokes its token at the issuer (RFC 7009): HTTP ${revoked.status}`);
    await call('frontend calls orders again', orders, 'frontend', { path: '/orders/42', headers: bearer(t1) });
    print('');
    print('Allowed requests reach the app with x-hopguard-* identity headers (client copies overwritten)');
    print('and the token removed; denials carry an explicit status, WWW-Authenticate and a JSON body.');
    return 0;
  } finally {
    for (const r of running.reverse()) await r.stop();
    await store.close();
    mesh.cleanup();
  }
}

function describe(what: string, input: CheckInput, out: CheckOutput): string {
  const request = `${(input.method ?? 'GET').padEnd(4)} ${input.path}`.padEnd(22);
  const actor = out.raw.dynamic_metadata?.fields?.act?.structValue?.fields?.sub?.stringValue;
  const verdict = out.allowed
    ? `ALLOW     x-hopguard-subject: ${out.headers['x-hopguard-subject']}${actor ? ` (act: ${actor})` : ''}`
    : `DENY ${out.httpStatus} ${out.body?.code}`;
  return `   ${what.padEnd(40)} ${request} ${verdict}`;
}

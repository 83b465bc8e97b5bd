import { startAuthz } from '../authz/authz-service.js';
import { EnvoyClient, type CheckInput, type CheckOutput } from '../authz/envoy-client.js';
import { parseAuthzConfig } from '../config/load-authz-config.js';
import { signAccessToken } from '../devkit/signing-key.js';
import { createTrustDomain } from '../devkit/trust-domain.js';
import { silentLogger } from '../telemetry/log.js';

const ISSUER = 'https://sts.demo.local';
const ORDERS = 'spiffe://demo.local/ns/shop/sa/orders';
const PAYMENTS = 'spiffe://demo.local/ns/shop/sa/payments';
const CHECKOUT = 'spiffe://demo.local/ns/shop/sa/checkout';
const STRANGER = 'spiffe://demo.local/ns/shop/sa/stranger';

// The embedded defaults: one sidecar in front of "orders", no Redis.
const CONFIG = (jwksFile: string) => `
listen: 127.0.0.1:0
admin: off
audience: ${ORDERS}
issuers:
  - issuer: ${ISSUER}
    jwks_file: ${jwksFile}
    algorithms: [ES256]
    max_ttl: 10m
binding: mtls
store: memory
routes:
  - name: create-payment
    methods: [POST]
    path: /orders/pay
    scopes: [orders:write]
    callers: [${CHECKOUT}]
    one_time: true
  - name: read-orders
    methods: [GET]
    path_prefix: /orders/
    scopes: [orders:read]
  - name: health
    path: /healthz
    public: true
`;

/**
 * `hopguard demo`: the main job end to end on embedded defaults. It makes an issuer key
 * and mesh certificates, starts a real sidecar on loopback, and sends it the CheckRequests
 * Envoy would send, printing each decision.
 */
export async function runDemo(print: (line: string) => void): Promise<number> {
  const mesh = await createTrustDomain('demo', { checkout: CHECKOUT, stranger: STRANGER });
  try {
    const { key, workloads: { checkout, stranger } } = mesh;
    const config = parseAuthzConfig(CONFIG(mesh.jwksPath), { baseDir: mesh.dir, source: 'embedded demo config' });
    const authz = await startAuthz(config, { log: silentLogger });
    const envoy = new EnvoyClient(authz.grpcAddress);

    const mint = (aud: string, scope: string, ttl = 300) =>
      signAccessToken(key, { iss: ISSUER, aud, sub: CHECKOUT, scope, certThumbprint: checkout.thumbprint, ttl });
    const forOrders = await mint(ORDERS, 'orders:read orders:write');
    const forPayments = await mint(PAYMENTS, 'payments:write');
    const expired = await signAccessToken(key, {
      iss: ISSUER, aud: ORDERS, sub: CHECKOUT, scope: 'orders:read', certThumbprint: checkout.thumbprint,
      iat: Math.floor(Date.now() / 1000) - 600, ttl: 300,
    });
    const asCheckout = { principal: CHECKOUT, certificatePem: checkout.certPem };
    const asStranger = { principal: STRANGER, certificatePem: stranger.certPem };
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

    print(`hopguard demo: a sidecar for ${ORDERS}`);
    print(`trusting ${ISSUER}; tokens are bound to checkout's certificate (RFC 8705)`);
    print('');
    const cases: [string, CheckInput][] = [
      ['checkout reads an order with its token', { path: '/orders/42', headers: bearer(forOrders), ...asCheckout }],
      ['the same token, a forged identity header', { path: '/orders/42', headers: { ...bearer(forOrders), 'x-hopguard-subject': 'admin' }, ...asCheckout }],
      ['a token meant for payments', { path: '/orders/42', headers: bearer(forPayments), ...asCheckout }],
      ['checkout\'s token replayed by another workload', { path: '/orders/42', headers: bearer(forOrders), ...asStranger }],
      ['checkout\'s token without a client certificate', { path: '/orders/42', headers: bearer(forOrders) }],
      ['an expired token', { path: '/orders/42', headers: bearer(expired), ...asCheckout }],
      ['no token at all', { path: '/orders/42', ...asCheckout }],
      ['a one-time payment, first use', { method: 'POST', path: '/orders/pay', headers: bearer(forOrders), ...asCheckout }],
      ['the same payment token again', { method: 'POST', path: '/orders/pay', headers: bearer(forOrders), ...asCheckout }],
      ['a path that tries to dodge the route', { path: '/orders/../admin', headers: bearer(forOrders), ...asCheckout }],
      ['the public health route', { path: '/healthz' }],
    ];
    for (const [what, input] of cases) print(describe(what, input, await envoy.check(input)));
    print('');
    print('Allowed requests reach the app with x-hopguard-* identity headers set (client copies overwritten)');
    print('and the token removed; denials carry an explicit status, WWW-Authenticate and a JSON body.');
    envoy.close();
    await authz.stop();
    return 0;
  } finally {
    mesh.cleanup();
  }
}

function describe(what: string, input: CheckInput, out: CheckOutput): string {
  const request = `${(input.method ?? 'GET').padEnd(4)} ${input.path}`.padEnd(22);
  const verdict = out.allowed
    ? `ALLOW     sub=${out.headers['x-hopguard-subject'] ?? '-'}${out.headersToRemove.length ? ` (removed: ${out.headersToRemove.join(', ')})` : ''}`
    : `DENY ${out.httpStatus} ${out.body?.code}`;
  return `  ${what.padEnd(48)} ${request} ${verdict}`;
}

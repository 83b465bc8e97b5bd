import path from 'node:path';
import { startAuthz, type RunningAuthz } from '../authz/authz-service.js';
import { EnvoyClient, upstreamHeaders, type CheckInput, type CheckOutput } from '../authz/envoy-client.js';
import { parseAuthzConfig } from '../config/load-authz-config.js';
import { parseIssuerConfig } from '../config/load-issuer-config.js';
import { issueCert, type IssuedCert } from '../devkit/pki.js';
import { createTrustDomain } from '../devkit/trust-domain.js';
import { startIssuer } from '../issuer/issuer-service.js';
import { MemoryStore } from '../store/memory-store.js';
import { silentLogger } from '../telemetry/log.js';
import { decodeCompactJws } from '../token/compact-jws.js';
import { messageDigest } from '../vocabulary/message-token.js';
import { postForm } from './https-form.js';

const ISSUER = 'https://sts.demo.local';
const ID = {
  frontend: 'spiffe://demo.local/ns/shop/sa/frontend',
  orders: 'spiffe://demo.local/ns/shop/sa/orders',
  payments: 'spiffe://demo.local/ns/shop/sa/payments',
  fulfilment: 'spiffe://demo.local/ns/shop/sa/fulfilment',
  stranger: 'spiffe://demo.local/ns/shop/sa/stranger',
} as const;
type Workload = keyof typeof ID;
const HOST = { orders: 'orders.shop.svc.cluster.local', payments: 'payments.shop.svc.cluster.local' } as const;
const HANDLE = 'x-hopguard-handle';
/** The queue orders publishes jobs to and fulfilment consumes. */
const FULFIL = 'shop.fulfilment';
/** Three base64url segments, as a compact JWS is, anywhere in a header value. */
const JWT_SHAPE = /[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}/;

// The embedded defaults: one issuer, a sidecar in front of orders, one in front of payments, one beside fulfilment.
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
    scopes: [orders:read, payments:write, fulfilment:write]
  - id: ${ID.orders}
    grants: [token_exchange]
    audiences: [${ID.payments}]
    message_audiences: [${ID.fulfilment}]
    scopes: [payments:write, fulfilment:write]
`;

const SIDECAR_CONFIG = (audience: string, jwksUri: string, ca: string, routes: string) => `
listen: 127.0.0.1:0
admin: off
audience: ${audience}
issuers:
  - { issuer: ${ISSUER}, jwks_uri: ${jwksUri}, jwks_ca_file: ${ca}, algorithms: [ES256] }
routes:
${routes}`;

/** Each sidecar's egress: tokens from the issuer, bound to its workload's certificate, for the one service it calls. */
const EGRESS_CONFIG = (tokenEndpoint: string, ca: string, workload: IssuedCert, host: string, audience: string, scopes: string) => `
issuer_client: { token_endpoint: ${tokenEndpoint}, ca_file: ${ca}, cert_file: ${workload.certPath}, key_file: ${workload.keyPath} }
egress:
  listen: 127.0.0.1:0
  destinations:
    - { host: ${host}, audience: ${audience}, scopes: [${scopes}] }
`;

/** orders seals jobs for fulfilment on behalf of the request it serves; fulfilment's sidecar checks them. */
const MESSAGES_OUT = `
messages:
  listen: 127.0.0.1:0
  outgoing:
    - { destination: ${FULFIL}, audience: ${ID.fulfilment}, scopes: [fulfilment:write], max_delay: 15m }
`;
const MESSAGES_IN = `
messages:
  listen: 127.0.0.1:0
  incoming:
    - { destination: ${FULFIL}, scopes: [fulfilment:write] }
`;

/**
 * `hopguard demo`: the main job end to end on embedded defaults, no Redis, no broker. It makes a
 * mesh CA and workload certificates, starts the issuer (HTTPS, mTLS) and a sidecar for orders,
 * for payments and for fulfilment, then walks a token along the chain: issue → call → exchange → next hop → revoke,
 * sending each sidecar the CheckRequests Envoy would send; then egress, and a job through a
 * queue (sealed at orders' messages API, checked at fulfilment's).
 */
export async function runDemo(print: (line: string) => void): Promise<number> {
  const mesh = await createTrustDomain('demo', ID);
  const store = new MemoryStore();
  const running: { stop(): Promise<void> }[] = [];
  try {
    const server = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
    const issuer = await startIssuer(parseIssuerConfig(ISSUER_CONFIG(mesh.dir, server, mesh.ca.certPath), { baseDir: mesh.dir }), { log: silentLogger, store });
    running.push(issuer);
    const sidecar = async (audience: string, routes: string, extra: string) => {
      const config = parseAuthzConfig(SIDECAR_CONFIG(audience, `${issuer.url}/.well-known/jwks.json`, mesh.ca.certPath, routes) + extra, { baseDir: mesh.dir });
      const authz: RunningAuthz = await startAuthz(config, { log: silentLogger, store });
      const inbound = new EnvoyClient(authz.grpcAddress);
      const outbound = authz.egressAddress === undefined ? undefined : new EnvoyClient(authz.egressAddress);
      running.push({ stop: async () => { inbound.close(); outbound?.close(); await authz.stop(); } });
      return { inbound, outbound, messages: authz.messagesAddress };
    };
    const egress = (who: Workload, host: string, audience: string, scopes: string) =>
      EGRESS_CONFIG(`${issuer.url}/token`, mesh.ca.certPath, mesh.workloads[who], host, audience, scopes);
    // orders calls payments; payments calls orders back (its egress is where a stolen handle is tried).
    const orderSidecar = await sidecar(ID.orders, '  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }\n',
      egress('orders', HOST.payments, ID.payments, 'payments:write') + MESSAGES_OUT);
    const paymentSidecar = await sidecar(ID.payments,
      `  - { name: pay, methods: [POST], path: /payments, scopes: [payments:write], callers: [${ID.orders}], one_time: true }\n`,
      egress('payments', HOST.orders, ID.orders, 'orders:read'));
    const fulfilmentSidecar = await sidecar(ID.fulfilment, '  - { name: health, methods: [GET], path: /healthz }\n', MESSAGES_IN);
    const [orders, payments] = [orderSidecar.inbound, paymentSidecar.inbound];

    const askIssuer = (who: Workload, endpoint: string, form: Record<string, string>) =>
      postForm(`${issuer.url}${endpoint}`, form, { ca: mesh.ca.certPem, cert: mesh.workloads[who].certPem, key: mesh.workloads[who].keyPem });
    const check = (envoy: EnvoyClient, who: Workload, input: CheckInput) =>
      envoy.check({ principal: ID[who], certificatePem: mesh.workloads[who].certPem, ...input });
    const call = async (what: string, envoy: EnvoyClient, who: Workload, input: CheckInput) =>
      print(describe(what, input, await check(envoy, who, input)));
    // What Envoy's outbound listener sends: the application's request, no peer certificate.
    const callOut = async (what: string, envoy: EnvoyClient, request: { method: string; path: string; host: string }, handle: string) => {
      const input = { ...request, headers: { [HANDLE]: handle } };
      const out = await envoy.check(input);
      print(describe(what, input, out));
      return out;
    };
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

    print('hopguard demo: an issuer, a sidecar in front of orders and of payments, and one beside fulfilment (no Redis, no broker)');
    print('');
    const forOrders = await askIssuer('frontend', '/token', { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write' });
    print(`1. frontend asks the issuer for a token to call orders: ${forOrders.status === 200 ? `ok, ${forOrders.body.expires_in}s, bound to frontend's certificate` : forOrders.body.error}`);
    const leaked = String(forOrders.body.access_token);
    await call('frontend calls orders', orders, 'frontend', { path: '/orders/42', headers: bearer(leaked) });
    await call('another workload replays that token', orders, 'stranger', { path: '/orders/42', headers: bearer(leaked) });
    // A validly signed token shown with another certificate has leaked: the sidecar revoked it (leaks: revoke).
    await call('frontend, after that leak', orders, 'frontend', { path: '/orders/42', headers: bearer(leaked) });
    const renewed = await askIssuer('frontend', '/token', { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write' });
    print(`   frontend asks for a new token: ${renewed.status === 200 ? 'ok' : renewed.body.error}`);
    const t1 = String(renewed.body.access_token);
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

    print('4. egress: orders\' application gets a handle, its sidecar exchanges it on the way out');
    const t3 = String((await askIssuer('frontend', '/token', { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write fulfilment:write' })).body.access_token);
    const sent = { authorization: `Bearer ${t3}`, 'x-request-id': 'demo-4' };
    const inbound = await check(orders, 'frontend', { path: '/orders/42', headers: sent });
    print(describe('frontend calls orders with a new token', { path: '/orders/42' }, inbound));
    const received = upstreamHeaders(sent, inbound);
    const handle = received[HANDLE] ?? '';
    const tokens = Object.values(received).filter((value) => JWT_SHAPE.test(value)).length;
    print(`   orders' app logs its request headers     ${HANDLE}: ${handle.slice(0, 12)}… (${handle.length} chars); ${tokens === 0 ? 'no token in any header' : `${tokens} header(s) with a token`}`);
    const out = await callOut('orders\' app calls payments (handle only)', orderSidecar.outbound!, { method: 'POST', path: '/payments', host: HOST.payments }, handle);
    const forwarded = out.headers.authorization?.replace(/^Bearer /, '') ?? '';
    if (forwarded) await call('payments\' sidecar checks that token', payments, 'orders', { method: 'POST', path: '/payments', headers: bearer(forwarded) });
    await callOut('the stolen handle at payments\' egress', paymentSidecar.outbound!, { method: 'GET', path: '/orders/42', host: HOST.orders }, handle);
    await call('the stolen handle as a bearer token', payments, 'orders', { method: 'POST', path: '/payments', headers: bearer(handle) });

    print('5. messages: orders\' app seals a job for fulfilment with that handle; fulfilment\'s sidecar checks it');
    const job = '{"order":42,"ship":"express"}';
    const seal = await postJson(orderSidecar.messages!, '/v1/messages/seal', { destination: FULFIL, digest: messageDigest(job) }, { [HANDLE]: handle });
    print(`   ${'orders\' app seals the job (handle only)'.padEnd(40)} ${`seal  ${FULFIL}`.padEnd(22)} ${seal.status === 200
      ? `ok, ${seal.body.expires_in}s, for fulfilment, bound to this body` : `${seal.status} ${seal.body.code}`}`);
    const sealed = String(seal.body.token);
    const consume = async (what: string, body: string, redelivered = false) => {
      const reply = await postJson(fulfilmentSidecar.messages!, '/v1/messages/check', { token: sealed, destination: FULFIL, digest: messageDigest(body), redelivered });
      const verdict = reply.body.decision === 'allow'
        ? `ALLOW     subject: ${reply.body.subject} (act: ${reply.body.act?.sub})${reply.body.redelivered ? ', redelivered' : ''}`
        : `DENY ${reply.status} ${reply.body.code}`;
      print(`   ${what.padEnd(40)} ${`check ${FULFIL}`.padEnd(22)} ${verdict}`);
    };
    await consume('fulfilment\'s sidecar checks the job', job);
    await consume('the same job published again', job);
    await consume('its token on another body', '{"order":42,"ship":"to the attacker"}');
    await consume('the broker redelivers the job (no ack)', job, true);
    print('');
    print('Allowed requests reach the app with x-hopguard-* identity headers (client copies overwritten)');
    print('and the token removed; denials carry an explicit status, WWW-Authenticate and a JSON body.');
    print('With egress the app holds only a handle, good at its own sidecar until the token expires.');
    print('A job on a queue carries its own token: for one consumer, this body, accepted once.');
    return 0;
  } finally {
    for (const r of running.reverse()) await r.stop();
    await store.close();
    mesh.cleanup();
  }
}

/** One JSON POST to a sidecar's loopback messages API. */
async function postJson(address: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://${address}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

function describe(what: string, input: CheckInput, out: CheckOutput): string {
  const request = `${(input.method ?? 'GET').padEnd(4)} ${input.path}`.padEnd(22);
  const verdict = out.allowed ? `ALLOW     ${allowed(out)}` : `DENY ${out.httpStatus} ${out.body?.code}`;
  return `   ${what.padEnd(40)} ${request} ${verdict}`;
}

/** An inbound allow: who the app is told called; an outbound one: whom the token it carries is for. */
function allowed(out: CheckOutput): string {
  const bearer = out.headers.authorization?.replace(/^Bearer /, '');
  if (bearer) {
    const { aud, sub, act } = decodeCompactJws(bearer).payload as { aud?: string; sub?: string; act?: { sub?: string } };
    return `authorization: Bearer (aud: ${aud}, sub: ${sub}, act: ${act?.sub})`;
  }
  const actor = out.raw.dynamic_metadata?.fields?.act?.structValue?.fields?.sub?.stringValue;
  return `x-hopguard-subject: ${out.headers['x-hopguard-subject']}${actor ? ` (act: ${actor})` : ''}`;
}

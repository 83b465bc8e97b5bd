import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthz, type RunningAuthz } from '../src/authz/authz-service.js';
import { EnvoyClient } from '../src/authz/envoy-client.js';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { ConfigError } from '../src/schema/config-error.js';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { parseXfcc } from '../src/issuer/xfcc.js';
import { silentLogger } from '../src/telemetry/log.js';
import { claimsOf, type IssuerReply } from './support/issuer-client.js';

/**
 * client_auth: xfcc, the issuer behind its own Istio sidecar: plain HTTP from its proxy, the
 * client's certificate in x-forwarded-client-cert. No Envoy runs here: the requests carry XFCC
 * values as Envoy writes them, sent from a trusted proxy address (127.0.0.1) and from one that
 * is not (127.0.0.2, a second loopback address standing in for a pod on the network).
 */

const ISS = 'https://sts.test.local';
const ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
} as const;

let mesh: TrustDomain<keyof typeof ID>;
let issuer: RunningIssuer;
let orders: { authz: RunningAuthz; envoy: EnvoyClient };

/** Envoy's Hash: hex SHA-256 of the leaf's DER. */
const hashOf = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
/** An XFCC element as Istio's inbound sidecar writes it (By is the issuer's own identity). */
const element = (who: keyof typeof ID, extra = '') =>
  `By=spiffe://test.local/ns/hopguard-system/sa/hopguard-issuer;Hash=${hashOf(mesh.workloads[who].certPem)};Subject="";URI=${ID[who]}${extra}`;

function post(pathname: string, form: Record<string, string>, { xfcc, from = '127.0.0.1' }: { xfcc?: string; from?: string }): Promise<IssuerReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${issuer.url}${pathname}`, {
      method: 'POST',
      localAddress: from,
      agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(xfcc !== undefined && { 'x-forwarded-client-cert': xfcc }) },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(new URLSearchParams(form).toString());
  });
}
const clientCredentials = (xfcc: string | undefined, from?: string) =>
  post('/token', { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' }, { ...(xfcc !== undefined && { xfcc }), ...(from && { from }) });

/** A config reader's problems with a YAML text, as "path: message"; none when it loads. */
const problemsOf = (parse: (yaml: string, opts: { baseDir: string }) => unknown) => (yaml: string): string[] => {
  try {
    parse(yaml, { baseDir: '/' });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
};

beforeAll(async () => {
  mesh = await createTrustDomain('xfcc', ID);
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
client_auth: xfcc
keys: { dir: ${path.join(mesh.dir, 'keys')}, publish_ahead: 2s }
clients:
  - id: ${ID.frontend}
    grants: [client_credentials]
    audiences: [${ID.orders}]
    scopes: [orders:read]
`, { baseDir: mesh.dir }), { log: silentLogger });
  const authz = await startAuthz(parseAuthzConfig(`
listen: 127.0.0.1:0
admin: off
audience: ${ID.orders}
binding: mtls
issuers:
  - issuer: ${ISS}
    jwks_uri: ${issuer.url}/.well-known/jwks.json
    algorithms: [ES256]
store: memory
routes:
  - { name: read, methods: [GET], path_prefix: /orders/, scopes: [orders:read], callers: [${ID.frontend}] }
`, { baseDir: mesh.dir }), { log: silentLogger });
  orders = { authz, envoy: new EnvoyClient(authz.grpcAddress) };
}, 60_000);

afterAll(async () => {
  orders?.envoy.close();
  await orders?.authz.stop();
  await issuer?.stop();
  mesh?.cleanup();
});

describe('issuer client_auth: xfcc', () => {
  it('serves plain HTTP without tls, and issues a token bound to the Hash\'s certificate to the URI\'s client', async () => {
    expect(issuer.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const reply = await clientCredentials(element('frontend'));
    expect(reply.status).toBe(200);
    const claims = claimsOf(reply.body.access_token);
    expect(claims).toMatchObject({ sub: ID.frontend, client_id: ID.frontend, aud: ID.orders, cnf: { 'x5t#S256': mesh.workloads.frontend.thumbprint } });
  });

  it('a token issued through xfcc is allowed at a sidecar that sees the same certificate, and refused with another', async () => {
    const { access_token: token } = (await clientCredentials(element('frontend'))).body;
    const check = (certificatePem: string) => orders.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: ID.frontend, certificatePem });
    expect((await check(mesh.workloads.frontend.certPem)).allowed).toBe(true);
    const other = await check(mesh.workloads.orders.certPem);
    expect({ allowed: other.allowed, code: other.body?.code }).toEqual({ allowed: false, code: 'binding_mismatch' });
  });

  it('takes the thumbprint from Cert (URL-encoded PEM) when there is no Hash, and accepts Hash and Cert that agree', async () => {
    const cert = encodeURIComponent(mesh.workloads.frontend.certPem);
    for (const xfcc of [`By=x;Cert="${cert}";URI=${ID.frontend}`, `${element('frontend')};Cert="${cert}"`, `Cert=${cert}`]) {
      const reply = await clientCredentials(xfcc);
      expect(reply.status, xfcc.slice(0, 60)).toBe(200);
      expect(claimsOf(reply.body.access_token).cnf).toEqual({ 'x5t#S256': mesh.workloads.frontend.thumbprint });
    }
  });

  it('with several elements, the last one is the caller: the one the issuer\'s own Envoy appended', async () => {
    // APPEND_FORWARD: whatever the client sent comes first, the proxy's element last.
    const forgedFirst = `${element('frontend')},${element('orders')}`;
    expect((await clientCredentials(forgedFirst)).body).toEqual({ error: 'invalid_client', error_description: 'the forwarded client certificate does not name exactly one registered client' });
    const reply = await clientCredentials(`${element('orders')}, ${element('frontend')}`);
    expect(reply.status).toBe(200);
    expect(claimsOf(reply.body.access_token)).toMatchObject({ sub: ID.frontend, cnf: { 'x5t#S256': mesh.workloads.frontend.thumbprint } });
  });

  it('refuses XFCC from an address outside trusted_proxies: a pod reaching the issuer past its proxy forges nothing', async () => {
    const reply = await clientCredentials(element('frontend'), '127.0.0.2');
    expect(reply.status).toBe(401);
    expect(reply.body).toEqual({
      error: 'invalid_client',
      error_description: 'x-forwarded-client-cert is trusted only from the issuer\'s own proxy (trusted_proxies): this connection does not come from it',
    });
    expect((await post('/revoke', { token: 'x' }, { xfcc: element('frontend'), from: '127.0.0.2' })).status).toBe(401);
  });

  it('refuses a request without XFCC, even from the proxy', async () => {
    const reply = await clientCredentials(undefined);
    expect({ status: reply.status, error: reply.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    expect(reply.body.error_description).toMatch(/^no x-forwarded-client-cert/);
  });

  it('refuses an element whose Hash and Cert are of different certificates', async () => {
    const reply = await clientCredentials(`${element('frontend')};Cert="${encodeURIComponent(mesh.workloads.orders.certPem)}"`);
    expect(reply.body).toEqual({ error: 'invalid_client', error_description: 'the x-forwarded-client-cert Hash and Cert are of different certificates' });
    const uriElsewhere = await clientCredentials(`Cert="${encodeURIComponent(mesh.workloads.orders.certPem)}";URI=${ID.frontend}`);
    expect(uriElsewhere.body).toEqual({ error: 'invalid_client', error_description: 'the x-forwarded-client-cert URI is not the Cert\'s' });
  });

  it.each([
    ['an empty element', `,${'x'}`],
    ['a pair without "="', 'Hash'],
    ['an unknown key', 'Hash=ab;Token=x'],
    ['Hash twice', `Hash=${'a'.repeat(64)};Hash=${'b'.repeat(64)};URI=${'spiffe://test.local/ns/shop/sa/frontend'}`],
    ['an unterminated quote', 'Subject="CN=x;URI=y'],
    ['a trailing ";"', `Hash=${'a'.repeat(64)};`],
    ['a Hash that is not hex SHA-256', `Hash=abc;URI=spiffe://test.local/ns/shop/sa/frontend`],
    ['a Cert that is not a certificate', 'Cert="-----BEGIN%20CERTIFICATE-----%0Axx"'],
    ['neither Hash nor Cert', 'By=x;URI=spiffe://test.local/ns/shop/sa/frontend'],
  ])('refuses a malformed XFCC: %s', async (_, xfcc) => {
    const reply = await clientCredentials(xfcc);
    expect({ status: reply.status, error: reply.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    expect(reply.body.error_description).not.toContain('Token=x');
  });
});

describe('a sidecar behind Istio: issuer_client transport mesh, jwks_transport mesh', () => {
  /**
   * Stands in for the two Istio proxies between a sidecar and the issuer: it takes the sidecar's
   * plain HTTP (as its pod's outbound proxy would), and hands it to the issuer from a trusted
   * address with the XFCC element the issuer's inbound proxy writes for the certificate the
   * client's proxy presented: the one in the files Istio's agent writes (OUTPUT_CERTS), read
   * at each request as Envoy presents its current SDS certificate.
   */
  async function meshProxy(certPath: string, uri: string) {
    const target = new URL(issuer.url);
    const server = http.createServer((req, res) => {
      const upstream = http.request({
        host: target.hostname, port: target.port, path: req.url, method: req.method, localAddress: '127.0.0.1', agent: false,
        headers: { ...req.headers, 'x-forwarded-client-cert': `By=spiffe://test.local/ns/hopguard-system/sa/hopguard-issuer;Hash=${hashOf(readFileSync(certPath, 'utf8'))};URI=${uri}` },
      }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  it('gets tokens over plain HTTP through the mesh, bound to the certificate the proxy presents, verified at the callee; after Istio rotates it, bound to the new one', async () => {
    const files = { certPath: path.join(mesh.dir, 'istio-cert-chain.pem'), keyPath: path.join(mesh.dir, 'istio-key.pem') };
    writeFileSync(files.certPath, mesh.workloads.frontend.certPem);
    writeFileSync(files.keyPath, mesh.workloads.frontend.keyPem);
    const proxy = await meshProxy(files.certPath, ID.frontend);
    const frontend = await startAuthz(parseAuthzConfig(`
listen: 127.0.0.1:0
admin: off
audience: ${ID.frontend}
issuers:
  - issuer: ${ISS}
    jwks_uri: ${proxy.url}/.well-known/jwks.json
    jwks_transport: mesh
    algorithms: [ES256]
store: memory
routes: [{ name: read, methods: [GET], path_prefix: /x/ }]
issuer_client:
  token_endpoint: ${proxy.url}/token
  transport: mesh
  cert_file: ${files.certPath}
  key_file: ${files.keyPath}
  timeout: 1s
egress:
  listen: 127.0.0.1:0
  destinations:
    - { host: orders.shop.svc.cluster.local, audience: ${ID.orders}, scopes: [orders:read], without_handle: client_credentials }
`, { baseDir: mesh.dir }), { log: silentLogger });
    const outbound = new EnvoyClient(frontend.egressAddress!);
    try {
      const tokenOut = async () => {
        const out = await outbound.check({ path: '/orders/1', host: 'orders.shop.svc.cluster.local:8080', headers: {} });
        expect(out.allowed).toBe(true);
        return out.headers.authorization!.replace(/^Bearer /, '');
      };
      const first = await tokenOut();
      expect(claimsOf(first).cnf).toEqual({ 'x5t#S256': mesh.workloads.frontend.thumbprint });
      const atOrders = (token: string, certificatePem: string) =>
        orders.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: ID.frontend, certificatePem });
      expect((await atOrders(first, mesh.workloads.frontend.certPem)).allowed).toBe(true);

      // Istio's agent writes the renewed certificate; Envoy presents it from then on.
      const renewed = issueCert(mesh.ca, mesh.dir, { name: 'frontend-renewed', uriSan: ID.frontend, clientAuth: true, serverAuth: true });
      writeFileSync(files.keyPath, renewed.keyPem);
      writeFileSync(files.certPath, renewed.certPem);
      const deadline = Date.now() + 10_000;
      let token = await tokenOut();
      while (claimsOf(token).cnf['x5t#S256'] !== renewed.thumbprint && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        token = await tokenOut();
      }
      expect(claimsOf(token).cnf).toEqual({ 'x5t#S256': renewed.thumbprint });
      expect((await atOrders(token, renewed.certPem)).allowed).toBe(true);
      // The token cached for the old certificate is no longer handed out, and is refused with the new one.
      expect((await atOrders(first, renewed.certPem)).body?.code).toBe('binding_mismatch');
    } finally {
      outbound.close();
      await frontend.stop();
      await proxy.close();
    }
  }, 30_000);

  it('transport mesh is plain HTTP only, without a CA; tls stays https with one; jwks_transport mesh likewise', () => {
    const authz = (issuerClient: string, jwks = `jwks_uri: https://sts.test.local/jwks\n    jwks_ca_file: ca.pem`) => `listen: 127.0.0.1:0
audience: ${ID.orders}
issuers:
  - issuer: ${ISS}
    ${jwks}
    algorithms: [ES256]
routes: [{ name: read, methods: [GET], path_prefix: /x/ }]
issuer_client:
  ${issuerClient}
  cert_file: c.pem
  key_file: k.pem
`;
    const problems = problemsOf(parseAuthzConfig);
    expect(parseAuthzConfig(authz('token_endpoint: http://hopguard-issuer.hopguard-system.svc:8080/token\n  transport: mesh',
      'jwks_uri: http://hopguard-issuer.hopguard-system.svc:8080/.well-known/jwks.json\n    jwks_transport: mesh'), { baseDir: '/' }).issuerClient)
      .toMatchObject({ transport: 'mesh', tokenEndpoint: 'http://hopguard-issuer.hopguard-system.svc:8080/token' });
    expect(problems(authz('token_endpoint: http://sts/token\n  ca_file: ca.pem'))).toEqual([
      'issuer_client.token_endpoint: expected an https URL: the issuer client authenticates with its certificate over TLS (http only with transport: mesh)',
    ]);
    expect(problems(authz('token_endpoint: https://sts/token'))).toEqual(['issuer_client.ca_file: is required']);
    expect(problems(authz('token_endpoint: https://sts/token\n  transport: mesh\n  ca_file: ca.pem'))).toEqual([
      'issuer_client.token_endpoint: expected an http URL with transport: mesh: the pod\'s mesh proxy does the mTLS',
      'issuer_client.ca_file: is not used with transport: mesh: the mesh proxy verifies the issuer',
    ]);
    expect(problems(authz('token_endpoint: https://sts/token\n  ca_file: ca.pem', 'jwks_uri: http://sts/jwks'))).toEqual([
      'issuers[0].jwks_uri: expected an https URL; http is allowed only for a loopback host (127.0.0.1, [::1], localhost)',
    ]);
    expect(problems(authz('token_endpoint: https://sts/token\n  ca_file: ca.pem', 'jwks_uri: https://sts/jwks\n    jwks_transport: mesh\n    jwks_ca_file: ca.pem'))).toEqual([
      'issuers[0].jwks_uri: expected an http URL with jwks_transport: mesh: the pod\'s mesh proxy does the TLS',
      'issuers[0].jwks_ca_file: is not used with jwks_transport: mesh',
    ]);
  });
});

describe('parseXfcc: Envoy\'s format', () => {
  it('reads quoted values with escaped quotes, ";" pairs, "," elements, and repeated URI and DNS', () => {
    expect(parseXfcc('By=spiffe://a;Hash=00ff;Subject="CN=a \\"b\\", O=c;d";URI=spiffe://x;URI=spiffe://y;DNS=a.example,URI=spiffe://z')).toEqual([
      { by: 'spiffe://a', hash: '00ff', subject: 'CN=a "b", O=c;d', uris: ['spiffe://x', 'spiffe://y'], dns: ['a.example'] },
      { uris: ['spiffe://z'], dns: [] },
    ]);
  });

  it.each(['', 'URI', 'URI=a=b', 'Hash=1;;URI=a', 'Subject="a"b', 'Subject="a\\x"', 'URI=a,', 'Hash=1;Hash=2'])('refuses %j', (header) => {
    expect(() => parseXfcc(header)).toThrow(/^malformed x-forwarded-client-cert: /);
  });
});

describe('issuer config: client_auth', () => {
  const base = (extra: string) => `listen: 127.0.0.1:0\nissuer: ${ISS}\nkeys: { dir: keys }\nclients: [{ id: spiffe://a, grants: [client_credentials] }]\n${extra}`;
  const problems = problemsOf(parseIssuerConfig);

  it('xfcc trusts Istio\'s inbound proxy address and loopback by default, and takes its own list', () => {
    expect(parseIssuerConfig(base('client_auth: xfcc'), { baseDir: '/' }).clientAuth).toEqual({
      mode: 'xfcc', trustedProxies: [{ address: '127.0.0.6', prefix: 32, family: 'ipv4' }, { address: '127.0.0.1', prefix: 32, family: 'ipv4' }],
    });
    expect(parseIssuerConfig(base('client_auth: xfcc\ntrusted_proxies: [10.0.0.0/8, "::1"]'), { baseDir: '/' }).clientAuth).toEqual({
      mode: 'xfcc', trustedProxies: [{ address: '10.0.0.0', prefix: 8, family: 'ipv4' }, { address: '::1', prefix: 128, family: 'ipv6' }],
    });
    expect(parseIssuerConfig(base('tls: { cert: s.pem, key: k.pem, client_ca: ca.pem }'), { baseDir: '/' }).clientAuth).toEqual({ mode: 'tls', clientCaFile: '/ca.pem' });
  });

  it('refuses what a mode lacks or does not use, naming the key', () => {
    expect(problems(base(''))).toEqual(['tls: is required with client_auth: tls (cert, key and client_ca)']);
    expect(problems(base('tls: { cert: s.pem, key: k.pem }'))).toEqual(['tls.client_ca: is required with client_auth: tls']);
    expect(problems(base('tls: { cert: s.pem, key: k.pem, client_ca: ca.pem }\ntrusted_proxies: [127.0.0.6/32]'))).toEqual(['trusted_proxies: applies only with client_auth: xfcc']);
    expect(problems(base('client_auth: xfcc\ntls: { cert: s.pem, key: k.pem, client_ca: ca.pem }'))).toEqual(['tls.client_ca: is not used with client_auth: xfcc: the issuer\'s proxy verifies client certificates']);
    expect(problems(base('client_auth: xfcc\ntrusted_proxies: []'))).toEqual(['trusted_proxies: expected at least one address block']);
    expect(problems(base('client_auth: mtls\ntls: { cert: s.pem, key: k.pem, client_ca: ca.pem }'))).toEqual(['client_auth: expected tls or xfcc']);
    for (const bad of ['127.0.0.6/33', '127.0.0/8', 'localhost', '::1/129', '1.2.3.4/8/1']) {
      expect(problems(base(`client_auth: xfcc\ntrusted_proxies: ["${bad}"]`)), bad).toEqual(["trusted_proxies[0]: expected an address block such as 127.0.0.6/32"]);
    }
  });
});

import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AUDIT_DEFAULTS } from '../../src/audit/audit-config.js';
import { startAuthz, type RunningAuthz } from '../../src/authz/authz-service.js';
import { EnvoyClient } from '../../src/authz/envoy-client.js';
import type { AuthzConfig } from '../../src/config/authz-config.js';
import type { Ca, IssuedCert } from '../../src/devkit/pki.js';
import { signAccessToken, type AccessTokenInput, type SigningKey } from '../../src/devkit/signing-key.js';
import { createTrustDomain } from '../../src/devkit/trust-domain.js';
import type { Store } from '../../src/store/store.js';
import { silentLogger, type Logger } from '../../src/telemetry/log.js';
import { TELEMETRY_DEFAULTS } from '../../src/telemetry/telemetry-config.js';
import type { RouteConfig } from '../../src/vocabulary/route.js';

export const ISSUER = 'https://sts.test.local';
export const AUDIENCE = 'spiffe://test.local/ns/shop/sa/orders';
export const CHECKOUT = 'spiffe://test.local/ns/shop/sa/checkout';
export const STRANGER = 'spiffe://test.local/ns/shop/sa/stranger';

export function route(name: string, fields: Partial<RouteConfig>): RouteConfig {
  return { name, methods: [], scopes: [], callers: [], public: false, oneTime: false, forwardToken: false, ...fields };
}

export const DEFAULT_ROUTES: RouteConfig[] = [
  route('create-payment', { methods: ['POST'], path: '/payments', scopes: ['payments:write'], callers: [CHECKOUT], oneTime: true }),
  route('read-orders', { methods: ['GET'], pathPrefix: '/orders/', scopes: ['orders:read'] }),
  route('exchange', { methods: ['POST'], path: '/exchange', forwardToken: true }),
  route('health', { path: '/healthz', public: true }),
];

/** Keys, certificates and a JWKS file in a fresh temp dir: everything a test needs, made by the test. */
export interface Fixtures {
  dir: string;
  ca: Ca;
  checkout: IssuedCert;
  stranger: IssuedCert;
  key: SigningKey;
  jwksPath: string;
  /** A token for AUDIENCE from checkout, bound to checkout's certificate, with every scope the routes use. */
  token(overrides?: Partial<AccessTokenInput>, key?: SigningKey): Promise<string>;
  cleanup(): void;
}

export async function createFixtures(): Promise<Fixtures> {
  const mesh = await createTrustDomain('test', { checkout: CHECKOUT, stranger: STRANGER });
  const { dir, ca, key, jwksPath, workloads: { checkout, stranger } } = mesh;
  return {
    dir, ca, checkout, stranger, key, jwksPath,
    token: (overrides = {}, signWith = key) => signAccessToken(signWith, {
      iss: ISSUER,
      aud: AUDIENCE,
      sub: CHECKOUT,
      scope: 'orders:read payments:write',
      certThumbprint: checkout.thumbprint,
      ...overrides,
    }),
    cleanup: mesh.cleanup,
  };
}

export function authzConfig(fixtures: Fixtures, overrides: Partial<AuthzConfig> = {}): AuthzConfig {
  return {
    listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    audience: AUDIENCE,
    issuers: [{ issuer: ISSUER, jwksFile: fixtures.jwksPath, algorithms: ['ES256'], maxTtlMs: 600_000 }],
    clockSkewMs: 30_000,
    binding: 'mtls',
    dpop: { algorithms: ['ES256', 'EdDSA', 'RS256', 'PS256'], maxAgeMs: 60_000 },
    store: 'memory',
    routes: DEFAULT_ROUTES,
    data: {},
    jwks: { refreshIntervalMs: 300_000, refetchIntervalMs: 30_000, fetchTimeoutMs: 2_000, checkWaitMs: 250 },
    cache: { maxEntries: 1000 },
    redis: { keyPrefix: 'hopguard-test:', commandTimeoutMs: 250, maxStalenessMs: 30_000, resyncIntervalMs: 10_000 },
    memory: { maxOneTimeEntries: 100_000 },
    shutdownGraceMs: 5_000,
    telemetry: TELEMETRY_DEFAULTS,
    audit: AUDIT_DEFAULTS,
    ...overrides,
  };
}

/** The routes section of an authz YAML file: one route, GET /orders/* with orders:read. */
export const READ_ORDERS_ROUTES_YAML = `
routes:
  - name: read-orders
    methods: [GET]
    path_prefix: /orders/
    scopes: [orders:read]
`;

/** The routes section of an authz YAML file: one one-time route, POST /payments. */
export const ONE_TIME_PAY_ROUTES_YAML = `routes:
  - name: pay
    methods: [POST]
    path: /payments
    one_time: true
`;

/** Writes a config file into the fixtures' dir; returns its path. */
export function writeConfigFile(fixtures: Fixtures, name: string, body: string): string {
  const file = path.join(fixtures.dir, name);
  writeFileSync(file, body);
  return file;
}

/** A JWKS endpoint on loopback that counts requests and can be told to answer slowly. */
export async function jwksServer(keys: () => SigningKey[]) {
  const state = { requests: 0, delayMs: 0 };
  const server = http.createServer((_req, res) => {
    state.requests++;
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: keys().map((k) => k.publicJwk) }));
    }, state.delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return { state, url: `http://127.0.0.1:${port}/jwks.json`, close: () => server.close() };
}

/**
 * The start of an authz YAML file for tests that run hopguard as a process: loopback
 * listeners, this audience, the fixtures' issuer. Callers append their own sections.
 */
export function authzYaml(fixtures: Fixtures, { listen = '127.0.0.1:0', jwks = `jwks_file: ${fixtures.jwksPath}` } = {}): string {
  return `listen: ${listen}
admin: 127.0.0.1:0
audience: ${AUDIENCE}
issuers:
  - issuer: ${ISSUER}
    ${jwks}
    algorithms: [ES256]
`;
}

export interface Running {
  authz: RunningAuthz;
  envoy: EnvoyClient;
  stop(): Promise<void>;
}

/** hopguard authz on an ephemeral loopback port, with a client that speaks as Envoy. */
export async function startServer(config: AuthzConfig, store?: Store, log: Logger = silentLogger): Promise<Running> {
  const authz = await startAuthz(config, { log, ...(store && { store }) });
  const envoy = new EnvoyClient(authz.grpcAddress);
  return {
    authz,
    envoy,
    stop: async () => {
      envoy.close();
      await authz.stop();
    },
  };
}

import { describe, expect, it } from 'vitest';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { ConfigError } from '../src/schema/config-error.js';

// The example of the design document, as an operator would write it.
const DESIGN_EXAMPLE = `
listen: 0.0.0.0:8443
issuer: https://sts.shop.svc.cluster.local
tls:
  cert: tls/server.pem
  key: tls/server-key.pem
  client_ca: tls/mesh-ca.pem
keys:
  dir: keys/
  algorithm: ES256
token_ttl: 5m
max_delegation_depth: 3
store: memory
clients:
  - id: spiffe://cluster.local/ns/shop/sa/frontend
    grants: [client_credentials]
    audiences: [spiffe://cluster.local/ns/shop/sa/orders]
    scopes: [orders:read, orders:write, payments:write]
  - id: spiffe://cluster.local/ns/shop/sa/orders
    grants: [client_credentials, token_exchange]
    audiences: [spiffe://cluster.local/ns/shop/sa/payments]
    scopes: [payments:write]
`;

const parse = (yaml: string) => parseIssuerConfig(yaml, { baseDir: '/etc/hopguard', source: 'issuer.yaml' });

function problems(yaml: string) {
  try {
    parse(yaml);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('issuer config', () => {
  it('reads the design example, with defaults and paths resolved against the file', () => {
    const config = parse(DESIGN_EXAMPLE);
    expect(config).toMatchObject({
      listen: { host: '0.0.0.0', port: 8443 },
      admin: { host: '127.0.0.1', port: 9443 },
      issuer: 'https://sts.shop.svc.cluster.local',
      tls: { certFile: '/etc/hopguard/tls/server.pem', keyFile: '/etc/hopguard/tls/server-key.pem', clientCaFile: '/etc/hopguard/tls/mesh-ca.pem' },
      keys: { dir: '/etc/hopguard/keys', algorithm: 'ES256', publishAheadMs: 600_000 },
      tokenTtlMs: 300_000,
      refreshTtlMs: 86_400_000,
      maxDelegationDepth: 3,
      clockSkewMs: 30_000,
      store: 'memory',
      rateLimit: { perSecond: 20, burst: 40 },
    });
    expect(config.keys.rotateEveryMs).toBeUndefined();
    expect(config.clients[1]).toEqual({
      id: 'spiffe://cluster.local/ns/shop/sa/orders', grants: ['client_credentials', 'token_exchange'],
      audiences: ['spiffe://cluster.local/ns/shop/sa/payments'], scopes: ['payments:write'], admin: false, dpop: false,
    });
  });

  it.each([
    ['an http issuer', DESIGN_EXAMPLE.replace('issuer: https://', 'issuer: http://'), 'issuer', 'https'],
    ['an issuer with a query', DESIGN_EXAMPLE.replace('cluster.local\ntls', 'cluster.local?x=1\ntls'), 'issuer', 'no query'],
    ['an unknown grant', DESIGN_EXAMPLE.replace('grants: [client_credentials]', 'grants: [password]'), 'clients[0].grants[0]', 'expected one of'],
    ['a symmetric signing algorithm', DESIGN_EXAMPLE.replace('algorithm: ES256', 'algorithm: HS256'), 'keys.algorithm', 'expected one of ES256, EdDSA, RS256'],
    ['a token lifetime over 1h', DESIGN_EXAMPLE.replace('token_ttl: 5m', 'token_ttl: 2h'), 'token_ttl', 'at most 1h'],
    ['a typo', DESIGN_EXAMPLE.replace('max_delegation_depth', 'max_delegation_dept'), 'max_delegation_dept', 'unknown key'],
    ['a duplicate client', DESIGN_EXAMPLE.replace('sa/orders\n    grants', 'sa/frontend\n    grants'), 'clients[1].id', 'duplicate id'],
    ['a password in the store URL', DESIGN_EXAMPLE.replace('store: memory', 'store: redis://:hunter2@redis:6379'), 'store', 'HOPGUARD_REDIS_PASSWORD'],
  ])('refuses %s, naming the key', (_what, yaml, path, fragment) => {
    const found = problems(yaml);
    expect(found.map((p) => p.path)).toContain(path);
    expect(found.find((p) => p.path === path)!.message).toContain(fragment);
    expect(JSON.stringify(found)).not.toContain('hunter2');
  });

  it('requires tls and keys', () => {
    const found = problems(DESIGN_EXAMPLE.replace(/tls:[\s\S]*?token_ttl/, 'token_ttl'));
    expect(found.map((p) => `${p.path}: ${p.message}`)).toEqual(expect.arrayContaining(['tls: is required', 'keys: is required']));
  });
});

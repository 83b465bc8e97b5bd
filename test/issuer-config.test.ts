import { describe, expect, it } from 'vitest';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { configProblems } from './support/config-problems.js';

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

const problems = (yaml: string) => configProblems(parse, yaml);

describe('issuer config', () => {
  it('reads the design example, with defaults and paths resolved against the file', () => {
    const config = parse(DESIGN_EXAMPLE);
    expect(config).toMatchObject({
      listen: { host: '0.0.0.0', port: 8443 },
      admin: { host: '127.0.0.1', port: 9443 },
      issuer: 'https://sts.shop.svc.cluster.local',
      tls: { certFile: '/etc/hopguard/tls/server.pem', keyFile: '/etc/hopguard/tls/server-key.pem' },
      clientAuth: { mode: 'tls', clientCaFile: '/etc/hopguard/tls/mesh-ca.pem' },
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
      audiences: ['spiffe://cluster.local/ns/shop/sa/payments'], messageAudiences: [], scopes: ['payments:write'], admin: false, dpop: false,
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
    expect(found.map((p) => `${p.path}: ${p.message}`)).toEqual(expect.arrayContaining(['tls: is required with client_auth: tls (cert, key and client_ca)', 'keys: is required']));
  });
});

const WITH_SUBJECT_ISSUER = `${DESIGN_EXAMPLE}subject_issuers:
  - issuer: https://idp.example.com/realms/shop
    jwks_uri: https://idp.example.com/realms/shop/certs
    jwks_ca_file: tls/idp-ca.pem
    algorithms: [RS256]
    audience: shop-web
    clients: [spiffe://cluster.local/ns/shop/sa/orders]
`;

describe('issuer config: subject_issuers', () => {
  it('reads a subject issuer, with max_ttl 10m, typ [at+jwt] and no clients by default', () => {
    expect(parse(WITH_SUBJECT_ISSUER).subjectIssuers).toEqual([{
      issuer: 'https://idp.example.com/realms/shop', jwksUri: 'https://idp.example.com/realms/shop/certs', jwksCaFile: '/etc/hopguard/tls/idp-ca.pem',
      algorithms: ['RS256'], maxTtlMs: 600_000, audience: 'shop-web', clients: ['spiffe://cluster.local/ns/shop/sa/orders'], typ: ['at+jwt'],
    }]);
    const minimal = parse(WITH_SUBJECT_ISSUER.replace(/    clients: \[.*\]\n/, '').replace('algorithms: [RS256]', 'algorithms: [ES256]\n    typ: [JWT]'));
    expect(minimal.subjectIssuers[0]).toMatchObject({ clients: [], typ: ['JWT'] });
    expect(parse(DESIGN_EXAMPLE).subjectIssuers).toEqual([]);
  });

  it.each([
    ['an unknown key', WITH_SUBJECT_ISSUER.replace('audience: shop-web', 'audience: shop-web\n    audiences: [x]'), 'subject_issuers[0].audiences', 'unknown key'],
    ['no audience', WITH_SUBJECT_ISSUER.replace('    audience: shop-web\n', ''), 'subject_issuers[0].audience', 'required'],
    ['a symmetric algorithm', WITH_SUBJECT_ISSUER.replace('[RS256]', '[HS256]'), 'subject_issuers[0].algorithms[0]', 'symmetric'],
    ['both key sources', WITH_SUBJECT_ISSUER.replace('algorithms:', 'jwks_file: idp.json\n    algorithms:'), 'subject_issuers[0]', 'set only one of jwks_file and jwks_uri'],
    ['a CA without a URL', WITH_SUBJECT_ISSUER.replace(/    jwks_uri: .*\n/, '    jwks_file: idp.json\n'), 'subject_issuers[0].jwks_ca_file', 'only applies with jwks_uri'],
    ['an unknown typ', WITH_SUBJECT_ISSUER.replace('audience: shop-web', 'audience: shop-web\n    typ: [id+jwt]'), 'subject_issuers[0].typ[0]', 'expected one of at+jwt, JWT'],
    ['an unregistered client', WITH_SUBJECT_ISSUER.replace('clients: [spiffe://cluster.local/ns/shop/sa/orders]', 'clients: [spiffe://cluster.local/ns/shop/sa/order]'), 'subject_issuers[0].clients[0]', 'is not one of the clients'],
    ['a client that may not exchange', WITH_SUBJECT_ISSUER.replace('clients: [spiffe://cluster.local/ns/shop/sa/orders]', 'clients: [spiffe://cluster.local/ns/shop/sa/frontend]'), 'subject_issuers[0].clients[0]', 'without the token_exchange grant'],
    ['this issuer itself', WITH_SUBJECT_ISSUER.replace('issuer: https://idp.example.com/realms/shop', 'issuer: https://sts.shop.svc.cluster.local'), 'subject_issuers[0].issuer', 'this issuer itself'],
    ['a duplicate', `${WITH_SUBJECT_ISSUER}${WITH_SUBJECT_ISSUER.slice(WITH_SUBJECT_ISSUER.indexOf('  - issuer:'))}`, 'subject_issuers[1].issuer', 'duplicate issuer'],
  ])('refuses %s, naming the key', (_what, yaml, path, fragment) => {
    const found = problems(yaml);
    expect(found.map((p) => p.path)).toContain(path);
    expect(found.find((p) => p.path === path)!.message).toContain(fragment);
  });
});

const WITH_SIGNALS = `${DESIGN_EXAMPLE}signals:
  transmitters:
    - issuer: https://idp.example.com
      jwks_file: idp-jwks.json
      algorithms: [ES256, RS256]
`;

describe('issuer config: signals', () => {
  it('reads a transmitter, its audience this issuer\'s iss by default, max_age 10m', () => {
    expect(parse(WITH_SIGNALS).signals).toEqual({
      transmitters: [{ issuer: 'https://idp.example.com', jwksFile: '/etc/hopguard/idp-jwks.json', algorithms: ['ES256', 'RS256'], audience: 'https://sts.shop.svc.cluster.local' }],
      maxAgeMs: 600_000,
    });
    const own = parse(WITH_SIGNALS.replace('algorithms: [ES256, RS256]', 'algorithms: [ES256]\n      audience: urn:shop:receiver').replace('signals:', 'signals:\n  max_age: 1h'));
    expect(own.signals).toMatchObject({ transmitters: [{ audience: 'urn:shop:receiver' }], maxAgeMs: 3_600_000 });
    expect(parse(DESIGN_EXAMPLE).signals).toEqual({ transmitters: [], maxAgeMs: 600_000 });
  });

  it.each([
    ['an unknown key', WITH_SIGNALS.replace('jwks_file: idp-jwks.json', 'jwks_file: idp-jwks.json\n      max_ttl: 5m'), 'signals.transmitters[0].max_ttl', 'unknown key'],
    ['no key source', WITH_SIGNALS.replace('      jwks_file: idp-jwks.json\n', ''), 'signals.transmitters[0]', 'jwks_file or jwks_uri'],
    ['a symmetric algorithm', WITH_SIGNALS.replace('[ES256, RS256]', '[HS256]'), 'signals.transmitters[0].algorithms[0]', 'symmetric'],
    ['a duplicate', `${WITH_SIGNALS}${WITH_SIGNALS.slice(WITH_SIGNALS.indexOf('    - issuer:'))}`, 'signals.transmitters[1].issuer', 'duplicate issuer'],
    ['a max_age under a minute', WITH_SIGNALS.replace('signals:', 'signals:\n  max_age: 5s'), 'signals.max_age', 'between 1m and 24h'],
  ])('refuses %s, naming the key', (_what, yaml, path, fragment) => {
    const found = problems(yaml);
    expect(found.map((p) => p.path)).toContain(path);
    expect(found.find((p) => p.path === path)!.message).toContain(fragment);
  });
});

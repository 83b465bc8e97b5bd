import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { AuthzConfig } from '../src/config/authz-config.js';
import { loadAuthzConfigFile, parseAuthzConfig } from '../src/config/load-authz-config.js';
import { ConfigError, type ConfigProblem } from '../src/schema/config-error.js';
import { parseDuration } from '../src/schema/duration.js';

const BASE_DIR = '/etc/hopguard';
const DPOP_DEFAULTS: AuthzConfig['dpop'] = { algorithms: ['ES256', 'EdDSA', 'RS256', 'PS256'], maxAgeMs: 60_000 };
const REDIS_DEFAULTS = { keyPrefix: 'hopguard:', commandTimeoutMs: 250, maxStalenessMs: 30_000, resyncIntervalMs: 10_000 };
const TELEMETRY_DEFAULTS: AuthzConfig['telemetry'] = { tracing: false, otlpMetrics: false };
const AUDIT_DEFAULTS: AuthzConfig['audit'] = {
  allows: 'none', allowSampleRate: 0.01, checkpointRecords: 1000, checkpointIntervalMs: 10_000, flushIntervalMs: 250,
};

/** The example of docs/design "Configuration (authz)". */
const DESIGN_EXAMPLE = `
listen: 127.0.0.1:9191          # host:port, or unix:/path/to.sock
admin: 127.0.0.1:9192           # health, readiness, metrics; "off" to disable
audience: spiffe://cluster.local/ns/shop/sa/orders   # this service; \`aud\` must contain it
issuers:
  - issuer: https://sts.shop.svc.cluster.local
    jwks_file: keys/jwks.json    # or jwks_uri: https://…/.well-known/jwks.json
    algorithms: [ES256, EdDSA]   # allowlist; "none" and HS* are refused at config load
    max_ttl: 10m                 # exp - iat above this is refused
clock_skew: 30s
binding: mtls                    # mtls | dpop | mtls_or_dpop | none; a token with cnf is always held to it
store: memory                    # or redis://host:port, redis-sentinel://…, redis-cluster://…
routes:                          # first match wins; no match is denied (no_route)
  - name: create-payment
    methods: [POST]
    path: /payments              # exact; or path_prefix: /orders/
    scopes: [payments:write]     # all required
    callers: [spiffe://cluster.local/ns/shop/sa/checkout]   # allowed source.principal values
    one_time: true               # each jti accepted once, across all replicas
  - name: health
    path: /healthz
    public: true                 # no token needed
`;

interface RawConfig {
  [key: string]: unknown;
  issuers: Record<string, unknown>[];
  routes: Record<string, unknown>[];
}

const MINIMAL: RawConfig = {
  listen: '127.0.0.1:0',
  audience: 'spiffe://cluster.local/ns/shop/sa/orders',
  issuers: [{ issuer: 'https://sts.example', jwks_file: 'jwks.json', algorithms: ['ES256'] }],
  routes: [{ name: 'orders', path_prefix: '/orders/' }],
};

/** The minimal config after `change`, as YAML. */
function variant(change: (config: RawConfig) => void): string {
  const config = structuredClone(MINIMAL);
  change(config);
  return YAML.stringify(config);
}

const withTop = (key: string, value: unknown) => variant((c) => { c[key] = value; });
const withIssuer = (issuer: Record<string, unknown>) => variant((c) => { c.issuers[0] = issuer; });
const withAlgorithms = (algorithms: unknown) => variant((c) => { c.issuers[0]!.algorithms = algorithms; });
const withRoute = (route: Record<string, unknown>) => variant((c) => { c.routes[0] = route; });

function parse(yaml: string): AuthzConfig {
  return parseAuthzConfig(yaml, { baseDir: BASE_DIR, source: 'authz.yaml' });
}

function configError(yaml: string): ConfigError {
  try {
    parse(yaml);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function problems(yaml: string): ConfigProblem[] {
  return configError(yaml).problems;
}

function expectProblem(yaml: string, path: string, fragment: string): void {
  expect(problems(yaml)).toContainEqual({ path, message: expect.stringContaining(fragment) });
}

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['0s', 0],
  ])('%s is %d ms', (text, expectedMs) => {
    expect(parseDuration(text)).toBe(expectedMs);
  });

  it.each(['5 minutes', '30', '1.5s', '1h30m', '-5s', ' 5s', '5S', '', '5d'])('refuses %j', (text) => {
    expect(() => parseDuration(text)).toThrow('expected a duration such as "30s" or "5m"');
  });

  it('refuses durations longer than a timer can wait', () => {
    expect(() => parseDuration('1000h')).toThrow('too long');
  });
});

describe('parseAuthzConfig: valid files', () => {
  it('parses the design example', () => {
    expect(parse(DESIGN_EXAMPLE)).toEqual({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 9191 },
      admin: { host: '127.0.0.1', port: 9192 },
      audience: 'spiffe://cluster.local/ns/shop/sa/orders',
      issuers: [
        {
          issuer: 'https://sts.shop.svc.cluster.local',
          jwksFile: '/etc/hopguard/keys/jwks.json',
          algorithms: ['ES256', 'EdDSA'],
          maxTtlMs: 600_000,
        },
      ],
      clockSkewMs: 30_000,
      binding: 'mtls',
      store: 'memory',
      routes: [
        {
          name: 'create-payment',
          methods: ['POST'],
          path: '/payments',
          scopes: ['payments:write'],
          callers: ['spiffe://cluster.local/ns/shop/sa/checkout'],
          public: false,
          oneTime: true,
          forwardToken: false,
        },
        {
          name: 'health',
          methods: [],
          path: '/healthz',
          scopes: [],
          callers: [],
          public: true,
          oneTime: false,
          forwardToken: false,
        },
      ],
      data: {},
      jwks: { refreshIntervalMs: 300_000, refetchIntervalMs: 30_000, fetchTimeoutMs: 5_000, checkWaitMs: 250 },
      cache: { maxEntries: 10_000 },
      dpop: DPOP_DEFAULTS,
      redis: REDIS_DEFAULTS,
      memory: { maxOneTimeEntries: 1_000_000 },
      shutdownGraceMs: 10_000,
      workers: 1,
      http2ConnectionWindow: 1024 * 1024,
      telemetry: TELEMETRY_DEFAULTS,
      audit: AUDIT_DEFAULTS,
      leaks: 'revoke',
    } satisfies AuthzConfig);
  });

  it('fills defaults for every optional key', () => {
    const config = parse(YAML.stringify(MINIMAL));
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9192 });
    expect(config.clockSkewMs).toBe(30_000);
    expect(config.binding).toBe('mtls');
    expect(config.store).toBe('memory');
    expect(config.issuers[0]?.maxTtlMs).toBe(600_000);
    expect(config.routes[0]).toEqual({
      name: 'orders', methods: [], pathPrefix: '/orders/', scopes: [], callers: [],
      public: false, oneTime: false, forwardToken: false,
    });
    expect(config.jwks).toEqual({ refreshIntervalMs: 300_000, refetchIntervalMs: 30_000, fetchTimeoutMs: 5_000, checkWaitMs: 250 });
    expect(config.cache).toEqual({ maxEntries: 10_000 });
    expect(config.redis).toEqual(REDIS_DEFAULTS);
    expect(config.memory).toEqual({ maxOneTimeEntries: 1_000_000 });
    expect(config.telemetry).toEqual(TELEMETRY_DEFAULTS);
    expect(config.audit).toEqual(AUDIT_DEFAULTS);
    expect(config.dpop).toEqual(DPOP_DEFAULTS);
    expect(config.shutdownGraceMs).toBe(10_000);
  });

  it('reads the redis section, resolving files against the config directory', () => {
    const config = parse(variant((c) => {
      c.store = 'rediss://redis.shop:6380/2';
      c.redis = { key_prefix: 'mesh-a:', password_file: 'secrets/redis-pass', tls_ca_file: '/etc/ca.pem', command_timeout: '100ms', max_staleness: '5s', resync_interval: '2s' };
    }));
    expect(config.redis).toEqual({
      keyPrefix: 'mesh-a:', passwordFile: '/etc/hopguard/secrets/redis-pass', tlsCaFile: '/etc/ca.pem',
      commandTimeoutMs: 100, maxStalenessMs: 5000, resyncIntervalMs: 2000,
    });
  });

  it('reads a client certificate for rediss://, and wants its key with it', () => {
    const withCert = (redis: Record<string, string>) => variant((c) => { c.store = 'rediss://hopguard-sidecar@redis.shop:6380'; c.redis = redis; });
    const config = parse(withCert({ tls_ca_file: 'redis/ca.crt', tls_cert_file: 'redis/tls.crt', tls_key_file: 'redis/tls.key' }));
    expect(config.redis).toMatchObject({
      tlsCaFile: '/etc/hopguard/redis/ca.crt', tlsCertFile: '/etc/hopguard/redis/tls.crt', tlsKeyFile: '/etc/hopguard/redis/tls.key',
    });
    expect(problems(withCert({ tls_cert_file: 'redis/tls.crt' }))).toEqual([{ path: 'redis.tls_key_file', message: 'is required with tls_cert_file' }]);
    expect(problems(withCert({ tls_key_file: 'redis/tls.key' }))).toEqual([{ path: 'redis.tls_cert_file', message: 'is required with tls_key_file' }]);
  });

  it('refuses redis TLS files with a store URL that is not rediss://', () => {
    for (const store of ['redis://redis.shop:6379', 'redis-sentinel://s1:26379/master']) {
      const found = problems(variant((c) => { c.store = store; c.redis = { tls_ca_file: '/etc/ca.pem' }; }));
      expect(found).toEqual([{ path: 'store', message: expect.stringContaining('not rediss://') }]);
    }
    // Reported beside another problem of the same section, too.
    const found = problems(variant((c) => { c.store = 'redis://redis.shop:6379'; c.redis = { tls_ca_file: '/etc/ca.pem', command_timeout: 'soon' }; }));
    expect(found.map((p) => p.path).sort()).toEqual(['redis.command_timeout', 'store']);
  });

  it('refuses an unknown key in the redis section, and a password in it', () => {
    const found = problems(variant((c) => { c.redis = { password: 'hunter2' }; }));
    expect(found.some((p) => p.path === 'redis.password' && p.message.includes('unknown key'))).toBe(true);
    expect(JSON.stringify(found)).not.toContain('hunter2');
  });

  it('reads every optional section when given', () => {
    const config = parse(variant((c) => {
      c.admin = 'off';
      c.binding = 'none';
      c.store = 'redis-sentinel://user@s1:26379,s2:26379/mymaster';
      c.clock_skew = '5m';
      c.jwks = { refresh_interval: '1h', refetch_interval: '10s', fetch_timeout: '250ms', check_wait: '0s' };
      c.cache = { max_entries: 0 };
      c.shutdown_grace = '0s';
      c.issuers[0] = {
        issuer: 'https://sts.example', jwks_uri: 'https://sts.example/jwks', algorithms: ['PS256'], max_ttl: '1h',
      };
      c.routes[0] = { name: 'get', methods: ['get', 'Patch'], path: '/a/b', forward_token: true };
    }));
    expect(config.admin).toBeUndefined();
    expect(config.binding).toBe('none');
    expect(config.store).toBe('redis-sentinel://user@s1:26379,s2:26379/mymaster');
    expect(config.clockSkewMs).toBe(300_000);
    expect(config.jwks).toEqual({ refreshIntervalMs: 3_600_000, refetchIntervalMs: 10_000, fetchTimeoutMs: 250, checkWaitMs: 0 });
    expect(config.cache.maxEntries).toBe(0);
    expect(config.shutdownGraceMs).toBe(0);
    expect(config.issuers[0]).toEqual({
      issuer: 'https://sts.example', jwksUri: 'https://sts.example/jwks', algorithms: ['PS256'], maxTtlMs: 3_600_000,
    });
    expect(config.routes[0]).toMatchObject({ methods: ['GET', 'PATCH'], path: '/a/b', forwardToken: true });
  });

  it.each([
    ['127.0.0.1:0', { kind: 'tcp', host: '127.0.0.1', port: 0 }],
    ['[::1]:9191', { kind: 'tcp', host: '::1', port: 9191 }],
    ['authz.shop.svc:65535', { kind: 'tcp', host: 'authz.shop.svc', port: 65535 }],
    ['unix:/run/hopguard/authz.sock', { kind: 'unix', path: '/run/hopguard/authz.sock' }],
  ])('listen %s', (listen, expected) => {
    expect(parse(variant((c) => { c.listen = listen; })).listen).toEqual(expected);
  });

  it('accepts http jwks_uri on a loopback host', () => {
    for (const uri of ['http://127.0.0.1:8080/jwks', 'http://[::1]/jwks', 'http://localhost:9000/jwks']) {
      const config = parse(withIssuer({ issuer: 'i', jwks_uri: uri, algorithms: ['ES256'] }));
      expect(config.issuers[0]?.jwksUri).toBe(uri);
    }
  });
});

describe('parseAuthzConfig: problems', () => {
  it('reports a YAML syntax error with its line', () => {
    const error = configError('listen: 127.0.0.1:9191\naudience: a\nroutes: [\n  - name: x\n');
    expect(error.problems[0]?.message).toMatch(/^YAML syntax error at line \d+, column \d+/);
    expect(error.message).toMatch(/^authz\.yaml: YAML syntax error at line/);
  });

  it('reports a duplicated YAML key on its line', () => {
    expectProblem('listen: 127.0.0.1:0\naudience: a\naudience: b\n', '', 'at line 3');
  });

  it('names an unknown key', () => {
    expectProblem(variant((c) => { c.audiance = 'x'; }), 'audiance', 'unknown key "audiance"');
    expectProblem(variant((c) => { c.issuers[0]!.audiance = 'x'; }), 'issuers[0].audiance', 'unknown key "audiance"');
  });

  it('says a required key is missing', () => {
    expectProblem(variant((c) => { delete c.audience; }), 'audience', 'is required');
    expectProblem(variant((c) => { delete c.issuers[0]!.algorithms; }), 'issuers[0].algorithms', 'is required');
  });

  it('refuses an audience with whitespace', () => {
    expectProblem(variant((c) => { c.audience = 'my service'; }), 'audience', 'without whitespace');
  });

  it('refuses HS* algorithms as forgeable with the public key', () => {
    expectProblem(
      withAlgorithms(['ES256', 'HS256']),
      'issuers[0].algorithms[1]',
      '"HS256" is refused: with a symmetric algorithm anyone who has the verification key',
    );
    expectProblem(withAlgorithms(['hs512']), 'issuers[0].algorithms[0]', 'is refused');
  });

  it('refuses none in any casing', () => {
    expectProblem(
      withAlgorithms(['NoNe']),
      'issuers[0].algorithms[0]',
      '"NoNe" is refused: an unsigned token can be forged by anyone',
    );
  });

  it('names the supported algorithms for an unknown one', () => {
    expectProblem(withAlgorithms(['XYZ9']), 'issuers[0].algorithms[0]', 'unsupported algorithm "XYZ9", expected one of ES256');
    expectProblem(withAlgorithms(['es256']), 'issuers[0].algorithms[0]', 'did you mean "ES256"');
    expectProblem(withAlgorithms([]), 'issuers[0].algorithms', 'at least one algorithm');
    expectProblem(withAlgorithms(['ES256', 7]), 'issuers[0].algorithms[1]', 'expected an algorithm name');
  });

  it('wants exactly one of jwks_file and jwks_uri', () => {
    expectProblem(variant((c) => { c.issuers[0]!.jwks_uri = 'https://sts.example/jwks'; }), 'issuers[0]', 'not both');
    expectProblem(variant((c) => { delete c.issuers[0]!.jwks_file; }), 'issuers[0]', 'set jwks_file or jwks_uri');
  });

  it('refuses http jwks_uri on a non-loopback host, and credentials', () => {
    const uri = (jwksUri: string) => withIssuer({ issuer: 'i', jwks_uri: jwksUri, algorithms: ['ES256'] });
    expectProblem(uri('http://sts.example/jwks'), 'issuers[0].jwks_uri', 'expected an https URL');
    expectProblem(uri('http://10.0.0.1/jwks'), 'issuers[0].jwks_uri', 'http is allowed only for a loopback host');
    expectProblem(uri('https://user:pw@sts.example/jwks'), 'issuers[0].jwks_uri', 'must not contain credentials');
  });

  it('refuses a duplicate issuer', () => {
    const yaml = variant((c) => { c.issuers.push({ ...c.issuers[0] }); });
    expectProblem(yaml, 'issuers[1].issuer', 'duplicate issuer, already used by issuers[0]');
  });

  it('refuses a password in the redis URL without echoing it', () => {
    const stores = ['redis://:hunter2@redis:6379', 'rediss://app:hunter2@redis:6379/0', 'redis://redis:6379?password=hunter2'];
    for (const store of stores) {
      const error = configError(withTop('store', store));
      expect(error.problems).toEqual([{ path: 'store', message: expect.stringContaining('HOPGUARD_REDIS_PASSWORD') }]);
      expect(error.message).not.toContain('hunter2');
      expect(JSON.stringify(error.problems)).not.toContain('hunter2');
    }
  });

  it('refuses a store that is neither memory nor a redis URL', () => {
    expectProblem(variant((c) => { c.store = 'postgres://db/x'; }), 'store', 'expected "memory" or a URL');
    expectProblem(variant((c) => { c.store = 'redis://'; }), 'store', 'no host');
  });

  it('refuses duplicate route names', () => {
    expectProblem(
      variant((c) => { c.routes.push({ name: 'orders', path: '/other' }); }),
      'routes[1].name',
      'duplicate name, already used by routes[0]',
    );
  });

  it('refuses token rules on a public route', () => {
    const yaml = withRoute({ name: 'health', path: '/healthz', public: true, scopes: ['a'], one_time: true });
    expectProblem(yaml, 'routes[0].scopes', 'not allowed on a public route');
    expectProblem(yaml, 'routes[0].one_time', 'not allowed on a public route');
  });

  it('wants exactly one of path and path_prefix', () => {
    expectProblem(variant((c) => { c.routes[0]!.path = '/orders'; }), 'routes[0]', 'not both');
    expectProblem(variant((c) => { delete c.routes[0]!.path_prefix; }), 'routes[0]', 'set path or path_prefix');
  });

  it.each([
    ['orders', 'must start with "/"'],
    ['/a?b=1', 'must not contain "?"'],
    ['/a#b', 'must not contain "#"'],
    ['/a//b', 'must not contain "//"'],
    ['/a/./b', 'must not contain "/./"'],
    ['/a/../b', 'must not contain "/../"'],
    ['/a/.', 'must not end with "/." or "/.."'],
    ['/a/..', 'must not end with "/." or "/.."'],
    ['/a\\b', 'must not contain "\\"'],
    ['/a%2Fb', 'must not contain "%"'],
    ['/a;v=1', 'must not contain ";"'],
    ['/a b', 'visible ASCII'],
  ])('refuses route path %j', (path, fragment) => {
    expectProblem(variant((c) => { c.routes[0] = { name: 'r', path }; }), 'routes[0].path', fragment);
  });

  it('refuses a method that is not an HTTP token', () => {
    const yaml = withRoute({ name: 'r', path: '/', methods: ['GET', 'GE T'] });
    expectProblem(yaml, 'routes[0].methods[1]', 'expected an HTTP method');
  });

  it('refuses a scope with spaces', () => {
    expectProblem(variant((c) => { c.routes[0]!.scopes = ['a b']; }), 'routes[0].scopes[0]', 'without spaces');
  });

  it('words wrong types', () => {
    expectProblem(withRoute({ name: 'r', path: '/', scopes: 'a:b' }), 'routes[0].scopes', 'expected a list of strings');
    expectProblem(variant((c) => { c.routes[0]!.public = 'yes'; }), 'routes[0].public', 'expected true or false');
    expectProblem(variant((c) => { c.cache = { max_entries: 1.5 }; }), 'cache.max_entries', 'expected a whole number');
    expectProblem(variant((c) => { c.memory = { max_one_time_entries: 1.5 }; }), 'memory.max_one_time_entries', 'expected a whole number');
    expectProblem(variant((c) => { c.memory = { max_one_time_entries: 0 }; }), 'memory.max_one_time_entries', 'must be at least 1');
    expectProblem(variant((c) => { c.memory = { max_one_time_entries: 1e9 }; }), 'memory.max_one_time_entries', 'must be at most 100000000');
    expectProblem(withTop('issuers', 'sts'), 'issuers', 'expected a list of issuers');
    expectProblem('- just\n- a list\n', '', 'expected a mapping with listen, audience, issuers and routes');
    expectProblem('', '', 'expected a mapping');
  });

  it('refuses a malformed duration', () => {
    expectProblem(withTop('clock_skew', '5 minutes'), 'clock_skew', 'expected a duration such as "30s" or "5m"');
    expectProblem(withTop('jwks', { fetch_timeout: 5 }), 'jwks.fetch_timeout', 'expected a duration such as');
    expectProblem(withTop('jwks', { check_wait: '2s' }), 'jwks.check_wait', 'must be at most 500ms: a check must answer well before Envoy gives up (1s)');
    expectProblem(variant((c) => { c.jwks = { refresh_interval: '0s' }; }), 'jwks.refresh_interval', 'greater than 0');
  });

  it('caps clock_skew at 5m', () => {
    expectProblem(variant((c) => { c.clock_skew = '6m'; }), 'clock_skew', 'at most 5m');
  });

  it('reads workers and http2_connection_window, and refuses workers that would split one-time state', () => {
    expect(parse(withTop('workers', 2)).workers).toBe(2);
    expectProblem(withTop('workers', 0), 'workers', 'at least 1');
    expectProblem(withTop('http2_connection_window', 1000), 'http2_connection_window', 'at least 65535');
    const oneTimeRoute = variant((c) => { c.workers = 2; c.routes = [{ name: 'pay', path: '/pay', one_time: true }]; });
    expectProblem(oneTimeRoute, 'workers', 'needs a redis store');
    expect(parse(variant((c) => { c.workers = 2; c.store = 'redis://127.0.0.1:6379'; c.routes = [{ name: 'pay', path: '/pay', one_time: true }]; })).workers).toBe(2);
  });

  it('refuses more than one worker with store: memory under every binding mode that accepts DPoP-bound tokens', () => {
    // binding: none too: a DPoP-bound token is held to its proof whatever the mode, and each
    // worker would remember used proofs on its own.
    for (const binding of ['none', 'dpop', 'mtls_or_dpop']) {
      const split = variant((c) => { c.workers = 2; c.binding = binding; });
      expectProblem(split, 'workers', `DPoP proofs (binding: ${binding} accepts DPoP-bound tokens)`);
      expectProblem(split, 'workers', 'use a redis store, or workers: 1, or binding: mtls');
      expect(parse(variant((c) => { c.workers = 2; c.binding = binding; c.store = 'redis://127.0.0.1:6379'; })).workers).toBe(2);
      expect(parse(variant((c) => { c.workers = 1; c.binding = binding; })).workers).toBe(1);
    }
    expect(parse(variant((c) => { c.workers = 2; c.binding = 'mtls'; })).workers).toBe(2);
  });

  it('reads every binding mode and the dpop section, and refuses others', () => {
    for (const binding of ['mtls', 'dpop', 'mtls_or_dpop', 'none']) expect(parse(withTop('binding', binding)).binding).toBe(binding);
    expectProblem(variant((c) => { c.binding = 'tls'; }), 'binding', 'expected mtls, dpop, mtls_or_dpop, none');
    expect(parse(withTop('dpop', { algorithms: ['ES256'], max_age: '30s' })).dpop).toEqual({ algorithms: ['ES256'], maxAgeMs: 30_000 });
    expectProblem(withTop('dpop', { algorithms: ['HS256'] }), 'dpop.algorithms[0]', 'refused');
    expectProblem(withTop('dpop', { max_age: '1h' }), 'dpop.max_age', 'at most 10m');
    expectProblem(withTop('dpop', { nonce: true }), 'dpop.nonce_secret_file', 'is required with nonce: true');
    expect(parse(withTop('dpop', { nonce: true, nonce_secret_file: 'nonce.key', nonce_lifetime: '1m' })).dpop.nonce)
      .toEqual({ secretFile: '/etc/hopguard/nonce.key', lifetimeMs: 60_000 });
  });

  it.each([
    ['::1:9191', 'expected host:port'],
    ['127.0.0.1:70000', 'port must be from 0 to 65535'],
    ['999.1.1.1:80', 'host must be'],
    ['bad_host:80', 'host must be'],
    ['unix:run.sock', 'absolute socket path'],
  ])('refuses listen %j', (listen, fragment) => {
    expectProblem(variant((c) => { c.listen = listen; }), 'listen', fragment);
  });

  it('refuses a unix socket for admin', () => {
    expectProblem(variant((c) => { c.admin = 'unix:/run/admin.sock'; }), 'admin', 'or "off"');
  });

  it('collects every problem, one line each, prefixed by the file name', () => {
    const error = configError(variant((c) => {
      delete c.listen;
      c.clock_skew = '5 minutes';
      c.issuers[0]!.algorithms = ['HS256'];
      c.routes[0]!.colour = 'red';
      c.routes[0]!.public = true;
      c.routes[0]!.callers = ['spiffe://x'];
    }));
    expect(error.code).toBe('invalid_config');
    expect(error.problems.map((p) => p.path).sort()).toEqual([
      'clock_skew', 'issuers[0].algorithms[0]', 'listen', 'routes[0].callers', 'routes[0].colour',
    ]);
    const lines = error.message.split('\n');
    expect(lines).toHaveLength(5);
    for (const line of lines) expect(line).toMatch(/^authz\.yaml: /);
    expect(lines).toContain('authz.yaml: listen: is required');
  });
});

describe('parseAuthzConfig: leaks', () => {
  it('revokes leaked tokens by default, or only reports them', () => {
    expect(parse(variant(() => undefined)).leaks).toBe('revoke');
    expect(parse(withTop('leaks', 'report')).leaks).toBe('report');
    expectProblem(withTop('leaks', 'ignore'), 'leaks', 'expected one of revoke, report');
  });
});

describe('loadAuthzConfigFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hopguard-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves jwks_file against the config file directory', async () => {
    const file = join(dir, 'authz.yaml');
    await writeFile(file, DESIGN_EXAMPLE);
    expect(loadAuthzConfigFile(file).issuers[0]?.jwksFile).toBe(join(dir, 'keys/jwks.json'));
  });

  it('names the file in every problem', async () => {
    const file = join(dir, 'authz.yaml');
    await writeFile(file, variant((c) => { c.binding = 'dpop-ish'; }));
    expect(() => loadAuthzConfigFile(file)).toThrow(`${file}: binding: expected mtls`);
  });

  it('reports an unreadable file as a ConfigError', () => {
    const file = join(dir, 'missing.yaml');
    let error: unknown;
    try {
      loadAuthzConfigFile(file);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${file}: cannot read the config file: it does not exist (ENOENT)`);
  });
});

describe('parseAuthzConfig: telemetry and audit', () => {
  it('reads the telemetry section', () => {
    const config = parse(withTop('telemetry', {
      tracing: true, otlp_metrics: true, service_name: 'orders-hopguard', endpoint: 'http://otel-collector:4318', protocol: 'grpc',
    }));
    expect(config.telemetry).toEqual({
      tracing: true, otlpMetrics: true, serviceName: 'orders-hopguard', endpoint: 'http://otel-collector:4318', protocol: 'grpc',
    });
  });

  it('refuses an unknown OTLP protocol, a non-http endpoint and credentials in it, without echoing them', () => {
    expectProblem(withTop('telemetry', { protocol: 'udp' }), 'telemetry.protocol', 'expected one of http/protobuf, http/json, grpc');
    expectProblem(withTop('telemetry', { endpoint: 'ftp://collector' }), 'telemetry.endpoint', 'expected an http or https URL');
    const found = problems(withTop('telemetry', { endpoint: 'https://user:s3cret@collector:4318' }));
    expect(found).toContainEqual({ path: 'telemetry.endpoint', message: expect.stringContaining('OTEL_EXPORTER_OTLP_HEADERS') });
    expect(JSON.stringify(found)).not.toContain('s3cret');
    expectProblem(withTop('telemetry', { tracing: 'yes' }), 'telemetry.tracing', 'expected true or false');
  });

  it('reads the audit section, resolving files against the config directory', () => {
    const config = parse(withTop('audit', {
      output: 'audit/hopguard.jsonl', allows: 'sampled', allow_sample_rate: 0.25, signing_key_file: 'keys/audit.pem',
      checkpoint_records: 50, checkpoint_interval: '5s', flush_interval: '100ms',
    }));
    expect(config.audit).toEqual({
      output: { kind: 'file', path: '/etc/hopguard/audit/hopguard.jsonl' }, allows: 'sampled', allowSampleRate: 0.25,
      signingKeyFile: '/etc/hopguard/keys/audit.pem', checkpointRecords: 50, checkpointIntervalMs: 5_000, flushIntervalMs: 100,
    });
    expect(parse(withTop('audit', { output: 'stdout', allows: 'all', signing_key_file: '/k.pem' })).audit.output).toEqual({ kind: 'stdout' });
  });

  it('wants a signing key when audit is on, and a sample rate only with allows: sampled', () => {
    expectProblem(withTop('audit', { output: 'stdout' }), 'audit.signing_key_file', 'is required when audit output is on');
    expectProblem(withTop('audit', { output: 'off', allow_sample_rate: 0.5 }), 'audit.allow_sample_rate', 'only with allows: sampled');
    expectProblem(withTop('audit', { allows: 'sampled', allow_sample_rate: 0 }), 'audit.allow_sample_rate', 'above 0');
    expectProblem(withTop('audit', { allows: 'sampled', allow_sample_rate: 2 }), 'audit.allow_sample_rate', 'at most 1');
    expectProblem(withTop('audit', { allows: 'some' }), 'audit.allows', 'expected none, all, sampled');
    expectProblem(withTop('audit', { checkpoint_records: 0 }), 'audit.checkpoint_records', 'at least 1');
  });
});

/** The design's "Egress: the application never holds a token" example, as written there. */
const EGRESS_DESIGN_EXAMPLE = `
issuer_client:                   # how this sidecar obtains tokens (egress and messages)
  token_endpoint: https://sts.shop.svc.cluster.local:8443/token
  ca_file: /etc/hopguard/tls/ca.crt        # CA of the issuer's server certificate
  cert_file: /etc/hopguard/tls/tls.crt     # this workload's certificate and key (the ones Envoy presents):
  key_file: /etc/hopguard/tls/tls.key      #   tokens are bound to it; reread when they change
  timeout: 2s
egress:
  listen: 127.0.0.1:9194         # ext_authz for the outbound listener; never the inbound port,
                                 # so an inbound check can never obtain a token
  handle_header: x-hopguard-handle
  other_hosts: passthrough       # passthrough (no token added, handle removed) | deny (no_destination)
  destinations:                  # matched on the outbound request's host, port ignored; first match wins
    - host: payments.shop.svc.cluster.local      # exact, or *.suffix
      audience: spiffe://cluster.local/ns/shop/sa/payments
      scopes: [payments:write]   # asked for; the issuer narrows
      per_request: false         # true: a new token for every request (the callee's route is one-time)
      without_handle: deny       # deny (handle_missing) | client_credentials (this workload's own token)
`;

const ISSUER_CLIENT = { token_endpoint: 'https://sts.example:8443/token', ca_file: 'tls/ca.crt', cert_file: 'tls/tls.crt', key_file: 'tls/tls.key' };
const withEgress = (egress: Record<string, unknown>, issuerClient: Record<string, unknown> | null = ISSUER_CLIENT) =>
  variant((c) => {
    c.egress = egress;
    if (issuerClient) c.issuer_client = issuerClient;
  });

describe('parseAuthzConfig: issuer_client and egress', () => {
  it('parses the design example', () => {
    const config = parse(`${YAML.stringify(MINIMAL)}${EGRESS_DESIGN_EXAMPLE}`);
    expect(config.issuerClient).toEqual({
      tokenEndpoint: 'https://sts.shop.svc.cluster.local:8443/token', transport: 'tls',
      caFile: '/etc/hopguard/tls/ca.crt', certFile: '/etc/hopguard/tls/tls.crt', keyFile: '/etc/hopguard/tls/tls.key',
      timeoutMs: 2000,
    });
    expect(config.egress).toEqual({
      listen: { kind: 'tcp', host: '127.0.0.1', port: 9194 },
      handleHeader: 'x-hopguard-handle',
      handleBaggage: false,
      otherHosts: 'passthrough',
      destinations: [{
        host: 'payments.shop.svc.cluster.local', audience: 'spiffe://cluster.local/ns/shop/sa/payments',
        scopes: ['payments:write'], perRequest: false, withoutHandle: 'deny',
      }],
    });
  });

  it('is off when absent, and fills the design defaults, resolving files against the config directory', () => {
    expect(parse(YAML.stringify(MINIMAL))).not.toHaveProperty('egress');
    expect(parse(YAML.stringify(MINIMAL))).not.toHaveProperty('issuerClient');
    const config = parse(withEgress({ listen: '127.0.0.1:9194', destinations: [{ host: '*.Shop.svc', audience: 'spiffe://x/payments' }] }));
    expect(config.issuerClient).toMatchObject({ caFile: '/etc/hopguard/tls/ca.crt', keyFile: '/etc/hopguard/tls/tls.key', timeoutMs: 2000 });
    expect(config.egress).toMatchObject({ handleHeader: 'x-hopguard-handle', handleBaggage: false, otherHosts: 'passthrough' });
    expect(parse(withEgress({ listen: '127.0.0.1:9194', handle_baggage: true })).egress?.handleBaggage).toBe(true);
    expect(config.egress?.destinations).toEqual([
      { host: '*.shop.svc', audience: 'spiffe://x/payments', scopes: [], perRequest: false, withoutHandle: 'deny' },
    ]);
    expect(parse(withEgress({ listen: '127.0.0.1:9194' })).egress?.destinations).toEqual([]);
    // issuer_client alone (for messages, later) is allowed.
    expect(parse(variant((c) => { c.issuer_client = ISSUER_CLIENT; })).issuerClient?.timeoutMs).toBe(2000);
  });

  it('refuses unknown keys in each section, naming them', () => {
    const found = problems(withEgress(
      { listen: '127.0.0.1:9194', handle_cookie: true, handle_baggage: 'yes', destinations: [{ host: 'a.svc', audience: 'x', port: 80 }] },
      { ...ISSUER_CLIENT, client_secret: 'hunter2' },
    ));
    expect(found).toEqual(expect.arrayContaining([
      { path: 'egress.handle_cookie', message: 'unknown key "handle_cookie"' },
      { path: 'egress.handle_baggage', message: 'expected true or false' },
      { path: 'egress.destinations[0].port', message: 'unknown key "port"' },
      { path: 'issuer_client.client_secret', message: 'unknown key "client_secret"' },
    ]));
    expect(JSON.stringify(found)).not.toContain('hunter2');
  });

  it('wants issuer_client with egress, and egress.listen apart from listen and admin', () => {
    expect(problems(withEgress({ listen: '127.0.0.1:9194' }, null))).toEqual([
      { path: 'issuer_client', message: expect.stringContaining('is required with egress') },
    ]);
    const sameAsListen = variant((c) => { c.listen = '127.0.0.1:9191'; c.issuer_client = ISSUER_CLIENT; c.egress = { listen: '127.0.0.1:9191' }; });
    expect(problems(sameAsListen)).toEqual([{ path: 'egress.listen', message: expect.stringContaining('must differ from listen') }]);
    const wildcard = variant((c) => { c.listen = '0.0.0.0:9191'; c.issuer_client = ISSUER_CLIENT; c.egress = { listen: '127.0.0.1:9191' }; });
    expect(problems(wildcard)).toEqual([{ path: 'egress.listen', message: expect.stringContaining('must differ from listen') }]);
    const sameSocket = variant((c) => { c.listen = 'unix:/run/a.sock'; c.issuer_client = ISSUER_CLIENT; c.egress = { listen: 'unix:/run/a.sock' }; });
    expect(problems(sameSocket)).toEqual([{ path: 'egress.listen', message: expect.stringContaining('must differ from listen') }]);
    expectProblem(withEgress({ listen: '127.0.0.1:9192' }), 'egress.listen', 'must differ from admin');
    // Port 0 picks a free port each time: never the same.
    expect(parse(withEgress({ listen: '127.0.0.1:0' })).egress?.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  });

  it('refuses forward_token with egress: the application would hold the token', () => {
    const yaml = variant((c) => {
      c.routes[0] = { name: 'exchange', path: '/exchange', forward_token: true };
      c.issuer_client = ISSUER_CLIENT;
      c.egress = { listen: '127.0.0.1:9194' };
    });
    expectProblem(yaml, 'routes[0].forward_token', 'not allowed with egress');
  });

  it('names each bad value', () => {
    const found = problems(withEgress(
      {
        listen: 'localhost',
        handle_header: 'Authorization',
        other_hosts: 'allow',
        destinations: [
          { host: 'https://payments.svc', audience: 'a b' },
          { host: 'payments.svc:8443', audience: 'x', without_handle: 'anonymous', per_request: 'yes', scopes: ['a b'] },
          { host: 'dup.svc', audience: 'x' },
          { host: 'dup.svc', audience: 'y' },
          { audience: 'x' },
        ],
      },
      { token_endpoint: 'http://sts.example/token', ca_file: '', cert_file: 'c', timeout: '0s' },
    ));
    expect(found).toEqual(expect.arrayContaining([
      { path: 'egress.listen', message: expect.stringContaining('host:port') },
      { path: 'egress.handle_header', message: expect.stringContaining('lower-case header name') },
      { path: 'egress.other_hosts', message: 'expected one of passthrough, deny' },
      { path: 'egress.destinations[0].host', message: expect.stringContaining('expected a host name') },
      { path: 'egress.destinations[0].audience', message: expect.stringContaining('without whitespace') },
      { path: 'egress.destinations[1].host', message: expect.stringContaining('no port') },
      { path: 'egress.destinations[1].without_handle', message: 'expected one of deny, client_credentials' },
      { path: 'egress.destinations[1].per_request', message: 'expected true or false' },
      { path: 'egress.destinations[1].scopes[0]', message: expect.stringContaining('without spaces') },
      { path: 'egress.destinations[3].host', message: 'duplicate host, already used by destinations[2]' },
      { path: 'egress.destinations[4].host', message: 'is required' },
      { path: 'issuer_client.token_endpoint', message: expect.stringContaining('expected an https URL') },
      { path: 'issuer_client.ca_file', message: 'must not be empty' },
      { path: 'issuer_client.key_file', message: 'is required' },
      { path: 'issuer_client.timeout', message: 'must be greater than 0' },
    ]));
    for (const header of ['authorization', 'x-hopguard-subject', 'baggage']) {
      expectProblem(withEgress({ listen: '127.0.0.1:9194', handle_header: header }), 'egress.handle_header', 'means something else');
    }
    expectProblem(withEgress({ listen: '127.0.0.1:9194' }, { ...ISSUER_CLIENT, token_endpoint: 'https://user:pw@sts/token' }), 'issuer_client.token_endpoint', 'credentials');
  });
});

import { describe, expect, it } from 'vitest';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { configProblems } from './support/config-problems.js';

/** The messages section of the authz config (design "Messages") and the issuer's message keys. */

const BASE = `
listen: 127.0.0.1:9191
admin: 127.0.0.1:9192
audience: spiffe://cluster.local/ns/shop/sa/orders
issuers:
  - { issuer: https://sts.shop.svc.cluster.local, jwks_file: keys/jwks.json, algorithms: [ES256] }
routes:
  - { name: all, path_prefix: / }
`;
const ISSUER_CLIENT = `
issuer_client:
  token_endpoint: https://sts.shop.svc.cluster.local:8443/token
  ca_file: ca.crt
  cert_file: tls.crt
  key_file: tls.key
`;
const DESIGN_MESSAGES = `
messages:
  listen: 127.0.0.1:9195
  outgoing:                      # what this workload publishes
    - destination: orders.fulfilment            # the queue, subject or topic name
      audience: spiffe://cluster.local/ns/shop/sa/fulfilment   # the consuming service
      scopes: [orders:fulfil]
      max_delay: 15m             # the token's lifetime: how long the message may wait (the issuer caps it)
      without_handle: deny       # deny | client_credentials
  incoming:                      # what this workload consumes
    - destination: orders.fulfilment
      scopes: [orders:fulfil]
`;

const parse = (yaml: string) => parseAuthzConfig(yaml, { baseDir: '/etc/hopguard' });

const problems = (yaml: string) => configProblems(parse, yaml);

describe('authz config: messages', () => {
  it('reads the design example, with defaults', () => {
    const config = parse(BASE + ISSUER_CLIENT + DESIGN_MESSAGES);
    expect(config.messages).toEqual({
      listen: { host: '127.0.0.1', port: 9195 },
      maxTtlMs: 3_600_000,
      outgoing: [{
        destination: 'orders.fulfilment', audience: 'spiffe://cluster.local/ns/shop/sa/fulfilment', scopes: ['orders:fulfil'],
        maxDelayMs: 900_000, withoutHandle: 'deny',
      }],
      incoming: [{ destination: 'orders.fulfilment', scopes: ['orders:fulfil'] }],
    });
  });

  it('reads a consumer without issuer_client, and grpc_listen', () => {
    const config = parse(`${BASE}messages:\n  listen: "[::1]:9195"\n  grpc_listen: 127.0.0.1:9196\n  max_ttl: 2h\n  incoming: [{ destination: jobs }]\n`);
    expect(config.messages).toMatchObject({ listen: { host: '::1', port: 9195 }, grpcListen: { host: '127.0.0.1', port: 9196 }, maxTtlMs: 7_200_000, outgoing: [] });
  });

  it.each([
    ['outgoing without issuer_client', BASE + DESIGN_MESSAGES, 'issuer_client', 'required with messages.outgoing'],
    ['a listen address that is not loopback', BASE + ISSUER_CLIENT + DESIGN_MESSAGES.replace('127.0.0.1:9195', '0.0.0.0:9195'), 'messages.listen', 'loopback'],
    ['a unix socket', `${BASE}messages:\n  listen: unix:/run/m.sock\n`, 'messages.listen', 'loopback host:port'],
    ['listen equal to the ext_authz listen', `${BASE}messages:\n  listen: 127.0.0.1:9191\n`, 'messages.listen', 'must differ from listen'],
    ['listen equal to admin', `${BASE}messages:\n  listen: 127.0.0.1:9192\n`, 'messages.listen', 'must differ from admin'],
    ['grpc_listen equal to listen', `${BASE}messages:\n  listen: 127.0.0.1:9195\n  grpc_listen: 127.0.0.1:9195\n`, 'messages.grpc_listen', 'must differ from messages.listen'],
    ['a destination with a space', `${BASE}messages:\n  listen: 127.0.0.1:9195\n  incoming: [{ destination: "a b" }]\n`, 'messages.incoming[0].destination', 'visible ASCII'],
    ['a duplicate incoming destination', `${BASE}messages:\n  listen: 127.0.0.1:9195\n  incoming: [{ destination: a }, { destination: a }]\n`, 'messages.incoming[1].destination', 'duplicate'],
    ['an unknown key', `${BASE}messages:\n  listen: 127.0.0.1:9195\n  incomming: []\n`, 'messages.incomming', 'unknown key'],
    ['max_delay under 1s', BASE + ISSUER_CLIENT + DESIGN_MESSAGES.replace('max_delay: 15m', 'max_delay: 500ms'), 'messages.outgoing[0].max_delay', 'at least 1s'],
    ['an unknown without_handle', BASE + ISSUER_CLIENT + DESIGN_MESSAGES.replace('without_handle: deny ', 'without_handle: allow '), 'messages.outgoing[0].without_handle', 'expected one of deny, client_credentials'],
    ['workers above 1 with store: memory and incoming', `${BASE}workers: 2\nmessages:\n  listen: 127.0.0.1:9195\n  incoming: [{ destination: jobs }]\n`, 'workers', 'needs a redis store'],
  ])('refuses %s, naming the key', (_what, yaml, path, fragment) => {
    const found = problems(yaml);
    expect(found).toContainEqual({ path, message: expect.stringContaining(fragment) });
  });
});

describe('issuer config: message_ttl and message_audiences', () => {
  const issuer = (extra: string, client = '') => `
listen: 0.0.0.0:8443
issuer: https://sts.shop.svc.cluster.local
tls: { cert: s.pem, key: s.key, client_ca: ca.pem }
keys: { dir: keys }
${extra}
clients:
  - id: spiffe://cluster.local/ns/shop/sa/orders
    grants: [token_exchange]
${client}`;

  it('defaults message_ttl to 1h and message_audiences to none', () => {
    const config = parseIssuerConfig(issuer(''), { baseDir: '/etc' });
    expect(config.messageTtlMs).toBe(3_600_000);
    expect(config.clients[0]!.messageAudiences).toEqual([]);
    const set = parseIssuerConfig(issuer('message_ttl: 6h', '    message_audiences: [spiffe://cluster.local/ns/shop/sa/fulfilment]'), { baseDir: '/etc' });
    expect(set.messageTtlMs).toBe(6 * 3_600_000);
    expect(set.clients[0]!.messageAudiences).toEqual(['spiffe://cluster.local/ns/shop/sa/fulfilment']);
  });

  it('refuses a message_ttl above 24h', () => {
    expect(() => parseIssuerConfig(issuer('message_ttl: 48h'), { baseDir: '/etc' })).toThrow(/message_ttl: must be at most 24h/);
  });
});

import { writeFileSync } from 'node:fs';
import { BlockList, isIP, isIPv4 } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckInput } from '../src/authz/envoy-client.js';
import { loadAuthzMaterials } from '../src/authz/authz-materials.js';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { inCidr, timeOfDay, weekday } from '../src/policy/condition-functions.js';
import { compileCondition, ConditionCompileError } from '../src/policy/route-conditions.js';
import { ConfigError } from '../src/schema/config-error.js';
import { AUDIENCE, CHECKOUT, authzYaml, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';

/**
 * `when:` conditions through the real pipeline: a config file parsed as `hopguard authz` parses
 * it (so the CEL is compiled at load), a sidecar on loopback, checks over gRPC as Envoy sends them.
 */

let fixtures: Fixtures;
let server: Running;

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const todayUtc = () => DAYS[new Date().getUTCDay()]!;
const tomorrowUtc = () => DAYS[(new Date().getUTCDay() + 1) % 7]!;

function routesYaml(): string {
  return `
data:
  suspended_tenants: suspended.yaml
  plans: plans.json
routes:
  - name: tenant-orders
    path_prefix: /tenants/
    scopes: [orders:read]
    when:
      - name: own-tenant
        cel: request.path.startsWith('/tenants/' + token.claims.tenant + '/')
      - name: tenant-active
        cel: '!(token.claims.tenant in data.suspended_tenants)'
  - name: office-network
    path_prefix: /office/
    when:
      - name: from-office
        cel: request.source.address.inCidr('10.20.0.0/16') || request.source.address.inCidr('2001:db8::/32')
  - name: not-from-lab
    path_prefix: /not-lab/
    when:
      - name: outside-lab
        cel: '!request.source.address.inCidr(''192.168.7.0/24'')'
  - name: today
    path: /today
    when:
      - name: on-day
        cel: now.weekday('UTC') == '${todayUtc()}' && now.timeOfDay('UTC') >= '00:00'
  - name: tomorrow
    path: /tomorrow
    when:
      - name: on-day
        cel: now.weekday('UTC') == '${tomorrowUtc()}'
  - name: peek
    path: /peek
    when:
      - name: sees-authorization
        cel: "'authorization' in request.headers"
  - name: peek-value
    path: /peek-value
    when:
      - name: reads-authorization
        cel: request.headers['authorization'] != ''
  - name: header-and-query
    path: /search
    when:
      - name: header
        cel: request.headers['x-tenant'] == token.claims.tenant
      - name: query
        cel: request.query['tenant'] == token.claims.tenant && request.method == 'GET' && request.host == 'shop.local'
  - name: plan
    path: /premium
    when:
      - name: premium-plan
        cel: data.plans[token.claims.tenant].tier == 'premium'
  - name: who
    path: /who
    when:
      - name: caller-is-token-subject
        cel: request.source.principal == token.sub && token.client_id == token.sub && '${AUDIENCE}' in token.aud
          && 'orders:read' in token.scopes && token.exp > token.iat && token.iss.startsWith('https://') && size(token.jti) > 0
  - name: plain
    path_prefix: /plain/
`;
}

beforeAll(async () => {
  fixtures = await createFixtures();
  writeFileSync(join(fixtures.dir, 'suspended.yaml'), '- globex\n- initech\n');
  writeFileSync(join(fixtures.dir, 'plans.json'), JSON.stringify({ acme: { tier: 'premium' }, umbrella: { tier: 'free' } }));
  const config = parseAuthzConfig(`${authzYaml(fixtures)}${routesYaml()}`, { baseDir: fixtures.dir, source: 'authz.yaml' });
  server = await startServer(config);
});
afterAll(async () => {
  await server?.stop();
  fixtures.cleanup();
});

const asCheckout = { principal: CHECKOUT, certificatePem: () => fixtures.checkout.certPem };

async function check(input: Partial<CheckInput>, claims: Record<string, unknown> = { tenant: 'acme' }) {
  const token = await fixtures.token({ claims });
  return server.envoy.check({
    principal: asCheckout.principal, certificatePem: asCheckout.certificatePem(), path: '/', ...input,
    headers: { authorization: `Bearer ${token}`, ...input.headers },
  });
}

const outcome = (out: Awaited<ReturnType<typeof check>>) => (out.allowed ? 'allow' : `${out.body?.code}:${out.body?.condition ?? ''}`);

describe('when: conditions', () => {
  it('tenant isolation: the tenant in the path must be the token\'s', async () => {
    expect(outcome(await check({ path: '/tenants/acme/orders/1' }))).toBe('allow');
    const other = await check({ path: '/tenants/umbrella/orders/1' });
    expect(outcome(other)).toBe('condition_failed:own-tenant');
    expect(other.httpStatus).toBe(403);
    expect(other.grpcCode).toBe(7);
    expect(other.body?.error).toBe('access_denied');
    // A prefix of another tenant's name is not that tenant.
    expect(outcome(await check({ path: '/tenants/acmecorp/orders/1' }))).toBe('condition_failed:own-tenant');
  });

  it('`in data.*`: a suspended tenant is refused on its own path', async () => {
    expect(outcome(await check({ path: '/tenants/globex/orders/1' }, { tenant: 'globex' }))).toBe('condition_failed:tenant-active');
    expect(outcome(await check({ path: '/premium' }, { tenant: 'acme' }))).toBe('allow');
    expect(outcome(await check({ path: '/premium' }, { tenant: 'umbrella' }))).toBe('condition_failed:premium-plan');
    // Not in the data file at all: an error at run time, so denied.
    expect(outcome(await check({ path: '/premium' }, { tenant: 'nobody' }))).toBe('condition_failed:premium-plan');
  });

  it('a condition that errors at run time (a missing claim) denies, even under negation', async () => {
    // token.claims.tenant is missing: `!(... in data...)` must not come out true.
    expect(outcome(await check({ path: '/tenants/acme/orders/1' }, {}))).toBe('condition_failed:own-tenant');
    expect(outcome(await check({ path: '/premium' }, {}))).toBe('condition_failed:premium-plan');
  });

  it('CIDR: the caller\'s address, IPv4, IPv6 and IPv4-mapped; no address denies either way', async () => {
    expect(outcome(await check({ path: '/office/x', sourceAddress: '10.20.3.4' }))).toBe('allow');
    expect(outcome(await check({ path: '/office/x', sourceAddress: '::ffff:10.20.3.4' }))).toBe('allow');
    expect(outcome(await check({ path: '/office/x', sourceAddress: '2001:db8::1' }))).toBe('allow');
    expect(outcome(await check({ path: '/office/x', sourceAddress: '10.21.0.1' }))).toBe('condition_failed:from-office');
    expect(outcome(await check({ path: '/office/x' }))).toBe('condition_failed:from-office');
    expect(outcome(await check({ path: '/not-lab/x', sourceAddress: '10.0.0.1' }))).toBe('allow');
    expect(outcome(await check({ path: '/not-lab/x', sourceAddress: '192.168.7.9' }))).toBe('condition_failed:outside-lab');
    // No peer address is not "outside the lab".
    expect(outcome(await check({ path: '/not-lab/x' }))).toBe('condition_failed:outside-lab');
  });

  it('time window: day of week and time of day in a named zone', async () => {
    expect(outcome(await check({ path: '/today' }))).toBe('allow');
    expect(outcome(await check({ path: '/tomorrow' }))).toBe('condition_failed:on-day');
  });

  it('a condition cannot see the authorization header', async () => {
    expect(outcome(await check({ path: '/peek' }))).toBe('condition_failed:sees-authorization');
    expect(outcome(await check({ path: '/peek-value' }))).toBe('condition_failed:reads-authorization');
  });

  it('reads other headers, the decoded query, method and host', async () => {
    const search = { path: '/search?tenant=acme&x=1', host: 'shop.local', headers: { 'x-tenant': 'acme' } };
    expect(outcome(await check(search))).toBe('allow');
    expect(outcome(await check({ ...search, headers: { 'x-tenant': 'umbrella' } }))).toBe('condition_failed:header');
    expect(outcome(await check({ ...search, path: '/search?tenant=umbrella' }))).toBe('condition_failed:query');
    expect(outcome(await check({ ...search, path: '/search?tenant=%61cme' }))).toBe('allow');
    expect(outcome(await check({ ...search, host: 'other.local' }))).toBe('condition_failed:query');
  });

  it('sees the token\'s standard members and the caller', async () => {
    expect(outcome(await check({ path: '/who' }))).toBe('allow');
    expect(outcome(await check({ path: '/who', principal: 'spiffe://test.local/ns/shop/sa/other' }))).toBe('condition_failed:caller-is-token-subject');
  });

  it('runs after scopes: a token without the route\'s scope is insufficient_scope, not condition_failed', async () => {
    const token = await fixtures.token({ scope: 'payments:write', claims: { tenant: 'umbrella' } });
    const out = await server.envoy.check({
      path: '/tenants/acme/orders/1', principal: CHECKOUT, certificatePem: fixtures.checkout.certPem, headers: { authorization: `Bearer ${token}` },
    });
    expect(out.body?.code).toBe('insufficient_scope');
  });

  it('a condition_failed body names the condition and carries no claim value', async () => {
    const secret = 'tenant-value-9c1f2e';
    const out = await check({ path: '/tenants/acme/orders/1' }, { tenant: secret });
    expect(Object.keys(out.body!).sort()).toEqual(['code', 'condition', 'error', 'trace_id']);
    expect(JSON.stringify(out.raw)).not.toContain(secret);
  });

  it('leaves routes without conditions without any', async () => {
    const config = parseAuthzConfig(`${authzYaml(fixtures)}${routesYaml()}`, { baseDir: fixtures.dir });
    expect(config.routes.find((r) => r.name === 'plain')).not.toHaveProperty('conditions');
    expect(config.routes.find((r) => r.name === 'tenant-orders')?.conditions?.map((c) => c.name)).toEqual(['own-tenant', 'tenant-active']);
    expect(outcome(await check({ path: '/plain/x' }))).toBe('allow');
  });
});

describe('when: at config load', () => {
  const problems = (routes: string): string[] => {
    try {
      parseAuthzConfig(`${authzYaml(fixtures)}routes:\n${routes}`, { baseDir: fixtures.dir, source: 'authz.yaml' });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
    }
    throw new Error('expected a ConfigError');
  };
  const route = (cel: string, name = 'c1') => `  - name: r1\n    path: /x\n    when:\n      - name: ${name}\n        cel: ${JSON.stringify(cel)}\n`;

  it.each([
    ['request.path.startsWith(', 'does not parse'],
    ['tokn.sub == "x"', 'does not type-check: Unknown variable: tokn'],
    ['1 + "a"', 'does not type-check'],
    ['request.path.size()', 'must be a boolean expression, not int'],
    ['"a" + "b"', 'must be a boolean expression, not string'],
    ['request.source.address.inCidr("10.0.0.0/33")', 'inCidr("10.0.0.0/33"): the prefix length must be 0 to 32'],
    ['request.source.address.inCidr("ten")', 'inCidr("ten"): not an IP address or CIDR'],
    ['now.timeOfDay("Mars/Olympus") > "09:00"', 'timeOfDay("Mars/Olympus"): unknown time zone'],
    ['now.getHours("Mars/Olympus") > 9', 'getHours("Mars/Olympus"): unknown time zone'],
  ])('%s is a config error naming the route and the condition', (cel, why) => {
    const [problem, ...rest] = problems(route(cel));
    expect(rest).toEqual([]);
    expect(problem).toContain('routes[0].when[0].cel: condition "c1" of route "r1"');
    expect(problem).toContain(why);
  });

  it('refuses two conditions of one name, conditions on a public route, and bad data names', () => {
    expect(problems(`  - name: r1\n    path: /x\n    when:\n      - { name: a, cel: 'true' }\n      - { name: a, cel: 'true' }\n`))
      .toEqual(['routes[0].when[1].name: condition "a" of route "r1" is named twice: names tell denials apart']);
    expect(problems(`  - name: r1\n    path: /x\n    public: true\n    when:\n      - { name: a, cel: 'true' }\n`)[0]).toContain('routes[0].when: not allowed on a public route');
    expect(problems(`  - name: r1\n    path: /x\n    when:\n      - { name: a }\n`)).toEqual(['routes[0].when[0].cel: is required']);
    expect(() => parseAuthzConfig(`${authzYaml(fixtures)}data:\n  bad-name: x.yaml\nroutes:\n${route('true')}`, { baseDir: fixtures.dir }))
      .toThrow(/data\.bad-name: .*identifier/);
  });
});

describe('condition functions', () => {
  it('inCidr: ranges, single addresses, and errors for what is not an address', () => {
    expect(inCidr('10.1.2.3', '10.0.0.0/8')).toBe(true);
    expect(inCidr('11.1.2.3', '10.0.0.0/8')).toBe(false);
    expect(inCidr('10.1.2.3', '10.1.2.3')).toBe(true);
    expect(inCidr('10.1.2.3', '0.0.0.0/0')).toBe(true);
    expect(inCidr('2001:db8::5', '2001:db8::/32')).toBe(true);
    expect(inCidr('10.1.2.3', '2001:db8::/32')).toBe(false);
    expect(() => inCidr('', '10.0.0.0/8')).toThrow();
    expect(() => inCidr('10.1.2.3', '10.0.0.0/x')).toThrow();
  });

  it('inCidr: IPv4, compared in JS, answers as node:net\'s BlockList and isIPv4 do', () => {
    const blocks = ['0.0.0.0/0', '10.0.0.0/8', '10.1.2.3/8', '10.20.0.0/16', '192.168.7.0/24', '192.168.7.128/25', '10.1.2.3', '255.255.255.255/32', '128.0.0.0/1', '2001:db8::/32', '::/0'];
    const addresses = [
      '10.1.2.3', '10.0.0.0', '10.255.255.255', '11.0.0.0', '9.255.255.255', '0.0.0.0', '255.255.255.255', '192.168.7.127', '192.168.7.128',
      '127.0.0.1', '::ffff:10.1.2.3', '::FFFF:192.168.7.200', '2001:db8::5', '::1',
      // Not IPv4 as net.isIPv4 reads it: leading zeros, five octets, an octet past 255, spaces, empty octets.
      '010.1.2.3', '10.01.2.3', '10.1.2.3.4', '10.1.2', '256.1.2.3', '10.1.2.3 ', ' 10.1.2.3', '10..2.3', '.10.1.2', '10.1.2.', '', 'ten', '1e1.1.2.3',
    ];
    const reference = (address: string, block: string) => {
      const [network = '', prefix] = block.split('/');
      const family = isIP(network) === 4 ? 'ipv4' : 'ipv6';
      const list = new BlockList();
      list.addSubnet(network, prefix === undefined ? (family === 'ipv4' ? 32 : 128) : Number(prefix), family);
      const mapped = address.toLowerCase().startsWith('::ffff:') ? address.slice(7) : address;
      const plain = isIPv4(mapped) ? mapped : address;
      if (isIP(plain) === 0) return 'error';
      return list.check(plain, isIP(plain) === 4 ? 'ipv4' : 'ipv6');
    };
    const answered = (address: string, block: string) => {
      try {
        return inCidr(address, block);
      } catch {
        return 'error';
      }
    };
    let compared = 0;
    for (const block of blocks) {
      for (const address of addresses) {
        expect([address, block, answered(address, block)]).toEqual([address, block, reference(address, block)]);
        compared++;
      }
    }
    expect(compared).toBe(blocks.length * addresses.length);
  });

  it('timeOfDay and weekday follow the zone\'s offset, daylight saving included', () => {
    // 2026-03-29: Berlin moves from CET (+1) to CEST (+2) at 01:00 UTC.
    expect(timeOfDay(new Date('2026-03-29T00:30:00Z'), 'Europe/Berlin')).toBe('01:30');
    expect(timeOfDay(new Date('2026-03-29T01:30:00Z'), 'Europe/Berlin')).toBe('03:30');
    expect(timeOfDay(new Date('2026-01-01T23:30:00Z'), 'Europe/Berlin')).toBe('00:30');
    expect(weekday(new Date('2026-01-01T23:30:00Z'), 'Europe/Berlin')).toBe('Fri');
    expect(weekday(new Date('2026-01-01T23:30:00Z'), 'UTC')).toBe('Thu');
    expect(timeOfDay(new Date('2026-07-01T12:05:00Z'), 'America/New_York')).toBe('08:05');
  });

  it('compileCondition throws a typed error', () => {
    expect(() => compileCondition('x', 'nope(')).toThrow(ConditionCompileError);
  });
});

describe('data: files', () => {
  const load = (files: Record<string, string | Buffer>) => {
    const names = Object.keys(files);
    for (const name of names) writeFileSync(join(fixtures.dir, `${name}.data`), files[name]!);
    const yaml = `${authzYaml(fixtures)}data:\n${names.map((n) => `  ${n}: ${n}.data\n`).join('')}routes:\n  - { name: r, path: /x }\n`;
    return loadAuthzMaterials(parseAuthzConfig(yaml, { baseDir: fixtures.dir }));
  };
  const problems = (files: Record<string, string | Buffer>) => {
    try {
      load(files);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
    }
    throw new Error('expected a ConfigError');
  };

  it('reads YAML and JSON, frozen', () => {
    const { data } = load({ yamlish: 'a: [1, 2]\n', jsonish: '{"b": {"c": true}}' });
    expect(data).toEqual({ yamlish: { a: [1, 2] }, jsonish: { b: { c: true } } });
    expect(Object.isFrozen((data.yamlish as { a: unknown }).a)).toBe(true);
  });

  it('refuses a file over 4 MiB, an unreadable one and bad YAML, each by its key', () => {
    expect(problems({ big: Buffer.alloc(4 * 1024 * 1024 + 1, 0x20) })).toEqual([
      expect.stringMatching(/^data\.big: cannot read .*big\.data: it is larger than 4 MiB, the limit for a data file$/),
    ]);
    expect(problems({ broken: 'a: [1,\n' })[0]).toMatch(/^data\.broken: .*broken\.data: YAML syntax error at line/);
    const yaml = `${authzYaml(fixtures)}data:\n  missing: nowhere.yaml\nroutes:\n  - { name: r, path: /x }\n`;
    expect(() => loadAuthzMaterials(parseAuthzConfig(yaml, { baseDir: fixtures.dir }))).toThrow(/data\.missing: cannot read .*it does not exist/);
  });
});

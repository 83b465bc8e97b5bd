import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../src/config/authz-config.js';
import { RequestPathError, normalizeRequestPath } from '../src/policy/request-path.js';
import { RouteTable } from '../src/policy/route-table.js';
import { route } from './support/harness.js';

describe('normalizeRequestPath', () => {
  it.each([
    ['/orders/42', '/orders/42'],
    ['/orders/42?x=1#frag', '/orders/42'],
    ['/orders/', '/orders/'],
    ['/', '/'],
    ['/%6f%72ders/%7E', '/orders/~'],
    ['/a%20b/%c3%a9', '/a%20b/%C3%A9'],
    ['/.well-known/jwks.json', '/.well-known/jwks.json'],
    ['/a/..b/c.', '/a/..b/c.'],
  ])('%s → %s', (raw, normalized) => {
    expect(normalizeRequestPath(raw)).toBe(normalized);
  });

  it.each([
    'orders/42', '', '?x', '/a/../b', '/a/./b', '/a/..', '/a/.', '/a//b', '/a/%2e%2e/b', '/a/%2E/b', '/a%2fb',
    '/a%5Cb', '/a\\b', '/a b', '/a%zzb', '/a%4', '/caf\u00e9', '/a\u0000b',
  ])('refuses %j', (raw) => {
    expect(() => normalizeRequestPath(raw)).toThrow(RequestPathError);
  });
});

/** The definition of first-match-wins, to compare the indexed table against. */
function linearMatch(routes: RouteConfig[], method: string, path: string): RouteConfig | undefined {
  return routes.find((r) =>
    (r.methods.length === 0 || r.methods.includes(method))
    && (r.path !== undefined ? r.path === path : path.startsWith(r.pathPrefix!)));
}

describe('RouteTable', () => {
  it('first match wins, in config order', () => {
    const routes = [
      route('pay', { methods: ['POST'], path: '/payments' }),
      route('orders-get', { methods: ['GET'], pathPrefix: '/orders/' }),
      route('orders-any', { pathPrefix: '/orders' }),
      route('exact-after-prefix', { path: '/orders/special' }),
    ];
    const table = new RouteTable(routes);
    expect(table.match('POST', '/payments')?.name).toBe('pay');
    expect(table.match('GET', '/payments')).toBeUndefined();
    expect(table.match('GET', '/orders/special')?.name).toBe('orders-get');
    expect(table.match('PUT', '/orders/special')?.name).toBe('orders-any');
    expect(table.match('PUT', '/ordersX')?.name).toBe('orders-any');
    expect(table.match('GET', '/other')).toBeUndefined();
  });

  it('agrees with a linear scan on random tables and paths', () => {
    let seed = 42;
    const random = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const words = ['', 'a', 'b', 'ab', 'orders', 'x'];
    const randomPath = () => `/${Array.from({ length: random(4) }, () => words[random(words.length)]).join('/')}`;
    const methods = ['GET', 'POST', 'PUT'];
    for (let round = 0; round < 200; round++) {
      const routes = Array.from({ length: 1 + random(12) }, (_, i) => route(`r${i}`, {
        methods: random(2) ? [] : [methods[random(3)]!],
        ...(random(2) ? { path: randomPath() } : { pathPrefix: randomPath() }),
      }));
      const table = new RouteTable(routes);
      for (let probe = 0; probe < 20; probe++) {
        const method = methods[random(3)]!;
        const path = randomPath();
        expect(table.match(method, path)).toBe(linearMatch(routes, method, path));
      }
    }
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestPathError, normalizeRequestPath, withoutPathParameters } from '../src/policy/request-path.js';
import { RouteTable } from '../src/policy/route-table.js';
import type { RouteConfig } from '../src/vocabulary/route.js';
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
    ['/orders/1;v=2', '/orders/1;v=2'],
    ['/orders/..x;y/', '/orders/..x;y/'],
    ['/orders/;x', '/orders/;x'],
    ['/orders/1%3bv=2', '/orders/1%3Bv=2'],
  ])('%s → %s', (raw, normalized) => {
    expect(normalizeRequestPath(raw)).toBe(normalized);
  });

  it.each([
    'orders/42', '', '?x', '/a/../b', '/a/./b', '/a/..', '/a/.', '/a//b', '/a/%2e%2e/b', '/a/%2E/b', '/a%2fb',
    '/a%5Cb', '/a\\b', '/a b', '/a%zzb', '/a%4', '/caf\u00e9', '/a\u0000b',
    // A segment named "." or ".." once its ";params" are stripped (Tomcat, Jetty, Spring), raw or encoded.
    '/orders/..;/admin', '/orders/..;x=1/admin', '/orders/%2e%2e;/admin', '/orders/%2E%2e;/admin', '/orders/.%2e;/admin',
    '/orders/.;x/', '/orders/.;', '/orders/..%3b/admin', '/orders/..%3B/admin', '/orders;/../admin', '/orders/;x/1', '/;x/orders',
  ])('refuses %j', (raw) => {
    expect(() => normalizeRequestPath(raw)).toThrow(RequestPathError);
  });

  it('judges segments as splitting the path on "/" does: the first bad segment names the error', () => {
    // The definition: split (after ;params are stripped), then the first "." / ".." segment, or empty one before the last.
    const bySplit = (path: string) => {
      const segments = withoutPathParameters(path).split('/');
      for (let i = 1; i < segments.length; i++) {
        if (segments[i] === '.' || segments[i] === '..') return 'request path has a dot segment';
        if (segments[i] === '' && i < segments.length - 1) return 'request path has an empty segment';
      }
      return path;
    };
    const answer = (path: string) => {
      try {
        return normalizeRequestPath(path);
      } catch (err) {
        return (err as RequestPathError).message;
      }
    };
    const segment = fc.constantFrom('', '.', '..', '...', 'a', '.a', 'a.', '..a', 'orders', ';x', '.;x', '..;', 'a;b');
    fc.assert(fc.property(fc.array(segment, { maxLength: 6 }), (segments) => {
      const path = `/${segments.join('/')}`;
      expect(answer(path)).toBe(bySplit(path));
    }), { numRuns: 2000 });
  });
});

/** The definition of first-match-wins, to compare the indexed table against; `fold` compares without regard to case. */
function linearMatch(routes: RouteConfig[], method: string, path: string, fold = (s: string) => s): RouteConfig | undefined {
  return routes.find((r) =>
    (r.methods.length === 0 || r.methods.includes(method))
    && (r.path !== undefined ? fold(r.path) === fold(path) : fold(path).startsWith(fold(r.pathPrefix!))));
}
const caseFolded = (s: string) => s.toLowerCase();

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

  describe('a path that another server would read as another route', () => {
    const table = new RouteTable([
      route('admin', { path: '/orders/admin' }),
      route('export', { pathPrefix: '/orders/export/' }),
      route('read-orders', { pathPrefix: '/orders/' }),
      route('reports', { pathPrefix: '/Reports/' }),
    ]);
    const withCatchAll = new RouteTable([route('read-orders', { pathPrefix: '/orders/' }), route('rest', { pathPrefix: '/' })]);

    it('matches ";params" where removing them keeps the route', () => {
      expect(table.match('GET', '/orders/1;v=2')?.name).toBe('read-orders');
      expect(table.match('GET', '/orders/1%3Bv=2/items')?.name).toBe('read-orders');
      expect(table.match('GET', '/orders/export/all;jsessionid=1')?.name).toBe('export');
      expect(table.match('GET', '/orders;x/1')).toBeUndefined();
    });

    it.each([
      [table, '/orders/admin;x'],
      [table, '/orders/admin%3Bx'],
      [table, '/orders/export;x/all'],
      [withCatchAll, '/orders;x/1'],
      [withCatchAll, '/orders%3Bx/1'],
    ])('refuses ";params" that change the route: %#', (routes, path) => {
      expect(() => routes.match('GET', path)).toThrow(RequestPathError);
    });

    it('matches case-sensitively, and refuses a path that matches another route without regard to case', () => {
      expect(table.match('GET', '/orders/ABC-1')?.name).toBe('read-orders');
      expect(table.match('GET', '/Reports/q1')?.name).toBe('reports');
      expect(table.match('GET', '/Orders/1')).toBeUndefined();
      expect(table.match('GET', '/reports/q1')).toBeUndefined();
      for (const path of ['/orders/ADMIN', '/orders/Export/all', '/orders/Admin;x']) expect(() => table.match('GET', path)).toThrow(RequestPathError);
      const reports = new RouteTable([route('reports', { pathPrefix: '/Reports/' }), route('rest', { pathPrefix: '/' })]);
      expect(() => reports.match('GET', '/reports/q1')).toThrow(RequestPathError);
    });

    it('property: a match is the route of every reading (as written, without ";params", without case); a refusal means two readings differ', () => {
      let seed = 7;
      // The high bits: an LCG's low bits repeat with a short period.
      const random = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return Math.floor((seed / 2 ** 31) * n); };
      const routeWords = ['a', 'A', 'ab', 'aB', 'x'];
      const pathWords = [...routeWords, 'a;x', 'A;v', 'ab%3Bv', 'ab;', 'x;a'];
      const randomPath = (words: string[], length: number) => `/${Array.from({ length }, () => words[random(words.length)]).join('/')}`;
      // Paths near a route's key: extended, with ";params" put in, with the case of a letter flipped.
      const nearRoute = (key: string) => {
        let path = random(2) ? `${key}${randomPath(pathWords, random(2))}` : key;
        if (random(2)) {
          const at = random(path.length) + 1;
          path = `${path.slice(0, at)}${random(2) ? ';v' : '%3Bv'}${path.slice(at)}`;
        }
        if (random(2)) {
          const at = random(path.length);
          const c = path[at]!;
          path = `${path.slice(0, at)}${c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()}${path.slice(at + 1)}`;
        }
        return path;
      };
      const counts = { unmatched: 0, matched: 0, refused: 0 };
      for (let round = 0; round < 200; round++) {
        const routes = Array.from({ length: 1 + random(8) }, (_, i) => route(`r${i}`, {
          ...(random(2) ? { path: randomPath(routeWords, 1 + random(3)) } : { pathPrefix: `${randomPath(routeWords, 1 + random(2))}${random(2) ? '/' : ''}` }),
        })).sort((a, b) => (b.path ?? b.pathPrefix)!.length - (a.path ?? a.pathPrefix)!.length); // specific first, as configs are
        const routeTable = new RouteTable(routes);
        for (let probe = 0; probe < 20; probe++) {
          const near = routes[random(routes.length)]!;
          const path = random(3) ? nearRoute((near.path ?? near.pathPrefix)!) : randomPath(pathWords, 1 + random(3));
          const bare = withoutPathParameters(path);
          const readings = [
            linearMatch(routes, 'GET', path), linearMatch(routes, 'GET', bare),
            linearMatch(routes, 'GET', path, caseFolded), linearMatch(routes, 'GET', bare, caseFolded),
          ];
          const asWritten = readings[0];
          if (asWritten === undefined) {
            counts.unmatched++;
            expect(routeTable.match('GET', path)).toBeUndefined();
          } else if (readings.every((r) => r === asWritten)) {
            counts.matched++;
            expect(routeTable.match('GET', path)).toBe(asWritten);
          } else {
            counts.refused++;
            expect(() => routeTable.match('GET', path)).toThrow(RequestPathError);
          }
        }
      }
      // The generator reaches every outcome often enough to mean something.
      for (const n of Object.values(counts)) expect(n).toBeGreaterThan(100);
    });
  });
});

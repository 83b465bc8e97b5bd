import type { RouteConfig } from '../config/authz-config.js';

/**
 * First match wins, in config order. Matching must not slow down as routes grow
 * (10 vs 10,000 routes), so instead of testing every route the table looks up:
 * exact paths in one map, and prefixes in a map probed once per distinct prefix length.
 * The candidates' config positions are merged in order and the first one whose method
 * fits wins: the same answer as a linear scan.
 */
export class RouteTable {
  private readonly exact = new Map<string, number[]>();
  private readonly prefixes = new Map<string, number[]>();
  private readonly prefixLengths: number[];
  private readonly methods: (ReadonlySet<string> | undefined)[];

  constructor(private readonly routes: readonly RouteConfig[]) {
    routes.forEach((route, index) => {
      const [map, key] = route.path !== undefined ? [this.exact, route.path] : [this.prefixes, route.pathPrefix!];
      const list = map.get(key);
      if (list) list.push(index);
      else map.set(key, [index]);
    });
    this.prefixLengths = [...new Set([...this.prefixes.keys()].map((p) => p.length))].sort((a, b) => a - b);
    this.methods = routes.map((r) => (r.methods.length > 0 ? new Set(r.methods) : undefined));
  }

  /** `path` is already normalized (see request-path.ts); `method` as Envoy sends it. */
  match(method: string, path: string): RouteConfig | undefined {
    let best = Number.POSITIVE_INFINITY;
    best = this.firstFitting(this.exact.get(path), method, best);
    for (const length of this.prefixLengths) {
      if (length > path.length) break;
      best = this.firstFitting(this.prefixes.get(path.slice(0, length)), method, best);
    }
    return best === Number.POSITIVE_INFINITY ? undefined : this.routes[best];
  }

  /** The lowest index below `best` in `candidates` (ascending) whose method fits. */
  private firstFitting(candidates: number[] | undefined, method: string, best: number): number {
    if (!candidates) return best;
    for (const index of candidates) {
      if (index >= best) break;
      const methods = this.methods[index];
      if (!methods || methods.has(method)) return index;
    }
    return best;
  }
}

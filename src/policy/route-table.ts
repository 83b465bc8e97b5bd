import type { RouteConfig } from '../vocabulary/route.js';
import { RequestPathError, withoutPathParameters } from './request-path.js';

const NONE = Number.POSITIVE_INFINITY;

/**
 * First match wins, in config order. Matching must not slow down as routes grow
 * (10 vs 10,000 routes), so instead of testing every route the table looks up:
 * exact paths in one map, and prefixes in a map probed once per distinct prefix length.
 * The candidates' config positions are merged in order and the first one whose method
 * fits wins: the same answer as a linear scan.
 *
 * Routes match byte for byte, case-sensitively. The application behind Envoy may read a path
 * another way: without its `;params` (Tomcat, Jetty, Spring), or case-insensitively (ASP.NET,
 * IIS, some Spring setups). A path that some reading sends to another route than the one it
 * matches as written is refused, so `/orders/admin;x` or `/orders/ADMIN` cannot reach a
 * stricter `/orders/admin` route under the rules of a looser `/orders/` one.
 */
export class RouteTable {
  private readonly asWritten: RouteIndex;
  /** The same routes with lower-case paths: the positions agree with `asWritten`. */
  private readonly caseFolded: RouteIndex;
  private readonly anyUpperCaseRoute: boolean;

  constructor(private readonly routes: readonly RouteConfig[]) {
    const methods = routes.map((r) => (r.methods.length > 0 ? new Set(r.methods) : undefined));
    const keys = routes.map((r) => ({ exact: r.path !== undefined, key: (r.path ?? r.pathPrefix)! }));
    this.asWritten = new RouteIndex(keys, methods);
    this.caseFolded = new RouteIndex(keys.map((k) => ({ ...k, key: k.key.toLowerCase() })), methods);
    this.anyUpperCaseRoute = keys.some((k) => /[A-Z]/.test(k.key));
  }

  /**
   * `path` is already normalized (see request-path.ts); `method` as Envoy sends it.
   * Throws RequestPathError when another reading of the path picks another route.
   */
  match(method: string, path: string): RouteConfig | undefined {
    const index = this.asWritten.first(method, path);
    // Nothing matched as written: denied whatever another reading would pick.
    if (index === NONE) return undefined;
    const bare = withoutPathParameters(path);
    if (bare !== path && this.asWritten.first(method, bare) !== index) {
      throw new RequestPathError('request path matches another route once its ";" parameters are removed');
    }
    if (this.anyUpperCaseRoute || /[A-Z]/.test(path)) {
      for (const reading of new Set([path.toLowerCase(), bare.toLowerCase()])) {
        if (this.caseFolded.first(method, reading) !== index) {
          throw new RequestPathError('request path matches another route when compared without regard to case');
        }
      }
    }
    return this.routes[index];
  }
}

/** Config positions of routes by exact path and by prefix; `first` is the lowest that fits, or NONE. */
class RouteIndex {
  private readonly exact = new Map<string, number[]>();
  private readonly prefixes = new Map<string, number[]>();
  private readonly prefixLengths: number[];

  constructor(
    keys: readonly { exact: boolean; key: string }[],
    private readonly methods: readonly (ReadonlySet<string> | undefined)[],
  ) {
    keys.forEach(({ exact, key }, index) => {
      const map = exact ? this.exact : this.prefixes;
      const list = map.get(key);
      if (list) list.push(index);
      else map.set(key, [index]);
    });
    this.prefixLengths = [...new Set([...this.prefixes.keys()].map((p) => p.length))].sort((a, b) => a - b);
  }

  first(method: string, path: string): number {
    let best = this.firstFitting(this.exact.get(path), method, NONE);
    for (const length of this.prefixLengths) {
      if (length > path.length) break;
      best = this.firstFitting(this.prefixes.get(path.slice(0, length)), method, best);
    }
    return best;
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

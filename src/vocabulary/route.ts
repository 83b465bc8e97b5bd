// One route of the policy, as its config names it.

import type { RouteCondition } from './route-condition.js';

export interface RouteConfig {
  name: string;
  /** Upper-case; empty means any method. */
  methods: string[];
  /** Exactly one of path / pathPrefix is set. */
  path?: string;
  pathPrefix?: string;
  scopes: string[];
  /** Allowed `source.principal` values; empty means any caller. */
  callers: string[];
  public: boolean;
  oneTime: boolean;
  /** Keep the `authorization` header on the request that reaches the application. */
  forwardToken: boolean;
  /** `when:`, compiled; absent (not empty) when the route has none, so such routes pay nothing. */
  conditions?: readonly RouteCondition[];
}

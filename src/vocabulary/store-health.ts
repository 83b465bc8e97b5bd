// Whether shared state can be trusted right now: what readiness, metrics and checks act on.

export type StoreHealth =
  /** Revocation state is current; one-time marks can be written. */
  | { state: 'ok' }
  /** Cannot reach shared state. Revocation state is as of `sinceMs`; still usable until the bound. */
  | { state: 'degraded'; sinceMs: number }
  /** Revocation state is too old to trust: every token-checked route fails closed. */
  | { state: 'unavailable' };

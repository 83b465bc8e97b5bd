import type { Attributes, BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import type { Decision } from '../vocabulary/decision.js';
import type { StoreHealth } from '../vocabulary/store-health.js';

export interface AuthzMetrics {
  /** One per Check: the decision by code and route, and how long it took. */
  recordDecision(decision: Decision, seconds: number): void;
  recordJwksFetch(issuer: string, outcome: 'ok' | 'error'): void;
  /** One per config reload (SIGHUP or a changed file): applied, or refused and the old config kept. */
  recordConfigReload(outcome: 'ok' | 'failed'): void;
  /** Audit records written to the log (once the write succeeded), or dropped: the writer fell too far behind, or the write failed. */
  recordAudit(outcome: 'written' | 'dropped', count: number): void;
  /** A leaked token this sidecar acted on (signals/leak-response.ts), once per token. */
  recordLeak(kind: string): void;
  /** Shared-state health, revocation-feed lag and what one-time marks could not do, read when metrics are collected. */
  observeStore(health: () => StoreHealth, oneTime: () => { refusedFull: number; releasesAbandoned: number }): void;
}

/** The outbound check's (egress.listen): its decisions and the tokens it obtained. */
export interface EgressMetrics {
  /** One per outbound check: allowed or the deny code, by the destination's audience ('' when no destination matched). */
  recordDecision(code: string, audience: string, seconds: number): void;
  /** One per request to the issuer, by grant (token_exchange, client_credentials) and outcome. */
  recordTokenRequest(grant: string, outcome: 'ok' | 'refused' | 'unavailable'): void;
  recordCacheLookup(hit: boolean): void;
}

// Checks take tens of microseconds to a few milliseconds; the default buckets start at 5 ms.
const CHECK_SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const STORE_STATES: StoreHealth['state'][] = ['ok', 'degraded', 'unavailable'];

// The histogram's attributes: the same two objects every time, so nothing is allocated per check.
const ALLOW = Object.freeze({ decision: 'allow' });
const DENY = Object.freeze({ decision: 'deny' });

/**
 * hopguard's instruments (Prometheus names in the README). Recording is an in-memory
 * aggregate update: nothing on the check path waits for an exporter. The per-check counters
 * are plain counts (a map update, not an SDK call that hashes its attributes) that the
 * exporter reads as observable counters when it collects: same series, same totals.
 */
export function createAuthzMetrics(meter: Meter): AuthzMetrics {
  const decisions = meter.createObservableCounter('hopguard.decisions', { description: 'Check decisions by outcome, deny code and route' });
  const duration = meter.createHistogram('hopguard.check.duration', {
    unit: 's',
    description: 'Time to decide one Check',
    advice: { explicitBucketBoundaries: CHECK_SECONDS_BUCKETS },
  });
  const cache = meter.createObservableCounter('hopguard.verification_cache.lookups', { description: 'Verified-token cache lookups by result' });
  /** By route name, then code. */
  const { decisionCounts, lookups } = decisionsAndLookups(meter, decisions, cache);
  const jwks = meter.createCounter('hopguard.jwks.fetches', { description: 'Key set fetches (start, refresh, unknown kid) by issuer and outcome' });
  const audit = meter.createCounter('hopguard.audit.records', { description: 'Audit records by outcome: written (in the log), or dropped (queue full, or the write failed)' });
  const leaks = meter.createCounter('hopguard.leaks', { description: 'Tokens suspected leaked by kind (wrong_certificate, wrong_dpop_key, two_callers), once per token' });
  // Present at 0 from the start: an alert on increase() misses a series whose first sample is already 1.
  for (const kind of ['wrong_certificate', 'wrong_dpop_key', 'two_callers']) leaks.add(0, { kind });
  audit.add(0, { outcome: 'dropped' });
  const conditions = meter.createCounter('hopguard.condition_failures', { description: 'condition_failed denials by route and the condition that did not hold' });
  const reloads = meter.createCounter('hopguard.config.reloads', { description: 'Config reloads by outcome: ok (applied) or failed (invalid, the old config kept)' });

  return {
    recordDecision(decision, seconds) {
      const route = decision.route?.name ?? '';
      const code = decision.allowed ? 'allowed' : decision.code;
      decisionCounts.add(route, code, () => ({ decision: decision.allowed ? 'allow' : 'deny', code, route }));
      duration.record(seconds, decision.allowed ? ALLOW : DENY);
      if (decision.token) lookupResult(lookups, decision.cacheHit ?? false);
      if (!decision.allowed && decision.condition !== undefined) conditions.add(1, { route, condition: decision.condition });
    },
    recordJwksFetch(issuer, outcome) {
      jwks.add(1, { issuer, outcome });
    },
    recordConfigReload(outcome) {
      reloads.add(1, { outcome });
    },
    recordAudit(outcome, count) {
      audit.add(count, { outcome });
    },
    recordLeak(kind) {
      leaks.add(1, { kind });
    },
    observeStore(health, oneTime) {
      const refusedFull = meter.createObservableCounter('hopguard.store.capacity_exhausted', {
        description: 'One-time uses denied state_unavailable because store: memory held memory.max_one_time_entries live marks',
      });
      const abandoned = meter.createObservableCounter('hopguard.one_time.releases_abandoned', {
        description: 'One-time marks of denied checks that Redis could not be told to give back within a minute: those tokens stay spent',
      });
      meter.addBatchObservableCallback((result) => {
        const counts = oneTime();
        result.observe(refusedFull, counts.refusedFull);
        result.observe(abandoned, counts.releasesAbandoned);
      }, [refusedFull, abandoned]);
      const state = meter.createObservableGauge('hopguard.store.state', {
        description: 'Shared state: 1 for the current state (ok, degraded, unavailable), 0 for the others',
      });
      const lag = meter.createObservableGauge('hopguard.revocation_feed.lag', {
        unit: 's',
        description: 'How stale the revocation mirror may be: 0 while the feed is live, else the time since it was last known current',
      });
      let lastOkMs = Date.now();
      let lostSinceMs: number | undefined;
      meter.addBatchObservableCallback((result) => {
        const now = Date.now();
        const current = health();
        if (current.state === 'ok') {
          lastOkMs = now;
          lostSinceMs = undefined;
        } else if (current.state === 'degraded') {
          lostSinceMs = current.sinceMs;
        }
        for (const s of STORE_STATES) result.observe(state, s === current.state ? 1 : 0, { state: s });
        // `unavailable` carries no timestamp: the feed was lost when last seen degraded, else after the last ok.
        result.observe(lag, current.state === 'ok' ? 0 : (now - (lostSinceMs ?? lastOkMs)) / 1000);
      }, [state, lag]);
    },
  };
}

export function createEgressMetrics(meter: Meter): EgressMetrics {
  const decisions = meter.createObservableCounter('hopguard.egress.decisions', { description: 'Outbound check decisions by outcome, deny code and destination audience' });
  const duration = meter.createHistogram('hopguard.egress.check.duration', {
    unit: 's',
    description: 'Time to decide one outbound Check, issuer requests included',
    advice: { explicitBucketBoundaries: CHECK_SECONDS_BUCKETS },
  });
  const tokenRequests = meter.createCounter('hopguard.egress.token_requests', { description: 'Token requests to the issuer by grant and outcome (ok, refused, unavailable)' });
  const cache = meter.createObservableCounter('hopguard.egress.token_cache.lookups', { description: 'Outbound token cache lookups by result' });
  /** By audience, then code. */
  const { decisionCounts, lookups } = decisionsAndLookups(meter, decisions, cache);
  return {
    recordDecision(code, audience, seconds) {
      const decision = code === 'allowed' ? 'allow' : 'deny';
      decisionCounts.add(audience, code, () => ({ decision, code, audience }));
      duration.record(seconds, decision === 'allow' ? ALLOW : DENY);
    },
    recordTokenRequest(grant, outcome) {
      tokenRequests.add(1, { grant, outcome });
    },
    recordCacheLookup(hit) {
      lookupResult(lookups, hit);
    },
  };
}

/** The messages API's (messages.listen): seals and checks. */
export interface MessagesMetrics {
  /** One per seal or check answered (bad input is not counted): allowed or the deny code, by destination ('' when not configured). */
  recordDecision(operation: 'seal' | 'check', code: string, destination: string, seconds: number): void;
}

export function createMessagesMetrics(meter: Meter): MessagesMetrics {
  const decisions = meter.createObservableCounter('hopguard.messages.decisions', { description: 'Message seals and checks by operation, outcome, deny code and destination' });
  const duration = meter.createHistogram('hopguard.messages.duration', {
    unit: 's',
    description: 'Time to answer one message seal (an issuer request included) or check',
    advice: { explicitBucketBoundaries: CHECK_SECONDS_BUCKETS },
  });
  const counts = new SeriesCounts();
  meter.addBatchObservableCallback((result) => counts.observe(result, decisions), [decisions]);
  const attributes = { seal: { allow: { operation: 'seal', decision: 'allow' }, deny: { operation: 'seal', decision: 'deny' } },
    check: { allow: { operation: 'check', decision: 'allow' }, deny: { operation: 'check', decision: 'deny' } } } as const;
  return {
    recordDecision(operation, code, destination, seconds) {
      const decision = code === 'allowed' ? 'allow' : 'deny';
      counts.add(`${operation} ${destination}`, code, () => ({ operation, decision, code, destination }));
      duration.record(seconds, attributes[operation][decision]);
    },
  };
}

/**
 * Per-check counts by two keys, each series with the attributes it is reported under (made
 * once, when the series first counts), observed as an observable counter's series. As a
 * counter would, a series appears once something was counted in it.
 */
class SeriesCounts {
  private readonly counts = new Map<string, Map<string, { attributes: Attributes; count: number }>>();

  add(outer: string, inner: string, attributes: () => Attributes): void {
    let byInner = this.counts.get(outer);
    if (!byInner) this.counts.set(outer, (byInner = new Map()));
    const counted = byInner.get(inner);
    if (counted) counted.count++;
    else byInner.set(inner, { attributes: attributes(), count: 1 });
  }

  observe(result: BatchObservableResult, instrument: Observable): void {
    for (const byInner of this.counts.values()) {
      for (const { attributes, count } of byInner.values()) result.observe(instrument, count, attributes);
    }
  }
}

/** The per-check counts behind a decisions and a cache-lookups observable counter, observed together. */
function decisionsAndLookups(meter: Meter, decisions: Observable, cache: Observable) {
  const counts = { decisionCounts: new SeriesCounts(), lookups: new SeriesCounts() };
  meter.addBatchObservableCallback((result) => {
    counts.decisionCounts.observe(result, decisions);
    counts.lookups.observe(result, cache);
  }, [decisions, cache]);
  return counts;
}

function lookupResult(lookups: SeriesCounts, hit: boolean): void {
  lookups.add('', hit ? 'hit' : 'miss', () => ({ result: hit ? 'hit' : 'miss' }));
}

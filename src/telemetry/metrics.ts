import type { IncomingMessage, ServerResponse } from 'node:http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { Decision } from '../authz/decision.js';

export interface AuthzMetrics {
  /** One per Check: the decision by code and route, and how long it took. */
  recordDecision(decision: Decision, seconds: number): void;
  recordJwksFetch(issuer: string, outcome: 'ok' | 'error'): void;
  /** Serves Prometheus text (admin `/metrics`). */
  serve(request: IncomingMessage, response: ServerResponse): void;
  shutdown(): Promise<void>;
}

// Checks take tens of microseconds to a few milliseconds; the default buckets start at 5 ms.
const CHECK_SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * OpenTelemetry instruments read by a Prometheus serializer on the admin listener
 * (no second HTTP server). Recording is an in-memory aggregate update: nothing on the
 * check path waits for an exporter.
 */
export function createAuthzMetrics(): AuthzMetrics {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const meter = provider.getMeter('hopguard');
  const decisions = meter.createCounter('hopguard.decisions', { description: 'Check decisions by outcome, deny code and route' });
  const duration = meter.createHistogram('hopguard.check.duration', {
    unit: 's',
    description: 'Time to decide one Check',
    advice: { explicitBucketBoundaries: CHECK_SECONDS_BUCKETS },
  });
  const cache = meter.createCounter('hopguard.verification_cache.lookups', { description: 'Verified-token cache lookups by result' });
  const jwks = meter.createCounter('hopguard.jwks.fetches', { description: 'Key set fetches by issuer and outcome' });

  return {
    recordDecision(decision, seconds) {
      const route = decision.route?.name ?? '';
      const code = decision.allowed ? 'allowed' : decision.code;
      decisions.add(1, { decision: decision.allowed ? 'allow' : 'deny', code, route });
      duration.record(seconds, { decision: decision.allowed ? 'allow' : 'deny' });
      if (decision.token) cache.add(1, { result: decision.cacheHit ? 'hit' : 'miss' });
    },
    recordJwksFetch(issuer, outcome) {
      jwks.add(1, { issuer, outcome });
    },
    serve(request, response) {
      exporter.getMetricsRequestHandler(request, response);
    },
    shutdown: () => provider.shutdown(),
  };
}

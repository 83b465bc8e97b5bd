import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../src/store/memory-store.js';
import type { TelemetryConfig } from '../src/telemetry/telemetry-config.js';
import { startOtlpGrpcReceiver, startOtlpHttpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import {
  AUDIENCE, CHECKOUT, ISSUER, authzConfig, createFixtures, route, startServer, type Fixtures, type Running,
} from './support/harness.js';

const PAYMENTS = 'spiffe://test.local/ns/shop/sa/payments';
const LEDGER = 'spiffe://test.local/ns/shop/sa/ledger';
const SPAN_KIND_SERVER = 2;
const STATUS_ERROR = 2;

let fixtures: Fixtures;
beforeAll(async () => {
  fixtures = await createFixtures();
});
afterAll(() => fixtures.cleanup());

const id = (bytes: number) => randomBytes(bytes).toString('hex');
const traceparent = (traceId: string, spanId: string, flags = '01') => `00-${traceId}-${spanId}-${flags}`;
const asCheckout = () => ({ principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });

async function sidecar(audience: string, telemetry: Partial<TelemetryConfig>): Promise<Running> {
  return startServer(authzConfig(fixtures, {
    audience,
    routes: [route('read-orders', { methods: ['GET'], pathPrefix: '/orders/', scopes: ['orders:read'] }), route('any', { pathPrefix: '/' })],
    telemetry: { tracing: true, otlpMetrics: false, ...telemetry },
  }));
}

const checks = (spans: ReceivedSpan[]) => spans.filter((s) => s.name === 'hopguard.check');

describe('a request across three services, traced hop by hop', () => {
  let receiver: OtlpReceiver;
  const traceId = id(16);
  const envoyOrders = id(8);
  const envoyPayments = id(8);
  const paymentsApp = id(8);
  let denied: Awaited<ReturnType<Running['envoy']['check']>>;

  beforeAll(async () => {
    receiver = await startOtlpHttpReceiver();
    const otlp = { endpoint: receiver.endpoint, protocol: 'http/protobuf' } as const;
    const [orders, payments, ledger] = await Promise.all([
      sidecar(AUDIENCE, { serviceName: 'orders-hopguard', ...otlp }),
      sidecar(PAYMENTS, { serviceName: 'payments-hopguard', ...otlp }),
      sidecar(LEDGER, { serviceName: 'ledger-hopguard', ...otlp }),
    ]);
    try {
      // Hop 1: Envoy in front of orders propagates its ext_authz client span in the gRPC metadata.
      const first = await orders.envoy.check({
        path: '/orders/42', headers: { authorization: `Bearer ${await fixtures.token()}`, 'x-request-id': 'req-1' },
        traceparent: traceparent(traceId, envoyOrders), ...asCheckout(),
      });
      expect(first.allowed).toBe(true);
      // Hop 2: orders calls payments; payments' Envoy does the same with its own client span.
      const second = await payments.envoy.check({
        method: 'POST', path: '/pay', headers: { authorization: `Bearer ${await fixtures.token({ aud: PAYMENTS })}`, traceparent: traceparent(traceId, id(8)) },
        traceparent: traceparent(traceId, envoyPayments), ...asCheckout(),
      });
      expect(second.allowed).toBe(true);
      // Hop 3: ledger's Envoy traces nothing: only the request's own traceparent (from the payments app) is there.
      denied = await ledger.envoy.check({
        method: 'POST', path: '/entries',
        headers: { authorization: `Bearer ${await fixtures.token({ aud: PAYMENTS })}`, traceparent: traceparent(traceId, paymentsApp) },
        ...asCheckout(),
      });
    } finally {
      // Stopping exports what the batch processors still hold.
      await Promise.all([orders.stop(), payments.stop(), ledger.stop()]);
    }
  });
  afterAll(() => receiver.close());

  it('exports one SERVER span per check over OTLP/HTTP protobuf, all in the request\'s trace', () => {
    expect(receiver.contentTypes.every((t) => t === 'application/x-protobuf')).toBe(true);
    const spans = checks(receiver.spans);
    expect(spans.map((s) => s.service).sort()).toEqual(['ledger-hopguard', 'orders-hopguard', 'payments-hopguard']);
    for (const span of spans) {
      expect(span.traceId).toBe(traceId);
      expect(span.kind).toBe(SPAN_KIND_SERVER);
    }
  });

  it('parents each check on Envoy\'s span from the gRPC metadata, else on the request\'s traceparent', () => {
    const parentOf = (service: string) => checks(receiver.spans).find((s) => s.service === service)?.parentSpanId;
    expect(parentOf('orders-hopguard')).toBe(envoyOrders);
    expect(parentOf('payments-hopguard')).toBe(envoyPayments);
    expect(parentOf('ledger-hopguard')).toBe(paymentsApp);
  });

  it('describes the decision with identifiers only', () => {
    const orders = checks(receiver.spans).find((s) => s.service === 'orders-hopguard')!;
    expect(orders.attributes).toMatchObject({
      'hopguard.decision': 'allow',
      'hopguard.route': 'read-orders',
      'hopguard.issuer': ISSUER,
      'hopguard.audience': AUDIENCE,
      'hopguard.binding': 'mtls',
      'hopguard.caller': CHECKOUT,
      'hopguard.cache_hit': false,
      'http.request.header.x-request-id': ['req-1'],
      'rpc.system': 'grpc',
      'rpc.method': 'Check',
    });
    expect(orders.attributes['hopguard.token.fingerprint']).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(orders.attributes['hopguard.deny_code']).toBeUndefined();
  });

  it('gives a denial the deny code, and its body the span\'s trace id', () => {
    const ledger = checks(receiver.spans).find((s) => s.service === 'ledger-hopguard')!;
    expect(denied.allowed).toBe(false);
    expect(denied.body?.trace_id).toBe(traceId);
    expect(ledger.attributes).toMatchObject({ 'hopguard.decision': 'deny', 'hopguard.deny_code': 'audience_mismatch', 'hopguard.route': 'any' });
    // A denial is the check working, not an error.
    expect(ledger.status.code).not.toBe(STATUS_ERROR);
  });
});

describe('export settings', () => {
  it('exports over OTLP/gRPC, and marks a failure to decide as an error', async () => {
    const receiver = await startOtlpGrpcReceiver();
    const stale = new MemoryStore();
    stale.health = () => ({ state: 'unavailable' });
    const server = await startServer(authzConfig(fixtures, {
      telemetry: { tracing: true, otlpMetrics: false, endpoint: receiver.endpoint, protocol: 'grpc', serviceName: 'grpc-hopguard' },
    }), stale);
    try {
      const out = await server.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${await fixtures.token()}` }, ...asCheckout() });
      expect(out.body?.code).toBe('state_unavailable');
    } finally {
      await server.stop();
      await receiver.close();
    }
    const [span] = checks(receiver.spans);
    expect(span?.service).toBe('grpc-hopguard');
    expect(span?.attributes).toMatchObject({ 'hopguard.deny_code': 'state_unavailable', 'error.type': 'state_unavailable' });
    expect(span?.status).toEqual({ code: STATUS_ERROR, message: 'state_unavailable' });
  });

  it('honours OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_SERVICE_NAME', async () => {
    const receiver = await startOtlpHttpReceiver();
    const saved = { ...process.env };
    Object.assign(process.env, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_SERVICE_NAME: 'from-env',
    });
    try {
      const server = await sidecar(AUDIENCE, {});
      await server.envoy.check({ path: '/orders/1', ...asCheckout() });
      await server.stop();
    } finally {
      process.env = saved;
      await receiver.close();
    }
    expect(receiver.contentTypes).toEqual(['application/json']);
    expect(checks(receiver.spans).map((s) => [s.service, s.attributes['hopguard.deny_code']])).toEqual([['from-env', 'missing_token']]);
  });

  it('follows the caller\'s sampling decision: an unsampled trace exports nothing, yet keeps its trace id', async () => {
    const receiver = await startOtlpHttpReceiver();
    const server = await sidecar(AUDIENCE, { endpoint: receiver.endpoint });
    const traceId = id(16);
    try {
      const out = await server.envoy.check({ path: '/orders/1', traceparent: traceparent(traceId, id(8), '00'), ...asCheckout() });
      expect(out.body?.trace_id).toBe(traceId);
    } finally {
      await server.stop();
      await receiver.close();
    }
    expect(receiver.spans).toEqual([]);
  });

  it('pushes metrics over OTLP when otlp_metrics is on', async () => {
    const receiver = await startOtlpHttpReceiver();
    const server = await sidecar(AUDIENCE, { tracing: false, otlpMetrics: true, endpoint: receiver.endpoint });
    try {
      for (let i = 0; i < 3; i++) await server.envoy.check({ path: '/orders/1', ...asCheckout() });
    } finally {
      await server.stop();
      await receiver.close();
    }
    const denials = receiver.points.filter((p) => p.metric === 'hopguard.decisions' && p.attributes.code === 'missing_token');
    expect(denials.map((p) => p.value)).toEqual([3]);
    expect(receiver.spans).toEqual([]);
  });
});

/**
 * Tracing: a tracer provider of this process's own (never the global one, so several
 * sidecars or an issuer can share a process without sharing a service name), exporting
 * over OTLP through a batch processor. With tracing off the tracer is OpenTelemetry's no-op
 * and no SDK module is loaded.
 *
 * For the issuer and any other part: `tracing.tracer.startSpan(name, { kind: SpanKind.SERVER },
 * incomingContext([headers, getter]))` (the issuer's spans are `hopguard.issuer.token` and
 * `hopguard.issuer.revoke`), and never a token, a secret or a key in an attribute.
 */

import {
  ProxyTracerProvider, ROOT_CONTEXT, defaultTextMapSetter, isSpanContextValid, trace, type Context, type TextMapGetter, type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { batchSpanOptions, otlpSpanExporter, samplerFromEnv } from './otlp.js';
import type { TelemetryConfig } from './telemetry-config.js';

export interface Tracing {
  readonly enabled: boolean;
  /** OpenTelemetry's no-op tracer when tracing is off: call it unconditionally. */
  readonly tracer: Tracer;
  /** Exports what is still batched. */
  shutdown(): Promise<void>;
}

export const TRACING_OFF: Tracing = {
  enabled: false,
  // A provider with no delegate hands out the API's no-op tracer, whatever is registered globally.
  tracer: new ProxyTracerProvider().getTracer('hopguard'),
  shutdown: async () => undefined,
};

export async function startTracing(config: TelemetryConfig, resource: Resource, version: string): Promise<Tracing> {
  const { TracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace');
  const sampler = await samplerFromEnv();
  const provider = new TracerProvider({
    resource,
    ...(sampler && { sampler }),
    spanProcessors: [new BatchSpanProcessor({ exporter: await otlpSpanExporter(config), ...batchSpanOptions() })],
  });
  return { enabled: true, tracer: provider.getTracer('hopguard', version), shutdown: () => provider.shutdown() };
}

const propagator = new W3CTraceContextPropagator();

/** For a carrier that is a map of lower-case names, such as a HopRequest's headers. */
export const mapGetter: TextMapGetter<ReadonlyMap<string, string>> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key),
};

/**
 * The W3C trace context (`traceparent`, `tracestate`) of the first carrier that holds a valid
 * one, else the root context: the caller's span becomes the parent of ours.
 */
export function incomingContext(...sources: [unknown, TextMapGetter<any>][]): Context {
  for (const [carrier, getter] of sources) {
    const context = propagator.extract(ROOT_CONTEXT, carrier, getter);
    const parent = trace.getSpanContext(context);
    if (parent && isSpanContextValid(parent)) return context;
  }
  return ROOT_CONTEXT;
}

/** `traceparent` (and `tracestate`) for a request made within `context`: the callee's span joins this trace. */
export function outgoingTraceHeaders(context: Context): Record<string, string> {
  const headers: Record<string, string> = {};
  propagator.inject(context, headers, defaultTextMapSetter);
  return headers;
}

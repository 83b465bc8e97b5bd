/**
 * OTLP exporters for traces and metrics, chosen the way the OpenTelemetry spec says:
 * the file's `telemetry.protocol` / `telemetry.endpoint` when set, else
 * OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf.
 * Endpoint, headers, timeout, compression and TLS files left unset here are read from the
 * OTEL_EXPORTER_OTLP_* variables by the exporters themselves. Exporter modules are loaded
 * only when telemetry is on, so a sidecar with it off never pays for them.
 */

import { getNumberFromEnv, getStringFromEnv } from '@opentelemetry/core';
import { defaultResource, detectResources, envDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { Sampler, SpanExporter } from '@opentelemetry/sdk-trace';
import { OTLP_PROTOCOLS, type OtlpProtocol, type TelemetryConfig } from './telemetry-config.js';

type Signal = 'TRACES' | 'METRICS';

export function otlpProtocol(config: TelemetryConfig, signal: Signal): OtlpProtocol {
  if (config.protocol) return config.protocol;
  const fromEnv = getStringFromEnv(`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`) ?? getStringFromEnv('OTEL_EXPORTER_OTLP_PROTOCOL');
  return OTLP_PROTOCOLS.find((p) => p === fromEnv) ?? 'http/protobuf';
}

/** The exporter options for one signal: a file endpoint is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT. */
function exporterOptions(config: TelemetryConfig, protocol: OtlpProtocol, path: string): { url?: string } {
  if (config.endpoint === undefined) return {};
  if (protocol === 'grpc') return { url: config.endpoint };
  return { url: new URL(path, config.endpoint.endsWith('/') ? config.endpoint : `${config.endpoint}/`).href };
}

export async function otlpSpanExporter(config: TelemetryConfig): Promise<SpanExporter> {
  const protocol = otlpProtocol(config, 'TRACES');
  const options = exporterOptions(config, protocol, 'v1/traces');
  if (protocol === 'grpc') return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter(options);
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(options);
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(options);
}

export async function otlpMetricExporter(config: TelemetryConfig): Promise<PushMetricExporter> {
  const protocol = otlpProtocol(config, 'METRICS');
  const options = exporterOptions(config, protocol, 'v1/metrics');
  if (protocol === 'grpc') return new (await import('@opentelemetry/exporter-metrics-otlp-grpc')).OTLPMetricExporter(options);
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-metrics-otlp-http')).OTLPMetricExporter(options);
  return new (await import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter(options);
}

/** OTEL_METRIC_EXPORT_INTERVAL, default 60 s (the spec's). */
export function metricExportIntervalMs(): number {
  return getNumberFromEnv('OTEL_METRIC_EXPORT_INTERVAL') ?? 60_000;
}

/** OTEL_BSP_* for the batch span processor; the SDK no longer reads them itself. */
export function batchSpanOptions() {
  const read = (name: string) => getNumberFromEnv(`OTEL_BSP_${name}`);
  return {
    ...(read('SCHEDULE_DELAY') !== undefined && { scheduledDelayMillis: read('SCHEDULE_DELAY') }),
    ...(read('EXPORT_TIMEOUT') !== undefined && { exportTimeoutMillis: read('EXPORT_TIMEOUT') }),
    ...(read('MAX_QUEUE_SIZE') !== undefined && { maxQueueSize: read('MAX_QUEUE_SIZE') }),
    ...(read('MAX_EXPORT_BATCH_SIZE') !== undefined && { maxExportBatchSize: read('MAX_EXPORT_BATCH_SIZE') }),
  };
}

/**
 * OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG; unset means parentbased_always_on, so the
 * sidecar follows the sampling decision Envoy propagated.
 */
export async function samplerFromEnv(): Promise<Sampler | undefined> {
  const name = getStringFromEnv('OTEL_TRACES_SAMPLER');
  if (name === undefined) return undefined;
  const sdk = await import('@opentelemetry/sdk-trace');
  const ratio = getNumberFromEnv('OTEL_TRACES_SAMPLER_ARG') ?? 1;
  const roots: Record<string, Sampler> = {
    always_on: new sdk.AlwaysOnSampler(),
    always_off: new sdk.AlwaysOffSampler(),
    traceidratio: new sdk.TraceIdRatioBasedSampler(ratio),
  };
  const [, parentBased, root = ''] = /^(parentbased_)?(.*)$/.exec(name) ?? [];
  const sampler = roots[root];
  if (!sampler) return undefined;
  return parentBased ? new sdk.ParentBasedSampler({ root: sampler }) : sampler;
}

/** service.name from the file, else OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES, else "hopguard". */
export function telemetryResource(config: TelemetryConfig, version: string): Resource {
  const fromEnv = detectResources({ detectors: [envDetector] });
  const serviceName = config.serviceName ?? fromEnv.attributes['service.name'] ?? 'hopguard';
  return defaultResource().merge(fromEnv).merge(resourceFromAttributes({ 'service.name': serviceName, 'service.version': version }));
}

/** OTEL_SDK_DISABLED=true turns every OTLP export off; Prometheus /metrics stays. */
export function sdkDisabled(): boolean {
  return getStringFromEnv('OTEL_SDK_DISABLED')?.toLowerCase() === 'true';
}

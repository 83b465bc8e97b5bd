import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Meter } from '@opentelemetry/api';
import { getNumberFromEnv } from '@opentelemetry/core';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { metricExportIntervalMs, otlpMetricExporter, sdkDisabled, telemetryResource } from './otlp.js';
import type { TelemetryConfig } from './telemetry-config.js';
import { TRACING_OFF, startTracing, type Tracing } from './tracing.js';

/** One process part's telemetry (the authz sidecar, the issuer): its tracer, its meter, its /metrics. */
export interface Telemetry {
  tracing: Tracing;
  meter: Meter;
  /** Prometheus text, for an admin listener's `/metrics` (no second HTTP server). */
  serveMetrics(request: IncomingMessage, response: ServerResponse): void;
  /** Exports what is still batched, then stops. */
  shutdown(): Promise<void>;
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export async function startTelemetry(config: TelemetryConfig): Promise<Telemetry> {
  const exporting = !sdkDisabled();
  const resource = telemetryResource(config, VERSION);
  const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const readers: MetricReader[] = [prometheus];
  if (config.otlpMetrics && exporting) {
    const intervalMs = metricExportIntervalMs();
    readers.push(new PeriodicExportingMetricReader({
      exporter: await otlpMetricExporter(config),
      exportIntervalMillis: intervalMs,
      // The SDK refuses a timeout longer than the interval.
      exportTimeoutMillis: Math.min(getNumberFromEnv('OTEL_METRIC_EXPORT_TIMEOUT') ?? 30_000, intervalMs),
    }));
  }
  const meterProvider = new MeterProvider({ resource, readers });
  const tracing = config.tracing && exporting ? await startTracing(config, resource, VERSION) : TRACING_OFF;
  return {
    tracing,
    meter: meterProvider.getMeter('hopguard', VERSION),
    serveMetrics: (request, response) => prometheus.getMetricsRequestHandler(request, response),
    async shutdown() {
      await Promise.all([tracing.shutdown(), meterProvider.shutdown()]);
    },
  };
}

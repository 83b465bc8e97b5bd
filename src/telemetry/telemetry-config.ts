/**
 * The `telemetry:` section, shared by every hopguard config file (authz, issuer). Tracing and
 * OTLP metrics are off by default; when on, what the file leaves unset comes from the
 * standard OTEL_* environment variables (see otlp.ts).
 */

import { z } from 'zod';
import { expected, flag, parsedString, parseUrl } from '../schema/config-schema.js';

export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

export interface TelemetryConfig {
  /** A span per check (and per issuer operation), exported over OTLP. */
  tracing: boolean;
  /** Push metrics over OTLP too; the admin /metrics serves Prometheus text either way. */
  otlpMetrics: boolean;
  /** resource service.name; else OTEL_SERVICE_NAME, else "hopguard". */
  serviceName?: string;
  /** Base URL as in OTEL_EXPORTER_OTLP_ENDPOINT; else the OTEL_* variables, else the exporter's default. */
  endpoint?: string;
  /** Else OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf. */
  protocol?: OtlpProtocol;
}

function parseEndpoint(text: string): string {
  const url = parseUrl(text, 'expected an http or https URL such as http://otel-collector:4318');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('expected an http or https URL');
  // Collector credentials belong in OTEL_EXPORTER_OTLP_HEADERS, which never reaches a log line.
  if (url.username !== '' || url.password !== '') throw new Error('must not contain credentials: use OTEL_EXPORTER_OTLP_HEADERS');
  return text;
}

function parseProtocol(text: string): OtlpProtocol {
  const protocol = OTLP_PROTOCOLS.find((p) => p === text);
  if (!protocol) throw new Error(`expected one of ${OTLP_PROTOCOLS.join(', ')}`);
  return protocol;
}

export const telemetrySchema = z
  .strictObject(
    {
      tracing: flag,
      otlp_metrics: flag,
      service_name: z.string(expected('a string')).regex(/^\S{1,255}$/, 'expected a name without spaces').optional(),
      endpoint: parsedString('an http or https URL', parseEndpoint).optional(),
      protocol: parsedString(OTLP_PROTOCOLS.join(' or '), parseProtocol).optional(),
    },
    expected('a mapping'),
  )
  .transform((raw): TelemetryConfig => ({
    tracing: raw.tracing,
    otlpMetrics: raw.otlp_metrics,
    ...(raw.service_name !== undefined && { serviceName: raw.service_name }),
    ...(raw.endpoint !== undefined && { endpoint: raw.endpoint }),
    ...(raw.protocol !== undefined && { protocol: raw.protocol }),
  }));

/** What an absent `telemetry:` section means: nothing exported, Prometheus /metrics only. */
export const TELEMETRY_DEFAULTS: TelemetryConfig = telemetrySchema.parse({});

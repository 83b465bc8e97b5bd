import { createRequire } from 'node:module';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';

/**
 * An OTLP receiver on loopback, as a collector would be: OTLP/HTTP (protobuf or JSON) on
 * /v1/traces and /v1/metrics, or OTLP/gRPC. Protobuf is decoded with the OTLP definitions
 * generated from opentelemetry-proto, as shipped by @opentelemetry/otlp-transformer 0.216
 * (later versions no longer ship them).
 */

// Typed only as a protobufjs Root: its namespaces are read untyped.
const otlp = createRequire(import.meta.url)('otlp-transformer-with-protos/build/src/generated/root.js').opentelemetry.proto;
const TraceRequest = otlp.collector.trace.v1.ExportTraceServiceRequest;
const TraceResponse = otlp.collector.trace.v1.ExportTraceServiceResponse;
const MetricsRequest = otlp.collector.metrics.v1.ExportMetricsServiceRequest;
const MetricsResponse = otlp.collector.metrics.v1.ExportMetricsServiceResponse;

export interface ReceivedSpan {
  service: string;
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  attributes: Record<string, unknown>;
  status: { code: number; message: string };
}

export interface ReceivedPoint {
  metric: string;
  attributes: Record<string, unknown>;
  value: number;
}

export interface OtlpReceiver {
  /** Base URL (http) or host:port (grpc), as OTEL_EXPORTER_OTLP_ENDPOINT would be. */
  endpoint: string;
  spans: ReceivedSpan[];
  points: ReceivedPoint[];
  /** Content types of the requests, in order. */
  contentTypes: string[];
  close(): Promise<void>;
}

export async function startOtlpHttpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const points: ReceivedPoint[] = [];
  const contentTypes: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = req.headers['content-type'] ?? '';
      contentTypes.push(type);
      const json = type.startsWith('application/json');
      // OTLP/JSON is the protobuf JSON mapping with hex ids: read as is, not through fromObject (base64 bytes).
      const decode = (message: { decode(b: Uint8Array): unknown }) => (json ? JSON.parse(body.toString('utf8')) : message.decode(body)) as any;
      let response;
      if (req.url === '/v1/traces') {
        spans.push(...readSpans(decode(TraceRequest)));
        response = TraceResponse;
      } else if (req.url === '/v1/metrics') {
        points.push(...readPoints(decode(MetricsRequest)));
        response = MetricsResponse;
      } else {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : Buffer.from(response.encode(response.create({})).finish()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    points,
    contentTypes,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

export async function startOtlpGrpcReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const points: ReceivedPoint[] = [];
  const server = new grpc.Server();
  const unary = (path: string, request: any, response: any) => ({
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: unknown) => Buffer.from(request.encode(v).finish()),
    requestDeserialize: (b: Buffer) => request.decode(b),
    responseSerialize: (v: unknown) => Buffer.from(response.encode(v).finish()),
    responseDeserialize: (b: Buffer) => response.decode(b),
  });
  server.addService({ Export: unary('/opentelemetry.proto.collector.trace.v1.TraceService/Export', TraceRequest, TraceResponse) }, {
    Export: (call: grpc.ServerUnaryCall<any, unknown>, done: grpc.sendUnaryData<unknown>) => {
      spans.push(...readSpans(call.request));
      done(null, TraceResponse.create({}));
    },
  });
  server.addService({ Export: unary('/opentelemetry.proto.collector.metrics.v1.MetricsService/Export', MetricsRequest, MetricsResponse) }, {
    Export: (call: grpc.ServerUnaryCall<any, unknown>, done: grpc.sendUnaryData<unknown>) => {
      points.push(...readPoints(call.request));
      done(null, MetricsResponse.create({}));
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    points,
    contentTypes: [],
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

const hex = (id: Uint8Array | string | undefined) => (typeof id === 'string' ? id : Buffer.from(id ?? []).toString('hex'));

function anyValue(value: any): unknown {
  if (value == null) return undefined;
  if (value.stringValue != null) return value.stringValue;
  if (value.boolValue != null) return value.boolValue;
  if (value.intValue != null) return Number(value.intValue);
  if (value.doubleValue != null) return value.doubleValue;
  if (value.arrayValue != null) return (value.arrayValue.values ?? []).map(anyValue);
  return undefined;
}

function attributes(list: any[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
}

function readSpans(request: any): ReceivedSpan[] {
  return (request.resourceSpans ?? []).flatMap((rs: any) => {
    const service = String(attributes(rs.resource?.attributes)['service.name']);
    return (rs.scopeSpans ?? []).flatMap((ss: any) => (ss.spans ?? []).map((span: any): ReceivedSpan => ({
      service,
      name: span.name,
      kind: span.kind,
      traceId: hex(span.traceId),
      spanId: hex(span.spanId),
      parentSpanId: hex(span.parentSpanId),
      attributes: attributes(span.attributes),
      status: { code: span.status?.code ?? 0, message: span.status?.message ?? '' },
    })));
  });
}

function readPoints(request: any): ReceivedPoint[] {
  return (request.resourceMetrics ?? []).flatMap((rm: any) => (rm.scopeMetrics ?? []).flatMap((sm: any) =>
    (sm.metrics ?? []).flatMap((metric: any) => {
      const data = metric.sum ?? metric.gauge ?? metric.histogram;
      return (data?.dataPoints ?? []).map((p: any): ReceivedPoint => ({
        metric: metric.name,
        attributes: attributes(p.attributes),
        value: Number(p.asInt ?? p.asDouble ?? p.count ?? 0),
      }));
    })));
}

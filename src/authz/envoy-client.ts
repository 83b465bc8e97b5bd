import * as grpc from '@grpc/grpc-js';
import { authorizationService } from './envoy-protos.js';

/**
 * A client of hopguard that speaks as Envoy's ext_authz filter does: the official
 * CheckRequest over gRPC. Used by the demo, the tests and the benchmarks.
 */
export interface CheckInput {
  method?: string;
  /** http or https (Envoy's `scheme`); https by default. */
  scheme?: string;
  path: string;
  host?: string;
  headers?: Record<string, string>;
  /** Sent as `header_map` (Envoy's encode_raw_headers) instead of `headers`. */
  headerMap?: [string, string | Buffer][];
  principal?: string;
  /** The caller's IP address (source.address.socket_address.address). */
  sourceAddress?: string;
  /** PEM of the peer certificate; sent URL-encoded as Envoy does. */
  certificatePem?: string;
  contextExtensions?: Record<string, string>;
  /** traceparent in the gRPC metadata (Envoy's ext_authz client span). */
  traceparent?: string;
}

export interface CheckOutput {
  allowed: boolean;
  grpcCode: number;
  httpStatus?: number;
  /** Lower-case header name → value, from ok_response.headers or denied_response.headers. */
  headers: Record<string, string>;
  headersToRemove: string[];
  body?: { error?: string; code?: string; condition?: string; trace_id?: string };
  raw: Record<string, any>;
}

export function checkRequestMessage(input: CheckInput) {
  return {
    attributes: {
      source: {
        ...(input.sourceAddress !== undefined && { address: { socket_address: { address: input.sourceAddress, port_value: 40000 } } }),
        principal: input.principal ?? '',
        certificate: input.certificatePem ? encodeURIComponent(input.certificatePem) : '',
      },
      request: {
        http: {
          id: '1',
          method: input.method ?? 'GET',
          scheme: input.scheme ?? 'https',
          path: input.path,
          host: input.host ?? 'service.local',
          protocol: 'HTTP/2',
          ...(input.headerMap
            ? {
              header_map: {
                headers: input.headerMap.map(([key, value]) =>
                  (typeof value === 'string' ? { key, raw_value: Buffer.from(value) } : { key, raw_value: value })),
              },
            }
            : { headers: input.headers ?? {} }),
        },
      },
      context_extensions: input.contextExtensions ?? {},
    },
  };
}

export class EnvoyClient {
  private readonly client: grpc.Client & Record<string, any>;

  constructor(address: string) {
    const Authorization = authorizationService();
    this.client = new Authorization(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  }

  check(input: CheckInput): Promise<CheckOutput> {
    const metadata = new grpc.Metadata();
    if (input.traceparent) metadata.set('traceparent', input.traceparent);
    return new Promise((resolve, reject) => {
      this.client.Check(checkRequestMessage(input), metadata, { deadline: Date.now() + 10_000 }, (err: Error | null, raw: any) => {
        if (err) return reject(err);
        resolve(readCheckResponse(raw));
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

function readCheckResponse(raw: any): CheckOutput {
  const grpcCode = raw.status?.code ?? 0;
  const http = raw.ok_response ?? raw.denied_response ?? {};
  const headers: Record<string, string> = {};
  for (const h of http.headers ?? []) headers[h.header.key.toLowerCase()] = h.header.value;
  return {
    allowed: grpcCode === 0,
    grpcCode,
    ...(raw.denied_response?.status && { httpStatus: statusNumber(raw.denied_response.status.code) }),
    headers,
    headersToRemove: raw.ok_response?.headers_to_remove ?? [],
    ...(raw.denied_response?.body && { body: JSON.parse(raw.denied_response.body) }),
    raw,
  };
}

/** What the upstream receives on an allow: the headers sent, less headers_to_remove, with the headers set. */
export function upstreamHeaders(sent: Record<string, string>, out: CheckOutput): Record<string, string> {
  const seen: Record<string, string> = {};
  for (const [name, value] of Object.entries(sent)) if (!out.headersToRemove.includes(name)) seen[name] = value;
  return { ...seen, ...out.headers };
}

// proto-loader decodes enums as names (enums: String); HttpStatus names are like "Unauthorized".
const HTTP_STATUS_NAMES: Record<string, number> = {
  BadRequest: 400, Unauthorized: 401, Forbidden: 403, InternalServerError: 500, ServiceUnavailable: 503,
};

function statusNumber(code: string | number): number {
  return typeof code === 'number' ? code : HTTP_STATUS_NAMES[code] ?? Number.NaN;
}

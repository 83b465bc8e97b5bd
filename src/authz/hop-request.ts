import type { HopRequest } from '../vocabulary/hop-request.js';


/** The parts of envoy.service.auth.v3.CheckRequest hopguard reads, as @grpc/proto-loader decodes them (keepCase). */
export interface CheckRequestMessage {
  attributes?: {
    source?: { address?: { socket_address?: { address?: string } }; principal?: string; certificate?: string };
    request?: {
      http?: {
        method?: string;
        scheme?: string;
        path?: string;
        host?: string;
        headers?: Record<string, string>;
        header_map?: { headers?: { key?: string; value?: string; raw_value?: Buffer }[] };
      };
    };
    context_extensions?: Record<string, string>;
  };
}

export function readHopRequest(message: CheckRequestMessage): HopRequest {
  const attributes = message.attributes ?? {};
  const http = attributes.request?.http ?? {};
  const headers = new Map<string, string>();
  const repeated = new Set<string>();
  if (http.header_map?.headers?.length) {
    for (const { key = '', value, raw_value: raw } of http.header_map.headers) {
      const name = key.toLowerCase();
      // raw_value carries the bytes as sent; latin1 keeps them 1:1 so non-ASCII stays visible to validation.
      const text = raw !== undefined && raw.length > 0 ? raw.toString('latin1') : value ?? '';
      const previous = headers.get(name);
      if (previous !== undefined) repeated.add(name);
      headers.set(name, previous === undefined ? text : `${previous},${text}`);
    }
  } else if (http.headers) {
    // for…in visits what Object.entries would (own keys, in the same order), without an array per header.
    const map = http.headers;
    for (const name in map) headers.set(name.toLowerCase(), map[name]!);
  }
  return {
    method: http.method ?? '',
    scheme: http.scheme ?? '',
    path: http.path ?? '',
    host: http.host ?? '',
    headers,
    repeated,
    sourceAddress: attributes.source?.address?.socket_address?.address ?? '',
    principal: attributes.source?.principal ?? '',
    certificate: attributes.source?.certificate ?? '',
    contextExtensions: attributes.context_extensions ?? {},
  };
}

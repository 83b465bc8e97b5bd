import { randomBytes } from 'node:crypto';

// W3C Trace Context `traceparent`, version 00: version-traceid-parentid-flags.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZERO_TRACE = '0'.repeat(32);

/**
 * The trace id of the request: from the gRPC call's metadata (Envoy's ext_authz client
 * span), else from the HTTP request's `traceparent`, else a new one, so a denial's
 * `trace_id` always names something the operator can search for.
 */
export function traceIdOf(metadataTraceparent: string | undefined, headerTraceparent: string | undefined): string {
  return parse(metadataTraceparent) ?? parse(headerTraceparent) ?? randomBytes(16).toString('hex');
}

function parse(traceparent: string | undefined): string | undefined {
  const traceId = traceparent === undefined ? undefined : TRACEPARENT.exec(traceparent.trim())?.[1];
  return traceId !== undefined && traceId !== ZERO_TRACE ? traceId : undefined;
}

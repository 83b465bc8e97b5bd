import cluster from 'node:cluster';
import { rmSync, statSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Context } from '@opentelemetry/api';
import { HealthImplementation } from 'grpc-health-check';
import { listenFailure } from '../admin/listen-failure.js';
import type { AuditCheck } from '../audit/validation-audit.js';
import type { StartCheckSpan } from '../telemetry/check-span.js';
import type { Logger } from '../telemetry/log.js';
import type { AuthzMetrics } from '../telemetry/metrics.js';
import { deny, type Decision, type Deny } from '../vocabulary/decision.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import type { ListenAddress } from '../vocabulary/listen-address.js';
import { decodeCheckRequest } from './check-request-decoder.js';
import { checkResponse, encodeCheckResponse, type HandleCarriers } from './check-response.js';
import type { CheckResponseMessage } from './check-response-encoder.js';
import { authorizationService } from './envoy-protos.js';
import { raiseConnectionWindow } from './http2-window.js';

/** The gRPC service name Envoy's health checks and `grpc_health_probe` ask about. */
export const AUTHZ_HEALTH_SERVICE = 'envoy.service.auth.v3.Authorization';

/** What one ext_authz listener decides and how: the inbound check, or the outbound one (egress). */
export interface CheckHandler<D> {
  /** `context`: the check's span, for requests deciding makes (the outbound check's to the issuer). */
  decide(request: HopRequest, context?: Context): Promise<D>;
  /** The decision when deciding itself failed: a denial (internal_error). */
  failed(): D;
  respond(decision: D, request: HopRequest, traceId: string): CheckResponseMessage | Buffer;
  /** The check's span (tracing on) or just its trace id (off). */
  startSpan: StartCheckSpan<D>;
  /** After answering: metrics and audit. */
  record(decision: D, request: HopRequest, traceId: string, seconds: number): void;
}

export interface AuthzServerDeps<D> {
  handler: CheckHandler<D>;
  log: Logger;
  /** HTTP/2 connection window of each connection, bytes (see http2-window.ts). */
  connectionWindow: number;
}

/** The inbound check: `authorize` behind the identity-header responses, spans, metrics and audit. */
export function inboundHandler(deps: {
  authorize(request: HopRequest): Promise<Decision>;
  metrics: AuthzMetrics;
  startSpan: StartCheckSpan;
  audit: AuditCheck;
  /** With egress: where allows set the handle (or remove it). */
  handles?: HandleCarriers;
}): CheckHandler<Decision> {
  return {
    decide: (request) => deps.authorize(request),
    failed: internalError,
    respond: (decision, request, traceId) => checkResponse(decision, request, traceId, deps.handles),
    startSpan: deps.startSpan,
    record(decision, request, traceId, seconds) {
      deps.metrics.recordDecision(decision, seconds);
      deps.audit(decision, request, traceId);
    },
  };
}

export function internalError(): Deny {
  return deny('internal_error', 'unexpected failure while deciding');
}

/**
 * The transport: ext_authz v3 Check and the standard gRPC health service. It turns the
 * wire message into a HopRequest, asks its handler, and answers; every failure inside
 * hopguard becomes a denial, never a gRPC error, so Envoy's failure_mode_allow is moot.
 */
export class AuthzServer<D> {
  private readonly server = new grpc.Server({
    // Envoy keeps few long-lived connections and multiplexes checks over them.
    'grpc.keepalive_permit_without_calls': 1,
    // hopguard serves no channelz service, so nothing reads the call counters grpc-js keeps for
    // it: with it on, every call gets a tracker of its own (closures, a Date.now() per message).
    'grpc.enable_channelz': 0,
  });
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', [AUTHZ_HEALTH_SERVICE]: 'NOT_SERVING' });

  constructor(private readonly deps: AuthzServerDeps<D>) {
    // grpc-js writes its errors as bare text on stderr; here they stay JSON lines like every log.
    grpc.setLogger({
      error: (message: unknown) => deps.log.error('grpc_error', { message: String(message) }),
      info: (message: unknown) => deps.log.info('grpc_info', { message: String(message) }),
      debug: (message: unknown) => deps.log.info('grpc_debug', { message: String(message) }),
    });
    if (!raiseConnectionWindow(this.server, deps.connectionWindow)) {
      deps.log.warn('http2_window_not_raised', { reason: 'this @grpc/grpc-js version cannot be hooked; connections keep a 64 KB window' });
    }
    const { Check } = authorizationService().service;
    // Check requests are decoded straight into a HopRequest, reading only the fields used;
    // responses may come already encoded (check-response.ts).
    this.server.addService({ Check: { ...Check!, requestDeserialize: decodeCheckRequest, responseSerialize: encodeCheckResponse } }, { Check: this.check });
    this.health.addToServer(this.server);
  }

  /** Binds and starts; resolves the address it listens on (with the real port for port 0). */
  async listen(address: ListenAddress): Promise<string> {
    const target = address.kind === 'unix' ? `unix:${address.path}` : `${formatHost(address.host)}:${address.port}`;
    // In a worker of `workers: N` the primary did this: the file may be a sibling's live socket.
    if (address.kind === 'unix' && !cluster.isWorker) removeStaleSocket(address.path);
    const port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(listenFailure('listen', target, err)) : resolve(p)));
    });
    return address.kind === 'unix' ? target : `${formatHost(address.host)}:${port}`;
  }

  setServing(serving: boolean): void {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(AUTHZ_HEALTH_SERVICE, status);
  }

  /** Stops accepting calls, lets in-flight checks finish within `graceMs`, then cuts the rest. */
  async shutdown(graceMs: number): Promise<void> {
    this.setServing(false);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private readonly check: grpc.handleUnaryCall<HopRequest, unknown> = (call, callback) => {
    this.respond(call).then(
      (response) => callback(null, response),
      // Only reachable if building the response itself failed; Envoy then denies (failure_mode_allow: false).
      () => callback({ code: grpc.status.INTERNAL, details: 'hopguard could not build a response' }),
    );
  };

  private async respond(call: grpc.ServerUnaryCall<HopRequest, unknown>) {
    const started = performance.now();
    const request = call.request;
    const { handler } = this.deps;
    // The request's headers hold the fallback trace context.
    const span = handler.startSpan(call.metadata, request);
    let decision: D;
    try {
      decision = await handler.decide(request, span.context);
    } catch (err) {
      // By name only: an error's message may hold request data.
      this.deps.log.error('check_failed', { error: err instanceof Error ? err.name : 'unknown' });
      decision = handler.failed();
    }
    const response = handler.respond(decision, request, span.traceId);
    span.end(decision, request);
    handler.record(decision, request, span.traceId, (performance.now() - started) / 1000);
    return response;
  }
}

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** A socket file left by a previous run would make bind fail; anything else at that path is left alone. */
export function removeStaleSocket(path: string): void {
  try {
    if (statSync(path).isSocket()) rmSync(path);
  } catch {
    // Nothing there.
  }
}

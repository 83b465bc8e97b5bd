import type { AuditRecorder } from '../audit/audit-log.js';
import type { AuditConfig } from '../audit/audit-config.js';
import type { HandleSealer } from '../egress/handle.js';
import { OpenedHandles } from '../egress/opened-handles.js';
import { IssuerClient } from '../issuer-client/issuer-client.js';
import type { Store } from '../store/store.js';
import type { Logger } from '../telemetry/log.js';
import { createMessagesMetrics } from '../telemetry/metrics.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import { AccessTokenVerifier, type TrustedIssuer } from '../token/access-token-verifier.js';
import type { IssuerClientConfig } from '../vocabulary/issuer-client-config.js';
import { MESSAGE_TOKEN_TYP } from '../vocabulary/message-token.js';
import type { MessagesConfig } from '../vocabulary/messages-config.js';
import { MessageClaims } from './message-claim.js';
import { MessagesApi, type HandleSource } from './messages-api.js';
import { startMessagesGrpc } from './messages-grpc.js';
import { startMessagesHttp } from './messages-http.js';
import { messageRecorder, messageSpans } from './messages-telemetry.js';

/** Verified message tokens kept: a redelivered message's token is verified once. */
const MESSAGE_CACHE_ENTRIES = 10_000;
const MESSAGE_TYPES: ReadonlySet<string> = new Set([MESSAGE_TOKEN_TYP]);

export interface MessagesContext {
  audience: string;
  /** The sidecar's trusted issuers (their keys shared): message tokens come from the same issuers. */
  issuers: readonly TrustedIssuer[];
  clockSkewMs: number;
  store: Store;
  telemetry: Telemetry;
  audit: AuditRecorder;
  auditConfig: AuditConfig;
  log: Logger;
  /** Set with messages.outgoing: seals go to the issuer through it, for handles `sealer` made. */
  issuerClient?: IssuerClientConfig;
  sealer?: HandleSealer;
  /** Where seals read the handle: egress.handle_header (else x-hopguard-handle), and baggage with egress.handle_baggage. */
  handles: HandleSource;
}

export interface RunningMessages {
  address: string;
  grpcAddress?: string;
  close(): Promise<void>;
}

/** Builds the messages API from the config and serves it on messages.listen (and grpc_listen). */
export async function startMessages(config: MessagesConfig, context: MessagesContext): Promise<RunningMessages> {
  const verifier = new AccessTokenVerifier({
    audience: context.audience,
    // Only message tokens, and only as long-lived as messages.max_ttl allows.
    issuers: context.issuers.map((issuer) => ({ ...issuer, config: { ...issuer.config, maxTtlMs: config.maxTtlMs }, types: MESSAGE_TYPES })),
    clockSkewMs: context.clockSkewMs,
    cacheMaxEntries: MESSAGE_CACHE_ENTRIES,
  });
  const client = config.outgoing.length > 0 && context.issuerClient ? new IssuerClient({ ...context.issuerClient }, context.log) : undefined;
  const api = new MessagesApi({
    ...(client && context.sealer && { seal: { outgoing: config.outgoing, handles: new OpenedHandles(context.sealer), client } }),
    check: { verifier, claims: new MessageClaims(), store: context.store, incoming: config.incoming, clockSkewMs: context.clockSkewMs },
    startSpan: messageSpans(context.telemetry.tracing, context.audience),
    record: messageRecorder(createMessagesMetrics(context.telemetry.meter), context.audit, context.auditConfig, context.audience),
    // By name only: an error's message may hold request data.
    onFailure: (operation, err) => context.log.error('message_failed', { operation, error: err instanceof Error ? err.name : 'unknown' }),
  });
  const servers: { address: string; close: () => Promise<void> }[] = [];
  try {
    servers.push(await startMessagesHttp(api, config.listen, context.handles));
    if (config.grpcListen) servers.push(await startMessagesGrpc(api, config.grpcListen, context.handles));
  } catch (err) {
    await Promise.all(servers.map((server) => server.close()));
    client?.close();
    throw err;
  }
  return {
    address: servers[0]!.address,
    ...(servers[1] && { grpcAddress: servers[1].address }),
    async close() {
      await Promise.all(servers.map((server) => server.close()));
      client?.close();
    },
  };
}

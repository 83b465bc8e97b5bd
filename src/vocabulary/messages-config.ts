// The `messages:` section of the authz config (design "Messages: hops through a queue").
import type { WithoutHandle } from './egress-config.js';

/** A destination this workload publishes to, and the token its messages get there. */
export interface MessageOutgoing {
  destination: string;
  /** The consuming service: the token's `aud`. */
  audience: string;
  /** Asked for; the issuer narrows. */
  scopes: string[];
  /** The token's lifetime: how long a message may wait (the issuer caps it with message_ttl). */
  maxDelayMs: number;
  withoutHandle: WithoutHandle;
}

/** A destination this workload consumes from, and the scopes its messages' tokens must carry. */
export interface MessageIncoming {
  destination: string;
  scopes: string[];
}

export interface MessagesConfig {
  /** The local HTTP API (seal, check): loopback only. */
  listen: { host: string; port: number };
  /** The same two calls over gRPC (proto/hopguard/messages/v1/messages.proto), loopback; off when absent. */
  grpcListen?: { host: string; port: number };
  /** The longest message-token lifetime accepted at check (exp - iat); the issuer's message_ttl or more. */
  maxTtlMs: number;
  outgoing: MessageOutgoing[];
  incoming: MessageIncoming[];
}

import type { Context } from '@opentelemetry/api';
import type { OpenedHandles } from '../egress/opened-handles.js';
import { IssuerClientError } from '../issuer-client/issuer-client-error.js';
import type { IssuedToken } from '../issuer-client/issued-token.js';
import type { IssuerClient } from '../issuer-client/issuer-client.js';
import { deny, type Deny } from '../vocabulary/decision.js';
import type { MessageOutgoing } from '../vocabulary/messages-config.js';

/** POST /v1/messages/seal, as read from its body and headers. */
export interface SealInput {
  destination: string;
  digest: string;
  /** The handle header's value, when the message is sent on someone's behalf; TWO_HANDLES when sent twice. */
  handle?: string | typeof TWO_HANDLES;
}

export const TWO_HANDLES = Symbol('two handles');

export type SealDecision = SealAllow | SealDeny;

export interface SealAllow {
  allowed: true;
  outgoing: MessageOutgoing;
  token: IssuedToken;
  /** Sealed on behalf of a handle's subject (an exchange), not as this workload. */
  delegated: boolean;
}

export type SealDeny = Deny & { outgoing?: MessageOutgoing };

export interface SealDeps {
  outgoing: readonly MessageOutgoing[];
  handles: OpenedHandles;
  client: IssuerClient;
}

/**
 * Sealing, top to bottom: one handle at most, a destination this workload publishes to, the
 * handle opened (or this workload's own token where the destination allows none), then the
 * issuer mints the token for this message. Every path that does not reach a token is a denial.
 */
export async function decideSeal(input: SealInput, deps: SealDeps, context?: Context): Promise<SealDecision> {
  if (input.handle === TWO_HANDLES) return deny('malformed_request', 'more than one handle');
  const outgoing = deps.outgoing.find((entry) => entry.destination === input.destination);
  if (!outgoing) return deny('no_destination', 'the destination is not one this service publishes to');

  const request = {
    audience: outgoing.audience, scopes: outgoing.scopes, maxDelayMs: outgoing.maxDelayMs,
    message: { destination: outgoing.destination, digest: input.digest }, ...(context && { context }),
  };
  const { handle } = input;
  if (handle === undefined || handle === '') {
    if (outgoing.withoutHandle === 'deny') return { ...deny('handle_missing', 'the destination needs a handle'), outgoing };
    return fromIssuer(() => deps.client.messageToken(request), outgoing, false);
  }
  const opened = deps.handles.open(handle, Date.now());
  if (!opened.ok) return { ...deny('handle_invalid', `the handle is ${opened.reason.replace('_', ' ')}`), outgoing };
  return fromIssuer(() => deps.client.messageToken({ ...request, subjectToken: opened.subject.token }), outgoing, true);
}

async function fromIssuer(mint: () => Promise<IssuedToken>, outgoing: MessageOutgoing, delegated: boolean): Promise<SealDecision> {
  try {
    return { allowed: true, outgoing, token: await mint(), delegated };
  } catch (err) {
    if (!(err instanceof IssuerClientError)) throw err;
    if (err.code === 'exchange_refused') {
      return { ...deny('exchange_refused', 'the issuer refused the token request', { oauthError: err.oauthError ?? 'access_denied' }), outgoing };
    }
    return { ...deny('issuer_unavailable', 'the issuer could not be reached'), outgoing };
  }
}

import { readBaggageHandles } from '../egress/baggage.js';
import { DENY_CODES } from '../vocabulary/deny-codes.js';
import type { Deny } from '../vocabulary/decision.js';
import { decideCheck, type CheckDecision, type CheckDeps, type CheckInput } from './message-check.js';
import { MessageRequestError, readCheckBody, readSealBody } from './message-requests.js';
import { decideSeal, TWO_HANDLES, type SealDecision, type SealDeps } from './message-seal.js';
import type { MessageSpan, Operation, RecordMessage, TraceCarrier } from './messages-telemetry.js';

/** What a seal or check answers, for any transport: the HTTP status and the JSON body. */
export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

export interface MessagesApiDeps {
  seal?: SealDeps;
  check: CheckDeps;
  startSpan(operation: Operation, carrier: TraceCarrier): MessageSpan;
  record: RecordMessage;
  /** Failures inside hopguard are logged by name here and answered internal_error. */
  onFailure(operation: Operation, err: unknown): void;
}

/**
 * Seal and check behind their transports (HTTP on messages.listen, gRPC on grpc_listen): the
 * body read strictly (bad input: 400 malformed_request, and nothing decided, traced or
 * recorded), then the decision in its span, answered, and recorded in metrics and audit.
 */
export class MessagesApi {
  constructor(private readonly deps: MessagesApiDeps) {}

  /** `handles`: every value of the handle header (none, one, or more: refused). */
  seal(body: unknown, handles: readonly string[], carrier: TraceCarrier): Promise<Answer> {
    return this.answer<{ destination: string; digest: string }, SealDecision>('seal', carrier, () => readSealBody(body), (input, span) => {
      const { seal } = this.deps;
      if (!seal) return Promise.resolve<SealDecision>(denied('no_destination', 'this service publishes to no destination'));
      const handle = handles.length > 1 || handles[0]?.includes(',') ? TWO_HANDLES : handles[0];
      return decideSeal({ ...input, ...(handle !== undefined && { handle }) }, seal, span.context);
    }, sealAnswer);
  }

  check(body: unknown, carrier: TraceCarrier): Promise<Answer> {
    return this.answer<CheckInput, CheckDecision>('check', carrier, () => readCheckBody(body), (input) => decideCheck(input, this.deps.check), checkAnswer);
  }

  private async answer<I, D extends SealDecision | CheckDecision>(
    operation: Operation, carrier: TraceCarrier, read: () => I, decide: (input: I, span: MessageSpan) => Promise<D>,
    toAnswer: (decision: Extract<D, { allowed: true }>) => Answer,
  ): Promise<Answer> {
    let input: I;
    try {
      input = read();
    } catch (err) {
      if (err instanceof MessageRequestError) return badRequest(err.message);
      throw err;
    }
    const started = performance.now();
    const span = this.deps.startSpan(operation, carrier);
    let decision: D | Deny;
    try {
      decision = await decide(input, span);
    } catch (err) {
      this.deps.onFailure(operation, err);
      decision = denied('internal_error', 'unexpected failure while deciding');
    }
    const answer = decision.allowed ? toAnswer(decision as Extract<D, { allowed: true }>) : denyAnswer(operation, decision, span.traceId);
    span.end(decision as D);
    this.deps.record(operation, decision as D, span.traceId, (performance.now() - started) / 1000);
    return answer;
  }
}

/** Where a seal's handle is read from: the handle header, else (handle_baggage) W3C baggage. */
export interface HandleSource {
  header: string;
  baggage: boolean;
}

/** Every handle a seal came with: the header's values, else the baggage members (more than one is refused). */
export function sealHandles(source: HandleSource, headerValues: readonly string[], baggage: readonly string[]): readonly string[] {
  if (headerValues.length > 0 || !source.baggage) return headerValues;
  return baggage.flatMap((value) => readBaggageHandles(value).handles);
}

/** Bad input: a fixed text naming the member, never the value sent. */
export function badRequest(message: string): Answer {
  return { status: 400, body: { decision: 'deny', code: 'malformed_request', error: 'invalid_request', message } };
}

function denied(code: Deny['code'], reason: string): Deny {
  return { allowed: false, code, reason };
}

function denyAnswer(operation: Operation, decision: Deny, traceId: string): Answer {
  const spec = DENY_CODES[decision.code];
  const error = decision.oauthError ?? spec.bodyError;
  return {
    status: spec.http,
    body: { ...(operation === 'check' && { decision: 'deny' }), code: decision.code, error, trace_id: traceId },
  };
}

function sealAnswer(decision: SealDecision & { allowed: true }): Answer {
  const { token } = decision;
  return { status: 200, body: { token: token.accessToken, expires_in: Math.floor(token.lifetimeMs / 1000) } };
}

function checkAnswer(decision: CheckDecision & { allowed: true }): Answer {
  const { token } = decision;
  return {
    status: 200,
    body: {
      decision: 'allow', subject: token.sub, client_id: token.clientId, act: token.act ?? null, scope: token.scope,
      jti: token.jti, redelivered: decision.redelivered,
    },
  };
}

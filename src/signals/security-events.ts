import { isRecord } from '../schema/config-schema.js';
import { SetError, type VerifiedSet } from './security-event-token.js';

/**
 * What a verified SET asks of this mesh (design "Continuous access evaluation"): a pure
 * reading of its events, so the receiver only carries out what this returns.
 *   CAEP session-revoked, credential-change (change_type revoke or delete), RISC
 *   account-disabled, account-purged, credential-compromise: revoke the subject's tokens
 *   issued before the event (event_timestamp, else now); with a jwt_id subject, that token.
 *   CAEP token-claims-change: revoke the token its jwt_id subject names; other subjects: nothing.
 *   SSF verification: accepted, nothing else. Any other event type: accepted and counted.
 */

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const SSF = 'https://schemas.openid.net/secevent/ssf/event-type/';

/** Event types acted on, by URI, and their short names (the metric's `event` label; anything else is `other`). */
export const EVENT_TYPES = {
  [`${CAEP}session-revoked`]: 'session-revoked',
  [`${CAEP}credential-change`]: 'credential-change',
  [`${CAEP}token-claims-change`]: 'token-claims-change',
  [`${RISC}account-disabled`]: 'account-disabled',
  [`${RISC}account-purged`]: 'account-purged',
  [`${RISC}credential-compromise`]: 'credential-compromise',
  [`${SSF}verification`]: 'verification',
} as const;

export type EventName = (typeof EVENT_TYPES)[keyof typeof EVENT_TYPES] | 'other';

/** Who a revocation covers: a subject (every trusted issuer's tokens for that `sub`), or one token. */
export type SignalTarget =
  | { kind: 'subject'; subject: string; beforeSeconds: number }
  | { kind: 'token'; issuer: string; jti: string };

export interface SignalEvent {
  name: EventName;
  /** Absent: accepted without a revocation; `why` says which case. */
  target?: SignalTarget;
  why?: 'verification' | 'not_revoking' | 'unknown_type';
}

const CREDENTIAL_GONE = new Set(['revoke', 'delete']);

/** Throws SetError(invalid_request) when an event acted on is malformed or names a subject format not supported. */
export function readSignalEvents(set: VerifiedSet, nowSeconds: number): SignalEvent[] {
  return Object.entries(set.events).map(([uri, event]): SignalEvent => {
    const name: EventName = (EVENT_TYPES as Record<string, EventName>)[uri] ?? 'other';
    if (name === 'other') return { name, why: 'unknown_type' };
    if (name === 'verification') return { name, why: 'verification' };
    if (name === 'credential-change') {
      const change = event.change_type;
      if (typeof change !== 'string') throw new SetError('invalid_request', 'a credential-change event needs change_type');
      if (!CREDENTIAL_GONE.has(change)) return { name, why: 'not_revoking' };
    }
    const subject = readSubject(set.subId ?? event.subject);
    if (name === 'token-claims-change' && subject.kind !== 'token') return { name, why: 'not_revoking' };
    if (subject.kind === 'token') return { name, target: subject };
    return { name, target: { kind: 'subject', subject: subject.subject, beforeSeconds: revokedBefore(event.event_timestamp, nowSeconds) } };
  });
}

/** "Before the event": its event_timestamp, never later than now (a future one would revoke tokens not yet issued). */
function revokedBefore(timestamp: unknown, nowSeconds: number): number {
  if (timestamp === undefined) return nowSeconds;
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) {
    throw new SetError('invalid_request', 'event_timestamp must be a NumericDate');
  }
  return Math.min(timestamp, nowSeconds);
}

type Subject = { kind: 'subject'; subject: string } | { kind: 'token'; issuer: string; jti: string };

/**
 * The SSF 1.0 top-level sub_id (or, as older CAEP drafts put it, the event's `subject`) as the
 * value tokens carry in `sub`: iss_sub → sub, uri → uri, opaque → id, complex → its user read
 * the same way; jwt_id → that token. Other formats (email, phone_number, …) name nothing a
 * token here carries, and are refused rather than silently revoking nothing.
 */
function readSubject(id: unknown, nested = false): Subject {
  if (!isRecord(id)) throw new SetError('invalid_request', nested ? 'a complex subject needs a user member' : 'the SET names no subject (sub_id)');
  const member = (name: string): string => {
    const value = id[name];
    if (typeof value !== 'string' || value === '') throw new SetError('invalid_request', `the subject's ${name} must be a non-empty string`);
    return value;
  };
  switch (id.format) {
    case 'iss_sub':
      member('iss');
      return { kind: 'subject', subject: member('sub') };
    case 'uri':
      return { kind: 'subject', subject: member('uri') };
    case 'opaque':
      return { kind: 'subject', subject: member('id') };
    case 'jwt_id':
      return { kind: 'token', issuer: member('iss'), jti: member('jti') };
    case 'complex':
      if (nested) break;
      return readSubject(id.user, true);
    default:
      // An SSF complex subject written before `format: complex` was required.
      if (id.format === undefined && !nested && id.user !== undefined) return readSubject(id.user, true);
  }
  throw new SetError('invalid_request', 'the subject format is not supported: use iss_sub, uri, opaque, complex (user) or jwt_id');
}

import type { AuditRecorder } from '../audit/audit-log.js';
import { RevocationRequestError, revocationRecord, type RevocationPolicy } from '../store/revocation-request.js';
import { StoreUnavailableError, type HeldUses, type RevocationRecord, type Store } from '../store/store.js';
import type { IssuerMetrics } from '../telemetry/issuer-metrics.js';
import { fingerprint } from '../token/access-token-verifier.js';
import { SetError, verifySet, type SetErrorCode, type Transmitter, type VerifiedSet } from './security-event-token.js';
import { readSignalEvents, type SignalEvent } from './security-events.js';

/** What POST /ssf/events answers (RFC 8935 §2.2–2.4). */
export type SsfAnswer =
  | { status: 202 }
  | { status: 400; err: SetErrorCode; description: string }
  | { status: 503; err: 'temporarily_unavailable'; description: string };

export interface SsfReceiverDeps {
  transmitters: ReadonlyMap<string, Transmitter>;
  store: Store;
  audit: AuditRecorder;
  metrics: Pick<IssuerMetrics, 'recordSecurityEvent' | 'recordRevocation'>;
  /** How long revocations are kept: the issuer's longest lifetime plus skew (TokenService.revocationPolicy). */
  revocationPolicy: () => RevocationPolicy;
  clockSkewMs: number;
  maxAgeMs: number;
  now: () => number;
}

const REASON = 'security event';

/**
 * One pushed SET, from verified bytes to revocations in the store. Everything is checked before
 * anything is written: a SET refused leaves no trace in the store. An accepted SET is marked
 * by its transmitter and jti in the shared store first, so a resent SET (or the same one at
 * another replica) is a no-op, audited once; when a revocation cannot be written the mark is
 * given back, and the transmitter's retry does the work.
 */
export class SsfReceiver {
  constructor(private readonly deps: SsfReceiverDeps) {}

  async receive(body: string): Promise<SsfAnswer> {
    const { deps } = this;
    const nowMs = deps.now();
    let events: SignalEvent[];
    let records: RevocationRecord[];
    let set: VerifiedSet | undefined;
    try {
      set = await verifySet(body, deps.transmitters, { nowMs, clockSkewMs: deps.clockSkewMs, maxAgeMs: deps.maxAgeMs });
      events = readSignalEvents(set, nowMs / 1000);
      records = events.flatMap((e) => (e.target ? [this.record(e, nowMs)] : []));
    } catch (err) {
      if (!(err instanceof SetError)) throw err;
      deps.metrics.recordSecurityEvent(set ? 'malformed' : 'unverified', err.code);
      return { status: 400, err: err.code, description: err.message };
    }

    const held: HeldUses = [];
    try {
      // Remembered until the SET's iat is too old to be accepted again anyway.
      const until = Math.max(set.iat * 1000, nowMs) + deps.maxAgeMs + 2 * deps.clockSkewMs;
      if (!await deps.store.markUsed(fingerprint(`ssf:${set.issuer}`, set.jti), until, held)) {
        for (const e of events) deps.metrics.recordSecurityEvent(e.name, 'duplicate');
        return { status: 202 };
      }
      for (const record of records) await deps.store.revoke(record);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      for (const release of held) release();
      for (const e of events) deps.metrics.recordSecurityEvent(e.name, 'state_unavailable');
      if (records.length > 0) deps.metrics.recordRevocation('security_event', 'state_unavailable');
      return { status: 503, err: 'temporarily_unavailable', description: 'the shared store is unavailable; send the SET again' };
    }

    for (const e of events) deps.metrics.recordSecurityEvent(e.name, e.target ? 'revoked' : e.why!);
    for (let i = 0; i < records.length; i++) deps.metrics.recordRevocation('security_event', 'ok');
    const target = events.find((e) => e.target)?.target;
    deps.audit.record({
      event: 'security_event', decision: 'allow', issuer: set.issuer, setId: set.jti, securityEvents: events.map((e) => e.name),
      ...(target?.kind === 'subject' && { revoked: 'subject', subject: target.subject }),
      ...(target?.kind === 'token' && { revoked: 'jti', tokenFingerprint: fingerprint(target.issuer, target.jti) }),
    });
    return { status: 202 };
  }

  /** As `hopguard revoke` would write it: by subject for every trusted issuer, or the named iss + jti. */
  private record(event: SignalEvent, nowMs: number): RevocationRecord {
    const target = event.target!;
    try {
      return revocationRecord(
        target.kind === 'subject'
          ? { subject: target.subject, before: target.beforeSeconds, reason: `${REASON} ${event.name}` }
          : { jti: target.jti, issuer: target.issuer, reason: `${REASON} ${event.name}` },
        this.deps.revocationPolicy(),
        nowMs,
      );
    } catch (err) {
      if (err instanceof RevocationRequestError) throw new SetError('invalid_request', 'the jwt_id subject names an issuer whose tokens are not accepted here');
      throw err;
    }
  }
}

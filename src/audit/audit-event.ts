/**
 * What goes into the audit log. Callers (the authz check path, the issuer) pass an
 * AuditEvent to `AuditRecorder.record(event)`; the writer adds `seq`, `time` and the hash
 * chain. Every value is an identifier or a name: never a token, a refresh token, a
 * signature, a client secret or key material. A token is named by its fingerprint
 * (`VerifiedToken.fingerprint`, or `fingerprint(iss, jti)` from access-token-verifier).
 *
 * Issuer usage, one call per outcome (allowed or refused):
 *   audit.record({ event: 'issuance', decision: 'allow', issuer, audience, subject, client,
 *                  caller, scope, tokenFingerprint, traceId });
 *   audit.record({ event: 'exchange', decision: 'deny', code: 'invalid_grant', client, caller, traceId });
 *   audit.record({ event: 'refresh', decision: 'allow', …, tokenFingerprint });
 *   audit.record({ event: 'revocation', decision: 'allow', revoked: 'refresh_family', client, … });
 */

export interface AuditFields {
  decision: 'allow' | 'deny';
  /** hopguard's deny code, or the OAuth error the issuer answered with. */
  code?: string;
  /** The route the check matched (authz). */
  route?: string;
  issuer?: string;
  audience?: string;
  subject?: string;
  client?: string;
  /** The authenticated peer (mTLS URI SAN) that made the request. */
  caller?: string;
  tokenFingerprint?: string;
  traceId?: string;
}

export type AuditEvent =
  | (AuditFields & {
    event: 'validation';
    /** On condition_failed: the route condition that did not hold. */
    condition?: string;
    /** hopguard.config.revision: the content hash of the config that decided. */
    configRevision?: string;
  })
  | (AuditFields & {
    event: 'issuance' | 'exchange' | 'refresh';
    scope?: string;
    /** RFC 8693 delegation chain, outermost actor first. */
    actors?: string[];
    /** The identity provider whose token an exchange started the chain from (its `iss`). */
    subjectIssuer?: string;
    /** Set for a message token: the destination it was sealed for. */
    destination?: string;
  })
  /** The outbound check (egress.listen): a denial, or an allow whose token this check obtained from the issuer. */
  | (AuditFields & { event: 'egress'; destination?: string })
  /** The messages API (messages.listen): a seal (a token minted for a message) or a consumer's check. */
  | (AuditFields & { event: 'message_seal' | 'message_check'; destination?: string; scope?: string; actors?: string[]; redelivered?: boolean })
  | (AuditFields & { event: 'revocation'; revoked: 'jti' | 'subject' | 'client' | 'cert' | 'key' | 'refresh_family' })
  // Continuous access evaluation (src/signals).
  /** A SET accepted at /ssf/events, once per SET: its transmitter (issuer), jti, event names and what it revoked. */
  | (AuditFields & { event: 'security_event'; setId: string; securityEvents: string[]; revoked?: 'subject' | 'jti' })
  /** A validly signed token presented by someone not its holder; fingerprints only. `decision` allow: its jti was revoked. */
  | (AuditFields & { event: 'token_leak_suspected'; leak: string; presentedFingerprint?: string; otherCaller?: string; revoked?: 'jti' })
  /** A ServiceAccount deleted: its workload's subject revoked (not on a dry run). */
  | (AuditFields & { event: 'decommission'; dryRun: boolean; revoked?: 'subject' });

type AnyEventField = keyof AuditFields | 'scope' | 'actors' | 'subjectIssuer' | 'revoked' | 'destination' | 'condition' | 'configRevision'
  | 'setId' | 'securityEvents' | 'leak' | 'presentedFingerprint' | 'otherCaller' | 'dryRun' | 'redelivered';

/** File names, in file order. Only these leave the process: a stray property on an event never does. */
const FIELD_NAMES: [AnyEventField, string][] = [
  ['decision', 'decision'], ['code', 'code'], ['route', 'route'], ['issuer', 'issuer'], ['audience', 'audience'],
  ['subject', 'subject'], ['client', 'client'], ['caller', 'caller'], ['scope', 'scope'], ['actors', 'actors'],
  ['subjectIssuer', 'subject_issuer'], ['revoked', 'revoked'], ['destination', 'destination'], ['condition', 'condition'],
  ['tokenFingerprint', 'token_fingerprint'], ['configRevision', 'config_revision'], ['traceId', 'trace_id'],
  ['setId', 'set_id'], ['securityEvents', 'security_events'], ['leak', 'leak'], ['presentedFingerprint', 'presented_fingerprint'],
  ['otherCaller', 'other_caller'], ['dryRun', 'dry_run'], ['redelivered', 'redelivered'],
];

/** The event's fields as written: snake_case, fixed order, absent ones left out. */
export function auditFields(event: AuditEvent): Record<string, unknown> {
  const source = event as Partial<Record<AnyEventField, unknown>>;
  const out: Record<string, unknown> = {};
  for (const [key, name] of FIELD_NAMES) if (source[key] !== undefined) out[name] = source[key];
  return out;
}

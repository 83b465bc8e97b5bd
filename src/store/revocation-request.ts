import { X509Certificate, createHash } from 'node:crypto';
import { fingerprint } from '../token/access-token-verifier.js';
import type { RevocationRecord } from './store.js';

/** What an operator asks `hopguard revoke` for: exactly one target. */
export interface RevocationRequest {
  jti?: string;
  /** Which issuer's jti; may be left out when the config trusts one issuer. */
  issuer?: string;
  subject?: string;
  client?: string;
  certThumbprint?: string;
  /** PEM text of a certificate to flag. */
  certPem?: string;
  /** How long a thumbprint stays flagged when no certificate says when it expires. */
  forMs?: number;
  reason?: string;
  /** Subject or client: revoke tokens issued before this (epoch seconds, not after now); now when absent. */
  before?: number;
}

export class RevocationRequestError extends Error {
  readonly code = 'invalid_revocation';
}

const DEFAULT_THUMBPRINT_MS = 24 * 3600_000;

/**
 * The record to store, kept exactly as long as a token it covers could still be valid:
 * a token lives at most the longest max_ttl of any trusted issuer, plus clock skew.
 */
export interface RevocationPolicy {
  /** Each trusted issuer, and the longest a token it issued can live. */
  issuers: { issuer: string; maxTtlMs: number }[];
  clockSkewMs: number;
}

export function revocationRecord(request: RevocationRequest, config: RevocationPolicy, nowMs: number): RevocationRecord {
  const targets = ['jti', 'subject', 'client', 'certThumbprint', 'certPem'].filter((k) => request[k as keyof RevocationRequest] !== undefined);
  if (targets.length !== 1) throw new RevocationRequestError('name exactly one of --jti, --subject, --client, --cert-thumbprint, --cert');
  const lifetime = Math.max(...config.issuers.map((i) => i.maxTtlMs)) + config.clockSkewMs;
  const reason = request.reason !== undefined ? { reason: request.reason } : {};
  const nowSeconds = nowMs / 1000;
  const before = Math.min(request.before ?? nowSeconds, nowSeconds);

  if (request.jti !== undefined) {
    const issuer = request.issuer ?? onlyIssuer(config);
    if (!config.issuers.some((i) => i.issuer === issuer)) throw new RevocationRequestError('--issuer is not one of the configured issuers');
    return { revocation: { kind: 'jti', fingerprint: fingerprint(issuer, request.jti) }, expiresAtMs: nowMs + lifetime, ...reason };
  }
  if (request.subject !== undefined) {
    return { revocation: { kind: 'subject', value: request.subject, before }, expiresAtMs: nowMs + lifetime, ...reason };
  }
  if (request.client !== undefined) {
    return { revocation: { kind: 'client', value: request.client, before }, expiresAtMs: nowMs + lifetime, ...reason };
  }
  if (request.certPem !== undefined) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(request.certPem);
    } catch {
      throw new RevocationRequestError('--cert is not a PEM certificate');
    }
    // Tokens bound to this certificate can be minted until it expires.
    const until = Math.max(nowMs + lifetime, Date.parse(cert.validTo) + lifetime);
    return { revocation: { kind: 'cert', thumbprint: createHash('sha256').update(cert.raw).digest('base64url') }, expiresAtMs: until, ...reason };
  }
  if (!/^[A-Za-z0-9_-]{43}$/.test(request.certThumbprint!)) {
    throw new RevocationRequestError('--cert-thumbprint must be an x5t#S256 thumbprint: 43 base64url characters');
  }
  return {
    revocation: { kind: 'cert', thumbprint: request.certThumbprint! },
    expiresAtMs: nowMs + Math.max(lifetime, request.forMs ?? DEFAULT_THUMBPRINT_MS),
    ...reason,
  };
}

function onlyIssuer(config: RevocationPolicy): string {
  if (config.issuers.length !== 1) throw new RevocationRequestError('the config trusts several issuers: say which with --issuer');
  return config.issuers[0]!.issuer;
}

/** One line for the operator: what was revoked and until when. Names only what they typed. */
export function describeRevocation(record: RevocationRecord, request: RevocationRequest): string {
  const r = record.revocation;
  const until = new Date(record.expiresAtMs).toISOString();
  const what = r.kind === 'jti' ? `token id ${request.jti}`
    : r.kind === 'cert' ? `certificate x5t#S256 ${r.thumbprint}`
      : r.kind === 'key' ? `every token signed by ${r.issuer}'s key ${r.kid}`
      : `every token of ${r.kind} ${r.value} issued before ${new Date(r.before * 1000).toISOString()}`;
  return `revoked ${what}; enforced until ${until}${record.reason !== undefined ? `; reason: ${record.reason}` : ''}`;
}

import { LRUCache } from 'lru-cache';
import type { AuditRecorder } from '../audit/audit-log.js';
import type { LeakAction } from '../config/authz-config.js';
import { StoreUnavailableError, revocationSubject, type Store } from '../store/store.js';
import type { Logger } from '../telemetry/log.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';

/**
 * A leaked token (design "Continuous access evaluation"): one whose signature, issuer, audience
 * and lifetime verified, presented by someone other than its holder. Only this sidecar sees it,
 * so only it can act: `revoke` (default) revokes the token's jti in the shared store, so every
 * sidecar denies it from then on, also to its rightful holder; `report` only counts and audits.
 *
 * Nothing unverified reaches here: a forged or expired token is refused before any binding is
 * looked at, so revoking takes holding a real token. Whoever holds someone else's token can
 * have it revoked; that is the point. A certificate of the token's own client (the caller's
 * principal is its client_id) is a rotated certificate, not a leak: that is refused as before
 * and revokes nothing.
 */

export type LeakKind = 'wrong_certificate' | 'wrong_dpop_key' | 'two_callers';

export interface Leak {
  kind: LeakKind;
  /** The principal that presented it ('' when Envoy named none). */
  caller: string;
  /** The holder it presented instead: a certificate's x5t#S256 or a DPoP key's jkt. */
  presented?: string;
  /** For two_callers: the principal this sidecar saw it from first. */
  otherCaller?: string;
}

export interface LeakResponseOptions {
  action: LeakAction;
  store: Store;
  audit: AuditRecorder;
  log: Logger;
  /** Counts hopguard_leaks_total{kind}. */
  onLeak: (kind: LeakKind) => void;
  audience: string;
  clockSkewMs: number;
  /** Bearer tokens whose first caller is remembered, and tokens already handled; bounded. */
  maxTracked?: number;
  now?: () => number;
}

const DEFAULT_TRACKED = 100_000;

export class LeakResponse {
  /** Token fingerprint → the principal it was first presented by (bearer tokens). */
  private readonly callers: LRUCache<string, string>;
  /** Tokens already handled here: a leaked token retried in a loop is acted on and audited once. */
  private readonly handled: LRUCache<string, true>;
  private readonly now: () => number;

  constructor(private readonly options: LeakResponseOptions) {
    const max = options.maxTracked ?? DEFAULT_TRACKED;
    // ttlResolution 0: no timer a millisecond to forget a cached clock (see the verification cache).
    this.callers = new LRUCache({ max, ttlResolution: 0 });
    this.handled = new LRUCache({ max, ttlResolution: 0 });
    this.now = options.now ?? Date.now;
  }

  /**
   * Records that `caller` presented `token`; returns the earlier caller when it was another
   * principal. A request without a principal says nothing about who holds the token.
   */
  otherCaller(token: VerifiedToken, caller: string): string | undefined {
    if (caller === '') return undefined;
    const first = this.callers.get(token.fingerprint);
    if (first === undefined) {
      this.callers.set(token.fingerprint, caller, { ttl: this.lifetimeMs(token) });
      return undefined;
    }
    return first === caller ? undefined : first;
  }

  /**
   * Acts on a leak once per token: counts, audits and (with `revoke`) revokes its jti mesh-wide.
   * Resolves `revoked` when the token is revoked now (by this or an earlier revocation),
   * `reported` when it is a leak left alive, `none` when it is no leak after all.
   */
  async leaked(token: VerifiedToken, leak: Leak, context: { route?: string; code?: string }): Promise<'revoked' | 'reported' | 'none'> {
    if (leak.kind === 'wrong_certificate' && leak.caller !== '' && leak.caller === token.clientId) return 'none';
    const { store, action } = this.options;
    if (store.findRevocation(revocationSubject(token))) return 'revoked';
    if (this.handled.has(token.fingerprint)) return 'reported';
    this.handled.set(token.fingerprint, true, { ttl: this.lifetimeMs(token) });
    this.options.onLeak(leak.kind);

    let revoked = false;
    if (action === 'revoke') {
      try {
        await store.revoke({
          revocation: { kind: 'jti', fingerprint: token.fingerprint },
          expiresAtMs: token.exp * 1000 + this.options.clockSkewMs,
          reason: `leak suspected: ${leak.kind}`,
        });
        revoked = true;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        // Handled again at its next presentation, when the store may answer.
        this.handled.delete(token.fingerprint);
        this.options.log.error('leak_revocation_failed', { kind: leak.kind, token_fingerprint: token.fingerprint });
      }
    }
    const code = revoked && leak.kind === 'two_callers' ? 'token_revoked' : context.code;
    this.options.audit.record({
      event: 'token_leak_suspected',
      decision: code === undefined ? 'allow' : 'deny',
      ...(code !== undefined && { code }),
      ...(context.route !== undefined && { route: context.route }),
      leak: leak.kind,
      issuer: token.iss, audience: this.options.audience, subject: token.sub, client: token.clientId,
      ...(leak.caller !== '' && { caller: leak.caller }),
      ...(leak.otherCaller !== undefined && { otherCaller: leak.otherCaller }),
      tokenFingerprint: token.fingerprint,
      ...(leak.presented !== undefined && { presentedFingerprint: leak.presented }),
      ...(revoked && { revoked: 'jti' }),
    });
    return revoked ? 'revoked' : 'reported';
  }

  private lifetimeMs(token: VerifiedToken): number {
    return Math.max(1, token.exp * 1000 + this.options.clockSkewMs - this.now());
  }
}

import { randomUUID } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { SIGNING_ALGORITHMS, type IssuerClient, type IssuerConfig } from '../config/issuer-config.js';
import { revocationRecord, type RevocationRequest } from '../store/revocation-request.js';
import { StoreUnavailableError, revocationSubject, type RevocationRecord, type Store } from '../store/store.js';
import { actors } from '../token/access-token-claims.js';
import { AccessTokenVerifier, fingerprint } from '../token/access-token-verifier.js';
import { decodeCompactJws } from '../token/compact-jws.js';
import { normalizeHtu, verifyDpopProof } from '../token/dpop-proof.js';
import type { IssuerKeys } from '../token/issuer-keys.js';
import { TokenError } from '../token/token-error.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';
import type { AuthenticatedClient } from './client-auth.js';
import { MESSAGE_TOKEN_TYP, MESSAGE_TOKEN_TYPE, type MessageClaim } from '../vocabulary/message-token.js';
import { allowGrant, narrowScope, target } from './grant-rules.js';
import type { Keyring } from './keyring.js';
import { readMessageRequest, wantsMessageToken } from './message-grant.js';
import { OAuthError } from './oauth-error.js';
import type { TrustedSubjectIssuer } from './subject-issuers.js';

/** A refresh token presented a second time (RFC 9700 §4.14.2): its family is revoked, counted as reuse. */
export class RefreshTokenReused extends OAuthError {
  constructor() {
    super('invalid_grant', 'the refresh token was already used; its family is revoked');
  }
}

/** The reason on every revocation a refresh-token family's reuse or revocation causes. */
export const FAMILY_REVOKED = 'refresh token family revoked';

/** The `typ`s of the tokens /revoke revokes by jti (a refresh token is revoked with its family). */
const REVOCABLE_TYPS = new Set(['at+jwt', MESSAGE_TOKEN_TYP]);
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
/** Refresh tokens are JWTs of a type no sidecar accepts as an access token. */
const REFRESH_TOKEN_TYP = 'rt+jwt';
export const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'RS256', 'PS256'];
const DPOP_MAX_AGE_MS = 60_000;
/** Put in a family's set when it dies; members are `fingerprint exp`, so it is never one of them. */
const DEAD_FAMILY_MARK = 'dead';

/** cnf of an access token: the client certificate (RFC 8705) or a DPoP key (RFC 9449). */
type Binding = { 'x5t#S256': string } | { jkt: string };

export interface TokenResponse {
  access_token: string;
  /**
   * DPoP for a DPoP-bound token (RFC 9449 §5); certificate-bound tokens stay Bearer (RFC 8705);
   * N_A for a message token, which is no access token (RFC 8693 §2.2.1).
   */
  token_type: 'Bearer' | 'DPoP' | 'N_A';
  expires_in: number;
  scope: string;
  issued_token_type?: string;
  refresh_token?: string;
}

/** What happened, for the audit log and the issuer's spans: identifiers only, never tokens. */
export interface IssuedToken {
  grant: 'client_credentials' | 'token_exchange' | 'refresh_token';
  client: string;
  subject: string;
  audience: string;
  scope: string;
  fingerprint: string;
  /** The delegation chain, outermost actor first (token exchange). */
  actors: string[];
  /** The identity provider whose token started the chain (an exchange of a subject issuer's token). */
  subjectIssuer?: string;
  /** A message token's destination (a queue, subject or topic). */
  destination?: string;
}

/** Who a message token speaks for: the producer itself, or (token exchange) the subject token's subject. */
interface MessageOrigin {
  grant: 'client_credentials' | 'token_exchange';
  subject: string;
  /** The scopes it may carry before narrowing to the request's. */
  available: readonly string[];
  act?: Record<string, unknown>;
  subjectIssuer?: string;
}

interface RefreshClaims {
  client_id: string;
  fam: string;
  jti: string;
  iat: number;
  exp: number;
  scope: string;
  target: string;
  cnf: { 'x5t#S256': string };
  /** From the header: the key that signed it, so a revoked key's refresh tokens die with it. */
  kid: string;
}

/**
 * POST /token and POST /revoke, without HTTP: each grant takes the authenticated client and
 * the form parameters and returns a response or throws an OAuthError.
 */
export class TokenService {
  private readonly exchangeVerifiers = new Map<string, AccessTokenVerifier>();

  constructor(
    private readonly config: IssuerConfig,
    private readonly keyring: Keyring,
    private readonly store: Store,
    private readonly now: () => number = Date.now,
    subjectIssuers: readonly TrustedSubjectIssuer[] = [],
  ) {
    // Only the audience of a token may exchange it: one verifier per client that may exchange,
    // trusting this issuer's tokens for that client and the subject issuers that list it.
    const keys = keyringKeys(keyring, now);
    for (const client of config.clients.filter((c) => c.grants.includes('token_exchange'))) {
      const external = subjectIssuers.filter((s) => s.clients.includes(client.id)).map((s) => s.trusted);
      this.exchangeVerifiers.set(client.id, new AccessTokenVerifier({
        audience: client.id,
        issuers: [{ config: { issuer: config.issuer, algorithms: [...SIGNING_ALGORITHMS], maxTtlMs: config.tokenTtlMs }, keys }, ...external],
        clockSkewMs: config.clockSkewMs,
        cacheMaxEntries: 0,
        now,
      }));
    }
  }

  /**
   * `dpopProof`: the request's one DPoP header, 'invalid' when it was sent more than once.
   * With a valid proof from a client configured for DPoP, the access token is bound to the
   * proof's key (cnf.jkt) instead of the client certificate.
   */
  async token(
    { client, thumbprint }: AuthenticatedClient,
    params: Map<string, string>,
    dpopProof?: string,
  ): Promise<{ response: TokenResponse; issued: IssuedToken }> {
    const grantType = params.get('grant_type');
    switch (grantType) {
      case 'client_credentials':
        allowGrant(client, 'client_credentials');
        if (wantsMessageToken(params)) {
          if (dpopProof !== undefined) throw new OAuthError('invalid_dpop_proof', 'a message token is bound to its message, not a DPoP key');
          return this.messageToken(client, params, { grant: 'client_credentials', subject: client.id, available: client.scopes });
        }
        return this.clientCredentials(client, thumbprint, params, await this.binding(client, thumbprint, dpopProof));
      case TOKEN_EXCHANGE_GRANT:
        allowGrant(client, 'token_exchange');
        if (dpopProof !== undefined) throw new OAuthError('invalid_dpop_proof', 'token exchange binds to the caller\'s certificate, not a DPoP key');
        return this.exchange(client, thumbprint, params);
      case 'refresh_token':
        allowGrant(client, 'refresh_token');
        return this.refresh(client, thumbprint, params, await this.binding(client, thumbprint, dpopProof));
      case undefined:
        throw new OAuthError('invalid_request', 'grant_type is required');
      default:
        throw new OAuthError('unsupported_grant_type', 'grant_type must be client_credentials, token exchange or refresh_token');
    }
  }

  /** What the access token is bound to: the proof's key (RFC 9449 §5), else the client certificate. */
  private async binding(client: IssuerClient, thumbprint: string, proof: string | undefined): Promise<Binding> {
    if (proof === undefined) return { 'x5t#S256': thumbprint };
    if (!client.dpop) throw new OAuthError('invalid_dpop_proof', 'this client is not configured for DPoP');
    if (proof === 'invalid') throw new OAuthError('invalid_dpop_proof', 'exactly one DPoP header is required');
    let verified;
    try {
      verified = await verifyDpopProof(proof, {
        method: 'POST', htu: normalizeHtu(`${this.config.issuer.replace(/\/$/, '')}/token`)!, algorithms: DPOP_ALGORITHMS,
        now: this.now(), maxAgeMs: DPOP_MAX_AGE_MS, skewMs: this.config.clockSkewMs,
      });
    } catch (err) {
      if (err instanceof TokenError) throw new OAuthError('invalid_dpop_proof', err.message);
      throw err;
    }
    const first = await this.stateful(() => this.store.markUsed(
      fingerprint(`dpop:${verified.jkt}`, verified.jti), verified.iat * 1000 + DPOP_MAX_AGE_MS + 2 * this.config.clockSkewMs));
    if (!first) throw new OAuthError('invalid_dpop_proof', 'the DPoP proof was already used');
    return { jkt: verified.jkt };
  }

  private async clientCredentials(client: IssuerClient, thumbprint: string, params: Map<string, string>, cnf: Binding) {
    const audience = target(client, params);
    const scope = narrowScope(params.get('scope'), client.scopes);
    const nowS = this.nowSeconds();
    const exp = nowS + this.ttlSeconds();
    const jti = randomUUID();
    // The family starts with this access token: a reuse of any of its refresh tokens revokes it too.
    const family = client.grants.includes('refresh_token') ? randomUUID() : undefined;
    if (family !== undefined) await this.joinFamily(family, jti, exp);
    const issued = await this.issue({ client, cnf, subject: client.id, audience, scope, iat: nowS, exp, jti, grant: 'client_credentials' });
    if (family !== undefined) {
      issued.response.refresh_token = await this.refreshToken(client, thumbprint, { fam: family, exp: nowS + Math.floor(this.config.refreshTtlMs / 1000), scope, target: audience });
    }
    return issued;
  }

  /** RFC 8693 §2: the caller trades the token it received for one to the next hop. */
  private async exchange(client: IssuerClient, thumbprint: string, params: Map<string, string>) {
    const subjectToken = params.get('subject_token');
    const subjectType = params.get('subject_token_type');
    if (!subjectToken || !subjectType) throw new OAuthError('invalid_request', 'subject_token and subject_token_type are required');
    if (subjectType !== ACCESS_TOKEN_TYPE && subjectType !== JWT_TOKEN_TYPE) {
      throw new OAuthError('invalid_request', 'subject_token_type must be an access token');
    }
    if (params.has('actor_token')) throw new OAuthError('invalid_request', 'actor_token is not supported: the actor is the authenticated client');
    const requested = params.get('requested_token_type');
    const message = wantsMessageToken(params);
    if (requested !== undefined && requested !== ACCESS_TOKEN_TYPE && !message) {
      throw new OAuthError('invalid_request', 'only access tokens and message tokens can be requested');
    }

    const subject = await this.verifySubject(client, subjectToken);
    const subjectIssuer = subject.iss === this.config.issuer ? undefined : subject.iss;
    if (subjectIssuer !== undefined) startsChain(subject, thumbprint);
    const depth = actors(subject.act).length + 1;
    if (depth > this.config.maxDelegationDepth) throw new OAuthError('invalid_grant', 'the delegation chain is longer than allowed');
    // Scopes only narrow along a chain: what the subject token carried and what this client may have.
    const available = client.scopes.filter((s) => subject.scopes.has(s));
    const act = { sub: client.id, ...(subject.act && { act: subject.act }) };
    if (message) {
      return this.messageToken(client, params, {
        grant: 'token_exchange', subject: subject.sub, available, act, ...(subjectIssuer !== undefined && { subjectIssuer }),
      });
    }
    const audience = target(client, params);
    const scope = narrowScope(params.get('scope'), available);
    const iat = this.nowSeconds();
    const exp = Math.min(iat + this.ttlSeconds(), subject.exp);
    const issued = await this.issue({ client, cnf: { 'x5t#S256': thumbprint }, subject: subject.sub, audience, scope, iat, exp, jti: randomUUID(), act, grant: 'token_exchange' });
    issued.response.issued_token_type = ACCESS_TOKEN_TYPE;
    if (subjectIssuer !== undefined) issued.issued.subjectIssuer = subjectIssuer;
    return issued;
  }

  /**
   * A token for one message (design "Messages"): addressed to a consumer of the client's
   * message_audiences, carrying the message's destination and digest, living as long as the
   * message may wait (capped by message_ttl, not by the subject token's exp: a message may wait
   * longer than a request lives). Bound to no certificate: its consumer is another workload.
   */
  private async messageToken(client: IssuerClient, params: Map<string, string>, origin: MessageOrigin) {
    const { message, maxDelaySeconds } = readMessageRequest(params);
    const audience = target(client, params, client.messageAudiences);
    const scope = narrowScope(params.get('scope'), origin.available);
    const capSeconds = Math.floor(this.config.messageTtlMs / 1000);
    const iat = this.nowSeconds();
    const exp = iat + Math.min(maxDelaySeconds ?? capSeconds, capSeconds);
    const issued = await this.issue({
      client, subject: origin.subject, audience, scope, iat, exp, jti: randomUUID(), grant: origin.grant, message,
      ...(origin.act && { act: origin.act }),
    });
    issued.response.issued_token_type = MESSAGE_TOKEN_TYPE;
    if (origin.subjectIssuer !== undefined) issued.issued.subjectIssuer = origin.subjectIssuer;
    return issued;
  }

  /** Rotated on every use; using one twice revokes its whole family (RFC 9700 §4.14.2). */
  private async refresh(client: IssuerClient, thumbprint: string, params: Map<string, string>, cnf: Binding) {
    const token = params.get('refresh_token');
    if (!token) throw new OAuthError('invalid_request', 'refresh_token is required');
    const claims = await this.verifyRefreshToken(token);
    if (!claims || claims.client_id !== client.id) throw new OAuthError('invalid_grant', 'the refresh token is not valid for this client');
    if (claims.cnf['x5t#S256'] !== thumbprint) throw new OAuthError('invalid_grant', 'the refresh token is bound to another certificate');
    if (this.familyRevoked(claims)) throw new OAuthError('invalid_grant', 'the refresh token has been revoked');
    const first = await this.stateful(() => this.store.markUsed(fingerprint(this.config.issuer, claims.jti), (claims.exp * 1000) + this.config.clockSkewMs));
    if (!first) {
      await this.revokeFamily(claims);
      throw new RefreshTokenReused();
    }
    const scope = narrowScope(params.get('scope'), claims.scope === '' ? [] : claims.scope.split(' '));
    const iat = this.nowSeconds();
    const exp = Math.min(iat + this.ttlSeconds(), claims.exp);
    // Joined before it is signed, then the family checked: a reuse that kills the family after our
    // markUsed either lists this token or marked the family before we look (revokeFamily).
    const jti = randomUUID();
    await this.joinFamily(claims.fam, jti, exp);
    if (await this.familyDead(claims)) throw new OAuthError('invalid_grant', 'the refresh token has been revoked');
    const issued = await this.issue({ client, cnf, subject: client.id, audience: claims.target, scope, iat, exp, jti, grant: 'refresh_token' });
    issued.response.refresh_token = await this.refreshToken(client, thumbprint, { fam: claims.fam, exp: claims.exp, scope: claims.scope, target: claims.target });
    return issued;
  }

  /**
   * RFC 7009: revoke an access, message or refresh token this client holds; 200 for tokens that
   * are unknown, invalid or expired. A message token is revoked by jti, so every consumer refuses it. An admin client may instead revoke by subject, client or
   * certificate (hopguard's extension: `subject`, `client_id`, `cert_thumbprint`).
   */
  async revoke({ client }: AuthenticatedClient, params: Map<string, string>): Promise<RevocationRecord | undefined> {
    const token = params.get('token');
    if (token === undefined) return this.adminRevoke(client, params);
    const hint = params.get('token_type_hint');
    if (hint !== undefined && hint !== 'access_token' && hint !== 'refresh_token') {
      throw new OAuthError('unsupported_token_type', 'token_type_hint must be access_token or refresh_token', 400);
    }
    const refresh = await this.verifyRefreshToken(token);
    if (refresh) {
      if (refresh.client_id !== client.id) throw new OAuthError('unauthorized_client', 'the token was not issued to this client');
      return this.revokeFamily(refresh);
    }
    const own = await this.readOwnToken(token);
    if (!own) return undefined;
    if (own.client_id !== client.id) throw new OAuthError('unauthorized_client', 'the token was not issued to this client');
    const record: RevocationRecord = {
      revocation: { kind: 'jti', fingerprint: fingerprint(this.config.issuer, own.jti) },
      expiresAtMs: (own.exp * 1000) + this.config.clockSkewMs,
    };
    await this.stateful(() => this.store.revoke(record));
    return record;
  }

  private async adminRevoke(client: IssuerClient, params: Map<string, string>): Promise<RevocationRecord> {
    if (!client.admin) throw new OAuthError('invalid_request', 'token is required');
    const request: RevocationRequest = {};
    const subject = params.get('subject');
    const clientId = params.get('client_id');
    const thumbprint = params.get('cert_thumbprint');
    if (subject !== undefined) request.subject = subject;
    if (clientId !== undefined) request.client = clientId;
    if (thumbprint !== undefined) request.certThumbprint = thumbprint;
    const reason = params.get('reason');
    if (reason !== undefined) request.reason = reason;
    let record: RevocationRecord;
    try {
      record = revocationRecord(request, this.revocationPolicy(), this.now());
    } catch (err) {
      throw new OAuthError('invalid_request', (err as Error).message);
    }
    await this.stateful(() => this.store.revoke(record));
    return record;
  }

  /** An access token (with `cnf`), or a message token (with `message`, and no `cnf`). */
  private async issue(input: {
    /** iat and exp come from one reading of the clock, taken before any await, so exp - iat is the lifetime asked for. */
    client: IssuerClient; subject: string; audience: string; scope: string; iat: number; exp: number; jti: string;
    grant: IssuedToken['grant']; act?: Record<string, unknown>;
  } & ({ cnf: Binding; message?: undefined } | { cnf?: undefined; message: MessageClaim })): Promise<{ response: TokenResponse; issued: IssuedToken }> {
    const now = this.now();
    const key = this.keyring.signingKey(now);
    const { iat, jti } = input;
    const accessToken = await new SignJWT({
      sub: input.subject,
      client_id: input.client.id,
      aud: input.audience,
      jti,
      ...(input.scope !== '' && { scope: input.scope }),
      ...(input.cnf && { cnf: input.cnf }),
      ...(input.act && { act: input.act }),
      ...(input.message && { message: { destination: input.message.destination, digest: input.message.digest } }),
    })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: input.message ? MESSAGE_TOKEN_TYP : 'at+jwt' })
      .setIssuer(this.config.issuer)
      .setIssuedAt(iat)
      .setExpirationTime(input.exp)
      .sign(key.privateKey);
    const tokenFingerprint = fingerprint(this.config.issuer, jti);
    const tokenType = input.cnf === undefined ? 'N_A' : 'jkt' in input.cnf ? 'DPoP' : 'Bearer';
    return {
      response: { access_token: accessToken, token_type: tokenType, expires_in: Math.max(0, input.exp - iat), scope: input.scope },
      issued: {
        grant: input.grant, client: input.client.id, subject: input.subject, audience: input.audience, scope: input.scope,
        fingerprint: tokenFingerprint, actors: actors(input.act), ...(input.message && { destination: input.message.destination }),
      },
    };
  }

  private async refreshToken(client: IssuerClient, thumbprint: string, family: { fam: string; exp: number; scope: string; target: string }): Promise<string> {
    const key = this.keyring.signingKey(this.now());
    return new SignJWT({ client_id: client.id, fam: family.fam, scope: family.scope, target: family.target, cnf: { 'x5t#S256': thumbprint } })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: REFRESH_TOKEN_TYP })
      .setIssuer(this.config.issuer)
      .setAudience(this.config.issuer)
      .setSubject(client.id)
      .setJti(randomUUID())
      .setIssuedAt(Math.floor(this.now() / 1000))
      .setExpirationTime(family.exp)
      .sign(key.privateKey);
  }

  private async verifySubject(client: IssuerClient, token: string): Promise<VerifiedToken> {
    let verified: VerifiedToken;
    try {
      ({ token: verified } = await this.exchangeVerifiers.get(client.id)!.verify(token));
    } catch (err) {
      if (err instanceof TokenError) throw new OAuthError('invalid_grant', `the subject token is not valid for this client (${err.code})`);
      throw err;
    }
    const revoked = this.store.findRevocation(revocationSubject(verified));
    if (revoked) throw new OAuthError('invalid_grant', 'the subject token has been revoked');
    return verified;
  }

  /** Our own refresh token, or undefined for anything else (strictly decoded, signature checked). */
  private async verifyRefreshToken(token: string): Promise<RefreshClaims | undefined> {
    try {
      const { header } = decodeCompactJws(token);
      if (header.typ !== REFRESH_TOKEN_TYP) return undefined;
      const key = this.keyring.find(header.kid as string | undefined, String(header.alg), this.now());
      if (!key) return undefined;
      const { payload } = await jwtVerify(token, key.publicKey, {
        issuer: this.config.issuer, audience: this.config.issuer, typ: REFRESH_TOKEN_TYP, algorithms: [key.alg],
        clockTolerance: this.config.clockSkewMs / 1000, currentDate: new Date(this.now()),
      });
      return { ...payload, kid: key.kid } as unknown as RefreshClaims;
    } catch {
      return undefined;
    }
  }

  /** An access or message token this issuer signed, even if expired or revoked; undefined otherwise. */
  private async readOwnToken(token: string): Promise<{ client_id: string; jti: string; exp: number } | undefined> {
    try {
      const { header } = decodeCompactJws(token);
      const key = this.keyring.find(header.kid as string | undefined, String(header.alg), this.now());
      if (!key || !REVOCABLE_TYPS.has(String(header.typ).toLowerCase())) return undefined;
      const { payload } = await jwtVerify(token, key.publicKey, { issuer: this.config.issuer, algorithms: [key.alg], currentDate: new Date(0) });
      const { client_id: clientId, jti, exp } = payload;
      return typeof clientId === 'string' && typeof jti === 'string' && typeof exp === 'number' ? { client_id: clientId, jti, exp } : undefined;
    } catch {
      return undefined;
    }
  }

  private familyRevoked(claims: RefreshClaims): boolean {
    return this.store.findRevocation({
      jtiFingerprint: fingerprint(this.config.issuer, familySet(claims.fam)),
      sub: claims.client_id, clientId: claims.client_id, iat: claims.iat, certThumbprint: claims.cnf['x5t#S256'],
      issuer: this.config.issuer, kid: claims.kid,
    }) !== undefined;
  }

  /** An access token of the family, recorded before it is signed so the family's death always covers it. */
  private async joinFamily(family: string, jti: string, exp: number): Promise<void> {
    const member = `${fingerprint(this.config.issuer, jti)} ${exp}`;
    await this.stateful(() => this.store.addToSet(familySet(family), member, (exp * 1000) + this.config.clockSkewMs));
  }

  /** Read from the shared set, not the revocation index: another replica's reuse may not have reached it yet. */
  private async familyDead(claims: RefreshClaims): Promise<boolean> {
    return (await this.stateful(() => this.store.members(familySet(claims.fam)))).includes(DEAD_FAMILY_MARK);
  }

  /** The family's refresh tokens, and every access token minted from it, die together. */
  private async revokeFamily(claims: RefreshClaims): Promise<RevocationRecord> {
    const skew = this.config.clockSkewMs;
    const record: RevocationRecord = {
      revocation: { kind: 'jti', fingerprint: fingerprint(this.config.issuer, familySet(claims.fam)) },
      expiresAtMs: (claims.exp * 1000) + skew,
      reason: FAMILY_REVOKED,
    };
    await this.stateful(async () => {
      // Marked before the members are listed: a refresh joining after the listing sees the mark.
      await this.store.addToSet(familySet(claims.fam), DEAD_FAMILY_MARK, record.expiresAtMs);
      await this.store.revoke(record);
      for (const member of await this.store.members(familySet(claims.fam))) {
        if (member === DEAD_FAMILY_MARK) continue;
        const [tokenFingerprint = '', exp = '0'] = member.split(' ');
        await this.store.revoke({ revocation: { kind: 'jti', fingerprint: tokenFingerprint }, expiresAtMs: (Number(exp) * 1000) + skew, reason: record.reason! });
      }
    });
    return record;
  }

  /** A revocation lasts as long as any token it covers could still be presented here, a subject issuer's included. */
  revocationPolicy() {
    return {
      issuers: [
        { issuer: this.config.issuer, maxTtlMs: Math.max(this.config.tokenTtlMs, this.config.messageTtlMs, this.config.refreshTtlMs) },
        ...this.config.subjectIssuers.map(({ issuer, maxTtlMs }) => ({ issuer, maxTtlMs })),
      ],
      clockSkewMs: this.config.clockSkewMs,
    };
  }

  private async stateful<T>(action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw new OAuthError('temporarily_unavailable', 'shared state is unavailable; try again', 503);
      throw err;
    }
  }

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  private ttlSeconds(): number {
    return Math.floor(this.config.tokenTtlMs / 1000);
  }
}

/**
 * A subject issuer's token starts the chain: the caller becomes its first actor, so the token
 * may name no actor of its own (an identity provider's `act` names parties this mesh never
 * authenticated, and callees' `callers` rules read the chain). A token bound to a key or
 * certificate is its holder's alone: it is exchanged only by the holder of that certificate,
 * never laundered into an unbound one by whoever else got hold of it.
 */
function startsChain(subject: VerifiedToken, thumbprint: string): void {
  if (subject.act !== undefined) throw new OAuthError('invalid_grant', 'a subject issuer\'s token must not carry act: the chain starts at this client');
  const { cnf } = subject;
  if (cnf && (cnf.other || cnf.jkt !== undefined || cnf.x5tS256 !== thumbprint)) {
    throw new OAuthError('invalid_grant', 'the subject token is bound to another holder than this client\'s certificate');
  }
}

function familySet(family: string): string {
  return `family:${family}`;
}

/** The issuer's own published keys as a verification key source, for subject tokens. */
function keyringKeys(keyring: Keyring, now: () => number): IssuerKeys {
  return {
    resolve: async (kid, alg) => keyring.find(kid, alg, now())?.publicKey,
    loaded: true,
    usable: true,
    get generation() {
      return keyring.generation;
    },
    start: async () => undefined,
    stop: () => undefined,
  };
}

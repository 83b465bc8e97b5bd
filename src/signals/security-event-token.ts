import { isRecord } from '../schema/config-schema.js';
import { decodeCompactJws } from '../token/compact-jws.js';
import type { IssuerKeys } from '../token/issuer-keys.js';
import { verifyJwsSignature } from '../token/jws-signature.js';
import { TokenError } from '../token/token-error.js';
import type { Algorithm } from '../vocabulary/algorithms.js';
import type { TransmitterConfig } from '../vocabulary/signals-config.js';

/**
 * Verification of a Security Event Token (RFC 8417) as SSF 1.0 profiles it, as strict as the
 * check path's access-token verification: strict JWS decoding, explicit `typ`
 * `secevent+jwt`, the transmitter's own algorithms, keys only from its configured JWKS (never a
 * `jwk`/`jku`/`x5c` header), `aud`, `iat` within bounds, and none of the claims that would let
 * a SET pass for another JWT or the reverse (`exp`, `sub`, RFC 8417 §4; SSF 1.0 §4.1).
 */

/** RFC 8935 §2.4 error codes this receiver answers with. */
export type SetErrorCode = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience';

/** A SET refused: `code` is RFC 8935's `err`, `message` its `description` (never SET content). */
export class SetError extends Error {
  constructor(readonly code: SetErrorCode, message: string) {
    super(message);
    this.name = 'SetError';
  }
}

/** The request body is refused past this before anything is parsed. */
export const MAX_SET_BYTES = 64 * 1024;

export interface Transmitter {
  config: TransmitterConfig;
  keys: IssuerKeys;
}

export interface VerifiedSet {
  /** The transmitter's `iss`. */
  issuer: string;
  jti: string;
  /** Epoch seconds. */
  iat: number;
  /** Event type URI → event object. */
  events: Record<string, Record<string, unknown>>;
  /** SSF 1.0's top-level subject, when present. */
  subId?: unknown;
}

export interface SetTiming {
  nowMs: number;
  clockSkewMs: number;
  maxAgeMs: number;
}

// RFC 8417 §2.3; media types compare case-insensitively (RFC 7515 §4.1.9).
const SET_TYPES: ReadonlySet<string> = new Set(['secevent+jwt', 'application/secevent+jwt']);

export async function verifySet(text: string, transmitters: ReadonlyMap<string, Transmitter>, timing: SetTiming): Promise<VerifiedSet> {
  let header: Record<string, unknown>;
  let payload: Record<string, unknown>;
  try {
    ({ header, payload } = decodeCompactJws(text, MAX_SET_BYTES));
  } catch (err) {
    if (err instanceof TokenError) throw new SetError('invalid_request', err.message.replace(/^token/, 'the SET'));
    throw err;
  }
  const alg = checkHeader(header);

  const iss = payload.iss;
  const transmitter = typeof iss === 'string' ? transmitters.get(iss) : undefined;
  if (!transmitter) throw new SetError('invalid_issuer', 'the SET issuer is not a configured transmitter');
  if (!(transmitter.config.algorithms as string[]).includes(alg)) {
    throw new SetError('invalid_key', 'the SET algorithm is not one this transmitter may use');
  }
  const kid = header.kid;
  if (kid !== undefined && (typeof kid !== 'string' || kid === '')) throw new SetError('invalid_request', 'the SET kid is not a string');
  const key = await transmitter.keys.resolve(kid, alg as Algorithm);
  if (!key) throw new SetError('invalid_key', 'no key of this transmitter matches the SET kid and alg');
  if (await verifyJwsSignature(text, alg as Algorithm, key) !== 'valid') {
    throw new SetError('invalid_key', 'the SET signature does not verify with the transmitter\'s key');
  }

  checkAudience(payload.aud, transmitter.config.audience);
  const iat = checkIssuedAt(payload.iat, timing);
  const { jti, events } = payload;
  if (typeof jti !== 'string' || jti === '' || jti.length > 256) throw new SetError('invalid_request', 'the SET jti must be a string of 1 to 256 characters');
  // A SET never carries these (SSF 1.0 §4.1.3, §4.1.6): with them it could be taken for an ID or access token.
  if ('exp' in payload) throw new SetError('invalid_request', 'a SET must not carry exp');
  if ('sub' in payload) throw new SetError('invalid_request', 'a SET must not carry sub: its subject is sub_id');
  if (!isRecord(events) || Object.keys(events).length === 0 || !Object.values(events).every(isRecord)) {
    throw new SetError('invalid_request', 'the SET events claim must be an object of one or more event objects');
  }
  return {
    issuer: transmitter.config.issuer, jti, iat,
    events: events as Record<string, Record<string, unknown>>,
    ...(payload.sub_id !== undefined && { subId: payload.sub_id }),
  };
}

/** Header rules that need no transmitter: returns the `alg`. */
function checkHeader(header: Record<string, unknown>): string {
  const { alg, typ } = header;
  if (typeof typ !== 'string' || !SET_TYPES.has(typ.toLowerCase())) throw new SetError('invalid_request', 'the SET typ must be secevent+jwt');
  if (typeof alg !== 'string' || alg === '') throw new SetError('invalid_request', 'the SET alg is missing');
  // Unsigned and symmetric SETs are never accepted (RFC 8725 §3.1–3.2): keys are public JWKS keys.
  if (alg.toLowerCase() === 'none' || /^hs/i.test(alg)) throw new SetError('invalid_request', 'the SET must be signed with an asymmetric algorithm');
  if ('enc' in header || 'zip' in header) throw new SetError('invalid_request', 'encrypted SETs (JWE) are not accepted');
  if ('crit' in header || 'b64' in header) throw new SetError('invalid_request', 'the SET header has critical extensions this receiver does not support');
  if ('cty' in header) throw new SetError('invalid_request', 'the SET has a content type: nested tokens are not accepted');
  return alg;
}

function checkAudience(aud: unknown, expected: string): void {
  const values = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (!values || values.length === 0 || !values.every((v) => typeof v === 'string')) {
    throw new SetError('invalid_audience', 'the SET aud must be a string or a list of strings');
  }
  if (!values.includes(expected)) throw new SetError('invalid_audience', 'the SET aud does not name this receiver');
}

function checkIssuedAt(iat: unknown, { nowMs, clockSkewMs, maxAgeMs }: SetTiming): number {
  if (typeof iat !== 'number' || !Number.isFinite(iat) || iat < 0) throw new SetError('invalid_request', 'the SET iat must be a NumericDate');
  if (iat * 1000 > nowMs + clockSkewMs) throw new SetError('invalid_request', 'the SET iat is in the future');
  if (iat * 1000 < nowMs - maxAgeMs - clockSkewMs) throw new SetError('invalid_request', 'the SET iat is older than signals.max_age');
  return iat;
}

import { randomUUID } from 'node:crypto';
import { CompactEncrypt, SignJWT } from 'jose';
import type { SigningKey } from '../../src/devkit/signing-key.js';
import { issuerRequest, type IssuerReply } from './issuer-client.js';

/** What a Shared Signals transmitter (an identity provider) would push: a SET, signed by its key. */
export const EVENT = {
  sessionRevoked: 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
  credentialChange: 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
  tokenClaimsChange: 'https://schemas.openid.net/secevent/caep/event-type/token-claims-change',
  accountDisabled: 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
  accountPurged: 'https://schemas.openid.net/secevent/risc/event-type/account-purged',
  credentialCompromise: 'https://schemas.openid.net/secevent/risc/event-type/credential-compromise',
  verification: 'https://schemas.openid.net/secevent/ssf/event-type/verification',
} as const;

export interface SetInput {
  iss: string;
  aud: string | string[];
  events: Record<string, Record<string, unknown>>;
  subId?: Record<string, unknown>;
  iat?: number;
  jti?: string;
  /** Added to (or, as undefined, removed from) the payload and header. */
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
}

export function signSet(key: SigningKey, input: SetInput): Promise<string> {
  const payload: Record<string, unknown> = {
    iss: input.iss, aud: input.aud, iat: input.iat ?? Math.floor(Date.now() / 1000), jti: input.jti ?? randomUUID(),
    ...(input.subId && { sub_id: input.subId }), events: input.events, ...input.claims,
  };
  const header = Object.fromEntries(Object.entries({ alg: key.alg, kid: key.kid, typ: 'secevent+jwt', ...input.header }).filter(([, v]) => v !== undefined));
  return new SignJWT(Object.fromEntries(Object.entries(payload).filter(([, v]) => v !== undefined)))
    .setProtectedHeader(header as { alg: string })
    .sign(key.privateKey);
}

/** A SET encrypted (JWE, five segments) rather than signed. */
export function encryptedSet(input: SetInput): Promise<string> {
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ iss: input.iss, aud: input.aud, events: input.events })))
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', typ: 'secevent+jwt' })
    .encrypt(new Uint8Array(32).fill(7));
}

/** RFC 8935 push: POST the SET to the issuer's /ssf/events over TLS, without a client certificate. */
export function pushSet(issuerUrl: string, caPem: string, body: string, contentType = 'application/secevent+jwt'): Promise<IssuerReply> {
  return issuerRequest(issuerUrl, '/ssf/events', { caPem, form: body, contentType });
}

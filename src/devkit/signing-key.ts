import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { Algorithm } from '../vocabulary/algorithms.js';

/**
 * A throwaway issuer key for the demo and the tests: signs access tokens the way a real
 * issuer would, and writes its public JWKS for hopguard to trust. Not the issuer service.
 */
export interface SigningKey {
  alg: Algorithm;
  kid: string;
  privateKey: CryptoKey;
  publicJwk: Record<string, unknown>;
}

export async function createSigningKey(alg: Algorithm = 'ES256', kid = `key-${alg.toLowerCase()}`): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicJwk };
}

export function writeJwks(path: string, keys: SigningKey[]): void {
  writeFileSync(path, JSON.stringify({ keys: keys.map((k) => k.publicJwk) }, null, 2));
}

export interface AccessTokenInput {
  iss: string;
  aud: string | string[];
  sub: string;
  clientId?: string;
  scope?: string;
  /** cnf["x5t#S256"]: the thumbprint of the certificate the token is bound to. */
  certThumbprint?: string;
  /** Lifetime in seconds (default 300); iat is now unless given. */
  ttl?: number;
  iat?: number;
  jti?: string;
  /** Extra or overriding claims and header members, for tests of odd tokens. */
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
}

/** An RFC 9068 access token (typ at+jwt) signed with `key`. */
export async function signAccessToken(key: SigningKey, input: AccessTokenInput): Promise<string> {
  const iat = input.iat ?? Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    iss: input.iss,
    aud: input.aud,
    sub: input.sub,
    client_id: input.clientId ?? input.sub,
    iat,
    exp: iat + (input.ttl ?? 300),
    jti: input.jti ?? randomUUID(),
    ...(input.scope !== undefined && { scope: input.scope }),
    ...(input.certThumbprint !== undefined && { cnf: { 'x5t#S256': input.certThumbprint } }),
    ...input.claims,
  };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...input.header })
    .sign(key.privateKey);
}

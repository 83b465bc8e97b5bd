import { randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { accessTokenHash } from '../token/dpop-proof.js';

/** A client outside the mesh holding a DPoP key (RFC 9449): what its tokens are bound to. */
export interface DpopKey {
  privateKey: CryptoKey;
  jwk: JWK;
  /** RFC 7638 thumbprint: the cnf.jkt of tokens bound to this key. */
  jkt: string;
}

export async function createDpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

/** A proof for one request; `accessToken` adds its `ath`. Extra claims and header members override, for tests. */
export function dpopProof(
  key: DpopKey,
  request: { htm: string; htu: string; accessToken?: string },
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT({
    jti: randomUUID(), htm: request.htm, htu: request.htu, iat: Math.floor(Date.now() / 1000),
    ...(request.accessToken !== undefined && { ath: accessTokenHash(request.accessToken) }), ...claims,
  }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk, ...header }).sign(key.privateKey);
}

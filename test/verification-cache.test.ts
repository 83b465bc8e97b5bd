import { importJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createSigningKey, signAccessToken, type SigningKey } from '../src/devkit/signing-key.js';
import { AccessTokenVerifier } from '../src/token/access-token-verifier.js';
import type { IssuerKeys } from '../src/token/issuer-keys.js';

/**
 * The verification cache finds entries by the token's signature segment (cheap to hash) and
 * answers only for the exact token it verified: a token that borrows a cached token's
 * signature is verified in full, and refused.
 */
const ISSUER = 'https://sts.example';
const AUDIENCE = 'spiffe://example/ns/shop/sa/orders';
let key: SigningKey;
let verifier: AccessTokenVerifier;

beforeAll(async () => {
  key = await createSigningKey('ES256');
  const publicKey = await importJWK(key.publicJwk, 'ES256') as CryptoKey;
  const keys: IssuerKeys = { resolve: async () => publicKey, loaded: true, usable: true, generation: 1, start: async () => {}, stop: () => {} };
  verifier = new AccessTokenVerifier({
    audience: AUDIENCE,
    issuers: [{ config: { issuer: ISSUER, algorithms: ['ES256'], maxTtlMs: 3_600_000 }, keys }],
    clockSkewMs: 30_000,
    cacheMaxEntries: 100,
  });
});

const token = (scope: string) => signAccessToken(key, { iss: ISSUER, aud: AUDIENCE, sub: 'spiffe://example/ns/shop/sa/checkout', scope, ttl: 600 });
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('verification cache', () => {
  it('answers a repeat of the same token from the cache', async () => {
    const good = await token('orders:read');
    expect(await verifier.verify(good)).toMatchObject({ cacheHit: false, token: { scope: 'orders:read' } });
    // A copy made of other bytes: the same token, not the same string object.
    expect(await verifier.verify(`${good} `.trim())).toMatchObject({ cacheHit: true, token: { scope: 'orders:read' } });
  });

  it('refuses a token that borrows a cached token\'s signature, and keeps the genuine entry', async () => {
    const good = await token('orders:read');
    await verifier.verify(good);
    const [header, payload, signature] = good.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${header}.${b64({ ...claims, scope: 'orders:read payments:write' })}.${signature}`;
    await expect(verifier.verify(forged)).rejects.toMatchObject({ code: 'invalid_signature' });
    expect(await verifier.verify(good)).toMatchObject({ cacheHit: true, token: { scope: 'orders:read' } });
  });
});

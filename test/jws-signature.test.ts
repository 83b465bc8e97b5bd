import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, compactVerify, generateKeyPair, importJWK, exportJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { signatureJob, verifyJwsSignature, type SignatureCheck } from '../src/token/jws-signature.js';
import { verifyHere, verifyInWorker } from '../src/token/signature-worker.js';
import type { Algorithm } from '../src/vocabulary/algorithms.js';

/**
 * The check path verifies signatures with node:crypto rather than jose: it must accept exactly
 * what jose signs and refuse what jose's verify refuses (tampering, other keys, weak RSA keys).
 */
async function signed(alg: Algorithm) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const token = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg, typ: 'at+jwt' }).sign(privateKey);
  return { token, publicKey };
}

const ALGORITHMS: Algorithm[] = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];

type Verify = (token: string, alg: Algorithm, key: CryptoKey) => Promise<SignatureCheck>;

/** The same check on each path a signature can take: whichever verifyJwsSignature picks, inline, the signature thread. */
const PATHS: [string, Verify][] = [
  ['verifyJwsSignature', verifyJwsSignature],
  ['inline', async (token, alg, key) => {
    const job = signatureJob(token, alg, key);
    return job ? (verifyHere(job) ? 'valid' : 'invalid') : 'unusable_key';
  }],
  ['the signature thread', async (token, alg, key) => {
    const job = signatureJob(token, alg, key);
    return job ? ((await verifyInWorker(job)) ? 'valid' : 'invalid') : 'unusable_key';
  }],
];

describe.each(PATHS)('verifyJwsSignature, %s', (_, verify) => {
  it.each(ALGORITHMS)('accepts a %s token jose signed, and refuses it tampered with', async (alg) => {
    const { token, publicKey } = await signed(alg);
    expect(await verify(token, alg, publicKey)).toBe('valid');
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const otherPayload = Buffer.from(JSON.stringify({ sub: 'b' })).toString('base64url');
    expect(await verify(`${header}.${otherPayload}.${signature}`, alg, publicKey)).toBe('invalid');
    expect(await verify(`${header}.${payload}.`, alg, publicKey)).toBe('invalid');
    expect(await verify(`${header}.${payload}.${signature.slice(0, -4)}`, alg, publicKey)).toBe('invalid');
    const other = await signed(alg);
    expect(await verify(token, alg, other.publicKey)).toBe('invalid');
    // jose's verdict on each of them, for the record: the same.
    await expect(compactVerify(token, publicKey)).resolves.toBeDefined();
    await expect(compactVerify(`${header}.${otherPayload}.${signature}`, publicKey)).rejects.toThrow();
    await expect(compactVerify(token, other.publicKey)).rejects.toThrow();
  });

  it('refuses a key of another type or curve than the algorithm needs', async () => {
    const { token } = await signed('ES256');
    const p384 = await signed('ES384');
    const rsa = await signed('RS256');
    expect(await verify(token, 'ES256', p384.publicKey)).toBe('unusable_key');
    expect(await verify(token, 'ES256', rsa.publicKey)).toBe('unusable_key');
  });

  it('answers each of many concurrent checks (batched to one thread) with its own verdict', async () => {
    const signers = await Promise.all((['ES256', 'EdDSA', 'RS256', 'PS256'] as Algorithm[]).map(async (alg) => ({ alg, ...(await signed(alg)) })));
    const cases = Array.from({ length: 200 }, (_, i) => {
      const { alg, token, publicKey } = signers[i % signers.length]!;
      const valid = i % 3 !== 0;
      return { alg, publicKey, valid, token: valid ? token : `${token.split('.').slice(0, 2).join('.')}.${signers[(i + 1) % signers.length]!.token.split('.')[2]}` };
    });
    const verdicts = await Promise.all(cases.map((c) => verify(c.token, c.alg, c.publicKey)));
    expect(verdicts).toEqual(cases.map((c) => (c.valid ? 'valid' : 'invalid')));
  });

  it('refuses RSA keys under 2048 bits, as jose does', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weak = await importJWK({ ...(await exportJWK(publicKey)), alg: 'RS256' }, 'RS256') as CryptoKey;
    const { token } = await signed('RS256');
    expect(await verify(token, 'RS256', weak)).toBe('unusable_key');
  });
});

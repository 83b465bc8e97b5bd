import { KeyObject, constants, type VerifyKeyObjectInput } from 'node:crypto';
import type { Algorithm } from '../vocabulary/algorithms.js';
import { verifySignature, type SignatureJob } from './signature-worker.js';

/**
 * The signature check of a compact JWS (RFC 7515 §5.2; RFC 7518 §3) with node:crypto's verify,
 * without WebCrypto's argument normalization and promise plumbing (jose's path). Keys still come
 * only from the issuer's key set (issuer-keys.ts); each becomes a KeyObject once.
 *
 * The math runs inline when the event loop has nothing else to do, and otherwise in a worker
 * thread, in batches (signature-worker.ts), so the event loop keeps answering other checks
 * meanwhile and another core verifies.
 */

export type SignatureCheck = 'valid' | 'invalid' | 'unusable_key';

interface Scheme {
  hash: string | null;
  keyType: 'ec' | 'ed25519' | 'rsa';
  /** EC curve, OpenSSL's name. */
  curve?: string;
  /** How crypto.verify reads the key and signature. */
  options: Omit<VerifyKeyObjectInput, 'key'>;
}

const P1363 = { dsaEncoding: 'ieee-p1363' } as const;
/** RSASSA-PSS with a salt as long as the hash (RFC 7518 §3.5). */
const pss = (saltLength: number) => ({ padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });

const SCHEMES: Record<Algorithm, Scheme> = {
  ES256: { hash: 'sha256', keyType: 'ec', curve: 'prime256v1', options: P1363 },
  ES384: { hash: 'sha384', keyType: 'ec', curve: 'secp384r1', options: P1363 },
  ES512: { hash: 'sha512', keyType: 'ec', curve: 'secp521r1', options: P1363 },
  EdDSA: { hash: null, keyType: 'ed25519', options: {} },
  Ed25519: { hash: null, keyType: 'ed25519', options: {} },
  RS256: { hash: 'sha256', keyType: 'rsa', options: {} },
  RS384: { hash: 'sha384', keyType: 'rsa', options: {} },
  RS512: { hash: 'sha512', keyType: 'rsa', options: {} },
  PS256: { hash: 'sha256', keyType: 'rsa', options: pss(32) },
  PS384: { hash: 'sha384', keyType: 'rsa', options: pss(48) },
  PS512: { hash: 'sha512', keyType: 'rsa', options: pss(64) },
};

/** RFC 7518 §3.3, §3.5: RSA keys below 2048 bits are refused, as jose refuses them. */
const MIN_RSA_BITS = 2048;

const keyObjects = new WeakMap<CryptoKey, KeyObject>();
/** Per key, per algorithm: what crypto.verify takes as the key (null: the key cannot verify it), made once. */
const verifyKeys = new WeakMap<CryptoKey, Map<Algorithm, VerifyKeyObjectInput | null>>();

/** `token` is a compact JWS whose segments were already checked to be base64url. */
export function verifyJwsSignature(token: string, alg: Algorithm, key: CryptoKey): Promise<SignatureCheck> {
  const job = signatureJob(token, alg, key);
  if (!job) return Promise.resolve('unusable_key');
  return verifySignature(job).then((valid) => (valid ? 'valid' : 'invalid'));
}

/** What crypto.verify needs for `token`'s signature; undefined when `key` cannot verify `alg`. */
export function signatureJob(token: string, alg: Algorithm, key: CryptoKey): SignatureJob | undefined {
  let forKey = verifyKeys.get(key);
  if (!forKey) verifyKeys.set(key, (forKey = new Map()));
  let input = forKey.get(alg);
  if (input === undefined) {
    const scheme = SCHEMES[alg];
    const keyObject = keyObjectOf(key);
    forKey.set(alg, (input = fits(keyObject, scheme) ? { ...scheme.options, key: keyObject } : null));
  }
  return input ? { hash: SCHEMES[alg].hash, key: input, token, dot: token.lastIndexOf('.') } : undefined;
}

/** Whether `key` can verify `alg` signatures at all (type, curve, RSA size): a JWKS of none is no key set. */
export function keyFitsAlgorithm(key: CryptoKey, alg: Algorithm): boolean {
  return fits(keyObjectOf(key), SCHEMES[alg]);
}

function keyObjectOf(key: CryptoKey): KeyObject {
  let keyObject = keyObjects.get(key);
  if (!keyObject) keyObjects.set(key, (keyObject = KeyObject.from(key)));
  return keyObject;
}

function fits(key: KeyObject, scheme: Scheme): boolean {
  const details = key.asymmetricKeyDetails ?? {};
  switch (scheme.keyType) {
    case 'ec': return key.asymmetricKeyType === 'ec' && details.namedCurve === scheme.curve;
    case 'ed25519': return key.asymmetricKeyType === 'ed25519';
    case 'rsa': return key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= MIN_RSA_BITS;
  }
}

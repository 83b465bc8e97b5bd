/**
 * The handle the application gets instead of the inbound token (design "Egress: the application
 * never holds a token"): the token and its exp, sealed with AES-256-GCM under a key this process
 * made at start (and shared with its workers), with this sidecar's audience as associated data.
 * So a handle opens only here, cannot be altered or forged, and dies with the token it carries.
 *
 * It is `hgh1.` and one base64url blob (iv | ciphertext | tag): never three dot-separated
 * segments, so anywhere a token is expected it is malformed_token, not a JWT to try.
 */

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MAX_TOKEN_LENGTH } from '../token/compact-jws.js';

export const HANDLE_PREFIX = 'hgh1.';
export const HANDLE_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** exp in epoch seconds, 48 bits: enough for any date a token can carry. */
const EXP_BYTES = 6;

/**
 * The verifier refuses tokens above MAX_TOKEN_LENGTH (16 KiB) before a handle is made, so no
 * handle is longer than this (21,896 characters): anything longer is refused unopened.
 */
export const MAX_HANDLE_LENGTH = HANDLE_PREFIX.length + Math.ceil(((IV_BYTES + EXP_BYTES + MAX_TOKEN_LENGTH + TAG_BYTES) * 4) / 3);
const BASE64URL = /^[A-Za-z0-9_-]+$/;

export function newHandleKey(): Buffer {
  return randomBytes(HANDLE_KEY_BYTES);
}

export type OpenedHandle =
  | { ok: true; token: string; exp: number }
  /** For operators: why, never what the handle held. */
  | { ok: false; reason: 'malformed' | 'not_ours' | 'expired' };

export class HandleSealer {
  private readonly associated: Buffer;

  /** `audience`: this sidecar's identity, so a handle from another sidecar (even with the same key) fails. */
  constructor(private readonly key: Buffer, audience: string) {
    if (key.length !== HANDLE_KEY_BYTES) throw new Error(`a handle key is ${HANDLE_KEY_BYTES} bytes`);
    this.associated = Buffer.from(`${HANDLE_PREFIX}${audience}`, 'utf8');
  }

  /** `token` is a verified inbound token (at most MAX_TOKEN_LENGTH), `exp` its exp. */
  seal(token: string, exp: number): string {
    if (token.length > MAX_TOKEN_LENGTH) throw new Error('the token is longer than any verified token');
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv).setAAD(this.associated);
    const header = Buffer.alloc(EXP_BYTES);
    header.writeUIntBE(exp, 0, EXP_BYTES);
    const sealed = Buffer.concat([iv, cipher.update(header), cipher.update(token, 'latin1'), cipher.final(), cipher.getAuthTag()]);
    return HANDLE_PREFIX + sealed.toString('base64url');
  }

  open(handle: string, nowMs: number): OpenedHandle {
    if (handle.length > MAX_HANDLE_LENGTH || !handle.startsWith(HANDLE_PREFIX)) return { ok: false, reason: 'malformed' };
    const body = handle.slice(HANDLE_PREFIX.length);
    if (!BASE64URL.test(body)) return { ok: false, reason: 'malformed' };
    const sealed = Buffer.from(body, 'base64url');
    if (sealed.length < IV_BYTES + EXP_BYTES + TAG_BYTES) return { ok: false, reason: 'malformed' };
    const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES })
      .setAAD(this.associated)
      .setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
    } catch {
      // Another key, another audience, or any bit changed: the tag does not verify.
      return { ok: false, reason: 'not_ours' };
    }
    const exp = plain.readUIntBE(0, EXP_BYTES);
    if (exp * 1000 <= nowMs) return { ok: false, reason: 'expired' };
    return { ok: true, token: plain.subarray(EXP_BYTES).toString('latin1'), exp };
  }
}

import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Server-provided DPoP nonces (RFC 9449 §9): `<window>.<mac>`, where window counts
 * lifetimes since the epoch and mac is an HMAC of it. Stateless, so every replica that
 * shares the secret accepts every other's nonces; a nonce is good in its window and the next.
 */
export class DpopNonces {
  constructor(private readonly secret: Buffer, private readonly lifetimeMs: number) {}

  issue(now: number): string {
    const window = Math.floor(now / this.lifetimeMs).toString(36);
    return `${window}.${this.mac(window)}`;
  }

  valid(nonce: unknown, now: number): boolean {
    if (typeof nonce !== 'string' || nonce.length > 64) return false;
    const [window = '', mac = '', extra] = nonce.split('.');
    if (extra !== undefined || !/^[0-9a-z]{1,12}$/.test(window)) return false;
    const age = Math.floor(now / this.lifetimeMs) - parseInt(window, 36);
    if (age !== 0 && age !== 1) return false;
    const expected = Buffer.from(this.mac(window));
    const given = Buffer.from(mac);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private mac(window: string): string {
    return createHmac('sha256', this.secret).update(`dpop-nonce:${window}`).digest('base64url').slice(0, 22);
  }
}

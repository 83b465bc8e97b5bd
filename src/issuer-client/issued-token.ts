import { inspect } from 'node:util';

/**
 * A token the issuer gave. It prints and serializes without its value, so a stray log line or
 * error report carries where it is bound and when it expires, never the token itself.
 */
export class IssuedToken {
  readonly #accessToken: string;

  constructor(
    accessToken: string,
    /** When the issuer says it expires (receipt time + `expires_in`). */
    readonly expiresAtMs: number,
    readonly lifetimeMs: number,
    /** The scope granted, when the issuer says (it may narrow what was asked). */
    readonly scope: string | undefined,
    /** `x5t#S256` of the certificate it was requested over, so bound to. */
    readonly boundTo: string,
  ) {
    this.#accessToken = accessToken;
  }

  get accessToken(): string {
    return this.#accessToken;
  }

  toJSON() {
    return { expiresAtMs: this.expiresAtMs, scope: this.scope, boundTo: this.boundTo };
  }

  [inspect.custom]() {
    return `IssuedToken ${JSON.stringify(this.toJSON())}`;
  }
}

/**
 * Why the issuer gave no token, with a stable `code` the egress deny codes reuse. Messages are
 * fixed text and the issuer's OAuth error code: never a subject token, an issued token or a key.
 */

export type IssuerClientErrorCode = 'issuer_unavailable' | 'exchange_refused';

export class IssuerClientError extends Error {
  override readonly name = 'IssuerClientError';

  constructor(
    readonly code: IssuerClientErrorCode,
    message: string,
    /** The issuer's OAuth `error` (RFC 6749 §5.2) when it refused: e.g. `invalid_target`. */
    readonly oauthError?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export function issuerUnavailable(why: string, cause?: unknown): IssuerClientError {
  return new IssuerClientError('issuer_unavailable', `the issuer is unavailable: ${why}`, undefined, cause === undefined ? undefined : { cause });
}

export function exchangeRefused(status: number, oauthError: string): IssuerClientError {
  return new IssuerClientError('exchange_refused', `the issuer refused the request (HTTP ${status}, ${oauthError})`, oauthError);
}

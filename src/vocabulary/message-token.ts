import { createHash } from 'node:crypto';

// Message tokens (design "Messages: hops through a queue"): what the issuer mints for one message and the consumer checks.

/** The JOSE `typ` of a message token: never an access token's, so neither is accepted as the other. */
export const MESSAGE_TOKEN_TYP = 'hopguard-msg+jwt';

/** RFC 8693 `requested_token_type` (and `issued_token_type`) of a message token. */
export const MESSAGE_TOKEN_TYPE = 'urn:hopguard:params:oauth:token-type:message';

/** RFC 9530 Content-Digest form of a SHA-256 digest: `sha-256=:<base64 of 32 bytes>:`. */
export const MESSAGE_DIGEST = /^sha-256=:[A-Za-z0-9+/]{43}=:$/;

/** A message body's digest in that form, as a producer seals it and a consumer checks it. */
export function messageDigest(body: string | Uint8Array): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}

/** A queue, subject or topic name: visible ASCII, no spaces, bounded (it ends up in spans and metrics). */
export const MESSAGE_DESTINATION = /^[\x21-\x7e]{1,255}$/;

/** The `message` claim: the one message a token was sealed for. */
export interface MessageClaim {
  destination: string;
  digest: string;
}

import { MESSAGE_DESTINATION, MESSAGE_DIGEST, MESSAGE_TOKEN_TYPE, type MessageClaim } from '../vocabulary/message-token.js';
import { OAuthError } from './oauth-error.js';

/**
 * A request for a message token (design "Messages"): `requested_token_type` the message type,
 * with the message it is for and how long it may wait. Pure functions of the request.
 */

export interface MessageRequest {
  message: MessageClaim;
  /** How long the message may wait, seconds: the token's lifetime before the issuer's cap. */
  maxDelaySeconds?: number;
}

/** Whether this /token request asks for a message token rather than an access token. */
export function wantsMessageToken(params: Map<string, string>): boolean {
  return params.get('requested_token_type') === MESSAGE_TOKEN_TYPE;
}

export function readMessageRequest(params: Map<string, string>): MessageRequest {
  const destination = params.get('message_destination');
  const digest = params.get('message_digest');
  if (destination === undefined || digest === undefined) {
    throw new OAuthError('invalid_request', 'message_destination and message_digest are required for a message token');
  }
  if (!MESSAGE_DESTINATION.test(destination)) throw new OAuthError('invalid_request', 'message_destination must be 1 to 255 visible ASCII characters');
  if (!MESSAGE_DIGEST.test(digest)) throw new OAuthError('invalid_request', 'message_digest must be sha-256=:<base64>: (RFC 9530)');
  const delay = params.get('message_max_delay');
  if (delay === undefined) return { message: { destination, digest } };
  if (!/^[1-9][0-9]{0,8}$/.test(delay)) throw new OAuthError('invalid_request', 'message_max_delay must be a whole number of seconds');
  return { message: { destination, digest }, maxDelaySeconds: Number(delay) };
}

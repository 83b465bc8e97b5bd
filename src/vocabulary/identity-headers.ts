// The headers an inbound allow sets for the application (design "The ext_authz contract").

export const IDENTITY_HEADERS = {
  subject: 'x-hopguard-subject',
  clientId: 'x-hopguard-client-id',
  scope: 'x-hopguard-scope',
  tokenId: 'x-hopguard-token-id',
} as const;

/** Any other incoming header with this prefix is removed on an allow: only hopguard sets them. */
export const IDENTITY_PREFIX = 'x-hopguard-';

import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { IssuerClient } from '../config/issuer-config.js';
import { OAuthError } from './oauth-error.js';

export interface AuthenticatedClient {
  client: IssuerClient;
  /** x5t#S256 of the certificate on this connection: what tokens get bound to (RFC 8705 §3). */
  thumbprint: string;
}

/**
 * RFC 8705 §2.1.2 tls_client_auth: the client is the registered id equal to a URI SAN of a
 * certificate that chains to the configured client CA. The TLS layer requests a certificate
 * but does not reject the handshake, so a missing or unknown one gets a proper OAuth error.
 */
export function authenticateClient(socket: TLSSocket, clients: ReadonlyMap<string, IssuerClient>): AuthenticatedClient {
  if (!socket.authorized) throw new OAuthError('invalid_client', 'a client certificate issued by the mesh CA is required');
  const cert = socket.getPeerCertificate();
  const uris = uriSans(cert.subjectaltname ?? '');
  const matches = uris.map((uri) => clients.get(uri)).filter((c): c is IssuerClient => c !== undefined);
  if (matches.length !== 1) throw new OAuthError('invalid_client', 'the client certificate does not name exactly one registered client');
  return { client: matches[0]!, thumbprint: createHash('sha256').update(cert.raw).digest('base64url') };
}

/** Node renders SANs as `URI:spiffe://a, DNS:b`; a URI with a comma would be quoted, and is refused. */
function uriSans(subjectAltName: string): string[] {
  return subjectAltName.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4)).filter((u) => !u.startsWith('"'));
}

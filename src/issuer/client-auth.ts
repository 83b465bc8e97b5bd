import { createHash, type X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { IssuerClient } from '../config/issuer-config.js';
import { chainsToAnchor } from '../tls/certificate-chain.js';
import { OAuthError } from './oauth-error.js';

export interface AuthenticatedClient {
  client: IssuerClient;
  /** x5t#S256 of the certificate on this connection: what tokens get bound to (RFC 8705 §3). */
  thumbprint: string;
}

/** Who may authenticate: the registered clients and the CA certificates their certificates chain to. */
export interface ClientTrust {
  clients: ReadonlyMap<string, IssuerClient>;
  clientCas: readonly X509Certificate[];
}

/**
 * RFC 8705 §2.1.2 tls_client_auth: the client is the registered id equal to a URI SAN of a
 * certificate that chains to the configured client CA. The TLS layer requests a certificate
 * but does not reject the handshake, so a missing or unknown one gets a proper OAuth error.
 * The certificate the connection holds is checked again on every request: the handshake's
 * verdict (`authorized`) is never taken for a certificate read later.
 */
export function authenticateClient(socket: TLSSocket, trust: ClientTrust, nowMs: number): AuthenticatedClient {
  const cert = socket.getPeerCertificate(true);
  const verified = socket.authorized && !socket.authorizationError && chainsToAnchor(cert, trust.clientCas, nowMs);
  if (!verified) throw new OAuthError('invalid_client', 'a client certificate issued by the mesh CA is required');
  const uris = uriSans(cert.subjectaltname ?? '');
  const matches = uris.map((uri) => trust.clients.get(uri)).filter((c): c is IssuerClient => c !== undefined);
  if (matches.length !== 1) throw new OAuthError('invalid_client', 'the client certificate does not name exactly one registered client');
  return { client: matches[0]!, thumbprint: createHash('sha256').update(cert.raw).digest('base64url') };
}

/** Node renders SANs as `URI:spiffe://a, DNS:b`; a URI with a comma would be quoted, and is refused. */
function uriSans(subjectAltName: string): string[] {
  return subjectAltName.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4)).filter((u) => !u.startsWith('"'));
}

import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { IssuerClient } from '../config/issuer-config.js';
import { chainedUntil } from '../tls/certificate-chain.js';
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
 * The certificate the connection holds is checked on every request: the handshake's verdict
 * (`authorized`) is never taken for a certificate read later.
 *
 * Checking a chain costs some 0.5 ms, so a client sending thousands of requests a second on
 * one connection would take the event loop from everyone else before its rate limit refused
 * it. The verdict is kept per connection for the certificate it was reached on: a request on
 * that connection that presents the same certificate bytes (renegotiation is off, so it cannot
 * present others) reuses it, until the chain's earliest notAfter for a success.
 */
export class ClientAuthenticator {
  private readonly verdicts = new WeakMap<TLSSocket, Verdict>();

  constructor(private readonly trust: ClientTrust) {}

  authenticate(socket: TLSSocket, nowMs: number): AuthenticatedClient {
    const known = this.verdicts.get(socket);
    // Only after a first check: getPeerCertificate(true) came without the intermediates a client
    // sent when getPeerX509Certificate() had been called first (test/client-cert-chain.test.ts).
    const reuse = known !== undefined && nowMs <= known.until && socket.getPeerX509Certificate()?.raw.equals(known.raw) === true;
    const verdict = reuse ? known : this.check(socket, nowMs);
    if (verdict.raw.length > 0) this.verdicts.set(socket, verdict);
    if (verdict.refused) throw verdict.refused;
    return verdict.client!;
  }

  private check(socket: TLSSocket, nowMs: number): Verdict {
    const cert = socket.getPeerCertificate(true);
    const raw = cert.raw ?? Buffer.alloc(0);
    const until = socket.authorized && !socket.authorizationError ? chainedUntil(cert, this.trust.clientCas, nowMs) : undefined;
    // A refusal holds for the connection: its handshake's verdict and its certificate cannot change.
    if (until === undefined) return { raw, until: Infinity, refused: new OAuthError('invalid_client', 'a client certificate issued by the mesh CA is required') };
    const uris = uriSans(cert.subjectaltname ?? '');
    const matches = uris.map((uri) => this.trust.clients.get(uri)).filter((c): c is IssuerClient => c !== undefined);
    if (matches.length !== 1) {
      return { raw, until: Infinity, refused: new OAuthError('invalid_client', 'the client certificate does not name exactly one registered client') };
    }
    return { raw, until, client: { client: matches[0]!, thumbprint: createHash('sha256').update(raw).digest('base64url') } };
  }
}

interface Verdict {
  /** The certificate the verdict is about. */
  raw: Buffer;
  /** The verdict holds until then. */
  until: number;
  client?: AuthenticatedClient;
  refused?: OAuthError;
}

/** The URI SANs of a PEM certificate, read as the TLS client authentication reads them. */
export function certificateUris(pem: string): string[] {
  return uriSans(new X509Certificate(pem).subjectAltName ?? '');
}

/** Node renders SANs as `URI:spiffe://a, DNS:b`; a URI with a comma would be quoted, and is refused. */
function uriSans(subjectAltName: string): string[] {
  return subjectAltName.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4)).filter((u) => !u.startsWith('"'));
}

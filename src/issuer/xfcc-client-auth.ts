import { BlockList, isIPv4 } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Cidr, IssuerClient } from '../config/issuer-config.js';
import { presentedCertificate } from '../token/token-binding.js';
import { certificateUris, type AuthenticatedClient } from './client-auth.js';
import { OAuthError } from './oauth-error.js';
import { parseXfcc, XfccError, type XfccElement } from './xfcc.js';

/**
 * `client_auth: xfcc`: the issuer behind its own Envoy (an Istio sidecar), which terminates the
 * client's mTLS and forwards what it verified in `x-forwarded-client-cert`. That header is
 * believed only on connections from `trusted_proxies` (Istio's inbound proxy connects from
 * 127.0.0.6); from anywhere else it is anyone's claim, so the request is invalid_client.
 *
 * With proxies in between there are several elements: the last one is the one the issuer's own
 * Envoy appended, about the peer it saw. Its thumbprint is the element's Hash (hex SHA-256 of
 * the DER) as base64url, or the one computed from its Cert, exactly as the sidecars compute it
 * from `source.certificate`, so `cnf["x5t#S256"]` matches there; Hash and Cert must agree.
 */
export class XfccAuthenticator {
  private readonly trusted = new BlockList();

  constructor(private readonly clients: ReadonlyMap<string, IssuerClient>, trustedProxies: readonly Cidr[]) {
    for (const { address, prefix, family } of trustedProxies) this.trusted.addSubnet(address, prefix, family);
  }

  authenticate(req: IncomingMessage): AuthenticatedClient {
    if (!this.fromTrustedProxy(req.socket.remoteAddress)) {
      throw new OAuthError('invalid_client', 'x-forwarded-client-cert is trusted only from the issuer\'s own proxy (trusted_proxies): this connection does not come from it');
    }
    const header = req.headers['x-forwarded-client-cert'];
    if (typeof header !== 'string' || header === '') {
      throw new OAuthError('invalid_client', 'no x-forwarded-client-cert: the issuer\'s proxy forwards the client certificate in it when the client presented one');
    }
    let element: XfccElement;
    try {
      element = parseXfcc(header).at(-1)!;
    } catch (err) {
      if (err instanceof XfccError) throw new OAuthError('invalid_client', err.message);
      throw err;
    }
    const { thumbprint, uris } = identify(element);
    const matches = uris.map((uri) => this.clients.get(uri)).filter((c): c is IssuerClient => c !== undefined);
    if (matches.length !== 1) throw new OAuthError('invalid_client', 'the forwarded client certificate does not name exactly one registered client');
    return { client: matches[0]!, thumbprint };
  }

  private fromTrustedProxy(remote: string | undefined): boolean {
    if (remote === undefined) return false;
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote)?.[1];
    const address = mapped ?? remote;
    return this.trusted.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/** The element's thumbprint and URI SANs; with a Cert, both are the certificate's own. */
function identify(element: XfccElement): { thumbprint: string; uris: string[] } {
  if (element.hash !== undefined && !HEX_SHA256.test(element.hash)) {
    throw new OAuthError('invalid_client', 'the x-forwarded-client-cert Hash is not a hex SHA-256');
  }
  const fromHash = element.hash === undefined ? undefined : Buffer.from(element.hash, 'hex').toString('base64url');
  if (element.cert === undefined) {
    if (fromHash === undefined) throw new OAuthError('invalid_client', 'the x-forwarded-client-cert element has neither Hash nor Cert');
    return { thumbprint: fromHash, uris: element.uris };
  }
  const fromCert = presentedCertificate(element.cert);
  if (fromCert === undefined || fromCert === 'invalid') {
    throw new OAuthError('invalid_client', 'the x-forwarded-client-cert Cert is not one URL-encoded PEM certificate');
  }
  if (fromHash !== undefined && fromHash !== fromCert) throw new OAuthError('invalid_client', 'the x-forwarded-client-cert Hash and Cert are of different certificates');
  const uris = certificateUris(decodeURIComponent(element.cert));
  if (element.uris.length > 0 && (element.uris.length !== uris.length || element.uris.some((uri) => !uris.includes(uri)))) {
    throw new OAuthError('invalid_client', 'the x-forwarded-client-cert URI is not the Cert\'s');
  }
  return { thumbprint: fromCert, uris };
}

import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate } from 'node:tls';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { ConfigError } from '../schema/config-error.js';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';
/** Intermediates a client may send between its certificate and an anchor. */
const MAX_INTERMEDIATES = 4;

/** Every certificate of a PEM bundle: X509Certificate alone reads only the first. */
export function readCertificateBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error('the CA file holds no certificate');
  return blocks.map((block) => new X509Certificate(block));
}

/**
 * The CA bundle a config `key` names, refused (a ConfigError on `key`) unless it holds
 * certificates that parse: node would otherwise ignore a garbled file and fail every handshake.
 */
export function readCaFile(path: string, key: string): Buffer {
  const pem = readConfiguredFile(path, key, FILE_KINDS.certificate);
  try {
    readCertificateBundle(pem.toString('utf8'));
  } catch {
    throw new ConfigError([{ path: key, message: `${path} is not a PEM certificate bundle (-----BEGIN CERTIFICATE----- blocks that parse)` }]);
  }
  return pem;
}

/**
 * Whether the peer's certificate, as the connection holds it now, is a client certificate that
 * chains to one of `anchors` (through intermediates the peer sent), every link signed and
 * within its validity at `nowMs`. A check per request on top of the handshake's, so a verdict
 * is never carried over from an earlier handshake.
 */
export function chainsToAnchor(peer: DetailedPeerCertificate, anchors: readonly X509Certificate[], nowMs: number): boolean {
  if (!peer.raw) return false;
  let cert = new X509Certificate(peer.raw);
  if (cert.ca || !valid(cert, nowMs) || !forClientAuth(cert)) return false;
  let presented = peer.issuerCertificate as DetailedPeerCertificate | undefined;
  for (let depth = 0; depth <= MAX_INTERMEDIATES; depth++) {
    const child = cert;
    if (anchors.some((anchor) => issued(anchor, child) && valid(anchor, nowMs))) return true;
    // Node ends the peer's chain with a certificate that names itself as its issuer.
    if (!presented?.raw || presented.raw.equals(cert.raw)) return false;
    cert = new X509Certificate(presented.raw);
    if (!cert.ca || !issued(cert, child) || !valid(cert, nowMs)) return false;
    presented = presented.issuerCertificate;
  }
  return false;
}

function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function valid(cert: X509Certificate, nowMs: number): boolean {
  return Date.parse(cert.validFrom) <= nowMs && nowMs <= Date.parse(cert.validTo);
}

/** No extended key usage means any use (RFC 5280 §4.2.1.12). */
function forClientAuth(cert: X509Certificate): boolean {
  const usages = cert.keyUsage;
  return usages === undefined || usages.includes(CLIENT_AUTH) || usages.includes(ANY_EXTENDED_KEY_USAGE);
}

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
 * within its validity at `nowMs`: the time the chain holds until (its earliest notAfter), or
 * undefined when it does not chain. Checked on top of the handshake's verdict, so a verdict
 * is never carried over from an earlier handshake.
 */
export function chainedUntil(peer: DetailedPeerCertificate, anchors: readonly X509Certificate[], nowMs: number): number | undefined {
  if (!peer.raw) return undefined;
  let cert = new X509Certificate(peer.raw);
  if (cert.ca || !valid(cert, nowMs) || !forClientAuth(cert)) return undefined;
  let until = Date.parse(cert.validTo);
  let presented = peer.issuerCertificate as DetailedPeerCertificate | undefined;
  for (let depth = 0; depth <= MAX_INTERMEDIATES; depth++) {
    const child = cert;
    const anchor = anchors.find((a) => issued(a, child) && valid(a, nowMs));
    if (anchor) return Math.min(until, Date.parse(anchor.validTo));
    // Node ends the peer's chain with a certificate that names itself as its issuer.
    if (!presented?.raw || presented.raw.equals(cert.raw)) return undefined;
    cert = new X509Certificate(presented.raw);
    if (!cert.ca || !issued(cert, child) || !valid(cert, nowMs)) return undefined;
    until = Math.min(until, Date.parse(cert.validTo));
    presented = presented.issuerCertificate;
  }
  return undefined;
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

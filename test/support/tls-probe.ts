import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { thumbprintOf, type IssuedCert } from '../../src/devkit/pki.js';

/**
 * A self-signed RSA server certificate for 127.0.0.1. The devkit makes ECDSA keys, with which
 * RSA key exchange (the non-forward-secret TLS 1.2 suites) cannot be negotiated anyway.
 */
export function rsaServerCert(dir: string, name: string): IssuedCert {
  const certPath = path.join(dir, `${name}.pem`);
  const keyPath = path.join(dir, `${name}-key.pem`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${name}`,
    '-days', '1', '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'extendedKeyUsage=serverAuth',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const certPem = readFileSync(certPath, 'utf8');
  return { certPem, keyPem: readFileSync(keyPath, 'utf8'), certPath, keyPath, thumbprint: thumbprintOf(certPem) };
}

export interface Negotiated {
  protocol: string;
  cipher: string;
  /** The server's certificate, PEM. */
  certificate: string;
}

/** What `openssl s_client` negotiated with a server, or undefined when the handshake failed. */
export async function negotiated(url: string, args: string[]): Promise<Negotiated | undefined> {
  const { host } = new URL(url);
  const output = await new Promise<{ ok: boolean; stdout: string }>((resolve) => {
    const child = execFile('openssl', ['s_client', '-connect', host, ...args], { encoding: 'utf8', timeout: 15_000 }, (err, stdout) => {
      resolve({ ok: !err, stdout });
    });
    child.stdin?.end();
  });
  const found = /^New, (TLSv[\d.]+), Cipher is (\S+)$/m.exec(output.stdout);
  const certificate = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/.exec(output.stdout);
  return output.ok && found && certificate ? { protocol: found[1]!, cipher: found[2]!, certificate: certificate[0] } : undefined;
}

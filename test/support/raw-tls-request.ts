import tls from 'node:tls';
import type { IssuedCert } from '../../src/devkit/pki.js';

/**
 * Sends `request` as raw bytes over one TLS connection (with `client`'s certificate, if any) and
 * resolves with everything the server sent until it closed. `endAfterWrite` closes our side
 * after the request, for a body shorter than its Content-Length. The server's certificate is
 * not what these requests test.
 */
export function rawTlsRequest(
  url: string,
  client: Pick<IssuedCert, 'certPem' | 'keyPem'> | undefined,
  request: Buffer,
  endAfterWrite = false,
): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = tls.connect({
      host: hostname, port: Number(port), rejectUnauthorized: false, ...(client && { cert: client.certPem, key: client.keyPem }),
    }, () => (endAfterWrite ? socket.end(request) : socket.write(request)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A reset after the response is the server closing: what it sent is the answer.
    socket.on('error', () => socket.destroy());
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

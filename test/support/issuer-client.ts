import https from 'node:https';
import type { IssuedCert } from '../../src/devkit/pki.js';

export interface IssuerReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** One HTTPS request to the issuer, as a workload would make it: its certificate, the mesh CA. */
export function issuerRequest(
  baseUrl: string,
  path: string,
  options: {
    caPem: string; client?: Pick<IssuedCert, 'certPem' | 'keyPem'>; form?: Record<string, string> | string; contentType?: string;
    headers?: Record<string, string>;
  },
): Promise<IssuerReply> {
  const body = options.form === undefined ? undefined
    : typeof options.form === 'string' ? options.form : new URLSearchParams(options.form).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(`${baseUrl}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      ca: options.caPem,
      ...(options.client && { cert: options.client.certPem, key: options.client.keyPem }),
      headers: {
        ...(body !== undefined && { 'content-type': options.contentType ?? 'application/x-www-form-urlencoded' }),
        ...options.headers,
      },
      agent: false,
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The claims of a JWT, unverified: for asserting what the issuer put in a token. */
export function claimsOf(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

export function headerOf(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8'));
}

import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCert, OpensslMissingError, type Ca } from '../src/devkit/pki.js';

const SPIFFE = 'spiffe://cluster.local/ns/shop/sa/checkout';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

let dir: string;
let ca: Ca;
let caCert: X509Certificate;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hopguard-pki-test-'));
  ca = createCa(dir, 'mesh-ca');
  caCert = new X509Certificate(ca.certPem);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('createCa', () => {
  it('makes a self-signed P-256 CA', () => {
    expect(caCert.ca).toBe(true);
    expect(caCert.subject).toBe('CN=mesh-ca');
    expect(caCert.checkIssued(caCert)).toBe(true);
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    expect(caCert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(caCert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    expect(ca.certPath).toBe(join(dir, 'mesh-ca.pem'));
    expect(statSync(ca.keyPath).mode & 0o077).toBe(0);
  });
});

describe('issueCert', () => {
  it('issues a client certificate with a SPIFFE URI SAN, signed by the CA', () => {
    const leaf = issueCert(ca, dir, { name: 'checkout', uriSan: SPIFFE, clientAuth: true });
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subjectAltName).toContain(`URI:${SPIFFE}`);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
    expect(cert.keyUsage).toEqual([CLIENT_AUTH]);

    // x5t#S256 as openssl computes it: SHA-256 over the DER encoding.
    const der = execFileSync('openssl', ['x509', '-in', leaf.certPath, '-outform', 'DER']);
    const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der });
    expect(leaf.thumbprint).toBe(digest.toString('base64url'));
    expect(leaf.thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('issues a server certificate with DNS SANs', () => {
    const leaf = issueCert(ca, dir, { name: 'orders', dnsSans: ['orders.shop.svc', 'localhost'], serverAuth: true });
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.subjectAltName).toBe('DNS:orders.shop.svc, DNS:localhost');
    expect(cert.checkHost('orders.shop.svc')).toBe('orders.shop.svc');
    expect(cert.keyUsage).toEqual([SERVER_AUTH]);
    expect(cert.checkIssued(caCert)).toBe(true);
  });

  it('gives two certificates different thumbprints', () => {
    const a = issueCert(ca, dir, { name: 'a', uriSan: SPIFFE, clientAuth: true });
    const b = issueCert(ca, dir, { name: 'b', uriSan: SPIFFE, clientAuth: true });
    expect(a.thumbprint).not.toBe(b.thumbprint);
  });

  it('refuses names and SANs that would escape the openssl config', () => {
    expect(() => issueCert(ca, dir, { name: '../evil' })).toThrow(/name/);
    expect(() => issueCert(ca, dir, { name: 'x', uriSan: 'spiffe://a,DNS:evil' })).toThrow(/subjectAltName/);
    expect(() => issueCert(ca, dir, { name: 'x', dnsSans: ['a\n[ext]'] })).toThrow(/subjectAltName/);
  });
});

describe('without openssl', () => {
  it('says how to install it', () => {
    const path = process.env.PATH;
    process.env.PATH = join(dir, 'no-such-bin');
    try {
      expect(() => createCa(join(dir, 'none'), 'ca')).toThrow(OpensslMissingError);
      expect(() => createCa(join(dir, 'none'), 'ca'))
        .toThrow('openssl is required to make test certificates: apt-get install openssl');
    } finally {
      process.env.PATH = path;
    }
  });
});

import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * X.509 fixtures for tests and `hopguard demo`, made with the openssl CLI (Node can
 * sign JWTs but not certificates). Keys are EC P-256; certificates live one day.
 */

export interface Ca {
  certPem: string;
  keyPem: string;
  certPath: string;
  keyPath: string;
}

export interface IssuedCert extends Ca {
  /** RFC 8705 `x5t#S256`: base64url(SHA-256(DER of the certificate)). */
  thumbprint: string;
}

export interface CertOptions {
  /** Subject CN and the base of the file names. */
  name: string;
  uriSan?: string;
  dnsSans?: string[];
  /** IP address SANs, for servers reached by address (127.0.0.1 in tests). */
  ipSans?: string[];
  serverAuth?: boolean;
  clientAuth?: boolean;
}

/** Thrown when the openssl binary is not on PATH, so `hopguard demo` can say what to install. */
export class OpensslMissingError extends Error {
  constructor() {
    super('openssl is required to make test certificates: apt-get install openssl');
    this.name = 'OpensslMissingError';
  }
}

// Both only ever reach openssl through files and argv, never a shell; the checks keep a
// name out of -subj syntax and a SAN from adding entries or lines to the config.
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SAFE_SAN = /^[\x21-\x7e]+$/;

const CA_EXTENSIONS = [
  '[req]',
  'distinguished_name = dn',
  '[dn]',
  '[ext]',
  'basicConstraints = critical,CA:true',
  'keyUsage = critical,keyCertSign,cRLSign',
  'subjectKeyIdentifier = hash',
  'authorityKeyIdentifier = keyid:always',
  '',
].join('\n');

/** A self-signed CA, written to `<dir>/<name>.pem` and `<dir>/<name>-key.pem`. */
export function createCa(dir: string, name: string): Ca {
  const paths = prepare(dir, name);
  return withTempDir((tmp) => {
    const keyPem = writeKey(paths.keyPath);
    const config = join(tmp, 'ca.cnf');
    writeFileSync(config, CA_EXTENSIONS);
    openssl([
      'req', '-x509', '-new', '-config', config, '-extensions', 'ext', '-key', paths.keyPath,
      '-subj', `/CN=${name}`, '-days', '1', '-sha256', '-set_serial', serial(), '-out', paths.certPath,
    ]);
    return { certPem: readFileSync(paths.certPath, 'utf8'), keyPem, ...paths };
  });
}

/** An intermediate CA signed by `parent`: for chains a client sends beyond its own certificate. */
export function createIntermediateCa(parent: Ca, dir: string, name: string): Ca {
  const paths = prepare(dir, name);
  return withTempDir((tmp) => {
    const keyPem = writeKey(paths.keyPath);
    const config = join(tmp, 'ca.cnf');
    writeFileSync(config, CA_EXTENSIONS);
    const csr = join(tmp, 'ca.csr');
    openssl(['req', '-new', '-config', config, '-key', paths.keyPath, '-subj', `/CN=${name}`, '-out', csr]);
    openssl([
      'x509', '-req', '-in', csr, '-CA', parent.certPath, '-CAkey', parent.keyPath, '-set_serial', serial(),
      '-days', '1', '-sha256', '-extfile', config, '-extensions', 'ext', '-out', paths.certPath,
    ]);
    return { certPem: readFileSync(paths.certPath, 'utf8'), keyPem, ...paths };
  });
}

/** A leaf certificate signed by `ca`, written to `<dir>/<name>.pem` and `<dir>/<name>-key.pem`. */
export function issueCert(ca: Ca, dir: string, opts: CertOptions): IssuedCert {
  const paths = prepare(dir, opts.name);
  const sans = [
    ...(opts.uriSan !== undefined ? [`URI:${opts.uriSan}`] : []),
    ...(opts.dnsSans ?? []).map((dns) => `DNS:${dns}`),
    ...(opts.ipSans ?? []).map((ip) => `IP:${ip}`),
  ];
  const bad = sans.find((san) => !SAFE_SAN.test(san) || san.includes(','));
  if (bad !== undefined) throw new Error(`unsupported characters in subjectAltName ${JSON.stringify(bad)}`);
  const usages = [...(opts.serverAuth ? ['serverAuth'] : []), ...(opts.clientAuth ? ['clientAuth'] : [])];

  return withTempDir((tmp) => {
    const keyPem = writeKey(paths.keyPath);
    const reqConfig = join(tmp, 'req.cnf');
    writeFileSync(reqConfig, '[req]\ndistinguished_name = dn\n[dn]\n');
    const csr = join(tmp, 'leaf.csr');
    openssl(['req', '-new', '-config', reqConfig, '-key', paths.keyPath, '-subj', `/CN=${opts.name}`, '-out', csr]);

    const extfile = join(tmp, 'leaf.ext');
    writeFileSync(extfile, [
      '[ext]',
      'basicConstraints = critical,CA:false',
      'keyUsage = critical,digitalSignature',
      ...(usages.length ? [`extendedKeyUsage = ${usages.join(',')}`] : []),
      ...(sans.length ? [`subjectAltName = ${sans.join(',')}`] : []),
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'));
    openssl([
      'x509', '-req', '-in', csr, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', serial(),
      '-days', '1', '-sha256', '-extfile', extfile, '-extensions', 'ext', '-out', paths.certPath,
    ]);
    const certPem = readFileSync(paths.certPath, 'utf8');
    return { certPem, keyPem, ...paths, thumbprint: thumbprintOf(certPem) };
  });
}

/** RFC 8705 §3.1 thumbprint of a PEM certificate. */
export function thumbprintOf(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('base64url');
}

function prepare(dir: string, name: string): { certPath: string; keyPath: string } {
  if (!SAFE_NAME.test(name)) throw new Error(`certificate name ${JSON.stringify(name)} must match ${SAFE_NAME}`);
  mkdirSync(dir, { recursive: true });
  return { certPath: join(dir, `${name}.pem`), keyPath: join(dir, `${name}-key.pem`) };
}

/** A PKCS#8 P-256 key, readable only by its owner. */
function writeKey(keyPath: string): string {
  const keyPem = openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  writeFileSync(keyPath, keyPem, { mode: 0o600 });
  return keyPem;
}

/** Random positive 159-bit serial (RFC 5280 §4.1.2.2 allows up to 20 octets). */
function serial(): string {
  const bytes = randomBytes(20);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

function withTempDir<T>(body: (tmp: string) => T): T {
  const tmp = mkdtempSync(join(tmpdir(), 'hopguard-pki-'));
  try {
    return body(tmp);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function openssl(args: string[]): string {
  try {
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new OpensslMissingError();
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || (err as Error).message}`);
  }
}

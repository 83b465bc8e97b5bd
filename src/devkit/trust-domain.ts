import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCa, issueCert, type Ca, type IssuedCert } from './pki.js';
import { createSigningKey, writeJwks, type SigningKey } from './signing-key.js';

/** A throwaway mesh in a temp dir: a CA, one client certificate per workload, an issuer key and its JWKS file. */
export interface TrustDomain<W extends string> {
  dir: string;
  ca: Ca;
  workloads: Record<W, IssuedCert>;
  key: SigningKey;
  jwksPath: string;
  cleanup(): void;
}

/** `workloads` maps a short name (the file name) to the workload's SPIFFE ID (its URI SAN). */
export async function createTrustDomain<W extends string>(label: string, workloads: Record<W, string>): Promise<TrustDomain<W>> {
  const dir = mkdtempSync(path.join(tmpdir(), `hopguard-${label}-`));
  const ca = createCa(dir, 'mesh-ca');
  const certs = {} as Record<W, IssuedCert>;
  for (const [name, uriSan] of Object.entries(workloads) as [W, string][]) {
    certs[name] = issueCert(ca, dir, { name, uriSan, clientAuth: true });
  }
  const key = await createSigningKey('ES256');
  const jwksPath = path.join(dir, 'jwks.json');
  writeJwks(jwksPath, [key]);
  return { dir, ca, workloads: certs, key, jwksPath, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

import path from 'node:path';
import { parseIssuerConfig } from '../../src/config/load-issuer-config.js';
import { issueCert, type IssuedCert } from '../../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../../src/devkit/trust-domain.js';
import { startIssuer, type IssuerStartOptions, type RunningIssuer } from '../../src/issuer/issuer-service.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { silentLogger, type Logger } from '../../src/telemetry/log.js';

/** The issuer's ISS and its clients: one per kind of client (plain, admin, DPoP), and three that are only audiences. */
export const ISS = 'https://sts.test.local';
export const MESH_ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
  payments: 'spiffe://test.local/ns/shop/sa/payments',
  ledger: 'spiffe://test.local/ns/shop/sa/ledger',
  admin: 'spiffe://test.local/ns/ops/sa/admin',
  mobile: 'spiffe://test.local/ns/edge/sa/mobile-gateway',
} as const;
export type MeshWorkload = keyof typeof MESH_ID;

export interface MeshIssuer {
  mesh: TrustDomain<MeshWorkload>;
  /** The server certificate the issuer serves (127.0.0.1). */
  serverCert: IssuedCert;
  issuer: RunningIssuer;
  /** The issuer's store, for asserting what was (not) revoked. */
  store: MemoryStore;
  stop(): Promise<void>;
}

export interface MeshIssuerOptions {
  /** Replaces the mesh-issued ECDSA server certificate (e.g. with an RSA one). */
  serverCert?: (mesh: TrustDomain<MeshWorkload>) => IssuedCert;
  /** Per client; by default high enough for fuzzing's bursts. */
  rateLimit?: { perSecond: number; burst: number };
  serverBounds?: IssuerStartOptions['serverBounds'];
  log?: Logger;
}

/** An issuer over real TLS on 127.0.0.1 with the mesh CA as client CA and a memory store. */
export async function startMeshIssuer(label: string, options: MeshIssuerOptions = {}): Promise<MeshIssuer> {
  const mesh = await createTrustDomain(label, MESH_ID);
  const cert = options.serverCert?.(mesh) ?? issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  const rateLimit = options.rateLimit ?? { perSecond: 1000, burst: 1000 };
  const store = new MemoryStore();
  const issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${cert.certPath}, key: ${cert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')}, publish_ahead: 2s }
rate_limit: { per_second: ${rateLimit.perSecond}, burst: ${rateLimit.burst} }
clients:
  - id: ${MESH_ID.frontend}
    grants: [client_credentials]
    audiences: [${MESH_ID.orders}]
    scopes: [orders:read]
  - id: ${MESH_ID.admin}
    grants: [client_credentials]
    admin: true
  - id: ${MESH_ID.mobile}
    grants: [client_credentials]
    audiences: [${MESH_ID.orders}]
    scopes: [orders:read]
    dpop: true
`, { baseDir: mesh.dir }), {
    log: options.log ?? silentLogger, store, ...(options.serverBounds && { serverBounds: options.serverBounds }),
  });
  return {
    mesh, serverCert: cert, issuer, store,
    async stop() {
      await issuer.stop();
      await store.close();
      mesh.cleanup();
    },
  };
}

/** The `issuers:` section of a sidecar that trusts a running issuer: its JWKS over HTTPS, the mesh CA. */
export function trustIssuerYaml(iss: string, issuerUrl: string, caPath: string): string {
  return `issuers:
  - issuer: ${iss}
    jwks_uri: ${issuerUrl}/.well-known/jwks.json
    jwks_ca_file: ${caPath}
    algorithms: [ES256]
`;
}

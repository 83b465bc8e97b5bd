import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDpopKey, dpopProof, type DpopKey } from '../src/devkit/dpop-client.js';
import { createCa, issueCert, type IssuedCert } from '../src/devkit/pki.js';
import type { RunningWebhook } from '../src/inject/webhook-server.js';
import { issuerRequest } from './support/issuer-client.js';
import { ISS, MESH_ID as ID, startMeshIssuer, type MeshIssuer } from './support/mesh-issuer.js';
import { buildRenegotiateClient, renegotiateAndPost, type RenegotiationOutcome } from './support/renegotiate-client.js';
import { startTestWebhook } from './support/test-webhook.js';

/**
 * Issue 12 item 1: a TLS 1.2 client that handshakes with one mesh certificate and then
 * renegotiates with a forged one must not be taken for the client the forged one names.
 * The attacker is a real OpenSSL client (test/support/renegotiate-client.c).
 */
let running: MeshIssuer;
let forged: { admin: IssuedCert; mobile: IssuedCert };
let binary: string;
let webhook: RunningWebhook;
let dpopKey: DpopKey;

beforeAll(async () => {
  running = await startMeshIssuer('renegotiation');
  const { mesh } = running;
  binary = buildRenegotiateClient(mesh.dir);
  // Certificates naming real clients, from a CA the issuer does not trust.
  const rogueDir = path.join(mesh.dir, 'rogue');
  const rogue = createCa(rogueDir, 'rogue-ca');
  forged = {
    admin: issueCert(rogue, rogueDir, { name: 'forged-admin', uriSan: ID.admin, clientAuth: true }),
    mobile: issueCert(rogue, rogueDir, { name: 'forged-mobile', uriSan: ID.mobile, clientAuth: true }),
  };
  webhook = await startTestWebhook(running.serverCert);
  dpopKey = await createDpopKey();
}, 60_000);

afterAll(async () => {
  await webhook?.stop();
  await running?.stop();
});

/** Whether the store holds a revocation of every token `clientId` was issued until now. */
function clientRevoked(clientId: string): boolean {
  return running.store.findRevocation({ jtiFingerprint: 'none', sub: clientId, clientId, iat: Math.floor(Date.now() / 1000) - 1 }) !== undefined;
}

/** The server must refuse to renegotiate, or answer invalid_client: never serve the forged identity. */
function refusal(outcome: RenegotiationOutcome): string {
  return outcome.kind === 'refused' ? 'renegotiation refused' : `${outcome.status} ${outcome.body?.error}`;
}
const REFUSED = /^(renegotiation refused|401 invalid_client)$/;

const mobileTokenForm = { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' };
const proof = () => dpopProof(dpopKey, { htm: 'POST', htu: `${ISS}/token` });

describe('TLS renegotiation to another certificate', () => {
  it('the genuine admin revokes a client, and the store shows it (what the next case checks is absent)', async () => {
    const reply = await issuerRequest(running.issuer.url, '/revoke', { caPem: running.mesh.ca.certPem, client: running.mesh.workloads.admin, form: { client_id: ID.ledger } });
    expect(reply.status).toBe(200);
    expect(clientRevoked(ID.ledger)).toBe(true);
  });

  it('a mesh client that renegotiates with a forged admin certificate cannot revoke, and nothing is revoked', async () => {
    const outcome = await renegotiateAndPost(binary, running.issuer.url, { first: running.mesh.workloads.frontend, second: forged.admin }, {
      path: '/revoke', form: { client_id: ID.orders, reason: 'forged' },
    });
    expect(refusal(outcome)).toMatch(REFUSED);
    expect(clientRevoked(ID.orders)).toBe(false);
  });

  it('the genuine DPoP client gets a DPoP token with the same request (the next case is refused for who it is)', async () => {
    const reply = await issuerRequest(running.issuer.url, '/token', {
      caPem: running.mesh.ca.certPem, client: running.mesh.workloads.mobile, form: mobileTokenForm, headers: { dpop: await proof() },
    });
    expect(reply.status).toBe(200);
    expect(reply.body.token_type).toBe('DPoP');
  });

  it('a mesh client that renegotiates with a forged DPoP client certificate gets no token', async () => {
    const outcome = await renegotiateAndPost(binary, running.issuer.url, { first: running.mesh.workloads.frontend, second: forged.mobile }, {
      path: '/token', form: mobileTokenForm, headers: { dpop: await proof() },
    });
    expect(refusal(outcome)).toMatch(REFUSED);
    expect(outcome.kind === 'answered' && outcome.body?.access_token).toBeFalsy();
  });

  it('the issuer refuses any renegotiation, even to the same certificate', async () => {
    const outcome = await renegotiateAndPost(binary, running.issuer.url, { first: running.mesh.workloads.frontend, second: running.mesh.workloads.frontend }, {
      path: '/token', form: { grant_type: 'client_credentials', audience: ID.orders },
    });
    expect(refusal(outcome)).toBe('renegotiation refused');
  });

  it('the injector webhook refuses renegotiation', async () => {
    const outcome = await renegotiateAndPost(binary, webhook.url, { first: running.mesh.workloads.frontend, second: running.mesh.workloads.frontend }, {
      path: '/mutate', form: {},
    });
    expect(refusal(outcome)).toBe('renegotiation refused');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, createIntermediateCa, issueCert, type IssuedCert } from '../src/devkit/pki.js';
import { claimsOf, issuerRequest } from './support/issuer-client.js';
import { MESH_ID, startMeshIssuer, type MeshIssuer } from './support/mesh-issuer.js';

/**
 * The issuer re-checks the client certificate on every request (src/tls/certificate-chain.ts):
 * a certificate issued by an intermediate CA the client sends along is a client, one whose
 * intermediate does not chain to the client CA is not, whatever the intermediate is named.
 */
let meshIssuer: MeshIssuer;
let viaIntermediate: IssuedCert & { chainPem: string };
let viaForeignIntermediate: IssuedCert & { chainPem: string };

beforeAll(async () => {
  meshIssuer = await startMeshIssuer('client-cert-chain');
  const { mesh } = meshIssuer;
  const intermediate = createIntermediateCa(mesh.ca, mesh.dir, 'workload-intermediate');
  const leaf = issueCert(intermediate, mesh.dir, { name: 'frontend-via-intermediate', uriSan: MESH_ID.frontend, clientAuth: true });
  viaIntermediate = { ...leaf, chainPem: leaf.certPem + intermediate.certPem };
  // Same names, another root: the intermediate is not one the mesh CA signed.
  const foreignRoot = createCa(mesh.dir, 'foreign-root');
  const foreignIntermediate = createIntermediateCa(foreignRoot, mesh.dir, 'workload-intermediate-foreign');
  const foreignLeaf = issueCert(foreignIntermediate, mesh.dir, { name: 'frontend-foreign', uriSan: MESH_ID.frontend, clientAuth: true });
  viaForeignIntermediate = { ...foreignLeaf, chainPem: foreignLeaf.certPem + foreignIntermediate.certPem };
});
afterAll(() => meshIssuer?.stop());

const tokenRequest = (client: { certPem: string; keyPem: string }) => issuerRequest(meshIssuer.issuer.url, '/token', {
  caPem: meshIssuer.mesh.ca.certPem, client, form: { grant_type: 'client_credentials', audience: MESH_ID.orders },
});

describe('client certificates issued by an intermediate CA', () => {
  it('grants a token to a client that sends its intermediate, bound to its own certificate', async () => {
    const reply = await tokenRequest({ certPem: viaIntermediate.chainPem, keyPem: viaIntermediate.keyPem });
    expect(reply.status).toBe(200);
    const claims = claimsOf(reply.body.access_token);
    expect(claims.client_id).toBe(MESH_ID.frontend);
    expect(claims.cnf['x5t#S256']).toBe(viaIntermediate.thumbprint);
  });

  it('refuses the same leaf without its intermediate: nothing links it to the client CA', async () => {
    // node requests a certificate without requiring one, so an unverified handshake is an OAuth error.
    const reply = await tokenRequest({ certPem: viaIntermediate.certPem, keyPem: viaIntermediate.keyPem });
    expect(reply.status).toBe(401);
    expect(reply.body.error).toBe('invalid_client');
  });

  it('refuses a leaf whose intermediate chains to another root', async () => {
    const reply = await tokenRequest({ certPem: viaForeignIntermediate.chainPem, keyPem: viaForeignIntermediate.keyPem });
    expect(reply.status).toBe(401);
    expect(reply.body.error).toBe('invalid_client');
  });
});

import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthz, type RunningAuthz } from '../src/authz/authz-service.js';
import { EnvoyClient, type CheckOutput } from '../src/authz/envoy-client.js';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { openStore } from '../src/store/open-store.js';
import type { RevocationRecord, RevocationSubject, Store } from '../src/store/store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { issuerRequest } from './support/issuer-client.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * A refresh-token family dies as a whole when one of its refresh tokens is used twice: every
 * access token minted from it, the first (from client_credentials) included, is revoked at the
 * sidecars, even when the reuse lands while the winning refresh is still recording its token.
 */

const ISS = 'https://sts.test.local';
const ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
} as const;

/** The real store, with the next addToSet held until the test lets it go: widens a race window. */
class GatedStore implements Store {
  private gate: { reached: () => void; opened: Promise<void> } | undefined;

  constructor(readonly inner: Store) {}

  /** The next addToSet waits for `open()`; `reached` resolves when it is called. */
  holdNextAddToSet(): { reached: Promise<void>; open: () => void } {
    let reached!: () => void;
    let open!: () => void;
    const whenReached = new Promise<void>((r) => { reached = r; });
    this.gate = { reached, opened: new Promise<void>((r) => { open = r; }) };
    return { reached: whenReached, open };
  }

  async addToSet(name: string, member: string, expiresAtMs: number): Promise<void> {
    const gate = this.gate;
    this.gate = undefined;
    if (gate) {
      gate.reached();
      await gate.opened;
    }
    return this.inner.addToSet(name, member, expiresAtMs);
  }

  markUsed(jtiFingerprint: string, expiresAtMs: number) { return this.inner.markUsed(jtiFingerprint, expiresAtMs); }
  findRevocation(token: RevocationSubject) { return this.inner.findRevocation(token); }
  revoke(record: RevocationRecord) { return this.inner.revoke(record); }
  members(name: string) { return this.inner.members(name); }
  health() { return this.inner.health(); }
  oneTimeCounts() { return this.inner.oneTimeCounts(); }
  close() { return this.inner.close(); }
}

let mesh: TrustDomain<keyof typeof ID>;

beforeAll(async () => {
  await requireSharedRedis();
  mesh = await createTrustDomain('refresh-family', ID);
}, 60_000);

afterAll(() => mesh?.cleanup());

describe.each(['memory', 'redis'] as const)('refresh families with store: %s', (kind) => {
  const prefix = uniquePrefix();
  const storeYaml = kind === 'memory' ? 'store: memory' : `store: ${SHARED_REDIS_URL}\nredis: { key_prefix: "${prefix}", resync_interval: 200ms }`;
  let store: GatedStore;
  let issuer: RunningIssuer;
  let orders: { authz: RunningAuthz; envoy: EnvoyClient };

  beforeAll(async () => {
    const serverCert = issueCert(mesh.ca, mesh.dir, { name: `issuer-${kind}`, dnsSans: ['localhost'], ipSans: ['127.0.0.1'], serverAuth: true });
    const issuerConfig = parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, `keys-${kind}`)} }
token_ttl: 5m
refresh_ttl: 1h
${storeYaml}
rate_limit: { per_second: 1, burst: 200 }
clients:
  - id: ${ID.frontend}
    grants: [client_credentials, refresh_token]
    audiences: [${ID.orders}]
    scopes: [orders:read]
`, { baseDir: mesh.dir });
    // One memory store is shared by the issuer and the sidecar, as in the demo; Redis is shared by its own.
    const shared = kind === 'memory' ? new MemoryStore() : undefined;
    store = new GatedStore(shared ?? await openStore(issuerConfig, silentLogger));
    issuer = await startIssuer(issuerConfig, { log: silentLogger, store });
    const authz = await startAuthz(parseAuthzConfig(`
listen: 127.0.0.1:0
admin: off
audience: ${ID.orders}
issuers:
  - issuer: ${ISS}
    jwks_uri: ${issuer.url}/.well-known/jwks.json
    jwks_ca_file: ${mesh.ca.certPath}
    algorithms: [ES256]
${storeYaml}
routes:
  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }
`, { baseDir: mesh.dir }), { log: silentLogger, ...(shared && { store: shared }) });
    orders = { authz, envoy: new EnvoyClient(authz.grpcAddress) };
  }, 60_000);

  afterAll(async () => {
    orders?.envoy.close();
    await orders?.authz.stop();
    await issuer?.stop();
    if (kind === 'redis') {
      await store?.close();
      await deleteKeysUnder(SHARED_REDIS_URL, prefix);
    }
  });

  const token = (form: Record<string, string>) =>
    issuerRequest(issuer.url, '/token', { caPem: mesh.ca.certPem, client: mesh.workloads.frontend, form });
  const refresh = (refreshToken: string) => token({ grant_type: 'refresh_token', refresh_token: refreshToken });
  const readOrder = async (accessToken: string) => code(await orders.envoy.check({
    path: '/orders/1', headers: { authorization: `Bearer ${accessToken}` }, principal: ID.frontend, certificatePem: mesh.workloads.frontend.certPem,
  }));

  /** A revocation reaches the sidecar through the store (at once in memory, by pub/sub in Redis). */
  async function revokedAtSidecar(accessToken: string): Promise<void> {
    for (let tries = 0; tries < 500 && (await readOrder(accessToken)) !== 'token_revoked'; tries++) await new Promise((r) => setTimeout(r, 10));
    expect(await readOrder(accessToken)).toBe('token_revoked');
  }

  async function family() {
    const first = await token({ grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' });
    expect(first.status).toBe(200);
    expect(await readOrder(first.body.access_token)).toBe('allowed');
    return first.body as { access_token: string; refresh_token: string };
  }

  it('reusing a refresh token revokes the first access token of the family, and the later ones', async () => {
    const { access_token: a, refresh_token: r1 } = await family();
    const second = await refresh(r1);
    expect(second.status).toBe(200);
    const b = second.body.access_token as string;
    expect(await readOrder(b)).toBe('allowed');

    const reuse = await refresh(r1);
    expect(reuse.body.error).toBe('invalid_grant');
    await revokedAtSidecar(a);
    await revokedAtSidecar(b);
    expect((await refresh(second.body.refresh_token)).body.error).toBe('invalid_grant');
  });

  it('a reuse that lands after the winning refresh\'s markUsed, before its token joined the family, still kills that token', async () => {
    const { access_token: a, refresh_token: r1 } = await family();
    const held = store.holdNextAddToSet();
    const winner = refresh(r1);
    await held.reached;
    // The winner has marked R1 used and is recording its new access token: the reuse runs now.
    const reuse = await refresh(r1);
    expect(reuse.body.error).toBe('invalid_grant');
    held.open();
    const won = await winner;
    // No access token of the dead family may work: either none was issued, or it is revoked.
    if (won.status === 200) await revokedAtSidecar(won.body.access_token);
    else expect(won.body.error).toBe('invalid_grant');
    await revokedAtSidecar(a);
  });
});

function code(out: CheckOutput): string | undefined {
  return out.allowed ? 'allowed' : out.body?.code;
}

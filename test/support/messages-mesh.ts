import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startAuthz, type RunningAuthz } from '../../src/authz/authz-service.js';
import { EnvoyClient } from '../../src/authz/envoy-client.js';
import { parseAuthzConfig } from '../../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../../src/config/load-issuer-config.js';
import { issueCert } from '../../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../../src/issuer/issuer-service.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { messageDigest } from '../../src/vocabulary/message-token.js';
import { issuerRequest } from './issuer-client.js';
import { ISS, MESH_ID, type MeshWorkload } from './mesh-issuer.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './redis.js';

/**
 * Messages with real parts: an issuer over TLS (its revocations through the shared Redis), a
 * producer sidecar (orders) that seals on behalf of the request it serves, and consumer
 * sidecars (ledger) that check, sharing one-time marks and revocations through the same Redis.
 */

export const ID = MESH_ID;
export const FULFIL = 'orders.fulfilment';
/** A destination whose messages may wait 1 s only. */
export const SLOW = 'orders.slow';
/** A destination orders publishes to on its own account, without a handle. */
export const AUDIT_TRAIL = 'orders.audit';

export interface Answer {
  status: number;
  body: any;
}

export interface MessagesMesh {
  mesh: TrustDomain<MeshWorkload>;
  issuer: RunningIssuer;
  prefix: string;
  issuerAuditPath: string;
  /** orders: inbound checks (handles), messages.listen to seal. */
  producer: { authz: RunningAuthz; inbound: EnvoyClient };
  /** ledger replicas: messages.listen to check, and an ext_authz port. */
  consumers: { authz: RunningAuthz; inbound: EnvoyClient; auditPath: string }[];
  /** A ledger replica's authz config (sharing this mesh's Redis), for running one as a process. */
  consumerYaml(auditPath: string): string;
  /** A token frontend got for orders (what a user's request carries into orders). */
  frontendToken(): Promise<string>;
  /** What orders' application gets from orders' inbound allow for that token: its handle. */
  handleFor(token: string, inbound?: EnvoyClient): Promise<string>;
  /** orders' authz config, for running one as a process. */
  producerYaml(): string;
  post(address: string, path: string, body: unknown, headers?: Record<string, string>): Promise<Answer>;
  stop(): Promise<void>;
}

export const digestOf = messageDigest;

export interface MessagesMeshOptions {
  consumers?: number;
  /** grpc_listen on the producer and the first consumer. */
  grpc?: boolean;
  /** Top-level YAML appended to each sidecar's config (telemetry, say). */
  extra?: { issuer?: string; producer?: string; consumer?: string };
}

export async function startMessagesMesh(label: string, { consumers = 2, grpc = false, extra = {} }: MessagesMeshOptions = {}): Promise<MessagesMesh> {
  await requireSharedRedis();
  const prefix = uniquePrefix();
  const mesh = await createTrustDomain(label, ID);
  const serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  const signingKey = path.join(mesh.dir, 'audit.key');
  writeFileSync(signingKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const issuerAuditPath = path.join(mesh.dir, 'issuer-audit.jsonl');
  const redis = `store: ${SHARED_REDIS_URL}\nredis: { key_prefix: "${prefix}", resync_interval: 200ms }`;
  const issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')}, publish_ahead: 2s }
message_ttl: 1h
${redis}
rate_limit: { per_second: 1000, burst: 1000 }
audit: { output: ${issuerAuditPath}, allows: all, signing_key_file: ${signingKey}, flush_interval: 50ms }
${extra.issuer ?? ''}
clients:
  - id: ${ID.frontend}
    grants: [client_credentials]
    audiences: [${ID.orders}, ${ID.ledger}]
    scopes: [orders:read, ledger:write]
  - id: ${ID.orders}
    grants: [client_credentials, token_exchange]
    audiences: [${ID.payments}]
    message_audiences: [${ID.ledger}]
    scopes: [ledger:write, ledger:audit]
  - id: ${ID.admin}
    grants: [client_credentials]
    admin: true
`, { baseDir: mesh.dir }), { log: silentLogger });

  const issuersYaml = `issuers:
  - issuer: ${ISS}
    jwks_uri: ${issuer.url}/.well-known/jwks.json
    jwks_ca_file: ${mesh.ca.certPath}
    algorithms: [ES256]`;
  const producerYaml = () => `
listen: 127.0.0.1:0
admin: off
audience: ${ID.orders}
${issuersYaml}
routes:
  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }
issuer_client:
  token_endpoint: ${issuer.url}/token
  ca_file: ${mesh.ca.certPath}
  cert_file: ${mesh.workloads.orders.certPath}
  key_file: ${mesh.workloads.orders.keyPath}
messages:
  listen: 127.0.0.1:0
${grpc ? '  grpc_listen: 127.0.0.1:0\n' : ''}  outgoing:
    - { destination: ${FULFIL}, audience: ${ID.ledger}, scopes: [ledger:write], max_delay: 15m }
    - { destination: ${SLOW}, audience: ${ID.ledger}, scopes: [ledger:write], max_delay: 1s }
    - { destination: ${AUDIT_TRAIL}, audience: ${ID.ledger}, scopes: [ledger:audit], without_handle: client_credentials }
${extra.producer ?? ''}
`;
  const producerAuthz = await startAuthz(parseAuthzConfig(producerYaml(), { baseDir: mesh.dir }), { log: silentLogger });

  const consumerYaml = (auditPath: string, withGrpc: boolean) => `
listen: 127.0.0.1:0
admin: 127.0.0.1:0
audience: ${ID.ledger}
${issuersYaml}
clock_skew: 0s
${redis}
audit: { output: ${auditPath}, allows: all, signing_key_file: ${signingKey}, flush_interval: 50ms }
routes:
  - { name: ledger, methods: [POST], path: /ledger }
messages:
  listen: 127.0.0.1:0
${withGrpc ? '  grpc_listen: 127.0.0.1:0\n' : ''}  incoming:
    - { destination: ${FULFIL}, scopes: [ledger:write] }
    - { destination: ${SLOW}, scopes: [ledger:write] }
    - { destination: ${AUDIT_TRAIL} }
${extra.consumer ?? ''}
`;
  const started: MessagesMesh['consumers'] = [];
  for (let i = 0; i < consumers; i++) {
    const auditPath = path.join(mesh.dir, `ledger-${i}-audit.jsonl`);
    const authz = await startAuthz(parseAuthzConfig(consumerYaml(auditPath, grpc && i === 0), { baseDir: mesh.dir }), { log: silentLogger });
    started.push({ authz, inbound: new EnvoyClient(authz.grpcAddress), auditPath });
  }

  const producer = { authz: producerAuthz, inbound: new EnvoyClient(producerAuthz.grpcAddress) };
  return {
    mesh, issuer, prefix, issuerAuditPath, producer, consumers: started, consumerYaml: (auditPath) => consumerYaml(auditPath, false), producerYaml,
    async frontendToken() {
      const reply = await issuerRequest(issuer.url, '/token', {
        caPem: mesh.ca.certPem, client: mesh.workloads.frontend,
        form: { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read ledger:write' },
      });
      if (reply.status !== 200) throw new Error(`frontend got no token: ${JSON.stringify(reply.body)}`);
      return reply.body.access_token as string;
    },
    async handleFor(token, inbound = producer.inbound) {
      const out = await inbound.check({
        path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: ID.frontend, certificatePem: mesh.workloads.frontend.certPem,
      });
      const handle = out.headers['x-hopguard-handle'];
      if (!out.allowed || !handle) throw new Error('orders\' inbound allow carried no handle');
      return handle;
    },
    post: (address, path, body, headers = {}) => post(address, path, body, headers),
    async stop() {
      producer.inbound.close();
      await producerAuthz.stop();
      for (const consumer of started) {
        consumer.inbound.close();
        await consumer.authz.stop();
      }
      await issuer.stop();
      await deleteKeysUnder(SHARED_REDIS_URL, prefix);
      mesh.cleanup();
    },
  };
}

/**
 * The broker-independent half of the docs' producer: orders' application seals `body` at its
 * sidecar with the handle of the request it serves, and gets the token to put in a header.
 */
export async function sealJob(m: MessagesMesh, body: string, handle: string): Promise<string> {
  const sealed = await post(m.producer.authz.messagesAddress!, '/v1/messages/seal', { destination: FULFIL, digest: digestOf(body) }, { 'x-hopguard-handle': handle });
  if (sealed.status !== 200) throw new Error(`seal refused: ${sealed.body.code}`);
  return sealed.body.token;
}

/** The broker-independent half of the docs' consumer: ledger's worker checks a message as received at its sidecar. */
export async function checkJob(m: MessagesMesh, message: { token: string; body: Uint8Array; redelivered: boolean }): Promise<any> {
  const check = await post(m.consumers[0]!.authz.messagesAddress!, '/v1/messages/check', {
    token: message.token, destination: FULFIL, digest: digestOf(message.body), redelivered: message.redelivered,
  });
  return check.body;
}

/** One JSON POST to a messages API; `body` as text when a string (to send bad JSON). */
export async function post(address: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`http://${address}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

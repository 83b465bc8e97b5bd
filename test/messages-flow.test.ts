import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { claimsOf, headerOf, issuerRequest } from './support/issuer-client.js';
import { AUDIT_TRAIL, FULFIL, ID, SLOW, digestOf, type MessagesMesh, startMessagesMesh } from './support/messages-mesh.js';
import { SHARED_REDIS_URL, keysUnder } from './support/redis.js';
import { DENY_CODES, type DenyCode } from '../src/vocabulary/deny-codes.js';

/**
 * Messages through a queue (design "Messages"), with an issuer over TLS, orders' sidecar sealing
 * on behalf of the request it serves, and two ledger replicas checking, sharing Redis.
 */

let m: MessagesMesh;
const SEAL = '/v1/messages/seal';
const CHECK = '/v1/messages/check';
const HANDLE = 'x-hopguard-handle';

const producerApi = () => m.producer.authz.messagesAddress!;
const consumerApi = (i = 0) => m.consumers[i]!.authz.messagesAddress!;

/** orders serves frontend's request and seals a message about it, on frontend's behalf. */
async function sealed(body: string, destination = FULFIL) {
  const handle = await m.handleFor(await m.frontendToken());
  const reply = await m.post(producerApi(), SEAL, { destination, digest: digestOf(body) }, { [HANDLE]: handle });
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  return reply.body as { token: string; expires_in: number };
}

const check = (token: string, body: string, { destination = FULFIL, redelivered = false, replica = 0 } = {}) =>
  m.post(consumerApi(replica), CHECK, { token, destination, digest: digestOf(body), redelivered });

function expectDenied(reply: { status: number; body: any }, code: DenyCode) {
  expect(reply.body).toEqual({ decision: 'deny', code, error: DENY_CODES[code].bodyError, trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });
  expect(reply.status).toBe(DENY_CODES[code].http);
}

beforeAll(async () => {
  m = await startMessagesMesh('messages-flow');
}, 60_000);

afterAll(async () => {
  await m?.stop();
});

describe('the issuer mints message tokens', () => {
  it('seals on behalf of the handle\'s subject: typ hopguard-msg+jwt, the message claim, no cnf, the producer in act, lifetime max_delay', async () => {
    const body = '{"order":1}';
    const { token, expires_in: expiresIn } = await sealed(body);
    expect(headerOf(token).typ).toBe('hopguard-msg+jwt');
    const claims = claimsOf(token);
    expect(claims).toMatchObject({
      iss: 'https://sts.test.local', aud: ID.ledger, sub: ID.frontend, client_id: ID.orders, scope: 'ledger:write',
      act: { sub: ID.orders }, message: { destination: FULFIL, digest: digestOf(body) },
    });
    expect(claims.cnf).toBeUndefined();
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(claims.exp - claims.iat).toBe(15 * 60);
    expect(expiresIn).toBeGreaterThan(15 * 60 - 5);
    expect(expiresIn).toBeLessThanOrEqual(15 * 60);
  });

  it('caps the lifetime at message_ttl, and refuses audiences outside message_audiences', async () => {
    const ask = (form: Record<string, string>) => issuerRequest(m.issuer.url, '/token', {
      caPem: m.mesh.ca.certPem, client: m.mesh.workloads.orders,
      form: {
        grant_type: 'client_credentials', requested_token_type: 'urn:hopguard:params:oauth:token-type:message',
        message_destination: FULFIL, message_digest: digestOf('x'), audience: ID.ledger, ...form,
      },
    });
    const long = await ask({ message_max_delay: String(3 * 3600) });
    expect(long.status).toBe(200);
    expect(long.body).toMatchObject({ token_type: 'N_A', issued_token_type: 'urn:hopguard:params:oauth:token-type:message' });
    const claims = claimsOf(long.body.access_token);
    expect(claims.exp - claims.iat).toBe(3600);
    // Without a handle: the producer speaks for itself, no act.
    expect(claims).toMatchObject({ sub: ID.orders, client_id: ID.orders });
    expect(claims.act).toBeUndefined();

    expect((await ask({ audience: ID.payments })).body.error).toBe('invalid_target');
    expect((await ask({ message_digest: 'md5=:abc:' })).body.error).toBe('invalid_request');
    expect((await ask({ message_destination: '' })).body.error).toBe('invalid_request');
    // frontend may have tokens for ledger, but no message tokens.
    const frontend = await issuerRequest(m.issuer.url, '/token', {
      caPem: m.mesh.ca.certPem, client: m.mesh.workloads.frontend,
      form: {
        grant_type: 'client_credentials', requested_token_type: 'urn:hopguard:params:oauth:token-type:message',
        message_destination: FULFIL, message_digest: digestOf('x'), audience: ID.ledger,
      },
    });
    expect(frontend.body.error).toBe('invalid_target');
  });

  it('audits each message token it mints with its destination, and each refusal', async () => {
    await sealed('audited');
    await new Promise((r) => setTimeout(r, 300));
    const records = readFileSync(m.issuerAuditPath, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    const exchange = records.filter((r) => r.event === 'exchange' && r.destination === FULFIL);
    expect(exchange.length).toBeGreaterThan(0);
    expect(exchange.at(-1)).toMatchObject({ decision: 'allow', audience: ID.ledger, subject: ID.frontend, client: ID.orders, actors: [ID.orders] });
    expect(records.some((r) => r.event === 'issuance' && r.decision === 'deny' && r.code === 'invalid_target')).toBe(true);
    expect(readFileSync(m.issuerAuditPath, 'utf8')).not.toContain('eyJ');
  });
});

describe('seal', () => {
  it('seals as orders itself where the destination says without_handle: client_credentials', async () => {
    const reply = await m.post(producerApi(), SEAL, { destination: AUDIT_TRAIL, digest: digestOf('trail') });
    expect(reply.status).toBe(200);
    expect(claimsOf(reply.body.token)).toMatchObject({ sub: ID.orders, client_id: ID.orders, scope: 'ledger:audit' });
    const ok = await check(reply.body.token, 'trail', { destination: AUDIT_TRAIL });
    expect(ok.body).toMatchObject({ decision: 'allow', subject: ID.orders, client_id: ID.orders, act: null });
  });

  it('denies without a handle, with a handle not its own, for a destination it does not publish to, and with two handles', async () => {
    const digest = digestOf('x');
    const missing = await m.post(producerApi(), SEAL, { destination: FULFIL, digest });
    expect(missing.status).toBe(401);
    expect(missing.body).toMatchObject({ code: 'handle_missing', error: 'unauthorized' });
    const forged = await m.post(producerApi(), SEAL, { destination: FULFIL, digest }, { [HANDLE]: `hgh1.${'A'.repeat(80)}` });
    expect(forged.body.code).toBe('handle_invalid');
    const handle = await m.handleFor(await m.frontendToken());
    const other = await m.post(producerApi(), SEAL, { destination: 'orders.elsewhere', digest }, { [HANDLE]: handle });
    expect([other.status, other.body.code]).toEqual([403, 'no_destination']);
    const twice = await fetch(`http://${producerApi()}${SEAL}`, {
      method: 'POST', body: JSON.stringify({ destination: FULFIL, digest }), headers: [[HANDLE, handle], [HANDLE, handle]],
    });
    expect([twice.status, (await twice.json()).code]).toEqual([400, 'malformed_request']);
  });
});

describe('the consumer check', () => {
  it('allows a message sealed on behalf of a user at another service, with the user as subject and the producer in act', async () => {
    const body = '{"order":42,"items":3}';
    const { token } = await sealed(body);
    const reply = await check(token, body);
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({
      decision: 'allow', subject: ID.frontend, client_id: ID.orders, act: { sub: ID.orders }, scope: 'ledger:write',
      jti: claimsOf(token).jti, redelivered: false,
    });
  });

  it('denies the token on another message (digest_mismatch) without spending it', async () => {
    const { token } = await sealed('the real body');
    expectDenied(await check(token, 'another body'), 'digest_mismatch');
    expect((await check(token, 'the real body')).body.decision).toBe('allow');
  });

  it('denies the token at another destination: destination_mismatch where ledger consumes it, no_destination where it does not', async () => {
    const { token } = await sealed('moved');
    expectDenied(await check(token, 'moved', { destination: SLOW }), 'destination_mismatch');
    expectDenied(await check(token, 'moved', { destination: 'orders.unknown' }), 'no_destination');
  });

  it('denies a republished copy (token_replayed) at any replica, and allows the broker\'s redelivery, marked redelivered', async () => {
    const { token } = await sealed('once');
    expect((await check(token, 'once')).body).toMatchObject({ decision: 'allow', redelivered: false });
    expectDenied(await check(token, 'once'), 'token_replayed');
    expectDenied(await check(token, 'once', { replica: 1 }), 'token_replayed');
    const again = await check(token, 'once', { redelivered: true, replica: 1 });
    expect(again.body).toMatchObject({ decision: 'allow', subject: ID.frontend, redelivered: true });
  });

  it('allows exactly one of two replicas checking one message at once', async () => {
    for (let round = 0; round < 5; round++) {
      const { token } = await sealed(`race ${round}`);
      const replies = await Promise.all([0, 1].flatMap((replica) => [check(token, `race ${round}`, { replica }), check(token, `race ${round}`, { replica })]));
      expect(replies.filter((r) => r.body.decision === 'allow')).toHaveLength(1);
      for (const denied of replies.filter((r) => r.body.decision !== 'allow')) expectDenied(denied, 'token_replayed');
    }
  });

  it('denies a message that waited past its max_delay (token_expired)', async () => {
    const { token } = await sealed('slow', SLOW);
    expect(claimsOf(token).exp - claimsOf(token).iat).toBe(1);
    await new Promise((r) => setTimeout(r, 2_100));
    expectDenied(await check(token, 'slow', { destination: SLOW }), 'token_expired');
  });

  it('refuses a message token at the ext_authz port and an access token at the check (wrong_token_type)', async () => {
    const { token } = await sealed('typed');
    const inbound = await m.consumers[0]!.inbound.check({ method: 'POST', path: '/ledger', headers: { authorization: `Bearer ${token}` }, principal: ID.orders });
    expect(inbound.allowed).toBe(false);
    expect(inbound.body!.code).toBe('wrong_token_type');
    const access = await issuerRequest(m.issuer.url, '/token', {
      caPem: m.mesh.ca.certPem, client: m.mesh.workloads.frontend, form: { grant_type: 'client_credentials', audience: ID.ledger, scope: 'ledger:write' },
    });
    expectDenied(await check(access.body.access_token, 'typed'), 'wrong_token_type');
    // The message token itself is still unspent.
    expect((await check(token, 'typed')).body.decision).toBe('allow');
  });
});

describe('bad input', () => {
  const digest = digestOf('x');
  const cases: [string, string, unknown][] = [
    ['not JSON', CHECK, '{"token": '],
    ['an array', CHECK, '[]'],
    ['no token', CHECK, { destination: FULFIL, digest }],
    ['a number as token', CHECK, { token: 7, destination: FULFIL, digest }],
    ['a digest not sha-256=:…:', CHECK, { token: 'a.b.c', destination: FULFIL, digest: 'sha-256=abc' }],
    ['redelivered not a boolean', CHECK, { token: 'a.b.c', destination: FULFIL, digest, redelivered: 'yes' }],
    ['an unknown member', CHECK, { token: 'a.b.c', destination: FULFIL, digest, extra: 1 }],
    ['a body over 64 KiB', CHECK, { token: 'a.b.c', destination: FULFIL, digest, pad: 'x'.repeat(70_000) }],
    ['seal: not JSON', SEAL, 'nope'],
    ['seal: no digest', SEAL, { destination: FULFIL }],
    ['seal: a destination with spaces', SEAL, { destination: 'a b', digest }],
    ['seal: a digest of another algorithm', SEAL, { destination: FULFIL, digest: 'sha-512=:abc:' }],
  ];

  it.each(cases)('%s: 400 malformed_request with a clear message, and nothing recorded', async (_name, path, body) => {
    const consumer = m.consumers[0]!;
    const redis = new Redis(SHARED_REDIS_URL);
    const metrics = () => fetch(`http://${consumer.authz.adminAddress}/metrics`).then((r) => r.text())
      .then((text) => text.split('\n').filter((l) => l.startsWith('hopguard_messages_')).join('\n'));
    try {
      await new Promise((r) => setTimeout(r, 120));
      const before = { audit: readFileSync(consumer.auditPath, 'utf8'), keys: (await keysUnder(redis, m.prefix)).sort(), metrics: await metrics() };
      const address = path === SEAL ? producerApi() : consumerApi();
      const reply = await m.post(address, path, body);
      expect(reply.status).toBe(400);
      expect(reply.body).toEqual({ decision: 'deny', code: 'malformed_request', error: 'invalid_request', message: expect.any(String) });
      expect(reply.body.message).not.toContain('a.b.c');
      await new Promise((r) => setTimeout(r, 120));
      expect(readFileSync(consumer.auditPath, 'utf8')).toBe(before.audit);
      expect((await keysUnder(redis, m.prefix)).sort()).toEqual(before.keys);
      expect(await metrics()).toBe(before.metrics);
    } finally {
      redis.disconnect();
    }
  });

  it('answers GET /healthz, and 404 / 405 elsewhere', async () => {
    expect((await fetch(`http://${consumerApi()}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${consumerApi()}/v1/messages/other`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`http://${consumerApi()}${CHECK}`)).status).toBe(405);
  });
});

describe('telemetry of the consumer check', () => {
  it('audits each check with its destination, code and token fingerprint, never the token or the digest', async () => {
    const { token } = await sealed('audit me');
    await check(token, 'audit me');
    await check(token, 'audit me');
    await new Promise((r) => setTimeout(r, 300));
    const text = readFileSync(m.consumers[0]!.auditPath, 'utf8');
    const records = text.trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.event === 'message_check');
    const fp = records.at(-1).token_fingerprint;
    expect(records.slice(-2)).toEqual([
      expect.objectContaining({ decision: 'allow', destination: FULFIL, audience: ID.ledger, subject: ID.frontend, client: ID.orders, actors: [ID.orders], token_fingerprint: fp, redelivered: false }),
      expect.objectContaining({ decision: 'deny', code: 'token_replayed', destination: FULFIL, token_fingerprint: fp }),
    ]);
    for (const piece of token.split('.')) expect(text).not.toContain(piece);
    expect(text).not.toContain(digestOf('audit me').slice(9, 40));
    const metrics = await fetch(`http://${m.consumers[0]!.authz.adminAddress}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/hopguard_messages_decisions_total\{[^}]*code="token_replayed"[^}]*\} [1-9]/);
  });
});

describe('revocation', () => {
  const revoke = (who: 'orders' | 'frontend' | 'admin', form: Record<string, string>) =>
    issuerRequest(m.issuer.url, '/revoke', { caPem: m.mesh.ca.certPem, client: m.mesh.workloads[who], form });

  /** The revocation reaches replica 1 through the store's feed within 3 s; replica 0 then refuses too. */
  async function expectRevokedEverywhere(token: string, body: string) {
    const deadline = Date.now() + 3_000;
    let last;
    do {
      last = await check(token, body, { replica: 1 });
    } while (last.body.code !== 'token_revoked' && Date.now() < deadline && await new Promise((r) => setTimeout(r, 50, true)));
    expectDenied(last, 'token_revoked');
    expectDenied(await check(token, body, { replica: 0 }), 'token_revoked');
  }

  it('the producer revokes a message token it sealed (RFC 7009), by jti: every replica refuses it (token_revoked), its other messages pass', async () => {
    const { token } = await sealed('cancelled job');
    const kept = await sealed('kept job');
    const reply = await revoke('orders', { token });
    expect(reply.status).toBe(200);
    await expectRevokedEverywhere(token, 'cancelled job');
    expect((await check(kept.token, 'kept job')).body).toMatchObject({ decision: 'allow', subject: ID.frontend });
    // A redelivery of a revoked message is refused too.
    expectDenied(await check(token, 'cancelled job', { redelivered: true }), 'token_revoked');
  });

  it('refuses to revoke another client\'s message token (unauthorized_client, as for access tokens): it stays valid', async () => {
    const { token } = await sealed('not yours');
    const other = await revoke('frontend', { token });
    expect([other.status, other.body.error]).toEqual([400, 'unauthorized_client']);
    await new Promise((r) => setTimeout(r, 300));
    expect((await check(token, 'not yours', { replica: 1 })).body).toMatchObject({ decision: 'allow', subject: ID.frontend });
  });

  // Last: it revokes every token of frontend issued up to now.
  it('denies a message whose subject was revoked while it waited (token_revoked), at every replica', async () => {
    const { token } = await sealed('revoked');
    expect((await revoke('admin', { subject: ID.frontend, reason: 'test' })).status).toBe(200);
    await expectRevokedEverywhere(token, 'revoked');
  });
});

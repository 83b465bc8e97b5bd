import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_OFF } from '../src/audit/audit-log.js';
import { issueCert, type IssuedCert } from '../src/devkit/pki.js';
import { Decommission } from '../src/signals/decommission.js';
import { RedisRevocationWriter } from '../src/store/redis-revocation-writer.js';
import { RedisStore } from '../src/store/redis-store.js';
import { revocationKey } from '../src/store/revocation-index.js';
import type { HeldUses, RevocationRecord } from '../src/store/store.js';
import { silentLogger } from '../src/telemetry/log.js';
import type { RedisOptions } from '../src/vocabulary/redis-options.js';
import { CHECKOUT, ONE_TIME_PAY_ROUTES_YAML, authzYaml, createFixtures, type Fixtures } from './support/harness.js';
import { startSidecar, type SidecarProcess } from './support/process.js';
import { RedisProcess, freePort } from './support/redis.js';

/**
 * The Redis users k8s/base ships (redis-users.acl, rendered by redis-users.sh, exactly as the
 * README tells an operator to), loaded by a redis-server of the test's own: every command the
 * store sends is granted, everything else is refused, and a bad credential fails closed.
 */

const RENDER = path.resolve(import.meta.dirname, '../k8s/base/redis-users.sh');
/** The shipped file's key prefix; the test's own Redis holds nothing else. */
const PREFIX = 'hopguard:';
/** Added by the test only, to read ACL LOG and set up records; the shipped file has no such user. */
const ADMIN = 'acl-test-admin';

let fixtures: Fixtures;
const secret = {
  sidecar: randomBytes(24).toString('hex'), issuer: randomBytes(24).toString('hex'), injector: randomBytes(24).toString('hex'), admin: randomBytes(24).toString('hex'),
};
const files = { sidecar: '', issuer: '', injector: '', wrong: '' };
let aclFile: string;
let redis: RedisProcess;
let admin: Redis;

function writeSecret(name: string, text: string): string {
  const file = path.join(fixtures.dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

function storeOptions(passwordFile: string, extra: Partial<RedisOptions> = {}): RedisOptions {
  return { keyPrefix: PREFIX, passwordFile, commandTimeoutMs: 2000, maxStalenessMs: 30_000, resyncIntervalMs: 100, ...extra };
}

/** A raw connection as one of the shipped users, to try commands the store never sends. */
function connectAs(username: string, password: string, port = redis.port): Redis {
  return new Redis({ host: '127.0.0.1', port, username, password, maxRetriesPerRequest: 0, retryStrategy: () => null, disableClientInfo: true });
}

async function until(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** ACL LOG entries of the shipped users: any command Redis refused them, including ones the store swallowed. */
async function refusals(): Promise<string[]> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  return entries.map((entry) => {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1]);
    return `${String(fields.get('username'))}: ${String(fields.get('reason'))} ${String(fields.get('object'))}`;
  }).filter((line) => !line.startsWith(ADMIN));
}

/** Sends inline commands on one connection and resolves to the first `count` reply lines. */
function rawExchange(port: number, commands: string[], count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(commands.map((c) => `${c}\r\n`).join('')));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk;
      const lines = text.split('\r\n').filter((line) => line !== '');
      if (lines.length >= count) {
        socket.destroy();
        resolve(lines.slice(0, count));
      }
    });
    socket.on('error', reject);
  });
}

const record = (fingerprint: string, expiresAtMs: number): RevocationRecord => ({ revocation: { kind: 'jti', fingerprint }, expiresAtMs, reason: 'test' });

beforeAll(async () => {
  fixtures = await createFixtures();
  files.sidecar = writeSecret('sidecar-password', `${secret.sidecar}\n`);
  files.issuer = writeSecret('issuer-password', secret.issuer);
  files.injector = writeSecret('injector-password', `${secret.injector}\n`);
  files.wrong = writeSecret('wrong-password', 'not-the-sidecar-password');
  const rendered = execFileSync(RENDER, [files.sidecar, files.issuer, files.injector], { encoding: 'utf8' });
  aclFile = writeSecret('users.acl', `${rendered}user ${ADMIN} on >${secret.admin} ~* &* +@all\n`);
  // DEBUG enabled, so the ACL (not enable-debug-command) is what refuses it to hopguard's users.
  redis = new RedisProcess(await freePort(), ['--aclfile', aclFile, '--protected-mode', 'yes', '--enable-debug-command', 'yes']);
  await redis.start();
  admin = connectAs(ADMIN, secret.admin);
}, 30_000);

afterAll(async () => {
  admin?.disconnect();
  await redis?.kill();
  fixtures?.cleanup();
});

describe('k8s/base/redis-users.acl: what each user may do', () => {
  it('renders with no placeholder or comment left, and turns the default user off', () => {
    const rendered = execFileSync(RENDER, [files.sidecar, files.issuer, files.injector], { encoding: 'utf8' });
    expect(rendered).not.toMatch(/PASSWORD_SHA256|^#/m);
    for (const password of [secret.sidecar, secret.issuer, secret.injector]) expect(rendered).not.toContain(password);
    expect(rendered.match(/^user \S+/gm)).toEqual(['user default', 'user hopguard-sidecar', 'user hopguard-issuer', 'user hopguard-injector']);
    expect(rendered).toMatch(/^user default off /m);
  });

  it('the sidecar user runs everything hopguard authz asks of the store, and Redis refuses none of it', async () => {
    await admin.call('ACL', 'LOG', 'RESET');
    const issuer = await RedisStore.open(`redis://hopguard-issuer@127.0.0.1:${redis.port}`, storeOptions(files.issuer), silentLogger);
    const sidecar = await RedisStore.open(`redis://hopguard-sidecar@127.0.0.1:${redis.port}`, storeOptions(files.sidecar), silentLogger);
    try {
      expect(sidecar.health()).toEqual({ state: 'ok' });
      // One-time use.
      const expires = Date.now() + 60_000;
      expect(await sidecar.markUsed('once', expires)).toBe(true);
      expect(await sidecar.markUsed('once', expires)).toBe(false);
      // A check denied after its first use gives the mark back (compare-and-delete).
      const held: HeldUses = [];
      expect(await sidecar.markUsed('given-back', expires, held)).toBe(true);
      for (const release of held) release();
      await until('the mark to be given back', async () => (await admin.exists(`${PREFIX}used:given-back`)) === 0);
      // A revocation from the issuer reaches the sidecar through the channel.
      const revoked = record('revoked', Date.now() + 60_000);
      await issuer.revoke(revoked);
      await until('the sidecar to hear of the revocation', () => sidecar.findRevocation({ jtiFingerprint: 'revoked', sub: 'someone', clientId: 'someone', iat: 0 }) !== undefined);
      // Resync upkeep: a record Redis lost is written back, an expired one dropped.
      const field = revocationKey(revoked.revocation);
      await admin.hdel(`${PREFIX}revocations`, field);
      const expired = record('expired', Date.now() - 1000);
      await admin.hset(`${PREFIX}revocations`, revocationKey(expired.revocation), JSON.stringify(expired));
      await admin.incr(`${PREFIX}revocations:version`);
      await until('the sidecar to restore the lost record', async () => (await admin.hexists(`${PREFIX}revocations`, field)) === 1);
      await until('the sidecar to drop the expired record', async () => (await admin.hexists(`${PREFIX}revocations`, revocationKey(expired.revocation))) === 0);
      expect(sidecar.health()).toEqual({ state: 'ok' });
    } finally {
      await Promise.all([sidecar.close(), issuer.close()]);
    }
    expect(await refusals()).toEqual([]);
  });

  it('the issuer user runs everything hopguard issuer asks of the store, and Redis refuses none of it', async () => {
    await admin.call('ACL', 'LOG', 'RESET');
    const issuer = await RedisStore.open(`redis://hopguard-issuer@127.0.0.1:${redis.port}`, storeOptions(files.issuer), silentLogger);
    try {
      expect(issuer.health()).toEqual({ state: 'ok' });
      expect(await issuer.markUsed('refresh-once', Date.now() + 60_000)).toBe(true);
      const held: HeldUses = [];
      expect(await issuer.markUsed('given-back', Date.now() + 60_000, held)).toBe(true);
      for (const release of held) release();
      await until('the mark to be given back', async () => (await admin.exists(`${PREFIX}used:given-back`)) === 0);
      await issuer.addToSet('family-1', 'fp-a 123', Date.now() + 60_000);
      await issuer.addToSet('family-1', 'fp-b 456', Date.now() + 120_000);
      expect((await issuer.members('family-1')).sort()).toEqual(['fp-a 123', 'fp-b 456']);
      await issuer.revoke(record('by-issuer', Date.now() + 60_000));
    } finally {
      await issuer.close();
    }
    expect(await refusals()).toEqual([]);
  });

  it('the injector user writes a decommission\'s revocations, a sidecar hears of them, and Redis refuses none of it', async () => {
    await admin.call('ACL', 'LOG', 'RESET');
    const sidecar = await RedisStore.open(`redis://hopguard-sidecar@127.0.0.1:${redis.port}`, storeOptions(files.sidecar), silentLogger);
    // What hopguard inject opens for its store: the revocation writer, as the injector's own user.
    const writer = await RedisRevocationWriter.open(`redis://hopguard-injector@127.0.0.1:${redis.port}`, storeOptions(files.injector), silentLogger);
    const subject = 'spiffe://cluster.local/ns/shop/sa/retired';
    const before = await admin.get(`${PREFIX}revocations:version`);
    try {
      const decommission = new Decommission({ trustDomain: 'cluster.local', store: writer, audit: AUDIT_OFF, log: silentLogger, revocationTtlMs: 3600_000 });
      const answer = await decommission.review({
        apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
        request: { uid: 'acl-1', kind: { group: '', version: 'v1', kind: 'ServiceAccount' }, operation: 'DELETE', namespace: 'shop', name: 'retired', userInfo: { username: 'admin' } },
      });
      // Admitted without the warning a failed write gives.
      expect(answer).toEqual({ kind: 'answered', review: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'acl-1', allowed: true } } });
      const issuedEarlier = { jtiFingerprint: 'retired-token', sub: subject, clientId: 'spiffe://cluster.local/ns/shop/sa/other', iat: Math.floor(Date.now() / 1000) - 10 };
      const obtainedByExchange = { jtiFingerprint: 'exchanged', sub: 'spiffe://cluster.local/ns/shop/sa/other', clientId: subject, iat: Math.floor(Date.now() / 1000) - 10 };
      await until('the sidecar to hear of both revocations', () =>
        sidecar.findRevocation(issuedEarlier)?.revocation.kind === 'subject' && sidecar.findRevocation(obtainedByExchange)?.revocation.kind === 'client');
      expect(await admin.hkeys(`${PREFIX}revocations`)).toEqual(expect.arrayContaining([`subject:${subject}`, `client:${subject}`]));
      expect(Number(await admin.get(`${PREFIX}revocations:version`))).toBeGreaterThan(Number(before ?? 0));
    } finally {
      await Promise.all([writer.close(), sidecar.close()]);
    }
    expect(await refusals()).toEqual([]);
  });

  it('the injector user cannot read or delete the revocations, touch a one-time mark or a refresh family, subscribe, or run admin commands', async () => {
    await admin.set(`${PREFIX}used:kept-from-injector`, '1', 'PX', 60_000);
    await admin.sadd(`${PREFIX}set:family-injector`, 'fp 1');
    await admin.set('other-app:key', 'theirs');
    await admin.hset(`${PREFIX}revocations`, 'jti:held-from-injector', JSON.stringify(record('held-from-injector', Date.now() + 60_000)));
    const injector = connectAs('hopguard-injector', secret.injector);
    const refused: string[][] = [
      ['SET', `${PREFIX}used:kept-from-injector`, 'x', 'PX', '1'], ['SET', `${PREFIX}used:new`, 'x', 'NX', 'PX', '60000'],
      ['GET', `${PREFIX}used:kept-from-injector`], ['DEL', `${PREFIX}used:kept-from-injector`], ['UNLINK', `${PREFIX}used:kept-from-injector`],
      ['EVAL', "return redis.call('DEL', KEYS[1])", '1', `${PREFIX}used:kept-from-injector`],
      ['SMEMBERS', `${PREFIX}set:family-injector`], ['SADD', `${PREFIX}set:family-injector`, 'x'], ['DEL', `${PREFIX}set:family-injector`],
      ['PEXPIREAT', `${PREFIX}set:family-injector`, '1'],
      ['HSCAN', `${PREFIX}revocations`, '0'], ['HGETALL', `${PREFIX}revocations`], ['HKEYS', `${PREFIX}revocations`],
      ['HDEL', `${PREFIX}revocations`, 'jti:held-from-injector'], ['DEL', `${PREFIX}revocations`], ['UNLINK', `${PREFIX}revocations`],
      ['EVAL', "return redis.call('HDEL', KEYS[1], ARGV[1])", '1', `${PREFIX}revocations`, 'jti:held-from-injector'],
      ['EVAL', "return redis.call('DEL', KEYS[1])", '1', `${PREFIX}revocations`],
      ['EXPIRE', `${PREFIX}revocations`, '1'], ['RENAME', `${PREFIX}revocations`, `${PREFIX}gone`],
      ['GET', `${PREFIX}revocations:version`], ['SET', `${PREFIX}revocations:version`, '0'], ['DEL', `${PREFIX}revocations:version`],
      ['PUBLISH', 'other-app:events', 'x'], ['GET', 'other-app:key'], ['SET', 'other-app:key', 'mine'],
      ['FLUSHALL'], ['FLUSHDB'], ['KEYS', '*'], ['SCAN', '0'], ['CONFIG', 'GET', '*'], ['CONFIG', 'SET', 'appendonly', 'no'],
      ['DEBUG', 'SLEEP', '0'], ['ACL', 'LIST'], ['CLIENT', 'LIST'], ['MONITOR'], ['SCRIPT', 'FLUSH'], ['FUNCTION', 'FLUSH'], ['SHUTDOWN', 'NOSAVE'],
    ];
    try {
      for (const [command, ...args] of refused) {
        await expect(injector.call(command!, ...args), `${command} ${args.join(' ')}`).rejects.toThrow(/NOPERM|can't run this command|can't access/);
      }
      // It publishes revocations, but hears none: the feed is the sidecars'.
      await expect(connectAs('hopguard-injector', secret.injector).subscribe(`${PREFIX}revocations`)).rejects.toThrow(/NOPERM/);
    } finally {
      injector.disconnect();
    }
    expect(await admin.get(`${PREFIX}used:kept-from-injector`)).toBe('1');
    expect(await admin.smembers(`${PREFIX}set:family-injector`)).toEqual(['fp 1']);
    expect(await admin.hexists(`${PREFIX}revocations`, 'jti:held-from-injector')).toBe(1);
    expect(await admin.get('other-app:key')).toBe('theirs');
  });

  it('what a stolen injector password still can do, as README says: write and publish revocation records', async () => {
    // The merge script runs with the caller's rights, so HSET and PUBLISH there are the injector's
    // too: a forged revocation denies service; a shortened one is merged back by the sidecars.
    const injector = connectAs('hopguard-injector', secret.injector);
    try {
      expect(await injector.hset(`${PREFIX}revocations`, 'jti:forged-by-injector', JSON.stringify(record('forged-by-injector', Date.now() + 60_000)))).toBe(1);
      expect(await injector.publish(`${PREFIX}revocations`, JSON.stringify(record('forged-by-injector', Date.now() + 60_000)))).toBeGreaterThanOrEqual(0);
    } finally {
      injector.disconnect();
    }
    await admin.hdel(`${PREFIX}revocations`, 'jti:forged-by-injector');
  });

  it('the sidecar user cannot unlink or expire a one-time mark, delete the revocations, touch another prefix or channel, or run admin commands', async () => {
    await admin.set(`${PREFIX}used:kept`, '1', 'PX', 60_000);
    await admin.set('other-app:key', 'theirs');
    const sidecar = connectAs('hopguard-sidecar', secret.sidecar);
    const forged = JSON.stringify(record('kept', 1));
    await admin.hset(`${PREFIX}revocations`, 'jti:held', JSON.stringify(record('held', Date.now() + 60_000)));
    const refused: string[][] = [
      ['UNLINK', `${PREFIX}used:kept`],
      ['PEXPIRE', `${PREFIX}used:kept`, '1'],
      ['DEL', `${PREFIX}revocations`],
      ['EVAL', "return redis.call('DEL', KEYS[1])", '1', `${PREFIX}revocations`],
      ['HSET', `${PREFIX}revocations:version`, 'x', '1'],
      ['PUBLISH', 'other-app:events', forged],
      ['SMEMBERS', `${PREFIX}set:family-1`],
      ['SADD', `${PREFIX}set:family-1`, 'x'],
      ['GET', 'other-app:key'],
      ['SET', 'other-app:key', 'mine'],
      ['SET', `${PREFIX}revocations:version`, '0'],
      ['FLUSHALL'], ['FLUSHDB'], ['KEYS', '*'], ['SCAN', '0'], ['CONFIG', 'GET', '*'], ['CONFIG', 'SET', 'appendonly', 'no'],
      ['DEBUG', 'SLEEP', '0'], ['ACL', 'LIST'], ['CLIENT', 'LIST'], ['SCRIPT', 'FLUSH'], ['FUNCTION', 'FLUSH'], ['SHUTDOWN', 'NOSAVE'],
    ];
    try {
      for (const [command, ...args] of refused) {
        await expect(sidecar.call(command!, ...args), `${command} ${args.join(' ')}`).rejects.toThrow(/NOPERM|can't run this command|can't access/);
      }
      await expect(connectAs('hopguard-sidecar', secret.sidecar).subscribe('other-app:events')).rejects.toThrow(/NOPERM/);
    } finally {
      sidecar.disconnect();
    }
    expect(await admin.exists(`${PREFIX}used:kept`)).toBe(1);
    expect(await admin.get('other-app:key')).toBe('theirs');
    expect(await admin.hexists(`${PREFIX}revocations`, 'jti:held')).toBe(1);
  });

  it('what a stolen sidecar password still can do, as README says: overwrite or delete a one-time mark, write revocation fields', async () => {
    // An ACL grants commands, not arguments: SET cannot be held to SET NX, and the resync's merge
    // scripts run with the caller's rights, so HSET, HDEL and PUBLISH on the revocations are the
    // sidecar's too. This is why the password stays out of the application container (README).
    await admin.set(`${PREFIX}used:known`, '1', 'PX', 60_000);
    const sidecar = connectAs('hopguard-sidecar', secret.sidecar);
    try {
      expect(await sidecar.set(`${PREFIX}used:known`, '1', 'PX', 1)).toBe('OK');
      // GET and DEL are the release script's (a denied check gives its mark back): no more than SET already gave.
      await admin.set(`${PREFIX}used:known`, '1', 'PX', 60_000);
      expect(await sidecar.del(`${PREFIX}used:known`)).toBe(1);
      expect(await sidecar.hset(`${PREFIX}revocations`, 'jti:forged', JSON.stringify(record('forged', Date.now() + 60_000)))).toBe(1);
      expect(await sidecar.hdel(`${PREFIX}revocations`, 'jti:forged')).toBe(1);
    } finally {
      sidecar.disconnect();
    }
  });

  it('the issuer user cannot reach another prefix or run admin commands', async () => {
    const issuer = connectAs('hopguard-issuer', secret.issuer);
    try {
      for (const [command, ...args] of [['GET', 'other-app:key'], ['DEL', 'other-app:key'], ['FLUSHALL'], ['KEYS', '*'], ['CONFIG', 'GET', '*'], ['DEBUG', 'SLEEP', '0'], ['ACL', 'LIST'], ['SHUTDOWN', 'NOSAVE']]) {
        await expect(issuer.call(command!, ...args), command).rejects.toThrow(/NOPERM/);
      }
    } finally {
      issuer.disconnect();
    }
    expect(await admin.get('other-app:key')).toBe('theirs');
  });

  it('refuses a connection without credentials, and the default user with any password', async () => {
    // Plain RESP on a socket: what any pod on the network could send, no client library involved.
    const replies = await rawExchange(redis.port, [`GET ${PREFIX}used:kept`, `SET ${PREFIX}used:x 1`, 'AUTH default ""', 'AUTH default anything', 'FLUSHALL'], 5);
    expect(replies).toEqual([
      expect.stringMatching(/^-NOAUTH/), expect.stringMatching(/^-NOAUTH/),
      expect.stringMatching(/^-WRONGPASS/), expect.stringMatching(/^-WRONGPASS/), expect.stringMatching(/^-NOAUTH/),
    ]);
    expect(await admin.exists(`${PREFIX}used:x`)).toBe(0);
  });
});

describe('a sidecar whose Redis credentials are wrong (hopguard authz as a process)', () => {
  let sidecar: SidecarProcess;
  beforeAll(async () => {
    const file = path.join(fixtures.dir, 'wrong-password.yaml');
    writeFileSync(file, `${authzYaml(fixtures)}store: redis://hopguard-sidecar@127.0.0.1:${redis.port}
redis:
  password_file: ${files.wrong}
  command_timeout: 500ms
${ONE_TIME_PAY_ROUTES_YAML}`);
    sidecar = await startSidecar(file);
  }, 30_000);
  afterAll(() => sidecar?.stop());

  it('fails closed with state_unavailable, and logs which settings to check, never the password', async () => {
    const token = await fixtures.token({ jti: 'wrong-password' });
    const out = await sidecar.envoy.check({
      method: 'POST', path: '/payments', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
    });
    expect(out.allowed).toBe(false);
    expect(out.body?.code).toBe('state_unavailable');
    const refused = await sidecar.proc.logEvent('redis_refused');
    expect(refused).toMatchObject({ level: 'error', reply: 'WRONGPASS', check: expect.stringContaining('redis.password_file') });
    expect(sidecar.proc.stderr()).not.toContain('not-the-sidecar-password');
    // Once per outage, not once per retry.
    expect(sidecar.proc.stderr().split('"redis_refused"').length - 1).toBeLessThanOrEqual(2);
  });
});

describe('Redis over TLS (rediss://), with the shipped users', () => {
  let tlsRedis: RedisProcess;
  let tlsPort: number;
  let server: IssuedCert;
  let client: IssuedCert;

  beforeAll(async () => {
    server = issueCert(fixtures.ca, fixtures.dir, { name: 'redis-server', ipSans: ['127.0.0.1'], serverAuth: true });
    client = issueCert(fixtures.ca, fixtures.dir, { name: 'redis-client', clientAuth: true });
    tlsPort = await freePort();
    // The plain port is loopback-only, for start-up's ping; the store only ever uses the TLS one.
    tlsRedis = new RedisProcess(await freePort(), [
      '--aclfile', aclFile, '--tls-port', String(tlsPort), '--tls-cert-file', server.certPath, '--tls-key-file', server.keyPath,
      '--tls-ca-cert-file', fixtures.ca.certPath, '--tls-auth-clients', 'yes',
    ]);
    await tlsRedis.start();
  }, 30_000);
  afterAll(() => tlsRedis?.kill());

  const url = () => `rediss://hopguard-sidecar@127.0.0.1:${tlsPort}`;

  it('runs the store with the CA and a client certificate from the redis section', async () => {
    const store = await RedisStore.open(url(), storeOptions(files.sidecar, {
      tlsCaFile: fixtures.ca.certPath, tlsCertFile: client.certPath, tlsKeyFile: client.keyPath,
    }), silentLogger);
    try {
      expect(store.health()).toEqual({ state: 'ok' });
      expect(await store.markUsed('over-tls', Date.now() + 60_000)).toBe(true);
      expect(await store.markUsed('over-tls', Date.now() + 60_000)).toBe(false);
    } finally {
      await store.close();
    }
  });

  it('fails closed without the client certificate the server asks for, or without the CA', async () => {
    for (const tls of [{ tlsCaFile: fixtures.ca.certPath }, { tlsCertFile: client.certPath, tlsKeyFile: client.keyPath }]) {
      const store = await RedisStore.open(url(), storeOptions(files.sidecar, { commandTimeoutMs: 250, ...tls }), silentLogger);
      try {
        expect(store.health()).toEqual({ state: 'unavailable' });
        await expect(store.markUsed('refused-tls', Date.now() + 60_000)).rejects.toThrow(/did not record/);
      } finally {
        await store.close();
      }
    }
  });

  it('a sidecar that cannot verify the server logs the TLS error and which setting to check', async () => {
    const file = path.join(fixtures.dir, 'tls-no-ca.yaml');
    writeFileSync(file, `${authzYaml(fixtures)}store: ${url()}
redis:
  password_file: ${files.sidecar}
  tls_cert_file: ${client.certPath}
  tls_key_file: ${client.keyPath}
  command_timeout: 500ms
routes:
  - name: read
    path_prefix: /orders/
`);
    const sidecar = await startSidecar(file);
    try {
      const refused = await sidecar.proc.logEvent('redis_refused');
      expect(refused).toMatchObject({ level: 'error', tls_error: expect.stringMatching(/CERT|ISSUER|SIGNATURE/), check: expect.stringContaining('redis.tls_ca_file') });
      expect(sidecar.proc.stderr()).not.toContain(secret.sidecar);
    } finally {
      await sidecar.stop();
    }
  });
});

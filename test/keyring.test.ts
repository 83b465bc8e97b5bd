import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type { IssuerConfig } from '../src/config/issuer-config.js';
import { rotateOnSchedule } from '../src/issuer/issuer-service.js';
import { Keyring, KeyringError, createKeyFile, keyRetention } from '../src/issuer/keyring.js';
import { silentLogger } from '../src/telemetry/log.js';

const MIN = 60_000;
const retain = (ms: number) => ({ publishedMs: ms, verifiedMs: ms });
let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));
const freshDir = () => { dir = mkdtempSync(path.join(tmpdir(), 'hopguard-keys-')); return dir; };

describe('Keyring', () => {
  it.each(['ES256', 'EdDSA', 'RS256'] as const)('signs with a %s key file, and publishes only its public half', async (alg) => {
    const keys = freshDir();
    await createKeyFile(keys, alg, Date.now());
    const ring = new Keyring(keys, retain(10 * MIN));
    await ring.load();
    const key = ring.signingKey(Date.now());
    expect(key.alg).toBe(alg);
    const token = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey);
    await expect(jwtVerify(token, ring.find(key.kid, alg, Date.now())!.publicKey)).resolves.toBeDefined();
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(key.publicJwk).not.toHaveProperty(member);
    const [file] = readdirSync(keys);
    expect(statSync(path.join(keys, file!)).mode & 0o777).toBe(0o600);
  });

  it('publishes the next key before it signs, and a replaced key until its tokens have expired', async () => {
    const keys = freshDir();
    const t0 = Date.now();
    const first = await createKeyFile(keys, 'ES256', t0);
    const second = await createKeyFile(keys, 'ES256', t0 + 10 * MIN);
    const ring = new Keyring(keys, retain(5 * MIN));
    await ring.load();
    const kids = (now: number) => ring.published(now).map((k) => k.kid);
    expect(ring.signingKey(t0 + MIN).kid).toBe(first);
    expect(kids(t0 + MIN)).toEqual([first, second]);
    expect(ring.signingKey(t0 + 10 * MIN).kid).toBe(second);
    expect(kids(t0 + 14 * MIN)).toEqual([first, second]);
    expect(kids(t0 + 15 * MIN + 1)).toEqual([second]);
    expect(ring.expiredFiles(t0 + 15 * MIN + 1)).toEqual([path.join(keys, `${first}.json`)]);
  });

  it('unpublishes a replaced key after token_ttl + skew, but verifies its refresh tokens until refresh_ttl + skew', async () => {
    const keys = freshDir();
    const t0 = Date.now();
    const first = await createKeyFile(keys, 'ES256', t0);
    const second = await createKeyFile(keys, 'ES256', t0 + MIN);
    const ring = new Keyring(keys, keyRetention({ tokenTtlMs: 5 * MIN, refreshTtlMs: 60 * MIN, clockSkewMs: MIN / 2 }));
    await ring.load();
    const published = (now: number) => ring.published(now).map((k) => k.kid);
    const verifies = (now: number) => ring.find(first, 'ES256', now)?.kid;
    expect(published(t0 + 6.5 * MIN - 1)).toEqual([first, second]);
    expect(published(t0 + 6.5 * MIN)).toEqual([second]);
    expect(verifies(t0 + 6.5 * MIN)).toBe(first);
    expect(ring.expiredFiles(t0 + 6.5 * MIN)).toEqual([]);
    expect(verifies(t0 + 61.5 * MIN - 1)).toBe(first);
    expect(verifies(t0 + 61.5 * MIN)).toBeUndefined();
    expect(ring.expiredFiles(t0 + 61.5 * MIN)).toEqual([path.join(keys, `${first}.json`)]);
  });

  it('keeps a replaced key published for message_ttl only when some client may be sent message tokens', () => {
    const base = { tokenTtlMs: 5 * MIN, refreshTtlMs: 60 * MIN, clockSkewMs: MIN / 2, messageTtlMs: 120 * MIN };
    const client = (messageAudiences: string[]) => ({ messageAudiences }) as IssuerConfig['clients'][number];
    expect(keyRetention({ ...base, clients: [client([])] })).toEqual({ publishedMs: 5.5 * MIN, verifiedMs: 60.5 * MIN });
    expect(keyRetention({ ...base, clients: [client([]), client(['spiffe://t/ns/a/sa/worker'])] }))
      .toEqual({ publishedMs: 120.5 * MIN, verifiedMs: 120.5 * MIN });
  });

  it('refuses a key file that does not parse, naming the file and never its contents', async () => {
    const keys = freshDir();
    await createKeyFile(keys, 'ES256', Date.now());
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(keys, 'broken.json'), '{"kid":"broken","alg":"ES256","not_before":0,"private_jwk":{"kty":"EC","d":"secret-d"}}');
    const ring = new Keyring(keys, retain(MIN));
    const error = await ring.load().then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(KeyringError);
    expect(String(error)).toContain('broken.json');
    expect(String(error)).not.toContain('secret-d');
  });

  it('rotates on a schedule: the next key appears publish_ahead before the current one is due', async () => {
    const keys = freshDir();
    const t0 = Date.now();
    await createKeyFile(keys, 'ES256', t0);
    const ring = new Keyring(keys, retain(5 * MIN));
    await ring.load();
    const config = { keys: { dir: keys, algorithm: 'EdDSA', publishAheadMs: 10 * MIN, rotateEveryMs: 60 * MIN } } as IssuerConfig;
    await rotateOnSchedule(config, ring, () => t0 + 49 * MIN, silentLogger);
    expect(readdirSync(keys)).toHaveLength(1);
    await rotateOnSchedule(config, ring, () => t0 + 50 * MIN, silentLogger);
    expect(readdirSync(keys)).toHaveLength(2);
    expect(ring.newestNotBefore()).toBe(t0 + 60 * MIN);
    expect(ring.published(t0 + 50 * MIN).map((k) => k.alg)).toEqual(['ES256', 'EdDSA']);
  });
});

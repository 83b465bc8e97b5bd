import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { FILE_KINDS, readBoundedFile } from '../schema/bounded-read.js';
import type { IssuerConfig, SigningAlgorithm } from '../config/issuer-config.js';

/**
 * The issuer's signing keys, one JSON file each in `keys.dir` (a plain directory or a
 * mounted Kubernetes Secret). A key's life:
 *
 *   created ──publish_ahead──▶ signs (not_before) ──replaced──▶ retired ──token_ttl+skew──▶ unpublished
 *                                                                 ──refresh_ttl+skew──▶ deleted
 *
 * A new key is in the JWKS `publish_ahead` before it signs, so every sidecar has it before
 * the first token; a replaced key stays in the JWKS until every access token it signed has
 * expired, and no longer: a key replaced because it leaked is trusted by sidecars for
 * token_ttl, not for a refresh token's life. The issuer alone keeps verifying the refresh
 * tokens it signed until those expire. `hopguard keys revoke` deletes a key's file: gone at once.
 */

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'];

interface KeyFile {
  kid: string;
  alg: SigningAlgorithm;
  /** Epoch ms from which this key signs. */
  not_before: number;
  private_jwk: JWK;
}

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  notBefore: number;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** With kid, alg and use: what the JWKS publishes. */
  publicJwk: JWK;
  file: string;
}

/** How long a replaced key is kept, from the moment its successor signs. */
export interface KeyRetention {
  /** In the JWKS: while access tokens it signed may be alive. */
  publishedMs: number;
  /** For the issuer's own verification: while refresh tokens it signed may be presented. */
  verifiedMs: number;
}

export function keyRetention(
  config: Pick<IssuerConfig, 'tokenTtlMs' | 'refreshTtlMs' | 'clockSkewMs'> & Partial<Pick<IssuerConfig, 'messageTtlMs' | 'clients'>>,
): KeyRetention {
  // A message token is verified by its consumer until it expires, like an access token by its
  // callee; only clients with message_audiences get one, so without them message_ttl keeps nothing.
  const mintsMessages = config.clients?.some((client) => client.messageAudiences.length > 0) ?? false;
  const signedTtlMs = Math.max(config.tokenTtlMs, mintsMessages ? (config.messageTtlMs ?? 0) : 0);
  return {
    publishedMs: signedTtlMs + config.clockSkewMs,
    verifiedMs: Math.max(signedTtlMs, config.refreshTtlMs) + config.clockSkewMs,
  };
}

export class KeyringError extends Error {
  readonly code = 'keyring_error';
}

export class Keyring {
  /** Bumped when the set of keys on disk changes. */
  generation = 0;
  private keys: SigningKey[] = [];
  private fingerprint = '';

  constructor(readonly dir: string, private readonly retention: KeyRetention) {}

  /** (Re)reads the key directory; a file that does not parse is an error, never skipped silently. */
  async load(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.json')).sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A new issuer's directory may not exist yet: it has no keys, and the first is made there.
      if (code !== 'ENOENT') throw new KeyringError(`cannot read the key directory ${this.dir} (${code ?? 'error'})`);
      names = [];
    }
    const fingerprint = names.join('\n');
    if (fingerprint === this.fingerprint) return;
    const keys = await Promise.all(names.map((name) => readKey(path.join(this.dir, name))));
    this.keys = keys.sort((a, b) => a.notBefore - b.notBefore);
    this.fingerprint = fingerprint;
    this.generation++;
  }

  /** The key that signs now: the newest whose not_before has passed. */
  signingKey(now: number): SigningKey {
    const active = this.active(now);
    if (!active) throw new KeyringError(`no signing key is active in ${this.dir}: run "hopguard keys rotate --now"`);
    return active;
  }

  signsNow(key: SigningKey, now: number): boolean {
    return this.active(now) === key;
  }

  /** What the JWKS lists: next keys, the active key, and retired keys whose access tokens may still be alive. */
  published(now: number): SigningKey[] {
    return this.retainedFor(this.retention.publishedMs, now);
  }

  /**
   * A key by kid and alg for verifying tokens this issuer signed itself: the published keys
   * and, past publication, retired keys whose refresh tokens may still be presented. An access
   * token signed by a key no longer published has expired, so only refresh tokens gain.
   */
  find(kid: string | undefined, alg: string, now: number): SigningKey | undefined {
    return this.retainedFor(this.retention.verifiedMs, now).find((k) => k.kid === kid && k.alg === alg);
  }

  /** Any key on disk by kid, whatever its state. */
  byKid(kid: string): SigningKey | undefined {
    return this.keys.find((k) => k.kid === kid);
  }

  /** The newest key's not_before, or undefined without keys: what a rotation schedule looks at. */
  newestNotBefore(): number | undefined {
    return this.keys.at(-1)?.notBefore;
  }

  /** Key files nothing needs any more, not even a refresh token: safe to delete. */
  expiredFiles(now: number): string[] {
    const live = new Set(this.retainedFor(this.retention.verifiedMs, now));
    return this.keys.filter((k) => !live.has(k)).map((k) => k.file);
  }

  private active(now: number): SigningKey | undefined {
    return this.keys.filter((k) => k.notBefore <= now).at(-1);
  }

  /** Every key but those replaced by a signing successor more than `ms` ago. */
  private retainedFor(ms: number, now: number): SigningKey[] {
    return this.keys.filter((_key, i) => {
      const successor = this.keys.slice(i + 1).find((k) => k.notBefore <= now);
      return successor === undefined || successor.notBefore + ms > now;
    });
  }
}

/** Writes a new key that signs from `notBefore`; returns its kid. Never prints key material. */
export async function createKeyFile(dir: string, alg: SigningAlgorithm, notBefore: number): Promise<string> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const stamp = new Date(notBefore).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const kid = `${stamp}-${randomBytes(4).toString('hex')}`;
  const file: KeyFile = { kid, alg, not_before: notBefore, private_jwk: await exportJWK(privateKey) };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Write then rename: a reader never sees half a key.
  const tmp = path.join(dir, `.${kid}.tmp`);
  writeFileSync(tmp, JSON.stringify(file), { mode: 0o600 });
  renameSync(tmp, path.join(dir, `${kid}.json`));
  return kid;
}

export function deleteKeyFiles(files: string[]): void {
  for (const file of files) rmSync(file, { force: true });
}

async function readKey(file: string): Promise<SigningKey> {
  let text: string;
  try {
    text = readBoundedFile(file, FILE_KINDS.key).toString('utf8');
  } catch (err) {
    throw new KeyringError(`key file ${path.basename(file)}: ${(err as Error).message}`);
  }
  let parsed: KeyFile;
  try {
    parsed = JSON.parse(text) as KeyFile;
  } catch {
    throw new KeyringError(`key file ${path.basename(file)} is not valid JSON`);
  }
  const { kid, alg, not_before: notBefore, private_jwk: privateJwk } = parsed;
  if (typeof kid !== 'string' || typeof alg !== 'string' || typeof notBefore !== 'number' || typeof privateJwk !== 'object') {
    throw new KeyringError(`key file ${path.basename(file)} lacks kid, alg, not_before or private_jwk`);
  }
  try {
    const publicMembers = Object.fromEntries(Object.entries(privateJwk).filter(([k]) => !PRIVATE_MEMBERS.includes(k) && k !== 'key_ops' && k !== 'ext'));
    const publicJwk: JWK = { ...publicMembers, kid, alg, use: 'sig' };
    return {
      kid,
      alg,
      notBefore,
      privateKey: (await importJWK(privateJwk, alg)) as CryptoKey,
      publicKey: (await importJWK(publicJwk, alg)) as CryptoKey,
      publicJwk,
      file,
    };
  } catch {
    throw new KeyringError(`key file ${path.basename(file)} does not hold a usable ${alg} private key`);
  }
}

import http from 'node:http';
import https from 'node:https';
import { importJWK } from 'jose';
import { FILE_KINDS, readBoundedFile } from '../schema/bounded-read.js';
import type { Algorithm } from '../vocabulary/algorithms.js';
import type { IssuerKeys } from './issuer-keys.js';
import { keyFitsAlgorithm } from './jws-signature.js';
import { KidRefetch } from './kid-refetch.js';

export interface IssuerKeysOptions {
  issuer: string;
  /** Exactly one of jwksFile / jwksUri. */
  jwksFile?: string;
  jwksUri?: string;
  algorithms: Algorithm[];
  refreshIntervalMs: number;
  refetchIntervalMs: number;
  /** Connect to last byte: a fetch still going at this point is aborted. */
  fetchTimeoutMs: number;
  /** How long a check waits on a refetch for its unknown kid; the fetch goes on after it. */
  checkWaitMs: number;
  /** PEM bundle trusted for an https jwksUri (a private mesh CA, `jwks_ca_file`); the system roots otherwise. */
  ca?: Buffer;
  /** Called after every load attempt (for metrics and logs); must not throw. */
  onFetch?: (outcome: 'ok' | 'error', detail?: string) => void;
  now?: () => number;
}

/** start() failed: the issuer's first key set could not be loaded. */
export class JwksLoadError extends Error {
  constructor(readonly issuer: string, readonly source: string, readonly reason: string) {
    super(`cannot load the JWKS of issuer ${issuer} from ${source}: ${reason}`);
    this.name = 'JwksLoadError';
  }
}

/** A JWKS bigger than this is refused: real ones are a few KB. */
const MAX_JWKS_BYTES = FILE_KINDS.jwks.limit;

/** At most one fetch per issuer this often, whatever kids tokens carry (never longer than refetch_interval). */
const FETCH_FLOOR_MS = 1000;

/** Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

const PRIVATE_KEY_MATERIAL = 'JWKS contains private key material';

type KeyType = { kty: 'EC'; crv: 'P-256' | 'P-384' | 'P-521' } | { kty: 'OKP'; crv: 'Ed25519' } | { kty: 'RSA' };

/** The key type each algorithm needs, so an ES256 key is never tried as RS256 (or the reverse). */
const KEY_TYPE_FOR: Record<Algorithm, KeyType> = {
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  ES512: { kty: 'EC', crv: 'P-521' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  Ed25519: { kty: 'OKP', crv: 'Ed25519' },
  RS256: { kty: 'RSA' }, RS384: { kty: 'RSA' }, RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' }, PS384: { kty: 'RSA' }, PS512: { kty: 'RSA' },
};

/** Only the public members, so nothing else from the document reaches importJWK. */
type PublicJwk =
  | { kty: 'EC'; crv: string; x: string; y: string }
  | { kty: 'OKP'; crv: string; x: string }
  | { kty: 'RSA'; n: string; e: string };

interface JwksKey {
  kid?: string;
  alg?: string;
  jwk: PublicJwk;
  /** Imported lazily, once per algorithm it is used with. */
  imported: Map<Algorithm, Promise<CryptoKey | undefined>>;
}

interface Fetched {
  text: string;
  /** Cache-Control max-age of the response, in ms. */
  maxAgeMs?: number;
}

interface KeySet {
  keys: JwksKey[];
  /** Canonical JSON of the public keys: equal strings mean an unchanged set. */
  canonical: string;
  /** Some key imports, with an allowed algorithm that fits it: a token could verify. */
  usable: boolean;
}

export function createIssuerKeys(opts: IssuerKeysOptions): IssuerKeys {
  const now = opts.now ?? Date.now;
  const allowed = new Set<Algorithm>(opts.algorithms);
  const source = describeSource(opts);
  const file = opts.jwksFile;
  const fetchText = file !== undefined
    ? async (): Promise<Fetched> => ({ text: readBoundedFile(file, FILE_KINDS.jwks).toString('utf8') })
    : () => fetchJwks(source, opts.fetchTimeoutMs, opts.ca);

  let current: KeySet | undefined;
  let generation = 0;
  let lastAttempt = -Infinity;
  let inFlight: Promise<string | undefined> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  const refetch = new KidRefetch({
    intervalMs: opts.refetchIntervalMs,
    floorMs: Math.min(FETCH_FLOOR_MS, opts.refetchIntervalMs),
    now,
    load,
    inFlight: () => inFlight,
    lastStart: () => lastAttempt,
  });

  /** One load at a time; resolves the failure reason, or undefined on success. */
  function load(): Promise<string | undefined> {
    inFlight ??= attempt().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  }

  /** The next background refresh: when the server's max-age says, within [refetch, refresh] interval. */
  function scheduleRefresh(maxAgeMs: number | undefined): void {
    if (!started) return;
    clearTimeout(timer);
    const delay = Math.min(opts.refreshIntervalMs, Math.max(opts.refetchIntervalMs, maxAgeMs ?? opts.refreshIntervalMs));
    timer = setTimeout(() => void load(), delay);
    timer.unref();
  }

  async function attempt(): Promise<string | undefined> {
    lastAttempt = now();
    try {
      const fetched = await fetchText();
      scheduleRefresh(fetched.maxAgeMs);
      const keys = parseJwks(fetched.text);
      const canonical = JSON.stringify(keys.map(canonicalKey).sort());
      if (canonical !== current?.canonical) {
        current = { keys, canonical, usable: await anyUsable(keys) };
        generation++;
      }
      opts.onFetch?.('ok');
      return undefined;
    } catch (err) {
      // The last good key set stays in place.
      const reason = describeError(err);
      scheduleRefresh(undefined);
      opts.onFetch?.('error', reason);
      return reason;
    }
  }

  function candidates(kid: string | undefined, alg: Algorithm): JwksKey[] {
    return (current?.keys ?? []).filter((key) => (kid === undefined || key.kid === kid) && fitsType(key, alg));
  }

  async function anyUsable(keys: JwksKey[]): Promise<boolean> {
    const tries = keys.flatMap((key) => [...allowed].filter((alg) => fitsType(key, alg)).map(async (alg) => {
      const imported = await importFor(key, alg);
      return imported !== undefined && keyFitsAlgorithm(imported, alg);
    }));
    return (await Promise.all(tries)).includes(true);
  }

  function importFor(key: JwksKey, alg: Algorithm): Promise<CryptoKey | undefined> {
    let imported = key.imported.get(alg);
    if (!imported) {
      // A key WebCrypto refuses (a point off the curve, say) is no key at all.
      imported = importJWK(key.jwk, alg).catch(() => undefined);
      key.imported.set(alg, imported);
    }
    return imported;
  }

  return {
    async resolve(kid, alg) {
      if (!allowed.has(alg)) return undefined;
      let found = candidates(kid, alg);
      if (found.length === 0) {
        // A new kid usually means the issuer rotated: look again (kid-refetch.ts says when),
        // but answer within the check wait, well before Envoy gives up; the fetch goes on.
        const fetched = refetch.request(kid);
        if (!fetched) return undefined;
        await withinMs(fetched, opts.checkWaitMs);
        found = candidates(kid, alg);
      }
      // Several fitting keys for a kid-less token (or a duplicated kid) are ambiguous.
      const [only] = found;
      return found.length === 1 && only ? importFor(only, alg) : undefined;
    },
    get loaded() {
      return current !== undefined;
    },
    get usable() {
      return current?.usable === true;
    },
    get generation() {
      return generation;
    },
    async start() {
      if (started) return;
      started = true;
      const reason = await load();
      if (reason !== undefined) {
        this.stop();
        throw new JwksLoadError(opts.issuer, source, reason);
      }
    },
    stop() {
      started = false;
      clearTimeout(timer);
      timer = undefined;
      refetch.stop();
    },
  };
}

/** The key's type (and curve) is the one `alg` needs, and its own `alg`, if any, is `alg`. */
function fitsType(key: JwksKey, alg: Algorithm): boolean {
  const want = KEY_TYPE_FOR[alg];
  return (key.alg === undefined || key.alg === alg)
    && key.jwk.kty === want.kty
    && (!('crv' in want) || ('crv' in key.jwk && key.jwk.crv === want.crv));
}

/** Waits for `promise`, but no longer than `ms`. */
async function withinMs(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    await Promise.race([promise, elapsed]);
  } finally {
    clearTimeout(timer);
  }
}

/** The file path, or the URL without any userinfo; fit for logs. */
function describeSource(opts: IssuerKeysOptions): string {
  if ((opts.jwksFile === undefined) === (opts.jwksUri === undefined)) {
    throw new TypeError(`issuer ${opts.issuer}: exactly one of jwksFile and jwksUri must be set`);
  }
  if (opts.jwksFile !== undefined) return opts.jwksFile;
  const url = new URL(opts.jwksUri as string);
  // Config validation already enforces this; a key source is too important not to recheck.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    throw new TypeError(`issuer ${opts.issuer}: jwksUri must be https (http only on loopback)`);
  }
  url.username = '';
  url.password = '';
  return url.href;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * One GET of a JWKS URL with node's http(s): no redirects (a key source must not move), one
 * deadline for the whole exchange (connect to last byte), a size cap, and the mesh CA when
 * `ca` holds one. Returns the body and the response's max-age, which decides when to look again.
 */
function fetchJwks(url: string, timeoutMs: number, ca: Buffer | undefined): Promise<Fetched> {
  const get = url.startsWith('https:') ? https.get : http.get;
  return new Promise((resolve, reject) => {
    // Not the socket `timeout` option: that restarts with every byte, so a server dribbling one
    // byte at a time could hold a fetch (and the checks waiting on it) for ever.
    const deadline = setTimeout(() => fail(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(deadline);
      reject(err);
      req.destroy();
    };
    // A connection of its own (agent: false): fetches are rare, and a pooled socket the server
    // has since closed would fail the fetch.
    const options = { agent: false, headers: { accept: 'application/jwk-set+json, application/json' }, ...(ca && { ca }) };
    const req = get(url, options, (res) => {
      if (res.statusCode !== 200) {
        const status = res.statusCode ?? 0;
        fail(new Error(status >= 300 && status < 400 ? `HTTP ${status}: a key source's redirect is not followed` : `HTTP ${status}`));
        return;
      }
      const tooLarge = new Error(`JWKS is larger than ${MAX_JWKS_BYTES} bytes`);
      if (Number(res.headers['content-length'] ?? 0) > MAX_JWKS_BYTES) {
        fail(tooLarge);
        return;
      }
      // Count bytes as they arrive too: Content-Length may be absent or wrong.
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_JWKS_BYTES) fail(tooLarge);
        else chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(deadline);
        resolve({ text: Buffer.concat(chunks).toString('utf8'), maxAgeMs: maxAge(res.headers['cache-control']) });
      });
      res.on('error', fail);
    });
    req.on('error', fail);
  });
}

function maxAge(cacheControl: string | undefined): number | undefined {
  const match = /(?:^|,)\s*max-age=(\d+)/i.exec(cacheControl ?? '');
  return match ? Number(match[1]) * 1000 : undefined;
}

/**
 * Reads a JWK Set strictly. Keys that cannot verify signatures here are skipped, as
 * RFC 7517 §5 asks; a set holding any private member is refused whole, since it means
 * the issuer published a secret and none of the set can be trusted.
 */
export function parseJwks(text: string): JwksKey[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the input, which could be key material.
    throw new Error('JWKS is not valid JSON');
  }
  if (!isObject(doc) || !Array.isArray(doc.keys)) throw new Error('not a JWKS (expected {"keys": [...]})');
  const entries: unknown[] = doc.keys;
  if (!entries.every(isObject)) throw new Error('JWKS has a key that is not a JSON object');
  if (entries.some((entry) => PRIVATE_MEMBERS.some((member) => member in entry))) {
    throw new Error(PRIVATE_KEY_MATERIAL);
  }
  return entries.flatMap((entry) => {
    const key = toVerificationKey(entry);
    return key ? [key] : [];
  });
}

function toVerificationKey(entry: Record<string, unknown>): JwksKey | undefined {
  const { kid, alg, use, key_ops: keyOps } = entry;
  if (use !== undefined && use !== 'sig') return undefined;
  if (keyOps !== undefined && !(Array.isArray(keyOps) && keyOps.includes('verify'))) return undefined;
  if (kid !== undefined && typeof kid !== 'string') return undefined;
  if (alg !== undefined && typeof alg !== 'string') return undefined;
  const jwk = publicMembers(entry);
  if (!jwk) return undefined;
  return { kid, alg, jwk, imported: new Map() };
}

/** Symmetric (`oct`) keys and key types no allowed algorithm uses give undefined. */
function publicMembers(entry: Record<string, unknown>): PublicJwk | undefined {
  const { kty, crv, x, y, n, e } = entry;
  if (kty === 'EC' && (crv === 'P-256' || crv === 'P-384' || crv === 'P-521')
    && typeof x === 'string' && typeof y === 'string') {
    return { kty, crv, x, y };
  }
  if (kty === 'OKP' && crv === 'Ed25519' && typeof x === 'string') return { kty, crv, x };
  if (kty === 'RSA' && typeof n === 'string' && typeof e === 'string') return { kty, n, e };
  return undefined;
}

/** Fixed member order, so JSON.stringify is canonical for equal keys. */
function canonicalKey(key: JwksKey): string {
  const { jwk } = key;
  return JSON.stringify([
    key.kid ?? null, key.alg ?? null, jwk.kty,
    'crv' in jwk ? jwk.crv : null, 'x' in jwk ? jwk.x : null, 'y' in jwk ? jwk.y : null,
    'n' in jwk ? jwk.n : null, 'e' in jwk ? jwk.e : null,
  ]);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Network and file errors only: never the document's content. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause: unknown = err.cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}

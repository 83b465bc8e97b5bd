/**
 * What a one-time mark costs with `store: memory`: bytes per entry (V8 heap plus ArrayBuffers,
 * after a forced GC) for ENTRIES marks of 10-minute tokens, as at 1,000 one-time checks/s, and
 * the time a mark takes.
 *
 *   npm run bench:one-time                     600,000 entries (1,000/s × 10 min)
 *   npm run bench:one-time -- 1000000          another count
 */

import { randomUUID } from 'node:crypto';
import { openStore } from '../src/store/open-store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { fingerprint } from '../src/token/access-token-verifier.js';

const ENTRIES = Number(process.argv[2] ?? 600_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:one-time does)');

function footprint(): { heap: number; buffers: number } {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

const before = footprint();
const store = await openStore({
  store: 'memory', memory: { maxOneTimeEntries: Math.max(ENTRIES, 1_000_000) },
  redis: { keyPrefix: 'unused:', commandTimeoutMs: 250, maxStalenessMs: 30_000, resyncIntervalMs: 10_000 },
}, silentLogger);
const expiresAtMs = Date.now() + 600_000;
const started = performance.now();
// Each fingerprint made as a check makes it, and kept by nothing but the store.
for (let i = 0; i < ENTRIES; i++) {
  if (!await store.markUsed(fingerprint('https://sts.example', randomUUID()), expiresAtMs)) throw new Error('a fresh fingerprint was refused');
}
/** Includes making the fingerprint (a SHA-256), as a check does. */
const markUs = ((performance.now() - started) * 1000) / ENTRIES;
const after = footprint();
const heap = after.heap - before.heap;
const buffers = after.buffers - before.buffers;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
console.log(`${ENTRIES} one-time marks: ${((heap + buffers) / ENTRIES).toFixed(1)} bytes/entry after GC `
  + `(V8 heap ${mb(heap)}, ArrayBuffers ${mb(buffers)}), ${markUs.toFixed(2)} µs/mark, RSS ${mb(process.memoryUsage().rss)}`);
await store.close();

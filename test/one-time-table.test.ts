import { describe, expect, it } from 'vitest';
import { OneTimeTable } from '../src/store/one-time-table.js';

/**
 * The memory store's one-time table against a plain Map doing the same, over random marks,
 * releases, sweeps and time, on tables small enough to fill, grow and wrap around: a live
 * mark is never forgotten, never made twice, and 'full' only when it holds `capacity` marks.
 */

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('OneTimeTable', () => {
  it.each([[1, 50], [2, 700], [3, 3000], [4, 5000]])('agrees with a Map (seed %i, capacity %i)', (seed, capacity) => {
    const next = random(seed);
    const table = new OneTimeTable(capacity);
    /** fingerprint → [until (ms), claim] */
    const model = new Map<string, [number, number]>();
    const pool = Array.from({ length: capacity * 2 }, (_, i) => `fp-${seed}-${i}`);
    let now = 1_700_000_000_000;
    const live = () => [...model.values()].filter(([until]) => until > now).length;
    for (let op = 0; op < 40_000; op++) {
      const fp = pool[Math.floor(next() * pool.length)]!;
      const roll = next();
      if (roll < 0.7) {
        const expiresAtMs = now + 1000 + Math.floor(next() * 20_000);
        const wasLive = (model.get(fp)?.[0] ?? 0) > now;
        const { outcome, claim } = table.mark(fp, expiresAtMs, now);
        if (wasLive) expect(outcome).toBe('used');
        else if (outcome === 'full') expect(table.size).toBe(capacity);
        else {
          expect(outcome).toBe('first');
          model.set(fp, [Math.ceil(expiresAtMs / 1000) * 1000, claim]);
        }
      } else if (roll < 0.8) {
        const held = model.get(fp);
        // Half the time with the mark's own claim, half with a stale one that must change nothing.
        const own = next() < 0.5;
        table.release(fp, own && held ? held[1] : (held?.[1] ?? 0) + 1);
        if (own && held) model.delete(fp);
      } else if (roll < 0.82) {
        table.sweep(now);
        for (const [key, [until]] of model) if (until <= now) model.delete(key);
        expect(table.size).toBe(model.size);
      } else {
        now += Math.floor(next() * 400);
      }
      expect(live()).toBeLessThanOrEqual(capacity);
    }
    // Every mark the model holds live, the table holds.
    for (const [fp, [until]] of model) if (until > now) expect(table.mark(fp, now + 1000, now).outcome).toBe('used');
  });

  it('grows no further than the capacity needs: 24 bytes a slot, at most 3 of 4 slots taken', () => {
    const table = new OneTimeTable(3000);
    for (let i = 0; i < 3000; i++) expect(table.mark(`fp-${i}`, 10_000_000, 0).outcome).toBe('first');
    expect(table.mark('one-more', 10_000_000, 0).outcome).toBe('full');
    expect(table.bytes).toBe(4096 * 24);
  });
});

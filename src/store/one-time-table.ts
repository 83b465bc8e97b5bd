import { hash } from 'node:crypto';

/** Slots per entry kept free, so a probe stays short: at most 3 of 4 slots are taken. */
const MAX_LOAD = 0.75;
const FIRST_SLOTS = 1024;
/** Per slot: a 16-byte key (4 words) and 2 words of meta (expiry in epoch seconds, 0 = empty; claim). */
const KEY_WORDS = 4;
const META_WORDS = 2;
export const BYTES_PER_SLOT = 4 * (KEY_WORDS + META_WORDS);

export type MarkOutcome = 'first' | 'used' | 'full';

/**
 * The one-time marks of `store: memory`, in typed arrays: 24 bytes a slot, no object per
 * entry, nothing for the garbage collector to trace, and off the V8 heap (it counts in RSS,
 * not against --max-old-space-size). Open addressing with linear probing; a key is the first
 * 128 bits of SHA-256 of the fingerprint. It grows by doubling up to what `capacity` entries
 * need and never past it: when full, expired marks are swept first (at most once a second),
 * and a mark that still does not fit is refused ('full'), never made by forgetting another.
 */
export class OneTimeTable {
  private slots = FIRST_SLOTS;
  private keys = new Uint32Array(FIRST_SLOTS * KEY_WORDS);
  private meta = new Uint32Array(FIRST_SLOTS * META_WORDS);
  private count = 0;
  private nextClaim = 1;
  private lastFullSweepMs = Number.NEGATIVE_INFINITY;
  private readonly key = new Uint32Array(KEY_WORDS);

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.count;
  }

  /** Bytes the table holds now. */
  get bytes(): number {
    return this.slots * BYTES_PER_SLOT;
  }

  /** Records the first use until `expiresAtMs`; the claim (for release) is the table's own number for this mark. */
  mark(fingerprint: string, expiresAtMs: number, nowMs: number): { outcome: MarkOutcome; claim: number } {
    this.keyOf(fingerprint);
    const found = this.find();
    const untilS = Math.ceil(expiresAtMs / 1000);
    if (found >= 0) {
      if (this.live(found, nowMs)) return { outcome: 'used', claim: 0 };
      return { outcome: 'first', claim: this.write(found, untilS) };
    }
    if (this.count >= this.capacity) {
      if (nowMs - this.lastFullSweepMs < 1000) return { outcome: 'full', claim: 0 };
      this.lastFullSweepMs = nowMs;
      this.sweep(nowMs);
      if (this.count >= this.capacity) return { outcome: 'full', claim: 0 };
    }
    if (this.count + 1 > this.slots * MAX_LOAD) this.resize(this.slots * 2, nowMs);
    this.count++;
    return { outcome: 'first', claim: this.write(this.emptySlotFor(), untilS) };
  }

  /** Undoes a mark if it is still the one `claim` made. */
  release(fingerprint: string, claim: number): void {
    this.keyOf(fingerprint);
    const slot = this.find();
    if (slot >= 0 && this.meta[slot * META_WORDS + 1] === claim) this.remove(slot);
  }

  /** Drops every expired mark, in place. */
  sweep(nowMs: number): void {
    // Start past an empty slot, so no run of taken slots wraps around the start of the walk.
    let start = 0;
    while (this.meta[start * META_WORDS] !== 0) start++;
    for (let step = 1; step <= this.slots; step++) {
      const slot = (start + step) & (this.slots - 1);
      // remove() may pull a later mark into this slot: look at it again.
      while (this.meta[slot * META_WORDS] !== 0 && !this.live(slot, nowMs)) this.remove(slot);
    }
  }

  private keyOf(fingerprint: string): void {
    const digest = hash('sha256', fingerprint, 'buffer') as unknown as Buffer;
    for (let i = 0; i < KEY_WORDS; i++) this.key[i] = digest.readUInt32LE(i * 4);
  }

  private home(key0: number): number {
    return key0 & (this.slots - 1);
  }

  /** The slot holding this.key, or -1. */
  private find(): number {
    const mask = this.slots - 1;
    for (let slot = this.home(this.key[0]!); this.meta[slot * META_WORDS] !== 0; slot = (slot + 1) & mask) {
      const k = slot * KEY_WORDS;
      if (this.keys[k] === this.key[0] && this.keys[k + 1] === this.key[1] && this.keys[k + 2] === this.key[2] && this.keys[k + 3] === this.key[3]) return slot;
    }
    return -1;
  }

  private emptySlotFor(): number {
    const mask = this.slots - 1;
    let slot = this.home(this.key[0]!);
    while (this.meta[slot * META_WORDS] !== 0) slot = (slot + 1) & mask;
    return slot;
  }

  private live(slot: number, nowMs: number): boolean {
    return this.meta[slot * META_WORDS]! * 1000 > nowMs;
  }

  private write(slot: number, untilS: number): number {
    this.keys.set(this.key, slot * KEY_WORDS);
    const claim = this.nextClaim;
    this.nextClaim = (this.nextClaim % 0xffffffff) + 1;
    this.meta[slot * META_WORDS] = untilS;
    this.meta[slot * META_WORDS + 1] = claim;
    return claim;
  }

  /** Backward-shift deletion: marks after the hole that may sit in it move up, so no probe ever stops early. */
  private remove(slot: number): void {
    const mask = this.slots - 1;
    let hole = slot;
    for (let next = (hole + 1) & mask; this.meta[next * META_WORDS] !== 0; next = (next + 1) & mask) {
      const home = this.home(this.keys[next * KEY_WORDS]!);
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        this.keys.copyWithin(hole * KEY_WORDS, next * KEY_WORDS, (next + 1) * KEY_WORDS);
        this.meta.copyWithin(hole * META_WORDS, next * META_WORDS, (next + 1) * META_WORDS);
        hole = next;
      }
    }
    this.meta[hole * META_WORDS] = 0;
    this.meta[hole * META_WORDS + 1] = 0;
    this.count--;
  }

  /** Rehashes the live marks into `slots` slots (expired ones are left behind). */
  private resize(slots: number, nowMs: number): void {
    const { keys, meta } = this;
    const old = this.slots;
    this.slots = slots;
    this.keys = new Uint32Array(slots * KEY_WORDS);
    this.meta = new Uint32Array(slots * META_WORDS);
    this.count = 0;
    const saved = Uint32Array.from(this.key);
    for (let slot = 0; slot < old; slot++) {
      const untilS = meta[slot * META_WORDS]!;
      if (untilS === 0 || untilS * 1000 <= nowMs) continue;
      this.key.set(keys.subarray(slot * KEY_WORDS, (slot + 1) * KEY_WORDS));
      const to = this.emptySlotFor();
      this.keys.set(this.key, to * KEY_WORDS);
      this.meta[to * META_WORDS] = untilS;
      this.meta[to * META_WORDS + 1] = meta[slot * META_WORDS + 1]!;
      this.count++;
    }
    this.key.set(saved);
  }
}

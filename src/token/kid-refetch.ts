/** A token's `kid`; undefined for a kid-less token that no key fitted. */
type Kid = string | undefined;

/** Kids remembered as looked for; past this the oldest are forgotten (the floor still bounds fetches). */
const MAX_TRACKED_KIDS = 10_000;

export interface KidRefetchOptions {
  /** A kid looked for is not refetched again within this long. */
  intervalMs: number;
  /** At most one fetch per this long, shared by all kids (and the background refresh). */
  floorMs: number;
  now: () => number;
  /** Starts a load of the key set. */
  load: () => Promise<unknown>;
  /** The load in flight (a background refresh, say), if any. */
  inFlight: () => Promise<unknown> | undefined;
  /** When the last load started. */
  lastStart: () => number;
}

interface Batch {
  kids: Set<Kid>;
  done: Promise<void>;
  finish: () => void;
}

/**
 * When to refetch a JWKS for a kid it lacks. Rate-limited per kid, not per issuer: a kid is
 * looked for by a fetch that starts after it was first asked for, and not again within
 * `intervalMs`, so a kid the issuer just rotated in is found by the next fetch however many
 * made-up kids arrive meanwhile. All kids share one fetch at a time, at most one per `floorMs`,
 * so made-up kids cannot make the sidecar hammer the issuer either.
 */
export class KidRefetch {
  /** Kid -> start of the fetch that looked for it. In insertion order, which is time order. */
  private readonly lookedFor = new Map<Kid, number>();
  /** Kids waiting for the next fetch. */
  private next: Batch | undefined;
  /** Kids the fetch in flight looks for. */
  private current: Batch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private waiting = false;

  constructor(private readonly opts: KidRefetchOptions) {}

  /**
   * Resolves when a fetch that looks for `kid` has finished; undefined when `kid` was looked
   * for within the interval (nothing will be fetched for it).
   */
  request(kid: Kid): Promise<void> | undefined {
    const at = this.lookedFor.get(kid);
    if (at !== undefined && this.opts.now() - at < this.opts.intervalMs) return undefined;
    if (this.current?.kids.has(kid)) return this.current.done;
    const batch = this.next ?? newBatch();
    if (batch.kids.size < MAX_TRACKED_KIDS) batch.kids.add(kid);
    if (!this.next) {
      this.next = batch;
      this.arm();
    }
    return batch.done;
  }

  /** Drops the fetch not yet started; its waiters are answered now. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.next?.finish();
    this.next = undefined;
  }

  /** Starts the next fetch as soon as no load is in flight and the floor allows. */
  private arm(): void {
    if (!this.next || this.timer || this.waiting) return;
    const busy = this.opts.inFlight();
    if (busy) {
      this.waiting = true;
      void busy.finally(() => {
        this.waiting = false;
        this.arm();
      });
      return;
    }
    const delay = this.opts.lastStart() + this.opts.floorMs - this.opts.now();
    if (delay <= 0) {
      this.fire();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.fire();
    }, delay);
    this.timer.unref();
  }

  private fire(): void {
    const batch = this.next;
    if (!batch) return;
    if (this.opts.inFlight()) {
      this.arm();
      return;
    }
    this.next = undefined;
    this.current = batch;
    const startedAt = this.opts.now();
    void this.opts.load().finally(() => {
      for (const kid of batch.kids) this.remember(kid, startedAt);
      this.current = undefined;
      batch.finish();
      this.arm();
    });
  }

  private remember(kid: Kid, at: number): void {
    this.lookedFor.delete(kid);
    if (this.lookedFor.size >= MAX_TRACKED_KIDS) {
      for (const [oldKid, oldAt] of this.lookedFor) {
        if (this.lookedFor.size < MAX_TRACKED_KIDS && at - oldAt < this.opts.intervalMs) break;
        this.lookedFor.delete(oldKid);
      }
    }
    this.lookedFor.set(kid, at);
  }
}

function newBatch(): Batch {
  let finish = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return { kids: new Set(), done, finish };
}

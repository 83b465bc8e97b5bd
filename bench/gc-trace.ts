/**
 * The live heap of a process run with node's --trace-gc: what each full GC (Mark-Compact) left,
 * per isolate (the main thread, the signature worker, cluster workers). RSS moves in steps as
 * V8 grows and returns heap pages; what a full GC leaves grows only with what is kept, so it
 * shows a slow leak that RSS hides under a heap cap.
 */

/** `[pid:isolate]  1234 ms: Mark-Compact 95.3 (130.2) -> 80.1 (128.5) MB, …`: the used heap after. */
const MARK_COMPACT = /^\[(\d+:0x[0-9a-f]+)\]\s+[\d.]+ ms: Mark-Compact\b[^\d]*[\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/;

export class GcTrace {
  private readonly afterFullGc = new Map<string, number>();
  private partial = '';

  /** Feed the process's stdout as it comes. */
  feed(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      const match = MARK_COMPACT.exec(line);
      if (match) this.afterFullGc.set(match[1]!, Number(match[2]));
    }
  }

  /** MB, summed over the isolates: what each one's last full GC left; undefined before the first. */
  liveHeapMb(): number | undefined {
    if (this.afterFullGc.size === 0) return undefined;
    return [...this.afterFullGc.values()].reduce((sum, mb) => sum + mb, 0);
  }
}

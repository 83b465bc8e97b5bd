/** Rejects a promise that has not settled within its deadline. */
export class DeadlineExceededError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'DeadlineExceededError';
  }
}

/**
 * Settles as `work` does, or rejects once `ms` have passed since this call, whichever comes
 * first. The clock starts when the caller asks, not when the client gets round to sending:
 * ioredis starts its commandTimeout only when a command is written, and with auto-pipelining
 * a command queued behind a stalled batch is written only when that batch fails.
 */
export function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError(ms)), ms);
  });
  // A late rejection of `work` is nobody's to handle any more.
  work.catch(() => undefined);
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

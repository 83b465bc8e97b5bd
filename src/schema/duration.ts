/**
 * Durations as written in config and flags: a whole number and one unit, nothing else.
 * No bare numbers, fractions or compound forms ("1h30m"), so a unit is never guessed.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION = /^(\d+)(ms|s|m|h)$/;

/** Node timers fire at once when given more than 2^31-1 ms, so longer durations are refused. */
const MAX_MS = 2 ** 31 - 1;

/** "250ms", "30s", "5m", "1h" → milliseconds; anything else throws. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text);
  if (!match) {
    throw new Error('expected a duration such as "30s" or "5m" (a whole number followed by ms, s, m or h)');
  }
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  if (ms > MAX_MS) throw new Error('duration is too long: at most 596h');
  return ms;
}

import type { LogFields, Logger } from './log.js';

/**
 * A log line that a client can cause (a refused connection, an aborted request): at most one
 * line per `intervalMs` per key, the next one carrying how many were left out since, so a flood
 * shows in the log as a count and not as a flood of lines. The key is the event and its fields,
 * so fields must come from a small fixed set (a reason, a phase), never from the client.
 */
export function throttledLog(log: Logger, level: keyof Logger, intervalMs = 1_000): (event: string, fields: LogFields) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (event, fields) => {
    const key = `${event} ${JSON.stringify(fields)}`;
    const now = Date.now();
    const seen = last.get(key);
    if (seen && now - seen.at < intervalMs) {
      seen.suppressed += 1;
      return;
    }
    log[level](event, { ...fields, ...(seen?.suppressed && { suppressed: seen.suppressed }) });
    last.set(key, { at: now, suppressed: 0 });
  };
}

import type { Logger } from '../telemetry/log.js';

/** Wrong words on the command line: the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function requireOption(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`${flag} is required`);
  return value;
}

/** `--config FILE` (`-c`), which every serving command takes. */
export const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const;

/**
 * Serves until SIGTERM (how Kubernetes stops a pod) or SIGINT, then stops what runs (each
 * server drains its in-flight work) and returns exit code 0.
 */
export async function serveUntilSignal(running: { stop(): Promise<void> }, log: Logger): Promise<number> {
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info('shutdown_requested', { signal });
  await running.stop();
  return 0;
}

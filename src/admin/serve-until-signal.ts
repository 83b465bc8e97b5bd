import type { Logger } from '../telemetry/log.js';

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

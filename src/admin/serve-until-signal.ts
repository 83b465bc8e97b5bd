import type { Logger } from '../telemetry/log.js';

let shutdownRequested: Promise<string> | undefined;

/**
 * Starts listening for SIGTERM (how Kubernetes stops a pod) and SIGINT, once per process. A
 * serving command calls it before it starts anything: a signal with no listener kills the
 * process at once, so one that came during startup (or between "started" being logged and
 * serveUntilSignal) skipped the drain and exited without a code.
 */
export function listenForShutdown(): Promise<string> {
  shutdownRequested ??= new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  return shutdownRequested;
}

/**
 * Serves until SIGTERM or SIGINT (or at once, if one came while starting), then stops what
 * runs (each server drains its in-flight work) and returns exit code 0.
 */
export async function serveUntilSignal(running: { stop(): Promise<void> }, log: Logger): Promise<number> {
  const signal = await listenForShutdown();
  log.info('shutdown_requested', { signal });
  await running.stop();
  return 0;
}

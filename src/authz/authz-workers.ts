import cluster, { type Worker } from 'node:cluster';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startAdminServer, type Readiness } from '../admin/admin-server.js';
import { listenForShutdown, serveUntilSignal } from '../admin/serve-until-signal.js';
import { handleCarriers, type AuthzConfig } from '../config/authz-config.js';
import { newHandleKey } from '../egress/handle.js';
import type { Logger } from '../telemetry/log.js';
import { loadAuthzMaterials } from './authz-materials.js';
import { removeStaleSocket } from './authz-server.js';
import { startAuthz, type RunningAuthz } from './authz-service.js';

/**
 * `hopguard authz` until SIGTERM or SIGINT, then drain and return the exit code.
 *
 * With `workers: N` (N > 1) the process becomes a node:cluster primary: it forks N workers that
 * all serve the one gRPC listener (the primary holds the socket and hands each new connection
 * to the next worker in turn, so Envoy's few long-lived connections are spread across them).
 * Each worker is a whole sidecar with its own verification cache, revocation mirror and store
 * connections. The primary serves the admin listener for all of them: /readyz is ready when
 * every worker is, /metrics carries each worker's series with a `worker` label. On SIGTERM it
 * passes the signal on, every worker drains within shutdown_grace, and it exits once they have.
 */
export async function serveAuthz(config: AuthzConfig, log: Logger, configFile?: string): Promise<number> {
  listenForShutdown();
  // Before anything starts: SIGHUP's default action would end the process.
  let onHangup = () => log.info('reload_deferred', { reason: 'SIGHUP while starting: the config is read as it is now' });
  process.on('SIGHUP', () => onHangup());
  if ((config.workers ?? 1) > 1 && cluster.isPrimary) {
    return runPrimary(config, config.workers!, log, (forward) => { onHangup = forward; });
  }
  const worker = cluster.worker;
  const handleKey = worker && handleCarriers(config) ? await handleKeyFromPrimary() : undefined;
  const running = await startAuthz(worker ? workerConfig(config) : config, {
    log, ...(worker && { worker: worker.id }), ...(handleKey && { handleKey }), ...(configFile !== undefined && { configFile }),
  });
  onHangup = () => void running.reload();
  if (worker) reportToPrimary(running);
  return serveUntilSignal(running, log);
}

// ---------------------------------------------------------------------------------------
// Worker side.

type WorkerMessage =
  | { hopguard: 'handle_key_wanted' }
  | { hopguard: 'started'; grpc: string; egress?: string; messages?: string; messagesGrpc?: string; admin?: string }
  | { hopguard: 'readiness'; readiness: Readiness };

/** Sent by the primary only, over the IPC channel: never in the environment or a log. */
type PrimaryMessage = { hopguard: 'handle_key'; key: string };

/**
 * A handle one worker made must open in every other (Envoy's next connection may land on any),
 * so all seal with the primary's key. Asked for, not pushed: a message sent before the worker
 * listens would be lost.
 */
function handleKeyFromPrimary(): Promise<Buffer> {
  return new Promise((resolve) => {
    const onMessage = (message: PrimaryMessage) => {
      if (message?.hopguard !== 'handle_key') return;
      process.off('message', onMessage);
      resolve(Buffer.from(message.key, 'base64'));
    };
    process.on('message', onMessage);
    process.send?.({ hopguard: 'handle_key_wanted' } satisfies WorkerMessage);
  });
}

/** A worker's admin listener is for the primary only: loopback, a port of its own. */
function workerConfig(config: AuthzConfig): AuthzConfig {
  return { ...config, ...(config.admin && { admin: { host: '127.0.0.1', port: 0 } }) };
}

function reportToPrimary(running: RunningAuthz): void {
  const send = (message: WorkerMessage) => process.send?.(message);
  send({
    hopguard: 'started', grpc: running.grpcAddress,
    ...(running.egressAddress && { egress: running.egressAddress }),
    ...(running.messagesAddress && { messages: running.messagesAddress }),
    ...(running.messagesGrpcAddress && { messagesGrpc: running.messagesGrpcAddress }),
    ...(running.adminAddress && { admin: running.adminAddress }),
  });
  const report = () => send({ hopguard: 'readiness', readiness: running.readiness() });
  report();
  setInterval(report, 1000).unref();
}

// ---------------------------------------------------------------------------------------
// Primary side.

interface WorkerState {
  worker: Worker;
  started: boolean;
  admin?: string;
  readiness?: Readiness;
}

/** `onHangup` installs what SIGHUP does once the workers run: each worker reloads its config itself. */
async function runPrimary(config: AuthzConfig, count: number, log: Logger, onHangup: (forward: () => void) => void): Promise<number> {
  // Refused once here, not once per worker.
  loadAuthzMaterials(config);
  // Workers must not remove the socket file one of them is already serving on.
  for (const listen of [config.listen, config.egress?.listen]) if (listen?.kind === 'unix') removeStaleSocket(listen.path);
  const handleKey = handleCarriers(config) && newHandleKey();
  const states = new Map<number, WorkerState>();
  let stopping = false;
  let grpcAddress = '';
  let egressAddress: string | undefined;
  let messages: { messages?: string; messages_grpc?: string } = {};

  /** Resolves once the worker serves; rejects with its exit code if it dies before. */
  const fork = () => new Promise<void>((resolve, reject) => {
    const worker = cluster.fork();
    const state: WorkerState = { worker, started: false };
    states.set(worker.id, state);
    worker.on('message', (message: WorkerMessage) => {
      if (message?.hopguard === 'handle_key_wanted' && handleKey) {
        worker.send({ hopguard: 'handle_key', key: handleKey.toString('base64') } satisfies PrimaryMessage);
      } else if (message?.hopguard === 'started') {
        state.started = true;
        grpcAddress = message.grpc;
        egressAddress = message.egress;
        messages = { ...(message.messages && { messages: message.messages }), ...(message.messagesGrpc && { messages_grpc: message.messagesGrpc }) };
        if (message.admin !== undefined) state.admin = message.admin;
        resolve();
      } else if (message?.hopguard === 'readiness') {
        state.readiness = message.readiness;
      }
    });
    worker.on('exit', (code, signal) => {
      states.delete(worker.id);
      if (!state.started) return reject(Object.assign(new Error('worker failed to start'), { exitCode: code || 1 }));
      if (stopping) return;
      // A crash is not a reason to stop serving: replace the worker.
      log.error('worker_exited', { worker: worker.id, code: code ?? undefined, signal: signal ?? undefined });
      fork().catch(() => log.error('worker_restart_failed', { worker: worker.id }));
    });
  });

  const stopWorkers = async (): Promise<boolean> => {
    stopping = true;
    const exits = [...states.values()].map(({ worker }) => new Promise<boolean>((resolve) => {
      if (worker.isDead()) return resolve(true);
      worker.once('exit', (code) => resolve(code === 0));
      worker.process.kill('SIGTERM');
    }));
    // Workers drain within shutdown_grace themselves; this only catches a stuck one.
    const killer = setTimeout(() => {
      for (const { worker } of states.values()) worker.process.kill('SIGKILL');
    }, config.shutdownGraceMs + 5_000);
    const clean = (await Promise.all(exits)).every(Boolean);
    clearTimeout(killer);
    return clean;
  };

  try {
    await Promise.all(Array.from({ length: count }, fork));
  } catch (err) {
    await stopWorkers();
    return (err as { exitCode?: number }).exitCode ?? 1;
  }
  const admin = config.admin
    ? await startAdminServer(config.admin.host, config.admin.port, {
      readiness: () => combinedReadiness([...states.values()], count),
      serveMetrics: (_req, res) => void combinedMetrics([...states.values()], res, log),
    })
    : undefined;
  log.info('authz_started', { grpc: grpcAddress, ...(egressAddress && { egress: egressAddress }), ...messages, admin: admin?.address ?? 'off', audience: config.audience, workers: count });
  onHangup(() => {
    for (const { worker } of states.values()) worker.process.kill('SIGHUP');
  });

  let clean = false;
  await serveUntilSignal({
    async stop() {
      clean = await stopWorkers();
      await admin?.close();
      log.info('authz_stopped', { workers: count });
    },
  }, log);
  return clean ? 0 : 1;
}

const STORE_STATES = ['ok', 'degraded', 'unavailable'];

/** Ready when every worker is; the store shown is the worst any worker sees. */
function combinedReadiness(states: WorkerState[], count: number): Readiness {
  const reasons: string[] = [];
  let store = 'ok';
  for (const { worker, readiness } of states) {
    if (!readiness) {
      reasons.push(`worker ${worker.id} is starting`);
      continue;
    }
    reasons.push(...readiness.reasons.map((reason) => `worker ${worker.id}: ${reason}`));
    if (STORE_STATES.indexOf(readiness.store) > STORE_STATES.indexOf(store)) store = readiness.store;
  }
  if (states.length < count) reasons.push(`${count - states.length} of ${count} workers not running`);
  const ready = reasons.length === 0 && states.every((s) => s.readiness?.ready === true);
  return { ready, reasons, store };
}

async function combinedMetrics(states: WorkerState[], res: ServerResponse<IncomingMessage>, log: Logger): Promise<void> {
  try {
    const texts = await Promise.all(states.filter((s) => s.admin !== undefined).map(async (s) => {
      const response = await fetch(`http://${s.admin}/metrics`, { signal: AbortSignal.timeout(5_000) });
      return { worker: String(s.worker.id), text: await response.text() };
    }));
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(mergePrometheusText(texts));
  } catch {
    log.warn('metrics_unavailable', { reason: 'a worker did not answer' });
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'a worker did not answer' }));
  }
}

/**
 * Prometheus text from several workers as one exposition: each family's HELP and TYPE once,
 * then every worker's samples with a `worker` label.
 */
export function mergePrometheusText(texts: { worker: string; text: string }[]): string {
  const families = new Map<string, { meta: string[]; samples: string[] }>();
  const family = (name: string) => {
    let found = families.get(name);
    if (!found) families.set(name, (found = { meta: [], samples: [] }));
    return found;
  };
  for (const { worker, text } of texts) {
    let current = '';
    for (const line of text.split('\n')) {
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        current = meta[2]!;
        const entry = family(current);
        if (!entry.meta.some((m) => m.startsWith(`# ${meta[1]} `))) entry.meta.push(line);
        continue;
      }
      if (line === '' || line.startsWith('#')) continue;
      const name = /^[^{\s]+/.exec(line)![0];
      // Histogram and summary samples (_bucket, _sum, _count) belong to the family above them.
      const entry = family(current !== '' && name.startsWith(current) ? current : name);
      const rest = line.slice(name.length);
      const label = `worker="${worker}"`;
      entry.samples.push(rest.startsWith('{}') ? `${name}{${label}}${rest.slice(2)}`
        : rest.startsWith('{') ? `${name}{${label},${rest.slice(1)}`
        : `${name}{${label}}${rest}`);
    }
  }
  return [...families.values()].map((f) => [...f.meta, ...f.samples].join('\n')).join('\n') + '\n';
}

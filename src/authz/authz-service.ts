import { startAdminServer, type Readiness } from '../admin/admin-server.js';
import { openAuditLog } from '../audit/audit-log.js';
import { validationAudit } from '../audit/validation-audit.js';
import { handleCarriers, type AuthzConfig } from '../config/authz-config.js';
import { HandleSealer, newHandleKey } from '../egress/handle.js';
import { InboundHandles } from '../egress/inbound-handles.js';
import { OpenedHandles } from '../egress/opened-handles.js';
import { outboundAudit, outboundSpans, type AuditOutbound } from '../egress/outbound-telemetry.js';
import { OutboundTokens } from '../egress/outbound-tokens.js';
import { IssuerClient } from '../issuer-client/issuer-client.js';
import { startMessages } from '../messages/messages-service.js';
import { LeakResponse } from '../signals/leak-response.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { checkSpans } from '../telemetry/check-span.js';
import type { Logger } from '../telemetry/log.js';
import { createAuthzMetrics, createEgressMetrics } from '../telemetry/metrics.js';
import { startTelemetry, type Telemetry } from '../telemetry/telemetry.js';
import { DEFAULT_CONNECTION_WINDOW } from '../vocabulary/connection-window.js';
import type { EgressConfig } from '../vocabulary/egress-config.js';
import type { IssuerClientConfig } from '../vocabulary/issuer-client-config.js';
import { loadAuthzMaterials } from './authz-materials.js';
import { authorize } from './authorize.js';
import { buildPolicy, type AuthzPolicy } from './authz-policy.js';
import { ConfigReloader, startRevision, type PolicyHolder } from './config-reload.js';
import { AuthzServer, inboundHandler } from './authz-server.js';
import { outboundHandler } from './outbound-handler.js';

export interface RunningAuthz {
  /** host:port or unix:/path, as bound. */
  grpcAddress: string;
  /** egress.listen as bound, with egress on. */
  egressAddress?: string;
  /** messages.listen (and messages.grpc_listen) as bound, with messages on. */
  messagesAddress?: string;
  messagesGrpcAddress?: string;
  adminAddress?: string;
  readiness(): Readiness;
  /** Reread and apply the config file (SIGHUP); a no-op without one. */
  reload(): Promise<void>;
  /** Graceful: stop accepting, finish in-flight checks (within shutdown_grace), release everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  log: Logger;
  /** Defaults to the store the config names. Tests inject one to share state between servers. */
  store?: Store;
  /** Set in a worker of `workers: N` (its cluster id): the primary reports the start for all of them. */
  worker?: number;
  /** The key handles are sealed with; the primary of `workers: N` makes one for all. Made here otherwise. */
  handleKey?: Buffer;
  /** The file `config` was read from: given, the sidecar reloads it on SIGHUP (reload()) and when it or a file it names changes. */
  configFile?: string;
}

/** Builds every part from a validated config and starts serving. I/O lives here and in the servers. */
export async function startAuthz(config: AuthzConfig, options: StartOptions): Promise<RunningAuthz> {
  const { log } = options;
  // Every file first: a config check-config refuses never gets as far as a listener.
  const materials = loadAuthzMaterials(config);
  const telemetry = await startTelemetry(config.telemetry);
  const metrics = createAuthzMetrics(telemetry.meter);
  const store = options.store ?? await openStore(config, log);
  metrics.observeStore(() => store.health(), () => store.oneTimeCounts());

  const audit = await openAuditLog(config.audit, { log, onRecords: (outcome, count) => metrics.recordAudit(outcome, count) });
  const carriers = handleCarriers(config);
  const sealer = carriers && new HandleSealer(options.handleKey ?? newHandleKey(), config.audience);
  const handles = sealer && new InboundHandles(sealer);
  const leaks = new LeakResponse({
    action: config.leaks ?? 'revoke', store, audit, log, audience: config.audience, clockSkewMs: config.clockSkewMs,
    onLeak: (kind) => metrics.recordLeak(kind),
  });
  const shared = { store, metrics, log, leaks, ...(handles && { handles }) };
  const first = await buildPolicy(config, materials, shared, options.configFile === undefined ? undefined : startRevision(options.configFile, config));
  const holder: PolicyHolder = { current: first };
  // messages verifies with the issuers it started with (messages is restart-only): their keys keep refreshing until stop.
  const retire = (policy: AuthzPolicy) => {
    if (policy !== first || !config.messages) policy.stop();
  };
  const reloader = options.configFile === undefined ? undefined
    : new ConfigReloader(options.configFile, holder, { ...shared, retire, ...(options.worker !== undefined && { worker: options.worker }) });

  const readiness = (): Readiness => {
    const reasons = holder.current.issuers.flatMap(({ keys, config: { issuer } }) => {
      if (!keys.loaded) return [`keys not loaded for issuer ${issuer}`];
      return keys.usable ? [] : [`no usable key for issuer ${issuer}: none has an allowed algorithm, a supported type and imports`];
    });
    const { state } = store.health();
    if (state === 'unavailable') reasons.push('shared state unavailable');
    return { ready: reasons.length === 0, reasons, store: state };
  };

  const connectionWindow = config.http2ConnectionWindow ?? DEFAULT_CONNECTION_WINDOW;
  const server = new AuthzServer({
    handler: inboundHandler({
      // Read once: the whole check runs on this policy, whatever a reload makes current meanwhile.
      authorize: (request) => authorize(request, holder.current.deps),
      metrics,
      startSpan: checkSpans(telemetry.tracing, config.audience),
      audit: validationAudit(audit, config.audit, config.audience),
      ...(carriers && { handles: carriers }),
    }),
    log,
    connectionWindow,
  });
  const grpcAddress = await server.listen(config.listen);
  const messages = config.messages && await startMessages(config.messages, {
    audience: config.audience, issuers: first.issuers, clockSkewMs: config.clockSkewMs, store, telemetry, audit, auditConfig: config.audit, log,
    handles: { header: carriers?.handleHeader ?? 'x-hopguard-handle', baggage: carriers?.handleBaggage ?? false },
    ...(config.issuerClient && { issuerClient: config.issuerClient }), ...(sealer && { sealer }),
  });
  const outbound = config.egress && config.issuerClient && sealer
    ? await startOutbound(config.egress, config.issuerClient, sealer, {
      log, connectionWindow, telemetry, audit: outboundAudit(audit, config.audit.output !== undefined),
    })
    : undefined;
  const servers: AuthzServer<unknown>[] = [server, ...(outbound ? [outbound.server] : [])];
  const admin = config.admin
    ? await startAdminServer(config.admin.host, config.admin.port, { readiness, serveMetrics: telemetry.serveMetrics })
    : undefined;
  const setServing = () => {
    const { ready } = readiness();
    for (const each of servers) each.setServing(ready);
  };
  setServing();
  // gRPC health follows readiness, so Envoy's health checks see what /readyz sees.
  const healthTimer = setInterval(setServing, 1000).unref();
  // A worker of `workers: N` logs as one; the primary logs authz_started/stopped for all.
  const [role, who] = options.worker === undefined ? ['authz', {}] : ['worker', { worker: options.worker }];
  log.info(`${role}_started`, {
    ...who,
    grpc: grpcAddress,
    ...(outbound && { egress: outbound.address }),
    ...(messages && { messages: messages.address, ...(messages.grpcAddress && { messages_grpc: messages.grpcAddress }) }),
    admin: admin?.address ?? 'off',
    audience: config.audience,
    tracing: telemetry.tracing.enabled,
    audit: config.audit.output?.kind ?? 'off',
    ...(holder.current.revision !== undefined && { config_revision: holder.current.revision }),
  });

  return {
    grpcAddress,
    ...(outbound && { egressAddress: outbound.address }),
    ...(messages && { messagesAddress: messages.address, ...(messages.grpcAddress && { messagesGrpcAddress: messages.grpcAddress }) }),
    ...(admin && { adminAddress: admin.address }),
    readiness,
    reload: () => reloader?.reload('sighup') ?? Promise.resolve(),
    async stop() {
      clearInterval(healthTimer);
      await Promise.all(servers.map((each) => each.shutdown(config.shutdownGraceMs)));
      outbound?.tokens.close();
      await messages?.close();
      await admin?.close();
      reloader?.close();
      holder.current.stop();
      if (holder.current !== first) first.stop();
      await store.close();
      // Last, so the final records and spans of the drained checks are kept. A log that
      // could not be closed fails the stop (exit 1), after the spans are sent.
      try {
        await audit.close();
      } finally {
        await telemetry.shutdown();
      }
      log.info(`${role}_stopped`, who);
    },
  };
}

/** The outbound check on egress.listen: tokens from the issuer client, for handles this process sealed. */
async function startOutbound(
  egress: EgressConfig,
  issuerClient: IssuerClientConfig,
  sealer: HandleSealer,
  { log, connectionWindow, telemetry, audit }: { log: Logger; connectionWindow: number; telemetry: Telemetry; audit: AuditOutbound },
) {
  const metrics = createEgressMetrics(telemetry.meter);
  const tokens = new OutboundTokens(new IssuerClient({ ...issuerClient }, log), {
    onIssuerRequest: (grant, outcome) => metrics.recordTokenRequest(grant, outcome),
    onCacheLookup: (hit) => metrics.recordCacheLookup(hit),
  });
  const handler = outboundHandler({ egress, handles: new OpenedHandles(sealer), tokens, metrics, startSpan: outboundSpans(telemetry.tracing), audit });
  const server = new AuthzServer({ handler, log, connectionWindow });
  try {
    return { server, tokens, address: await server.listen(egress.listen) };
  } catch (err) {
    tokens.close();
    throw err;
  }
}

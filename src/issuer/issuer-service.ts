import { startAdminServer } from '../admin/admin-server.js';
import { openAuditLog } from '../audit/audit-log.js';
import type { IssuerConfig } from '../config/issuer-config.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import type { Logger } from '../telemetry/log.js';
import { startTelemetry } from '../telemetry/telemetry.js';
import { SERVER_BOUNDS, type ServerBounds } from '../tls/server-bounds.js';
import { loadIssuerKeys } from '../token/load-issuer-keys.js';
import { IssuerEvents } from './issuer-events.js';
import { startIssuerServer } from './issuer-server.js';
import { Keyring, createKeyFile, deleteKeyFiles, keyRetention } from './keyring.js';
import { RateLimiter } from './rate-limiter.js';
import { issuerKeys, trustSubjectIssuers } from './subject-issuers.js';
import { SsfReceiver } from '../signals/ssf-receiver.js';
import type { Transmitter } from '../signals/security-event-token.js';
import { createIssuerMetrics, type IssuerMetrics } from '../telemetry/issuer-metrics.js';
import { TokenService } from './token-service.js';

export interface RunningIssuer {
  /** https://host:port as bound. */
  url: string;
  adminAddress?: string;
  keyring: Keyring;
  stop(): Promise<void>;
}

export interface IssuerStartOptions {
  log: Logger;
  /** Defaults to the store the config names; the demo shares one with its sidecars. */
  store?: Store;
  now?: () => number;
  /** The design's bounds by default (SERVER_BOUNDS); tests shorten them. */
  serverBounds?: Partial<ServerBounds>;
}

/**
 * The key directory is listed this often (files are reread only when the listing changes), so
 * `hopguard keys rotate` and `keys revoke` take effect within a second, without a restart.
 */
const KEY_RELOAD_MS = 1_000;

export async function startIssuer(config: IssuerConfig, options: IssuerStartOptions): Promise<RunningIssuer> {
  const { log } = options;
  const now = options.now ?? Date.now;
  const subjectIssuers = trustSubjectIssuers(config, log);
  const subjectTrust = subjectIssuers.map((s) => s.trusted);
  const transmitters: Transmitter[] = config.signals.transmitters.map((t, index) => ({
    config: t, keys: issuerKeys(t, config.jwks, `signals.transmitters[${index}]`, log),
  }));
  await Promise.all([...subjectTrust, ...transmitters].map((party) => loadIssuerKeys(party, config.jwks.refetchIntervalMs, log)));
  const keyring = new Keyring(config.keys.dir, keyRetention(config));
  await keyring.load();
  if (keyring.newestNotBefore() === undefined) {
    // The first key of a new issuer signs at once: no sidecar can hold a cached JWKS yet.
    const kid = await createKeyFile(config.keys.dir, config.keys.algorithm, now());
    log.info('signing_key_created', { kid, reason: 'the key directory was empty' });
    await keyring.load();
  }
  let metrics: IssuerMetrics | undefined;
  let signingKid: string | undefined;
  const maintain = async () => {
    try {
      if (config.keys.rotateEveryMs !== undefined) await rotateOnSchedule(config, keyring, now, log);
      await keyring.load();
      const kid = keyring.signingKey(now()).kid;
      if (signingKid !== undefined && kid !== signingKid) metrics?.recordKeyRotation();
      signingKid = kid;
    } catch (err) {
      log.error('key_reload_failed', { error: err instanceof Error ? err.message : 'unknown' });
    }
  };
  await maintain();
  const keyTimer = setInterval(() => void maintain(), KEY_RELOAD_MS).unref();

  const store = options.store ?? await openStore(config, log);
  const telemetry = await startTelemetry(config.telemetry);
  metrics = createIssuerMetrics(telemetry.meter);
  const audit = await openAuditLog(config.audit, { log });
  const tokens = new TokenService(config, keyring, store, now, subjectIssuers);
  const signals = new SsfReceiver({
    transmitters: new Map(transmitters.map((t) => [t.config.issuer, t])),
    store, audit, metrics, now,
    revocationPolicy: () => tokens.revocationPolicy(),
    clockSkewMs: config.clockSkewMs,
    maxAgeMs: config.signals.maxAgeMs,
  });
  const server = await startIssuerServer({
    config, keyring, tokens, log, now,
    bounds: { ...SERVER_BOUNDS, ...options.serverBounds },
    rateLimiter: new RateLimiter(config.rateLimit.perSecond, config.rateLimit.burst, now),
    events: new IssuerEvents(telemetry.tracing.tracer, audit, config.issuer, metrics),
    signals,
  });
  const admin = config.admin
    ? await startAdminServer(config.admin.host, config.admin.port, {
      readiness: () => {
        // Subject issuers' keys are left out: an identity provider's outage fails its exchanges, not the issuer.
        const reasons: string[] = [];
        try {
          keyring.signingKey(now());
        } catch (err) {
          reasons.push((err as Error).message);
        }
        const { state } = store.health();
        return { ready: reasons.length === 0, reasons, store: state };
      },
      serveMetrics: telemetry.serveMetrics,
    })
    : undefined;
  log.info('issuer_started', { url: server.url, issuer: config.issuer, admin: admin?.address ?? 'off' });

  return {
    url: server.url,
    ...(admin && { adminAddress: admin.address }),
    keyring,
    async stop() {
      clearInterval(keyTimer);
      for (const trusted of subjectTrust) trusted.keys.stop();
      for (const transmitter of transmitters) transmitter.keys.stop();
      await server.close();
      await admin?.close();
      await audit.close();
      await telemetry.shutdown();
      if (!options.store) await store.close();
      log.info('issuer_stopped');
    },
  };
}

/** Adds the next key publish_ahead before the active one is due to be replaced, and prunes dead ones. */
export async function rotateOnSchedule(config: IssuerConfig, keyring: Keyring, now: () => number, log: Logger): Promise<void> {
  const newest = keyring.newestNotBefore();
  if (newest !== undefined && newest + config.keys.rotateEveryMs! > now() + config.keys.publishAheadMs) return;
  const kid = await createKeyFile(config.keys.dir, config.keys.algorithm, now() + config.keys.publishAheadMs);
  log.info('signing_key_created', { kid, reason: 'scheduled rotation' });
  await keyring.load();
  deleteKeyFiles(keyring.expiredFiles(now()));
}

/**
 * Reload without restart: on SIGHUP, or when the config file or a file it names changes, the
 * whole config is read and validated again (every file it names, every condition compiled, the
 * issuers' keys loaded) into a new policy, and only then made current, in one assignment between
 * checks. A config that fails anywhere keeps the old policy; every problem is logged, and
 * hopguard_config_reloads_total{outcome} counts both outcomes. Keys that only a restart can apply
 * (the listeners, the store, workers, telemetry, audit, egress, ...) keep their running values
 * and are logged as such.
 */

import { dirname, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { AuthzConfig } from '../config/authz-config.js';
import { parseAuthzConfig, workersOneTimeProblem } from '../config/load-authz-config.js';
import { FILE_KINDS, FileReadError, readBoundedFile } from '../schema/bounded-read.js';
import { ConfigError, type ConfigProblem } from '../schema/config-error.js';
import { JwksLoadError } from '../token/jwks-source.js';
import { loadAuthzMaterials } from './authz-materials.js';
import { buildPolicy, type AuthzPolicy, type SharedParts } from './authz-policy.js';
import { contentRevision, namedFiles } from './config-files.js';
import { watchFiles, type FileWatch } from './config-watch.js';

/** Config keys (as AuthzConfig names them) a running sidecar cannot change, with their YAML names. */
const RESTART_ONLY: [keyof AuthzConfig, string][] = [
  ['listen', 'listen'], ['admin', 'admin'], ['audience', 'audience'], ['store', 'store'], ['redis', 'redis'],
  ['memory', 'memory'], ['workers', 'workers'], ['shutdownGraceMs', 'shutdown_grace'],
  ['http2ConnectionWindow', 'http2_connection_window'], ['telemetry', 'telemetry'], ['audit', 'audit'],
  ['issuerClient', 'issuer_client'], ['egress', 'egress'], ['messages', 'messages'], ['leaks', 'leaks'],
];

export type ReloadTrigger = 'sighup' | 'file';

/** The current policy: what every check starting now reads. */
export interface PolicyHolder {
  current: AuthzPolicy;
}

/** The revision of a config as started from `configFile`. */
export function startRevision(configFile: string, config: AuthzConfig): string {
  return contentRevision(readConfigText(configFile), namedFiles(config));
}

export class ConfigReloader {
  private running: Promise<void> = Promise.resolve();
  private pending = false;
  /** The content last tried, applied or not: the same bytes seen again are not tried again. */
  private lastTried: string;
  private watch: FileWatch | undefined;
  /** The audit signing key the audit log opened with: a restart-only file. */
  private readonly auditKey: string;

  constructor(
    private readonly configFile: string,
    private readonly holder: PolicyHolder,
    private readonly shared: SharedParts & { worker?: number; retire(policy: AuthzPolicy): void },
  ) {
    this.lastTried = holder.current.revision ?? '';
    this.auditKey = auditKeyRevision(holder.current.config);
    this.rewatch(holder.current.config);
  }

  /** One reload at a time; triggers during one make exactly one more after it. */
  reload(trigger: ReloadTrigger): Promise<void> {
    if (this.pending) return this.running;
    this.pending = true;
    this.running = this.running.then(async () => {
      this.pending = false;
      try {
        await this.attempt(trigger);
      } catch (err) {
        // By name only, as check_failed is: the message may quote the file.
        this.failed(trigger, [{ path: '', message: `unexpected ${err instanceof Error ? err.name : 'error'} while reloading` }]);
      }
    });
    return this.running;
  }

  close(): void {
    this.watch?.close();
  }

  private async attempt(trigger: ReloadTrigger): Promise<void> {
    const { log, metrics, worker } = this.shared;
    const who = worker === undefined ? {} : { worker };
    const old = this.holder.current;
    let text: string;
    try {
      text = readConfigText(this.configFile);
    } catch (err) {
      if (!(err instanceof FileReadError)) throw err;
      return this.failed(trigger, [{ path: '', message: `cannot read the config file: ${err.message}` }]);
    }
    let config: AuthzConfig;
    try {
      // Parsed from the bytes hashed: the revision always names what was applied.
      config = parseAuthzConfig(text, { baseDir: dirname(resolve(this.configFile)), source: this.configFile });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // Against the files the running config names: unchanged bytes are not tried twice.
      const revision = contentRevision(text, namedFiles(old.config));
      if (trigger === 'file' && revision === this.lastTried) return;
      this.lastTried = revision;
      return this.failed(trigger, err.problems);
    }
    const revision = contentRevision(text, namedFiles(config));
    if (trigger === 'file' && revision === this.lastTried) return;
    this.lastTried = revision;

    const { effective, kept } = keepRestartOnly(old.config, config);
    if (auditKeyRevision(effective) !== this.auditKey) kept.push('audit.signing_key_file');
    let policy: AuthzPolicy;
    try {
      const problem = workersOneTimeProblem(effective as unknown as Record<string, unknown>);
      if (problem !== undefined) throw new ConfigError([{ path: 'workers', message: `${problem} (workers and store are kept from the start)` }]);
      policy = await buildPolicy(effective, loadAuthzMaterials(effective), this.shared, revision);
    } catch (err) {
      if (err instanceof ConfigError) return this.failed(trigger, err.problems);
      if (err instanceof JwksLoadError) return this.failed(trigger, [{ path: `issuers (${err.issuer})`, message: err.reason }]);
      throw err;
    }
    // The swap: checks that started before it finish on `old`, every later one runs on `policy`.
    this.holder.current = policy;
    this.shared.retire(old);
    this.rewatch(effective);
    metrics.recordConfigReload('ok');
    if (kept.length > 0) log.warn('config_restart_required', { ...who, keys: kept.join(','), detail: 'changed in the file; kept as started until a restart' });
    log.info('config_reloaded', { ...who, trigger, revision, routes: effective.routes.length });
  }

  private failed(trigger: ReloadTrigger, problems: ConfigProblem[]): void {
    const { log, metrics, worker } = this.shared;
    const who = worker === undefined ? {} : { worker };
    metrics.recordConfigReload('failed');
    for (const { path, message } of problems) log.error('config_reload_problem', { ...who, key: path, problem: message });
    log.error('config_reload_failed', { ...who, trigger, problems: problems.length, revision: this.holder.current.revision, detail: 'the running config is kept' });
  }

  private rewatch(config: AuthzConfig): void {
    this.watch?.close();
    const paths = [this.configFile, ...namedFiles(config).map((file) => file.path)];
    this.watch = watchFiles(paths, () => void this.reload('file').catch(() => undefined), this.shared.log);
  }
}

/** The new config with every restart-only key as the running one has it, and the YAML names of those that differ. */
function keepRestartOnly(running: AuthzConfig, next: AuthzConfig): { effective: AuthzConfig; kept: string[] } {
  const effective: Record<string, unknown> = { ...next };
  const kept: string[] = [];
  for (const [key, yamlName] of RESTART_ONLY) {
    if (!isDeepStrictEqual(running[key], next[key])) kept.push(yamlName);
    if (running[key] === undefined) delete effective[key];
    else effective[key] = running[key];
  }
  return { effective: effective as unknown as AuthzConfig, kept };
}

function auditKeyRevision(config: AuthzConfig): string {
  return contentRevision('', namedFiles(config).filter((file) => file.key === 'audit.signing_key_file'));
}

function readConfigText(path: string): string {
  return readBoundedFile(path, FILE_KINDS.config).toString('utf8');
}

import { parseArgs } from 'node:util';
import { listenForShutdown, serveUntilSignal } from '../admin/serve-until-signal.js';
import { FILE_KINDS, readBoundedStdin, readConfiguredFile } from '../schema/bounded-read.js';
import { loadEnvoyTemplate } from '../inject/envoy-bootstrap.js';
import { defaultInjectConfig, injectionSettings, loadInjectConfigFile } from '../inject/inject-config.js';
import { injectManifests } from '../inject/offline-inject.js';
import { InjectionError } from '../inject/sidecar-injection.js';
import { startWebhook } from '../inject/webhook-server.js';
import { openAuditLog } from '../audit/audit-log.js';
import { Decommission } from '../signals/decommission.js';
import { openRevocationWriter } from '../store/open-store.js';
import { createLogger } from '../telemetry/log.js';
import { CONFIG_OPTION, UsageError, requireOption } from './command-line.js';

/**
 * `hopguard inject --config FILE`: serve the mutating admission webhook until SIGTERM or SIGINT.
 * `hopguard inject -f FILE [--config FILE] [--namespace NS]`: inject manifests offline and
 * print them (FILE "-" reads stdin); exit 2 when an annotated workload cannot be injected.
 */
export async function injectCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...CONFIG_OPTION,
      filename: { type: 'string', short: 'f' },
      namespace: { type: 'string', short: 'n' },
    },
  });
  if (values.filename !== undefined) {
    const config = values.config !== undefined ? loadInjectConfigFile(values.config) : defaultInjectConfig();
    const settingsFor = injectionSettings(config, loadEnvoyTemplate(config.envoyTemplate));
    const input = (values.filename === '-' ? readBoundedStdin(FILE_KINDS.manifests) : readConfiguredFile(values.filename, '-f', FILE_KINDS.manifests)).toString('utf8');
    let result;
    try {
      result = injectManifests(input, settingsFor, values.namespace ?? 'default');
    } catch (err) {
      if (err instanceof InjectionError) throw new UsageError(err.message);
      throw err;
    }
    for (const note of result.notes) process.stderr.write(`hopguard inject: ${note}\n`);
    process.stdout.write(result.yaml);
    return 0;
  }
  if (values.namespace !== undefined) throw new UsageError('--namespace applies only with -f FILE');
  const config = loadInjectConfigFile(requireOption(values.config, '--config FILE (or -f FILE to inject offline)'));
  const { tls } = config;
  if (tls === undefined) throw new UsageError(`${values.config}: tls (cert, key) is required to serve the webhook`);
  const log = createLogger();
  listenForShutdown();
  // POST /decommission revokes in the store the config names, audited where its audit: says.
  const store = await openRevocationWriter(config, log);
  const audit = await openAuditLog(config.audit, { log });
  const decommission = new Decommission({ trustDomain: config.trustDomain, store, audit, log, revocationTtlMs: config.revocationTtlMs });
  const webhook = await startWebhook({ ...config, tls }, injectionSettings(config, loadEnvoyTemplate(config.envoyTemplate)), log, { decommission });
  return serveUntilSignal({
    ...webhook,
    async stop() {
      await webhook.stop();
      await store.close();
      await audit.close();
    },
  }, log);
}

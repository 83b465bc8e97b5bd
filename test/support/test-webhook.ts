import type { IssuedCert } from '../../src/devkit/pki.js';
import { loadEnvoyTemplate } from '../../src/inject/envoy-bootstrap.js';
import { defaultInjectConfig, injectionSettings } from '../../src/inject/inject-config.js';
import { startWebhook, type RunningWebhook, type WebhookOptions } from '../../src/inject/webhook-server.js';
import { silentLogger, type Logger } from '../../src/telemetry/log.js';

/** The injector webhook with the default settings, serving `cert` on 127.0.0.1. */
export function startTestWebhook(
  cert: Pick<IssuedCert, 'certPath' | 'keyPath'>,
  options: WebhookOptions & { log?: Logger } = {},
): Promise<RunningWebhook> {
  const config = defaultInjectConfig();
  return startWebhook(
    { ...config, listen: { host: '127.0.0.1', port: 0 }, tls: { certFile: cert.certPath, keyFile: cert.keyPath } },
    injectionSettings(config, loadEnvoyTemplate(config.envoyTemplate)), options.log ?? silentLogger, options,
  );
}

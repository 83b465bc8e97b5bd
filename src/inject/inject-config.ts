/**
 * `hopguard inject --config FILE`: the sidecar injector's settings, with the conventions of the
 * other config files (snake_case YAML, unknown keys refused, every problem named by its path).
 * Every key has a default, so `hopguard inject -f` works without a file.
 */

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  expected, loadConfigFile, nonEmptyString, onObjects, parseConfig, parseHostPort, parsedString, redisTlsNeedsRediss,
} from '../schema/config-schema.js';
import { decommissionConfig, decommissionFields, type DecommissionConfig } from './decommission-config.js';
import type { EnvoyTemplate } from './envoy-bootstrap.js';
import type { InjectionMode, InjectionSettings, SidecarLayout } from './sidecar-injection.js';

export type OnError = 'deny' | 'allow';

export interface InjectConfig extends DecommissionConfig {
  listen: { host: string; port: number };
  /** Absent in offline use; serving without it is a usage error. */
  tls?: { certFile: string; keyFile: string };
  trustDomain: string;
  /**
   * How a review the injector cannot process is answered: `deny` refuses the pod (keep it equal to
   * the MutatingWebhookConfiguration's failurePolicy: Fail), `allow` admits it without sidecars.
   */
  onError: OnError;
  /** `hopguard`: Envoy and hopguard authz; `istio`: hopguard authz only, beside Istio's proxy. */
  mode: InjectionMode;
  /** `native` (Kubernetes 1.29+): init containers with restartPolicy: Always; `classic`: containers. */
  sidecars: SidecarLayout;
  envoyTemplate: string;
  images: { envoy: string; hopguard: string };
}

/** The package's own envoy/sidecar.yaml (dist/inject/ → envoy/). */
const DEFAULT_ENVOY_TEMPLATE = fileURLToPath(new URL('../../envoy/sidecar.yaml', import.meta.url));

export const DEFAULT_IMAGES = {
  envoy: 'envoyproxy/envoy:v1.34.1',
  hopguard: 'ghcr.io/hopguard/hopguard:0.1.0',
};

/** A SPIFFE trust domain (SPIFFE ID §2.1): lower-case letters, digits, dots, dashes, underscores. */
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

export function loadInjectConfigFile(path: string): InjectConfig {
  return loadConfigFile(path, parseInjectConfig);
}

export function parseInjectConfig(yamlText: string, opts: { baseDir: string; source?: string }): InjectConfig {
  return parseConfig(yamlText, injectConfigSchema(opts.baseDir), opts.source);
}

/** The settings `hopguard inject -f` uses when no --config is given. */
export function defaultInjectConfig(): InjectConfig {
  return injectConfigSchema(process.cwd()).parse({});
}

function injectConfigSchema(baseDir: string) {
  const file = nonEmptyString.transform((f) => resolve(baseDir, f));
  const image = z.string(expected('an image reference')).regex(/^[\x21-\x7e]+$/, 'expected an image reference such as envoyproxy/envoy:v1.34.1');
  return z
    .strictObject(
      {
        listen: parsedString('host:port such as 0.0.0.0:9443', (t) => parseHostPort(t, 'host:port such as 0.0.0.0:9443')).prefault('0.0.0.0:9443'),
        tls: z.strictObject({ cert: file, key: file }, expected('a mapping with cert and key')).optional(),
        trust_domain: z.string(expected('a trust domain')).regex(TRUST_DOMAIN, 'expected a SPIFFE trust domain such as cluster.local').default('cluster.local'),
        on_error: z.enum(['deny', 'allow'], expected('deny or allow')).default('deny'),
        mode: z.enum(['hopguard', 'istio'], expected('hopguard or istio')).default('hopguard'),
        sidecars: z.enum(['native', 'classic'], expected('native or classic')).default('native'),
        envoy_template: file.optional(),
        images: z.strictObject({ envoy: image.default(DEFAULT_IMAGES.envoy), hopguard: image.default(DEFAULT_IMAGES.hopguard) }, expected('a mapping with envoy and hopguard')).prefault({}),
        ...decommissionFields(baseDir),
      },
      expected('a mapping'),
    )
    .superRefine(redisTlsNeedsRediss, onObjects)
    .transform((raw): InjectConfig => ({
      listen: raw.listen,
      ...(raw.tls !== undefined && { tls: { certFile: raw.tls.cert, keyFile: raw.tls.key } }),
      trustDomain: raw.trust_domain,
      onError: raw.on_error,
      mode: raw.mode,
      sidecars: raw.sidecars,
      envoyTemplate: raw.envoy_template ?? DEFAULT_ENVOY_TEMPLATE,
      images: raw.images,
      ...decommissionConfig(raw),
    }));
}

/** What injection needs to know about a pod's namespace, from the config and the loaded template. */
export function injectionSettings(config: InjectConfig, envoyTemplate: EnvoyTemplate): (namespace: string) => InjectionSettings {
  return (namespace) => ({ namespace, mode: config.mode, sidecars: config.sidecars, trustDomain: config.trustDomain, images: config.images, envoyTemplate });
}

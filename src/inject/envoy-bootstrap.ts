import { ConfigError } from '../schema/config-error.js';
import { isRecord, loadConfigFile, readYaml } from '../schema/config-schema.js';

/**
 * The sidecar Envoy bootstrap for one pod, made from a template (envoy/sidecar.yaml by default):
 * the template is used as written except for what differs per workload: `node`, the port of the
 * `local_app` cluster, and the OpenTelemetry tracer's `service_name`.
 */

export const APP_CLUSTER = 'local_app';
const OPENTELEMETRY = 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig';

export type EnvoyTemplate = Record<string, unknown>;

export interface WorkloadBootstrap {
  /** The workload's SPIFFE ID: Envoy's node id. */
  identity: string;
  /** `<serviceAccount>.<namespace>`: Envoy's node cluster and the traces' service name. */
  serviceName: string;
  appPort: number;
}

/** Reads a template and checks that it has what rendering fills in; a ConfigError otherwise. */
export function loadEnvoyTemplate(path: string): EnvoyTemplate {
  return loadConfigFile(path, (text, { source }) => {
    const template = readYaml(text, source);
    if (!isRecord(template) || appEndpoints(template).length === 0) {
      throw new ConfigError([{ path: 'static_resources.clusters', message: `the Envoy template needs a cluster named ${APP_CLUSTER} with an endpoint` }], source);
    }
    return template;
  });
}

export function renderBootstrap(template: EnvoyTemplate, workload: WorkloadBootstrap): EnvoyTemplate {
  const bootstrap = structuredClone(template);
  bootstrap.node = { id: workload.identity, cluster: workload.serviceName };
  for (const socketAddress of appEndpoints(bootstrap)) socketAddress.port_value = workload.appPort;
  for (const tracer of objectsOfType(bootstrap, OPENTELEMETRY)) tracer.service_name = workload.serviceName;
  return bootstrap;
}

/** The socket_address of every endpoint of the `local_app` cluster. */
function appEndpoints(bootstrap: EnvoyTemplate): Record<string, unknown>[] {
  const staticResources = isRecord(bootstrap.static_resources) ? bootstrap.static_resources : {};
  const clusters = Array.isArray(staticResources.clusters) ? staticResources.clusters : [];
  const app = clusters.find((cluster) => isRecord(cluster) && cluster.name === APP_CLUSTER);
  const assignment = isRecord(app) && isRecord(app.load_assignment) ? app.load_assignment : {};
  const localities = Array.isArray(assignment.endpoints) ? assignment.endpoints : [];
  return localities
    .flatMap((locality) => (isRecord(locality) && Array.isArray(locality.lb_endpoints) ? locality.lb_endpoints : []))
    .map((lb) => (isRecord(lb) && isRecord(lb.endpoint) && isRecord(lb.endpoint.address) ? lb.endpoint.address.socket_address : undefined))
    .filter(isRecord);
}

/** Every object in `value` whose `@type` is `typeUrl`. */
export function objectsOfType(value: unknown, typeUrl: string): Record<string, unknown>[] {
  if (Array.isArray(value)) return value.flatMap((item) => objectsOfType(item, typeUrl));
  if (!isRecord(value)) return [];
  const own = value['@type'] === typeUrl ? [value] : [];
  return [...own, ...Object.values(value).flatMap((item) => objectsOfType(item, typeUrl))];
}

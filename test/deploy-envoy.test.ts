import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { objectsOfType } from '../src/inject/envoy-bootstrap.js';
import { readYaml } from '../src/schema/config-schema.js';
import { loadEnvoySchema, type EnvoySchema } from './support/deploy-envoy-schema.js';

const ENVOY_DIR = path.resolve(import.meta.dirname, '../envoy');
const FILES = readdirSync(ENVOY_DIR).filter((file) => /\.ya?ml$/.test(file));
const T = 'type.googleapis.com/';
const EXT_AUTHZ = `${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`;
const HCM = `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const DOWNSTREAM_TLS = `${T}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`;
const UPSTREAM_TLS = `${T}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;

type Obj = Record<string, any>;
const configs: Record<string, Obj> = Object.fromEntries(
  FILES.map((file) => [file, readYaml(readFileSync(path.join(ENVOY_DIR, file), 'utf8'), file) as Obj]),
);

const typed = (value: unknown, typeUrl: string) => objectsOfType(value, typeUrl) as Obj[];

function listener(config: Obj, name: string): Obj {
  const found = (config.static_resources.listeners as Obj[]).find((l) => l.name === name);
  if (!found) throw new Error(`no listener ${name}`);
  return found;
}

function cluster(config: Obj, name: string): Obj {
  const found = (config.static_resources.clusters as Obj[]).find((c) => c.name === name);
  if (!found) throw new Error(`no cluster ${name}`);
  return found;
}

/** The one endpoint's socket_address of a STATIC cluster. */
const endpointOf = (c: Obj): Obj => c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;

/** A protobuf JSON duration ("1s", "0.25s") in seconds. */
function seconds(duration: string): number {
  expect(duration).toMatch(/^\d+(\.\d+)?s$/);
  return Number(duration.slice(0, -1));
}

let schema: EnvoySchema;
beforeAll(() => {
  schema = loadEnvoySchema(Object.values(configs));
});

describe('envoy/*.yaml against Envoy\'s Bootstrap proto', () => {
  it('has the sidecar and the front proxy', () => {
    expect(FILES.sort()).toEqual(['front-proxy.yaml', 'sidecar.yaml']);
  });

  it.each(FILES)('%s is a valid envoy.config.bootstrap.v3.Bootstrap', (file) => {
    expect(schema.check(configs[file])).toEqual([]);
  });

  it.each(FILES)('%s: every cluster a route, gRPC service or load assignment names is defined', (file) => {
    const config = configs[file]!;
    const defined = new Set((config.static_resources.clusters as Obj[]).map((c) => c.name));
    const named: string[] = [];
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) return value.forEach(visit);
      if (typeof value !== 'object' || value === null) return;
      for (const [key, child] of Object.entries(value)) {
        if ((key === 'cluster' || key === 'cluster_name') && typeof child === 'string') named.push(child);
        else visit(child);
      }
    };
    visit(config.static_resources); // not `node`, whose `cluster` names this Envoy
    expect(named.length).toBeGreaterThan(3);
    expect(named.filter((name) => !defined.has(name))).toEqual([]);
  });
});

describe('the strict check rejects what protobufjs would silently drop', () => {
  const sidecar = () => structuredClone(configs['sidecar.yaml']!);
  const extAuthzOf = (config: Obj) => typed(config, EXT_AUTHZ)[0]!;

  it('a misspelt field, with its full path', () => {
    const config = sidecar();
    delete extAuthzOf(config).include_peer_certificate;
    extAuthzOf(config).include_peer_certificat = true;
    expect(schema.check(config)).toEqual([
      'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.include_peer_certificat: ' +
        'unknown field "include_peer_certificat" in envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
    ]);
  });

  it('a @type that names no Envoy message', () => {
    const config = sidecar();
    extAuthzOf(config)['@type'] = `${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuth`;
    expect(schema.check(config)).toEqual([
      'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.@type: ' +
        `unresolvable type "${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuth" (not in Envoy's protos)`,
    ]);
  });

  it('a @type of a package that was never loaded', () => {
    const config = sidecar();
    extAuthzOf(config)['@type'] = `${T}envoy.extensions.filters.http.nonexistent.v3.Filter`;
    expect(schema.check(config)).toEqual([expect.stringMatching(/typed_config\.@type: unresolvable type/)]);
  });

  it('a wrong enum name, a bad duration, a string for a bool, two members of a oneof, a missing required field', () => {
    const config = sidecar();
    const extAuthz = extAuthzOf(config);
    extAuthz.transport_api_version = 'V4';
    extAuthz.grpc_service.timeout = '1 second';
    extAuthz.failure_mode_allow = 'false';
    extAuthz.grpc_service.google_grpc = { target_uri: '127.0.0.1:9191', stat_prefix: 'x' };
    const health = typed(config, `${T}envoy.extensions.filters.http.health_check.v3.HealthCheck`)[0]!;
    delete health.pass_through_mode;
    const problems = schema.check(config);
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toMatch(/transport_api_version: "V4" is not a value of envoy\.config\.core\.v3\.ApiVersion \(AUTO, V2, V3\)/);
    expect(problems.join('\n')).toMatch(/grpc_service\.timeout: expected a duration such as "1s"/);
    expect(problems.join('\n')).toMatch(/failure_mode_allow: expected true or false, got "false"/);
    expect(problems.join('\n')).toMatch(/grpc_service\.google_grpc: only one of target_specifier may be set, "envoy_grpc" is set too/);
    expect(problems.join('\n')).toMatch(/required field "pass_through_mode" of envoy\.extensions\.filters\.http\.health_check\.v3\.HealthCheck is missing/);
  });

  it('a value of the wrong shape: a scalar for a message, a mapping for a list, a negative port', () => {
    const config = sidecar();
    config.admin.address = '127.0.0.1:15000';
    config.static_resources.listeners[0].filter_chains = { filters: [] };
    config.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = -1;
    expect(schema.check(config)).toEqual([
      'admin.address: expected a mapping (envoy.config.core.v3.Address), got a string',
      'static_resources.listeners[0].filter_chains: expected a list, got a mapping',
      'static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: expected a uint32, got -1',
    ]);
  });

  it('accepts JSON field names and wrapper values written out', () => {
    const config = sidecar();
    const extAuthz = extAuthzOf(config);
    extAuthz.includePeerCertificate = extAuthz.include_peer_certificate;
    delete extAuthz.include_peer_certificate;
    extAuthz.charge_cluster_response_stats = { value: true };
    expect(schema.check(config)).toEqual([]);
  });
});

describe('the sidecar follows hopguard\'s ext_authz contract', () => {
  const sidecar = configs['sidecar.yaml']!;

  it('asks hopguard with the peer certificate, fails closed, buffers no body, times out', () => {
    const filters = typed(listener(sidecar, 'inbound'), EXT_AUTHZ);
    expect(filters).toHaveLength(1);
    expect(filters[0]).toMatchObject({
      transport_api_version: 'V3',
      include_peer_certificate: true,
      failure_mode_allow: false,
      grpc_service: { envoy_grpc: { cluster_name: 'hopguard' }, timeout: '1s' },
    });
    expect(filters[0]).not.toHaveProperty('with_request_body');
    expect(endpointOf(cluster(sidecar, 'hopguard'))).toEqual({ address: '127.0.0.1', port_value: 9191 });
  });

  it('asks hopguard\'s egress port on the outbound listener, fails closed, buffers no body, outlasts the issuer timeout', () => {
    const filters = typed(listener(sidecar, 'outbound'), EXT_AUTHZ);
    expect(filters).toHaveLength(1);
    expect(filters[0]).toMatchObject({
      transport_api_version: 'V3',
      failure_mode_allow: false,
      status_on_error: { code: 'ServiceUnavailable' },
      grpc_service: { envoy_grpc: { cluster_name: 'hopguard_egress' } },
    });
    expect(filters[0]).not.toHaveProperty('with_request_body');
    // No peer certificate on loopback plain HTTP: the outbound check binds to this workload's own.
    expect(filters[0]).not.toHaveProperty('include_peer_certificate');
    // hopguard answers issuer_unavailable within issuer_client.timeout (design default 2s), before Envoy gives up.
    expect(seconds(filters[0]!.grpc_service.timeout)).toBeGreaterThan(2);
    expect(typed(sidecar, EXT_AUTHZ)).toHaveLength(2);
  });

  it('reaches the egress port over HTTP/2, the same window as the inbound check\'s, on loopback', () => {
    const egress = cluster(sidecar, 'hopguard_egress');
    expect(endpointOf(egress)).toEqual({ address: '127.0.0.1', port_value: 9194 });
    const [options] = typed(egress, `${T}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`);
    expect(options!.explicit_http_config).toHaveProperty('http2_protocol_options');
    expect(egress.typed_extension_protocol_options).toEqual(cluster(sidecar, 'hopguard').typed_extension_protocol_options);
  });

  it('runs ext_authz before anything else on both listeners and no response cache anywhere', () => {
    const filtersOf = (name: string) => (listener(sidecar, name).filter_chains[0].filters[0].typed_config.http_filters as Obj[]).map((f) => f.name);
    expect(filtersOf('inbound')).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
    expect(filtersOf('outbound')).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.dynamic_forward_proxy', 'envoy.filters.http.router']);
    expect(JSON.stringify(sidecar)).not.toMatch(/envoy\.filters\.http\.cache|cache\.v3/);
  });

  it('never sends the handle or hopguard\'s identity headers out of the pod', () => {
    const outbound = typed(listener(sidecar, 'outbound'), HCM)[0]!;
    expect(outbound.route_config.request_headers_to_remove).toEqual(
      ['x-hopguard-subject', 'x-hopguard-client-id', 'x-hopguard-scope', 'x-hopguard-token-id', 'x-hopguard-handle'],
    );
  });

  it('normalizes paths and rejects escaped slashes on every HTTP listener, in both files', () => {
    const managers = FILES.flatMap((file) => typed(configs[file], HCM)).filter((hcm) => hcm.stat_prefix !== 'health');
    expect(managers.length).toBe(3);
    for (const hcm of managers) {
      expect(hcm).toMatchObject({ normalize_path: true, merge_slashes: true, path_with_escaped_slashes_action: 'REJECT_REQUEST' });
      expect(hcm.tracing.provider.name).toBe('envoy.tracers.opentelemetry');
    }
  });

  it('requires and validates a client certificate on the inbound listener', () => {
    const [tls] = typed(listener(sidecar, 'inbound'), DOWNSTREAM_TLS);
    expect(tls).toMatchObject({
      require_client_certificate: true,
      common_tls_context: { validation_context: { trusted_ca: { filename: '/etc/hopguard/tls/ca.crt' } } },
    });
  });

  it('originates mTLS on the outbound path with this workload\'s certificate', () => {
    expect(listener(sidecar, 'outbound').address.socket_address.address).toBe('127.0.0.1');
    const mesh = (sidecar.static_resources.clusters as Obj[]).find((c) => c.name === 'mesh')!;
    const [tls] = typed(mesh, UPSTREAM_TLS);
    expect(tls!.common_tls_context.tls_certificates[0].certificate_chain.filename).toBe('/etc/hopguard/tls/tls.crt');
    expect(tls!.common_tls_context.validation_context.trusted_ca.filename).toBe('/etc/hopguard/tls/ca.crt');
  });

  it('logs hopguard\'s dynamic metadata and never the authorization header or the query', () => {
    const formats = JSON.stringify(typed(sidecar, `${T}envoy.extensions.access_loggers.stream.v3.StdoutAccessLog`));
    expect(formats).toContain('%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%');
    expect(formats).not.toMatch(/authorization/i);
    expect(formats).toContain('%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%');
  });

  it.each([['inbound', 'local_app'], ['outbound', 'mesh']])('names the %s listener and its Envoy route to hopguard through context_extensions', (name, route) => {
    const [perRoute] = typed(listener(sidecar, name), `${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute`);
    expect(perRoute!.check_settings.context_extensions).toEqual({ listener: name, envoy_route: route });
  });
});

describe('the front proxy', () => {
  const edge = configs['front-proxy.yaml']!;

  it('strips hopguard identity headers and client certificate details from outside requests', () => {
    const hcm = typed(listener(edge, 'public'), HCM)[0]!;
    expect(hcm).toMatchObject({ use_remote_address: true, xff_num_trusted_hops: 0, forward_client_cert_details: 'SANITIZE' });
    expect(hcm.route_config.request_headers_to_remove).toEqual(
      ['x-hopguard-subject', 'x-hopguard-client-id', 'x-hopguard-scope', 'x-hopguard-token-id'],
    );
  });

  it('enters the mesh over mTLS, to exactly the frontend\'s identity', () => {
    const [tls] = typed(edge, UPSTREAM_TLS);
    expect(tls!.common_tls_context.validation_context.match_typed_subject_alt_names).toEqual([
      { san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/shop/sa/frontend' } },
    ]);
  });
});

import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * Envoy's official API definitions, as shipped in @grpc/grpc-js-xds (never hand-copied).
 * keepCase keeps proto field names (`header_map`, `ok_response`); defaults off, so an
 * absent field reads as undefined rather than a freshly allocated empty value.
 */
const require = createRequire(import.meta.url);
const XDS_ROOT = path.dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
export const ENVOY_PROTO_INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate']
  .map((dir) => path.join(XDS_ROOT, 'deps', dir));

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: ENVOY_PROTO_INCLUDE_DIRS,
};

let definition: protoLoader.PackageDefinition | undefined;
let cached: grpc.ServiceClientConstructor | undefined;

/** external_auth.proto and everything it imports, loaded once per process (~100 ms). */
export function envoyAuthDefinition(): protoLoader.PackageDefinition {
  definition ??= protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', PROTO_LOADER_OPTIONS);
  return definition;
}

/** envoy.service.auth.v3.Authorization. */
export function authorizationService(): grpc.ServiceClientConstructor {
  if (!cached) {
    const loaded = grpc.loadPackageDefinition(envoyAuthDefinition()) as unknown as {
      envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    };
    cached = loaded.envoy.service.auth.v3.Authorization;
  }
  return cached;
}

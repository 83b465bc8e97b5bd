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

// ---------------------------------------------------------------------------------------
// Field and enum numbers, looked up by name in the descriptors, for the hand-written codecs
// (check-request-decoder, check-response-encoder): nothing of Envoy's messages is copied.

interface Descriptor {
  name: string;
  field: { name: string; number: number }[];
  nestedType?: Descriptor[];
  enumType?: { name: string; value: { name: string; number: number }[] }[];
}

/** A message descriptor by full name, nested types included ('…AttributeContext.HttpRequest'). */
function descriptor(fullName: string): Descriptor {
  const definition = envoyAuthDefinition() as Record<string, { type?: Descriptor }>;
  const parts = fullName.split('.');
  for (let split = parts.length; split > 0; split--) {
    let found = definition[parts.slice(0, split).join('.')]?.type;
    for (const name of parts.slice(split)) found = found?.nestedType?.find((nested) => nested.name === name);
    if (found) return found;
  }
  throw new Error(`${fullName} is not in Envoy's protos`);
}

export function fieldNumbers<const K extends string>(fullName: string, names: K[]): Record<K, number> {
  const { field } = descriptor(fullName);
  return Object.fromEntries(names.map((name) => {
    const number = field.find((f) => f.name === name)?.number;
    if (number === undefined) throw new Error(`${fullName} has no field ${name}`);
    return [name, number];
  })) as Record<K, number>;
}

/** The values of an enum declared inside a message: name → number. */
export function nestedEnum(messageName: string, enumName: string): Map<string, number> {
  const found = descriptor(messageName).enumType?.find((e) => e.name === enumName);
  if (!found) throw new Error(`${messageName} has no enum ${enumName}`);
  return new Map(found.value.map((v) => [v.name, v.number]));
}

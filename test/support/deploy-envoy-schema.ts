import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
// Importing proto-loader registers google/protobuf/descriptor.proto with protobufjs, which the
// validate and udpa annotations import.
import { ENVOY_PROTO_INCLUDE_DIRS } from '../../src/authz/envoy-protos.js';

/**
 * A strict check of an Envoy config (as parsed from YAML) against Envoy's official protos from
 * @grpc/grpc-js-xds. protobufjs's fromObject silently drops unknown fields, so this walks the
 * value against the message descriptors itself, the way Envoy's own YAML loader reads it:
 * proto or JSON field names, enum names, `typed_config` resolved by its `@type`, and the JSON
 * forms of the well-known types. Every problem comes back with its path.
 */

const TYPE_URL_PREFIX = 'type.googleapis.com/';

export interface EnvoySchema {
  root: protobuf.Root;
  /** Problems of `value` read as `typeName` (a full message name); empty when it is valid. */
  check(value: unknown, typeName?: string): string[];
}

/** Loads bootstrap.proto, the proto file of every `@type` in `configs`, and those declaring `messages` (full names). */
export function loadEnvoySchema(configs: unknown[], messages: string[] = []): EnvoySchema {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (path.isAbsolute(target)) return target;
    const found = ENVOY_PROTO_INCLUDE_DIRS.map((dir) => path.join(dir, target)).find((file) => existsSync(file));
    return found ?? target;
  };
  const files = new Set(['envoy/config/bootstrap/v3/bootstrap.proto']);
  for (const typeName of [...configs.flatMap(typeUrlsIn).map(typeNameOf), ...messages]) {
    for (const file of protoFilesOfType(typeName)) files.add(file);
  }
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return { root, check: (value, typeName = 'envoy.config.bootstrap.v3.Bootstrap') => checkMessage(root, value, typeName) };
}

/** Every `@type` value anywhere in `value`. */
export function typeUrlsIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(typeUrlsIn);
  if (!isObject(value)) return [];
  const own = typeof value['@type'] === 'string' ? [value['@type']] : [];
  return [...own, ...Object.values(value).flatMap(typeUrlsIn)];
}

function typeNameOf(typeUrl: string): string {
  return typeUrl.startsWith(TYPE_URL_PREFIX) ? typeUrl.slice(TYPE_URL_PREFIX.length) : typeUrl;
}

/**
 * `envoy.extensions.filters.http.router.v3.Router` → the .proto in envoy/extensions/filters/http/router/v3
 * that declares `message Router` (a package's other files may import protos that are not shipped).
 */
function protoFilesOfType(typeName: string): string[] {
  const parts = typeName.split('.');
  const dir = parts.slice(0, -1).join('/');
  const declares = new RegExp(`^message ${parts.at(-1)} \\{`, 'm');
  for (const include of ENVOY_PROTO_INCLUDE_DIRS) {
    const full = path.join(include, dir);
    if (!existsSync(full)) continue;
    return readdirSync(full)
      .filter((file) => file.endsWith('.proto') && declares.test(readFileSync(path.join(full, file), 'utf8')))
      .map((file) => `${dir}/${file}`);
  }
  return []; // Reported as an unresolvable @type where it is used.
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : `a ${typeof value}`;
}

/** snake_case → lowerCamelCase, as protoc derives json_name. */
function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

// protobuf's JSON mapping of the well-known types that Envoy's YAML uses.
const DURATION = /^-?\d+(\.\d{1,9})?s$/;
const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/;
const WRAPPERS: Record<string, string> = {
  'google.protobuf.BoolValue': 'bool',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'bytes',
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.UInt64Value': 'uint64',
};

function checkMessage(root: protobuf.Root, value: unknown, typeName: string): string[] {
  const problems: string[] = [];
  const type = root.lookupType(typeName);
  walkMessage(root, value, type, '', problems);
  return problems;
}

function walkMessage(root: protobuf.Root, value: unknown, type: protobuf.Type, at: string, problems: string[]): void {
  const name = type.fullName.slice(1);
  const where = at || '(top)';
  const wrapped = WRAPPERS[name];
  if (wrapped !== undefined) {
    // Envoy accepts the bare value (`pass_through_mode: false`) as protobuf JSON does.
    walkScalar(isObject(value) && 'value' in value ? value.value : value, wrapped, at, problems);
    return;
  }
  switch (name) {
    case 'google.protobuf.Duration':
      if (typeof value !== 'string' || !DURATION.test(value)) problems.push(`${where}: expected a duration such as "1s" or "0.25s", got ${JSON.stringify(value)}`);
      return;
    case 'google.protobuf.Timestamp':
      if (typeof value !== 'string' || !TIMESTAMP.test(value)) problems.push(`${where}: expected an RFC 3339 timestamp`);
      return;
    case 'google.protobuf.Struct':
      if (!isObject(value)) problems.push(`${where}: expected a mapping (google.protobuf.Struct), got ${describe(value)}`);
      return;
    case 'google.protobuf.ListValue':
      if (!Array.isArray(value)) problems.push(`${where}: expected a list, got ${describe(value)}`);
      return;
    case 'google.protobuf.Value':
      return; // any JSON value
    case 'google.protobuf.Any':
      walkAny(root, value, at, problems);
      return;
  }
  if (!isObject(value)) {
    problems.push(`${where}: expected a mapping (${name}), got ${describe(value)}`);
    return;
  }
  const byName = new Map<string, protobuf.Field>();
  for (const field of type.fieldsArray) {
    byName.set(field.name, field);
    byName.set(jsonName(field.name), field);
  }
  const setOneofs = new Map<string, string>();
  for (const [key, child] of Object.entries(value)) {
    const path = at ? `${at}.${key}` : key;
    const field = byName.get(key);
    if (field === undefined) {
      problems.push(`${path}: unknown field "${key}" in ${name}`);
      continue;
    }
    if (field.options?.deprecated === true) problems.push(`${path}: deprecated field of ${name}`);
    const oneof = field.partOf;
    if (oneof !== null && oneof !== undefined) {
      const other = setOneofs.get(oneof.name);
      if (other !== undefined) problems.push(`${path}: only one of ${oneof.name} may be set, "${other}" is set too`);
      setOneofs.set(oneof.name, key);
    }
    walkField(root, child, field, path, problems);
  }
  // protoc-gen-validate's required markers: what Envoy refuses at load when absent.
  for (const field of type.fieldsArray) {
    if (field.partOf == null && field.options?.['(validate.rules).message.required'] === true && value[field.name] === undefined && value[jsonName(field.name)] === undefined) {
      problems.push(`${where}: required field "${field.name}" of ${name} is missing`);
    }
  }
  for (const oneof of type.oneofsArray) {
    if (oneof.options?.['(validate.required)'] === true && !setOneofs.has(oneof.name)) {
      problems.push(`${where}: one of ${oneof.oneof.join(', ')} is required in ${name}`);
    }
  }
}

function walkField(root: protobuf.Root, value: unknown, field: protobuf.Field, at: string, problems: string[]): void {
  if (field instanceof protobuf.MapField) {
    if (!isObject(value)) {
      problems.push(`${at}: expected a mapping, got ${describe(value)}`);
      return;
    }
    for (const [key, item] of Object.entries(value)) walkSingle(root, item, field, `${at}.${key}`, problems);
    return;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) {
      problems.push(`${at}: expected a list, got ${describe(value)}`);
      return;
    }
    value.forEach((item, index) => walkSingle(root, item, field, `${at}[${index}]`, problems));
    return;
  }
  walkSingle(root, value, field, at, problems);
}

function walkSingle(root: protobuf.Root, value: unknown, field: protobuf.Field, at: string, problems: string[]): void {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) walkMessage(root, value, resolved, at, problems);
  else if (resolved instanceof protobuf.Enum) walkEnum(value, resolved, at, problems);
  else walkScalar(value, field.type, at, problems);
}

function walkAny(root: protobuf.Root, value: unknown, at: string, problems: string[]): void {
  if (!isObject(value) || typeof value['@type'] !== 'string') {
    problems.push(`${at}: expected a mapping with "@type" (google.protobuf.Any)`);
    return;
  }
  const { '@type': typeUrl, ...fields } = value;
  if (!typeUrl.startsWith(TYPE_URL_PREFIX)) {
    problems.push(`${at}.@type: "${typeUrl}" must start with ${TYPE_URL_PREFIX}`);
    return;
  }
  let type: protobuf.Type;
  try {
    type = root.lookupType(typeNameOf(typeUrl));
  } catch {
    problems.push(`${at}.@type: unresolvable type "${typeUrl}" (not in Envoy's protos)`);
    return;
  }
  walkMessage(root, fields, type, at, problems);
}

function walkEnum(value: unknown, type: protobuf.Enum, at: string, problems: string[]): void {
  const known = typeof value === 'string' ? value in type.values : typeof value === 'number' && value in type.valuesById;
  if (!known) {
    problems.push(`${at}: ${JSON.stringify(value)} is not a value of ${type.fullName.slice(1)} (${Object.keys(type.values).join(', ')})`);
  }
}

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1], sint32: [-(2 ** 31), 2 ** 31 - 1], sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1], fixed32: [0, 2 ** 32 - 1],
};

function walkScalar(value: unknown, type: string, at: string, problems: string[]): void {
  const wrong = (what: string) => problems.push(`${at}: expected ${what}, got ${JSON.stringify(value)}`);
  switch (type) {
    case 'string':
      if (typeof value !== 'string') wrong('a string');
      return;
    case 'bool':
      if (typeof value !== 'boolean') wrong('true or false');
      return;
    case 'bytes':
      if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) wrong('base64 bytes');
      return;
    case 'double':
    case 'float':
      if (typeof value !== 'number') wrong('a number');
      return;
    case 'int64': case 'sint64': case 'sfixed64': case 'uint64': case 'fixed64': {
      const text = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
      if (typeof text !== 'string' || !(type.startsWith('u') || type === 'fixed64' ? /^\d+$/ : /^-?\d+$/).test(text)) wrong('a whole number');
      return;
    }
    default: {
      const range = INT_RANGES[type];
      if (range === undefined) throw new Error(`${at}: scalar type ${type} is not handled`);
      if (typeof value !== 'number' || !Number.isInteger(value) || value < range[0] || value > range[1]) wrong(`a ${type}`);
    }
  }
}

import { fieldNumbers, nestedEnum } from './envoy-protos.js';

/**
 * CheckResponse → protobuf bytes, for the shapes check-response.ts builds.
 *
 * proto-loader's serializer converts the plain object into protobufjs messages (fromObject),
 * then encodes them: ~24 µs for an allow here, more than the rest of a cached check. This
 * writes the wire format straight into one scratch buffer (~2 µs). It writes the bytes
 * protobufjs writes, fields in number order, a field present in the object written even when
 * it holds its default (test/check-response-encoder.test.ts compares the two byte for byte).
 * One deliberate difference: a string holding a lone UTF-16 surrogate (a JSON claim may) is
 * written as U+FFFD, so the message stays valid UTF-8, which protobufjs does not ensure.
 * Field and enum numbers are looked up by name in the official descriptors.
 */

export interface HeaderValueOption {
  header: { key: string; value: string };
  append?: { value: boolean };
  append_action?: string;
}

export type StructValue =
  | { nullValue: 'NULL_VALUE' }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: Struct }
  | { listValue: { values: StructValue[] } };

/** google.protobuf.Struct, with protobufjs's camelCase field names for the well-known types. */
export interface Struct {
  fields: Record<string, StructValue>;
}

export interface CheckResponseMessage {
  status: { code: number; message?: string };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove: string[] };
  dynamic_metadata?: Struct;
}

const CHECK_RESPONSE = fieldNumbers('envoy.service.auth.v3.CheckResponse', ['status', 'denied_response', 'ok_response', 'dynamic_metadata']);
const STATUS = fieldNumbers('google.rpc.Status', ['code', 'message']);
const DENIED = fieldNumbers('envoy.service.auth.v3.DeniedHttpResponse', ['status', 'headers', 'body']);
const HTTP_STATUS = fieldNumbers('envoy.type.v3.HttpStatus', ['code']);
const OK = fieldNumbers('envoy.service.auth.v3.OkHttpResponse', ['headers', 'headers_to_remove']);
const HEADER_OPTION = fieldNumbers('envoy.config.core.v3.HeaderValueOption', ['header', 'append', 'append_action']);
const APPEND_ACTIONS = nestedEnum('envoy.config.core.v3.HeaderValueOption', 'HeaderAppendAction');
const HEADER = fieldNumbers('envoy.config.core.v3.HeaderValue', ['key', 'value']);
const BOOL_VALUE = fieldNumbers('google.protobuf.BoolValue', ['value']);
const STRUCT = fieldNumbers('google.protobuf.Struct', ['fields']);
const VALUE = fieldNumbers('google.protobuf.Value', ['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue']);
const LIST_VALUE = fieldNumbers('google.protobuf.ListValue', ['values']);
/** Map entries are messages with key = 1, value = 2 (protobuf language guide, "Maps"). */
const MAP_ENTRY = { key: 1, value: 2 };

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;

// Encoding is synchronous: one scratch buffer for every response, grown if one ever needs it.
let buffer = Buffer.allocUnsafe(8 * 1024);
let pos = 0;

export function encodeCheckResponseMessage(response: CheckResponseMessage): Buffer {
  pos = 0;
  let at = begin(CHECK_RESPONSE.status);
  integer(STATUS.code, response.status.code);
  if (response.status.message != null) string(STATUS.message, response.status.message);
  end(at);
  const denied = response.denied_response;
  if (denied) {
    at = begin(CHECK_RESPONSE.denied_response);
    const status = begin(DENIED.status);
    integer(HTTP_STATUS.code, denied.status.code);
    end(status);
    for (const option of denied.headers) headerOption(DENIED.headers, option);
    string(DENIED.body, denied.body);
    end(at);
  }
  const ok = response.ok_response;
  if (ok) {
    at = begin(CHECK_RESPONSE.ok_response);
    for (const option of ok.headers) headerOption(OK.headers, option);
    for (const name of ok.headers_to_remove) string(OK.headers_to_remove, name);
    end(at);
  }
  if (response.dynamic_metadata) struct(CHECK_RESPONSE.dynamic_metadata, response.dynamic_metadata);
  // A copy: grpc-js writes the response after this returns, and the scratch is reused.
  return Buffer.from(buffer.subarray(0, pos));
}

function headerOption(field: number, option: HeaderValueOption): void {
  const at = begin(field);
  const header = begin(HEADER_OPTION.header);
  string(HEADER.key, option.header.key);
  string(HEADER.value, option.header.value);
  end(header);
  if (option.append) {
    const append = begin(HEADER_OPTION.append);
    integer(BOOL_VALUE.value, option.append.value ? 1 : 0);
    end(append);
  }
  if (option.append_action != null) {
    const action = APPEND_ACTIONS.get(option.append_action);
    if (action === undefined) throw new Error(`HeaderAppendAction has no ${option.append_action}`);
    integer(HEADER_OPTION.append_action, action);
  }
  end(at);
}

function struct(field: number, value: Struct): void {
  const at = begin(field);
  for (const key in value.fields) {
    const entry = begin(STRUCT.fields);
    string(MAP_ENTRY.key, key);
    structValue(MAP_ENTRY.value, value.fields[key]!);
    end(entry);
  }
  end(at);
}

function structValue(field: number, value: StructValue): void {
  const at = begin(field);
  if ('stringValue' in value) string(VALUE.stringValue, value.stringValue);
  else if ('numberValue' in value) double(VALUE.numberValue, value.numberValue);
  else if ('boolValue' in value) integer(VALUE.boolValue, value.boolValue ? 1 : 0);
  else if ('nullValue' in value) integer(VALUE.nullValue, 0);
  else if ('structValue' in value) struct(VALUE.structValue, value.structValue);
  else {
    const list = begin(VALUE.listValue);
    for (const item of value.listValue.values) structValue(LIST_VALUE.values, item);
    end(list);
  }
  end(at);
}

// ---------------------------------------------------------------------------------------
// The wire format.

function reserve(bytes: number): void {
  if (pos + bytes <= buffer.length) return;
  const grown = Buffer.allocUnsafe(Math.max(buffer.length * 2, pos + bytes));
  buffer.copy(grown, 0, 0, pos);
  buffer = grown;
}

/** Non-negative values only: everything hopguard sends is (status codes, enums, lengths). */
function varint(value: number): void {
  reserve(10);
  while (value > 0x7f) {
    buffer[pos++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[pos++] = value;
}

function tag(field: number, wireType: number): void {
  varint((field << 3) | wireType);
}

function integer(field: number, value: number): void {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`field ${field}: ${value} is not a non-negative integer`);
  tag(field, VARINT);
  varint(value);
}

function double(field: number, value: number): void {
  tag(field, FIXED64);
  reserve(8);
  pos = buffer.writeDoubleLE(value, pos);
}

function string(field: number, value: string): void {
  tag(field, LENGTH_DELIMITED);
  // A UTF-16 code unit is at most 3 bytes of UTF-8.
  reserve(5 + value.length * 3);
  // Most strings here are short ASCII (header names, ids, scopes): copied in JS, they cost no
  // call into C++ (byteLength, then write), which is most of the time for a short string.
  // The scratch in a local: V8 reloads a module-level `let` on every store in the loop (~3x slower).
  const n = value.length;
  if (n < 0x80) {
    const out = buffer;
    const at = pos + 1;
    let i = 0;
    for (; i < n; i++) {
      const unit = value.charCodeAt(i);
      if (unit >= 0x80) break;
      out[at + i] = unit;
    }
    if (i === n) {
      out[pos] = n;
      pos = at + n;
      return;
    }
  }
  const length = Buffer.byteLength(value);
  varint(length);
  pos += buffer.write(value, pos, length, 'utf8');
}

/**
 * A length-delimited sub-message: begin, write its fields, end. Its length is known only at
 * the end: begin sets one byte aside (enough below 128), and end moves a longer one up to
 * make room for its varint.
 */
function begin(field: number): number {
  tag(field, LENGTH_DELIMITED);
  reserve(1);
  return pos++;
}

function end(lengthAt: number): void {
  const length = pos - lengthAt - 1;
  if (length < 0x80) {
    buffer[lengthAt] = length;
    return;
  }
  const extra = varintSize(length) - 1;
  reserve(extra);
  buffer.copyWithin(lengthAt + 1 + extra, lengthAt + 1, pos);
  const after = pos + extra;
  pos = lengthAt;
  varint(length);
  pos = after;
}

function varintSize(value: number): number {
  let size = 1;
  while (value > 0x7f) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

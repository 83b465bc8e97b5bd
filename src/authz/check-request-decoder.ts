import type { HopRequest } from '../vocabulary/hop-request.js';
import { fieldNumbers as numbers } from './envoy-protos.js';
import { readHopRequest, type CheckRequestMessage } from './hop-request.js';

/**
 * CheckRequest bytes → HopRequest, decoding only the fields hopguard reads.
 *
 * The generic decoder (proto-loader over protobufjs) materializes every field Envoy sends
 * (destination, socket addresses, request time, TLS session, metadata, …) twice, as a message
 * and then as its plain copy, and hopguard reads a dozen strings. This walks the wire format,
 * skips what it does not need without decoding it, and builds just the plain shape
 * readHopRequest takes. Field numbers are looked up by name in the official descriptors at load:
 * nothing of Envoy's messages is written down here. It reads what protobufjs reads: a singular
 * message sent twice replaces the first, the last map entry for a key wins.
 */

type Attributes = NonNullable<CheckRequestMessage['attributes']>;
type Peer = NonNullable<Attributes['source']>;
type HttpRequest = NonNullable<NonNullable<Attributes['request']>['http']>;
type HeaderValue = NonNullable<NonNullable<HttpRequest['header_map']>['headers']>[number];

const CHECK_REQUEST = numbers('envoy.service.auth.v3.CheckRequest', ['attributes']);
const ATTRIBUTES = numbers('envoy.service.auth.v3.AttributeContext', ['source', 'request', 'context_extensions']);
const PEER = numbers('envoy.service.auth.v3.AttributeContext.Peer', ['address', 'principal', 'certificate']);
const ADDRESS = numbers('envoy.config.core.v3.Address', ['socket_address']);
const SOCKET_ADDRESS = numbers('envoy.config.core.v3.SocketAddress', ['address']);
const REQUEST = numbers('envoy.service.auth.v3.AttributeContext.Request', ['http']);
const HTTP = numbers('envoy.service.auth.v3.AttributeContext.HttpRequest', ['method', 'scheme', 'path', 'host', 'headers', 'header_map']);
const HEADER_MAP = numbers('envoy.config.core.v3.HeaderMap', ['headers']);
const HEADER_VALUE = numbers('envoy.config.core.v3.HeaderValue', ['key', 'value', 'raw_value']);
/** Map entries are messages with key = 1, value = 2 (protobuf language guide, "Maps"). */
const MAP_ENTRY = { key: 1, value: 2 };

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const START_GROUP = 3;
const FIXED32 = 5;

export class MalformedMessageError extends Error {
  constructor() {
    super('malformed CheckRequest');
    this.name = 'MalformedMessageError';
  }
}

/** Read position in the message being decoded; decoding is synchronous, so one is enough. */
let pos = 0;

export function decodeCheckRequest(bytes: Buffer): HopRequest {
  pos = 0;
  const message: CheckRequestMessage = {};
  const end = bytes.length;
  while (pos < end) {
    const field = nextField(bytes, end);
    if (field === CHECK_REQUEST.attributes) message.attributes = attributes(bytes, lengthEnd(bytes, end));
    else if (field !== 0) pos = lengthEnd(bytes, end);
  }
  return readHopRequest(message);
}

function attributes(buf: Buffer, end: number): Attributes {
  const out: Attributes = {};
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === ATTRIBUTES.source) out.source = peer(buf, lengthEnd(buf, end));
    else if (field === ATTRIBUTES.request) out.request = request(buf, lengthEnd(buf, end));
    else if (field === ATTRIBUTES.context_extensions) mapEntry(buf, lengthEnd(buf, end), (out.context_extensions ??= record()));
    else if (field !== 0) pos = lengthEnd(buf, end);
  }
  return out;
}

function peer(buf: Buffer, end: number): Peer {
  const out: Peer = {};
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === PEER.principal) out.principal = text(buf, lengthEnd(buf, end));
    else if (field === PEER.address) address(buf, lengthEnd(buf, end), out);
    else if (field === PEER.certificate) out.certificate = certificate(buf, lengthEnd(buf, end));
    else if (field !== 0) pos = lengthEnd(buf, end);
  }
  return out;
}

/** Peer.address.socket_address.address: the caller's IP as Envoy saw it (for `when:` conditions). */
function address(buf: Buffer, end: number, into: Peer): void {
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === ADDRESS.socket_address) {
      const stop = lengthEnd(buf, end);
      while (pos < stop) {
        const inner = nextField(buf, stop);
        if (inner === SOCKET_ADDRESS.address) into.address = { socket_address: { address: text(buf, lengthEnd(buf, stop)) } };
        else if (inner !== 0) pos = lengthEnd(buf, stop);
      }
    } else if (field !== 0) {
      pos = lengthEnd(buf, end);
    }
  }
}

function request(buf: Buffer, end: number): NonNullable<Attributes['request']> {
  const out: NonNullable<Attributes['request']> = {};
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === REQUEST.http) out.http = http(buf, lengthEnd(buf, end));
    else if (field !== 0) pos = lengthEnd(buf, end);
  }
  return out;
}

function http(buf: Buffer, end: number): HttpRequest {
  const out: HttpRequest = {};
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === HTTP.method) out.method = text(buf, lengthEnd(buf, end));
    else if (field === HTTP.scheme) out.scheme = text(buf, lengthEnd(buf, end));
    else if (field === HTTP.path) out.path = text(buf, lengthEnd(buf, end));
    else if (field === HTTP.host) out.host = text(buf, lengthEnd(buf, end));
    else if (field === HTTP.headers) mapEntry(buf, lengthEnd(buf, end), (out.headers ??= record()));
    else if (field === HTTP.header_map) out.header_map = { headers: headerMap(buf, lengthEnd(buf, end)) };
    else if (field !== 0) pos = lengthEnd(buf, end);
  }
  return out;
}

function headerMap(buf: Buffer, end: number): HeaderValue[] {
  const headers: HeaderValue[] = [];
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === HEADER_MAP.headers) headers.push(headerValue(buf, lengthEnd(buf, end)));
    else if (field !== 0) pos = lengthEnd(buf, end);
  }
  return headers;
}

function headerValue(buf: Buffer, end: number): HeaderValue {
  const out: HeaderValue = {};
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === HEADER_VALUE.key) out.key = text(buf, lengthEnd(buf, end));
    else if (field === HEADER_VALUE.value) out.value = text(buf, lengthEnd(buf, end));
    else if (field === HEADER_VALUE.raw_value) {
      const stop = lengthEnd(buf, end);
      out.raw_value = buf.subarray(pos, stop);
      pos = stop;
    } else if (field !== 0) {
      pos = lengthEnd(buf, end);
    }
  }
  return out;
}

/** Map fields: no prototype, so every key, `__proto__` too, is a key of its own (as protobufjs keeps it). */
function record(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/** One map<string, string> entry into `into`; absent key or value reads as ''. */
function mapEntry(buf: Buffer, end: number, into: Record<string, string>): void {
  let key = '';
  let value = '';
  while (pos < end) {
    const field = nextField(buf, end);
    if (field === MAP_ENTRY.key) key = text(buf, lengthEnd(buf, end));
    else if (field === MAP_ENTRY.value) value = text(buf, lengthEnd(buf, end));
    else if (field !== 0) pos = lengthEnd(buf, end);
  }
  into[key] = value;
}

/**
 * The next field's number if it is length-delimited (every field read here is a string, bytes
 * or a message), its length still to read; any other field is skipped whole and 0 returned.
 */
function nextField(buf: Buffer, end: number): number {
  const tag = varint(buf, end);
  const wireType = tag & 7;
  if (wireType === LENGTH_DELIMITED) {
    const field = tag >>> 3;
    if (field === 0) throw new MalformedMessageError();
    return field;
  }
  skip(buf, wireType, end);
  return 0;
}

/** Reads a length; returns where the value ends (a caller skips a value it does not want by moving there). */
function lengthEnd(buf: Buffer, end: number): number {
  const length = varint(buf, end);
  if (length > end - pos) throw new MalformedMessageError();
  return pos + length;
}

/**
 * The peer certificate (~1.6 KB of URL-encoded PEM) as text. A sidecar's checks come from few
 * peers, one after another: bytes equal to the last certificate's give its string again, so no
 * new string is made, and token-binding's thumbprint lookup finds that same string at once.
 */
let lastCertificate = { bytes: Buffer.alloc(0), text: '' };

function certificate(buf: Buffer, stop: number): string {
  const { bytes } = lastCertificate;
  if (stop - pos === bytes.length && buf.compare(bytes, 0, bytes.length, pos, stop) === 0) {
    pos = stop;
    return lastCertificate.text;
  }
  const start = pos;
  const value = text(buf, stop);
  lastCertificate = { bytes: Buffer.from(buf.subarray(start, stop)), text: value };
  return value;
}

function text(buf: Buffer, stop: number): string {
  const value = buf.toString('utf8', pos, stop);
  pos = stop;
  return value;
}

function varint(buf: Buffer, end: number): number {
  // Tags and most lengths are one or two bytes: no power of two to compute for them.
  if (pos + 1 < end) {
    const first = buf[pos]!;
    if (first < 0x80) {
      pos += 1;
      return first;
    }
    const second = buf[pos + 1]!;
    if (second < 0x80) {
      pos += 2;
      return (first & 0x7f) | (second << 7);
    }
  }
  let value = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (pos >= end) throw new MalformedMessageError();
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
  }
  throw new MalformedMessageError();
}

function skip(buf: Buffer, wireType: number, end: number): void {
  switch (wireType) {
    case VARINT: varint(buf, end); break;
    case FIXED64: pos += 8; break;
    case LENGTH_DELIMITED: pos = lengthEnd(buf, end); break;
    case FIXED32: pos += 4; break;
    case START_GROUP:
      // Deprecated groups: skip fields up to the matching END_GROUP.
      for (let tag = varint(buf, end); (tag & 7) !== 4; tag = varint(buf, end)) skip(buf, tag & 7, end);
      break;
    default: throw new MalformedMessageError();
  }
  if (pos > end) throw new MalformedMessageError();
}

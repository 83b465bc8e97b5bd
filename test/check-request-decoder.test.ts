import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedMessageError, decodeCheckRequest } from '../src/authz/check-request-decoder.js';
import { envoyAuthDefinition } from '../src/authz/envoy-protos.js';
import { readHopRequest } from '../src/authz/hop-request.js';
import type { HopRequest } from '../src/vocabulary/hop-request.js';

/**
 * The check path decodes CheckRequests itself, reading only the fields it uses. It must read
 * exactly what the generic decoder (proto-loader, then readHopRequest) reads, for anything
 * Envoy can send, fields hopguard ignores included.
 */
const check = (envoyAuthDefinition()['envoy.service.auth.v3.Authorization'] as protoLoader.ServiceDefinition).Check!;
const encode = (message: object) => check.requestSerialize(message);
const generic = (bytes: Buffer) => readHopRequest(check.requestDeserialize(bytes) as never);

function plain(request: HopRequest) {
  return { ...request, headers: [...request.headers], repeated: [...request.repeated].sort() };
}

const word = fc.string({ maxLength: 12 });
const headerName = fc.constantFrom('authorization', 'Authorization', 'dpop', 'x-request-id', 'traceparent', 'x-hopguard-subject', ':path', 'a', 'A', '123', '__proto__');
const headers = fc.dictionary(headerName, word, { maxKeys: 6 });
const headerMap = fc.array(fc.record({
  key: fc.option(headerName, { nil: undefined }),
  value: fc.option(word, { nil: undefined }),
  raw_value: fc.option(fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)), { nil: undefined }),
}, { requiredKeys: [] }), { maxLength: 5 });
const peer = fc.record({
  principal: word,
  certificate: word,
  service: word,
  address: fc.record({ socket_address: fc.record({ address: word, port_value: fc.nat(65535) }) }),
  labels: fc.dictionary(word, word, { maxKeys: 2 }),
}, { requiredKeys: [] });
const httpRequest = fc.record({
  id: word, method: word, path: word, host: word, scheme: word, query: word, fragment: word, protocol: word, body: word,
  size: fc.nat().map(String), raw_body: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
  headers, header_map: headerMap.map((list) => ({ headers: list })),
}, { requiredKeys: [] });
const checkRequest = fc.record({
  attributes: fc.record({
    source: peer,
    destination: peer,
    request: fc.record({ time: fc.record({ seconds: fc.nat().map(String), nanos: fc.nat(999_999_999) }), http: httpRequest }, { requiredKeys: [] }),
    context_extensions: fc.dictionary(word, word, { maxKeys: 3 }),
    tls_session: fc.record({ sni: word }),
    metadata_context: fc.constant({ filter_metadata: { 'envoy.filters.http.jwt_authn': { fields: { a: { stringValue: 'b' } } } } }),
  }, { requiredKeys: [] }),
}, { requiredKeys: [] });

describe('decodeCheckRequest', () => {
  it('reads what proto-loader and readHopRequest read', () => {
    fc.assert(fc.property(checkRequest, (message) => {
      const bytes = encode(message);
      expect(plain(decodeCheckRequest(bytes))).toEqual(plain(generic(bytes)));
    }), { numRuns: 500 });
  });

  it('reads two concatenated messages as protobufjs does (a repeated singular message replaces the first)', () => {
    fc.assert(fc.property(checkRequest, checkRequest, (a, b) => {
      const bytes = Buffer.concat([encode(a), encode(b)]);
      expect(plain(decodeCheckRequest(bytes))).toEqual(plain(generic(bytes)));
    }), { numRuns: 200 });
  });

  it('refuses truncated messages with MalformedMessageError, never anything else', () => {
    fc.assert(fc.property(checkRequest, fc.nat(), (message, cut) => {
      const bytes = encode(message);
      if (bytes.length === 0) return;
      try {
        decodeCheckRequest(bytes.subarray(0, cut % bytes.length));
      } catch (err) {
        expect(err).toBeInstanceOf(MalformedMessageError);
      }
    }), { numRuns: 300 });
  });
});

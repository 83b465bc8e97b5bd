import fc from 'fast-check';
import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { encodeCheckResponseMessage, type CheckResponseMessage, type HeaderValueOption, type Struct, type StructValue } from '../src/authz/check-response-encoder.js';
import { envoyAuthDefinition } from '../src/authz/envoy-protos.js';

/**
 * hopguard encodes CheckResponses itself. It must write exactly the bytes the official messages
 * (proto-loader over protobufjs) write for the same object, for any content: long and non-ASCII
 * strings, lengths past one varint byte, nested metadata.
 */
const check = (envoyAuthDefinition()['envoy.service.auth.v3.Authorization'] as protoLoader.ServiceDefinition).Check!;
const official = (message: CheckResponseMessage) => check.responseSerialize(message);

// Any Unicode code point (valid UTF-16: no lone surrogates), short or past 127 bytes.
const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: 'binary', minLength: 60, maxLength: 300 }));
const headerOption: fc.Arbitrary<HeaderValueOption> = fc.record({
  header: fc.record({ key: text, value: text }),
  append: fc.record({ value: fc.boolean() }),
  append_action: fc.constantFrom('APPEND_IF_EXISTS_OR_ADD', 'ADD_IF_ABSENT', 'OVERWRITE_IF_EXISTS_OR_ADD', 'OVERWRITE_IF_EXISTS'),
}, { requiredKeys: ['header'] });

const { struct } = fc.letrec<{ struct: Struct; value: StructValue }>((tie) => ({
  struct: fc.dictionary(text, tie('value'), { maxKeys: 5 }).map((fields) => ({ fields })),
  value: fc.oneof({ depthSize: 'small' },
    text.map((stringValue) => ({ stringValue })),
    fc.double().map((numberValue) => ({ numberValue })),
    fc.boolean().map((boolValue) => ({ boolValue })),
    fc.constant({ nullValue: 'NULL_VALUE' as const }),
    tie('struct').map((structValue) => ({ structValue })),
    fc.array(tie('value'), { maxLength: 4 }).map((values) => ({ listValue: { values } }))),
}));

const response: fc.Arbitrary<CheckResponseMessage> = fc.record({
  status: fc.record({ code: fc.integer({ min: 0, max: 16 }), message: text }, { requiredKeys: ['code'] }),
  denied_response: fc.record({
    status: fc.record({ code: fc.constantFrom(0, 200, 400, 401, 403, 429, 503) }),
    headers: fc.array(headerOption, { maxLength: 4 }),
    body: text,
  }),
  ok_response: fc.record({ headers: fc.array(headerOption, { maxLength: 6 }), headers_to_remove: fc.array(text, { maxLength: 4 }) }),
  dynamic_metadata: struct,
}, { requiredKeys: ['status'] });

describe('encodeCheckResponseMessage', () => {
  it('writes the bytes the official messages write', () => {
    fc.assert(fc.property(response, (message) => {
      expect(encodeCheckResponseMessage(message).equals(official(message))).toBe(true);
    }), { numRuns: 1000 });
  });

  it('encodes a response far larger than its scratch buffer, and the next one after it', () => {
    const big: CheckResponseMessage = { status: { code: 7, message: 'denied' }, denied_response: { status: { code: 403 }, headers: [], body: 'é'.repeat(20_000) } };
    expect(encodeCheckResponseMessage(big).equals(official(big))).toBe(true);
    const small: CheckResponseMessage = { status: { code: 0 }, ok_response: { headers: [], headers_to_remove: ['authorization'] } };
    expect(encodeCheckResponseMessage(small).equals(official(small))).toBe(true);
  });

  it('returns a buffer of its own: the next response does not change it', () => {
    const first = encodeCheckResponseMessage({ status: { code: 0, message: 'first' } });
    const copy = Buffer.from(first);
    encodeCheckResponseMessage({ status: { code: 16, message: 'second' } });
    expect(first.equals(copy)).toBe(true);
  });

  it('writes a lone surrogate (a JSON claim may hold one) as U+FFFD, so the message stays valid UTF-8', () => {
    const encoded = encodeCheckResponseMessage({ status: { code: 0 }, dynamic_metadata: { fields: { sub: { stringValue: 'a\ud800b' } } } });
    const decoded = check.responseDeserialize(encoded) as { dynamic_metadata: { fields: { sub: { stringValue: string } } } };
    expect(decoded.dynamic_metadata.fields.sub.stringValue).toBe('a\ufffdb');
    expect(new TextDecoder('utf-8', { fatal: true }).decode(encoded)).toContain('a\ufffdb');
  });

  it('refuses what it cannot write: an unknown append action, a negative status code', () => {
    expect(() => encodeCheckResponseMessage({ status: { code: 0 }, ok_response: { headers: [{ header: { key: 'a', value: 'b' }, append_action: 'SOMETIMES' }], headers_to_remove: [] } }))
      .toThrow('HeaderAppendAction has no SOMETIMES');
    expect(() => encodeCheckResponseMessage({ status: { code: -1 } })).toThrow(RangeError);
  });
});

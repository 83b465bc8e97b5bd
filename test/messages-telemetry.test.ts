import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FULFIL, ID, digestOf, post, startMessagesMesh, type MessagesMesh } from './support/messages-mesh.js';
import { startOtlpHttpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

// Spans are exported 100 ms after they end, so a test sees them while the servers run.
process.env.OTEL_BSP_SCHEDULE_DELAY = '100';

/** Spans of seal and check, joined to the caller's trace, and no token, handle or digest in any of them. */

let receiver: OtlpReceiver;
let m: MessagesMesh;
const telemetry = (service: string) => `telemetry: { tracing: true, service_name: ${service}, endpoint: ${receiver.endpoint}, protocol: http/protobuf }`;
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const parent = (span: string) => `00-${TRACE}-${span}-01`;

beforeAll(async () => {
  receiver = await startOtlpHttpReceiver();
  m = await startMessagesMesh('messages-telemetry', {
    consumers: 1,
    extra: { issuer: telemetry('issuer'), producer: telemetry('orders-hopguard'), consumer: telemetry('ledger-hopguard') },
  });
}, 60_000);

afterAll(async () => {
  await m?.stop();
  await receiver?.close();
});

async function spansNamed(name: string, count: number) {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const found = receiver.spans.filter((s) => s.name === name && s.traceId === TRACE);
    if (found.length >= count || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('telemetry of seal and check', () => {
  it('a seal span and a check span in the caller\'s trace, the issuer\'s span a child of the seal, with their attributes', async () => {
    const handle = await m.handleFor(await m.frontendToken());
    const body = '{"traced":true}';
    const sealed = await post(m.producer.authz.messagesAddress!, '/v1/messages/seal', { destination: FULFIL, digest: digestOf(body) },
      { 'x-hopguard-handle': handle, traceparent: parent('00f067aa0ba902b7') });
    expect(sealed.status).toBe(200);
    const token = sealed.body.token as string;
    const ok = await post(m.consumers[0]!.authz.messagesAddress!, '/v1/messages/check', { token, destination: FULFIL, digest: digestOf(body) },
      { traceparent: parent('00f067aa0ba902b8') });
    const replayed = await post(m.consumers[0]!.authz.messagesAddress!, '/v1/messages/check', { token, destination: FULFIL, digest: digestOf(body) },
      { traceparent: parent('00f067aa0ba902b9') });
    expect([ok.body.decision, replayed.body.code]).toEqual(['allow', 'token_replayed']);
    expect(replayed.body.trace_id).toBe(TRACE);

    const [seal] = await spansNamed('hopguard.messages.seal', 1);
    expect(seal).toMatchObject({
      service: 'orders-hopguard', kind: 2, parentSpanId: '00f067aa0ba902b7',
      attributes: { 'hopguard.decision': 'allow', 'hopguard.destination': FULFIL, 'hopguard.audience': ID.ledger },
    });
    const [issued] = await spansNamed('hopguard.issuer.token', 1);
    expect(issued).toMatchObject({ parentSpanId: seal!.spanId, attributes: { 'hopguard.token.type': 'message', 'hopguard.destination': FULFIL } });
    const checks = await spansNamed('hopguard.messages.check', 2);
    expect(checks.map((s) => [s.service, s.parentSpanId, s.attributes['hopguard.decision'], s.attributes['hopguard.deny_code'] ?? null])).toEqual([
      ['ledger-hopguard', '00f067aa0ba902b8', 'allow', null],
      ['ledger-hopguard', '00f067aa0ba902b9', 'deny', 'token_replayed'],
    ]);
    expect(checks[0]!.attributes).toMatchObject({ 'hopguard.destination': FULFIL, 'hopguard.audience': ID.ledger, 'hopguard.redelivered': false });
    expect(checks[0]!.attributes['hopguard.token.fingerprint']).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const text = JSON.stringify(receiver.spans);
    for (const piece of [...token.split('.'), handle.slice(5, 60), digestOf(body).slice(9, 40)]) expect(text).not.toContain(piece);
  });
});

import { randomBytes } from 'node:crypto';
import { AckPolicy, StorageType, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FULFIL, ID, checkJob, sealJob, startMessagesMesh, type MessagesMesh } from './support/messages-mesh.js';

/**
 * The worked example of docs/messages.md on a real NATS JetStream (127.0.0.1:4222; .ci/run
 * starts `nats-server -js` when nothing answers there): orders' application seals each job and
 * publishes it with the token in a header; ledger's worker pulls, checks, processes, acks.
 */

const NATS = '127.0.0.1:4222';
const HOW_TO_GET_NATS = 'install it with "apt-get install nats-server" (.ci/run does this) and start it with: nats-server -js -a 127.0.0.1 -p 4222';
const TOKEN_HEADER = 'hopguard-token';
const run = randomBytes(4).toString('hex');
/** Our own stream and subjects, deleted afterwards: others may share this NATS. */
const STREAM = `HOPGUARD_MESSAGES_${run}`;
const SUBJECT = `hopguard-test-${run}.${FULFIL}`;

let m: MessagesMesh;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

// ---- the producer: orders' application, serving a request whose handle it has ----

async function publishJob(job: object, handle: string): Promise<void> {
  const body = JSON.stringify(job);
  const h = headers();
  h.set(TOKEN_HEADER, await sealJob(m, body, handle));
  await js.publish(SUBJECT, body, { headers: h });
}

// ---- the consumer: ledger's worker, with its sidecar's check API ----

type Outcome = { decision: string; code?: string; subject?: string; act?: unknown; redelivered?: boolean; job?: unknown };

/** Checks one message, processes and acks it when allowed, terminates it when denied; `crash`: checks, then dies before acking. */
async function consume(msg: JsMsg, { crash = false } = {}): Promise<Outcome> {
  const verdict = await checkJob(m, {
    token: msg.headers?.get(TOKEN_HEADER) ?? '',
    body: msg.data,
    // The broker's own redelivery flag: a publisher cannot set it.
    redelivered: msg.info.deliveryCount > 1,
  });
  if (verdict.decision !== 'allow') {
    msg.term();
    return verdict;
  }
  if (crash) return verdict;
  const job = msg.json();
  msg.ack();
  return { ...verdict, job };
}

async function next(): Promise<JsMsg> {
  const consumer = await js.consumers.get(STREAM, 'ledger');
  const msg = await consumer.next({ expires: 5_000 });
  if (!msg) throw new Error('no message within 5 s');
  return msg;
}

beforeAll(async () => {
  try {
    nc = await connect({ servers: NATS, timeout: 2_000, reconnect: false });
  } catch {
    throw new Error(`no NATS answers on ${NATS}: ${HOW_TO_GET_NATS}`);
  }
  jsm = await jetstreamManager(nc).catch(() => {
    throw new Error(`NATS on ${NATS} has no JetStream: start it with -js (${HOW_TO_GET_NATS})`);
  });
  js = jetstream(nc);
  await jsm.streams.add({ name: STREAM, subjects: [`hopguard-test-${run}.>`], storage: StorageType.Memory });
  // A short ack_wait: a worker that crashed before acking has its message redelivered within a second.
  await jsm.consumers.add(STREAM, { durable_name: 'ledger', ack_policy: AckPolicy.Explicit, ack_wait: nanos(1_000), max_deliver: 5 });
  m = await startMessagesMesh('messages-jetstream', { consumers: 1 });
}, 60_000);

afterAll(async () => {
  await jsm?.streams.delete(STREAM).catch(() => undefined);
  await nc?.close();
  await m?.stop();
});

describe('messages through NATS JetStream', () => {
  it('a job published on a user\'s behalf is checked, processed and acked by the worker', async () => {
    const handle = await m.handleFor(await m.frontendToken());
    await publishJob({ order: 1 }, handle);
    const outcome = await consume(await next());
    expect(outcome).toMatchObject({ decision: 'allow', subject: ID.frontend, act: { sub: ID.orders }, redelivered: false, job: { order: 1 } });
  });

  it('a worker that crashed before acking: JetStream redelivers, and the check allows it, marked redelivered', async () => {
    const handle = await m.handleFor(await m.frontendToken());
    await publishJob({ order: 2 }, handle);
    const first = await next();
    expect(await consume(first, { crash: true })).toMatchObject({ decision: 'allow', redelivered: false });
    // No ack: after ack_wait the same message comes again, with a delivery count of 2.
    const again = await next();
    expect(again.seq).toBe(first.seq);
    expect(again.info.deliveryCount).toBe(2);
    expect(await consume(again)).toMatchObject({ decision: 'allow', redelivered: true, job: { order: 2 } });
  });

  it('a republished copy of a message (same body, same token) is token_replayed and terminated, not processed', async () => {
    const handle = await m.handleFor(await m.frontendToken());
    await publishJob({ order: 3 }, handle);
    const original = await next();
    expect(await consume(original)).toMatchObject({ decision: 'allow', job: { order: 3 } });
    // Someone with access to the subject publishes the message again, token and all.
    await js.publish(SUBJECT, original.data, { headers: original.headers! });
    const copy = await next();
    expect(copy.info.deliveryCount).toBe(1);
    expect(await consume(copy)).toMatchObject({ decision: 'deny', code: 'token_replayed' });
  });

  it('a job whose body was changed after sealing is digest_mismatch', async () => {
    const handle = await m.handleFor(await m.frontendToken());
    await publishJob({ order: 4 }, handle);
    const original = await next();
    original.ack();
    await js.publish(SUBJECT, JSON.stringify({ order: 4, amount: 1_000_000 }), { headers: original.headers! });
    expect(await consume(await next())).toMatchObject({ decision: 'deny', code: 'digest_mismatch' });
  });
});

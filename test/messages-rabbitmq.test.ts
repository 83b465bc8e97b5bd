import { randomBytes } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ID, checkJob, sealJob, startMessagesMesh, type MessagesMesh } from './support/messages-mesh.js';

/**
 * The RabbitMQ worked example of docs/messages.md on a real RabbitMQ (127.0.0.1:5672,
 * guest/guest): orders' application seals each job and publishes it with the token in an AMQP
 * header; ledger's worker consumes with manual ack, checks with the broker's `redelivered`
 * flag, processes, acks (nacks to requeue when processing fails).
 */

const AMQP = 'amqp://guest:guest@127.0.0.1:5672';
const HOW_TO_GET_RABBITMQ = 'install it with "apt-get install rabbitmq-server" and start it with: rabbitmq-server -detached (it listens on 127.0.0.1:5672, user guest/guest)';
const TOKEN_HEADER = 'hopguard-token';
/** Our own queue, deleted afterwards: others may share this RabbitMQ. */
const QUEUE = `hopguard-test-${randomBytes(4).toString('hex')}.orders.fulfilment`;

let m: MessagesMesh;
let conn: ChannelModel;
let producer: Channel;
/** Worker channels a test opened: closed after it, so a failed test leaves nothing unacked for the next. */
const workers = new Set<Channel>();

// ---- the producer: orders' application, serving a request whose handle it has ----

async function publishJob(job: object, handle: string): Promise<void> {
  const body = JSON.stringify(job);
  const token = await sealJob(m, body, handle);
  producer.sendToQueue(QUEUE, Buffer.from(body), { persistent: true, contentType: 'application/json', headers: { [TOKEN_HEADER]: token } });
}

// ---- the consumer: ledger's worker, with its sidecar's check API ----

type Outcome = { decision: string; code?: string; subject?: string; act?: unknown; redelivered?: boolean; job?: unknown };

/** A worker's channel: manual ack, one unacked message at a time, deliveries handed out in order. */
async function startWorker() {
  const channel = await conn.createChannel();
  workers.add(channel);
  channel.on('close', () => workers.delete(channel));
  await channel.prefetch(1);
  const waiting: ((msg: ConsumeMessage) => void)[] = [];
  const delivered: ConsumeMessage[] = [];
  await channel.consume(QUEUE, (msg) => {
    if (!msg) return;   // the broker cancelled the consumer
    const take = waiting.shift();
    if (take) take(msg);
    else delivered.push(msg);
  }, { noAck: false });
  return {
    channel,
    next(): Promise<ConsumeMessage> {
      const ready = delivered.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no message within 5 s')), 5_000);
        waiting.push((msg) => { clearTimeout(timer); resolve(msg); });
      });
    },
  };
}

/**
 * Checks one delivery, then processes and acks it when allowed, rejects it (no requeue) when
 * denied. `crash`: checks, then dies before acking; `failProcessing`: processing throws, nack with requeue.
 */
async function consume(channel: Channel, msg: ConsumeMessage, { crash = false, failProcessing = false } = {}): Promise<Outcome> {
  const token = msg.properties.headers?.[TOKEN_HEADER];
  const verdict = await checkJob(m, {
    token: typeof token === 'string' ? token : '',
    body: msg.content,
    // Set by the broker on a message it delivers again: a publisher cannot set it.
    redelivered: msg.fields.redelivered,
  });
  if (verdict.decision !== 'allow') {
    channel.nack(msg, false, false);   // never process it; no point redelivering
    return verdict;
  }
  if (crash) return verdict;
  if (failProcessing) {
    channel.nack(msg, false, true);    // back on the queue: the broker redelivers it, flagged
    return verdict;
  }
  const job = JSON.parse(msg.content.toString('utf8'));
  channel.ack(msg);
  return { ...verdict, job };
}

/** A worker, and the first delivery of a job orders published on a user's behalf. */
async function jobAtWorker(job: object) {
  const worker = await startWorker();
  await publishJob(job, await m.handleFor(await m.frontendToken()));
  return { worker, msg: await worker.next() };
}

beforeAll(async () => {
  try {
    conn = await connect(AMQP, { timeout: 2_000 });
  } catch (err) {
    throw new Error(`no RabbitMQ answers on ${AMQP.replace(/\/\/.*@/, '//')} (${(err as Error).message}): ${HOW_TO_GET_RABBITMQ}`);
  }
  producer = await conn.createChannel();
  await producer.assertQueue(QUEUE, { durable: false, autoDelete: false });
  m = await startMessagesMesh('messages-rabbitmq', { consumers: 1 });
}, 60_000);

afterEach(async () => {
  for (const channel of workers) await channel.close().catch(() => undefined);
  await producer.purgeQueue(QUEUE);
});

afterAll(async () => {
  await producer?.deleteQueue(QUEUE).catch(() => undefined);
  await conn?.close().catch(() => undefined);
  await m?.stop();
});

describe('messages through RabbitMQ', () => {
  it('a job published on a user\'s behalf is consumed, checked, processed and acked by the worker', async () => {
    const { worker, msg } = await jobAtWorker({ order: 1 });
    expect(msg.fields.redelivered).toBe(false);
    expect(await consume(worker.channel, msg)).toMatchObject({ decision: 'allow', subject: ID.frontend, act: { sub: ID.orders }, redelivered: false, job: { order: 1 } });
    await worker.channel.close();
    expect((await producer.checkQueue(QUEUE)).messageCount).toBe(0);
  });

  it('a worker that crashed before acking, then one whose processing failed: RabbitMQ redelivers each time, flagged, and the check allows it, marked redelivered', async () => {
    const { worker: crashing, msg } = await jobAtWorker({ order: 2 });
    expect(await consume(crashing.channel, msg, { crash: true })).toMatchObject({ decision: 'allow', redelivered: false });
    // The worker dies: its channel closes with the message unacked, and the broker requeues it.
    await crashing.channel.close();
    const worker = await startWorker();
    const again = await worker.next();
    expect(again.fields.redelivered).toBe(true);
    // Processing fails this time: the worker nacks with requeue, and the broker delivers it once more.
    expect(await consume(worker.channel, again, { failProcessing: true })).toMatchObject({ decision: 'allow', redelivered: true });
    const third = await worker.next();
    expect(third.fields.redelivered).toBe(true);
    expect(await consume(worker.channel, third)).toMatchObject({ decision: 'allow', redelivered: true, job: { order: 2 } });
    await worker.channel.close();
    expect((await producer.checkQueue(QUEUE)).messageCount).toBe(0);
  });

  it('a republished copy of a message (same body, same token) is token_replayed and rejected, not processed', async () => {
    const { worker, msg: original } = await jobAtWorker({ order: 3 });
    expect(await consume(worker.channel, original)).toMatchObject({ decision: 'allow', job: { order: 3 } });
    // Someone who may publish to the queue sends the message again, token and all.
    producer.sendToQueue(QUEUE, original.content, { headers: original.properties.headers });
    const copy = await worker.next();
    expect(copy.fields.redelivered).toBe(false);
    expect(await consume(worker.channel, copy)).toMatchObject({ decision: 'deny', code: 'token_replayed' });
    await worker.channel.close();
    expect((await producer.checkQueue(QUEUE)).messageCount).toBe(0);
  });

  it('a job whose body was changed after sealing is digest_mismatch', async () => {
    const { worker, msg: original } = await jobAtWorker({ order: 4 });
    worker.channel.ack(original);
    producer.sendToQueue(QUEUE, Buffer.from(JSON.stringify({ order: 4, amount: 1_000_000 })), { headers: original.properties.headers });
    expect(await consume(worker.channel, await worker.next())).toMatchObject({ decision: 'deny', code: 'digest_mismatch' });
  });
});

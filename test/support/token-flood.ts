import { Worker } from 'node:worker_threads';
import type { IssuedCert } from '../../src/devkit/pki.js';

export interface FloodCount {
  /** Responses by status code. */
  statuses: Record<string, number>;
  /** Requests sent, and the seconds they were sent over. */
  sent: number;
  seconds: number;
  /** Connections the server closed while the flood ran. */
  closed: number;
}

/**
 * A client flooding POST /token from a worker thread (its own event loop, so the issuer's is not
 * shared with it): `perSecond` pipelined requests a second over `connections` keep-alive TLS
 * connections with `client`'s certificate, whatever the answers (at most 64 outstanding on a
 * connection), reconnecting when the server closes one. `stop()` ends it and resolves with what it got.
 */
export function floodTokens(
  url: string,
  client: Pick<IssuedCert, 'certPem' | 'keyPem'>,
  form: string,
  options: { connections: number; perSecond: number },
): { stop(): Promise<FloodCount> } {
  const { hostname, port } = new URL(url);
  const worker = new Worker(FLOODER, {
    eval: true,
    workerData: { host: hostname, port: Number(port), cert: client.certPem, key: client.keyPem, form, ...options },
  });
  const done = new Promise<FloodCount>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    async stop() {
      worker.postMessage('stop');
      const count = await done;
      await worker.terminate();
      return count;
    },
  };
}

const FLOODER = `
const tls = require('node:tls');
const { parentPort, workerData: w } = require('node:worker_threads');
const request = Buffer.from('POST /token HTTP/1.1\\r\\nhost: issuer\\r\\ncontent-type: application/x-www-form-urlencoded\\r\\n'
  + 'content-length: ' + Buffer.byteLength(w.form) + '\\r\\n\\r\\n' + w.form);
const RESPONSE = /HTTP\\/1\\.1 (\\d{3}) [^]*?\\r\\n\\r\\n/;
const statuses = {};
let closed = 0;
let sent = 0;
let stopping = false;
const sockets = [];
function open(slot) {
  let pending = '';
  const socket = tls.connect({ host: w.host, port: w.port, cert: w.cert, key: w.key, rejectUnauthorized: false });
  socket.inFlight = 0;
  socket.setEncoding('latin1');
  socket.on('data', (text) => {
    pending += text;
    for (let head; (head = RESPONSE.exec(pending));) {
      const end = head.index + head[0].length + Number(/content-length: (\\d+)/i.exec(head[0])?.[1] ?? 0);
      if (pending.length < end) break;
      statuses[head[1]] = (statuses[head[1]] ?? 0) + 1;
      socket.inFlight--;
      pending = pending.slice(end);
    }
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    if (stopping) return;
    closed++;
    sockets[slot] = open(slot);
  });
  return socket;
}
for (let i = 0; i < w.connections; i++) sockets[i] = open(i);
const started = Date.now();
let next = 0;
const tick = setInterval(() => {
  const due = Math.floor(((Date.now() - started) / 1000) * w.perSecond);
  for (let tries = 0; sent < due && tries < w.connections; tries++) {
    const socket = sockets[next++ % w.connections];
    if (socket.connecting || socket.pending || socket.inFlight >= 64) continue;
    while (sent < due && socket.inFlight < 64) { socket.write(request); socket.inFlight++; sent++; }
  }
}, 5);
parentPort.on('message', () => {
  stopping = true;
  clearInterval(tick);
  for (const s of sockets) s.destroy();
  parentPort.postMessage({ statuses, sent, seconds: (Date.now() - started) / 1000, closed });
});
`;

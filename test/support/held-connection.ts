import net from 'node:net';
import tls from 'node:tls';
import type { IssuedCert } from '../../src/devkit/pki.js';

/** A connection a test holds open, and what the server did with it. */
export interface HeldConnection {
  socket: net.Socket;
  /** Everything the server sent. */
  received: () => string;
  /** Resolves with the ms from opening until the server closed it, or undefined after `withinMs`. */
  closedWithin(withinMs: number): Promise<number | undefined>;
}

function hold(socket: net.Socket): HeldConnection {
  const opened = Date.now();
  let text = '';
  socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
  socket.on('error', () => socket.destroy());
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
  return {
    socket,
    received: () => text,
    closedWithin: (withinMs) => Promise.race([closed, new Promise<undefined>((r) => { setTimeout(r, withinMs); })]),
  };
}

/** A plain TCP connection to `url`'s port that sends nothing: a TLS handshake never started. */
export function holdTcp(url: string): HeldConnection {
  const { hostname, port } = new URL(url);
  return hold(net.connect(Number(port), hostname));
}

/**
 * A TLS connection to `url` (with `client`'s certificate, if any), resolved once the handshake is
 * done, or undefined when the server closed it first (e.g. at its connection cap).
 */
export function holdTls(url: string, client?: Pick<IssuedCert, 'certPem' | 'keyPem'>): Promise<HeldConnection | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: hostname, port: Number(port), rejectUnauthorized: false, ...(client && { cert: client.certPem, key: client.keyPem }),
    });
    const held = hold(socket);
    socket.once('secureConnect', () => resolve(held));
    socket.once('close', () => resolve(undefined));
  });
}

/** Writes `bytes` one at a time, `everyMs` apart, until they are all sent or the connection closes. */
export function dribble(socket: net.Socket, bytes: Buffer, everyMs: number): void {
  let at = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || at >= bytes.length) return clearInterval(timer);
    socket.write(bytes.subarray(at, ++at));
  }, everyMs);
  timer.unref();
}
